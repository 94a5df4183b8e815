#include "voxwire/vad.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

// The band analysis is integer-only, so an AVX2 clone built next to the baseline (picked at
// load time on x86-64 Linux) gives bit-identical results, only faster.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define VOXWIRE_VAD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VOXWIRE_VAD_CLONES
#endif

namespace voxwire::vad {
namespace {

template <class T>
std::string join(std::span<const T> values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(values[i]);
  }
  return s;
}

template <std::size_t N>
bool one_of(int v, const int (&allowed)[N]) {
  return std::find(std::begin(allowed), std::end(allowed), v) != std::end(allowed);
}

int frames_for(int ms, int frame_ms) { return (ms + frame_ms / 2) / frame_ms; }

// Scored bands: Haar detail levels whose octave lies between about 180 Hz and 8 kHz. Below
// that sit mains hum, handling rumble and most of brown noise; above it there is little
// speech and a lot of hiss.
constexpr double kLowestHz = 180.0;
constexpr double kHighestHz = 8000.0;

// Floors are tracked on band powers smoothed with this time constant (long enough to tame
// the spread of short frames, short enough not to smear speech into the noise estimate).
constexpr double kSmoothingS = 0.06;
// Minimum statistics window: four sub-windows of 0.2 s. A floor that rose is followed
// after 0.8-1 s, a floor that fell as fast as the smoothing allows.
constexpr double kSubwindowS = 0.2;

// The band SNR that noise alone exceeds rarely, in standard deviations of its dB spread.
constexpr double kMarginSigmas = 2.5;
// Minimum-statistics bias: the expected minimum of a smoothed chi-square power with
// `dof` degrees of freedom over the window, as a multiple of sqrt(2 / dof) below the mean.
constexpr double kBiasSigmas = 2.5;

// Logistic from the combined band SNR (dB) to a probability.
constexpr double kThetaDb0 = 2.4;  // sensitivity 0
constexpr double kThetaSpanDb = 4.0;
constexpr double kSlopeDb = 0.7;
// Band SNRs are clamped to [-6, 30] dB (as power ratios).
constexpr double kMinRatio = 0.25118864315095796;  // 10^(-6/10)
constexpr double kMaxRatio = 1000.0;

// Lowest noise floor: white noise of 4 LSB rms (about -78 dBFS), below G.711's idle noise.
constexpr double kFloorPower = 16.0;

// A click puts most of the top band's energy of a frame into one quarter of it.
constexpr double kBurstStart = 0.55;
constexpr double kBurstSpan = 0.3;

}  // namespace

void validate(const Config& c) {
  if (!one_of(c.sample_rate, kRates)) {
    throw std::invalid_argument("vad: sample_rate must be one of " +
                                join(std::span<const int>(kRates)) + " Hz, got " +
                                std::to_string(c.sample_rate));
  }
  if (!one_of(c.frame_ms, kFrameMs)) {
    throw std::invalid_argument("vad: frame_ms must be one of " +
                                join(std::span<const int>(kFrameMs)) + ", got " +
                                std::to_string(c.frame_ms));
  }
  if (!(c.sensitivity >= 0.0 && c.sensitivity <= 1.0)) {
    throw std::invalid_argument("vad: sensitivity must be in [0, 1], got " +
                                std::to_string(c.sensitivity));
  }
  if (!(c.start_threshold > 0.0 && c.start_threshold < 1.0)) {
    throw std::invalid_argument("vad: start_threshold must be in (0, 1), got " +
                                std::to_string(c.start_threshold));
  }
  if (!(c.stop_threshold > 0.0 && c.stop_threshold <= c.start_threshold)) {
    throw std::invalid_argument("vad: stop_threshold must be in (0, start_threshold=" +
                                std::to_string(c.start_threshold) + "], got " +
                                std::to_string(c.stop_threshold));
  }
  if (c.min_speech_ms < 0 || c.min_speech_ms > kMaxMinSpeechMs) {
    throw std::invalid_argument("vad: min_speech_ms must be in [0, " +
                                std::to_string(kMaxMinSpeechMs) + "], got " +
                                std::to_string(c.min_speech_ms));
  }
  if (c.hold_ms < 0 || c.hold_ms > kMaxHoldMs) {
    throw std::invalid_argument("vad: hold_ms must be in [0, " + std::to_string(kMaxHoldMs) +
                                "], got " + std::to_string(c.hold_ms));
  }
  if (c.hangover_ms < 0 || c.hangover_ms > kMaxHangoverMs) {
    throw std::invalid_argument("vad: hangover_ms must be in [0, " +
                                std::to_string(kMaxHangoverMs) + "], got " +
                                std::to_string(c.hangover_ms));
  }
}

// ---- Segmenter -----------------------------------------------------------------------------

Segmenter::Segmenter(std::int64_t frame_samples, int min_speech_frames, int hangover_frames)
    : frame_samples_(frame_samples), min_speech_(min_speech_frames), hangover_(hangover_frames) {
  if (frame_samples < 1 || min_speech_frames < 1 || hangover_frames < 0) {
    throw std::invalid_argument(
        "vad: Segmenter needs frame_samples >= 1, min_speech_frames >= 1 and "
        "hangover_frames >= 0, got " +
        std::to_string(frame_samples) + ", " + std::to_string(min_speech_frames) + ", " +
        std::to_string(hangover_frames));
  }
}

void Segmenter::step(bool speech, FrameResult& out) noexcept {
  const std::int64_t i = frame_++;
  out.event = EventKind::none;
  out.event_sample = 0;
  if (!active_) {
    run_ = speech ? run_ + 1 : 0;
    if (run_ >= min_speech_) {
      active_ = true;
      silence_ = 0;
      out.event = EventKind::start;
      out.event_sample = (i - run_ + 1) * frame_samples_;
      run_ = 0;
    }
  } else if (speech) {
    silence_ = 0;
  } else if (++silence_ > hangover_ - 1) {
    // The hangover-th silent frame closes the utterance at the end of its last speech frame.
    active_ = false;
    out.event = EventKind::end;
    out.event_sample = (i - silence_ + 1) * frame_samples_;
    silence_ = 0;
  }
  out.active = active_;
}

void Segmenter::reset() noexcept {
  frame_ = 0;
  run_ = 0;
  silence_ = 0;
  active_ = false;
}

// ---- Detector ------------------------------------------------------------------------------

namespace {

Segmenter segmenter_for(const Config& c) {
  validate(c);
  return Segmenter(static_cast<std::int64_t>(c.sample_rate / 1000 * c.frame_ms),
                   std::max(1, frames_for(c.min_speech_ms, c.frame_ms)),
                   frames_for(c.hangover_ms, c.frame_ms));
}

}  // namespace

Detector::Detector(const Config& config)
    : config_(config), segmenter_(segmenter_for(config)) {
  const int rate = config.sample_rate;
  frame_samples_ = static_cast<std::size_t>(rate / 1000 * config.frame_ms);
  const double frame_s = config.frame_ms / 1000.0;

  hold_frames_ = frames_for(config.hold_ms, config.frame_ms);
  alpha_ = std::exp(-frame_s / kSmoothingS);
  subwindow_frames_ = std::max(1, static_cast<int>(std::lround(kSubwindowS / frame_s)));
  theta_db_ = kThetaDb0 - kThetaSpanDb * config.sensitivity;

  // Level l holds [rate / 2^(l+1), rate / 2^l) Hz; score the levels inside the speech range.
  for (int level = 1; level <= 12 && bands_ < kMaxBands; ++level) {
    const double hi = rate / std::ldexp(1.0, level);
    const double lo = hi / 2;
    if (hi > kHighestHz) continue;
    if (lo < kLowestHz) break;
    // Coefficients this level gets from one frame (an odd leftover is dropped at each level).
    std::size_t n = frame_samples_;
    for (int l = 0; l < level; ++l) n /= 2;
    if (n < 2) break;
    Band& b = band_[static_cast<std::size_t>(bands_++)];
    b.level = level;
    const double dof = static_cast<double>(n);
    // Noise alone spreads over about 4.34 * sqrt(2 / dof) dB in a band of `dof` coefficients.
    b.margin = std::pow(10.0, kMarginSigmas * std::sqrt(2.0 / dof) / std::log(10.0));
    const double dof_smoothed = dof * (1.0 + alpha_) / (1.0 - alpha_);
    b.bias = 1.0 / (1.0 - std::min(0.6, kBiasSigmas * std::sqrt(2.0 / dof_smoothed)));
    b.eps = kFloorPower;
    // A full-scale sine has per-sample power 2^31; the band covers 2^-level of the spectrum.
    b.scale = 1.0 / (std::ldexp(1.0, level) * 2147483648.0);
    levels_ = level;
  }
  scratch_.assign(frame_samples_ + 2, 0);  // two ping-pong halves
  reset();
}

void Detector::reset() noexcept {
  segmenter_.reset();
  speech_ = false;
  held_ = 0;
  primed_ = false;
  subwindow_pos_ = 0;
  subwindow_fill_ = 0;
  smooth_.fill(0.0);
  current_min_.fill(0.0);
  window_floor_.fill(0.0);
  warmup_.fill(0.0);
  for (auto& w : window_min_) w.fill(0.0);
  energy_.fill(0.0);
  burst_.fill(0.0);
}

double Detector::noise_floor_db() const noexcept {
  if (!primed_) return -std::numeric_limits<double>::infinity();
  double total = 0.0;
  for (int k = 0; k < bands_; ++k) {
    const auto uk = static_cast<std::size_t>(k);
    double floor = current_min_[uk];
    for (int w = 0; w < subwindow_fill_; ++w) {
      floor = std::min(floor, window_min_[uk][static_cast<std::size_t>(w)]);
    }
    total += std::max(floor * band_[uk].bias, band_[uk].eps) * band_[uk].scale;
  }
  return 10.0 * std::log10(total);
}

namespace {

// One Haar analysis level: approximations (pair sums) go on to the next level, the squared
// details (pair differences) are the band's energy. Integer arithmetic keeps the result
// independent of vectorisation: |approximation| < 2^(15+l) and the squares sum in int64.
// For the top scored band the energy is also split into the frame's four quarters (a tail
// that does not divide goes to the last one).
template <class T>
VOXWIRE_VAD_CLONES std::int64_t haar_level(const T* in, std::int32_t* out, std::size_t m,
                                           std::array<double, 4>* quarters) noexcept {
  const auto run = [&](std::size_t from, std::size_t to) {
    std::int64_t e = 0;
    for (std::size_t i = from; i < to; ++i) {
      const std::int32_t p = in[2 * i];
      const std::int32_t q = in[2 * i + 1];
      const std::int32_t d = p - q;
      e += static_cast<std::int64_t>(d) * d;
      out[i] = p + q;
    }
    return e;
  };
  if (quarters == nullptr) return run(0, m);
  const std::size_t q = m / 4;
  std::int64_t total = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const std::int64_t e = run(k * q, k == 3 ? m : (k + 1) * q);
    (*quarters)[k] = static_cast<double>(e);
    total += e;
  }
  return total;
}

}  // namespace

// Detail coefficients at level l are differences of sums of 2^(l-1) samples, so their mean
// square is divided by 2^l to read as per-sample power for white noise at every level.
void Detector::analyse(std::span<const std::int16_t> x) noexcept {
  const int top = band_[0].level;
  std::int32_t* buf[2] = {scratch_.data(), scratch_.data() + frame_samples_ / 2 + 1};
  std::size_t m = x.size() / 2;
  std::int64_t e = haar_level(x.data(), buf[0], m, top == 1 ? &burst_ : nullptr);
  energy_[1] = static_cast<double>(e) / (2.0 * static_cast<double>(m));
  for (int level = 2; level <= levels_; ++level) {
    const std::int32_t* in = buf[level % 2];
    std::int32_t* out = buf[(level + 1) % 2];
    m /= 2;
    e = haar_level(in, out, m, level == top ? &burst_ : nullptr);
    energy_[static_cast<std::size_t>(level)] =
        static_cast<double>(e) / (std::ldexp(1.0, level) * static_cast<double>(m));
  }
}

double Detector::score_frame() noexcept {
  // Minimum statistics on smoothed band powers.
  if (!primed_) {
    for (int k = 0; k < bands_; ++k) {
      const auto uk = static_cast<std::size_t>(k);
      const double e = energy_[static_cast<std::size_t>(band_[uk].level)];
      smooth_[uk] = e;
      current_min_[uk] = e;
    }
    primed_ = true;
  }
  // Band SNRs stay linear power ratios (already divided by the band's noise-spread margin)
  // until the two strongest are known, so one logarithm per frame does.
  double best = kMinRatio;
  double second = kMinRatio;
  for (int k = 0; k < bands_; ++k) {
    const auto uk = static_cast<std::size_t>(k);
    const Band& b = band_[uk];
    const double e = energy_[static_cast<std::size_t>(b.level)];
    smooth_[uk] = alpha_ * smooth_[uk] + (1.0 - alpha_) * e;
    current_min_[uk] = std::min(current_min_[uk], smooth_[uk]);
    double floor = 0.0;
    if (subwindow_fill_ == 0) {
      // Until the first sub-window closes there is no minimum worth the name: take the
      // stream's opening as noise and use its mean power.
      warmup_[uk] += e;
      floor = warmup_[uk] / static_cast<double>(segmenter_.frames() + 1);
    } else {
      floor = std::min(current_min_[uk], window_floor_[uk]) * b.bias;
    }
    floor = std::max(floor, b.eps) * b.margin;
    const double ratio = std::clamp(e / floor, kMinRatio, kMaxRatio);
    if (ratio > best) {
      second = best;
      best = ratio;
    } else if (ratio > second) {
      second = ratio;
    }
  }
  // Close a minimum-statistics sub-window.
  if ((segmenter_.frames() + 1) % subwindow_frames_ == 0) {
    for (int k = 0; k < bands_; ++k) {
      const auto uk = static_cast<std::size_t>(k);
      auto& ring = window_min_[uk];
      ring[static_cast<std::size_t>(subwindow_pos_)] = current_min_[uk];
      current_min_[uk] = smooth_[uk];
      double m = ring[0];
      for (int w = 1; w <= subwindow_fill_ && w < kSubwindows; ++w) {
        m = std::min(m, ring[static_cast<std::size_t>(w)]);
      }
      window_floor_[uk] = m;
    }
    subwindow_pos_ = (subwindow_pos_ + 1) % kSubwindows;
    subwindow_fill_ = std::min(subwindow_fill_ + 1, kSubwindows);
  }
  // Mean of the two strongest band SNRs in dB.
  double z = 5.0 * std::log10(best * second);
  if (z > 0.0) {
    // A click puts most of the top band's energy of the frame into one quarter of it.
    const double total = burst_[0] + burst_[1] + burst_[2] + burst_[3];
    if (total > 0.0) {
      const double peak = std::max(std::max(burst_[0], burst_[1]), std::max(burst_[2], burst_[3]));
      z *= std::clamp(1.0 - (peak / total - kBurstStart) / kBurstSpan, 0.0, 1.0);
    }
  }
  return 1.0 / (1.0 + std::exp(-(z - theta_db_) / kSlopeDb));
}

FrameResult Detector::process(std::span<const std::int16_t> frame) {
  if (frame.size() != frame_samples_) {
    throw std::invalid_argument("vad: a frame must have " + std::to_string(frame_samples_) +
                                " samples (" + std::to_string(config_.frame_ms) + " ms at " +
                                std::to_string(config_.sample_rate) + " Hz), got " +
                                std::to_string(frame.size()));
  }
  analyse(frame);
  FrameResult r;
  const double p = score_frame();
  // Hysteresis on the score, then a short hold: speech frames bridge the dips of stop
  // closures and weak consonants inside a word.
  const bool above = p >= (speech_ ? config_.stop_threshold : config_.start_threshold);
  held_ = above ? 0 : held_ + 1;
  speech_ = above || (speech_ && held_ <= hold_frames_);
  r.score = static_cast<float>(p);
  r.speech = speech_;
  // Utterances follow the score decision without the hold: the hangover does that job,
  // counted from the last frame that really scored as speech.
  segmenter_.step(above, r);
  return r;
}

std::size_t Detector::process_batch(std::span<const std::int16_t> samples,
                                    std::span<float> scores, std::span<std::uint8_t> flags,
                                    std::span<std::int64_t> event_samples) {
  if (samples.size() % frame_samples_ != 0) {
    throw std::invalid_argument("vad: batch length must be a multiple of " +
                                std::to_string(frame_samples_) + " samples, got " +
                                std::to_string(samples.size()));
  }
  const std::size_t n = samples.size() / frame_samples_;
  if (scores.size() < n || flags.size() < n ||
      (!event_samples.empty() && event_samples.size() < n)) {
    throw std::invalid_argument("vad: batch outputs must hold " + std::to_string(n) +
                                " frames, got " + std::to_string(scores.size()) + " scores, " +
                                std::to_string(flags.size()) + " flags and " +
                                std::to_string(event_samples.size()) + " event samples");
  }
  for (std::size_t i = 0; i < n; ++i) {
    const FrameResult r = process(samples.subspan(i * frame_samples_, frame_samples_));
    scores[i] = r.score;
    flags[i] = static_cast<std::uint8_t>((r.speech ? kSpeech : 0) | (r.active ? kActive : 0) |
                                         (r.event == EventKind::start ? kStart : 0) |
                                         (r.event == EventKind::end ? kEnd : 0));
    if (!event_samples.empty()) event_samples[i] = r.event_sample;
  }
  return n;
}

}  // namespace voxwire::vad
