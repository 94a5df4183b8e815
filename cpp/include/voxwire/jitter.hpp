#pragma once
/// Adaptive jitter buffer with reordering and FEC-aware playout, for one RTP stream.
///
/// The buffer stores encoded payloads keyed by their RTP timestamp and hands out one playout
/// unit (one frame of `frame_ms`, 10 or 20 ms) per pull(). Each unit says what the caller must
/// do: decode a payload normally, decode the next packet's in-band FEC for a missing frame
/// (Opus LBRR frames, RFC 6716, negotiated with useinbandfec, RFC 7587; decode_fec with
/// frame_size = the unit's duration), conceal (the caller runs its packet-loss concealment),
/// or play silence. It also
/// reports the delay adjustment it made: `accelerate` (a frame was skipped to reduce delay) or
/// `expand` (a concealment frame was inserted to add delay or to wait for a late packet).
///
/// Sans-I/O: time is a parameter (milliseconds of any monotonic clock, int64); nothing here
/// reads a clock, allocates after construction, or uses threads.
///
/// Order guarantees: frames come out in increasing timestamp order; no frame is ever handed
/// out twice (a frame played normally or from FEC is never played again; a packet arriving
/// for a frame already passed is counted late and dropped). Sequence numbers and timestamps
/// are extended across their 16- and 32-bit wraparounds by voxwire::rtp::Source (RFC 3550
/// A.1), which also supplies loss, reordering and jitter (A.8) statistics.
///
/// Target delay (see docs/jitter.md): the relative arrival delay of each packet (its arrival
/// minus the earliest arrival its timestamp allows, the reference being the fastest packet of
/// a sliding window of about 8 s, so sender clock drift cannot grow the buffer) goes into a
/// forgetting histogram; the target is a high quantile of it, at least the quantile of a
/// second histogram of the delays of reordered packets (the ones lost late when too slow;
/// with time_stretch, less the frame a wait covers while such waits stay under about 3% of
/// the packets, see below), plus one frame of look-ahead while packets are being lost and the
/// stream carries FEC (so that packet N+1, holding N's FEC, is usually there when N is due),
/// two frames while losses come in runs and the redundancy reaches two frames back (RFC 2198
/// copies that carry in-band FEC themselves, or two redundant blocks). The quantile rises
/// within a fraction of a second when the delay gets worse and falls over tens of seconds as
/// the histograms forget; a single stall of an in-order stream is waited out (expand) rather
/// than learnt.
///
/// Playout control: frame k is due at reference + k * frame_ms + target. A pull before the
/// due time of a present frame expands; one a whole frame or more behind for five pulls in
/// a row accelerates (skips one frame), or at once, as many frames as needed, when more
/// than two frames behind. When the stream carries low-energy hints, adjustments wait for a
/// hinted frame unless the error exceeds four frames. With Config::time_stretch, voiced
/// frames are not skipped or inserted whole: the unit asks the caller to shorten or
/// lengthen its audio by one pitch period (voxwire::stretch; see Stretch). A missing frame
/// is rebuilt from FEC when possible, concealed when a later frame is present, and waited for
/// (an expand unit) when nothing later has arrived. With time_stretch a missing frame is
/// waited for one pull even when a later frame is present (it may be reordered behind it):
/// if it comes, it plays a frame late and the excess is shortened away; if not, the next
/// pull plays the following frame on time. A gap with no missing sequence number is a
/// sender pause: it plays as silence and the next talkspurt restarts on its own deadline.
///
/// Memory: `capacity` slots of `max_payload` bytes, allocated in the constructor, plus a
/// fixed-size histogram and window. Overflow policy: a packet more than `capacity` frames
/// ahead of the playout point makes room by dropping the oldest frames (counted as
/// discarded), so the newest audio is kept; the playout delay never exceeds
/// `max_delay_ms` by more than one frame: older frames are skipped (discarded) to get back
/// under it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "voxwire/rtp.hpp"

namespace voxwire::jitter {

/// What a playout unit holds.
enum class Kind : std::uint8_t {
  normal = 0,  ///< `payload` is this frame's own encoding: decode it.
  fec,         ///< The frame was missing and is recovered: see Unit::decode_fec.
  concealed,   ///< No data for this frame: the caller conceals (PLC).
  silence,     ///< Nothing to play yet (before the first frame, or a sender pause): silence.
};

/// The delay adjustment a pull made.
enum class Adjustment : std::uint8_t {
  none = 0,
  accelerate,  ///< A frame was skipped (removed) before this unit, to reduce the delay.
  expand,      ///< This unit is an inserted concealment frame; the stream did not advance.
};

/// A time-stretch the caller should apply to a Kind::normal unit's decoded audio
/// (Config::time_stretch; see voxwire::stretch). The caller keeps a queue of decoded audio
/// and pulls whenever it holds less than one frame to play, always with the current time.
/// Shortening a frame therefore makes it pull the next frame in the same tick: the stream
/// advances one frame, as a whole-frame skip would, and the part of a frame left in the
/// queue is drained by shortening the following voiced frames where that does not empty
/// it, and cut from the next quiet or noise-like one. Lengthening fills the queue until it
/// holds a frame and a pull is skipped: the stream falls back one frame, as an inserted
/// frame would. When the audio is not voiced enough to stretch, the caller plays it as it
/// is and the buffer asks again; after 25 unanswered pulls the whole-frame rules take over.
enum class Stretch : std::uint8_t {
  none = 0,
  shorten,   ///< Remove one pitch period: a whole frame or more behind the target.
  lengthen,  ///< Repeat one pitch period: ahead of the target.
};

/// What insert() did with a packet.
enum class InsertResult : std::uint8_t {
  stored = 0,   ///< Kept for playout (a primary may replace a stored redundant copy).
  duplicate,    ///< This frame is already stored (or already seen by sequence number).
  late,         ///< Its frame has already been played, concealed or skipped.
  too_large,    ///< The payload is larger than Config::max_payload.
  rejected,     ///< The RTP source tracking refused it (probation, unconfirmed jump,
                ///< foreign SSRC, too old): see voxwire::rtp::Verdict.
};

/// A short, stable name ("normal", "fec", ...).
[[nodiscard]] std::string_view to_string(Kind k) noexcept;
/// A short, stable name ("none", "accelerate", "expand").
[[nodiscard]] std::string_view to_string(Adjustment a) noexcept;
/// A short, stable name ("none", "shorten", "lengthen").
[[nodiscard]] std::string_view to_string(Stretch s) noexcept;
/// A short, stable name ("stored", "duplicate", ...).
[[nodiscard]] std::string_view to_string(InsertResult r) noexcept;

/// Construction parameters. The defaults suit 20 ms G.711 at 8 kHz.
struct Config {
  std::uint32_t clock_rate = 8000;     ///< RTP timestamp units per second (> 0).
  std::uint32_t frame_ms = 20;         ///< Playout unit and packet duration: 10 or 20.
  std::uint32_t capacity = 64;         ///< Frames the store holds (2..4096).
  std::size_t max_payload = 1500;      ///< Largest payload stored, bytes (1..65536).
  std::int64_t min_delay_ms = 0;       ///< Lower bound of the target delay.
  std::int64_t max_delay_ms = 1000;    ///< Upper bound of target and playout delay; at most
                                       ///< (capacity - 1) * frame_ms.
  std::int64_t initial_delay_ms = 0;   ///< Target before any arrival statistics exist.
  double quantile = 0.95;              ///< Quantile of relative delay taken as target (0.5..1).
  double reorder_quantile = 0.99;      ///< Quantile of the reordered-packet delay kept as a
                                       ///< floor of the target (0.5..1); with
                                       ///< time_stretch, less one frame.
  double forget = 0.998;               ///< Histogram forgetting factor per packet (0.9..1).
  bool time_stretch = false;           ///< Voiced frames are shortened or lengthened by
                                       ///< the caller (Unit::stretch, see Stretch) instead
                                       ///< of skipped or inserted whole.
  bool fec_lookahead = true;           ///< Keep one frame more while loss happens and the
                                       ///< stream carries FEC (two with two-frame
                                       ///< redundancy and runs of loss).
  std::int32_t g711_quiet_level = 64;  ///< The buffer's own low-energy hint for G.711 (payload
                                       ///< type 0 or 8, RFC 3551, one byte per sample at
                                       ///< 8 kHz): a frame whose mean absolute decoded sample
                                       ///< is at most this (64: about -54 dBFS) counts as
                                       ///< low-energy. 0 turns the detection off (0..32767).
};

/// One packet for insert().
struct Packet {
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;
  std::uint32_t ssrc = 0;
  std::uint8_t payload_type = 0;
  bool marker = false;
  bool has_fec = false;     ///< The payload carries in-band FEC of the previous frame.
  bool low_energy = false;  ///< Hint: a quiet frame (VAD off, comfort noise): adjusting the
                            ///< delay here is inaudible. For G.711 the buffer also measures
                            ///< it (Config::g711_quiet_level).
  std::span<const std::byte> payload{};
};

/// One playout unit from pull(). `payload` points into the buffer and stays valid until the
/// next call of any non-const member.
struct Unit {
  Kind kind = Kind::silence;
  Adjustment adjustment = Adjustment::none;
  Stretch stretch = Stretch::none;  ///< Config::time_stretch only; for Kind::normal.
  /// For Kind::fec: true when `payload` is the next frame's packet (N+1, or a redundant copy
  /// of it), to be decoded with its in-band FEC (Opus decode_fec = 1, frame_size =
  /// `samples`); false when it is a redundant copy of this very frame (RFC 2198), to be
  /// decoded normally.
  bool decode_fec = false;
  bool low_energy = false;        ///< The packet's low-energy hint (Kind::normal).
  std::int64_t frame = 0;         ///< Frame index: extended timestamp / samples per frame,
                                  ///< counted from the first packet's; increases by 1 per
                                  ///< frame of the stream (meaningless for Kind::silence
                                  ///< before the first frame).
  std::uint32_t timestamp = 0;    ///< RTP timestamp of the frame this unit covers.
  std::uint16_t sequence = 0;     ///< Sequence number of the packet played (normal / fec).
  std::uint8_t payload_type = 0;  ///< Of the packet played (normal / fec).
  std::uint32_t samples = 0;      ///< Duration of the unit in samples at clock_rate.
  std::int64_t delay_ms = 0;      ///< Time the played packet spent in the buffer.
  std::span<const std::byte> payload{};
};

/// Statistics in the style of W3C RTCInboundRtpStreamStats (names in snake_case). Delays are
/// sums over emitted samples, in seconds: divide by jitter_buffer_emitted_count for a mean.
struct Stats {
  std::uint64_t packets_received = 0;    ///< Unique primary packets taken in (any outcome
                                         ///< but duplicate or rejected).
  std::int64_t packets_lost = 0;         ///< Expected minus received (RFC 3550 A.3).
  std::uint64_t packets_discarded = 0;   ///< Late, overflowed, or skipped for the delay cap.
  std::uint64_t packets_duplicated = 0;
  std::uint64_t packets_late = 0;        ///< Arrived after their frame was passed.
  std::uint64_t packets_reordered = 0;
  std::uint64_t packets_rejected = 0;    ///< Refused by source tracking, or too large.
  double jitter = 0.0;                   ///< Interarrival jitter (RFC 3550 A.8), seconds.
  double jitter_buffer_delay = 0.0;      ///< Sum over emitted samples of time held, s.
  double jitter_buffer_target_delay = 0.0;  ///< Sum over emitted samples of the target, s.
  std::uint64_t jitter_buffer_emitted_count = 0;  ///< Samples emitted from packets.
  std::uint64_t total_samples = 0;  ///< Samples of all units handed out.
  std::uint64_t concealed_samples = 0;   ///< Samples of Kind::concealed units.
  std::uint64_t silent_concealed_samples = 0;  ///< Samples of Kind::silence units after start.
  std::uint64_t concealment_events = 0;  ///< Runs of concealed units.
  std::uint64_t fec_packets_received = 0;   ///< Packets carrying FEC, and redundant copies.
  std::uint64_t fec_packets_discarded = 0;  ///< Redundant copies not needed or late.
  std::uint64_t fec_frames_used = 0;     ///< Units recovered from FEC or a redundant copy.
  std::uint64_t inserted_samples_for_deceleration = 0;  ///< Samples of expand units that
                                                        ///< delayed the stream (not a wait
                                                        ///< for a frame that never came).
  std::uint64_t removed_samples_for_acceleration = 0;   ///< Samples of skipped frames.
  std::uint64_t restarts = 0;            ///< Sequence/SSRC restarts (RFC 3550 A.1).
};

/// The jitter buffer. Not thread-safe; one per incoming stream.
class Buffer {
 public:
  /// Delay histogram resolution and size: 1 ms bins up to 2,560 ms. A whole millisecond
  /// matters: the playout clock is quantised to frames, so a target a few ms too high can
  /// cost a whole frame of delay.
  static constexpr std::int64_t kBinMs = 1;
  /// Number of histogram bins.
  static constexpr std::size_t kBins = 2560;
  /// The arrival reference is the fastest packet in kWindowBuckets buckets of kBucketMs.
  static constexpr std::int64_t kBucketMs = 1000;
  /// See kBucketMs.
  static constexpr std::size_t kWindowBuckets = 8;

  /// Throws std::invalid_argument for a configuration outside the documented ranges.
  explicit Buffer(const Config& config = {});

  /// Takes one primary packet that arrived at `arrival_ms`.
  InsertResult insert(const Packet& packet, std::int64_t arrival_ms);

  /// Takes one parsed RTP packet: `header` as rtp::parse() filled it from `datagram`.
  InsertResult insert(const rtp::Header& header, std::span<const std::byte> datagram,
                      std::int64_t arrival_ms, bool has_fec = false, bool low_energy = false);

  /// Takes a redundant copy of the frame with RTP timestamp `timestamp` (for instance an
  /// RFC 2198 block). A primary packet always wins: the copy is stored only while the
  /// frame's slot is empty, and a primary arriving later replaces it. `has_fec`: the copy
  /// itself carries in-band FEC of the frame before it (an Opus packet with LBRR resent in
  /// a RED block, as WebRTC does), so it can rebuild that frame too.
  InsertResult insert_redundant(std::uint32_t timestamp, std::uint8_t payload_type,
                                std::span<const std::byte> payload, std::int64_t arrival_ms,
                                bool has_fec = false);

  /// Returns the unit to play at `now_ms`. Call once per frame_ms of playout.
  Unit pull(std::int64_t now_ms);

  /// Records a time-stretch the caller applied: `samples` removed (< 0, counted as removed
  /// for acceleration) or inserted (> 0, as inserted for deceleration).
  void note_stretch(std::int64_t samples) noexcept;

  /// Cumulative statistics.
  [[nodiscard]] Stats stats() const noexcept;

  /// The current target delay, ms.
  [[nodiscard]] std::int64_t target_delay_ms() const noexcept { return target_ms_; }
  /// Frames currently stored (primary or redundant).
  [[nodiscard]] std::size_t size() const noexcept { return stored_; }
  /// The configuration in use.
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  /// Samples per frame at the clock rate.
  [[nodiscard]] std::uint32_t samples_per_frame() const noexcept { return spf_; }

  /// Forgets the stream and all statistics. Does not allocate.
  void reset() noexcept;

 private:
  enum class SlotState : std::uint8_t { empty, primary, redundant };
  struct Slot {
    SlotState state = SlotState::empty;
    std::int64_t frame = 0;
    std::int64_t arrival_ms = 0;
    std::uint32_t timestamp = 0;
    std::uint16_t sequence = 0;
    std::int64_t ext_sequence = 0;
    std::uint8_t payload_type = 0;
    bool has_fec = false;
    bool low_energy = false;
    std::uint32_t size = 0;
  };
  /// A histogram whose weights decay by a factor per sample, in O(1) per sample: instead of
  /// scaling every bin, new samples get a growing weight, renormalised when it gets large.
  class ForgettingHistogram {
   public:
    void reset(std::size_t bin) noexcept;
    /// Decays the old weights by `f` and adds 1 - f at `bin`.
    void add(std::size_t bin, double f) noexcept;
    /// The smallest bin at or below which lies at least fraction `q` of the weight.
    [[nodiscard]] std::size_t quantile(double q) const noexcept;
    /// The fraction of the weight above `bin`.
    [[nodiscard]] double share_above(std::size_t bin) const noexcept;

   private:
    std::array<double, kBins> w_{};
    double total_ = 0.0;  // sum of w_
    double unit_ = 1.0;   // weight of a new sample, before the (1 - f) factor
  };
  struct Bucket {
    std::int64_t id = 0;
    std::int64_t min = 0;
    bool used = false;
  };

  [[nodiscard]] std::size_t index(std::int64_t frame) const noexcept;
  [[nodiscard]] const Slot* find(std::int64_t frame) const noexcept;
  [[nodiscard]] std::int64_t frame_of(std::int64_t ext_ts) const noexcept;
  [[nodiscard]] std::int64_t deadline(std::int64_t frame) const noexcept;
  [[nodiscard]] std::uint32_t timestamp_of(std::int64_t frame) const noexcept;
  void store(std::int64_t frame, SlotState state, const Packet& p, std::int64_t ext_seq,
             std::int64_t arrival_ms);
  void drop(std::int64_t frame) noexcept;
  void make_room(std::int64_t frame) noexcept;
  void observe_arrival(std::int64_t frame, std::int64_t arrival_ms, bool reordered) noexcept;
  void update_target() noexcept;
  /// `frames` frames were missing at their turn (concealed, rebuilt or jumped over).
  void note_missing(std::int64_t now_ms, std::int64_t frames) noexcept;
  [[nodiscard]] bool hints_recent(std::int64_t now_ms) const noexcept;
  [[nodiscard]] bool quiet_g711(const Packet& p) const noexcept;
  [[nodiscard]] std::int64_t next_present_after(std::int64_t frame) const noexcept;
  Unit emit(Kind kind, Adjustment adj, std::int64_t frame, const Slot* slot, bool decode_fec,
            std::int64_t now_ms);
  void skip_missing(std::int64_t now_ms) noexcept;

  Config config_;
  std::uint32_t spf_ = 0;        // samples per frame
  std::vector<Slot> slots_;      // capacity entries
  std::vector<std::byte> pool_;  // capacity * max_payload bytes
  std::vector<std::byte> out_;   // max_payload bytes: the payload of the last unit
  rtp::Source source_;

  // Everything that reset() clears, apart from the slots.
  bool started_ = false;         // a packet has been stored
  bool playing_ = false;         // the first frame has been played
  std::int64_t ts_anchor_ = 0;   // extended timestamp of frame 0
  std::uint32_t last_ts_ = 0;    // newest primary's RTP timestamp and its extension
  std::int64_t last_ext_ts_ = 0;
  std::int64_t next_ = 0;        // next frame to play
  std::int64_t newest_ = 0;      // highest frame stored (valid when stored_ > 0)
  std::int64_t max_frame_seen_ = 0;  // highest frame of any primary taken in
  std::size_t stored_ = 0;
  std::int64_t last_played_seq_ = -1;  // extended sequence of the last normal unit
  std::int64_t waited_for_ = -1;       // frame a wait (expand) unit was emitted for
  bool in_concealment_ = false;
  std::uint32_t behind_pulls_ = 0;     // consecutive pulls spent behind the target
  std::uint32_t early_pulls_ = 0;      // consecutive pulls spent ahead of the target
  bool rebuffering_ = true;            // waiting for the next frame's deadline (start, pause)
  bool last_low_energy_ = false;       // hint of the last frame played
  std::array<Bucket, kWindowBuckets> window_{};
  std::int64_t base_ms_ = 0;           // arrival reference: fastest arrival - frame * frame_ms
  ForgettingHistogram delay_hist_;     // relative delay, ms
  std::uint64_t observed_ = 0;         // packets fed to the histogram
  std::int64_t quantile_ms_ = 0;
  ForgettingHistogram reorder_hist_;   // relative delay of reordered packets (0 in order), ms
  bool wait_in_term_ = true;           // the reordering term leaves out the frame a wait covers
  std::int64_t reorder_ms_ = 0;        // the reordering term, ms
  std::int64_t last_loss_ms_ = -1;     // last time a frame was missing at its turn
  std::int64_t last_fec_ms_ = -1;      // last arrival of a packet carrying FEC
  std::int64_t last_fec2_ms_ = -1;     // last arrival of redundancy reaching two frames back
  std::int64_t last_run_ms_ = -1;      // last time two frames in a row were missing
  std::int64_t missing_run_ = 0;       // frames missing in a row at their turn
  std::int64_t last_hint_ms_ = -1;     // last arrival of a low-energy hint
  std::int64_t last_arrival_ms_ = 0;
  std::int64_t target_ms_ = 0;
  Stats stats_{};
};

}  // namespace voxwire::jitter
