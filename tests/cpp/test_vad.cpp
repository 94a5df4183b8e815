// VAD kernel: config validation, segmenter semantics against a hand-worked timeline,
// onset/offset on tone bursts, noise-floor adaptation, batch == streaming, determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

#include "voxwire/vad.hpp"

namespace vad = voxwire::vad;

namespace {

// White Gaussian noise of the given rms, reproducible from the seed.
std::vector<std::int16_t> noise(std::size_t n, double rms, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, rms);
  std::vector<std::int16_t> out(n);
  for (auto& v : out) v = static_cast<std::int16_t>(std::clamp(std::lround(dist(gen)), -32768L, 32767L));
  return out;
}

// Adds a harmonic tone burst (200 Hz and harmonics to 3 kHz, speech-like) over [from, to).
void add_burst(std::vector<std::int16_t>& x, std::size_t from, std::size_t to, double amp,
               int rate) {
  for (std::size_t i = from; i < to && i < x.size(); ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0.0;
    for (int h = 1; h * 200 <= 3000; ++h) v += std::sin(2 * std::numbers::pi * 200 * h * t) / h;
    const long s = std::lround(x[i] + amp * v);
    x[i] = static_cast<std::int16_t>(std::clamp(s, -32768L, 32767L));
  }
}

struct Frames {
  std::vector<vad::FrameResult> frames;
};

Frames run(vad::Detector& d, const std::vector<std::int16_t>& x) {
  Frames r;
  const std::size_t f = d.frame_samples();
  for (std::size_t i = 0; i + f <= x.size(); i += f) {
    r.frames.push_back(d.process(std::span<const std::int16_t>(x).subspan(i, f)));
  }
  return r;
}

}  // namespace

TEST(VadConfig, RejectsBadValues) {
  vad::Config c;
  EXPECT_NO_THROW(vad::validate(c));
  for (int rate : {0, 11025, 22050, 44100, 96000}) {
    c = {};
    c.sample_rate = rate;
    EXPECT_THROW(vad::validate(c), std::invalid_argument) << rate;
  }
  for (int ms : {0, 5, 15, 32, 40}) {
    c = {};
    c.frame_ms = ms;
    EXPECT_THROW(vad::Detector{c}, std::invalid_argument) << ms;
  }
  c = {};
  c.hangover_ms = 501;
  EXPECT_THROW(vad::validate(c), std::invalid_argument);
  c = {};
  c.hangover_ms = -1;
  EXPECT_THROW(vad::validate(c), std::invalid_argument);
  c = {};
  c.stop_threshold = 0.6;  // above start_threshold
  EXPECT_THROW(vad::validate(c), std::invalid_argument);
  c = {};
  c.sensitivity = std::nan("");
  EXPECT_THROW(vad::validate(c), std::invalid_argument);
  c = {};
  c.min_speech_ms = 1001;
  EXPECT_THROW(vad::validate(c), std::invalid_argument);
}

TEST(VadConfig, ErrorNamesFieldAndValue) {
  vad::Config c;
  c.sample_rate = 44100;
  try {
    vad::validate(c);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sample_rate"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("44100"), std::string::npos);
  }
}

TEST(VadDetector, FrameLengthsForEveryRate) {
  for (int rate : vad::kRates) {
    for (int ms : vad::kFrameMs) {
      vad::Config c;
      c.sample_rate = rate;
      c.frame_ms = ms;
      vad::Detector d(c);
      EXPECT_EQ(d.frame_samples(), static_cast<std::size_t>(rate / 1000 * ms));
      std::vector<std::int16_t> wrong(d.frame_samples() + 1);
      EXPECT_THROW(d.process(wrong), std::invalid_argument);
      // Silence, noise and a loud burst run cleanly at every rate and frame length.
      auto x = noise(static_cast<std::size_t>(rate), 50.0, 1);
      add_burst(x, x.size() / 2, x.size(), 6000.0, rate);
      const Frames r = run(d, x);
      EXPECT_FALSE(r.frames.front().speech);
      EXPECT_TRUE(r.frames.back().speech) << rate << " Hz " << ms << " ms";
      for (const auto& f : r.frames) {
        EXPECT_GE(f.score, 0.0F);
        EXPECT_LE(f.score, 1.0F);
      }
    }
  }
}

TEST(VadSegmenter, MinimumSpeechAndHangoverTimeline) {
  // 160-sample frames, start after 3 speech frames, end after 2 silent ones.
  vad::Segmenter s(160, 3, 2);
  const bool in[] = {false, true, true, false, true, true, true, true, false, true, false,
                     false, false};
  std::vector<vad::FrameResult> out;
  for (bool b : in) {
    vad::FrameResult r;
    s.step(b, r);
    out.push_back(r);
  }
  // Frames 1-2 are too short a run; the run 4-6 starts the utterance at frame 6 with the
  // timestamp of frame 4.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)].event, vad::EventKind::none);
  EXPECT_EQ(out[6].event, vad::EventKind::start);
  EXPECT_EQ(out[6].event_sample, 4 * 160);
  EXPECT_TRUE(out[6].active);
  // One silent frame (8) is bridged; frames 10 and 11 end it at the end of frame 9.
  EXPECT_EQ(out[8].event, vad::EventKind::none);
  EXPECT_TRUE(out[10].active);
  EXPECT_EQ(out[11].event, vad::EventKind::end);
  EXPECT_EQ(out[11].event_sample, 10 * 160);
  EXPECT_FALSE(out[11].active);
  EXPECT_EQ(out[12].event, vad::EventKind::none);
  EXPECT_EQ(s.frames(), 13);
  s.reset();
  EXPECT_EQ(s.frames(), 0);
  EXPECT_FALSE(s.active());
}

TEST(VadSegmenter, ZeroHangoverEndsOnFirstSilentFrame) {
  vad::Segmenter s(80, 1, 0);
  vad::FrameResult r;
  s.step(true, r);
  EXPECT_EQ(r.event, vad::EventKind::start);
  EXPECT_EQ(r.event_sample, 0);
  s.step(false, r);
  EXPECT_EQ(r.event, vad::EventKind::end);
  EXPECT_EQ(r.event_sample, 80);
  EXPECT_THROW(vad::Segmenter(0, 1, 0), std::invalid_argument);
  EXPECT_THROW(vad::Segmenter(80, 0, 0), std::invalid_argument);
}

TEST(VadDetector, ToneBurstOnsetAndOffsetAreFrameExact) {
  vad::Config c;
  c.sample_rate = 8000;
  c.frame_ms = 20;
  c.hangover_ms = 100;
  vad::Detector d(c);
  auto x = noise(8000 * 3, 30.0, 2);
  add_burst(x, 8000, 16000, 3000.0, 8000);  // 1.0 s to 2.0 s: frames 50..99
  const Frames r = run(d, x);
  std::vector<std::pair<vad::EventKind, std::int64_t>> events;
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < r.frames.size(); ++i) {
    if (r.frames[i].event != vad::EventKind::none) {
      events.emplace_back(r.frames[i].event, r.frames[i].event_sample);
      at.push_back(i);
    }
  }
  ASSERT_EQ(events.size(), 2U);
  EXPECT_EQ(events[0].first, vad::EventKind::start);
  EXPECT_EQ(events[0].second, 8000);
  EXPECT_EQ(at[0], 50U);  // decided on the burst's first frame
  EXPECT_EQ(events[1].first, vad::EventKind::end);
  EXPECT_EQ(events[1].second, 16000);
  EXPECT_EQ(at[1], 104U);  // 100 ms (5 frames) of hangover after frame 99
}

TEST(VadDetector, ClickAloneIsNotSpeech) {
  vad::Config c;
  c.sample_rate = 16000;
  vad::Detector d(c);
  auto x = noise(16000 * 2, 40.0, 3);
  // A 1 ms decaying click in the last quarter of frame 60.
  for (std::size_t i = 0; i < 16; ++i) {
    x[60 * 320 + 250 + i] = static_cast<std::int16_t>((i % 2 ? -1.0 : 1.0) * 12000.0 * std::exp(-0.3 * static_cast<double>(i)));
  }
  const Frames r = run(d, x);
  for (std::size_t i = 0; i < r.frames.size(); ++i) EXPECT_FALSE(r.frames[i].speech) << i;
}

TEST(VadDetector, NoiseFloorFollowsAStepUpWithinASecondAndDownQuickly) {
  vad::Config c;
  c.sample_rate = 16000;
  vad::Detector d(c);
  // 2 s of quiet noise, then 3 s 20 dB louder, then quiet again.
  auto quiet1 = noise(32000, 30.0, 4);
  auto loud = noise(48000, 300.0, 5);
  auto quiet2 = noise(32000, 30.0, 6);
  std::vector<double> floor;
  std::vector<bool> speech;
  for (const auto* part : {&quiet1, &loud, &quiet2}) {
    for (std::size_t i = 0; i + 320 <= part->size(); i += 320) {
      speech.push_back(d.process(std::span<const std::int16_t>(*part).subspan(i, 320)).speech);
      floor.push_back(d.noise_floor_db());
    }
  }
  const double quiet_db = floor[99];
  const double loud_db = floor[100 + 149];
  EXPECT_NEAR(loud_db - quiet_db, 20.0, 1.5);
  // Within 1.1 s of the step (55 frames) the floor has caught up and the noise is no
  // longer taken for speech.
  EXPECT_NEAR(floor[100 + 55], loud_db, 1.5);
  for (std::size_t i = 100 + 56; i < 250; ++i) EXPECT_FALSE(speech[i]) << i;
  // Back down: followed as fast as the band-power smoothing (60 ms) lets it.
  EXPECT_NEAR(floor[250 + 25], quiet_db, 1.5);
}

TEST(VadDetector, BatchEqualsStreamingAndIsDeterministic) {
  vad::Config c;
  c.sample_rate = 16000;
  c.frame_ms = 10;
  c.min_speech_ms = 30;
  auto x = noise(16000 * 4, 80.0, 7);
  add_burst(x, 16000, 30000, 2000.0, 16000);
  add_burst(x, 40000, 41000, 2000.0, 16000);
  vad::Detector a(c);
  vad::Detector b(c);
  const Frames r = run(a, x);
  const std::size_t n = x.size() / 160;
  std::vector<float> scores(n);
  std::vector<std::uint8_t> flags(n);
  std::vector<std::int64_t> at(n);
  ASSERT_EQ(b.process_batch(x, scores, flags, at), n);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(scores[i], r.frames[i].score);
    EXPECT_EQ((flags[i] & vad::kSpeech) != 0, r.frames[i].speech);
    EXPECT_EQ((flags[i] & vad::kActive) != 0, r.frames[i].active);
    EXPECT_EQ((flags[i] & vad::kStart) != 0, r.frames[i].event == vad::EventKind::start);
    EXPECT_EQ((flags[i] & vad::kEnd) != 0, r.frames[i].event == vad::EventKind::end);
    EXPECT_EQ(at[i], r.frames[i].event_sample);
  }
  // reset() gives the same run again.
  b.reset();
  EXPECT_EQ(b.frames(), 0);
  const Frames again = run(b, x);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(again.frames[i].score, r.frames[i].score);
  // Bad batch shapes.
  std::vector<std::int16_t> odd(161);
  EXPECT_THROW(b.process_batch(odd, scores, flags), std::invalid_argument);
  std::vector<float> short_scores(n - 1);
  EXPECT_THROW(b.process_batch(x, short_scores, flags), std::invalid_argument);
}

TEST(VadDetector, FullScaleInputDoesNotOverflow) {
  for (int rate : {8000, 48000}) {
    vad::Config c;
    c.sample_rate = rate;
    c.frame_ms = 30;
    vad::Detector d(c);
    std::vector<std::int16_t> x(d.frame_samples());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i / 7) % 2 ? -32768 : 32767;
    const auto r = d.process(x);
    EXPECT_TRUE(std::isfinite(r.score));
    std::vector<std::int16_t> flat(d.frame_samples(), -32768);
    EXPECT_TRUE(std::isfinite(d.process(flat).score));
  }
}
