#pragma once
/// Automatic gain control for inbound speech (PCM16, 8-48 kHz), with a peak limiter.
///
/// The gain follows the caller's speech level, not the signal's: every 10 ms the frame just
/// completed goes through voxwire's VAD (voxwire::vad::Detector, 10 ms frames), and only
/// frames it scores as speech, two in a row, within 200 ms whose frame levels span at least
/// 6 dB (speech dips between syllables; line noise that just got louder, which the VAD takes
/// for speech until its floor catches up, is steady), move the level estimate. Pauses, line noise and silence hold
/// the gain where the last speech left it, so the noise between words is never lifted above
/// the level it had next to the speech (no "breathing", no pumping on pauses).
///
/// The level estimate is the mean power of the speech frames heard, over a sliding
/// exponential window of `level_window_s` seconds of speech (a plain running mean while less
/// speech than that has been heard, so the first words converge at once). Averaging power
/// makes it quick to follow a louder talker (a 20 dB step up moves it 13 dB in 0.1 s of
/// speech at the default window) and slower to follow a quieter one (within 1 dB of a 20 dB
/// step down after 3 s of speech). The desired gain
/// brings that level to `target_dbfs`, within [`min_gain_db`, `max_gain_db`], and never plans
/// to push the loudest recent speech peak (decaying 6 dB/s) over the ceiling. The applied gain
/// moves towards the desired gain at most `rise_db_per_s` up and `fall_db_per_s` down (in the
/// first second of speech up to four times faster up), as a linear ramp over each 10 ms
/// frame, so it has no steps.
///
/// The gain for a frame is decided from the frames before it, and the limiter has no
/// look-ahead: every output sample depends only on the input up to and including that
/// sample, so the kernel adds no latency and its output is the same for every chunking of
/// the input. The limiter is a per-sample gain with instant attack and an exponential
/// release (`limiter_release_ms`): whenever the gained sample would exceed the ceiling
/// (`ceiling_dbfs`), the limiter gain drops to exactly what keeps it at the ceiling. The
/// output's magnitude never exceeds the ceiling, for any input and any settings.
///
/// Levels are in dBFS: the RMS relative to a full-scale square wave (32768), so a
/// full-scale sine is -3 dBFS. State is bounded: the VAD's (a few hundred bytes plus one
/// frame of scratch) and one 10 ms frame of input, allocated at construction. Nothing
/// allocates per call.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "voxwire/vad.hpp"

namespace voxwire::agc {

/// The sample rates accepted, in Hz (those of the VAD).
inline constexpr int kRates[] = {8000, 16000, 24000, 32000, 48000};
/// The analysis frame, in milliseconds.
inline constexpr int kFrameMs = 10;

/// Settings. Gains and levels in dB.
struct Config {
  /// Sample rate in Hz: one of kRates.
  int sample_rate = 16000;
  /// The speech level aimed at, dBFS (RMS of the speech frames), in [-40, -6].
  double target_dbfs = -26.0;
  /// The largest gain, in [0, 60] dB.
  double max_gain_db = 30.0;
  /// The smallest gain (the most attenuation), in [-40, 0] dB.
  double min_gain_db = -20.0;
  /// The gain before any speech was heard, in [min_gain_db, max_gain_db].
  double initial_gain_db = 0.0;
  /// The limiter's ceiling: no output sample's magnitude exceeds 32768 * 10^(ceiling/20)
  /// (rounded down). In [-20, 0] dBFS; at 0 the ceiling is 32767.
  double ceiling_dbfs = -1.0;
  /// Fastest gain increase, dB per second of audio, in (0, 100].
  double rise_db_per_s = 10.0;
  /// Fastest gain decrease, dB per second of audio, in (0, 200].
  double fall_db_per_s = 40.0;
  /// The window of speech over which the level is averaged, in [0.1, 10] s.
  double level_window_s = 0.5;
  /// The limiter's release time constant, in [1, 1000] ms.
  double limiter_release_ms = 50.0;
  /// The VAD's sensitivity (voxwire::vad::Config::sensitivity), in [0, 1].
  double vad_sensitivity = 0.5;
};

/// Throws std::invalid_argument naming the field, the accepted range and the value given.
void validate(const Config& config);

/// The streaming gain control. One per audio stream; not thread-safe.
class Agc {
 public:
  /// Throws std::invalid_argument for an invalid config (see validate).
  explicit Agc(const Config& config);

  /// Gains `in` into `out` (any length, `out.size() >= in.size()`; `out` may be `in`
  /// itself) and returns in.size(). Throws std::invalid_argument if `out` is shorter.
  std::size_t process(std::span<const std::int16_t> in, std::span<std::int16_t> out);

  /// Back to the state at construction: gain, level, limiter, VAD and counters.
  void reset() noexcept;

  /// While held, the gain is applied but no frame moves it (for audio that is not the
  /// caller's own speech, such as the agent's echo). The limiter still works.
  void set_hold(bool hold) noexcept { hold_ = hold; }
  /// Whether adaptation is held.
  [[nodiscard]] bool hold() const noexcept { return hold_; }

  /// The settings, as given.
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  /// Samples per analysis frame (10 ms).
  [[nodiscard]] std::size_t frame_samples() const noexcept { return frame_.size(); }
  /// The gain the next sample gets before the limiter, in dB.
  [[nodiscard]] double gain_db() const noexcept;
  /// The gain the current frame ramps to, in dB.
  [[nodiscard]] double target_gain_db() const noexcept;
  /// The limiter's current gain, in dB (0 when it is not acting).
  [[nodiscard]] double limiter_gain_db() const noexcept;
  /// The estimated speech level of the input, dBFS; -inf before any speech.
  [[nodiscard]] double speech_level_dbfs() const noexcept;
  /// The largest output magnitude the limiter lets through.
  [[nodiscard]] std::int32_t ceiling() const noexcept { return ceiling_; }
  /// Samples processed since the last reset.
  [[nodiscard]] std::int64_t samples() const noexcept { return samples_; }
  /// Analysis frames scored as speech (and used for the level) since the last reset.
  [[nodiscard]] std::int64_t speech_frames() const noexcept { return speech_frames_; }
  /// Samples whose gain the limiter reduced since the last reset.
  [[nodiscard]] std::int64_t limited_samples() const noexcept { return limited_; }

 private:
  void analyse() noexcept;

  Config config_;
  vad::Detector vad_;
  std::vector<std::int16_t> frame_;  // the 10 ms frame being collected (input samples)
  std::size_t pos_ = 0;              // samples of frame_ filled
  double inv_frame_ = 0.0;           // 1 / frame_samples
  std::int32_t ceiling_ = 0;
  double release_ = 0.0;        // limiter: per-sample factor on (1 - gain)
  double rise_per_frame_ = 0.0;  // dB
  double fall_per_frame_ = 0.0;  // dB
  double peak_decay_per_frame_ = 0.0;  // dB
  double frame_s_ = 0.0;

  // Gain: a linear ramp over the frame from gain_from_ to gain_to_ (linear factors).
  double gain_from_ = 1.0;
  double gain_to_ = 1.0;
  double gain_to_db_ = 0.0;
  double limiter_ = 1.0;

  // Speech level: mean power of speech frames (an exponential window once primed).
  double level_power_ = 0.0;
  double peak_db_ = -200.0;
  double speech_s_ = 0.0;
  bool hold_ = false;
  bool last_scored_ = false;  // the previous frame scored as speech
  std::array<double, 20> recent_{};  // the last 200 ms of frame levels (dBFS), a ring
  std::size_t recent_pos_ = 0;
  std::size_t recent_fill_ = 0;

  std::int64_t samples_ = 0;
  std::int64_t speech_frames_ = 0;
  std::int64_t limited_ = 0;
};

}  // namespace voxwire::agc
