#include "voxwire/agc.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace voxwire::agc {
namespace {

constexpr double kFullScale = 32768.0;
// Frames quieter than this (about 10 LSB rms) are never speech: near digital silence the
// VAD's floor sits at its own minimum and a faint hiss could otherwise score.
constexpr double kMinSpeechDbfs = -70.0;
// Recent speech peaks decay this fast (per second of speech) in the peak cap.
constexpr double kPeakDecayDbPerS = 6.0;
// In the first second of speech the gain may rise this many times faster.
constexpr double kPrimingS = 1.0;
constexpr double kPrimingRise = 4.0;
// Speech moves its level by at least this much within kModulationFrames * 10 ms.
constexpr double kModulationDb = 6.0;

double to_db(double power) { return 10.0 * std::log10(power / (kFullScale * kFullScale)); }
double from_db(double db) { return std::pow(10.0, db / 20.0); }

void check(bool ok, const char* field, const char* range, double value) {
  if (!ok) {
    throw std::invalid_argument(std::string("agc: ") + field + " must be in " + range + ", got " +
                                std::to_string(value));
  }
}

vad::Config vad_config(const Config& c) {
  validate(c);
  vad::Config v;
  v.sample_rate = c.sample_rate;
  v.frame_ms = kFrameMs;
  v.sensitivity = c.vad_sensitivity;
  return v;
}

}  // namespace

void validate(const Config& c) {
  if (std::find(std::begin(kRates), std::end(kRates), c.sample_rate) == std::end(kRates)) {
    throw std::invalid_argument(
        "agc: sample_rate must be one of 8000, 16000, 24000, 32000, 48000 Hz, got " +
        std::to_string(c.sample_rate));
  }
  check(c.target_dbfs >= -40.0 && c.target_dbfs <= -6.0, "target_dbfs", "[-40, -6]",
        c.target_dbfs);
  check(c.max_gain_db >= 0.0 && c.max_gain_db <= 60.0, "max_gain_db", "[0, 60]", c.max_gain_db);
  check(c.min_gain_db >= -40.0 && c.min_gain_db <= 0.0, "min_gain_db", "[-40, 0]", c.min_gain_db);
  check(c.initial_gain_db >= c.min_gain_db && c.initial_gain_db <= c.max_gain_db,
        "initial_gain_db", "[min_gain_db, max_gain_db]", c.initial_gain_db);
  check(c.ceiling_dbfs >= -20.0 && c.ceiling_dbfs <= 0.0, "ceiling_dbfs", "[-20, 0]",
        c.ceiling_dbfs);
  check(c.rise_db_per_s > 0.0 && c.rise_db_per_s <= 100.0, "rise_db_per_s", "(0, 100]",
        c.rise_db_per_s);
  check(c.fall_db_per_s > 0.0 && c.fall_db_per_s <= 200.0, "fall_db_per_s", "(0, 200]",
        c.fall_db_per_s);
  check(c.level_window_s >= 0.1 && c.level_window_s <= 10.0, "level_window_s", "[0.1, 10]",
        c.level_window_s);
  check(c.limiter_release_ms >= 1.0 && c.limiter_release_ms <= 1000.0, "limiter_release_ms",
        "[1, 1000]", c.limiter_release_ms);
  check(c.vad_sensitivity >= 0.0 && c.vad_sensitivity <= 1.0, "vad_sensitivity", "[0, 1]",
        c.vad_sensitivity);
}

Agc::Agc(const Config& config) : config_(config), vad_(vad_config(config)) {
  const auto n = static_cast<std::size_t>(config.sample_rate / 1000 * kFrameMs);
  frame_.assign(n, 0);
  inv_frame_ = 1.0 / static_cast<double>(n);
  frame_s_ = kFrameMs / 1000.0;
  // Rounded down, so a ceiling of 0 dBFS is 32767 and the output always fits int16.
  ceiling_ = std::min<std::int32_t>(
      32767, static_cast<std::int32_t>(std::floor(kFullScale * from_db(config.ceiling_dbfs))));
  release_ = std::exp(-1000.0 / (config.limiter_release_ms * config.sample_rate));
  rise_per_frame_ = config.rise_db_per_s * frame_s_;
  fall_per_frame_ = config.fall_db_per_s * frame_s_;
  peak_decay_per_frame_ = kPeakDecayDbPerS * frame_s_;
  reset();
}

void Agc::reset() noexcept {
  vad_.reset();
  pos_ = 0;
  std::fill(frame_.begin(), frame_.end(), std::int16_t{0});
  gain_to_db_ = config_.initial_gain_db;
  gain_from_ = gain_to_ = from_db(gain_to_db_);
  limiter_ = 1.0;
  level_power_ = 0.0;
  peak_db_ = -200.0;
  speech_s_ = 0.0;
  hold_ = false;
  last_scored_ = false;
  recent_.fill(-200.0);
  recent_pos_ = 0;
  recent_fill_ = 0;
  samples_ = 0;
  speech_frames_ = 0;
  limited_ = 0;
}

double Agc::gain_db() const noexcept {
  const double g = gain_from_ + (gain_to_ - gain_from_) * static_cast<double>(pos_) * inv_frame_;
  return 20.0 * std::log10(g);
}

double Agc::target_gain_db() const noexcept { return gain_to_db_; }

double Agc::limiter_gain_db() const noexcept { return 20.0 * std::log10(limiter_); }

double Agc::speech_level_dbfs() const noexcept {
  if (speech_frames_ == 0) return -std::numeric_limits<double>::infinity();
  return to_db(std::max(level_power_, 1e-12));
}

std::size_t Agc::process(std::span<const std::int16_t> in, std::span<std::int16_t> out) {
  if (out.size() < in.size()) {
    throw std::invalid_argument("agc: out must hold " + std::to_string(in.size()) +
                                " samples, got " + std::to_string(out.size()));
  }
  const std::size_t n_frame = frame_.size();
  const double ceiling = ceiling_;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::int16_t x = in[i];  // read before out[i] is written: out may alias in
    frame_[pos_++] = x;
    // The gain ramps linearly over the frame and reaches gain_to_ on its last sample.
    const double g = gain_from_ + (gain_to_ - gain_from_) * static_cast<double>(pos_) * inv_frame_;
    const double v = static_cast<double>(x) * g;
    double lim = limiter_ < 1.0 ? 1.0 - (1.0 - limiter_) * release_ : 1.0;
    const double a = std::abs(v);
    if (a * lim > ceiling) {
      // Instant attack: exactly the gain that puts this sample on the ceiling.
      lim = ceiling / a;
      ++limited_;
    }
    limiter_ = lim;
    const double y = std::clamp(std::nearbyint(v * lim), -ceiling, ceiling);
    out[i] = static_cast<std::int16_t>(y);
    if (pos_ == n_frame) {
      analyse();
      pos_ = 0;
    }
  }
  samples_ += static_cast<std::int64_t>(in.size());
  return in.size();
}

void Agc::analyse() noexcept {
  const vad::FrameResult r = vad_.process(frame_);
  double sum = 0.0;
  std::int32_t peak = 0;
  for (const std::int16_t s : frame_) {
    const std::int32_t v = s;
    sum += static_cast<double>(v * v);
    peak = std::max(peak, v < 0 ? -v : v);
  }
  const double power = sum * inv_frame_;
  gain_from_ = gain_to_;
  const double level = power > 0.0 ? to_db(power) : -200.0;
  recent_[recent_pos_] = level;
  recent_pos_ = (recent_pos_ + 1) % recent_.size();
  recent_fill_ = std::min(recent_fill_ + 1, recent_.size());
  const auto filled = recent_.begin() + static_cast<std::ptrdiff_t>(recent_fill_);
  const auto [lo, hi] = std::minmax_element(recent_.begin(), filled);
  // A frame is speech when it and the frame before it are speech to the VAD (its decision
  // with hysteresis and hold, which bridges the dips inside words; a lone 10 ms frame, a
  // click, never moves the level) and the last 200 ms are not steady: speech always
  // dips between syllables, while line noise that just got louder reads as speech to the
  // VAD until its floor catches up (up to a second) but is steady within 200 ms.
  const bool scored = r.speech && level >= kMinSpeechDbfs;
  const bool speech = !hold_ && scored && last_scored_ && *hi - *lo >= kModulationDb;
  last_scored_ = scored;
  if (!speech) return;  // pauses, noise and held audio keep the gain where it is

  ++speech_frames_;
  speech_s_ += frame_s_;
  // A running mean until a window of speech has been heard, then an exponential window.
  const double alpha = std::max(frame_s_ / speech_s_, frame_s_ / config_.level_window_s);
  level_power_ += alpha * (power - level_power_);
  const double peak_db = 20.0 * std::log10(std::max(1.0, static_cast<double>(peak)) / kFullScale);
  peak_db_ = std::max(peak_db, peak_db_ - peak_decay_per_frame_);

  double desired = config_.target_dbfs - to_db(level_power_);
  desired = std::min(desired, config_.ceiling_dbfs - peak_db_);
  desired = std::clamp(desired, config_.min_gain_db, config_.max_gain_db);
  const double rise = rise_per_frame_ * (speech_s_ <= kPrimingS ? kPrimingRise : 1.0);
  gain_to_db_ += std::clamp(desired - gain_to_db_, -fall_per_frame_, rise);
  gain_to_ = from_db(gain_to_db_);
}

}  // namespace voxwire::agc
