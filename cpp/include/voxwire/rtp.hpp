#pragma once
/// RTP packets and receiver-side source tracking (IETF RFC 3550).
///
/// parse() validates a packet strictly and locates its parts without copying; build() writes
/// one. Source tracks one incoming stream: it validates sequence numbers as RFC 3550
/// Appendix A.1 describes (probation of a new source, restart after a confirmed large jump
/// or SSRC change), extends the 16-bit sequence number and the 32-bit timestamp to 64 bits,
/// estimates interarrival jitter (A.8) and keeps receiver statistics (A.3). Time is always
/// passed in; nothing here reads a clock. Memory is fixed at construction.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace voxwire::rtp {

/// Why a packet could not be parsed. `ok` means it could.
enum class ParseError : std::uint8_t {
  ok = 0,
  too_short,           ///< Fewer than the 12 bytes of the fixed header.
  bad_version,         ///< Version field is not 2.
  csrc_past_end,       ///< The CSRC count claims more identifiers than the packet holds.
  extension_past_end,  ///< The header extension's length runs past the end of the packet.
  bad_padding,         ///< Padding bit set with a count of 0 or one that eats the header.
};

/// A short, stable name for a parse error ("too_short", ...), used in counters and messages.
[[nodiscard]] std::string_view to_string(ParseError e) noexcept;

/// The header fields of one packet and where its parts lie inside the parsed buffer.
struct Header {
  bool marker = false;
  std::uint8_t payload_type = 0;  ///< 7 bits.
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;
  std::uint32_t ssrc = 0;
  std::uint8_t csrc_count = 0;            ///< 0..15; the first csrc_count entries are valid.
  std::array<std::uint32_t, 15> csrcs{};
  bool has_extension = false;
  std::uint16_t extension_profile = 0;    ///< "defined by profile" field, e.g. 0xBEDE.
  std::size_t extension_offset = 0;       ///< Offset of the extension data (after its header).
  std::size_t extension_size = 0;         ///< Bytes of extension data (4 x the length field).
  std::size_t payload_offset = 0;         ///< Offset of the payload.
  std::size_t payload_size = 0;           ///< Payload bytes, padding excluded.
  std::uint8_t padding_size = 0;          ///< Padding bytes stripped from the end (0 if none).
};

/// Size of the fixed RTP header.
inline constexpr std::size_t kFixedHeaderSize = 12;

/// Parses `packet` into `out`. Returns ParseError::ok, or the first rule the packet breaks (then
/// `out` is unspecified). Never reads outside `packet`.
[[nodiscard]] ParseError parse(std::span<const std::byte> packet, Header& out) noexcept;

/// Fields for build(). Extension data, if any, must be a multiple of 4 bytes.
struct BuildSpec {
  bool marker = false;
  std::uint8_t payload_type = 0;
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;
  std::uint32_t ssrc = 0;
  std::span<const std::uint32_t> csrcs{};        ///< At most 15.
  bool has_extension = false;
  std::uint16_t extension_profile = 0;
  std::span<const std::byte> extension{};        ///< Multiple of 4 bytes, at most 4 * 65535.
  std::uint8_t padding = 0;                      ///< Padding bytes to append (0 = none).
};

/// Bytes build() writes for `spec` and a payload of `payload_size` bytes.
[[nodiscard]] std::size_t built_size(const BuildSpec& spec, std::size_t payload_size) noexcept;

/// Writes an RTP packet into `out` and returns its size. Throws std::invalid_argument for a
/// payload type above 127, more than 15 CSRCs, extension data that is not a multiple of 4
/// bytes or too long, or an `out` shorter than built_size().
std::size_t build(const BuildSpec& spec, std::span<const std::byte> payload,
                  std::span<std::byte> out);

/// What Source::receive() made of a packet.
enum class Verdict : std::uint8_t {
  accepted = 0,   ///< Next in order, or after a gap (the gap counts as lost until filled).
  reordered,      ///< Older than the newest packet, not seen before: fills a gap.
  duplicate,      ///< Seen before (within the last kHistory sequence numbers): drop it.
  too_old,        ///< Behind the newest by more than max_misorder: drop it (but, as with
                  ///< bad_jump, the next packet in sequence after it restarts the source).
  probation,      ///< The source is not yet validated (RFC 3550 A.1 MIN_SEQUENTIAL).
  bad_jump,       ///< Ahead by max_dropout or more: drop it; if the very next packet follows
                  ///< it in sequence, the sender renumbered and the source restarts there.
  foreign_ssrc,   ///< Another SSRC than the tracked one; two in a row in sequence switch.
};

/// A short, stable name for a verdict ("accepted", ...).
[[nodiscard]] std::string_view to_string(Verdict v) noexcept;

/// Tuning of Source, with RFC 3550 A.1's values as defaults where it gives them.
struct SourceConfig {
  std::uint32_t clock_rate = 8000;     ///< RTP timestamp units per second (> 0).
  std::uint32_t min_sequential = 1;    ///< Packets in sequence before a source is valid. RFC
                                       ///< 3550 suggests 2; 1 keeps the first packet of a call.
  std::uint32_t max_dropout = 3000;    ///< Largest forward jump taken as loss (A.1).
  std::uint32_t max_misorder = 100;    ///< Largest backward step taken as reordering (A.1).
};

/// Receiver statistics, cumulative since the source was (re)started, in the spirit of RFC 3550
/// A.3 and W3C RTCInboundRtpStreamStats.
struct SourceStats {
  std::uint64_t received = 0;        ///< Packets accepted or reordered (unique, valid).
  std::uint64_t expected = 0;        ///< Highest extended sequence - first + 1.
  std::int64_t lost = 0;             ///< expected - received (gaps not yet filled).
  std::uint64_t duplicates = 0;
  std::uint64_t reordered = 0;
  std::uint64_t too_old = 0;
  std::uint64_t bad_jumps = 0;       ///< Packets dropped as unconfirmed jumps.
  std::uint64_t foreign_ssrc = 0;    ///< Packets dropped for another SSRC.
  std::uint64_t probation = 0;       ///< Packets seen while the source was on probation.
  std::uint64_t restarts = 0;        ///< Times the numbering or SSRC restarted the source.
  double jitter = 0.0;               ///< Interarrival jitter (A.8), in timestamp units.
  double jitter_seconds = 0.0;       ///< The same in seconds.
  std::uint8_t fraction_lost = 0;    ///< Loss since the previous interval_report(), /256.
};

/// One incoming RTP stream: sequence validation, extension to 64 bits, jitter, statistics.
/// Its state is about 300 bytes and never grows.
class Source {
 public:
  /// Number of recent sequence numbers remembered for duplicate detection.
  static constexpr std::uint32_t kHistory = 1024;

  /// Throws std::invalid_argument if clock_rate or min_sequential is 0, or max_misorder is not
  /// below kHistory.
  explicit Source(const SourceConfig& config = {});

  /// Result of receive(): the verdict and, for accepted and reordered packets, the sequence
  /// number and timestamp extended to 64 bits. The first packet keeps its own values; later
  /// ones add 2^16 / 2^32 per wrap (a packet reordered before the first may go below it, even
  /// negative). After a restart the extended numbers continue from the highest so far (the
  /// timestamp advanced by the arrival gap), so they never run backwards or collide.
  struct Result {
    Verdict verdict = Verdict::accepted;
    bool restarted = false;  ///< This packet restarted the source (confirmed jump or SSRC).
    std::int64_t extended_sequence = 0;
    std::int64_t extended_timestamp = 0;
  };

  /// Takes one parsed packet that arrived at `arrival_ms` (any monotonic millisecond clock).
  /// With `timed` false the packet counts for the sequence numbers, loss and statistics but
  /// not for the jitter estimate: a packet whose timestamp is not its sampling instant, such
  /// as an RFC 4733 telephone event (stamped with its event's start, section 2.3.5), which
  /// shares the audio's SSRC and sequence numbers.
  Result receive(const Header& header, std::int64_t arrival_ms, bool timed = true) noexcept;

  /// Cumulative statistics (fraction_lost is the last interval_report()'s).
  [[nodiscard]] SourceStats stats() const noexcept;

  /// Closes a reporting interval (an RTCP receiver report's) and returns the statistics with
  /// fraction_lost for the interval just closed, as RFC 3550 A.3 computes it.
  SourceStats interval_report() noexcept;

  /// True once a packet has been accepted.
  [[nodiscard]] bool valid() const noexcept { return s_.valid; }
  /// The SSRC tracked (meaningful once a packet was seen).
  [[nodiscard]] std::uint32_t ssrc() const noexcept { return s_.ssrc; }
  /// Highest extended sequence number accepted so far.
  [[nodiscard]] std::int64_t highest_sequence() const noexcept { return s_.max_ext_seq; }

  /// Forgets the stream: the next packet starts a new source. Does not allocate.
  void reset() noexcept;

 private:
  Result start(const Header& h, std::int64_t arrival_ms, bool restart, bool timed) noexcept;
  Result validate(const Header& h, std::int64_t arrival_ms, bool timed) noexcept;
  [[nodiscard]] bool seen(std::int64_t ext_seq) const noexcept;
  void set_seen(std::int64_t ext_seq, bool value) noexcept;
  void advance_to(std::int64_t ext_seq) noexcept;
  void update_jitter(std::int64_t arrival_ms, std::int64_t ext_ts) noexcept;

  // Everything but the configuration, so that reset() is one assignment.
  struct State {
    bool started = false;           // a packet of the current source has been seen
    bool valid = false;             // probation passed
    std::uint32_t ssrc = 0;
    std::uint32_t probation_left = 0;
    std::uint16_t max_seq = 0;      // newest 16-bit sequence number
    std::int64_t max_ext_seq = 0;   // its extension
    std::int64_t base_ext_seq = 0;  // lowest extended sequence number of the current numbering
    std::uint32_t bad_seq = 0;      // the sequence number that would confirm a jump; > 0xFFFF: none
    std::uint32_t candidate_ssrc = 0;
    std::uint32_t candidate_count = 0;
    std::uint16_t candidate_next = 0;
    std::uint32_t max_ts = 0;       // timestamp of the newest packet
    std::int64_t max_ext_ts = 0;    // its extension
    std::int64_t max_arrival_ms = 0;
    bool have_transit = false;
    double last_transit = 0.0;
    std::uint64_t earlier_expected = 0;  // expected packets of numberings before a restart
    std::array<std::uint64_t, kHistory / 64> history{};  // one bit per sequence number
    SourceStats stats{};
    std::uint64_t prior_expected = 0;
    std::uint64_t prior_received = 0;
  };

  SourceConfig config_;
  State s_;
};

}  // namespace voxwire::rtp
