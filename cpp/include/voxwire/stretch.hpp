#pragma once
/// Pitch-synchronous time-stretching of one frame of decoded PCM16 (WSOLA-style), the way a
/// jitter buffer changes its delay in the middle of speech without skipping or inserting
/// whole frames.
///
/// shorten() removes one pitch period from a voiced frame and lengthen() repeats one. The
/// period is the lag of the highest normalised cross-correlation between the start of the
/// frame and the frame shifted by the lag, searched over min_period_ms..max_period_ms; the
/// frame is changed only if that correlation reaches min_correlation (voiced, periodic
/// audio: removing or repeating a period of it is close to inaudible) and the frame is not
/// near silence. The two copies are joined by a linear cross-fade as long as the period
/// (shorter if the frame is), so the output starts with the frame's first sample and ends
/// with its last: it splices into the audio before and after without a discontinuity.
///
/// cut() removes any number of samples (at most half the frame) from a frame that is quiet
/// or not periodic at all (noise, a fricative: best correlation below 0.5), where no period
/// exists to remove and a short cross-fade (2.5 ms) is inaudible; it leaves voiced frames
/// alone. A caller uses it to take out the part of a frame left over by period-sized
/// steps.
///
/// Any rate from 8 to 48 kHz; above 8 kHz the search runs on a 2:1 to 6:1 box-filtered copy
/// and is refined at the full rate. Memory is fixed at construction; nothing allocates
/// afterwards.

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace voxwire::stretch {

/// Construction parameters.
struct Config {
  std::uint32_t sample_rate = 8000;  ///< 8000..48000.
  std::size_t max_frame = 960;       ///< Longest frame accepted, samples (>= 2 ms).
  double min_period_ms = 2.5;        ///< Shortest pitch period searched (400 Hz).
  double max_period_ms = 10.0;       ///< Longest (100 Hz); capped at half the frame.
  double min_correlation = 0.85;     ///< Normalised correlation needed to change a frame.
  std::int32_t min_level = 64;       ///< Mean absolute sample below which a frame is left
                                     ///< alone (about -54 dBFS): quiet frames are the
                                     ///< jitter buffer's to skip or repeat whole.
};

/// What shorten() or lengthen() did.
struct Result {
  std::size_t size = 0;      ///< Samples written to `out`.
  std::uint32_t period = 0;  ///< Samples removed (shorten) or inserted (lengthen); 0: the
                             ///< frame was copied unchanged (not voiced, or too quiet).
  double correlation = 0.0;  ///< The best normalised correlation found.
};

class Stretcher {
 public:
  /// Throws std::invalid_argument for a configuration outside the documented ranges.
  explicit Stretcher(const Config& config = {});

  /// Writes `in` less one pitch period to `out` (out.size() >= in.size()).
  Result shorten(std::span<const std::int16_t> in, std::span<std::int16_t> out);

  /// Writes `in` plus one repeated pitch period to `out` (out.size() >= in.size() +
  /// max_period()).
  Result lengthen(std::span<const std::int16_t> in, std::span<std::int16_t> out);

  /// Writes `in` less `count` samples (count <= in.size() / 2) to `out` if the frame is
  /// quiet or noise-like; else copies it. Result::period is the number removed (0 or count).
  Result cut(std::span<const std::int16_t> in, std::span<std::int16_t> out, std::size_t count);

  /// The best period (samples) of `in` and its normalised correlation; {0, 0} if the frame
  /// is too short to search or too quiet.
  [[nodiscard]] std::pair<std::uint32_t, double> period(std::span<const std::int16_t> in);

  /// Longest period a frame of `frame_size` samples can have removed or inserted.
  [[nodiscard]] std::uint32_t max_period(std::size_t frame_size) const noexcept;
  /// Longest period searched at all, samples.
  [[nodiscard]] std::uint32_t max_period() const noexcept { return max_period_; }
  [[nodiscard]] const Config& config() const noexcept { return config_; }

 private:
  Config config_;
  std::uint32_t min_period_ = 0;  // samples
  std::uint32_t max_period_ = 0;
  std::uint32_t decimation_ = 1;
  std::vector<float> low_;  // the decimated frame, max_frame / decimation_ samples
};

}  // namespace voxwire::stretch
