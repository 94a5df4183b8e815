#pragma once
/// Opus packet inspection without decoding (IETF RFC 6716).
///
/// parse() reads the table-of-contents byte and the frame packing (section 3.1-3.2) and
/// checks the well-formedness rules of section 3.4; has_lbrr() tells whether the packet's
/// first frame carries in-band FEC (SILK LBRR data) for the frame before it, by decoding the
/// SILK header flags with the range decoder of section 4.1. A jitter buffer uses these to
/// know each packet's duration and whether a missing predecessor can be recovered, before
/// anything is decoded. Nothing here allocates or reads outside the packet.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace voxwire::opus {

/// Coding mode of a packet (RFC 6716 3.1, Table 2).
enum class Mode : std::uint8_t { silk = 0, hybrid = 1, celt = 2 };

/// Why a packet is malformed (RFC 6716 3.4). `ok` means it is not.
enum class PacketError : std::uint8_t {
  ok = 0,
  empty,           ///< R1: no TOC byte.
  odd_cbr_pair,    ///< R3: code 1 with an odd number of bytes after the TOC.
  bad_length,      ///< A frame over 1275 bytes (R2), or a length past the end (R4, R6, R7).
  no_frame_count,  ///< Code 3 without its frame-count byte.
  zero_frames,     ///< Code 3 with a frame count of 0 (R5).
  too_long,        ///< More than 120 ms of audio (R5).
  bad_padding,     ///< Code 3 padding longer than the packet.
  uneven_cbr,      ///< Code 3 CBR whose frame bytes do not divide evenly (R6).
};

/// A short, stable name for a packet error ("odd_cbr_pair", ...).
[[nodiscard]] std::string_view to_string(PacketError e) noexcept;

/// What the TOC and frame packing say.
struct PacketInfo {
  std::uint8_t config = 0;          ///< 0..31 (Table 2).
  Mode mode = Mode::silk;
  bool stereo = false;
  std::uint8_t code = 0;            ///< Frame packing code 0..3.
  std::uint32_t frames = 0;         ///< Frames in the packet.
  std::uint32_t frame_us = 0;       ///< Duration of each frame in microseconds (2500..60000).
  std::size_t first_offset = 0;     ///< Offset of the first frame's data.
  std::size_t first_size = 0;       ///< Bytes of the first frame (0 = DTX / nothing coded).

  /// Samples in the packet at `sample_rate` (Hz) per channel.
  [[nodiscard]] std::uint64_t samples(std::uint32_t sample_rate) const noexcept {
    return std::uint64_t{frames} * frame_us * sample_rate / 1000000u;
  }
};

/// Parses the TOC and frame packing of `packet` into `out`; returns PacketError::ok or the
/// first rule of RFC 6716 3.4 it breaks.
[[nodiscard]] PacketError parse(std::span<const std::byte> packet, PacketInfo& out) noexcept;

/// True if the packet's first frame carries LBRR (in-band FEC) data, which lets a decoder
/// rebuild the frame before this packet (opus_decode with decode_fec = 1). False for CELT-only
/// packets, DTX frames and malformed packets.
[[nodiscard]] bool has_lbrr(std::span<const std::byte> packet) noexcept;

}  // namespace voxwire::opus
