// libFuzzer target for the jitter buffer.
//
// The first bytes choose a configuration; the rest is a stream of 6-byte records, each an
// insert (primary or redundant copy; sequence and timestamp offsets around a start near both
// wraparounds, flags, payload size) or a pull after a time step. After every call the
// buffer's contract must hold: frames played in increasing order and never twice, no payload
// on a concealed or silent unit, a store within its capacity, a target within its bounds,
// and the emitted-samples statistic equal to what was played.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <span>
#include <vector>

#include "voxwire/jitter.hpp"

namespace jb = voxwire::jitter;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  jb::Config c;
  c.frame_ms = (data[0] & 1) != 0 ? 10 : 20;
  c.clock_rate = (data[0] & 2) != 0 ? 48000 : 8000;
  c.capacity = 2u + data[1] % 64u;
  c.max_delay_ms = static_cast<std::int64_t>(c.capacity - 1) * c.frame_ms;
  c.initial_delay_ms = std::min<std::int64_t>(c.max_delay_ms, data[2]);
  c.min_delay_ms = std::min<std::int64_t>(c.initial_delay_ms, data[3] % 40);
  c.max_payload = 16;
  c.fec_lookahead = (data[0] & 4) != 0;
  c.time_stretch = (data[0] & 8) != 0;
  jb::Buffer buf(c);
  const std::uint32_t spf = buf.samples_per_frame();
  const std::uint16_t seq0 = 65500;
  const std::uint32_t ts0 = 0xFFFFFFFFu - 3 * spf;

  std::int64_t now = 0;
  std::int64_t last_played = INT64_MIN;
  std::set<std::int64_t> played;
  std::vector<std::byte> payload(17);
  for (std::size_t i = 4; i + 6 <= size; i += 6) {
    const std::uint8_t* r = data + i;
    const int op = r[0] % 4;
    const auto index = static_cast<std::int64_t>(static_cast<std::int8_t>(r[1])) +
                       static_cast<std::int64_t>(i / 12);
    if (op <= 1) {
      const std::size_t n = r[4] % 18;  // up to max_payload + 1 (one too large)
      for (std::size_t k = 0; k < n; ++k) payload[k] = static_cast<std::byte>(index + static_cast<std::int64_t>(k));
      jb::Packet p;
      p.sequence = static_cast<std::uint16_t>(seq0 + static_cast<std::uint64_t>(index) + (r[2] & 0x80 ? 3u : 0u));
      p.timestamp = static_cast<std::uint32_t>(ts0 + static_cast<std::uint64_t>(index) * spf);
      p.ssrc = r[2] & 0x40 ? 1u : 0u;
      p.has_fec = (r[2] & 1) != 0;
      p.low_energy = (r[2] & 2) != 0;
      p.payload = std::span<const std::byte>(payload.data(), n);
      (void)buf.insert(p, now + r[3]);
    } else if (op == 2) {
      (void)buf.insert_redundant(static_cast<std::uint32_t>(ts0 + static_cast<std::uint64_t>(index) * spf), 0,
                                 std::span<const std::byte>(payload.data(), r[4] % 18), now,
                                 (r[2] & 1) != 0);
    } else {
      now += r[3] % 64;
      jb::Unit u = buf.pull(now);
      if (u.stretch == jb::Stretch::shorten) {
        // A caller that shortened this frame pulls the next one at the same time.
        buf.note_stretch(-static_cast<std::int64_t>(r[5] % 80));
        require(u.kind == jb::Kind::normal);
        require(u.frame > last_played && played.insert(u.frame).second);
        last_played = u.frame;
        u = buf.pull(now);
      } else if (u.stretch == jb::Stretch::lengthen) {
        require(u.kind == jb::Kind::normal);
        buf.note_stretch(r[5] % 80);
      }
      require(u.samples == spf);
      require(u.payload.size() <= c.max_payload);
      if (u.kind == jb::Kind::normal || u.kind == jb::Kind::fec) {
        require(u.frame > last_played);
        require(played.insert(u.frame).second);
        last_played = u.frame;
      }
      if (u.kind == jb::Kind::concealed || u.kind == jb::Kind::silence) {
        require(u.payload.empty());
      }
    }
    require(buf.size() <= c.capacity);
    require(buf.target_delay_ms() >= c.min_delay_ms && buf.target_delay_ms() <= c.max_delay_ms);
    const jb::Stats s = buf.stats();
    require(s.jitter_buffer_emitted_count == played.size() * spf);
  }
  return 0;
}
