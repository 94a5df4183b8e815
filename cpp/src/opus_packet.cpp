#include "voxwire/opus_packet.hpp"

#include <array>

namespace voxwire::opus {
namespace {

unsigned at(std::span<const std::byte> p, std::size_t i) noexcept {
  return std::to_integer<unsigned>(p[i]);
}

// Frame duration per configuration (RFC 6716 Table 2), in microseconds.
constexpr std::array<std::uint32_t, 32> kFrameUs = {
    10000, 20000, 40000, 60000, 10000, 20000, 40000, 60000,  // SILK NB, MB
    10000, 20000, 40000, 60000,                              // SILK WB
    10000, 20000, 10000, 20000,                              // Hybrid SWB, FB
    2500,  5000,  10000, 20000, 2500,  5000,  10000, 20000,  // CELT NB, WB
    2500,  5000,  10000, 20000, 2500,  5000,  10000, 20000,  // CELT SWB, FB
};

// A frame length (RFC 6716 3.2.1): one byte below 252, else two bytes (b0 + 4 * b1).
bool read_length(std::span<const std::byte> p, std::size_t& pos, std::size_t& len) noexcept {
  if (pos >= p.size()) return false;
  const unsigned b0 = at(p, pos);
  if (b0 < 252) {
    len = b0;
    pos += 1;
    return true;
  }
  if (pos + 1 >= p.size()) return false;
  len = b0 + 4 * at(p, pos + 1);
  pos += 2;
  return true;
}

// The start of the range decoder (RFC 6716 4.1.1, 4.1.2.1) and its equiprobable binary
// symbol (ec_dec_bit_logp with logp = 1), enough to read the SILK header flags. Past the end
// of the frame the decoder reads zeros, as the specification says.
class RangeDecoder {
 public:
  explicit RangeDecoder(std::span<const std::byte> data) noexcept : data_(data) {
    rem_ = next();
    val_ = 127 - (rem_ >> 1);
    normalize();
  }

  bool bit() noexcept {
    const std::uint32_t s = rng_ >> 1;
    const bool one = val_ < s;
    if (!one) val_ -= s;
    rng_ = one ? s : rng_ - s;
    normalize();
    return one;
  }

 private:
  unsigned next() noexcept { return pos_ < data_.size() ? at(data_, pos_++) : 0u; }

  void normalize() noexcept {
    while (rng_ <= (1u << 23)) {
      rng_ <<= 8;
      const unsigned b = next();
      const std::uint32_t sym = (((rem_ << 8) | b) >> 1) & 0xFFu;
      rem_ = b;
      val_ = ((val_ << 8) + (255u - sym)) & 0x7FFFFFFFu;
    }
  }

  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
  std::uint32_t rng_ = 128;
  std::uint32_t val_ = 0;
  unsigned rem_ = 0;
};

}  // namespace

std::string_view to_string(PacketError e) noexcept {
  switch (e) {
    case PacketError::ok: return "ok";
    case PacketError::empty: return "empty";
    case PacketError::odd_cbr_pair: return "odd_cbr_pair";
    case PacketError::bad_length: return "bad_length";
    case PacketError::no_frame_count: return "no_frame_count";
    case PacketError::zero_frames: return "zero_frames";
    case PacketError::too_long: return "too_long";
    case PacketError::bad_padding: return "bad_padding";
    case PacketError::uneven_cbr: return "uneven_cbr";
  }
  return "unknown";
}

PacketError parse(std::span<const std::byte> packet, PacketInfo& out) noexcept {
  const std::size_t n = packet.size();
  if (n == 0) return PacketError::empty;
  const unsigned toc = at(packet, 0);
  out.config = static_cast<std::uint8_t>(toc >> 3);
  out.mode = out.config < 12 ? Mode::silk : (out.config < 16 ? Mode::hybrid : Mode::celt);
  out.stereo = ((toc >> 2) & 1u) != 0;
  out.code = static_cast<std::uint8_t>(toc & 3u);
  out.frame_us = kFrameUs[out.config];
  std::size_t pos = 1;
  switch (out.code) {
    case 0:
      out.frames = 1;
      out.first_offset = 1;
      out.first_size = n - 1;
      break;
    case 1:
      if ((n - 1) % 2 != 0) return PacketError::odd_cbr_pair;
      out.frames = 2;
      out.first_offset = 1;
      out.first_size = (n - 1) / 2;
      break;
    case 2: {
      std::size_t len = 0;
      if (!read_length(packet, pos, len) || len > n - pos) return PacketError::bad_length;
      out.frames = 2;
      out.first_offset = pos;
      out.first_size = len;
      break;
    }
    default: {
      if (n < 2) return PacketError::no_frame_count;
      const unsigned count = at(packet, 1);
      const bool vbr = (count & 0x80u) != 0;
      const bool padded = (count & 0x40u) != 0;
      out.frames = count & 0x3Fu;
      if (out.frames == 0) return PacketError::zero_frames;
      pos = 2;
      std::size_t padding = 0;
      if (padded) {
        // Each 255 adds 254 bytes and continues; any other value ends the count.
        for (;;) {
          if (pos >= n) return PacketError::bad_padding;
          const unsigned b = at(packet, pos++);
          padding += b == 255 ? 254 : b;
          if (b != 255) break;
        }
      }
      if (padding > n - pos) return PacketError::bad_padding;
      const std::size_t end = n - padding;
      if (vbr) {
        std::size_t total = 0;
        std::size_t first = 0;
        for (std::uint32_t i = 0; i + 1 < out.frames; ++i) {
          std::size_t len = 0;
          if (!read_length(packet, pos, len) || pos > end) return PacketError::bad_length;
          if (i == 0) first = len;
          total += len;
        }
        if (total > end - pos) return PacketError::bad_length;
        out.first_offset = pos;
        // A single frame takes everything left; otherwise the first has a coded length.
        out.first_size = out.frames == 1 ? end - pos : first;
      } else {
        if ((end - pos) % out.frames != 0) return PacketError::uneven_cbr;
        out.first_offset = pos;
        out.first_size = (end - pos) / out.frames;
      }
      break;
    }
  }
  if (out.first_size > 1275) return PacketError::bad_length;  // R2
  if (std::uint64_t{out.frames} * out.frame_us > 120000) return PacketError::too_long;
  return PacketError::ok;
}

bool has_lbrr(std::span<const std::byte> packet) noexcept {
  PacketInfo info;
  if (parse(packet, info) != PacketError::ok || info.mode == Mode::celt || info.first_size == 0) {
    return false;
  }
  // SILK header (RFC 6716 4.2.3-4.2.4): per channel, one VAD flag per 20 ms SILK frame in the
  // Opus frame (1 for 10/20 ms, 2 for 40 ms, 3 for 60 ms), then the LBRR flag.
  const std::uint32_t silk_frames = info.frame_us <= 20000 ? 1 : info.frame_us / 20000;
  RangeDecoder rd(packet.subspan(info.first_offset, info.first_size));
  bool lbrr = false;
  for (int channel = 0; channel < (info.stereo ? 2 : 1); ++channel) {
    for (std::uint32_t i = 0; i < silk_frames; ++i) (void)rd.bit();
    lbrr = rd.bit() || lbrr;
  }
  return lbrr;
}

}  // namespace voxwire::opus
