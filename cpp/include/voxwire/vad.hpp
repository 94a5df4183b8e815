#pragma once
/// Voice activity detection for 8-48 kHz PCM16 in frames of 10, 20 or 30 ms.
///
/// Each frame is split into octave bands by a Haar wavelet packet (pairwise sums and
/// differences: integer-exact, no multiplications, one pass per level), and every band keeps
/// its own noise floor by minimum statistics (R. Martin, "Noise power spectral density
/// estimation based on optimal smoothing and minimum statistics", IEEE Trans. Speech and
/// Audio Processing 9(5), 2001): the floor is the smallest smoothed band energy seen over the
/// last 0.8-1 s, so it follows falling noise within half a second and rising noise within
/// about a second (in the first 0.2 s of a stream, before any minimum exists, the floor is
/// the mean band power so far: a stream is taken to open on non-speech), while the energy
/// dips that speech always leaves in some band keep it from climbing onto the speech
/// itself. The per-band SNRs, less the spread that noise alone would show in that
/// band, of the two strongest bands among those that carry speech (about 200 Hz to 8 kHz)
/// are averaged into a score, which a logistic maps to a speech probability. A frame whose
/// top-band energy sits in one short burst (a click or a key press) is discounted.
///
/// On top of the per-frame decision a Segmenter turns frames into utterances: a start after
/// a minimum run of speech frames, an end after a hangover of non-speech frames, both with
/// frame-exact sample timestamps.
///
/// Everything is deterministic (integer band analysis, then double arithmetic in a fixed
/// order), state is bounded (a few hundred bytes plus one frame of scratch allocated at
/// construction), and nothing allocates per frame.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace voxwire::vad {

/// The frame lengths the detector accepts, in milliseconds.
inline constexpr int kFrameMs[] = {10, 20, 30};
/// The sample rates the detector accepts, in Hz.
inline constexpr int kRates[] = {8000, 16000, 24000, 32000, 48000};
/// The largest hangover accepted, in milliseconds.
inline constexpr int kMaxHangoverMs = 500;
/// The largest frame-decision hold accepted, in milliseconds.
inline constexpr int kMaxHoldMs = 200;
/// The largest minimum speech duration accepted, in milliseconds.
inline constexpr int kMaxMinSpeechMs = 1000;

/// Detector settings. All durations are rounded to whole frames.
struct Config {
  /// Sample rate in Hz: one of kRates.
  int sample_rate = 16000;
  /// Frame length in ms: one of kFrameMs.
  int frame_ms = 20;
  /// The one knob: 0 (only clear speech) to 1 (anything above the noise floor). It moves
  /// the combined band SNR (above the spread of noise alone) at which the score reaches 0.5
  /// from 2.4 dB (0) through 0.4 dB (0.5, the default) to -1.6 dB (1, where noisy streams
  /// read as speech nearly throughout).
  double sensitivity = 0.5;
  /// A non-speech frame turns into a speech frame when its score is at least this.
  double start_threshold = 0.5;
  /// A speech frame stays speech while its score is at least this (hysteresis); must not
  /// exceed start_threshold.
  double stop_threshold = 0.35;
  /// After its score falls below stop_threshold a speech frame decision holds for this many
  /// ms (0..kMaxHoldMs), so the dips of stop closures and weak consonants inside a word stay
  /// speech. Frames held this way still carry their own low score. Utterance events ignore
  /// the hold: an utterance ends hangover_ms after the last frame that scored as speech.
  int hold_ms = 80;
  /// An utterance starts once this many ms of consecutive speech frames have been seen
  /// (anything up to one frame: on the first speech frame). 0..kMaxMinSpeechMs. The default
  /// is one 20 ms frame, or two 10 ms frames, which keeps single-frame noise out.
  int min_speech_ms = 20;
  /// An utterance ends after this many ms of consecutive non-speech frames. 0..kMaxHangoverMs.
  int hangover_ms = 200;
};

/// Throws std::invalid_argument naming the field, the accepted values and the value given.
void validate(const Config& config);

/// What happened to the utterance state on a frame.
enum class EventKind : std::uint8_t {
  /// Nothing.
  none = 0,
  /// An utterance started; its sample is the first sample of its first speech frame.
  start = 1,
  /// An utterance ended; its sample is one past the last sample of its last speech frame.
  end = 2,
};

/// The outcome of one frame.
struct FrameResult {
  /// Speech probability in [0, 1].
  float score = 0.0F;
  /// The frame decision (score against the start/stop thresholds, then the hold).
  bool speech = false;
  /// Inside an utterance after this frame (from a start event up to its end event).
  bool active = false;
  /// The utterance event this frame produced, if any.
  EventKind event = EventKind::none;
  /// The event's boundary as a sample index counted from the last reset (0 without event).
  std::int64_t event_sample = 0;
};

/// Bit flags written by Detector::process_batch, one byte per frame.
enum Flag : std::uint8_t {
  /// The frame decision was speech.
  kSpeech = 1,
  /// Inside an utterance after the frame.
  kActive = 2,
  /// The frame produced a start event.
  kStart = 4,
  /// The frame produced an end event.
  kEnd = 8,
};

/// Turns per-frame speech decisions into utterances with a minimum duration and a hangover.
/// Usable on its own, for decisions that come from another detector. State: three counters.
class Segmenter {
 public:
  /// `frame_samples` >= 1 is the length of one frame (for timestamps); an utterance starts
  /// after `min_speech_frames` (>= 1) consecutive speech frames and ends after
  /// `hangover_frames` (>= 0) consecutive non-speech frames. Throws std::invalid_argument.
  Segmenter(std::int64_t frame_samples, int min_speech_frames, int hangover_frames);

  /// Feeds the decision for the next frame; fills `active`, `event` and `event_sample` of
  /// `out` and leaves its other fields alone.
  void step(bool speech, FrameResult& out) noexcept;
  /// Back to the state of a new stream (frame 0, no utterance).
  void reset() noexcept;
  /// Whether an utterance is open.
  [[nodiscard]] bool active() const noexcept { return active_; }
  /// Frames fed since the last reset.
  [[nodiscard]] std::int64_t frames() const noexcept { return frame_; }

 private:
  std::int64_t frame_samples_;
  int min_speech_;
  int hangover_;
  std::int64_t frame_ = 0;
  int run_ = 0;      // consecutive speech frames while inactive
  int silence_ = 0;  // consecutive non-speech frames while active
  bool active_ = false;
};

/// The streaming detector. One per audio stream; not thread-safe (one thread at a time).
class Detector {
 public:
  /// Largest number of analysed bands.
  static constexpr int kMaxBands = 8;

  /// Throws std::invalid_argument for an invalid config (see validate).
  explicit Detector(const Config& config);

  /// Analyses one frame of exactly frame_samples() samples.
  /// Throws std::invalid_argument for any other length.
  FrameResult process(std::span<const std::int16_t> frame);

  /// Analyses `samples` as consecutive frames, writing per frame its score, a byte of Flag
  /// bits and, unless `event_samples` is empty, the event's sample (0 without event);
  /// identical to calling process() frame by frame. samples.size() must be a multiple of
  /// frame_samples() and every non-empty output must hold that many frames (else
  /// std::invalid_argument, before any frame is analysed). Returns the number of frames.
  std::size_t process_batch(std::span<const std::int16_t> samples, std::span<float> scores,
                            std::span<std::uint8_t> flags,
                            std::span<std::int64_t> event_samples = {});

  /// Forgets the stream: noise floors, utterance state and the frame counter.
  void reset() noexcept;

  /// The settings, as given.
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  /// Samples per frame.
  [[nodiscard]] std::size_t frame_samples() const noexcept { return frame_samples_; }
  /// Frames processed since the last reset.
  [[nodiscard]] std::int64_t frames() const noexcept { return segmenter_.frames(); }
  /// Whether an utterance is open.
  [[nodiscard]] bool active() const noexcept { return segmenter_.active(); }
  /// The current noise floor over the scored bands, in dB relative to a full-scale sine
  /// (the same scale for every rate); -inf before the first frame.
  [[nodiscard]] double noise_floor_db() const noexcept;

 private:
  struct Band {
    int level = 0;        // Haar level whose detail coefficients form the band
    double margin = 1.0;  // power ratio that noise alone exceeds in this band ~1% of the time
    double bias = 1.0;       // minimum-statistics bias compensation (power ratio)
    double eps = 0.0;        // lowest floor (power), so digital silence is not a 0 floor
    double scale = 1.0;      // band power -> per-sample power of a full-scale signal
  };

  void analyse(std::span<const std::int16_t> frame) noexcept;
  double score_frame() noexcept;

  Config config_;
  std::size_t frame_samples_ = 0;
  int levels_ = 0;
  int bands_ = 0;  // scored bands: band_[0] is the highest
  std::array<Band, kMaxBands> band_{};
  double theta_db_ = 0.0;
  double alpha_ = 0.0;  // smoothing of the band powers that feed the floor
  int subwindow_frames_ = 0;
  Segmenter segmenter_;
  bool speech_ = false;
  int held_ = 0;         // frames since the score last reached the thresholds
  int hold_frames_ = 0;

  // Per-frame analysis results (indexed by Haar level, 1-based).
  std::array<double, kMaxBands + 1> energy_{};
  std::array<double, 4> burst_{};  // top-band energy in the frame's four quarters

  // Minimum statistics, per scored band.
  static constexpr int kSubwindows = 4;
  std::array<double, kMaxBands> smooth_{};
  std::array<double, kMaxBands> current_min_{};
  std::array<double, kMaxBands> warmup_{};
  std::array<double, kMaxBands> window_floor_{};  // minimum over the closed sub-windows  // band power summed over the first sub-window
  std::array<std::array<double, kSubwindows>, kMaxBands> window_min_{};
  int subwindow_pos_ = 0;
  int subwindow_fill_ = 0;
  bool primed_ = false;

  std::vector<std::int32_t> scratch_;  // one frame of Haar approximations, sized once
};

}  // namespace voxwire::vad
