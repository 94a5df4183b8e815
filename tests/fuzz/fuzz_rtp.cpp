// libFuzzer target for the RTP parser and the receiver-side source tracking.
//
// Whole input: parsed as one packet; a valid one is rebuilt from its fields and must parse to
// the same fields and payload. Then the input is read as a stream of 8-byte records (sequence,
// timestamp low bits, SSRC choice, arrival step) fed to a Source, whose invariants must hold
// after every packet.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "voxwire/rtp.hpp"

namespace rtp = voxwire::rtp;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void check_round_trip(std::span<const std::byte> packet, const rtp::Header& h) {
  require(h.payload_offset + h.payload_size + h.padding_size == packet.size());
  rtp::BuildSpec spec;
  spec.marker = h.marker;
  spec.payload_type = h.payload_type;
  spec.sequence = h.sequence;
  spec.timestamp = h.timestamp;
  spec.ssrc = h.ssrc;
  spec.csrcs = std::span<const std::uint32_t>(h.csrcs.data(), h.csrc_count);
  spec.has_extension = h.has_extension;
  spec.extension_profile = h.extension_profile;
  spec.extension = packet.subspan(h.extension_offset, h.extension_size);
  spec.padding = h.padding_size;
  const auto payload = packet.subspan(h.payload_offset, h.payload_size);
  std::vector<std::byte> out(rtp::built_size(spec, payload.size()));
  require(rtp::build(spec, payload, out) == out.size());
  require(out.size() == packet.size());
  rtp::Header again;
  require(rtp::parse(out, again) == rtp::ParseError::ok);
  require(again.marker == h.marker && again.payload_type == h.payload_type &&
          again.sequence == h.sequence && again.timestamp == h.timestamp &&
          again.ssrc == h.ssrc && again.csrc_count == h.csrc_count &&
          again.has_extension == h.has_extension &&
          again.extension_profile == h.extension_profile &&
          again.extension_size == h.extension_size && again.payload_size == h.payload_size &&
          again.padding_size == h.padding_size);
  require(std::memcmp(out.data() + again.payload_offset, payload.data(), payload.size()) == 0);
}

void check_source(const std::uint8_t* data, std::size_t size) {
  rtp::SourceConfig cfg;
  cfg.min_sequential = size > 0 ? 1u + data[0] % 3u : 1u;
  rtp::Source src(cfg);
  std::uint64_t accepted = 0;
  std::int64_t arrival = 0;
  for (std::size_t i = 1; i + 8 <= size; i += 8) {
    const std::uint8_t* r = data + i;
    rtp::Header h;
    h.sequence = static_cast<std::uint16_t>(r[0] << 8 | r[1]);
    h.timestamp = static_cast<std::uint32_t>(r[2] << 24 | r[3] << 16 | r[4] << 8);
    h.ssrc = r[5] & 3u;
    arrival += r[6] % 64;
    const bool timed = (r[5] & 4u) == 0;  // some as telephone events: out of the jitter
    const std::int64_t before = src.highest_sequence();
    const bool was_valid = src.valid();
    const auto res = src.receive(h, arrival, timed);
    switch (res.verdict) {
      case rtp::Verdict::accepted:
        ++accepted;
        if (res.restarted) {
          require(res.extended_sequence == before + 1);
        } else if (was_valid) {
          require(res.extended_sequence > before);
        }
        require(src.highest_sequence() == res.extended_sequence);
        break;
      case rtp::Verdict::reordered:
        ++accepted;
        require(res.extended_sequence < before);
        require(src.highest_sequence() == before);
        break;
      default:
        require(src.highest_sequence() == before);
        break;
    }
    const auto s = src.stats();
    require(s.received == accepted);
    require(s.lost >= 0);
    require(s.jitter >= 0.0);
  }
  const auto report = src.interval_report();
  require(report.received == accepted);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> packet(reinterpret_cast<const std::byte*>(data), size);
  rtp::Header h;
  if (rtp::parse(packet, h) == rtp::ParseError::ok) check_round_trip(packet, h);
  check_source(data, size);
  return 0;
}
