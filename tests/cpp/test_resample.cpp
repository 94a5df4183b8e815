// Resampler: the filter design against its specification (frequency response computed from
// the coefficients in double precision), the latency budget for every pair of line and model
// rates, exact sample accounting, chunking independence to the bit, silence, clipping, reset
// and flush, and the signal path against an analytic tone.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <numeric>
#include <random>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "voxwire/resample.hpp"

namespace rs = voxwire::resample;
using rs::Quality;

namespace {

constexpr std::uint32_t kRates[] = {8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000};

// |H(f)| of the polyphase prototype relative to its DC gain, f in Hz. Its taps sit L per input
// sample, the last of branch p first; a constant time shift does not change |H|.
double response(const rs::Filter& f, std::uint32_t in_rate, double hz) {
  const std::size_t L = f.up();
  const std::size_t K = f.stride();
  const double w = -2.0 * std::numbers::pi * hz / (static_cast<double>(L) * in_rate);
  const std::complex<double> step(std::cos(w), std::sin(w));
  std::complex<double> rot(1.0, 0.0);
  std::complex<double> acc(0.0, 0.0);
  double dc = 0.0;
  for (std::size_t m = 0; m < L * K; ++m) {
    const std::size_t p = m % L;
    const std::size_t q = m / L;
    const double c = f.branch(p)[K - 1 - q];
    acc += c * rot;
    dc += c;
    rot *= step;
    if (m % 1024 == 1023) rot /= std::abs(rot);
  }
  return std::abs(acc) / dc;
}

struct Spec {
  double passband;
  double stopband;
  double ripple_db;
  double rejection_db;
  double max_latency;
};

Spec spec_of(Quality q) {
  return q == Quality::voice ? Spec{0.85, 1.15, 0.1, 80.0, 0.003}
                             : Spec{0.90, 1.10, 0.1, 100.0, 0.005};
}

template <class T>
std::vector<T> run_chunked(rs::Resampler& r, const std::vector<T>& x,
                           const std::vector<std::size_t>& cuts) {
  std::vector<T> y;
  std::size_t pos = 0;
  for (const std::size_t c : cuts) {
    const std::size_t n = std::min(c, x.size() - pos);
    std::vector<T> out(r.output_size(n));
    const std::size_t got = r.process(std::span<const T>(x.data() + pos, n), std::span<T>(out));
    EXPECT_EQ(got, out.size());
    y.insert(y.end(), out.begin(), out.end());
    pos += n;
  }
  std::vector<T> tail(r.flush_size());
  EXPECT_EQ(r.flush(std::span<T>(tail)), tail.size());
  y.insert(y.end(), tail.begin(), tail.end());
  return y;
}

std::vector<float> noise(std::size_t n, std::uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

std::vector<std::int16_t> noise16(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(-20000, 20000);
  std::vector<std::int16_t> x(n);
  for (auto& v : x) v = static_cast<std::int16_t>(dist(gen));
  return x;
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

}  // namespace

TEST(ResampleFilter, LatencyBudgetForEveryPair) {
  for (const auto q : {Quality::voice, Quality::high}) {
    for (const auto fi : kRates) {
      for (const auto fo : kRates) {
        const rs::Resampler r(fi, fo, q);
        EXPECT_LE(r.latency(), spec_of(q).max_latency) << fi << " -> " << fo;
        if (fi == fo) {
          EXPECT_EQ(r.latency(), 0.0);
        }
      }
    }
  }
  EXPECT_DOUBLE_EQ(rs::Resampler(8000, 16000).latency(), 20.0 / 8000.0);
  EXPECT_LE(rs::Resampler(16000, 8000).latency(), 20.0 / 8000.0);
  EXPECT_DOUBLE_EQ(rs::Resampler(8000, 16000, Quality::high).latency(), 36.0 / 8000.0);
}

TEST(ResampleFilter, BranchesHaveUnitDcGain) {
  const auto f = rs::Filter::get(44100, 16000, Quality::voice);
  ASSERT_EQ(f->up(), 160U);
  ASSERT_EQ(f->down(), 441U);
  for (std::size_t p = 0; p < f->up(); ++p) {
    const auto b = f->branch(p);
    const double s = std::accumulate(b.begin(), b.end(), 0.0);
    EXPECT_NEAR(s, 1.0, 1e-6) << "branch " << p;
  }
}

TEST(ResampleFilter, IntegerUpsamplingKeepsTheInputSamples) {
  // Branch 0 of an interpolator by an integer factor sits on the input samples: a unit pulse.
  const auto f = rs::Filter::get(8000, 24000, Quality::voice);
  const auto b = f->branch(0);
  for (std::size_t r = 0; r < b.size(); ++r) {
    EXPECT_EQ(b[r], r + 1 + f->lookahead() == f->stride() ? 1.0f : 0.0f) << r;
  }
}

class FilterResponse : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {
};

TEST_P(FilterResponse, MeetsThePresets) {
  const auto [fi, fo] = GetParam();
  for (const auto q : {Quality::voice, Quality::high}) {
    const Spec s = spec_of(q);
    const auto f = rs::Filter::get(fi, fo, q);
    const double nyq = std::min(fi, fo) / 2.0;
    double ripple = 0.0;
    for (int i = 0; i <= 200; ++i) {
      const double hz = s.passband * nyq * i / 200.0;
      ripple = std::max(ripple, std::abs(20.0 * std::log10(response(*f, fi, hz))));
    }
    EXPECT_LE(ripple, s.ripple_db) << fi << " -> " << fo << " " << rs::quality_name(q);
    // Stopband: from the edge up to three times the higher rate, on a grid of a quarter of a
    // sidelobe (sidelobes are in_rate / taps apart). The window's sidelobes fall further out.
    const double lo = s.stopband * nyq;
    const double hi = std::min(1.5 * std::max(fi, fo), 0.5 * f->up() * fi);
    const double step = fi / (4.0 * static_cast<double>(f->taps()));
    double worst = -400.0;
    for (double hz = lo; hz <= hi; hz += step) {
      worst = std::max(worst, 20.0 * std::log10(response(*f, fi, hz)));
    }
    EXPECT_LE(worst, -s.rejection_db) << fi << " -> " << fo << " " << rs::quality_name(q);
  }
}

INSTANTIATE_TEST_SUITE_P(Pairs, FilterResponse,
                         ::testing::Values(std::make_tuple(8000U, 16000U),
                                           std::make_tuple(16000U, 8000U),
                                           std::make_tuple(8000U, 11025U),
                                           std::make_tuple(24000U, 16000U),
                                           std::make_tuple(44100U, 16000U),
                                           std::make_tuple(48000U, 8000U)));

TEST(ResampleFilter, CacheSharesTablesPerRatio) {
  const auto a = rs::Filter::get(16000, 8000, Quality::voice);
  const auto b = rs::Filter::get(32000, 16000, Quality::voice);
  const auto c = rs::Filter::get(16000, 8000, Quality::high);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(&rs::Resampler(16000, 8000).filter(), a.get());
}

TEST(ResampleFilter, RejectsBadArguments) {
  EXPECT_THROW(rs::Resampler(0, 8000), std::invalid_argument);
  EXPECT_THROW(rs::Resampler(8000, 999), std::invalid_argument);
  EXPECT_THROW(rs::Resampler(8000, 384001), std::invalid_argument);
  EXPECT_THROW(rs::Resampler(44100, 44099), std::invalid_argument);  // 44099 branches
  EXPECT_THROW(rs::Resampler(384000, 1000), std::invalid_argument);  // filter too long
  EXPECT_THROW((void)rs::parse_quality("best"), std::invalid_argument);
  EXPECT_EQ(rs::parse_quality("high"), Quality::high);
  EXPECT_EQ(rs::quality_name(Quality::voice), "voice");
}

TEST(ResampleStream, StateIsSmall) { EXPECT_LE(sizeof(rs::Resampler), 4096U); }

TEST(ResampleStream, AccountingIsExact) {
  for (const auto& [fi, fo] : {std::pair{8000U, 16000U}, std::pair{16000U, 8000U},
                              std::pair{44100U, 16000U}, std::pair{22050U, 8000U},
                              std::pair{8000U, 44100U}, std::pair{16000U, 16000U}}) {
    rs::Resampler r(fi, fo);
    const std::uint64_t L = r.filter().up();
    const std::uint64_t M = r.filter().down();
    const std::uint64_t H = r.filter().lookahead();
    const auto x = noise16(5000, 1);
    std::mt19937 gen(fi + fo);
    std::uniform_int_distribution<std::size_t> len(0, 700);
    std::uint64_t n = 0;
    std::uint64_t m = 0;
    std::vector<std::int16_t> out(8000);
    while (n < x.size()) {
      const std::size_t c = std::min<std::size_t>(len(gen), x.size() - n);
      const std::size_t want = r.output_size(c);
      const std::size_t got =
          r.process(std::span<const std::int16_t>(x.data() + n, c), std::span<std::int16_t>(out));
      ASSERT_EQ(got, want);
      n += c;
      m += got;
      const std::uint64_t expect = n > H ? ceil_div((n - H) * L, M) : 0;
      ASSERT_EQ(m, expect) << fi << " -> " << fo << " after " << n;
      ASSERT_EQ(r.samples_in(), n);
      ASSERT_EQ(r.samples_out(), m);
      // The ideal count n * L / M less the reported latency, within one sample.
      const double ideal = static_cast<double>(n) * fo / fi - r.latency() * fo;
      ASSERT_LE(std::abs(static_cast<double>(m) - std::max(0.0, ideal)), 1.0);
    }
    const std::size_t tail = r.flush_size();
    ASSERT_EQ(r.flush(std::span<std::int16_t>(out)), tail);
    EXPECT_EQ(m + tail, ceil_div(n * L, M)) << fi << " -> " << fo;
    EXPECT_EQ(r.samples_in(), 0U);  // flush starts a new stream
  }
}

TEST(ResampleStream, FirstChunkProducesOutput) {
  rs::Resampler r(8000, 16000);
  std::vector<std::int16_t> x(160, 1000);
  EXPECT_EQ(r.output_size(160), 2 * (160 - 20));
}

TEST(ResampleStream, ChunkingDoesNotChangeABit) {
  for (const auto q : {Quality::voice, Quality::high}) {
    for (const auto& [fi, fo] : {std::pair{8000U, 16000U}, std::pair{48000U, 16000U},
                                std::pair{44100U, 16000U}, std::pair{8000U, 11025U},
                                std::pair{24000U, 8000U}}) {
      const auto x16 = noise16(6000, fi);
      const auto xf = noise(6000, fo, 0.9f);
      rs::Resampler r(fi, fo, q);
      const auto whole16 = run_chunked(r, x16, {x16.size()});
      const auto wholef = run_chunked(r, xf, {xf.size()});
      std::mt19937 gen(7);
      for (int trial = 0; trial < 4; ++trial) {
        std::vector<std::size_t> cuts;
        std::uniform_int_distribution<std::size_t> len(0, trial == 0 ? 1 : 2000);
        for (std::size_t total = 0; total < x16.size();) {
          cuts.push_back(len(gen));
          total += cuts.back();
        }
        EXPECT_EQ(run_chunked(r, x16, cuts), whole16) << fi << " -> " << fo;
        const auto yf = run_chunked(r, xf, cuts);
        ASSERT_EQ(yf.size(), wholef.size());
        EXPECT_EQ(std::memcmp(yf.data(), wholef.data(), yf.size() * sizeof(float)), 0);
      }
    }
  }
}

TEST(ResampleStream, SilenceGivesExactZeros) {
  for (const auto fi : kRates) {
    for (const auto fo : {8000U, 16000U, 44100U}) {
      rs::Resampler r(fi, fo);
      const std::vector<float> x(3000, 0.0f);
      const auto y = run_chunked(r, x, {1000, 1000, 1000});
      for (const float v : y) ASSERT_EQ(std::bit_cast<std::uint32_t>(v), 0U);
      // After a burst, zeros return exactly once the burst has left the window.
      rs::Resampler s(fi, fo);
      const auto burst = noise16(500, 3);
      std::vector<std::int16_t> out(s.output_size(burst.size()));
      s.process(std::span<const std::int16_t>(burst), std::span<std::int16_t>(out));
      const std::vector<std::int16_t> zeros(2 * s.filter().taps() + 64, 0);
      out.assign(s.output_size(zeros.size()), 1);
      s.process(std::span<const std::int16_t>(zeros), std::span<std::int16_t>(out));
      const std::size_t settled = out.size() - 32 * fo / fi;
      for (std::size_t i = settled; i < out.size(); ++i) ASSERT_EQ(out[i], 0) << i;
    }
  }
}

TEST(ResampleStream, ClippingIsSaturatedAndCounted) {
  // A full-scale square wave overshoots (Gibbs) after band limiting.
  std::vector<std::int16_t> x(4000);
  std::vector<float> xf(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = (i / 40) % 2 ? std::int16_t{-32768} : std::int16_t{32767};
    xf[i] = static_cast<float>(x[i]) / 32768.0f;
  }
  rs::Resampler r(16000, 48000);
  rs::Resampler rf(16000, 48000);
  const auto y = run_chunked(r, x, {x.size()});
  const auto yf = run_chunked(rf, xf, {xf.size()});
  ASSERT_EQ(y.size(), yf.size());
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double v = std::nearbyint(static_cast<double>(yf[i]) * 32768.0);
    const double s = std::clamp(v, -32768.0, 32767.0);
    expected += s != v;
    ASSERT_EQ(static_cast<double>(y[i]), s) << i;
  }
  EXPECT_GT(expected, 100U);
  EXPECT_EQ(r.clipped(), expected);  // flush keeps the count
  r.reset();
  EXPECT_EQ(r.clipped(), 0U);
}

TEST(ResampleStream, ResetRestartsTheStream) {
  rs::Resampler r(24000, 16000);
  const auto x = noise16(3000, 11);
  std::vector<std::int16_t> a(r.output_size(x.size()));
  r.process(std::span<const std::int16_t>(x), std::span<std::int16_t>(a));
  r.reset();
  EXPECT_EQ(r.samples_in(), 0U);
  std::vector<std::int16_t> b(r.output_size(x.size()));
  ASSERT_EQ(b.size(), a.size());
  r.process(std::span<const std::int16_t>(x), std::span<std::int16_t>(b));
  EXPECT_EQ(a, b);
}

TEST(ResampleStream, ShortOutputThrowsAndChangesNothing) {
  rs::Resampler r(8000, 16000);
  const auto x = noise16(400, 5);
  std::vector<std::int16_t> out(r.output_size(x.size()) - 1);
  EXPECT_THROW(r.process(std::span<const std::int16_t>(x), std::span<std::int16_t>(out)),
               std::invalid_argument);
  EXPECT_EQ(r.samples_in(), 0U);
  out.resize(out.size() + 1);
  EXPECT_EQ(r.process(std::span<const std::int16_t>(x), std::span<std::int16_t>(out)),
            out.size());
  std::vector<std::int16_t> tail(r.flush_size() - 1);
  EXPECT_THROW(r.flush(std::span<std::int16_t>(tail)), std::invalid_argument);
  EXPECT_EQ(r.samples_in(), 400U);
  EXPECT_THROW((void)r.output_size(rs::Resampler::kMaxBlock + 1), std::length_error);
}

TEST(ResampleStream, EqualRatesAreTheIdentity) {
  rs::Resampler r(16000, 16000);
  const auto x = noise16(1000, 9);
  const auto y = run_chunked(r, x, {1, 0, 500, 499});
  EXPECT_EQ(y, x);
}

TEST(ResampleStream, ToneMatchesTheAnalyticSignal) {
  // A 1 kHz tone at 8 kHz, converted to 16/44.1 kHz, against sin() at the output instants.
  // Past the start-up transient the error is the passband ripple (Kaiser: 10^(-A/20)).
  for (const auto q : {Quality::voice, Quality::high}) {
    for (const auto& [fi, fo, hz] : {std::tuple{8000U, 16000U, 1000.0},
                                    std::tuple{8000U, 44100U, 3300.0},
                                    std::tuple{48000U, 16000U, 6000.0},
                                    std::tuple{44100U, 16000U, 250.0}}) {
      rs::Resampler r(fi, fo, q);
      std::vector<float> x(fi / 2);
      for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = static_cast<float>(0.5 * std::sin(2.0 * std::numbers::pi * hz * static_cast<double>(i) / fi));
      }
      const auto y = run_chunked(r, x, {x.size()});
      double err = 0.0;
      double sig = 0.0;
      const std::size_t skip = fo / 50;  // 20 ms at each end
      for (std::size_t k = skip; k + skip < y.size(); ++k) {
        const double ideal = 0.5 * std::sin(2.0 * std::numbers::pi * hz * static_cast<double>(k) / fo);
        err += (y[k] - ideal) * (y[k] - ideal);
        sig += ideal * ideal;
      }
      const double snr = 10.0 * std::log10(sig / err);
      EXPECT_GE(snr, q == Quality::voice ? 80.0 : 100.0)
          << fi << " -> " << fo << " " << rs::quality_name(q);
    }
  }
}

namespace {

// The arithmetic resample.cpp defines, one output at a time in plain C++: integer-factor
// interpolation and ratios with at most 8 branches accumulate c[r] * x[r] with one fused
// multiply-add per tap in tap order; other ratios accumulate 8-float blocks into four
// accumulators (block b into b % 4) and reduce (a0 + a2) + (a1 + a3), then the lanes
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)). A unit-pulse branch copies.
std::vector<float> reference(const rs::Filter& f, const std::vector<float>& x) {
  const std::size_t L = f.up();
  const std::size_t M = f.down();
  const std::size_t S = f.stride();
  const std::size_t lead = S - 1 - f.lookahead();
  std::vector<float> ext(lead, 0.0f);
  ext.insert(ext.end(), x.begin(), x.end());
  ext.resize(ext.size() + S, 0.0f);
  const std::size_t total = (x.size() * L + M - 1) / M;
  std::vector<float> y(total);
  for (std::size_t k = 0; k < total; ++k) {
    const std::size_t i = k * M / L;
    const std::size_t p = k * M % L;
    const float* w = ext.data() + i;  // window start: input i - lead
    const auto c = f.branch(p);
    float acc = 0.0f;
    if (p == 0 && f.pulse() < S) {
      acc = w[f.pulse()];
    } else if ((M == 1 && L > 1) || (L <= 8 && M >= 2)) {
      for (std::size_t r = S - f.taps(); r < S; ++r) acc = std::fma(c[r], w[r], acc);
    } else {
      float a[4][8] = {};
      for (std::size_t r = 0; r < S; r += 8) {
        for (std::size_t l = 0; l < 8; ++l) {
          a[(r / 8) % 4][l] = std::fma(c[r + l], w[r + l], a[(r / 8) % 4][l]);
        }
      }
      float v[8];
      for (std::size_t l = 0; l < 8; ++l) v[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
      acc = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
    }
    y[k] = acc;
  }
  return y;
}

}  // namespace

TEST(ResampleStream, OutputIsTheDocumentedArithmeticToTheBit) {
  // Whatever kernel the CPU selects (AVX2 or portable), every output sample is exactly this.
  for (const auto q : {Quality::voice, Quality::high}) {
    for (const auto& [fi, fo] : {std::pair{8000U, 16000U}, std::pair{16000U, 48000U},
                                 std::pair{16000U, 8000U}, std::pair{48000U, 16000U},
                                 std::pair{44100U, 16000U}, std::pair{24000U, 16000U},
                                 std::pair{8000U, 11025U}, std::pair{16000U, 16000U},
                                 std::pair{16000U, 24000U}, std::pair{48000U, 8000U},
                                 std::pair{22050U, 8000U}}) {
      const auto x = noise(3001, fi ^ fo, 0.9f);
      rs::Resampler r(fi, fo, q);
      const auto y = run_chunked(r, x, {17, 1, 0, 1000, 333, 1650});
      const auto ref = reference(r.filter(), x);
      ASSERT_EQ(y.size(), ref.size());
      EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
          << fi << " -> " << fo << " " << rs::quality_name(q);
    }
  }
}

TEST(ResampleStream, RatesFarApartAreTheDocumentedArithmetic) {
  // 135 kHz -> 8 kHz: 8 branches, M = 135 and a 680-tap window, as long as a stream allows
  // (the decimator's phase split would not fit its stack buffer; the portable loop runs).
  rs::Resampler r(135000U, 8000U, Quality::voice);
  ASSERT_EQ(r.filter().up(), 8U);
  ASSERT_EQ(r.filter().down(), 135U);
  const auto x = noise(20000, 135, 0.9f);
  const auto y = run_chunked(r, x, {2700, 1, 999, 7000, 9300});
  const auto ref = reference(r.filter(), x);
  ASSERT_EQ(y.size(), ref.size());
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
}
