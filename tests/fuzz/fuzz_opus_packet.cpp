// libFuzzer target for Opus packet inspection: parse() and has_lbrr() on arbitrary bytes
// must never read outside the packet, and a parsed packet must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "voxwire/opus_packet.hpp"

namespace opus = voxwire::opus;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> packet(reinterpret_cast<const std::byte*>(data), size);
  opus::PacketInfo info;
  if (opus::parse(packet, info) == opus::PacketError::ok) {
    if (info.frames == 0 || info.frames > 48) std::abort();
    if (info.first_offset + info.first_size > size) std::abort();
    if (std::uint64_t{info.frames} * info.frame_us > 120000) std::abort();
    if (info.first_size > 1275) std::abort();
  }
  const bool lbrr = opus::has_lbrr(packet);
  if (lbrr && (size == 0 || info.mode == opus::Mode::celt)) std::abort();
  return 0;
}
