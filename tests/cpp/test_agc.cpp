// Gain control: config validation, the limiter's ceiling on every int16 value and on
// adversarial input, convergence to the target, gain held in pauses and in noise, zero
// latency (output independent of chunking), in-place use, reset and hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

#include "voxwire/agc.hpp"

namespace agc = voxwire::agc;

namespace {

using Pcm = std::vector<std::int16_t>;

std::int16_t sat(double v) {
  return static_cast<std::int16_t>(std::clamp(std::lround(v), -32768L, 32767L));
}

// Line noise of the given rms (dBFS), reproducible from the seed.
Pcm noise(std::size_t n, double dbfs, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 32768.0 * std::pow(10.0, dbfs / 20.0));
  Pcm out(n);
  for (auto& v : out) v = sat(dist(gen));
  return out;
}

// Speech-like audio over noise: 200 ms voiced syllables (harmonics of a gliding f0 up to
// 3 kHz under a raised-cosine envelope) with 60 ms gaps, in utterances of `syllables`,
// separated by `pause_s` of the noise alone. `dbfs` is the rms of the syllables.
Pcm speechy(int rate, int utterances, int syllables, double pause_s, double dbfs,
            double noise_dbfs, unsigned seed) {
  const auto syl = static_cast<std::size_t>(rate / 5);
  const auto gap = static_cast<std::size_t>(rate * 3 / 50);
  const auto pause = static_cast<std::size_t>(pause_s * rate);
  const std::size_t total = static_cast<std::size_t>(utterances) *
                            (pause + static_cast<std::size_t>(syllables) * (syl + gap)) + pause;
  Pcm x = noise(total, noise_dbfs, seed);
  std::vector<double> s(total, 0.0);
  std::mt19937 gen(seed + 1);
  std::uniform_real_distribution<double> f0s(100.0, 220.0);
  std::size_t at = pause;
  double sum = 0.0;
  std::size_t count = 0;
  for (int u = 0; u < utterances; ++u) {
    for (int k = 0; k < syllables; ++k) {
      const double f0 = f0s(gen);
      double phase = 0.0;
      for (std::size_t i = 0; i < syl; ++i) {
        const double t = static_cast<double>(i) / static_cast<double>(syl);
        phase += 2 * std::numbers::pi * f0 * (1.0 + 0.1 * t) / rate;
        double v = 0.0;
        for (int h = 1; h * f0 <= 3000; ++h) v += std::sin(h * phase) / h;
        const double env = 0.5 - 0.5 * std::cos(2 * std::numbers::pi * t);
        s[at + i] = v * env;
        sum += s[at + i] * s[at + i];
        ++count;
      }
      at += syl + gap;
    }
    at += pause;
  }
  const double scale = 32768.0 * std::pow(10.0, dbfs / 20.0) / std::sqrt(sum / static_cast<double>(count));
  for (std::size_t i = 0; i < total; ++i) x[i] = sat(x[i] + scale * s[i]);
  return x;
}

Pcm run(agc::Agc& a, const Pcm& x) {
  Pcm y(x.size());
  a.process(x, y);
  return y;
}

double rms_dbfs(const Pcm& x, std::size_t from, std::size_t to) {
  double sum = 0.0;
  for (std::size_t i = from; i < to; ++i) sum += static_cast<double>(x[i]) * x[i];
  return 10.0 * std::log10(sum / static_cast<double>(to - from) / (32768.0 * 32768.0));
}

std::int32_t peak(const Pcm& x) {
  std::int32_t p = 0;
  for (const auto v : x) p = std::max(p, std::abs(static_cast<std::int32_t>(v)));
  return p;
}

agc::Config config(int rate = 16000) {
  agc::Config c;
  c.sample_rate = rate;
  return c;
}

}  // namespace

TEST(AgcConfig, RejectsBadValues) {
  const auto bad = [](auto edit) {
    agc::Config c;
    edit(c);
    EXPECT_THROW(agc::validate(c), std::invalid_argument);
    EXPECT_THROW(agc::Agc{c}, std::invalid_argument);
  };
  bad([](agc::Config& c) { c.sample_rate = 11025; });
  bad([](agc::Config& c) { c.target_dbfs = -3.0; });
  bad([](agc::Config& c) { c.target_dbfs = std::nan(""); });
  bad([](agc::Config& c) { c.max_gain_db = 61.0; });
  bad([](agc::Config& c) { c.min_gain_db = 1.0; });
  bad([](agc::Config& c) { c.initial_gain_db = 31.0; });
  bad([](agc::Config& c) { c.ceiling_dbfs = 0.5; });
  bad([](agc::Config& c) { c.rise_db_per_s = 0.0; });
  bad([](agc::Config& c) { c.fall_db_per_s = 201.0; });
  bad([](agc::Config& c) { c.level_window_s = 0.0; });
  bad([](agc::Config& c) { c.limiter_release_ms = 0.5; });
  bad([](agc::Config& c) { c.vad_sensitivity = -0.1; });
  agc::validate(agc::Config{});
}

TEST(AgcConfig, ErrorNamesFieldAndValue) {
  agc::Config c;
  c.max_gain_db = 75.0;
  try {
    agc::validate(c);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("max_gain_db"), std::string::npos) << what;
    EXPECT_NE(what.find("75"), std::string::npos) << what;
  }
}

TEST(AgcLimiter, EveryInt16ValueAtEveryCeilingStaysUnder) {
  // All 65,536 values, in a shuffled order and as a rising ramp, at the largest gain.
  Pcm all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int16_t>(i - 32768);
  Pcm shuffled = all;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(5));
  for (const double ceiling : {0.0, -0.1, -1.0, -6.0, -20.0}) {
    for (const double gain : {0.0, 20.0, 60.0}) {
      agc::Config c = config();
      c.max_gain_db = 60.0;
      c.initial_gain_db = gain;
      c.ceiling_dbfs = ceiling;
      agc::Agc a(c);
      const auto limit = static_cast<std::int32_t>(std::floor(32768.0 * std::pow(10.0, ceiling / 20)));
      EXPECT_EQ(a.ceiling(), std::min(32767, limit));
      for (const Pcm* x : {&shuffled, &all}) {
        EXPECT_LE(peak(run(a, *x)), a.ceiling()) << "ceiling " << ceiling << " gain " << gain;
      }
    }
  }
}

TEST(AgcLimiter, AdversarialInputAfterTheGainRoseToItsMaximum) {
  for (const int rate : {8000, 16000, 48000}) {
    agc::Config c = config(rate);
    c.max_gain_db = 40.0;
    agc::Agc a(c);
    // Very quiet speech lifts the gain to its maximum...
    const Pcm quiet = speechy(rate, 6, 5, 0.4, -75.0 + 12.0, -90.0, 3);
    run(a, quiet);
    ASSERT_GT(a.gain_db(), 30.0) << rate;
    // ...then the worst a line can send: full-scale square waves, lone impulses after
    // silence, and alternating extremes.
    Pcm x;
    for (int k = 0; k < 40; ++k) x.push_back(k % 20 < 10 ? 32767 : -32768);
    x.insert(x.end(), static_cast<std::size_t>(rate), 0);
    x.push_back(-32768);
    x.insert(x.end(), 37, 0);
    x.push_back(32767);
    for (int k = 0; k < rate; ++k) x.push_back(k % 2 ? 32767 : -32768);
    std::mt19937 gen(9);
    std::uniform_int_distribution<int> any(-32768, 32767);
    for (int k = 0; k < rate; ++k) x.push_back(static_cast<std::int16_t>(any(gen)));
    const Pcm y = run(a, x);
    EXPECT_LE(peak(y), a.ceiling()) << rate;
    EXPECT_GT(a.limited_samples(), 0) << rate;
  }
}

TEST(AgcLimiter, LeavesQuietAudioAlone) {
  agc::Config c = config();
  c.initial_gain_db = 6.0;
  agc::Agc a(c);
  const Pcm x = noise(16000, -40.0, 2);  // peaks near -28 dBFS: far under the ceiling at +6 dB
  const Pcm y = run(a, x);
  EXPECT_EQ(a.limited_samples(), 0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(y[i], sat(x[i] * std::pow(10.0, 6.0 / 20))) << i;  // noise never moves the gain
  }
}

TEST(AgcGain, ConvergesToTheTargetFromEveryLevel) {
  for (const int rate : {8000, 16000}) {
    for (const double level : {-50.0, -40.0, -26.0, -15.0, -8.0}) {
      agc::Agc a(config(rate));
      const Pcm x = speechy(rate, 8, 6, 0.5, level, level - 35.0, 4);
      const Pcm y = run(a, x);
      // The speech level estimate and the output level of the last utterance.
      EXPECT_NEAR(a.speech_level_dbfs(), level, 2.0) << rate << " " << level;
      const auto syl = static_cast<std::size_t>(rate / 5);
      const auto gap = static_cast<std::size_t>(rate * 3 / 50);
      const std::size_t end = y.size() - static_cast<std::size_t>(0.5 * rate) - gap;
      const std::size_t start = end - 6 * (syl + gap) + gap;
      EXPECT_NEAR(rms_dbfs(y, start, end) - rms_dbfs(x, start, end) + level, -26.0, 1.5)
          << rate << " " << level;
    }
  }
}

TEST(AgcGain, StaysWithinItsBounds) {
  agc::Config c = config();
  c.max_gain_db = 12.0;
  c.min_gain_db = -6.0;
  agc::Agc quiet(c);
  run(quiet, speechy(16000, 6, 5, 0.3, -60.0, -95.0, 5));
  EXPECT_NEAR(quiet.gain_db(), 12.0, 1e-9);
  agc::Agc loud(c);
  run(loud, speechy(16000, 6, 5, 0.3, -6.0, -60.0, 6));
  EXPECT_NEAR(loud.gain_db(), -6.0, 1e-9);
}

TEST(AgcGain, HeldThroughPausesAndNoise) {
  agc::Agc a(config());
  run(a, speechy(16000, 4, 6, 0.4, -45.0, -80.0, 7));
  const double before = a.target_gain_db();
  ASSERT_GT(before, 10.0);
  const std::int64_t frames = a.speech_frames();
  // Ten seconds of the line noise alone, then digital silence: the gain does not move.
  run(a, noise(160000, -80.0, 8));
  run(a, Pcm(160000, 0));
  EXPECT_EQ(a.target_gain_db(), before);
  EXPECT_EQ(a.speech_frames(), frames);
  // Line noise 20 dB louder at once: the VAD takes it for speech until its noise floor
  // catches up, the steadiness test stops it within 200 ms.
  run(a, noise(160000, -60.0, 9));
  EXPECT_LE(a.speech_frames() - frames, 20);
  EXPECT_NEAR(a.target_gain_db(), before, 2.0);
}

TEST(AgcGain, NoiseAloneNeverMovesTheGain) {
  for (const double level : {-85.0, -60.0, -40.0, -20.0}) {
    agc::Agc a(config());
    run(a, noise(16000 * 20, level, 10));
    EXPECT_EQ(a.target_gain_db(), 0.0) << level;
    EXPECT_EQ(a.speech_frames(), 0) << level;
  }
}

TEST(AgcGain, AttackOnAStepUpAndReleaseOnAStepDown) {
  agc::Agc a(config());
  run(a, speechy(16000, 3, 6, 0.3, -46.0, -85.0, 11));
  EXPECT_NEAR(a.target_gain_db(), 20.0, 1.5);
  // 20 dB louder: the gain falls by 20 dB within about half a second of speech, at most
  // fall_db_per_s (40 dB/s) fast.
  const Pcm loud = speechy(16000, 1, 10, 0.0, -26.0, -65.0, 12);
  Pcm head(loud.begin(), loud.begin() + 16000 / 4);
  run(a, head);
  EXPECT_GE(a.target_gain_db(), 20.0 - 40.0 * 0.25 - 1.5);
  run(a, Pcm(loud.begin() + 16000 / 4, loud.end()));
  EXPECT_NEAR(a.target_gain_db(), 0.0, 2.0);
  // Back down by 20 dB: the gain rises no faster than rise_db_per_s (10 dB/s) and is back
  // within 2 dB of +20 dB after a few seconds of the quieter speech.
  const Pcm quiet = speechy(16000, 4, 5, 0.2, -46.0, -85.0, 13);
  double g = a.target_gain_db();
  for (std::size_t at = 0; at < quiet.size(); at += 1600) {
    run(a, Pcm(quiet.begin() + static_cast<std::ptrdiff_t>(at),
               quiet.begin() + static_cast<std::ptrdiff_t>(std::min(quiet.size(), at + 1600))));
    EXPECT_LE(a.target_gain_db() - g, 10.0 * 0.1 + 1e-9) << at;
    g = a.target_gain_db();
  }
  EXPECT_NEAR(a.target_gain_db(), 20.0, 2.0);
}

TEST(AgcStream, OutputIsIndependentOfChunkingAndInPlaceWorks) {
  const Pcm x = speechy(16000, 4, 5, 0.3, -40.0, -70.0, 14);
  agc::Agc whole(config());
  const Pcm expect = run(whole, x);
  std::mt19937 gen(15);
  std::uniform_int_distribution<std::size_t> len(0, 700);
  for (int trial = 0; trial < 3; ++trial) {
    agc::Agc a(config());
    Pcm y = x;  // processed in place, chunk by chunk
    std::size_t at = 0;
    while (at < y.size()) {
      const std::size_t n = std::min(len(gen), y.size() - at);
      const std::span<std::int16_t> s(y.data() + at, n);
      EXPECT_EQ(a.process(s, s), n);
      at += n;
    }
    EXPECT_EQ(y, expect) << trial;
    EXPECT_EQ(a.samples(), static_cast<std::int64_t>(x.size()));
  }
}

TEST(AgcStream, ZeroLatencyAnImpulseComesOutOnItsOwnSample) {
  agc::Agc a(config());
  Pcm x(1000, 0);
  x[123] = 1000;
  const Pcm y = run(a, x);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i]) << i;
}

TEST(AgcStream, ResetAndHold) {
  const Pcm x = speechy(16000, 3, 5, 0.3, -45.0, -80.0, 16);
  agc::Agc a(config());
  const Pcm first = run(a, x);
  a.reset();
  EXPECT_EQ(a.samples(), 0);
  EXPECT_TRUE(std::isinf(a.speech_level_dbfs()));
  EXPECT_EQ(run(a, x), first);

  agc::Agc held(config());
  held.set_hold(true);
  EXPECT_TRUE(held.hold());
  run(held, x);
  EXPECT_EQ(held.target_gain_db(), 0.0);
  EXPECT_EQ(held.speech_frames(), 0);
  held.set_hold(false);
  run(held, x);
  EXPECT_GT(held.target_gain_db(), 10.0);
}

TEST(AgcStream, ShortOutputThrows) {
  agc::Agc a(config());
  Pcm x(10, 0);
  Pcm y(9, 0);
  EXPECT_THROW(a.process(x, y), std::invalid_argument);
  EXPECT_EQ(a.samples(), 0);
}
