// Opus packet inspection: TOC and frame packing (RFC 6716 3.1-3.4), and the LBRR flag.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "voxwire/opus_packet.hpp"

namespace opus = voxwire::opus;

namespace {

std::vector<std::byte> hex(const std::string& h) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<std::byte>(std::stoi(h.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

// Two 20 ms SILK wideband packets (config 9) from libopus 1.3.1 with in-band FEC on at 20 %
// expected loss: the first carries LBRR data for its predecessor, the second does not
// (decode_fec on it gives libopus's plain concealment).
const char* kWithLbrr =
    "48d9b782a1bf639b902a5374ce9eeb083d74eb7b7f198fa74b63d5e3f6da2ce41938b75751eee920a88651c5"
    "26529885eb06101662fb639cc991e49d40c3ffd4";
const char* kWithoutLbrr =
    "4898c7e603f8a0341cbb9b87f8470684a41d6227e5f427c5243fab661d02af3f71741c6b580a91a35e99f64b"
    "037e48";

}  // namespace

TEST(OpusPacket, TocFields) {
  opus::PacketInfo info;
  ASSERT_EQ(opus::parse(hex(kWithLbrr), info), opus::PacketError::ok);
  EXPECT_EQ(info.config, 9);
  EXPECT_EQ(info.mode, opus::Mode::silk);
  EXPECT_FALSE(info.stereo);
  EXPECT_EQ(info.code, 0);
  EXPECT_EQ(info.frames, 1u);
  EXPECT_EQ(info.frame_us, 20000u);
  EXPECT_EQ(info.samples(48000), 960u);
  EXPECT_EQ(info.samples(16000), 320u);
  EXPECT_EQ(info.first_offset, 1u);

  // Config 31 (CELT FB 20 ms), stereo, code 1: two frames of 2 bytes.
  ASSERT_EQ(opus::parse(bytes({31 << 3 | 4 | 1, 1, 2, 3, 4}), info), opus::PacketError::ok);
  EXPECT_EQ(info.mode, opus::Mode::celt);
  EXPECT_TRUE(info.stereo);
  EXPECT_EQ(info.frames, 2u);
  EXPECT_EQ(info.first_size, 2u);
  EXPECT_EQ(info.samples(48000), 1920u);

  // Code 2: first frame 1 byte, the second the rest. Config 13: hybrid SWB 20 ms.
  ASSERT_EQ(opus::parse(bytes({13 << 3 | 2, 1, 9, 8, 7}), info), opus::PacketError::ok);
  EXPECT_EQ(info.mode, opus::Mode::hybrid);
  EXPECT_EQ(info.first_offset, 2u);
  EXPECT_EQ(info.first_size, 1u);

  // Code 3 VBR with padding: 3 frames of 2.5 ms (config 16), lengths 1 and 2, padding 2.
  ASSERT_EQ(opus::parse(bytes({16 << 3 | 3, 0x80 | 0x40 | 3, 2, 1, 2, 10, 20, 21, 30, 0, 0}), info),
            opus::PacketError::ok);
  EXPECT_EQ(info.frames, 3u);
  EXPECT_EQ(info.first_offset, 5u);
  EXPECT_EQ(info.first_size, 1u);
  EXPECT_EQ(info.samples(48000), 360u);

  // Code 3 CBR: 2 frames over 4 bytes.
  ASSERT_EQ(opus::parse(bytes({1 << 3 | 3, 2, 1, 2, 3, 4}), info), opus::PacketError::ok);
  EXPECT_EQ(info.first_size, 2u);
}

TEST(OpusPacket, MalformedPackets) {
  opus::PacketInfo info;
  EXPECT_EQ(opus::parse({}, info), opus::PacketError::empty);
  EXPECT_EQ(opus::parse(bytes({1, 1, 2, 3}), info), opus::PacketError::odd_cbr_pair);
  EXPECT_EQ(opus::parse(bytes({2, 9, 1}), info), opus::PacketError::bad_length);
  EXPECT_EQ(opus::parse(bytes({2, 252}), info), opus::PacketError::bad_length);
  EXPECT_EQ(opus::parse(bytes({3}), info), opus::PacketError::no_frame_count);
  EXPECT_EQ(opus::parse(bytes({3, 0}), info), opus::PacketError::zero_frames);
  // 3 x 60 ms = 180 ms > 120 ms.
  EXPECT_EQ(opus::parse(bytes({3 << 3 | 3, 3, 1, 2, 3}), info), opus::PacketError::too_long);
  EXPECT_EQ(opus::parse(bytes({3, 0x41, 255}), info), opus::PacketError::bad_padding);
  EXPECT_EQ(opus::parse(bytes({3, 0x41, 9, 1}), info), opus::PacketError::bad_padding);
  EXPECT_EQ(opus::parse(bytes({3, 2, 1, 2, 3}), info), opus::PacketError::uneven_cbr);
  EXPECT_EQ(opus::parse(bytes({3, 0x82, 5, 1}), info), opus::PacketError::bad_length);
  std::vector<std::byte> huge(1 + 1276, std::byte{0});
  EXPECT_EQ(opus::parse(huge, info), opus::PacketError::bad_length);
  EXPECT_EQ(opus::to_string(opus::PacketError::uneven_cbr), "uneven_cbr");
}

TEST(OpusPacket, LbrrFlag) {
  EXPECT_TRUE(opus::has_lbrr(hex(kWithLbrr)));
  EXPECT_FALSE(opus::has_lbrr(hex(kWithoutLbrr)));
  EXPECT_FALSE(opus::has_lbrr(bytes({31 << 3, 0xFF, 0xFF})));  // CELT-only: no SILK layer
  EXPECT_FALSE(opus::has_lbrr(bytes({9 << 3})));               // DTX: empty frame
  EXPECT_FALSE(opus::has_lbrr({}));
}

TEST(OpusPacket, EveryTruncationIsSafe) {
  const auto full = hex(kWithLbrr);
  for (std::size_t n = 0; n <= full.size(); ++n) {
    auto copy = std::make_unique<std::byte[]>(n == 0 ? 1 : n);
    std::copy(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n), copy.get());
    const std::span<const std::byte> p(copy.get(), n);
    opus::PacketInfo info;
    if (opus::parse(p, info) == opus::PacketError::ok) {
      EXPECT_LE(info.first_offset + info.first_size, n);
    }
    (void)opus::has_lbrr(p);  // must not read past the end (AddressSanitizer)
  }
}
