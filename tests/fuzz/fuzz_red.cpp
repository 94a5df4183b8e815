// libFuzzer target for the RFC 2198 (RED) payload parser.
//
// Every input is parsed as a RED payload; a valid one must tile the input exactly (headers,
// then the blocks in order, the primary last), and rebuilding it from its blocks must give
// back the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "voxwire/red.hpp"

namespace red = voxwire::red;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(data), size);
  red::Payload p;
  if (red::parse(payload, p) != red::ParseError::ok) return 0;
  require(p.count <= red::kMaxBlocks);
  std::size_t expect = 4 * p.count + 1;
  for (std::size_t i = 0; i < p.count; ++i) {
    const auto& b = p.redundant[i];
    require(b.payload_type <= 127 && b.timestamp_offset <= red::kMaxOffset);
    require(b.data.size() <= red::kMaxBlockSize);
    require(b.data.data() == payload.data() + expect);
    expect += b.data.size();
  }
  require(p.primary.data.data() == payload.data() + expect || p.primary.data.empty());
  require(expect + p.primary.data.size() == size);
  const std::span<const red::Block> blocks(p.redundant.data(), p.count);
  std::vector<std::byte> out(red::built_size(blocks, p.primary));
  require(out.size() == size);
  require(red::build(blocks, p.primary, out) == size);
  require(std::memcmp(out.data(), data, size) == 0);
  return 0;
}
