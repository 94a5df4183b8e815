#include "voxwire/stretch.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace voxwire::stretch {
namespace {

// Below this best correlation a frame has no period: noise-like, cut() may remove from it.
constexpr double kNoiseCorrelation = 0.5;

std::int16_t to_pcm(double v) noexcept {
  return static_cast<std::int16_t>(std::clamp(std::lround(v), -32768L, 32767L));
}

// Normalised cross-correlation of a[0..w) and a[lag..lag + w).
template <typename T>
double correlation(const T* a, std::size_t w, std::size_t lag) noexcept {
  double xy = 0.0;
  double xx = 0.0;
  double yy = 0.0;
  for (std::size_t i = 0; i < w; ++i) {
    const double x = a[i];
    const double y = a[i + lag];
    xy += x * y;
    xx += x * x;
    yy += y * y;
  }
  return (xx > 0.0 && yy > 0.0) ? xy / std::sqrt(xx * yy) : 0.0;
}

}  // namespace

Stretcher::Stretcher(const Config& config) : config_(config) {
  const Config& c = config_;
  if (c.sample_rate < 8000 || c.sample_rate > 48000) {
    throw std::invalid_argument("stretch::Stretcher: sample_rate must be 8000..48000, got " +
                                std::to_string(c.sample_rate));
  }
  if (!(c.min_period_ms >= 1.0 && c.min_period_ms <= c.max_period_ms && c.max_period_ms <= 20.0)) {
    throw std::invalid_argument(
        "stretch::Stretcher: need 1 <= min_period_ms <= max_period_ms <= 20");
  }
  if (!(c.min_correlation > 0.0 && c.min_correlation <= 1.0)) {
    throw std::invalid_argument("stretch::Stretcher: min_correlation must be in (0, 1]");
  }
  if (c.min_level < 0 || c.min_level > 32767) {
    throw std::invalid_argument("stretch::Stretcher: min_level must be 0..32767");
  }
  const double per_ms = c.sample_rate / 1000.0;
  if (c.max_frame < static_cast<std::size_t>(2 * per_ms) || c.max_frame > 65536) {
    throw std::invalid_argument("stretch::Stretcher: max_frame must be 2 ms..65536 samples");
  }
  min_period_ = static_cast<std::uint32_t>(std::lround(c.min_period_ms * per_ms));
  max_period_ = static_cast<std::uint32_t>(std::lround(c.max_period_ms * per_ms));
  decimation_ = std::max<std::uint32_t>(1, c.sample_rate / 8000);
  low_.resize(c.max_frame / decimation_ + 1);
}

std::uint32_t Stretcher::max_period(std::size_t frame_size) const noexcept {
  return static_cast<std::uint32_t>(std::min<std::size_t>(max_period_, frame_size / 2));
}

std::pair<std::uint32_t, double> Stretcher::period(std::span<const std::int16_t> in) {
  const std::size_t n = in.size();
  if (n > config_.max_frame) {
    throw std::invalid_argument("stretch::Stretcher: frame of " + std::to_string(n) +
                                " samples, longer than max_frame");
  }
  const std::uint32_t hi = max_period(n);
  if (hi < min_period_ || hi == 0) return {0, 0.0};
  std::int64_t level = 0;
  for (const std::int16_t x : in) level += x < 0 ? -static_cast<std::int64_t>(x) : x;
  if (level <= static_cast<std::int64_t>(config_.min_level) * static_cast<std::int64_t>(n)) {
    return {0, 0.0};
  }
  const std::size_t w = n - hi;  // the correlation window: the same length for every lag

  // Coarse search on a box-filtered, decimated copy (about 8 kHz), then +-1 coarse step at
  // the full rate around the best coarse lag.
  std::uint32_t lo = min_period_;
  std::uint32_t top = hi;
  const std::uint32_t d = decimation_;
  if (d > 1) {
    const std::size_t nd = n / d;
    for (std::size_t j = 0; j < nd; ++j) {
      float sum = 0.0f;
      for (std::uint32_t k = 0; k < d; ++k) sum += static_cast<float>(in[j * d + k]);
      low_[j] = sum / static_cast<float>(d);
    }
    const std::uint32_t lo_d = (min_period_ + d - 1) / d;
    const std::uint32_t hi_d = hi / d;
    const std::size_t wd = w / d;
    if (lo_d <= hi_d && wd > 0 && hi_d + wd <= nd) {
      double best = -2.0;
      std::uint32_t at = lo_d;
      for (std::uint32_t p = lo_d; p <= hi_d; ++p) {
        const double c = correlation(low_.data(), wd, p);
        if (c > best) {
          best = c;
          at = p;
        }
      }
      lo = std::max(min_period_, at * d > d ? at * d - d : 1u);
      top = std::min(hi, at * d + d);
    }
  }
  double best = -2.0;
  std::uint32_t at = 0;
  for (std::uint32_t p = lo; p <= top; ++p) {
    const double c = correlation(in.data(), w, p);
    if (c > best) {
      best = c;
      at = p;
    }
  }
  return {at, std::max(best, 0.0)};
}

Result Stretcher::shorten(std::span<const std::int16_t> in, std::span<std::int16_t> out) {
  const std::size_t n = in.size();
  if (out.size() < n) throw std::invalid_argument("stretch::shorten: output too small");
  const auto [p, c] = period(in);
  Result r{n, 0, c};
  if (p == 0 || c < config_.min_correlation) {
    std::copy(in.begin(), in.end(), out.begin());
    return r;
  }
  // out[i] = x[i] fading out into x[i + p] over the first p samples (from exactly x[0] to
  // exactly x[2p - 1]), then x[i + p].
  const std::size_t fade = p;  // p <= n / 2
  for (std::size_t i = 0; i < fade; ++i) {
    const double g = fade > 1 ? static_cast<double>(i) / static_cast<double>(fade - 1) : 0.0;
    out[i] = to_pcm((1.0 - g) * in[i] + g * in[i + p]);
  }
  std::copy(in.begin() + static_cast<std::ptrdiff_t>(fade + p), in.end(),
            out.begin() + static_cast<std::ptrdiff_t>(fade));
  r.size = n - p;
  r.period = p;
  return r;
}

Result Stretcher::cut(std::span<const std::int16_t> in, std::span<std::int16_t> out,
                       std::size_t count) {
  const std::size_t n = in.size();
  if (out.size() < n) throw std::invalid_argument("stretch::cut: output too small");
  if (count > n / 2) throw std::invalid_argument("stretch::cut: count above half the frame");
  std::copy(in.begin(), in.end(), out.begin());
  Result r{n, 0, 0.0};
  if (count == 0) return r;
  std::int64_t level = 0;
  for (const std::int16_t x : in) level += x < 0 ? -static_cast<std::int64_t>(x) : x;
  const bool quiet =
      level <= 4 * static_cast<std::int64_t>(config_.min_level) * static_cast<std::int64_t>(n);
  if (!quiet) {
    const auto [p, c] = period(in);
    r.correlation = c;
    if (p == 0 || c >= kNoiseCorrelation) return r;
  }
  // Keep the first half of what stays, cross-fade into the audio `count` samples later,
  // keep the rest.
  const std::size_t keep = (n - count) / 2;
  const std::size_t fade =
      std::min<std::size_t>({count, n - count - keep, config_.sample_rate / 400});
  for (std::size_t i = 0; i < fade; ++i) {
    const double g = fade > 1 ? static_cast<double>(i) / static_cast<double>(fade - 1) : 1.0;
    out[keep + i] = to_pcm((1.0 - g) * in[keep + i] + g * in[keep + count + i]);
  }
  std::copy(in.begin() + static_cast<std::ptrdiff_t>(keep + count + fade), in.end(),
            out.begin() + static_cast<std::ptrdiff_t>(keep + fade));
  r.size = n - count;
  r.period = static_cast<std::uint32_t>(count);
  return r;
}

Result Stretcher::lengthen(std::span<const std::int16_t> in, std::span<std::int16_t> out) {
  const std::size_t n = in.size();
  const auto [p, c] = period(in);
  Result r{n, 0, c};
  if (out.size() < n + (p == 0 ? 0 : p)) {
    throw std::invalid_argument("stretch::lengthen: output too small");
  }
  if (p == 0 || c < config_.min_correlation) {
    std::copy(in.begin(), in.end(), out.begin());
    return r;
  }
  // out = x[0..p), then x[p..2p) fading out into x[0..p) (the period again), then x[p..n).
  const std::size_t fade = p;
  std::copy(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(p), out.begin());
  for (std::size_t i = 0; i < fade; ++i) {
    const double g = fade > 1 ? static_cast<double>(i) / static_cast<double>(fade - 1) : 0.0;
    out[p + i] = to_pcm((1.0 - g) * in[p + i] + g * in[i]);
  }
  std::copy(in.begin() + static_cast<std::ptrdiff_t>(p), in.end(),
            out.begin() + static_cast<std::ptrdiff_t>(p + fade));
  r.size = n + p;
  r.period = p;
  return r;
}

}  // namespace voxwire::stretch
