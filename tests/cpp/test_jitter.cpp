// Jitter buffer: ordering, labels, FEC, adjustments, delay adaptation, bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "voxwire/jitter.hpp"

namespace jb = voxwire::jitter;

namespace {

constexpr std::uint16_t kSeq0 = 65500;
constexpr std::uint32_t kTs0 = 0xFFFFF000u;

// The payload of frame i: four bytes naming it, so a test can tell which packet it got.
std::vector<std::byte> payload_of(std::int64_t i) {
  std::vector<std::byte> p(4);
  for (int b = 0; b < 4; ++b) p[static_cast<std::size_t>(b)] = static_cast<std::byte>((i >> (8 * b)) & 0xFF);
  return p;
}

std::int64_t id_of(std::span<const std::byte> p) {
  std::uint32_t v = 0;
  for (int b = 3; b >= 0; --b) v = (v << 8) | std::to_integer<std::uint32_t>(p[static_cast<std::size_t>(b)]);
  return static_cast<std::int32_t>(v);
}

struct Feeder {
  jb::Buffer& buf;
  std::vector<std::vector<std::byte>> keep;  // payload storage outlives insert()

  jb::InsertResult put(std::int64_t i, std::int64_t arrival, bool fec = false, bool quiet = false,
                       std::int64_t seq_offset = 0) {
    keep.push_back(payload_of(i));
    jb::Packet p;
    p.sequence = static_cast<std::uint16_t>(kSeq0 + i + seq_offset);
    p.timestamp = static_cast<std::uint32_t>(kTs0 + 160 * static_cast<std::uint32_t>(i));
    p.has_fec = fec;
    p.low_energy = quiet;
    p.payload = keep.back();
    return buf.insert(p, arrival);
  }
};

// Checks the order contract on a sequence of units: frames never go back, a frame is handed
// out with data at most once, and only units that advance may follow each other on a frame.
struct OrderChecker {
  std::int64_t last_frame = INT64_MIN;
  std::set<std::int64_t> played;
  bool started = false;

  void check(const jb::Unit& u) {
    if (u.kind == jb::Kind::silence && !started) return;
    if (u.kind == jb::Kind::normal || u.kind == jb::Kind::fec) {
      EXPECT_TRUE(played.insert(u.frame).second) << "frame " << u.frame << " played twice";
      EXPECT_GT(u.frame, last_frame) << "out of order";
      last_frame = u.frame;
      started = true;
    } else if (started) {
      EXPECT_GT(u.frame, last_frame - 1);
    }
  }
};

}  // namespace

TEST(Jitter, ConfigValidation) {
  auto bad = [](auto mutate) {
    jb::Config c;
    mutate(c);
    EXPECT_THROW(jb::Buffer{c}, std::invalid_argument);
  };
  bad([](jb::Config& c) { c.frame_ms = 30; });
  bad([](jb::Config& c) { c.clock_rate = 0; });
  bad([](jb::Config& c) { c.capacity = 1; });
  bad([](jb::Config& c) { c.max_delay_ms = 5000; });
  bad([](jb::Config& c) { c.min_delay_ms = 2000; });
  bad([](jb::Config& c) { c.quantile = 0.2; });
  bad([](jb::Config& c) { c.forget = 1.5; });
  bad([](jb::Config& c) { c.max_payload = 0; });
  jb::Config ok;
  ok.frame_ms = 10;
  ok.max_delay_ms = 600;
  jb::Buffer b(ok);
  EXPECT_EQ(b.samples_per_frame(), 80u);
}

TEST(Jitter, SilenceBeforeFirstPacketAndDuringInitialBuffering) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  EXPECT_EQ(buf.pull(0).kind, jb::Kind::silence);
  ASSERT_EQ(f.put(0, 1000), jb::InsertResult::stored);
  // Initial target 60 ms: the first frame is due at 1060.
  EXPECT_EQ(buf.target_delay_ms(), 60);
  EXPECT_EQ(buf.pull(1000).kind, jb::Kind::silence);
  EXPECT_EQ(buf.pull(1020).kind, jb::Kind::silence);
  f.put(1, 1020);
  f.put(2, 1040);
  f.put(3, 1060);
  const auto u = buf.pull(1060);
  EXPECT_EQ(u.kind, jb::Kind::normal);
  EXPECT_EQ(u.frame, 0);
  EXPECT_EQ(u.sequence, kSeq0);
  EXPECT_EQ(u.timestamp, kTs0);
  EXPECT_EQ(id_of(u.payload), 0);
  EXPECT_EQ(u.delay_ms, 60);
  EXPECT_EQ(buf.stats().silent_concealed_samples, 0u);
}

TEST(Jitter, CleanStreamAcrossBothWraparoundsPlaysEveryFrameOnceInOrder) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  OrderChecker order;
  std::int64_t expected = 0;
  for (std::int64_t t = 0; t < 3000 * 20; t += 20) {
    f.put(t / 20, 500 + t + 5);
    const auto u = buf.pull(500 + t + 10);
    order.check(u);
    if (u.kind == jb::Kind::normal) {
      EXPECT_EQ(id_of(u.payload), u.frame);
      EXPECT_EQ(u.timestamp, static_cast<std::uint32_t>(kTs0 + 160u * static_cast<std::uint32_t>(u.frame)));
      if (u.adjustment == jb::Adjustment::none) {
        EXPECT_EQ(u.frame, expected);
      }
      expected = u.frame + 1;
    }
  }
  const auto s = buf.stats();
  EXPECT_EQ(s.packets_received, 3000u);
  EXPECT_EQ(s.packets_lost, 0);
  EXPECT_EQ(s.packets_late, 0u);
  EXPECT_EQ(s.concealed_samples, 0u);
  // The target falls from its initial 60 ms to the bin above this stream's zero jitter, and
  // the initial excess is removed by acceleration.
  EXPECT_LE(buf.target_delay_ms(), 10);
  EXPECT_GT(s.removed_samples_for_acceleration, 0u);
  EXPECT_LE(buf.size(), 2u);
}

TEST(Jitter, DuplicatesAndLatePackets) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  f.put(0, 0);
  EXPECT_EQ(f.put(0, 1), jb::InsertResult::duplicate);
  f.put(1, 20);
  f.put(2, 40);
  f.put(3, 60);
  auto u = buf.pull(60);
  ASSERT_EQ(u.frame, 0);
  u = buf.pull(80);
  ASSERT_EQ(u.frame, 1);
  // The same timestamp under another sequence number is still a duplicate of frame 3.
  EXPECT_EQ(f.put(3, 81, false, false, 7), jb::InsertResult::duplicate);
  const auto s = buf.stats();
  EXPECT_EQ(s.packets_duplicated, 2u);
  EXPECT_EQ(s.packets_late, 0u);
}

TEST(Jitter, LatePacketIsDroppedNeverPlayed) {
  jb::Config c;
  c.initial_delay_ms = 20;
  jb::Buffer buf(c);
  Feeder f{buf, {}};
  OrderChecker order;
  f.put(0, 0);
  f.put(2, 40);
  f.put(3, 60);
  order.check(buf.pull(20));  // frame 0
  const auto u = buf.pull(45);  // frame 1 missing, 2 present: concealed
  order.check(u);
  EXPECT_EQ(u.kind, jb::Kind::concealed);
  EXPECT_EQ(u.frame, 1);
  EXPECT_EQ(f.put(1, 50), jb::InsertResult::late);
  for (int i = 0; i < 3; ++i) order.check(buf.pull(60 + 20 * i));
  EXPECT_EQ(order.played.count(1), 0u);
  EXPECT_EQ(buf.stats().packets_late, 1u);
  EXPECT_EQ(buf.stats().packets_discarded, 1u);
  EXPECT_EQ(buf.stats().concealment_events, 1u);
}

TEST(Jitter, ReorderedPacketsComeOutInOrder) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  f.put(1, 20);  // reordered ahead of the first frame of the call
  f.put(0, 22);
  f.put(3, 60);
  f.put(2, 62);
  std::vector<std::int64_t> frames;
  for (int i = 0; i < 8; ++i) {
    const auto u = buf.pull(60 + 20 * i);
    if (u.kind == jb::Kind::normal) frames.push_back(u.frame);
  }
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0], -1);  // frames count from the first packet to arrive (sequence 1)
  for (std::size_t i = 1; i < frames.size(); ++i) EXPECT_EQ(frames[i], frames[i - 1] + 1);
  EXPECT_EQ(buf.stats().packets_reordered, 2u);
}

TEST(Jitter, InBandFecRecoversAMissingFrame) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  for (int i = 0; i < 6; ++i) {
    if (i != 2) f.put(i, 20 * i, true);
  }
  std::vector<jb::Unit> units;
  std::vector<std::int64_t> ids;  // a unit's payload is valid until the next pull
  for (int i = 0; i < 8; ++i) {
    units.push_back(buf.pull(60 + 20 * i));
    ids.push_back(units.back().payload.empty() ? -1 : id_of(units.back().payload));
  }
  const auto it = std::find_if(units.begin(), units.end(),
                               [](const jb::Unit& u) { return u.frame == 2; });
  ASSERT_NE(it, units.end());
  const auto at = static_cast<std::size_t>(it - units.begin());
  EXPECT_EQ(it->kind, jb::Kind::fec);
  EXPECT_TRUE(it->decode_fec);
  EXPECT_EQ(ids[at], 3);  // the next packet's payload, to decode with its FEC
  EXPECT_EQ(it->samples, 160u);
  EXPECT_EQ(it->timestamp, kTs0 + 320u);
  EXPECT_EQ((it + 1)->kind, jb::Kind::normal);
  EXPECT_EQ((it + 1)->frame, 3);
  EXPECT_EQ(ids[at + 1], 3);
  EXPECT_EQ(buf.stats().fec_frames_used, 1u);
  for (const auto& u : units) {
    if (u.frame <= 5) {
      EXPECT_NE(u.kind, jb::Kind::concealed) << u.frame;
    }
  }
}

TEST(Jitter, PrimaryBeatsRedundantCopy) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  f.put(0, 0);
  const auto copy = payload_of(1001);
  const auto copy2 = payload_of(1002);
  EXPECT_EQ(buf.insert_redundant(kTs0 + 160, 0, copy, 1), jb::InsertResult::stored);
  EXPECT_EQ(buf.insert_redundant(kTs0 + 320, 0, copy2, 1), jb::InsertResult::stored);
  f.put(1, 20);  // the primary replaces the copy of frame 1
  EXPECT_EQ(buf.insert_redundant(kTs0 + 160, 0, copy, 21), jb::InsertResult::duplicate);
  f.put(3, 60);
  std::map<std::int64_t, jb::Unit> by_frame;
  std::map<std::int64_t, std::int64_t> ids;
  for (int i = 0; i < 6; ++i) {
    const auto u = buf.pull(60 + 20 * i);
    if (u.kind != jb::Kind::silence) {
      by_frame[u.frame] = u;
      if (!u.payload.empty()) ids[u.frame] = id_of(u.payload);
    }
  }
  EXPECT_EQ(by_frame[1].kind, jb::Kind::normal);
  EXPECT_EQ(ids[1], 1);
  EXPECT_EQ(by_frame[2].kind, jb::Kind::fec);
  EXPECT_FALSE(by_frame[2].decode_fec);
  EXPECT_EQ(ids[2], 1002);
  EXPECT_EQ(buf.stats().fec_packets_received, 3u);
  EXPECT_EQ(buf.stats().fec_packets_discarded, 2u);
}

TEST(Jitter, LossWithoutFecIsConcealedOnce) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  OrderChecker order;
  for (int i = 0; i < 200; ++i) {
    if (i % 10 != 5) f.put(i, 20 * i + 3);
    order.check(buf.pull(20 * i + 10));
  }
  const auto s = buf.stats();
  EXPECT_EQ(s.packets_lost, 20);
  EXPECT_GE(s.concealment_events, 15u);
  EXPECT_EQ(s.packets_late, 0u);
  EXPECT_EQ(s.fec_frames_used, 0u);
}

TEST(Jitter, SpikeRaisesTargetFastThenItFallsSlowly) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  OrderChecker order;
  std::mt19937 rng(5);
  std::int64_t peak = 0;
  std::int64_t after_spike = 0;
  // 10 s calm, a 400 ms stall drained at slope -1, 30 s calm.
  for (int i = 0; i < 2000; ++i) {
    const std::int64_t send = 20 * i;
    std::int64_t arrival = send + 30 + static_cast<std::int64_t>(rng() % 5);
    if (i >= 500 && i < 520) arrival = std::max(arrival, std::int64_t{10000 + 30 + 400});
    f.put(i, arrival);
    order.check(buf.pull(send + 40));
    peak = std::max(peak, buf.target_delay_ms());
    if (i == 600) after_spike = buf.target_delay_ms();
  }
  EXPECT_GE(peak, 200);
  EXPECT_GE(after_spike, 100);  // still remembered 2 s later
  EXPECT_LE(buf.target_delay_ms(), 30);  // forgotten after 28 s of calm
  EXPECT_EQ(buf.stats().packets_late, 0u);
}

TEST(Jitter, ClockDriftDoesNotGrowTheBuffer) {
  for (const double ppm : {-2000.0, 2000.0}) {
    jb::Buffer buf;
    Feeder f{buf, {}};
    OrderChecker order;
    std::size_t max_size = 0;
    std::int64_t next_pull = 0;
    const int n = 6000;  // 2 min at an exaggerated 0.2 % drift (24 frames)
    for (int i = 0; i < n; ++i) {
      const auto arrival = static_cast<std::int64_t>(20.0 * i * (1.0 + ppm * 1e-6)) + 15;
      f.put(i, arrival);
      while (next_pull <= arrival) {
        order.check(buf.pull(next_pull));
        next_pull += 20;
      }
      max_size = std::max(max_size, buf.size());
    }
    EXPECT_LE(max_size, 6u) << ppm;
    const auto s = buf.stats();
    if (ppm > 0) {
      EXPECT_GT(s.inserted_samples_for_deceleration, 10u * 160u) << ppm;
    } else {
      EXPECT_GT(s.removed_samples_for_acceleration, 10u * 160u) << ppm;
    }
  }
}

TEST(Jitter, LowEnergyHintsGateAdjustments) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  std::vector<jb::Unit> units;
  // Every 25th frame is quiet; the initial 60 ms target exceeds this stream's need, so the
  // buffer accelerates, but only by skipping quiet frames.
  for (int i = 0; i < 1500; ++i) {
    f.put(i, 20 * i, false, i % 25 == 0);
    units.push_back(buf.pull(20 * i + 5));
  }
  std::int64_t prev = -1;
  int accelerations = 0;
  for (const auto& u : units) {
    if (u.adjustment == jb::Adjustment::accelerate) {
      ++accelerations;
      EXPECT_EQ((u.frame - 1) % 25, 0) << "skipped a loud frame " << u.frame - 1;
    }
    if (u.kind == jb::Kind::normal) {
      EXPECT_GT(u.frame, prev);
      prev = u.frame;
    }
  }
  EXPECT_GT(accelerations, 0);
}

TEST(Jitter, SenderPauseIsSilenceNotConcealment) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  OrderChecker order;
  // 100 frames (the last five quiet), then a 2 s pause with no packets (timestamps jump,
  // sequence numbers do not), then 100 more.
  for (int i = 0; i < 100; ++i) {
    f.put(i, 20 * i, false, i >= 95);
    order.check(buf.pull(20 * i + 10));
  }
  for (int t = 2000; t < 4000; t += 20) order.check(buf.pull(t + 10));
  for (int frame = 200; frame < 300; ++frame) {
    f.put(frame, 20 * frame, false, false, -100);
    order.check(buf.pull(20 * frame + 10));
  }
  const auto s = buf.stats();
  EXPECT_EQ(s.packets_lost, 0);
  EXPECT_EQ(s.concealed_samples, 0u);
  EXPECT_EQ(order.played.count(150), 0u);
  EXPECT_EQ(order.played.count(200), 1u);
}

TEST(Jitter, OverflowDropsOldestAndMemoryStaysBounded) {
  jb::Config c;
  c.capacity = 16;
  c.max_delay_ms = 300;
  jb::Buffer buf(c);
  Feeder f{buf, {}};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(f.put(i, 0), jb::InsertResult::stored);
  EXPECT_EQ(buf.size(), 16u);
  EXPECT_EQ(buf.stats().packets_discarded, 84u);
  const auto u = buf.pull(10000);
  EXPECT_NE(u.kind, jb::Kind::normal);  // frames 84.. are far past the delay cap
  std::vector<std::byte> big(c.max_payload + 1);
  jb::Packet p;
  p.sequence = static_cast<std::uint16_t>(kSeq0 + 100);
  p.timestamp = kTs0 + 16000u;
  p.payload = big;
  EXPECT_EQ(buf.insert(p, 10000), jb::InsertResult::too_large);
  EXPECT_EQ(buf.stats().packets_rejected, 1u);
}

TEST(Jitter, PlayoutDelayNeverExceedsTheCap) {
  jb::Config c;
  c.max_delay_ms = 200;
  c.capacity = 32;
  jb::Buffer buf(c);
  Feeder f{buf, {}};
  OrderChecker order;
  std::mt19937 rng(11);
  std::vector<std::pair<std::int64_t, int>> arrivals;  // heavy jitter: 0..600 ms
  for (int i = 0; i < 3000; ++i) arrivals.emplace_back(20 * i + static_cast<std::int64_t>(rng() % 600), i);
  std::sort(arrivals.begin(), arrivals.end());
  std::int64_t next_pull = 0;
  std::int64_t min_transit = 1000;
  for (const auto& [arrival, i] : arrivals) {
    min_transit = std::min(min_transit, arrival - 20 * i);
    while (next_pull <= arrival) {
      const auto u = buf.pull(next_pull);
      order.check(u);
      if (u.kind == jb::Kind::normal) {
        // Relative to the fastest transit seen, never more than the cap and one frame.
        EXPECT_LE(next_pull - 20 * id_of(u.payload) - min_transit, c.max_delay_ms + 20);
      }
      next_pull += 20;
    }
    f.put(i, arrival);
    EXPECT_LE(buf.size(), 32u);
  }
  EXPECT_LE(buf.target_delay_ms(), 200);
  EXPECT_GT(buf.stats().packets_late, 0u);
}

TEST(Jitter, RandomInsertPullNeverBreaksOrder) {
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 gen(seed);
    auto rng = [&gen]() { return static_cast<std::int64_t>(gen() % 1000000); };
    jb::Config c;
    c.capacity = static_cast<std::uint32_t>(8 + rng() % 40);
    c.max_delay_ms = 20 * (static_cast<std::int64_t>(c.capacity) - 1);
    c.initial_delay_ms = std::min<std::int64_t>(c.max_delay_ms, 20 * (rng() % 5));
    jb::Buffer buf(c);
    Feeder f{buf, {}};
    OrderChecker order;
    std::int64_t now = 0;
    std::int64_t offset = INT64_MIN;
    for (int step = 0; step < 2000; ++step) {
      now += rng() % 30;
      if (rng() % 2 == 0) {
        const std::int64_t i = step / 2 + rng() % 20 - 10;
        if (rng() % 7 == 0) {
          const auto copy = payload_of(i);
          const auto ts = static_cast<std::uint32_t>(
              (static_cast<std::int64_t>(kTs0) + 160 * i) & 0xFFFFFFFF);
          (void)buf.insert_redundant(ts, 0, copy, now);
        } else {
          (void)f.put(i, now, rng() % 3 == 0, rng() % 5 == 0);
        }
      } else {
        const auto u = buf.pull(now);
        order.check(u);
        if (u.kind == jb::Kind::normal) {
          // Frames count from the first packet's timestamp; payloads name the send index.
          if (offset == INT64_MIN) offset = id_of(u.payload) - u.frame;
          EXPECT_EQ(id_of(u.payload) - u.frame, offset);
        }
      }
      ASSERT_LE(buf.size(), c.capacity);
    }
  }
}

TEST(Jitter, ResetForgetsTheStream) {
  jb::Buffer buf;
  Feeder f{buf, {}};
  f.put(0, 0);
  f.put(1, 20);
  buf.reset();
  EXPECT_EQ(buf.size(), 0u);
  EXPECT_EQ(buf.stats().packets_received, 0u);
  EXPECT_EQ(buf.pull(100).kind, jb::Kind::silence);
  EXPECT_EQ(jb::to_string(jb::Kind::fec), "fec");
  EXPECT_EQ(jb::to_string(jb::Adjustment::expand), "expand");
  EXPECT_EQ(jb::to_string(jb::InsertResult::late), "late");
}
