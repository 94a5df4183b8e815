#pragma once
/// Redundant audio data in RTP (IETF RFC 2198, "RED"), the payload format WebRTC uses to
/// send the previous Opus packets again inside each packet.
///
/// A RED payload is a list of block headers followed by the blocks. Each redundant block has
/// a 4-byte header: F = 1 (1 bit), its payload type (7), its timestamp offset before the RTP
/// timestamp of the packet (14) and its length in bytes (10). The last header is one byte,
/// F = 0 and the payload type of the primary block, whose data is the rest of the payload.
/// Blocks follow in header order, oldest first, the primary last.
///
/// parse() validates strictly and locates the blocks without copying; build() writes a
/// payload. Neither allocates; neither reads or writes outside the spans given.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace voxwire::red {

/// The most redundant blocks parse() accepts. RFC 2198 sets no limit; senders use one or
/// two (WebRTC up to two), and 4-byte headers would allow hundreds in one datagram.
inline constexpr std::size_t kMaxBlocks = 8;
/// Largest timestamp offset a header can hold (14 bits).
inline constexpr std::uint32_t kMaxOffset = (1u << 14) - 1;
/// Largest redundant block a header can describe (10 bits).
inline constexpr std::size_t kMaxBlockSize = (1u << 10) - 1;

/// Why a payload could not be parsed. `ok` means it could.
enum class ParseError : std::uint8_t {
  ok = 0,
  empty,            ///< No bytes: not even the primary's one-byte header.
  header_past_end,  ///< The block headers run past the end (no final F = 0 header in reach).
  too_many_blocks,  ///< More than kMaxBlocks redundant blocks.
  block_past_end,   ///< The redundant blocks' lengths add up to more than the payload holds.
};

/// A short, stable name ("header_past_end", ...), used in counters and messages.
[[nodiscard]] std::string_view to_string(ParseError e) noexcept;

/// One block of a RED payload.
struct Block {
  std::uint8_t payload_type = 0;       ///< 7 bits.
  std::uint32_t timestamp_offset = 0;  ///< RTP timestamp units before the packet's (0 for
                                       ///< the primary).
  std::span<const std::byte> data{};
};

/// A parsed payload: `count` redundant blocks, oldest first, then the primary.
struct Payload {
  std::array<Block, kMaxBlocks> redundant{};
  std::size_t count = 0;
  Block primary{};
};

/// Parses `payload` (an RTP payload of the RED payload type) into `out`. Returns
/// ParseError::ok, or the first rule the payload breaks (then `out` is unspecified).
[[nodiscard]] ParseError parse(std::span<const std::byte> payload, Payload& out) noexcept;

/// Bytes build() writes for these blocks.
[[nodiscard]] std::size_t built_size(std::span<const Block> redundant,
                                     const Block& primary) noexcept;

/// Writes a RED payload: the `redundant` blocks (oldest first) and the primary. Returns its
/// size. Throws std::invalid_argument for more than kMaxBlocks redundant blocks, a payload
/// type above 127, an offset above kMaxOffset, a redundant block above kMaxBlockSize bytes,
/// or an `out` shorter than built_size().
std::size_t build(std::span<const Block> redundant, const Block& primary,
                  std::span<std::byte> out);

}  // namespace voxwire::red
