// Packet-loss concealment: continuation of periodic signals, fade-out, recovery, silence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <vector>

#include "voxwire/plc.hpp"

namespace plc = voxwire::plc;

namespace {

// A voiced-like signal: harmonics of f0 with falling amplitudes.
std::vector<std::int16_t> voiced(std::uint32_t rate, double f0, std::size_t n, double amp = 8000) {
  std::vector<std::int16_t> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    double v = 0;
    for (int h = 1; h <= 5; ++h) {
      v += std::sin(2 * std::numbers::pi * f0 * h * static_cast<double>(i) / rate + h) / h;
    }
    x[i] = static_cast<std::int16_t>(std::lrint(amp * v / 2));
  }
  return x;
}

double snr_db(const std::int16_t* ref, const std::int16_t* got, std::size_t n) {
  double s = 0;
  double e = 0;
  for (std::size_t i = 0; i < n; ++i) {
    s += static_cast<double>(ref[i]) * ref[i];
    const double d = static_cast<double>(ref[i]) - got[i];
    e += d * d;
  }
  return 10 * std::log10(s / std::max(e, 1e-9));
}

}  // namespace

TEST(Plc, ContinuesAPeriodicSignal) {
  for (const std::uint32_t rate : {8000u, 16000u, 48000u}) {
    const std::size_t frame = rate / 50;
    const auto x = voiced(rate, 160.0, 20 * frame);
    plc::Concealer c(rate);
    std::vector<std::int16_t> buf(x.begin(), x.begin() + 10 * static_cast<std::ptrdiff_t>(frame));
    for (std::size_t f = 0; f < 10; ++f) c.good(std::span(buf).subspan(f * frame, frame));
    std::vector<std::int16_t> out(frame / 2);  // the first 10 ms: no attenuation yet
    c.conceal(out);
    EXPECT_NEAR(static_cast<double>(c.pitch()) * 160.0 / rate, std::round(c.pitch() * 160.0 / rate), 0.02)
        << "pitch must be a whole number of periods, rate " << rate;
    EXPECT_GT(snr_db(x.data() + 10 * frame, out.data(), out.size()), 20.0) << rate;
  }
}

TEST(Plc, FadesToSilenceBySixtyMilliseconds) {
  const std::uint32_t rate = 8000;
  const auto x = voiced(rate, 120.0, 1600);
  plc::Concealer c(rate);
  std::vector<std::int16_t> buf(x);
  c.good(buf);
  std::vector<std::int16_t> out(80);  // 10 ms steps
  std::vector<double> peak;
  for (int k = 0; k < 8; ++k) {
    c.conceal(out);
    int m = 0;
    for (auto v : out) m = std::max(m, std::abs(int{v}));
    peak.push_back(m);
  }
  EXPECT_GT(peak[0], 3000);
  for (int k = 1; k < 6; ++k) EXPECT_LT(peak[static_cast<std::size_t>(k)], peak[0] * (1.0 - 0.2 * (k - 1)) + 1) << k;
  EXPECT_EQ(peak[6], 0);
  EXPECT_EQ(peak[7], 0);
  EXPECT_EQ(c.concealed_in_loss(), 640u);
}

TEST(Plc, SilenceStaysExactlySilent) {
  plc::Concealer c(16000);
  std::vector<std::int16_t> zeros(320, 0);
  c.good(zeros);
  std::vector<std::int16_t> out(320, 7);
  c.conceal(out);
  for (auto v : out) ASSERT_EQ(v, 0);
  std::vector<std::int16_t> again(320, 0);
  c.good(again);
  for (auto v : again) ASSERT_EQ(v, 0);
}

TEST(Plc, BeforeAnyAudioItWritesSilence) {
  plc::Concealer c(8000);
  std::vector<std::int16_t> out(160, 5);
  c.conceal(out);
  for (auto v : out) ASSERT_EQ(v, 0);
  EXPECT_EQ(c.pitch(), 0u);
}

TEST(Plc, RecoveryIsSmooth) {
  const std::uint32_t rate = 8000;
  const auto x = voiced(rate, 200.0, 4000);
  plc::Concealer c(rate);
  std::vector<std::int16_t> y(x);
  // Frames of 20 ms; frames 10 and 11 are lost.
  int biggest_jump_at_recovery = 0;
  int biggest_step_in_signal = 0;
  for (std::size_t i = 1; i < x.size(); ++i) {
    biggest_step_in_signal = std::max(biggest_step_in_signal, std::abs(x[i] - x[i - 1]));
  }
  for (std::size_t f = 0; f < 20; ++f) {
    auto frame = std::span(y).subspan(f * 160, 160);
    if (f == 10 || f == 11) {
      c.conceal(frame);
    } else {
      c.good(frame);
    }
    if (f == 12) biggest_jump_at_recovery = std::abs(y[12 * 160] - y[12 * 160 - 1]);
  }
  EXPECT_LE(biggest_jump_at_recovery, 2 * biggest_step_in_signal);
  // Outside the loss and its cross-fade the audio is untouched.
  // 40 ms lost: the cross-fade is 4 ms + 3 x 4 ms, capped at 10 ms (80 samples).
  for (std::size_t i = 12 * 160 + 80; i < x.size(); ++i) ASSERT_EQ(y[i], x[i]) << i;
  for (std::size_t i = 0; i < 10 * 160; ++i) ASSERT_EQ(y[i], x[i]) << i;
}

TEST(Plc, DeterministicAndReset) {
  const auto x = voiced(16000, 110.0, 3200);
  auto run = [&](plc::Concealer& c) {
    std::vector<std::int16_t> y(x);
    c.good(std::span(y).subspan(0, 1600));
    std::vector<std::int16_t> out(960);
    c.conceal(out);
    return out;
  };
  plc::Concealer a(16000);
  plc::Concealer b(16000);
  const auto first = run(a);
  EXPECT_EQ(first, run(b));
  a.reset();
  EXPECT_EQ(a.pitch(), 0u);
  EXPECT_EQ(first, run(a));
  EXPECT_THROW(plc::Concealer(7999), std::invalid_argument);
  EXPECT_THROW(plc::Concealer(48001), std::invalid_argument);
}

TEST(Plc, ShortHistoryAndTinyFrames) {
  plc::Concealer c(8000);
  std::vector<std::int16_t> few{100, -200, 300};
  c.good(few);
  std::vector<std::int16_t> out(200);
  c.conceal(out);  // fewer samples than one pitch period: repeats what there is
  EXPECT_NE(out[0], 0);
  std::vector<std::int16_t> one{5};
  c.good(one);
  EXPECT_EQ(c.concealed_in_loss(), 0u);
}
