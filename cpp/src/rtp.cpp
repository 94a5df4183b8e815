#include "voxwire/rtp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace voxwire::rtp {
namespace {

constexpr std::uint32_t kNoBadSeq = 0x10000;  // no sequence number awaited

std::uint16_t read16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                                    std::to_integer<unsigned>(p[1]));
}

std::uint32_t read32(const std::byte* p) noexcept {
  return (std::uint32_t{read16(p)} << 16) | read16(p + 2);
}

void write16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xFF);
}

void write32(std::byte* p, std::uint32_t v) noexcept {
  write16(p, static_cast<std::uint16_t>(v >> 16));
  write16(p + 2, static_cast<std::uint16_t>(v & 0xFFFF));
}

}  // namespace

std::string_view to_string(ParseError e) noexcept {
  switch (e) {
    case ParseError::ok: return "ok";
    case ParseError::too_short: return "too_short";
    case ParseError::bad_version: return "bad_version";
    case ParseError::csrc_past_end: return "csrc_past_end";
    case ParseError::extension_past_end: return "extension_past_end";
    case ParseError::bad_padding: return "bad_padding";
  }
  return "unknown";
}

std::string_view to_string(Verdict v) noexcept {
  switch (v) {
    case Verdict::accepted: return "accepted";
    case Verdict::reordered: return "reordered";
    case Verdict::duplicate: return "duplicate";
    case Verdict::too_old: return "too_old";
    case Verdict::probation: return "probation";
    case Verdict::bad_jump: return "bad_jump";
    case Verdict::foreign_ssrc: return "foreign_ssrc";
  }
  return "unknown";
}

// RFC 3550 section 5.1 (fixed header), 5.3.1 (header extension), padding per 5.1's P bit.
// Every length is checked against what remains before it is used, so a hostile length can
// never move a read past the end.
ParseError parse(std::span<const std::byte> packet, Header& out) noexcept {
  const std::size_t n = packet.size();
  if (n < kFixedHeaderSize) return ParseError::too_short;
  const std::byte* p = packet.data();
  const auto b0 = std::to_integer<unsigned>(p[0]);
  const auto b1 = std::to_integer<unsigned>(p[1]);
  if ((b0 >> 6) != 2) return ParseError::bad_version;
  const bool padding = (b0 & 0x20) != 0;
  out.has_extension = (b0 & 0x10) != 0;
  out.csrc_count = static_cast<std::uint8_t>(b0 & 0x0F);
  out.marker = (b1 & 0x80) != 0;
  out.payload_type = static_cast<std::uint8_t>(b1 & 0x7F);
  out.sequence = read16(p + 2);
  out.timestamp = read32(p + 4);
  out.ssrc = read32(p + 8);

  std::size_t pos = kFixedHeaderSize;
  if (n - pos < 4u * out.csrc_count) return ParseError::csrc_past_end;
  for (std::size_t i = 0; i < out.csrc_count; ++i, pos += 4) out.csrcs[i] = read32(p + pos);

  out.extension_profile = 0;
  out.extension_offset = 0;
  out.extension_size = 0;
  if (out.has_extension) {
    if (n - pos < 4) return ParseError::extension_past_end;
    out.extension_profile = read16(p + pos);
    const std::size_t words = read16(p + pos + 2);
    pos += 4;
    if (n - pos < 4 * words) return ParseError::extension_past_end;
    out.extension_offset = pos;
    out.extension_size = 4 * words;
    pos += 4 * words;
  }

  out.padding_size = 0;
  if (padding) {
    // The last byte counts the padding, itself included; it may not reach into the header.
    const auto count = std::to_integer<std::size_t>(p[n - 1]);
    if (count == 0 || count > n - pos) return ParseError::bad_padding;
    out.padding_size = static_cast<std::uint8_t>(count);
  }
  out.payload_offset = pos;
  out.payload_size = n - pos - out.padding_size;
  return ParseError::ok;
}

std::size_t built_size(const BuildSpec& spec, std::size_t payload_size) noexcept {
  return kFixedHeaderSize + 4 * spec.csrcs.size() +
         (spec.has_extension ? 4 + spec.extension.size() : 0) + payload_size + spec.padding;
}

std::size_t build(const BuildSpec& spec, std::span<const std::byte> payload,
                  std::span<std::byte> out) {
  if (spec.payload_type > 127) {
    throw std::invalid_argument("rtp::build: payload type must be 0..127, got " +
                                std::to_string(spec.payload_type));
  }
  if (spec.csrcs.size() > 15) {
    throw std::invalid_argument("rtp::build: at most 15 CSRCs, got " +
                                std::to_string(spec.csrcs.size()));
  }
  if (spec.extension.size() % 4 != 0 || spec.extension.size() > 4 * 0xFFFFu) {
    throw std::invalid_argument(
        "rtp::build: extension data must be a multiple of 4 bytes up to 262140, got " +
        std::to_string(spec.extension.size()));
  }
  if (!spec.has_extension && !spec.extension.empty()) {
    throw std::invalid_argument("rtp::build: extension data given without has_extension");
  }
  const std::size_t size = built_size(spec, payload.size());
  if (out.size() < size) {
    throw std::invalid_argument("rtp::build: output needs " + std::to_string(size) +
                                " bytes, got " + std::to_string(out.size()));
  }
  std::byte* p = out.data();
  p[0] = static_cast<std::byte>(0x80 | (spec.padding != 0 ? 0x20 : 0) |
                                (spec.has_extension ? 0x10 : 0) | spec.csrcs.size());
  p[1] = static_cast<std::byte>((spec.marker ? 0x80 : 0) | spec.payload_type);
  write16(p + 2, spec.sequence);
  write32(p + 4, spec.timestamp);
  write32(p + 8, spec.ssrc);
  std::size_t pos = kFixedHeaderSize;
  for (const std::uint32_t csrc : spec.csrcs) {
    write32(p + pos, csrc);
    pos += 4;
  }
  if (spec.has_extension) {
    write16(p + pos, spec.extension_profile);
    write16(p + pos + 2, static_cast<std::uint16_t>(spec.extension.size() / 4));
    pos += 4;
    for (const std::byte b : spec.extension) p[pos++] = b;
  }
  for (const std::byte b : payload) p[pos++] = b;
  if (spec.padding != 0) {
    for (std::size_t i = 0; i + 1 < spec.padding; ++i) p[pos++] = std::byte{0};
    p[pos++] = static_cast<std::byte>(spec.padding);
  }
  return pos;
}

Source::Source(const SourceConfig& config) : config_(config) {
  if (config.clock_rate == 0) throw std::invalid_argument("rtp::Source: clock_rate must be > 0");
  if (config.min_sequential == 0) {
    throw std::invalid_argument("rtp::Source: min_sequential must be >= 1");
  }
  if (config.max_misorder >= kHistory) {
    throw std::invalid_argument("rtp::Source: max_misorder must be below " +
                                std::to_string(kHistory) + ", got " +
                                std::to_string(config.max_misorder));
  }
  reset();
}

void Source::reset() noexcept { s_ = State{}; }

bool Source::seen(std::int64_t ext_seq) const noexcept {
  const auto i = static_cast<std::uint64_t>(ext_seq) % kHistory;
  return ((s_.history[i / 64] >> (i % 64)) & 1u) != 0;
}

void Source::set_seen(std::int64_t ext_seq, bool value) noexcept {
  const auto i = static_cast<std::uint64_t>(ext_seq) % kHistory;
  const std::uint64_t bit = std::uint64_t{1} << (i % 64);
  s_.history[i / 64] = value ? (s_.history[i / 64] | bit) : (s_.history[i / 64] & ~bit);
}

// Moves the newest sequence number forward to ext_seq, forgetting the history slots of the
// numbers skipped over (they have not been seen in this lap of the ring).
void Source::advance_to(std::int64_t ext_seq) noexcept {
  const std::int64_t gap = ext_seq - s_.max_ext_seq;
  if (gap >= static_cast<std::int64_t>(kHistory)) {
    s_.history.fill(0);
  } else {
    for (std::int64_t e = s_.max_ext_seq + 1; e < ext_seq; ++e) set_seen(e, false);
  }
  set_seen(ext_seq, true);
  s_.max_ext_seq = ext_seq;
}

// RFC 3550 A.8: transit time in timestamp units, smoothed absolute difference with gain 1/16.
void Source::update_jitter(std::int64_t arrival_ms, std::int64_t ext_ts) noexcept {
  const double transit =
      static_cast<double>(arrival_ms) * config_.clock_rate / 1000.0 - static_cast<double>(ext_ts);
  if (s_.have_transit) {
    const double d = std::fabs(transit - s_.last_transit);
    s_.stats.jitter += (d - s_.stats.jitter) / 16.0;
  }
  s_.last_transit = transit;
  s_.have_transit = true;
}

// Begins a numbering: at the first packet of a source, after a confirmed jump, or on an SSRC
// switch. Extended numbers continue from the previous numbering, so they stay monotonic.
Source::Result Source::start(const Header& h, std::int64_t arrival_ms, bool restart,
                             bool timed) noexcept {
  std::int64_t ext_seq = h.sequence;
  std::int64_t ext_ts = h.timestamp;
  if (restart) {
    s_.earlier_expected += static_cast<std::uint64_t>(s_.max_ext_seq - s_.base_ext_seq + 1);
    ext_seq = s_.max_ext_seq + 1;
    const std::int64_t gap_ms = arrival_ms > s_.max_arrival_ms ? arrival_ms - s_.max_arrival_ms : 0;
    ext_ts = s_.max_ext_ts + std::max<std::int64_t>(1, gap_ms * config_.clock_rate / 1000);
    s_.history.fill(0);
    s_.have_transit = false;
    ++s_.stats.restarts;
  }
  s_.started = true;
  s_.valid = true;
  s_.ssrc = h.ssrc;
  s_.candidate_count = 0;
  s_.bad_seq = kNoBadSeq;
  s_.max_seq = h.sequence;
  s_.max_ext_seq = ext_seq;
  s_.base_ext_seq = ext_seq;
  s_.max_ts = h.timestamp;
  s_.max_ext_ts = ext_ts;
  s_.max_arrival_ms = arrival_ms;
  set_seen(ext_seq, true);
  ++s_.stats.received;
  if (timed) update_jitter(arrival_ms, ext_ts);
  return {Verdict::accepted, restart, ext_seq, ext_ts};
}

// RFC 3550 A.1's validation: MIN_SEQUENTIAL packets in sequence before the source counts.
Source::Result Source::validate(const Header& h, std::int64_t arrival_ms, bool timed) noexcept {
  ++s_.stats.probation;
  if (s_.started && h.ssrc == s_.ssrc && h.sequence == static_cast<std::uint16_t>(s_.max_seq + 1)) {
    if (--s_.probation_left == 0) {
      --s_.stats.probation;
      return start(h, arrival_ms, false, timed);
    }
  } else {
    s_.probation_left = config_.min_sequential - 1;
  }
  s_.started = true;
  s_.ssrc = h.ssrc;
  s_.max_seq = h.sequence;
  return {Verdict::probation, false, 0, 0};
}

Source::Result Source::receive(const Header& h, std::int64_t arrival_ms, bool timed) noexcept {
  if (!s_.valid) {
    if (config_.min_sequential == 1) return start(h, arrival_ms, false, timed);
    if (!s_.started) {
      s_.probation_left = config_.min_sequential;  // validate() counts this packet
      s_.started = true;
      s_.ssrc = h.ssrc;
      s_.max_seq = static_cast<std::uint16_t>(h.sequence - 1);
    }
    return validate(h, arrival_ms, timed);
  }

  if (h.ssrc != s_.ssrc) {
    // Another source on the same port: switch only when it sends two packets in sequence, so
    // a stray packet cannot take the stream over.
    if (s_.candidate_count > 0 && h.ssrc == s_.candidate_ssrc && h.sequence == s_.candidate_next) {
      return start(h, arrival_ms, true, timed);
    }
    s_.candidate_ssrc = h.ssrc;
    s_.candidate_count = 1;
    s_.candidate_next = static_cast<std::uint16_t>(h.sequence + 1);
    ++s_.stats.foreign_ssrc;
    return {Verdict::foreign_ssrc, false, 0, 0};
  }
  s_.candidate_count = 0;

  const auto udelta = static_cast<std::uint16_t>(h.sequence - s_.max_seq);
  const auto ts_delta = static_cast<std::int32_t>(h.timestamp - s_.max_ts);
  if (udelta == 0) {
    ++s_.stats.duplicates;
    return {Verdict::duplicate, false, 0, 0};
  }
  if (udelta < config_.max_dropout) {
    // In order, perhaps after a gap.
    const std::int64_t ext_seq = s_.max_ext_seq + udelta;
    const std::int64_t ext_ts = s_.max_ext_ts + ts_delta;
    advance_to(ext_seq);
    s_.max_seq = h.sequence;
    s_.max_ts = h.timestamp;
    s_.max_ext_ts = ext_ts;
    s_.max_arrival_ms = std::max(s_.max_arrival_ms, arrival_ms);
    s_.bad_seq = kNoBadSeq;  // a confirmation must follow its jump directly
    ++s_.stats.received;
    if (timed) update_jitter(arrival_ms, ext_ts);
    return {Verdict::accepted, false, ext_seq, ext_ts};
  }
  if (udelta <= 0x10000u - config_.max_misorder) {
    // A large jump either way. Two packets in sequence confirm a new numbering (the sender
    // restarted without telling us); a single one is dropped.
    // A packet far behind is most likely just very late, but it arms the confirmation too:
    // a sender may restart at a lower number.
    if (h.sequence == s_.bad_seq) return start(h, arrival_ms, true, timed);
    s_.bad_seq = static_cast<std::uint16_t>(h.sequence + 1);
    if (udelta >= 0x8000) {
      ++s_.stats.too_old;
      return {Verdict::too_old, false, 0, 0};
    }
    ++s_.stats.bad_jumps;
    return {Verdict::bad_jump, false, 0, 0};
  }
  // Behind the newest by at most max_misorder (< kHistory, checked in the constructor): a
  // duplicate, or a late packet filling a gap.
  const std::int64_t ext_seq = s_.max_ext_seq - (0x10000 - udelta);
  if (seen(ext_seq)) {
    ++s_.stats.duplicates;
    return {Verdict::duplicate, false, 0, 0};
  }
  set_seen(ext_seq, true);
  s_.base_ext_seq = std::min(s_.base_ext_seq, ext_seq);
  const std::int64_t ext_ts = s_.max_ext_ts + ts_delta;
  ++s_.stats.received;
  ++s_.stats.reordered;
  if (timed) update_jitter(arrival_ms, ext_ts);
  return {Verdict::reordered, false, ext_seq, ext_ts};
}

SourceStats Source::stats() const noexcept {
  SourceStats out = s_.stats;
  out.expected = s_.valid ? s_.earlier_expected +
                                static_cast<std::uint64_t>(s_.max_ext_seq - s_.base_ext_seq + 1)
                          : 0;
  out.lost = static_cast<std::int64_t>(out.expected) - static_cast<std::int64_t>(out.received);
  out.jitter_seconds = out.jitter / config_.clock_rate;
  return out;
}

// RFC 3550 A.3: loss in the interval as a fraction of the packets expected in it, times 256.
SourceStats Source::interval_report() noexcept {
  SourceStats out = stats();
  const std::uint64_t expected = out.expected - s_.prior_expected;
  const std::uint64_t received = out.received - s_.prior_received;
  s_.prior_expected = out.expected;
  s_.prior_received = out.received;
  const std::int64_t lost = static_cast<std::int64_t>(expected) - static_cast<std::int64_t>(received);
  out.fraction_lost =
      (expected == 0 || lost <= 0)
          ? std::uint8_t{0}
          : static_cast<std::uint8_t>(std::min<std::int64_t>(255, (lost << 8) / static_cast<std::int64_t>(expected)));
  s_.stats.fraction_lost = out.fraction_lost;
  return out;
}

}  // namespace voxwire::rtp
