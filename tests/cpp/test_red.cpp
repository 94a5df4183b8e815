// RTP payload for redundant audio data (RFC 2198): parse and build.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "voxwire/red.hpp"

namespace red = voxwire::red;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

std::vector<std::byte> build(std::span<const red::Block> redundant, const red::Block& primary) {
  std::vector<std::byte> out(red::built_size(redundant, primary));
  EXPECT_EQ(red::build(redundant, primary, out), out.size());
  return out;
}

}  // namespace

// The example of RFC 2198 section 3 in shape: one redundant block (PT 0, offset 160,
// 3 bytes) before a primary of PT 0 holding 2 bytes.
TEST(RedParse, OneRedundantBlock) {
  // F=1|PT=0, offset 160 = 0b00000010100000 -> bytes 0x02, 0x80 | len high bits, len = 3
  const auto p = bytes({0x80, 0x02, 0x80, 0x03, 0x00, 9, 8, 7, 1, 2});
  red::Payload out;
  ASSERT_EQ(red::parse(p, out), red::ParseError::ok);
  ASSERT_EQ(out.count, 1u);
  EXPECT_EQ(out.redundant[0].payload_type, 0);
  EXPECT_EQ(out.redundant[0].timestamp_offset, 160u);
  ASSERT_EQ(out.redundant[0].data.size(), 3u);
  EXPECT_EQ(out.redundant[0].data[0], std::byte{9});
  EXPECT_EQ(out.primary.payload_type, 0);
  ASSERT_EQ(out.primary.data.size(), 2u);
  EXPECT_EQ(out.primary.data[1], std::byte{2});
}

TEST(RedParse, PrimaryOnlyAndEmptyBlocks) {
  red::Payload out;
  const auto only = bytes({111, 1, 2, 3});
  ASSERT_EQ(red::parse(only, out), red::ParseError::ok);
  EXPECT_EQ(out.count, 0u);
  EXPECT_EQ(out.primary.payload_type, 111);
  EXPECT_EQ(out.primary.data.size(), 3u);
  // A redundant block of length 0 and an empty primary are legal.
  const auto empty = bytes({0x80 | 111, 0x0F, 0x00, 0x00, 111});
  ASSERT_EQ(red::parse(empty, out), red::ParseError::ok);
  EXPECT_EQ(out.count, 1u);
  EXPECT_EQ(out.redundant[0].timestamp_offset, 960u);
  EXPECT_TRUE(out.redundant[0].data.empty());
  EXPECT_TRUE(out.primary.data.empty());
}

TEST(RedParse, RejectsWhatBreaksTheFormat) {
  red::Payload out;
  EXPECT_EQ(red::parse({}, out), red::ParseError::empty);
  // A redundant header cut short, and headers with no final one-byte header.
  EXPECT_EQ(red::parse(bytes({0x80, 0x02, 0x80}), out), red::ParseError::header_past_end);
  EXPECT_EQ(red::parse(bytes({0x80, 0x02, 0x80, 0x00}), out), red::ParseError::header_past_end);
  // A block longer than what follows the headers.
  EXPECT_EQ(red::parse(bytes({0x80, 0x02, 0x80, 0x04, 0x00, 1, 2, 3}), out),
            red::ParseError::block_past_end);
  // The maximum length, 1023, with nothing behind it.
  EXPECT_EQ(red::parse(bytes({0x80, 0x00, 0x03, 0xFF, 0x00}), out),
            red::ParseError::block_past_end);
  // kMaxBlocks + 1 empty redundant blocks.
  std::vector<std::byte> many;
  for (std::size_t i = 0; i <= red::kMaxBlocks; ++i) {
    for (int b : {0x80, 0x00, 0x04, 0x00}) many.push_back(static_cast<std::byte>(b));
  }
  many.push_back(std::byte{0});
  EXPECT_EQ(red::parse(many, out), red::ParseError::too_many_blocks);
  many.erase(many.begin(), many.begin() + 4);
  EXPECT_EQ(red::parse(many, out), red::ParseError::ok);
  EXPECT_EQ(out.count, red::kMaxBlocks);
}

TEST(RedBuild, RoundTripsTwoBlocks) {
  const auto a = bytes({1, 2, 3, 4, 5});
  const auto b = bytes({6, 7});
  const auto c = bytes({8, 9, 10});
  const std::array<red::Block, 2> redundant{red::Block{111, 1920, a}, red::Block{111, 960, b}};
  const auto wire = build(redundant, red::Block{111, 0, c});
  ASSERT_EQ(wire.size(), 4u + 4u + 1u + 5u + 2u + 3u);
  red::Payload out;
  ASSERT_EQ(red::parse(wire, out), red::ParseError::ok);
  ASSERT_EQ(out.count, 2u);
  EXPECT_EQ(out.redundant[0].timestamp_offset, 1920u);
  EXPECT_EQ(out.redundant[1].timestamp_offset, 960u);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.redundant[0].data.begin(),
                         out.redundant[0].data.end()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), out.redundant[1].data.begin(),
                         out.redundant[1].data.end()));
  EXPECT_TRUE(std::equal(c.begin(), c.end(), out.primary.data.begin(), out.primary.data.end()));
  EXPECT_EQ(out.primary.payload_type, 111);
}

TEST(RedBuild, FieldLimits) {
  const std::vector<std::byte> big(red::kMaxBlockSize, std::byte{1});
  std::array<red::Block, 1> one{red::Block{0, red::kMaxOffset, big}};
  const auto wire = build(one, red::Block{0, 0, {}});
  red::Payload out;
  ASSERT_EQ(red::parse(wire, out), red::ParseError::ok);
  EXPECT_EQ(out.redundant[0].timestamp_offset, red::kMaxOffset);
  EXPECT_EQ(out.redundant[0].data.size(), red::kMaxBlockSize);

  std::vector<std::byte> buf(4096);
  one[0].timestamp_offset = red::kMaxOffset + 1;
  EXPECT_THROW(red::build(one, red::Block{}, buf), std::invalid_argument);
  one[0].timestamp_offset = 0;
  const std::vector<std::byte> too_big(red::kMaxBlockSize + 1);
  one[0].data = too_big;
  EXPECT_THROW(red::build(one, red::Block{}, buf), std::invalid_argument);
  one[0].data = {};
  one[0].payload_type = 128;
  EXPECT_THROW(red::build(one, red::Block{}, buf), std::invalid_argument);
  one[0].payload_type = 0;
  EXPECT_THROW(red::build(one, red::Block{128, 0, {}}, buf), std::invalid_argument);
  std::vector<std::byte> tiny(4);
  EXPECT_THROW(red::build(one, red::Block{}, tiny), std::invalid_argument);
  const std::vector<red::Block> nine(red::kMaxBlocks + 1);
  EXPECT_THROW(red::build(nine, red::Block{}, buf), std::invalid_argument);
}
