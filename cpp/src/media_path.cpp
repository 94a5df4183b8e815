#include "voxwire/media_path.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

namespace voxwire::media {
namespace {

// RFC 4648 section 4, table 1. The decoding table marks every other byte with bit 7 so one
// OR over a group of four tells whether any of them is outside the alphabet.
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::uint8_t kInvalid = 0x80;

constexpr std::array<std::uint8_t, 256> make_decode_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kInvalid;
  for (std::size_t i = 0; i < 64; ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return t;
}
constexpr std::array<std::uint8_t, 256> kDecode = make_decode_table();

// Long messages are converted in blocks of this many base64 characters (3072 bytes, a whole
// number of 16-bit samples), so the scratch does not grow with the message.
constexpr std::size_t kBlockChars = 4096;
constexpr std::size_t kBlockBytes = kBlockChars / 4 * 3;
// Outbound input samples per block (20 ms at 48 kHz).
constexpr std::size_t kBlockIn = 960;

PayloadFault char_fault(char c) {
  return c == '=' ? PayloadFault::bad_padding : PayloadFault::bad_character;
}

// The shared body of decode_base64 and validate_base64. `out` is null when only validating.
Base64Result run_base64(std::string_view text, std::uint8_t* out) noexcept {
  const std::size_t n = text.size();
  if (n % 4 != 0) return {PayloadFault::bad_length, 0, n};
  if (n == 0) return {};
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t o = 0;
  const std::size_t body = n - 4;  // every group but the last has no padding
  for (std::size_t i = 0; i < body; i += 4) {
    const std::uint32_t a = kDecode[s[i]];
    const std::uint32_t b = kDecode[s[i + 1]];
    const std::uint32_t c = kDecode[s[i + 2]];
    const std::uint32_t d = kDecode[s[i + 3]];
    if (((a | b | c | d) & kInvalid) != 0) {
      std::size_t k = i;
      while (kDecode[s[k]] != kInvalid) ++k;
      return {char_fault(text[k]), 0, k};
    }
    const std::uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
    if (out != nullptr) {
      out[o] = static_cast<std::uint8_t>(v >> 16);
      out[o + 1] = static_cast<std::uint8_t>(v >> 8);
      out[o + 2] = static_cast<std::uint8_t>(v);
    }
    o += 3;
  }
  // The last group: "xxxx", "xxx=" or "xx==" (section 3.2 and 4).
  const std::uint32_t a = kDecode[s[body]];
  const std::uint32_t b = kDecode[s[body + 1]];
  const std::uint32_t c = kDecode[s[body + 2]];
  const std::uint32_t d = kDecode[s[body + 3]];
  for (std::size_t k = 0; k < 2; ++k) {
    if (kDecode[s[body + k]] == kInvalid) return {char_fault(text[body + k]), 0, body + k};
  }
  const bool pad_c = text[body + 2] == '=';
  const bool pad_d = text[body + 3] == '=';
  if (c == kInvalid && !pad_c) return {PayloadFault::bad_character, 0, body + 2};
  if (d == kInvalid && !pad_d) return {PayloadFault::bad_character, 0, body + 3};
  if (pad_c && !pad_d) return {PayloadFault::bad_padding, 0, body + 2};
  std::size_t tail = 3;
  if (pad_c) {
    // One byte: the low 4 bits of b are left over and must be zero (section 3.5).
    if ((b & 0x0F) != 0) return {PayloadFault::bad_padding, 0, body + 1};
    tail = 1;
  } else if (pad_d) {
    // Two bytes: the low 2 bits of c are left over.
    if ((c & 0x03) != 0) return {PayloadFault::bad_padding, 0, body + 2};
    tail = 2;
  }
  const std::uint32_t v = (a << 18) | (b << 12) | ((pad_c ? 0 : c) << 6) | (pad_d ? 0 : d);
  if (out != nullptr) {
    out[o] = static_cast<std::uint8_t>(v >> 16);
    if (tail > 1) out[o + 1] = static_cast<std::uint8_t>(v >> 8);
    if (tail > 2) out[o + 2] = static_cast<std::uint8_t>(v);
  }
  return {PayloadFault::none, o + tail, 0};
}

[[noreturn]] void throw_fault(PayloadFault fault, std::size_t position) {
  std::string what = "malformed base64 payload (" + std::string(fault_name(fault)) + "): ";
  switch (fault) {
    case PayloadFault::bad_length:
      what += "expected a length that is a multiple of 4, got " + std::to_string(position);
      break;
    case PayloadFault::bad_character:
      what += "expected a base64 alphabet character at offset " + std::to_string(position);
      break;
    case PayloadFault::bad_padding:
      what += "padding or leftover bits wrong at offset " + std::to_string(position);
      break;
    case PayloadFault::too_long:
      what = "payload too long (too_long): expected at most " + std::to_string(kMaxPayloadBytes) +
             " bytes, got " + std::to_string(position);
      break;
    case PayloadFault::odd_length:
      what = "payload is not whole 16-bit samples (odd_length): expected an even number of "
             "bytes, got " + std::to_string(position);
      break;
    case PayloadFault::none:
      break;
  }
  throw PayloadError(fault, position, what);
}

void decode_l16(std::span<const std::uint8_t> wire, std::int16_t* out, bool big_endian) {
  const std::size_t n = wire.size() / 2;
  const std::uint8_t* p = wire.data();
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned hi = big_endian ? p[2 * i] : p[2 * i + 1];
    const unsigned lo = big_endian ? p[2 * i + 1] : p[2 * i];
    out[i] = static_cast<std::int16_t>(static_cast<std::uint16_t>((hi << 8) | lo));
  }
}

void encode_l16(std::span<const std::int16_t> pcm, std::uint8_t* out, bool big_endian) {
  for (std::size_t i = 0; i < pcm.size(); ++i) {
    const auto u = static_cast<std::uint16_t>(pcm[i]);
    const auto hi = static_cast<std::uint8_t>(u >> 8);
    const auto lo = static_cast<std::uint8_t>(u & 0xFF);
    out[2 * i] = big_endian ? hi : lo;
    out[2 * i + 1] = big_endian ? lo : hi;
  }
}

}  // namespace

std::string_view fault_name(PayloadFault fault) noexcept {
  switch (fault) {
    case PayloadFault::none:
      return "none";
    case PayloadFault::bad_length:
      return "bad_length";
    case PayloadFault::bad_character:
      return "bad_character";
    case PayloadFault::bad_padding:
      return "bad_padding";
    case PayloadFault::too_long:
      return "too_long";
    case PayloadFault::odd_length:
      return "odd_length";
  }
  return "none";
}

std::size_t base64_decoded_size(std::string_view text) noexcept {
  const std::size_t n = text.size();
  std::size_t size = n / 4 * 3;
  if (n >= 4 && n % 4 == 0) {
    if (text[n - 1] == '=') --size;
    if (text[n - 2] == '=') --size;
  }
  return size;
}

Base64Result decode_base64(std::string_view text, std::span<std::uint8_t> out) {
  if (out.size() < base64_decoded_size(text)) {
    throw std::invalid_argument("decode_base64: output holds " + std::to_string(out.size()) +
                                " bytes, need " + std::to_string(base64_decoded_size(text)));
  }
  return run_base64(text, out.data());
}

Base64Result validate_base64(std::string_view text) noexcept { return run_base64(text, nullptr); }

std::size_t encode_base64(std::span<const std::uint8_t> in, std::span<char> out) {
  const std::size_t need = base64_encoded_size(in.size());
  if (out.size() < need) {
    throw std::invalid_argument("encode_base64: output holds " + std::to_string(out.size()) +
                                " characters, need " + std::to_string(need));
  }
  const std::uint8_t* p = in.data();
  char* o = out.data();
  const std::size_t whole = in.size() / 3 * 3;
  for (std::size_t i = 0; i < whole; i += 3, o += 4) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8) | p[i + 2];
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 0x3F];
    o[2] = kAlphabet[(v >> 6) & 0x3F];
    o[3] = kAlphabet[v & 0x3F];
  }
  const std::size_t rest = in.size() - whole;
  if (rest != 0) {
    const std::uint32_t v = (std::uint32_t{p[whole]} << 16) |
                            (rest == 2 ? std::uint32_t{p[whole + 1]} << 8 : 0U);
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 0x3F];
    o[2] = rest == 2 ? kAlphabet[(v >> 6) & 0x3F] : '=';
    o[3] = '=';
  }
  return need;
}

Encoding parse_encoding(std::string_view name) {
  if (name == "mulaw" || name == "ulaw" || name == "pcmu") return Encoding::ulaw;
  if (name == "alaw" || name == "pcma") return Encoding::alaw;
  if (name == "l16" || name == "l16be") return Encoding::l16_be;
  if (name == "l16le") return Encoding::l16_le;
  throw std::invalid_argument("encoding must be one of 'mulaw', 'alaw', 'l16be', 'l16le', got '" +
                              std::string(name) + "'");
}

// --- Inbound ----------------------------------------------------------------------------

Inbound::Inbound(Encoding encoding, std::uint32_t line_rate, std::uint32_t pipeline_rate,
                 resample::Quality quality)
    : encoding_(encoding), line_rate_(line_rate), pipeline_rate_(pipeline_rate) {
  if (line_rate != pipeline_rate) {
    resampler_.emplace(line_rate, pipeline_rate, quality);
  } else if (line_rate < resample::kMinRate || line_rate > resample::kMaxRate) {
    throw std::invalid_argument("line rate must be between " + std::to_string(resample::kMinRate) +
                                " and " + std::to_string(resample::kMaxRate) + " Hz, got " +
                                std::to_string(line_rate));
  }
  bytes_.resize(kBlockBytes);
  pcm_.resize(kBlockBytes);
}

double Inbound::latency() const noexcept { return resampler_ ? resampler_->latency() : 0.0; }

std::size_t Inbound::output_size(std::string_view payload) const {
  const std::size_t n = payload.size();
  if (n % 4 != 0) throw_fault(PayloadFault::bad_length, n);
  const std::size_t bytes = base64_decoded_size(payload);
  if (bytes > kMaxPayloadBytes) throw_fault(PayloadFault::too_long, bytes);
  const std::size_t samples = bytes / bytes_per_sample(encoding_);
  return resampler_ ? resampler_->output_size(samples) : samples;
}

void Inbound::convert(std::span<const std::uint8_t> wire, std::span<std::int16_t> out,
                      std::size_t& written) {
  const std::size_t count = wire.size() / bytes_per_sample(encoding_);
  // Without a resampler the samples go straight to the caller's buffer.
  std::int16_t* dst = resampler_ ? pcm_.data() : out.data() + written;
  const std::span<std::int16_t> pcm(dst, count);
  switch (encoding_) {
    case Encoding::ulaw:
      g711::decode_ulaw(wire, pcm);
      break;
    case Encoding::alaw:
      g711::decode_alaw(wire, pcm);
      break;
    case Encoding::l16_be:
      decode_l16(wire, dst, true);
      break;
    case Encoding::l16_le:
      decode_l16(wire, dst, false);
      break;
  }
  if (resampler_) {
    written += resampler_->process(pcm, out.subspan(written));
  } else {
    written += count;
  }
}

std::size_t Inbound::decode(std::string_view payload, std::span<std::int16_t> out) {
  const std::size_t need = output_size(payload);
  if (out.size() < need) {
    throw std::invalid_argument("Inbound::decode: output holds " + std::to_string(out.size()) +
                                " samples, need " + std::to_string(need));
  }
  const std::size_t n = payload.size();
  if (n == 0) return 0;
  // A payload of one block is checked as it is decoded, before the stream is touched; a
  // longer one is checked whole first, so a fault near its end cannot leave the resampler
  // half-way through the message. Characters are checked before the sample count, so text
  // that is not base64 at all is reported as such.
  const std::size_t bytes = base64_decoded_size(payload);
  const bool odd = bytes % bytes_per_sample(encoding_) != 0;
  if (n > kBlockChars || odd) {
    const Base64Result r = validate_base64(payload);
    if (r.fault != PayloadFault::none) throw_fault(r.fault, r.position);
    if (odd) throw_fault(PayloadFault::odd_length, bytes);
  }
  std::size_t written = 0;
  for (std::size_t pos = 0; pos < n; pos += kBlockChars) {
    const std::string_view block = payload.substr(pos, kBlockChars);
    const Base64Result r = decode_base64(block, bytes_);
    if (r.fault != PayloadFault::none) throw_fault(r.fault, pos + r.position);
    convert(std::span<const std::uint8_t>(bytes_.data(), r.size), out, written);
  }
  return written;
}

void Inbound::reset() noexcept {
  if (resampler_) resampler_->reset();
}

// --- Outbound ---------------------------------------------------------------------------

Outbound::Outbound(Encoding encoding, std::uint32_t source_rate, std::uint32_t line_rate,
                   resample::Quality quality, g711::EncodeMode mode)
    : encoding_(encoding), source_rate_(source_rate), line_rate_(line_rate), mode_(mode) {
  std::size_t block_out = kBlockIn;
  if (source_rate != line_rate) {
    resampler_.emplace(source_rate, line_rate, quality);
    // A block of k inputs yields at most ceil(k * L / M) + 1 outputs, whatever the state.
    const std::size_t up = resampler_->filter().up();
    const std::size_t down = resampler_->filter().down();
    block_out = (kBlockIn * up + down - 1) / down + 1;
    line_.resize(block_out);
  } else if (line_rate < resample::kMinRate || line_rate > resample::kMaxRate) {
    throw std::invalid_argument("line rate must be between " + std::to_string(resample::kMinRate) +
                                " and " + std::to_string(resample::kMaxRate) + " Hz, got " +
                                std::to_string(line_rate));
  }
  bytes_.resize(2 + block_out * bytes_per_sample(encoding));
}

double Outbound::latency() const noexcept { return resampler_ ? resampler_->latency() : 0.0; }

std::size_t Outbound::line_samples(std::size_t n) const {
  if (n > kMaxSamples) {
    throw std::length_error("Outbound: expected at most " + std::to_string(kMaxSamples) +
                            " samples per message, got " + std::to_string(n));
  }
  return resampler_ ? resampler_->output_size(n) : n;
}

std::size_t Outbound::encode(std::span<const std::int16_t> pcm, std::span<char> out) {
  const std::size_t need = output_size(pcm.size());
  if (out.size() < need) {
    throw std::invalid_argument("Outbound::encode: output holds " + std::to_string(out.size()) +
                                " characters, need " + std::to_string(need));
  }
  const std::size_t width = bytes_per_sample(encoding_);
  std::size_t carry = 0;  // wire bytes waiting for a whole base64 group
  std::size_t written = 0;
  for (std::size_t pos = 0; pos < pcm.size(); pos += kBlockIn) {
    const auto block = pcm.subspan(pos, std::min(kBlockIn, pcm.size() - pos));
    std::span<const std::int16_t> line = block;
    if (resampler_) {
      const std::size_t m = resampler_->process(block, line_);
      line = std::span<const std::int16_t>(line_.data(), m);
    }
    std::uint8_t* wire = bytes_.data() + carry;
    switch (encoding_) {
      case Encoding::ulaw:
        g711::encode_ulaw(line, std::span<std::uint8_t>(wire, line.size()), mode_);
        break;
      case Encoding::alaw:
        g711::encode_alaw(line, std::span<std::uint8_t>(wire, line.size()), mode_);
        break;
      case Encoding::l16_be:
        encode_l16(line, wire, true);
        break;
      case Encoding::l16_le:
        encode_l16(line, wire, false);
        break;
    }
    const std::size_t total = carry + line.size() * width;
    const std::size_t whole = total / 3 * 3;
    written += encode_base64(std::span<const std::uint8_t>(bytes_.data(), whole),
                             out.subspan(written));
    carry = total - whole;
    std::memmove(bytes_.data(), bytes_.data() + whole, carry);
  }
  if (carry != 0) {
    written += encode_base64(std::span<const std::uint8_t>(bytes_.data(), carry),
                             out.subspan(written));
  }
  return written;
}

void Outbound::reset() noexcept {
  if (resampler_) resampler_->reset();
}

}  // namespace voxwire::media
