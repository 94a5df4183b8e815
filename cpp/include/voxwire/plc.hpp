#pragma once
/// Packet-loss concealment for decoded PCM16, in the spirit of ITU-T G.711 Appendix I.
///
/// While packets arrive, good() records the decoded audio. When one is missing, conceal()
/// synthesises the gap by repeating the last pitch period (estimated by normalised
/// cross-correlation over 5-15 ms), widening to two and then three periods as the loss goes
/// on to avoid a buzzy single-period loop, and fading out: full level for the first 10 ms,
/// then 20 % per 10 ms, silence from 60 ms on. The first good frame after a loss is
/// cross-faded with the continued synthesis over 4 ms plus 4 ms per further 10 ms lost (at
/// most 10 ms).
///
/// Unlike Appendix I, nothing is delayed: Appendix I holds back 3.75 ms of output so it can
/// blend into the start of a loss; here the synthesis starts phase-aligned with the last
/// period instead, so concealment adds no latency. Works at any rate from 8 to 48 kHz; all
/// durations scale with it. State is fixed at construction (about 100 ms of history).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace voxwire::plc {

class Concealer {
 public:
  /// Throws std::invalid_argument unless 8000 <= sample_rate <= 48000.
  explicit Concealer(std::uint32_t sample_rate);

  /// Records a correctly decoded frame. If it ends a loss, its start is cross-faded in place
  /// with the continued synthesis, so the frame is modified. Any length.
  void good(std::span<std::int16_t> frame) noexcept;

  /// Writes out.size() samples of concealment for a lost stretch (call once per lost frame,
  /// with the frame's length). Before any good frame it writes silence.
  void conceal(std::span<std::int16_t> out) noexcept;

  /// Forgets all history, as at construction. Does not allocate.
  void reset() noexcept;

  /// The sample rate given at construction.
  [[nodiscard]] std::uint32_t sample_rate() const noexcept { return rate_; }
  /// The pitch period (samples) used by the current or last concealment; 0 before any.
  [[nodiscard]] std::uint32_t pitch() const noexcept { return pitch_; }
  /// Samples concealed in the current loss (0 when the last frame was good).
  [[nodiscard]] std::uint64_t concealed_in_loss() const noexcept { return lost_; }

 private:
  void push_history(std::span<const std::int16_t> x) noexcept;
  [[nodiscard]] std::uint32_t estimate_pitch() const noexcept;
  [[nodiscard]] float next_synthetic() noexcept;
  void set_periods(std::uint32_t periods) noexcept;

  std::uint32_t rate_;
  std::uint32_t min_pitch_;     // 5 ms
  std::uint32_t max_pitch_;     // 15 ms
  std::uint32_t ms10_;          // samples in 10 ms
  std::vector<float> history_;  // last history_.size() samples, oldest first
  std::size_t have_ = 0;        // valid samples at the end of history_
  std::vector<float> cycle_;    // the pitch periods being repeated
  std::size_t cycle_len_ = 0;
  std::size_t cycle_pos_ = 0;
  std::uint32_t periods_ = 0;
  std::uint32_t pitch_ = 0;
  std::uint64_t lost_ = 0;      // samples concealed in the current loss
};

}  // namespace voxwire::plc
