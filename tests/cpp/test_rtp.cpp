// RTP parse/build (RFC 3550 5.1, 5.3.1) and receiver-side source tracking (A.1, A.3, A.8).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "voxwire/rtp.hpp"

namespace rtp = voxwire::rtp;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

std::vector<std::byte> make(const rtp::BuildSpec& spec, std::size_t payload_size,
                            std::uint8_t fill = 0xAB) {
  std::vector<std::byte> payload(payload_size, static_cast<std::byte>(fill));
  std::vector<std::byte> out(rtp::built_size(spec, payload_size));
  EXPECT_EQ(rtp::build(spec, payload, out), out.size());
  return out;
}

rtp::Header header(std::uint16_t seq, std::uint32_t ts, std::uint32_t ssrc = 0x1234) {
  rtp::Header h;
  h.sequence = seq;
  h.timestamp = ts;
  h.ssrc = ssrc;
  return h;
}

}  // namespace

TEST(RtpParse, MinimalPacket) {
  const auto p = bytes({0x80, 0x00, 0x12, 0x34, 0x00, 0x00, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF,
                        1, 2, 3});
  rtp::Header h;
  ASSERT_EQ(rtp::parse(p, h), rtp::ParseError::ok);
  EXPECT_FALSE(h.marker);
  EXPECT_EQ(h.payload_type, 0);
  EXPECT_EQ(h.sequence, 0x1234);
  EXPECT_EQ(h.timestamp, 320u);
  EXPECT_EQ(h.ssrc, 0xDEADBEEFu);
  EXPECT_EQ(h.payload_offset, 12u);
  EXPECT_EQ(h.payload_size, 3u);
  EXPECT_FALSE(h.has_extension);
  EXPECT_EQ(h.padding_size, 0);
}

TEST(RtpParse, RoundTripWithEverything) {
  const std::array<std::uint32_t, 3> csrcs{1, 0xFFFFFFFF, 77};
  const auto ext = bytes({0x10, 0xAA, 0x00, 0x00, 1, 2, 3, 4});
  rtp::BuildSpec spec;
  spec.marker = true;
  spec.payload_type = 111;
  spec.sequence = 65535;
  spec.timestamp = 0xFFFFFFF0u;
  spec.ssrc = 42;
  spec.csrcs = csrcs;
  spec.has_extension = true;
  spec.extension_profile = 0xBEDE;
  spec.extension = ext;
  spec.padding = 7;
  const auto p = make(spec, 160);
  ASSERT_EQ(p.size(), 12u + 12u + 4u + 8u + 160u + 7u);
  rtp::Header h;
  ASSERT_EQ(rtp::parse(p, h), rtp::ParseError::ok);
  EXPECT_TRUE(h.marker);
  EXPECT_EQ(h.payload_type, 111);
  EXPECT_EQ(h.sequence, 65535);
  EXPECT_EQ(h.timestamp, 0xFFFFFFF0u);
  EXPECT_EQ(h.ssrc, 42u);
  ASSERT_EQ(h.csrc_count, 3);
  EXPECT_EQ(h.csrcs[1], 0xFFFFFFFFu);
  EXPECT_EQ(h.csrcs[2], 77u);
  EXPECT_TRUE(h.has_extension);
  EXPECT_EQ(h.extension_profile, 0xBEDE);
  EXPECT_EQ(h.extension_size, 8u);
  EXPECT_EQ(p[h.extension_offset], std::byte{0x10});
  EXPECT_EQ(h.padding_size, 7);
  EXPECT_EQ(h.payload_size, 160u);
  EXPECT_EQ(p[h.payload_offset], std::byte{0xAB});
  EXPECT_EQ(p[h.payload_offset + 159], std::byte{0xAB});
}

TEST(RtpParse, EveryRuleBroken) {
  rtp::Header h;
  EXPECT_EQ(rtp::parse({}, h), rtp::ParseError::too_short);
  EXPECT_EQ(rtp::parse(bytes({0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), h), rtp::ParseError::too_short);
  EXPECT_EQ(rtp::parse(bytes({0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), h),
            rtp::ParseError::bad_version);
  EXPECT_EQ(rtp::parse(bytes({0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), h),
            rtp::ParseError::bad_version);
  // 15 CSRCs claimed, one present.
  EXPECT_EQ(rtp::parse(bytes({0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}), h),
            rtp::ParseError::csrc_past_end);
  // Extension header cut short, then an extension claiming 0xFFFF words.
  EXPECT_EQ(rtp::parse(bytes({0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE}), h),
            rtp::ParseError::extension_past_end);
  EXPECT_EQ(rtp::parse(bytes({0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0xFF, 0xFF,
                              1, 2, 3, 4}),
                       h),
            rtp::ParseError::extension_past_end);
  // Padding count of zero, and one larger than what follows the header.
  EXPECT_EQ(rtp::parse(bytes({0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0}), h),
            rtp::ParseError::bad_padding);
  EXPECT_EQ(rtp::parse(bytes({0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 3}), h),
            rtp::ParseError::bad_padding);
  // Padding may take everything after the header (an all-padding packet is legal).
  ASSERT_EQ(rtp::parse(bytes({0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}), h),
            rtp::ParseError::ok);
  EXPECT_EQ(h.payload_size, 0u);
  EXPECT_EQ(rtp::to_string(rtp::ParseError::bad_padding), "bad_padding");
}

TEST(RtpParse, EveryTruncationIsRejectedOrConsistent) {
  const std::array<std::uint32_t, 2> csrcs{5, 6};
  const auto ext = bytes({1, 2, 3, 4, 5, 6, 7, 8});
  rtp::BuildSpec spec;
  spec.csrcs = csrcs;
  spec.has_extension = true;
  spec.extension = ext;
  spec.padding = 4;
  const auto full = make(spec, 20);
  for (std::size_t n = 0; n <= full.size(); ++n) {
    // An exactly sized heap copy: any read past the end is caught by AddressSanitizer.
    auto copy = std::make_unique<std::byte[]>(n == 0 ? 1 : n);
    std::copy(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n), copy.get());
    rtp::Header h;
    const auto err = rtp::parse(std::span<const std::byte>(copy.get(), n), h);
    if (err == rtp::ParseError::ok) {
      EXPECT_EQ(h.payload_offset + h.payload_size + h.padding_size, n) << n;
    }
    if (n < full.size() - 4) {
      EXPECT_NE(err, rtp::ParseError::ok) << n;  // cut inside the header or the extension
    }
  }
}

TEST(RtpBuild, RejectsBadSpecs) {
  std::vector<std::byte> out(100);
  rtp::BuildSpec spec;
  spec.payload_type = 128;
  EXPECT_THROW(rtp::build(spec, {}, out), std::invalid_argument);
  spec.payload_type = 0;
  const std::array<std::uint32_t, 16> many{};
  spec.csrcs = many;
  EXPECT_THROW(rtp::build(spec, {}, out), std::invalid_argument);
  spec.csrcs = {};
  const auto odd = bytes({1, 2, 3});
  spec.has_extension = true;
  spec.extension = odd;
  EXPECT_THROW(rtp::build(spec, {}, out), std::invalid_argument);
  spec.has_extension = false;
  spec.extension = bytes({1, 2, 3, 4});
  EXPECT_THROW(rtp::build(spec, {}, out), std::invalid_argument);
  spec.extension = {};
  std::vector<std::byte> small(11);
  EXPECT_THROW(rtp::build(spec, {}, small), std::invalid_argument);
}

TEST(RtpSource, InOrderAcrossSequenceAndTimestampWrap) {
  rtp::Source src;
  std::int64_t t = 1000;
  auto first = src.receive(header(65530, 0xFFFFFE00u), t);
  EXPECT_EQ(first.verdict, rtp::Verdict::accepted);
  EXPECT_EQ(first.extended_sequence, 65530);
  EXPECT_EQ(first.extended_timestamp, 0xFFFFFE00LL);
  for (int i = 1; i < 20; ++i) {
    const auto r = src.receive(header(static_cast<std::uint16_t>(65530 + i),
                                      0xFFFFFE00u + 160u * static_cast<std::uint32_t>(i)),
                               t + 20 * i);
    ASSERT_EQ(r.verdict, rtp::Verdict::accepted);
    EXPECT_EQ(r.extended_sequence, 65530 + i);
    EXPECT_EQ(r.extended_timestamp, 0xFFFFFE00LL + 160 * i);
  }
  const auto s = src.stats();
  EXPECT_EQ(s.received, 20u);
  EXPECT_EQ(s.expected, 20u);
  EXPECT_EQ(s.lost, 0);
  EXPECT_DOUBLE_EQ(s.jitter, 0.0);
}

TEST(RtpSource, UntimedPacketsFillTheSequenceButNotTheJitter) {
  // Audio every 20 ms, then three telephone-event packets of one key press (RFC 4733: every
  // one stamped with the event's start, 400), then audio again: as the sender numbers them.
  auto feed = [](rtp::Source& src, bool events_timed) {
    std::uint16_t seq = 10;
    std::int64_t t = 0;
    for (std::uint32_t ts = 0; ts <= 320; ts += 160, t += 20) src.receive(header(seq++, ts), t);
    for (int i = 0; i < 3; ++i, t += 50) src.receive(header(seq++, 400), t, events_timed);
    for (std::uint32_t ts = 1600; ts <= 2400; ts += 160, t += 20) {
      src.receive(header(seq++, ts), t);
    }
  };
  rtp::Source src;
  feed(src, false);
  const auto s = src.stats();
  EXPECT_EQ(s.received, 12u);
  EXPECT_EQ(s.expected, 12u);
  EXPECT_EQ(s.lost, 0);
  // the jump over the key press is in the arrival times and the timestamps alike
  rtp::Source timed;
  feed(timed, true);
  EXPECT_LT(s.jitter, 0.25 * timed.stats().jitter);
  // left out altogether, as before, the events' sequence numbers read as loss
  rtp::Source skipped;
  std::uint16_t seq = 10;
  for (std::uint32_t ts = 0; ts <= 320; ts += 160) skipped.receive(header(seq++, ts), 0);
  seq += 3;
  for (std::uint32_t ts = 1600; ts <= 2400; ts += 160) skipped.receive(header(seq++, ts), 0);
  EXPECT_EQ(skipped.stats().lost, 3);
}

TEST(RtpSource, LossReorderDuplicate) {
  rtp::Source src;
  src.receive(header(100, 0), 0);
  src.receive(header(101, 160), 20);
  EXPECT_EQ(src.receive(header(104, 640), 80).verdict, rtp::Verdict::accepted);  // 102, 103 missing
  auto s = src.stats();
  EXPECT_EQ(s.expected, 5u);
  EXPECT_EQ(s.lost, 2);
  const auto late = src.receive(header(102, 320), 90);
  EXPECT_EQ(late.verdict, rtp::Verdict::reordered);
  EXPECT_EQ(late.extended_sequence, 102);
  EXPECT_EQ(late.extended_timestamp, 320);
  EXPECT_EQ(src.receive(header(102, 320), 95).verdict, rtp::Verdict::duplicate);
  EXPECT_EQ(src.receive(header(104, 640), 96).verdict, rtp::Verdict::duplicate);
  s = src.stats();
  EXPECT_EQ(s.lost, 1);
  EXPECT_EQ(s.reordered, 1u);
  EXPECT_EQ(s.duplicates, 2u);
  EXPECT_EQ(s.received, 4u);
}

TEST(RtpSource, ReorderedBeforeTheFirstPacketAndAcrossTheWrap) {
  rtp::Source src;
  src.receive(header(1, 160), 0);
  const auto r = src.receive(header(65535, 0xFFFFFF60u), 5);  // two before the first, wrapped
  EXPECT_EQ(r.verdict, rtp::Verdict::reordered);
  EXPECT_EQ(r.extended_sequence, -1);
  EXPECT_EQ(r.extended_timestamp, -160);
  const auto s = src.stats();
  EXPECT_EQ(s.expected, 3u);
  EXPECT_EQ(s.lost, 1);  // sequence 0 never came
}

TEST(RtpSource, DuplicateDetectionForgetsSkippedNumbers) {
  rtp::Source src;
  src.receive(header(0, 0), 0);
  for (std::uint16_t s = 1; s <= 2000; ++s) src.receive(header(s, 160u * s), 20 * s);
  // Jump 1500 ahead (within max_dropout): the skipped numbers must not look seen.
  EXPECT_EQ(src.receive(header(3500, 160u * 3500), 70000).verdict, rtp::Verdict::accepted);
  EXPECT_EQ(src.receive(header(3450, 160u * 3450), 70001).verdict, rtp::Verdict::reordered);
  EXPECT_EQ(src.receive(header(3450, 160u * 3450), 70002).verdict, rtp::Verdict::duplicate);
}

TEST(RtpSource, LargeJumpNeedsConfirmationThenRestarts) {
  rtp::Source src;
  for (std::uint16_t s = 10; s < 15; ++s) src.receive(header(s, 160u * s), 20 * s);
  EXPECT_EQ(src.receive(header(20000, 7), 400).verdict, rtp::Verdict::bad_jump);
  EXPECT_EQ(src.receive(header(15, 160u * 15), 420).verdict, rtp::Verdict::accepted);
  EXPECT_EQ(src.receive(header(21000, 7), 440).verdict, rtp::Verdict::bad_jump);
  const auto r = src.receive(header(21001, 167), 460);
  EXPECT_EQ(r.verdict, rtp::Verdict::accepted);
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(r.extended_sequence, 16);  // continues after 15
  EXPECT_EQ(r.extended_timestamp, 160 * 15 + 40 * 8);  // advanced by the 40 ms arrival gap
  EXPECT_EQ(src.receive(header(21002, 327), 480).extended_sequence, 17);
  const auto s = src.stats();
  EXPECT_EQ(s.restarts, 1u);
  EXPECT_EQ(s.bad_jumps, 2u);
  EXPECT_EQ(s.expected, 6u + 2u);
  EXPECT_EQ(s.received, 8u);
}

TEST(RtpSource, FarBehindIsTooOld) {
  rtp::Source src;
  for (std::uint16_t s = 1000; s < 1010; ++s) src.receive(header(s, 160u * s), 20 * s);
  EXPECT_EQ(src.receive(header(800, 0), 1).verdict, rtp::Verdict::too_old);
  EXPECT_EQ(src.stats().too_old, 1u);
}

TEST(RtpSource, SsrcSwitchNeedsTwoInSequence) {
  rtp::Source src;
  src.receive(header(1, 0, 0xA), 0);
  EXPECT_EQ(src.receive(header(500, 0, 0xB), 10).verdict, rtp::Verdict::foreign_ssrc);
  EXPECT_EQ(src.receive(header(2, 160, 0xA), 20).verdict, rtp::Verdict::accepted);
  EXPECT_EQ(src.receive(header(501, 0, 0xB), 30).verdict, rtp::Verdict::foreign_ssrc);
  const auto r = src.receive(header(502, 160, 0xB), 40);
  EXPECT_EQ(r.verdict, rtp::Verdict::accepted);
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(src.ssrc(), 0xBu);
  EXPECT_EQ(src.receive(header(3, 320, 0xA), 50).verdict, rtp::Verdict::foreign_ssrc);
  EXPECT_EQ(src.stats().foreign_ssrc, 3u);
}

TEST(RtpSource, ProbationAsRfc3550) {
  rtp::SourceConfig cfg;
  cfg.min_sequential = 2;
  rtp::Source src(cfg);
  EXPECT_EQ(src.receive(header(7, 0), 0).verdict, rtp::Verdict::probation);
  EXPECT_FALSE(src.valid());
  EXPECT_EQ(src.receive(header(9, 0), 20).verdict, rtp::Verdict::probation);  // not in sequence
  const auto r = src.receive(header(10, 160), 40);
  EXPECT_EQ(r.verdict, rtp::Verdict::accepted);
  EXPECT_TRUE(src.valid());
  EXPECT_EQ(r.extended_sequence, 10);
  const auto s = src.stats();
  EXPECT_EQ(s.probation, 2u);
  EXPECT_EQ(s.expected, 1u);
  EXPECT_EQ(s.received, 1u);
}

TEST(RtpSource, JitterFollowsRfc3550A8) {
  rtp::Source src;  // 8 kHz
  // Arrivals alternate 0 and 10 ms late: |D| = 80 timestamp units every packet after the
  // first, so J_i = J_{i-1} + (80 - J_{i-1}) / 16 converges to 80.
  double expected = 0;
  for (int i = 0; i < 400; ++i) {
    src.receive(header(static_cast<std::uint16_t>(i), 160u * static_cast<std::uint32_t>(i)),
                20 * i + (i % 2 == 0 ? 0 : 10));
    if (i > 0) expected += (80.0 - expected) / 16.0;
  }
  const auto s = src.stats();
  EXPECT_NEAR(s.jitter, expected, 1e-9);
  EXPECT_NEAR(s.jitter, 80.0, 1e-6);
  EXPECT_NEAR(s.jitter_seconds, 0.010, 1e-9);
}

TEST(RtpSource, IntervalFractionLost) {
  rtp::Source src;
  for (std::uint16_t s = 0; s < 10; ++s) {
    if (s == 3 || s == 7) continue;
    src.receive(header(s, 160u * s), 20 * s);
  }
  auto r = src.interval_report();
  EXPECT_EQ(r.fraction_lost, (2 << 8) / 10);
  for (std::uint16_t s = 10; s < 20; ++s) src.receive(header(s, 160u * s), 20 * s);
  r = src.interval_report();
  EXPECT_EQ(r.fraction_lost, 0);
  EXPECT_EQ(src.stats().fraction_lost, 0);
  src.receive(header(3, 480), 500);  // a very late packet makes the interval's loss negative
  EXPECT_EQ(src.interval_report().fraction_lost, 0);
}

TEST(RtpSource, ResetAndConfigValidation) {
  rtp::Source src;
  src.receive(header(5, 0), 0);
  src.reset();
  EXPECT_FALSE(src.valid());
  EXPECT_EQ(src.stats().received, 0u);
  EXPECT_EQ(src.receive(header(900, 0), 1).extended_sequence, 900);
  rtp::SourceConfig bad;
  bad.clock_rate = 0;
  EXPECT_THROW(rtp::Source{bad}, std::invalid_argument);
  bad = {};
  bad.min_sequential = 0;
  EXPECT_THROW(rtp::Source{bad}, std::invalid_argument);
  bad = {};
  bad.max_misorder = rtp::Source::kHistory;
  EXPECT_THROW(rtp::Source{bad}, std::invalid_argument);
  EXPECT_EQ(rtp::to_string(rtp::Verdict::foreign_ssrc), "foreign_ssrc");
}
