// G.711 kernels against an independent reference written from the G.711 tables (segment
// search by decision level, as the standard's Tables 1a/2a describe it), plus bulk == scalar
// at every length 0..1024 and every misalignment.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "voxwire/g711.hpp"

namespace g711 = voxwire::g711;
using g711::EncodeMode;

namespace {

// mu-law: segment end points of the biased 14-bit magnitude (G.711 Table 2a, 8 segments).
std::uint8_t ref_ulaw(int x, bool audioop) {
  int mag = x < 0 ? (audioop ? -(x >> 2) : (~x) >> 2) : x >> 2;
  mag += 33;
  if (mag > 8191) mag = 8191;
  int seg = 0;
  while (seg < 7 && mag >= (64 << seg)) ++seg;
  const int mant = (mag >> (seg + 1)) & 0xF;
  int code = 0x7F - ((seg << 4) | mant);
  if (x >= 0) code |= 0x80;
  return static_cast<std::uint8_t>(code);
}

// A-law: 12-bit magnitude; segment 0 is linear over 0..15, segment s >= 1 spans
// [16 << (s - 1), 32 << (s - 1)) (G.711 Table 1a). Even bits are inverted on the line.
std::uint8_t ref_alaw(int x) {
  const int mag = x < 0 ? (~x) >> 4 : x >> 4;
  int seg = 0;
  if (mag >= 16) {
    seg = 1;
    while (seg < 7 && mag >= (32 << (seg - 1))) ++seg;
  }
  const int mant = seg == 0 ? mag : (mag >> (seg - 1)) & 0xF;
  int code = (seg << 4) | mant;
  if (x >= 0) code |= 0x80;
  return static_cast<std::uint8_t>(code ^ 0x55);
}

// Decoders from the reconstruction levels, in the 14-bit (mu-law) and 13-bit (A-law) domains
// of the tables, scaled to 16 bits: the middle of each quantisation interval.
int ref_ulaw_value(std::uint8_t code) {
  const int u = ~code & 0xFF;
  const int seg = (u >> 4) & 7;
  const int mant = u & 0xF;
  const int mag14 = ((2 * mant + 33) << seg) - 33;
  return (u & 0x80) ? -4 * mag14 : 4 * mag14;
}

int ref_alaw_value(std::uint8_t code) {
  const int ix = (code ^ 0x55) & 0x7F;
  const int seg = ix >> 4;
  const int mant = ix & 0xF;
  const int mag12 = seg == 0 ? 2 * mant + 1 : (2 * mant + 33) << (seg - 1);
  return (code & 0x80) ? 8 * mag12 : -8 * mag12;
}

std::string isa_name(g711::Isa isa) {
  switch (isa) {
    case g711::Isa::avx2:
      return "avx2";
    case g711::Isa::avx512:
      return "avx512";
    default:
      return "portable";
  }
}

}  // namespace

TEST(G711Reference, UlawDecodeMatchesTableEnds) {
  // Known end points of the G.191 expansion.
  EXPECT_EQ(g711::decode_ulaw_sample(0xFF), 0);
  EXPECT_EQ(g711::decode_ulaw_sample(0x7F), 0);
  EXPECT_EQ(g711::decode_ulaw_sample(0x80), 32124);
  EXPECT_EQ(g711::decode_ulaw_sample(0x00), -32124);
  EXPECT_EQ(g711::decode_alaw_sample(0xD5), 8);
  EXPECT_EQ(g711::decode_alaw_sample(0x55), -8);
  EXPECT_EQ(g711::decode_alaw_sample(0xAA), 32256);
  EXPECT_EQ(g711::decode_alaw_sample(0x2A), -32256);
}

TEST(G711Reference, AllCodesDecode) {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<std::uint8_t>(c);
    EXPECT_EQ(g711::decode_ulaw_sample(code), ref_ulaw_value(code)) << "mu-law code " << c;
    EXPECT_EQ(g711::decode_alaw_sample(code), ref_alaw_value(code)) << "A-law code " << c;
  }
}

TEST(G711Reference, AllInputsEncode) {
  int audioop_differs = 0;
  for (int x = -32768; x <= 32767; ++x) {
    const auto s = static_cast<std::int16_t>(x);
    ASSERT_EQ(g711::encode_ulaw_sample(s, EncodeMode::g191), ref_ulaw(x, false)) << x;
    ASSERT_EQ(g711::encode_ulaw_sample(s, EncodeMode::audioop), ref_ulaw(x, true)) << x;
    ASSERT_EQ(g711::encode_alaw_sample(s, EncodeMode::g191), ref_alaw(x)) << x;
    ASSERT_EQ(g711::encode_alaw_sample(s, EncodeMode::audioop), ref_alaw(x)) << x;
    audioop_differs += g711::encode_ulaw_sample(s, EncodeMode::g191) !=
                       g711::encode_ulaw_sample(s, EncodeMode::audioop);
  }
  EXPECT_EQ(audioop_differs, 508);
}

class G711Isa : public ::testing::TestWithParam<g711::Isa> {
 protected:
  void SetUp() override {
    if (!g711::set_isa(GetParam())) GTEST_SKIP() << "this CPU lacks the instruction set";
  }
  void TearDown() override { g711::set_isa(g711::Isa::best); }
};

TEST_P(G711Isa, BulkEncodeIsExactForAllInputs) {
  std::vector<std::int16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int16_t>(static_cast<int>(i) - 32768);
  std::vector<std::uint8_t> codes(all.size());
  for (const bool audioop : {false, true}) {
    const auto mode = audioop ? EncodeMode::audioop : EncodeMode::g191;
    g711::encode_ulaw(std::span<const std::int16_t>(all), codes, mode);
    for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(codes[i], ref_ulaw(all[i], audioop)) << all[i];
    g711::encode_alaw(std::span<const std::int16_t>(all), codes, mode);
    for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(codes[i], ref_alaw(all[i])) << all[i];
  }
}

TEST_P(G711Isa, BulkDecodeCoversEveryCodeInEveryLane) {
  // Each of the 256 codes in each position of a 16-lane vector, plus a scalar tail.
  std::vector<std::uint8_t> codes(256 * 17 + 7);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::uint8_t>(i % 256);
  std::vector<std::int16_t> out(codes.size());
  for (const bool ulaw : {true, false}) {
    if (ulaw) {
      g711::decode_ulaw(codes, out);
    } else {
      g711::decode_alaw(codes, out);
    }
    for (std::size_t i = 0; i < codes.size(); ++i) {
      ASSERT_EQ(out[i], ulaw ? ref_ulaw_value(codes[i]) : ref_alaw_value(codes[i])) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, G711Isa,
                         ::testing::Values(g711::Isa::portable, g711::Isa::avx2,
                                           g711::Isa::avx512),
                         [](const ::testing::TestParamInfo<g711::Isa>& p) {
                           return isa_name(p.param);
                         });

TEST(G711Isa, SelectionReportsWhatRuns) {
  ASSERT_TRUE(g711::set_isa(g711::Isa::portable));
  EXPECT_EQ(g711::current_isa(), g711::Isa::portable);
  ASSERT_TRUE(g711::set_isa(g711::Isa::best));
  EXPECT_NE(g711::current_isa(), g711::Isa::best);
}

TEST(G711Reference, EncodeDecodeIsIdempotent) {
  // Decoding a code and encoding the result gives the code back (except mu-law's two zeros).
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<std::uint8_t>(c);
    if (code != 0x7F) {
      EXPECT_EQ(g711::encode_ulaw_sample(g711::decode_ulaw_sample(code)), code) << c;
    }
    EXPECT_EQ(g711::encode_alaw_sample(g711::decode_alaw_sample(code)), code) << c;
  }
}

struct BulkCase {
  EncodeMode mode;
  g711::Isa isa;
};

class G711Bulk : public ::testing::TestWithParam<BulkCase> {
 protected:
  void SetUp() override {
    if (!g711::set_isa(GetParam().isa)) GTEST_SKIP() << "this CPU lacks the instruction set";
  }
  void TearDown() override { g711::set_isa(g711::Isa::best); }
};

TEST_P(G711Bulk, EqualsScalarAtEveryLengthAndAlignment) {
  const EncodeMode mode = GetParam().mode;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> dist(-32768, 32767);
  constexpr std::size_t kMax = 1024;
  constexpr std::size_t kPad = 33;
  std::vector<std::int16_t> samples(kMax);
  for (auto& s : samples) s = static_cast<std::int16_t>(dist(rng));
  std::vector<std::byte> raw(2 * kMax + kPad);
  std::vector<std::uint8_t> codes(kMax + kPad);
  std::vector<std::byte> pcm(2 * kMax + kPad);
  for (std::size_t offset : {0u, 1u, 3u, 8u, 31u}) {
    std::memcpy(raw.data() + offset, samples.data(), 2 * kMax);
    for (std::size_t n = 0; n <= kMax; ++n) {
      const std::span<const std::byte> in(raw.data() + offset, 2 * n);
      const std::span<std::uint8_t> out(codes.data() + offset, n);
      // Sentinels just past the end catch over-writes.
      codes[offset + n] = 0xA5;
      ASSERT_EQ(g711::encode_ulaw(in, out, mode), n);
      ASSERT_EQ(codes[offset + n], 0xA5);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(codes[offset + i], g711::encode_ulaw_sample(samples[i], mode)) << n << " " << i;
      }
      ASSERT_EQ(g711::encode_alaw(in, out, mode), n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(codes[offset + i], g711::encode_alaw_sample(samples[i], mode)) << n << " " << i;
      }
      // Decode the A-law codes just written, then the same bytes as mu-law.
      const std::span<const std::uint8_t> cin(codes.data() + offset, n);
      const std::span<std::byte> pout(pcm.data() + offset, 2 * n);
      pcm[offset + 2 * n] = std::byte{0x5A};
      ASSERT_EQ(g711::decode_alaw(cin, pout), n);
      ASSERT_EQ(pcm[offset + 2 * n], std::byte{0x5A});
      for (std::size_t i = 0; i < n; ++i) {
        std::int16_t v;
        std::memcpy(&v, pcm.data() + offset + 2 * i, 2);
        ASSERT_EQ(v, g711::decode_alaw_sample(codes[offset + i]));
      }
      ASSERT_EQ(g711::decode_ulaw(cin, pout), n);
      for (std::size_t i = 0; i < n; ++i) {
        std::int16_t v;
        std::memcpy(&v, pcm.data() + offset + 2 * i, 2);
        ASSERT_EQ(v, g711::decode_ulaw_sample(codes[offset + i]));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    ModesAndIsas, G711Bulk,
    ::testing::Values(BulkCase{EncodeMode::g191, g711::Isa::portable},
                      BulkCase{EncodeMode::audioop, g711::Isa::portable},
                      BulkCase{EncodeMode::g191, g711::Isa::avx2},
                      BulkCase{EncodeMode::audioop, g711::Isa::avx2},
                      BulkCase{EncodeMode::g191, g711::Isa::avx512},
                      BulkCase{EncodeMode::audioop, g711::Isa::avx512}),
    [](const ::testing::TestParamInfo<BulkCase>& p) {
      return std::string(p.param.mode == EncodeMode::g191 ? "g191" : "audioop") + "_" +
             isa_name(p.param.isa);
    });

TEST(G711Contract, TypedSpansAndErrors) {
  std::array<std::int16_t, 4> in{0, -1, 32767, -32768};
  std::array<std::uint8_t, 4> codes{};
  std::array<std::int16_t, 4> back{};
  EXPECT_EQ(g711::encode_ulaw(std::span<const std::int16_t>(in), codes), 4u);
  EXPECT_EQ(codes[0], 0xFF);
  EXPECT_EQ(codes[2], 0x80);
  EXPECT_EQ(codes[3], 0x00);
  EXPECT_EQ(g711::decode_ulaw(std::span<const std::uint8_t>(codes), std::span<std::int16_t>(back)), 4u);
  EXPECT_EQ(back[2], 32124);

  std::array<std::uint8_t, 3> short_out{};
  EXPECT_THROW((void)g711::encode_ulaw(std::span<const std::int16_t>(in), short_out),
               std::invalid_argument);
  EXPECT_THROW((void)g711::encode_alaw(std::span<const std::int16_t>(in), short_out),
               std::invalid_argument);
  std::array<std::byte, 3> odd{};
  EXPECT_THROW((void)g711::encode_ulaw(std::span<const std::byte>(odd), codes), std::invalid_argument);
  std::array<std::byte, 7> short_pcm{};
  EXPECT_THROW((void)g711::decode_ulaw(std::span<const std::uint8_t>(codes), std::span<std::byte>(short_pcm)),
               std::invalid_argument);
  EXPECT_THROW((void)g711::decode_alaw(std::span<const std::uint8_t>(codes), std::span<std::byte>(short_pcm)),
               std::invalid_argument);
}
