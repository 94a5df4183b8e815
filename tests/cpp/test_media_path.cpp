// The one-call media path against the step-by-step composition of the kernels it is built
// from (base64, g711, resample), bit for bit; base64 against the RFC 4648 section 10 vectors
// and a bit-by-bit reference; every truncation and every bad character.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "voxwire/g711.hpp"
#include "voxwire/media_path.hpp"
#include "voxwire/resample.hpp"

namespace media = voxwire::media;
namespace g711 = voxwire::g711;
namespace rs = voxwire::resample;
using media::Encoding;
using media::PayloadFault;

namespace {

// Base64 one bit at a time, from the description in RFC 4648 section 4.
std::string ref_base64(const std::vector<std::uint8_t>& in) {
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (const std::uint8_t byte : in) {
    for (int b = 7; b >= 0; --b) {
      acc = (acc << 1) | ((byte >> b) & 1U);
      if (++bits == 6) {
        out += alphabet[acc];
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits != 0) out += alphabet[acc << (6 - bits)];
  while (out.size() % 4 != 0) out += '=';
  return out;
}

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<std::uint8_t> random_bytes(std::mt19937& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng() & 0xFF);
  return v;
}

media::Base64Result decode(const std::string& text, std::vector<std::uint8_t>& out) {
  out.assign(media::base64_decoded_size(text), 0);
  return media::decode_base64(text, out);
}

std::string encode(const std::vector<std::uint8_t>& in) {
  std::string out(media::base64_encoded_size(in.size()), '\0');
  EXPECT_EQ(media::encode_base64(in, std::span<char>(out.data(), out.size())), out.size());
  return out;
}

// Wire bytes -> PCM16 with the existing kernels, one message at a time.
std::vector<std::int16_t> wire_to_pcm(Encoding e, const std::vector<std::uint8_t>& wire) {
  std::vector<std::int16_t> pcm(wire.size() / media::bytes_per_sample(e));
  switch (e) {
    case Encoding::ulaw:
      g711::decode_ulaw(std::span<const std::uint8_t>(wire), std::span<std::int16_t>(pcm));
      break;
    case Encoding::alaw:
      g711::decode_alaw(std::span<const std::uint8_t>(wire), std::span<std::int16_t>(pcm));
      break;
    case Encoding::l16_be:
    case Encoding::l16_le:
      for (std::size_t i = 0; i < pcm.size(); ++i) {
        const int hi = e == Encoding::l16_be ? wire[2 * i] : wire[2 * i + 1];
        const int lo = e == Encoding::l16_be ? wire[2 * i + 1] : wire[2 * i];
        pcm[i] = static_cast<std::int16_t>(static_cast<std::uint16_t>(hi * 256 + lo));
      }
      break;
  }
  return pcm;
}

std::vector<std::uint8_t> pcm_to_wire(Encoding e, const std::vector<std::int16_t>& pcm) {
  std::vector<std::uint8_t> wire(pcm.size() * media::bytes_per_sample(e));
  switch (e) {
    case Encoding::ulaw:
      g711::encode_ulaw(std::span<const std::int16_t>(pcm), std::span<std::uint8_t>(wire));
      break;
    case Encoding::alaw:
      g711::encode_alaw(std::span<const std::int16_t>(pcm), std::span<std::uint8_t>(wire));
      break;
    case Encoding::l16_be:
    case Encoding::l16_le:
      for (std::size_t i = 0; i < pcm.size(); ++i) {
        const auto u = static_cast<std::uint16_t>(pcm[i]);
        const auto hi = static_cast<std::uint8_t>(u >> 8);
        const auto lo = static_cast<std::uint8_t>(u & 0xFF);
        wire[2 * i] = e == Encoding::l16_be ? hi : lo;
        wire[2 * i + 1] = e == Encoding::l16_be ? lo : hi;
      }
      break;
  }
  return wire;
}

// The composition the one-call path must equal: its own resampler, per message.
std::vector<std::int16_t> resample_step(rs::Resampler* r, const std::vector<std::int16_t>& in) {
  if (r == nullptr) return in;
  std::vector<std::int16_t> out(r->output_size(in.size()));
  r->process(std::span<const std::int16_t>(in), std::span<std::int16_t>(out));
  return out;
}

const Encoding kEncodings[] = {Encoding::ulaw, Encoding::alaw, Encoding::l16_be, Encoding::l16_le};

}  // namespace

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},         {"f", "Zg=="},        {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, text] : vectors) {
    EXPECT_EQ(encode(bytes_of(plain)), text);
    std::vector<std::uint8_t> out;
    const auto r = decode(text, out);
    EXPECT_EQ(r.fault, PayloadFault::none) << text;
    EXPECT_EQ(r.size, std::string(plain).size());
    EXPECT_EQ(out, bytes_of(plain)) << text;
  }
}

TEST(Base64, RoundTripAgainstBitReference) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 300; ++n) {
    const auto data = random_bytes(rng, n);
    const std::string text = encode(data);
    ASSERT_EQ(text, ref_base64(data)) << n;
    std::vector<std::uint8_t> out;
    const auto r = decode(text, out);
    ASSERT_EQ(r.fault, PayloadFault::none);
    ASSERT_EQ(out, data);
    EXPECT_EQ(media::validate_base64(text).fault, PayloadFault::none);
  }
}

TEST(Base64, EveryTruncation) {
  std::mt19937 rng(8);
  const auto data = random_bytes(rng, 40);
  const std::string text = encode(data);
  for (std::size_t k = 0; k <= text.size(); ++k) {
    const std::string cut = text.substr(0, k);
    std::vector<std::uint8_t> out;
    const auto r = decode(cut, out);
    if (k % 4 != 0) {
      EXPECT_EQ(r.fault, PayloadFault::bad_length) << k;
      EXPECT_EQ(r.position, k);
    } else {
      // Whole groups of an unpadded 40-byte text (39 bytes + "xx==" tail at the end).
      ASSERT_EQ(r.fault, PayloadFault::none) << k;
      EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin())) << k;
    }
  }
}

TEST(Base64, EveryByteInEveryPosition) {
  const std::string good = "Zm9vYmFy";
  std::vector<std::uint8_t> out;
  for (std::size_t pos = 0; pos < good.size(); ++pos) {
    for (int c = 0; c < 256; ++c) {
      std::string t = good;
      t[pos] = static_cast<char>(c);
      const auto r = decode(t, out);
      const bool alphabet = std::isalnum(c) != 0 && c < 128 ? true : (c == '+' || c == '/');
      if (alphabet) {
        EXPECT_EQ(r.fault, PayloadFault::none) << pos << " " << c;
      } else if (c == '=' && pos == 7) {
        // "Zm9vYmF=": 'F' leaves the bits 01 over, so this is not canonical.
        EXPECT_EQ(r.fault, PayloadFault::bad_padding);
      } else if (c == '=') {
        EXPECT_EQ(r.fault, PayloadFault::bad_padding) << pos;
        EXPECT_EQ(r.position, pos);
      } else {
        EXPECT_EQ(r.fault, PayloadFault::bad_character) << pos << " " << c;
        EXPECT_EQ(r.position, pos);
      }
    }
  }
}

TEST(Base64, Padding) {
  std::vector<std::uint8_t> out;
  EXPECT_EQ(decode("Zg==", out).fault, PayloadFault::none);
  EXPECT_EQ(decode("Zh==", out).fault, PayloadFault::bad_padding);  // leftover bits 0001
  EXPECT_EQ(decode("Zm8=", out).fault, PayloadFault::none);
  EXPECT_EQ(decode("Zm9=", out).fault, PayloadFault::bad_padding);  // leftover bits 01
  EXPECT_EQ(decode("Zm=v", out).fault, PayloadFault::bad_padding);
  EXPECT_EQ(decode("Z===", out).fault, PayloadFault::bad_padding);
  EXPECT_EQ(decode("====", out).fault, PayloadFault::bad_padding);
  EXPECT_EQ(decode("Zg==Zg==", out).fault, PayloadFault::bad_padding);
  EXPECT_EQ(decode("Zg= ", out).fault, PayloadFault::bad_character);
  EXPECT_EQ(decode("Zm9v\nYmFy", out).fault, PayloadFault::bad_length);
  EXPECT_EQ(decode("Zm9v\r\nYm", out).fault, PayloadFault::bad_character);
  EXPECT_EQ(media::base64_decoded_size("Zg=="), 1U);
  EXPECT_EQ(media::base64_decoded_size("Zm8="), 2U);
  std::vector<std::uint8_t> small(1);
  EXPECT_THROW((void)media::decode_base64("Zm8=", small), std::invalid_argument);
  std::string tiny(3, '\0');
  EXPECT_THROW((void)media::encode_base64(bytes_of("foo"), std::span<char>(tiny.data(), 3)),
               std::invalid_argument);
}

TEST(Base64, NamesAndParsing) {
  EXPECT_EQ(media::fault_name(PayloadFault::bad_length), "bad_length");
  EXPECT_EQ(media::fault_name(PayloadFault::bad_character), "bad_character");
  EXPECT_EQ(media::fault_name(PayloadFault::bad_padding), "bad_padding");
  EXPECT_EQ(media::fault_name(PayloadFault::too_long), "too_long");
  EXPECT_EQ(media::fault_name(PayloadFault::odd_length), "odd_length");
  EXPECT_EQ(media::parse_encoding("mulaw"), Encoding::ulaw);
  EXPECT_EQ(media::parse_encoding("alaw"), Encoding::alaw);
  EXPECT_EQ(media::parse_encoding("l16be"), Encoding::l16_be);
  EXPECT_EQ(media::parse_encoding("l16le"), Encoding::l16_le);
  EXPECT_THROW((void)media::parse_encoding("opus"), std::invalid_argument);
}

struct Rates {
  std::uint32_t line;
  std::uint32_t other;
};
const Rates kRates[] = {{8000, 16000}, {8000, 8000}, {16000, 8000}, {8000, 24000}, {16000, 48000}};

TEST(Inbound, EqualsCompositionForEveryEncodingAndRate) {
  std::mt19937 rng(11);
  for (const Encoding e : kEncodings) {
    for (const auto [line, pipeline] : kRates) {
      media::Inbound in(e, line, pipeline);
      std::unique_ptr<rs::Resampler> ref;
      if (line != pipeline) ref = std::make_unique<rs::Resampler>(line, pipeline);
      ASSERT_EQ(in.resampler() == nullptr, line == pipeline);
      // Message sizes: typical frames, odd sizes, and longer than one internal block.
      for (const std::size_t samples : {160U, 1U, 7U, 320U, 0U, 2500U, 3331U, 80U}) {
        const auto wire = random_bytes(rng, samples * media::bytes_per_sample(e));
        const std::string text = encode(wire);
        const auto expect = resample_step(ref.get(), wire_to_pcm(e, wire));
        ASSERT_EQ(in.output_size(text), expect.size());
        std::vector<std::int16_t> got(expect.size() + 3, 12345);
        ASSERT_EQ(in.decode(text, got), expect.size());
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(), got.begin()))
            << static_cast<int>(e) << " " << line << "->" << pipeline << " n=" << samples;
        EXPECT_EQ(got[expect.size()], 12345);  // nothing written past the count
      }
    }
  }
}

TEST(Inbound, BadMessageLeavesStreamUnchanged) {
  std::mt19937 rng(12);
  for (const std::size_t bad_at : {5U, 6000U}) {  // inside one block, and in a later block
    media::Inbound in(Encoding::ulaw, 8000, 16000);
    rs::Resampler ref(8000, 16000);
    std::vector<std::int16_t> got(20000);
    for (int msg = 0; msg < 4; ++msg) {
      const auto wire = random_bytes(rng, 160);
      const std::string text = encode(wire);
      std::string bad = encode(random_bytes(rng, 6000));
      bad[bad_at] = '*';
      try {
        (void)in.decode(bad, got);
        ADD_FAILURE() << "no error";
      } catch (const media::PayloadError& err) {
        EXPECT_EQ(err.fault(), PayloadFault::bad_character);
        EXPECT_EQ(err.position(), bad_at);
      }
      const auto expect = resample_step(&ref, wire_to_pcm(Encoding::ulaw, wire));
      ASSERT_EQ(in.decode(text, got), expect.size());
      EXPECT_TRUE(std::equal(expect.begin(), expect.end(), got.begin()));
    }
  }
}

TEST(Inbound, SizeFaultsAndShortOutput) {
  media::Inbound ulaw(Encoding::ulaw, 8000, 16000);
  media::Inbound l16(Encoding::l16_le, 16000, 16000);
  std::vector<std::int16_t> out(4096);
  const auto fault_of = [&](media::Inbound& in, const std::string& text) {
    try {
      (void)in.decode(text, out);
    } catch (const media::PayloadError& e) {
      return e.fault();
    }
    return PayloadFault::none;
  };
  EXPECT_EQ(fault_of(ulaw, "Zm9"), PayloadFault::bad_length);
  EXPECT_EQ(fault_of(l16, "Zm9v"), PayloadFault::odd_length);
  EXPECT_EQ(fault_of(l16, "@@@@"), PayloadFault::bad_character);  // characters first
  EXPECT_EQ(fault_of(l16, "Zm9="), PayloadFault::bad_padding);
  EXPECT_EQ(fault_of(l16, "Zm8="), PayloadFault::none);
  EXPECT_EQ(fault_of(ulaw, ""), PayloadFault::none);
  const std::string huge(media::base64_encoded_size(media::kMaxPayloadBytes + 3), 'A');
  EXPECT_EQ(fault_of(ulaw, huge), PayloadFault::too_long);
  std::vector<std::int16_t> small(10);
  EXPECT_THROW((void)ulaw.decode(encode(std::vector<std::uint8_t>(160, 0xFF)), small),
               std::invalid_argument);
  EXPECT_THROW(media::Inbound(Encoding::ulaw, 999, 999), std::invalid_argument);
  EXPECT_THROW(media::Inbound(Encoding::ulaw, 8000, 500000), std::invalid_argument);
}

TEST(Outbound, EqualsCompositionForEveryEncodingAndRate) {
  std::mt19937 rng(13);
  for (const Encoding e : kEncodings) {
    for (const auto [line, source] : kRates) {
      media::Outbound out(e, source, line);
      std::unique_ptr<rs::Resampler> ref;
      if (line != source) ref = std::make_unique<rs::Resampler>(source, line);
      for (const std::size_t samples : {480U, 1U, 0U, 5U, 961U, 4000U, 320U}) {
        std::vector<std::int16_t> pcm(samples);
        for (auto& x : pcm) x = static_cast<std::int16_t>(static_cast<int>(rng() % 65536) - 32768);
        const std::string expect = encode(pcm_to_wire(e, resample_step(ref.get(), pcm)));
        ASSERT_EQ(out.output_size(samples), expect.size());
        std::string got(expect.size() + 2, '#');
        ASSERT_EQ(out.encode(pcm, std::span<char>(got.data(), got.size())), expect.size());
        EXPECT_EQ(got.substr(0, expect.size()), expect)
            << static_cast<int>(e) << " " << source << "->" << line << " n=" << samples;
        EXPECT_EQ(got.substr(expect.size()), "##");
      }
    }
  }
}

TEST(Outbound, AudioopModeAndErrors) {
  std::vector<std::int16_t> pcm(1000);
  for (std::size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<std::int16_t>(-3 - 64 * static_cast<int>(i % 500));
  media::Outbound out(Encoding::ulaw, 8000, 8000, rs::Quality::voice, g711::EncodeMode::audioop);
  std::vector<std::uint8_t> codes(pcm.size());
  g711::encode_ulaw(std::span<const std::int16_t>(pcm), codes, g711::EncodeMode::audioop);
  std::string got(out.output_size(pcm.size()), '\0');
  out.encode(pcm, std::span<char>(got.data(), got.size()));
  EXPECT_EQ(got, encode(codes));
  std::string small(4, '\0');
  media::Outbound r(Encoding::ulaw, 24000, 8000);
  EXPECT_THROW(r.encode(pcm, std::span<char>(small.data(), small.size())), std::invalid_argument);
  EXPECT_THROW((void)r.output_size(media::kMaxSamples + 1), std::length_error);
  // A refused call leaves the stream as it was: the next call equals a fresh stream's.
  media::Outbound fresh(Encoding::ulaw, 24000, 8000);
  std::string a(r.output_size(pcm.size()), '\0');
  std::string b(fresh.output_size(pcm.size()), '\0');
  r.encode(pcm, std::span<char>(a.data(), a.size()));
  fresh.encode(pcm, std::span<char>(b.data(), b.size()));
  EXPECT_EQ(a, b);
  r.reset();
  std::string c(r.output_size(pcm.size()), '\0');
  r.encode(pcm, std::span<char>(c.data(), c.size()));
  EXPECT_EQ(a, c);
}
