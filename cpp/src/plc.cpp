#include "voxwire/plc.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace voxwire::plc {
namespace {

std::int16_t to_pcm(float v) noexcept {
  return static_cast<std::int16_t>(std::clamp(std::lrint(v), -32768L, 32767L));
}

}  // namespace

Concealer::Concealer(std::uint32_t sample_rate)
    : rate_(sample_rate),
      min_pitch_(sample_rate / 200),
      max_pitch_(sample_rate * 3 / 200),
      ms10_(sample_rate / 100) {
  if (sample_rate < 8000 || sample_rate > 48000) {
    throw std::invalid_argument("plc::Concealer: sample_rate must be 8000..48000, got " +
                                std::to_string(sample_rate));
  }
  // Three periods of the longest pitch: enough for the widest repeated cycle and for the
  // correlation window plus the longest lag.
  history_.assign(3 * max_pitch_, 0.0f);
  cycle_.assign(3 * max_pitch_, 0.0f);
}

void Concealer::reset() noexcept {
  std::fill(history_.begin(), history_.end(), 0.0f);
  have_ = 0;
  cycle_len_ = cycle_pos_ = 0;
  periods_ = pitch_ = 0;
  lost_ = 0;
}

void Concealer::push_history(std::span<const std::int16_t> x) noexcept {
  const std::size_t cap = history_.size();
  if (x.size() >= cap) x = x.subspan(x.size() - cap);
  std::move(history_.begin() + static_cast<std::ptrdiff_t>(x.size()), history_.end(),
            history_.begin());
  std::transform(x.begin(), x.end(), history_.end() - static_cast<std::ptrdiff_t>(x.size()),
                 [](std::int16_t v) { return static_cast<float>(v); });
  have_ = std::min(cap, have_ + x.size());
}

// The lag in [5 ms, 15 ms] whose past best matches the last window (normalised
// cross-correlation), searched at about 8 kHz resolution first and refined around the best.
std::uint32_t Concealer::estimate_pitch() const noexcept {
  const std::size_t n = history_.size();
  const std::size_t window = max_pitch_;
  const std::size_t longest = std::min<std::size_t>(max_pitch_, have_ > window ? have_ - window : 0);
  if (longest < min_pitch_) return static_cast<std::uint32_t>(std::max<std::size_t>(
      std::min<std::size_t>(have_, max_pitch_), 1));
  const float* x = history_.data() + (n - window);
  auto score = [&](std::size_t lag, std::size_t step) {
    double cross = 0.0;
    double energy = 0.0;
    for (std::size_t i = 0; i < window; i += step) {
      const double past = x[static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(lag)];
      cross += static_cast<double>(x[i]) * past;
      energy += past * past;
    }
    return energy > 0.0 ? cross / std::sqrt(energy) : 0.0;
  };
  const std::size_t step = std::max<std::size_t>(1, rate_ / 8000);
  std::size_t best = min_pitch_;
  double best_score = -1e300;
  for (std::size_t lag = min_pitch_; lag <= longest; lag += step) {
    const double s = score(lag, step);
    if (s > best_score) {
      best_score = s;
      best = lag;
    }
  }
  const std::size_t lo = std::max<std::size_t>(min_pitch_, best > step ? best - step : 0);
  const std::size_t hi = std::min(longest, best + step);
  best_score = -1e300;
  for (std::size_t lag = lo; lag <= hi; ++lag) {
    const double s = score(lag, 1);
    if (s > best_score) {
      best_score = s;
      best = lag;
    }
  }
  return static_cast<std::uint32_t>(best);
}

// Repeats the last `periods` pitch periods. The cycle's last quarter period is blended into
// the samples that precede its start, so that wrapping from its end to its beginning joins
// smoothly even where the waveform is not exactly periodic.
void Concealer::set_periods(std::uint32_t periods) noexcept {
  const std::size_t n = history_.size();
  const std::size_t len = std::min<std::size_t>(std::size_t{periods} * pitch_, have_);
  const std::size_t old_len = cycle_len_;
  const float* src = history_.data() + (n - len);
  std::copy(src, src + len, cycle_.begin());
  const std::size_t blend = std::min<std::size_t>(pitch_ / 4, have_ - len);
  for (std::size_t j = 0; j < blend; ++j) {
    const float w = static_cast<float>(j + 1) / static_cast<float>(blend + 1);
    const float before = src[static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(blend)];
    float& tail = cycle_[len - blend + j];
    tail = (1.0f - w) * tail + w * before;
  }
  cycle_len_ = len;
  periods_ = periods;
  // Keep the phase: what would have been read next in the old cycle sits old_len before the
  // end of the new one.
  cycle_pos_ = old_len == 0 ? 0 : len - std::min(old_len, len);
}

float Concealer::next_synthetic() noexcept {
  if (cycle_len_ == 0) return 0.0f;
  // Widen the cycle at a wrap (where old and new cycles read the same sample): 1 period for
  // the first 10 ms, 2 up to 20 ms, then 3.
  if (cycle_pos_ == 0) {
    const std::uint32_t want = lost_ < ms10_ ? 1u : (lost_ < 2u * ms10_ ? 2u : 3u);
    if (want > periods_ && std::size_t{want} * pitch_ <= have_) set_periods(want);
  }
  const float v = cycle_[cycle_pos_];
  cycle_pos_ = cycle_pos_ + 1 == cycle_len_ ? 0 : cycle_pos_ + 1;
  // Full level for 10 ms, then down 20 % per 10 ms: silent from 60 ms on.
  float gain = 1.0f;
  if (lost_ >= ms10_) {
    gain = std::max(0.0f, 1.0f - 0.2f * static_cast<float>(lost_ - ms10_) /
                                     static_cast<float>(ms10_));
  }
  ++lost_;
  return v * gain;
}

void Concealer::conceal(std::span<std::int16_t> out) noexcept {
  if (lost_ == 0) {
    cycle_len_ = 0;
    periods_ = 0;
    if (have_ > 0) {
      pitch_ = estimate_pitch();
      set_periods(1);
    }
  }
  for (auto& s : out) s = to_pcm(next_synthetic());
}

void Concealer::good(std::span<std::int16_t> frame) noexcept {
  if (lost_ > 0) {
    // 4 ms after a loss of up to 10 ms, 4 ms more per further 10 ms, at most 10 ms.
    const std::uint64_t further = (lost_ - 1) / ms10_;
    const std::size_t ms4 = rate_ / 250;
    const std::size_t ola =
        std::min<std::size_t>(ms4 * (1 + further), ms10_);
    const std::size_t m = std::min(ola, frame.size());
    for (std::size_t j = 0; j < m; ++j) {
      const float w = static_cast<float>(j + 1) / static_cast<float>(ola + 1);
      frame[j] = to_pcm((1.0f - w) * next_synthetic() + w * static_cast<float>(frame[j]));
    }
    lost_ = 0;
  }
  push_history(frame);
}

}  // namespace voxwire::plc
