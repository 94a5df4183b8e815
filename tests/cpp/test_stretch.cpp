// Pitch-synchronous time-stretching (WSOLA-style): period search, shorten, lengthen.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

#include "voxwire/stretch.hpp"

namespace st = voxwire::stretch;

namespace {

// A harmonic tone of fundamental f0 with a few overtones, from sample `start` on.
std::vector<std::int16_t> voiced(std::uint32_t rate, double f0, std::size_t n,
                                 std::size_t start = 0) {
  std::vector<std::int16_t> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i + start) / rate;
    double v = 0.0;
    for (int h = 1; h <= 5; ++h) v += std::sin(2 * std::numbers::pi * f0 * h * t + h) / h;
    x[i] = static_cast<std::int16_t>(std::lround(6000.0 * v));
  }
  return x;
}

double snr_db(const std::vector<std::int16_t>& ref, const std::vector<std::int16_t>& got,
              std::size_t n) {
  double s = 0.0;
  double e = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    s += static_cast<double>(ref[i]) * ref[i];
    const double d = static_cast<double>(ref[i]) - got[i];
    e += d * d;
  }
  return 10.0 * std::log10(s / std::max(e, 1e-9));
}

// A frame of white Gaussian noise.
std::vector<std::int16_t> noise_frame(unsigned seed, double sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, sd);
  std::vector<std::int16_t> x(160);
  for (auto& v : x) v = static_cast<std::int16_t>(std::lround(g(rng)));
  return x;
}

}  // namespace

TEST(Stretch, FindsThePitchPeriod) {
  st::Stretcher s8;  // 8 kHz
  const auto [p, c] = s8.period(voiced(8000, 125.0, 160));
  EXPECT_EQ(p, 64u);
  EXPECT_GT(c, 0.99);
  st::Config c48;
  c48.sample_rate = 48000;
  st::Stretcher s48(c48);
  const auto [p48, r48] = s48.period(voiced(48000, 200.0, 960));
  EXPECT_NEAR(static_cast<double>(p48), 240.0, 1.0);
  EXPECT_GT(r48, 0.99);
}

// On a periodic signal, removing one period gives back the same signal, shorter: the
// output must match the original's first n - p samples.
TEST(Stretch, ShortenRemovesOnePeriodWithoutADiscontinuity) {
  st::Stretcher s;
  const auto x = voiced(8000, 125.0, 160);
  std::vector<std::int16_t> out(160);
  const st::Result r = s.shorten(x, out);
  ASSERT_EQ(r.period, 64u);
  ASSERT_EQ(r.size, 96u);
  EXPECT_EQ(out.front(), x.front());  // splices onto the audio before
  EXPECT_EQ(out[r.size - 1], x.back());  // and into the audio after
  EXPECT_GT(snr_db(x, out, r.size), 40.0);
}

TEST(Stretch, LengthenRepeatsOnePeriodWithoutADiscontinuity) {
  st::Stretcher s;
  const auto x = voiced(8000, 125.0, 160);
  const auto longer = voiced(8000, 125.0, 224);  // the same tone, one period more
  std::vector<std::int16_t> out(160 + s.max_period());
  const st::Result r = s.lengthen(x, out);
  ASSERT_EQ(r.period, 64u);
  ASSERT_EQ(r.size, 224u);
  EXPECT_EQ(out.front(), x.front());
  EXPECT_EQ(out[r.size - 1], x.back());
  EXPECT_GT(snr_db(longer, out, r.size), 40.0);
}

// A period that is not a whole number of samples (130 Hz at 8 kHz: 61.5 samples) still
// splices cleanly: the cross-fade covers the half-sample error.
TEST(Stretch, NonIntegerPeriodStaysClean) {
  st::Stretcher s;
  const auto x = voiced(8000, 130.0, 160);
  std::vector<std::int16_t> out(160);
  const st::Result r = s.shorten(x, out);
  ASSERT_TRUE(r.period == 61u || r.period == 62u) << r.period;
  // Against the ideal: the tone resumed a whole period later, i.e. itself.
  EXPECT_GT(snr_db(x, out, r.size), 20.0);
}

TEST(Stretch, NoiseAndSilenceAreLeftAlone) {
  st::Stretcher s;
  const std::vector<std::int16_t> noise = noise_frame(7, 3000.0);
  std::vector<std::int16_t> out(160 + s.max_period());
  st::Result r = s.shorten(noise, out);
  EXPECT_EQ(r.period, 0u);
  EXPECT_EQ(r.size, 160u);
  EXPECT_TRUE(std::equal(noise.begin(), noise.end(), out.begin()));
  r = s.lengthen(noise, out);
  EXPECT_EQ(r.period, 0u);
  const std::vector<std::int16_t> quiet(160, 20);
  r = s.shorten(quiet, out);
  EXPECT_EQ(r.period, 0u);
  EXPECT_EQ(r.size, 160u);
  // Too short to hold two of the shortest periods: copied.
  const auto tiny = voiced(8000, 125.0, 30);
  r = s.shorten(tiny, out);
  EXPECT_EQ(r.period, 0u);
  EXPECT_EQ(r.size, 30u);
}

TEST(Stretch, BoundsAndConfiguration) {
  st::Stretcher s;
  EXPECT_EQ(s.max_period(), 80u);     // 10 ms at 8 kHz
  EXPECT_EQ(s.max_period(100), 50u);  // at most half the frame
  const auto x = voiced(8000, 125.0, 160);
  std::vector<std::int16_t> small(100);
  EXPECT_THROW((void)s.shorten(x, small), std::invalid_argument);
  std::vector<std::int16_t> exact(160);
  EXPECT_THROW((void)s.lengthen(x, exact), std::invalid_argument);
  const std::vector<std::int16_t> huge(961);
  EXPECT_THROW((void)s.period(huge), std::invalid_argument);
  auto bad = [](auto edit) {
    st::Config c;
    edit(c);
    return [c] { st::Stretcher t(c); };
  };
  EXPECT_THROW(bad([](st::Config& c) { c.sample_rate = 4000; })(), std::invalid_argument);
  EXPECT_THROW(bad([](st::Config& c) { c.min_period_ms = 12.0; })(), std::invalid_argument);
  EXPECT_THROW(bad([](st::Config& c) { c.min_correlation = 0.0; })(), std::invalid_argument);
  EXPECT_THROW(bad([](st::Config& c) { c.min_level = -1; })(), std::invalid_argument);
  EXPECT_THROW(bad([](st::Config& c) { c.max_frame = 8; })(), std::invalid_argument);
}

TEST(Stretch, CutRemovesAnyAmountFromNoiseOrSilenceButNotFromVoice) {
  st::Stretcher s;
  const std::vector<std::int16_t> noise = noise_frame(3, 2000.0);
  std::vector<std::int16_t> out(160);
  st::Result r = s.cut(noise, out, 37);
  EXPECT_EQ(r.period, 37u);
  ASSERT_EQ(r.size, 123u);
  EXPECT_EQ(out.front(), noise.front());
  EXPECT_EQ(out[r.size - 1], noise.back());
  // the part kept before the splice is the input's, untouched
  EXPECT_TRUE(std::equal(noise.begin(), noise.begin() + 61, out.begin()));
  const std::vector<std::int16_t> quiet(160, 30);
  r = s.cut(quiet, out, 80);
  EXPECT_EQ(r.size, 80u);
  const auto tone = voiced(8000, 125.0, 160);
  r = s.cut(tone, out, 20);
  EXPECT_EQ(r.period, 0u);  // voiced: only whole periods may go (shorten)
  EXPECT_EQ(r.size, 160u);
  EXPECT_TRUE(std::equal(tone.begin(), tone.end(), out.begin()));
  EXPECT_EQ(s.cut(noise, out, 0).size, 160u);
  EXPECT_THROW((void)s.cut(noise, out, 81), std::invalid_argument);
}
