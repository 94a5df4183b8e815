#include "voxwire/red.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace voxwire::red {
namespace {

constexpr std::size_t kHeaderSize = 4;  // a redundant block's header

unsigned byte_at(std::span<const std::byte> s, std::size_t i) noexcept {
  return std::to_integer<unsigned>(s[i]);
}

}  // namespace

std::string_view to_string(ParseError e) noexcept {
  switch (e) {
    case ParseError::ok: return "ok";
    case ParseError::empty: return "empty";
    case ParseError::header_past_end: return "header_past_end";
    case ParseError::too_many_blocks: return "too_many_blocks";
    case ParseError::block_past_end: return "block_past_end";
  }
  return "unknown";
}

// RFC 2198 section 3. Every header is read only after checking that it lies inside the
// payload, and the block lengths are summed (each at most 1023, at most kMaxBlocks of them,
// so the sum cannot overflow) before any block is located.
ParseError parse(std::span<const std::byte> payload, Payload& out) noexcept {
  if (payload.empty()) return ParseError::empty;
  out.count = 0;
  std::size_t pos = 0;
  std::size_t total = 0;
  std::array<std::size_t, kMaxBlocks> sizes{};
  while (true) {
    if (pos >= payload.size()) return ParseError::header_past_end;
    const unsigned b0 = byte_at(payload, pos);
    if ((b0 & 0x80u) == 0) {  // F = 0: the primary's header, the last one
      out.primary.payload_type = static_cast<std::uint8_t>(b0 & 0x7Fu);
      out.primary.timestamp_offset = 0;
      ++pos;
      break;
    }
    if (payload.size() - pos < kHeaderSize) return ParseError::header_past_end;
    if (out.count == kMaxBlocks) return ParseError::too_many_blocks;
    const unsigned b1 = byte_at(payload, pos + 1);
    const unsigned b2 = byte_at(payload, pos + 2);
    const unsigned b3 = byte_at(payload, pos + 3);
    Block& blk = out.redundant[out.count];
    blk.payload_type = static_cast<std::uint8_t>(b0 & 0x7Fu);
    blk.timestamp_offset = (b1 << 6) | (b2 >> 2);
    sizes[out.count] = ((b2 & 0x03u) << 8) | b3;
    total += sizes[out.count];
    ++out.count;
    pos += kHeaderSize;
  }
  if (total > payload.size() - pos) return ParseError::block_past_end;
  for (std::size_t i = 0; i < out.count; ++i) {
    out.redundant[i].data = payload.subspan(pos, sizes[i]);
    pos += sizes[i];
  }
  out.primary.data = payload.subspan(pos);
  return ParseError::ok;
}

std::size_t built_size(std::span<const Block> redundant, const Block& primary) noexcept {
  std::size_t n = 1 + primary.data.size();
  for (const Block& b : redundant) n += kHeaderSize + b.data.size();
  return n;
}

std::size_t build(std::span<const Block> redundant, const Block& primary,
                  std::span<std::byte> out) {
  if (redundant.size() > kMaxBlocks) {
    throw std::invalid_argument("red::build: at most " + std::to_string(kMaxBlocks) +
                                " redundant blocks, got " + std::to_string(redundant.size()));
  }
  if (primary.payload_type > 127) {
    throw std::invalid_argument("red::build: payload type above 127");
  }
  for (const Block& b : redundant) {
    if (b.payload_type > 127) throw std::invalid_argument("red::build: payload type above 127");
    if (b.timestamp_offset > kMaxOffset) {
      throw std::invalid_argument("red::build: timestamp offset " +
                                  std::to_string(b.timestamp_offset) + " above 16383");
    }
    if (b.data.size() > kMaxBlockSize) {
      throw std::invalid_argument("red::build: redundant block of " +
                                  std::to_string(b.data.size()) + " bytes, above 1023");
    }
  }
  const std::size_t size = built_size(redundant, primary);
  if (out.size() < size) throw std::invalid_argument("red::build: output buffer too small");
  std::size_t pos = 0;
  for (const Block& b : redundant) {
    const std::size_t len = b.data.size();
    out[pos] = static_cast<std::byte>(0x80u | b.payload_type);
    out[pos + 1] = static_cast<std::byte>(b.timestamp_offset >> 6);
    out[pos + 2] = static_cast<std::byte>(((b.timestamp_offset & 0x3Fu) << 2) | (len >> 8));
    out[pos + 3] = static_cast<std::byte>(len & 0xFFu);
    pos += kHeaderSize;
  }
  out[pos++] = static_cast<std::byte>(primary.payload_type);
  for (const Block& b : redundant) {
    if (!b.data.empty()) std::memcpy(out.data() + pos, b.data.data(), b.data.size());
    pos += b.data.size();
  }
  if (!primary.data.empty()) {
    std::memcpy(out.data() + pos, primary.data.data(), primary.data.size());
  }
  return pos + primary.data.size();
}

}  // namespace voxwire::red
