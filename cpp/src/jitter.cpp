#include "voxwire/jitter.hpp"

#include "voxwire/g711.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace voxwire::jitter {
namespace {

// Recent loss (with FEC in the stream) keeps the look-ahead frame for this long.
constexpr std::int64_t kLossHoldMs = 10000;
// Share of all packets reordered past the reordering term less a frame above which that
// frame is kept in the term, and below which it is left out again (see update_target).
constexpr double kWaitShareHigh = 0.03;
constexpr double kWaitShareLow = 0.02;
// Reordered packets past the lowered term the histograms must hold before kWaitShareHigh
// counts (the first few packets of a stream are each a large share).
constexpr double kWaitEvidence = 8.0;
// A stream that sent a low-energy hint within this time is one whose hints we wait for
// before adjusting the delay in the middle of speech.
constexpr std::int64_t kHintMemoryMs = 20000;
// Without a hint, a stream this many frames behind its target accelerates anyway, and one
// this many frames ahead expands anyway: the delay must stay bounded during long talk.
constexpr std::int64_t kForceFrames = 4;
// Less than two frames behind, the buffer accelerates only after being behind for this many
// pulls in a row: a target that wobbles by a few ms must not cost a frame each time.
constexpr std::uint32_t kBehindPulls = 5;
// With time-stretching, pulls a stretch request may go unanswered (unvoiced audio) before
// the whole-frame rules take over.
constexpr std::uint32_t kStretchPatience = 25;

std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept { return -floor_div(-a, b); }

}  // namespace

std::string_view to_string(Kind k) noexcept {
  switch (k) {
    case Kind::normal: return "normal";
    case Kind::fec: return "fec";
    case Kind::concealed: return "concealed";
    case Kind::silence: return "silence";
  }
  return "unknown";
}

std::string_view to_string(Adjustment a) noexcept {
  switch (a) {
    case Adjustment::none: return "none";
    case Adjustment::accelerate: return "accelerate";
    case Adjustment::expand: return "expand";
  }
  return "unknown";
}

std::string_view to_string(Stretch s) noexcept {
  switch (s) {
    case Stretch::none: return "none";
    case Stretch::shorten: return "shorten";
    case Stretch::lengthen: return "lengthen";
  }
  return "unknown";
}

std::string_view to_string(InsertResult r) noexcept {
  switch (r) {
    case InsertResult::stored: return "stored";
    case InsertResult::duplicate: return "duplicate";
    case InsertResult::late: return "late";
    case InsertResult::too_large: return "too_large";
    case InsertResult::rejected: return "rejected";
  }
  return "unknown";
}

namespace {

rtp::SourceConfig source_config(const Config& c) {
  rtp::SourceConfig s;
  s.clock_rate = c.clock_rate;
  return s;
}

const Config& validated(const Config& c) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("jitter::Buffer: " + what);
  };
  if (c.clock_rate == 0 || c.clock_rate > 384000) {
    fail("clock_rate must be 1..384000, got " + std::to_string(c.clock_rate));
  }
  if (c.frame_ms != 10 && c.frame_ms != 20) {
    fail("frame_ms must be 10 or 20, got " + std::to_string(c.frame_ms));
  }
  if (std::uint64_t{c.clock_rate} * c.frame_ms % 1000 != 0) {
    fail("clock_rate * frame_ms must be a whole number of samples");
  }
  if (c.capacity < 2 || c.capacity > 4096) {
    fail("capacity must be 2..4096, got " + std::to_string(c.capacity));
  }
  if (c.max_payload == 0 || c.max_payload > 65536) {
    fail("max_payload must be 1..65536, got " + std::to_string(c.max_payload));
  }
  const std::int64_t span = static_cast<std::int64_t>(c.capacity - 1) * c.frame_ms;
  const std::int64_t hist_span = static_cast<std::int64_t>(Buffer::kBins) * Buffer::kBinMs;
  if (c.min_delay_ms < 0 || c.min_delay_ms > c.max_delay_ms) {
    fail("min_delay_ms must be 0..max_delay_ms, got " + std::to_string(c.min_delay_ms));
  }
  if (c.max_delay_ms < c.frame_ms || c.max_delay_ms > span || c.max_delay_ms > hist_span) {
    fail("max_delay_ms must be frame_ms..min((capacity - 1) * frame_ms, " +
         std::to_string(hist_span) + "), got " + std::to_string(c.max_delay_ms));
  }
  if (c.initial_delay_ms < 0 || c.initial_delay_ms > c.max_delay_ms) {
    fail("initial_delay_ms must be 0..max_delay_ms, got " + std::to_string(c.initial_delay_ms));
  }
  if (!(c.quantile >= 0.5 && c.quantile <= 1.0)) fail("quantile must be 0.5..1");
  if (!(c.reorder_quantile >= 0.5 && c.reorder_quantile <= 1.0)) {
    fail("reorder_quantile must be 0.5..1");
  }
  if (!(c.forget >= 0.9 && c.forget <= 1.0)) fail("forget must be 0.9..1");
  if (c.g711_quiet_level < 0 || c.g711_quiet_level > 32767) {
    fail("g711_quiet_level must be 0..32767, got " + std::to_string(c.g711_quiet_level));
  }
  return c;
}

}  // namespace

Buffer::Buffer(const Config& config)
    : config_(validated(config)),
      spf_(config.clock_rate * config.frame_ms / 1000),
      slots_(config.capacity),
      pool_(std::size_t{config.capacity} * config.max_payload),
      out_(config.max_payload),
      source_(source_config(config)) {
  reset();
}

void Buffer::reset() noexcept {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  source_.reset();
  started_ = false;
  playing_ = false;
  ts_anchor_ = 0;
  last_ts_ = 0;
  last_ext_ts_ = 0;
  next_ = 0;
  newest_ = 0;
  max_frame_seen_ = 0;
  stored_ = 0;
  last_played_seq_ = -1;
  waited_for_ = -1;
  in_concealment_ = false;
  behind_pulls_ = 0;
  early_pulls_ = 0;
  rebuffering_ = true;
  last_low_energy_ = false;
  window_.fill(Bucket{});
  base_ms_ = 0;
  // The histogram starts with all its weight at the initial delay; arrivals forget it.
  delay_hist_.reset(static_cast<std::size_t>(
      std::clamp<std::int64_t>(config_.initial_delay_ms / kBinMs, 0, kBins - 1)));
  observed_ = 0;
  quantile_ms_ = config_.initial_delay_ms;
  reorder_hist_.reset(0);
  reorder_ms_ = 0;
  wait_in_term_ = true;
  last_loss_ms_ = -1;
  last_fec_ms_ = -1;
  last_fec2_ms_ = -1;
  last_run_ms_ = -1;
  missing_run_ = 0;
  last_hint_ms_ = -1;
  last_arrival_ms_ = std::numeric_limits<std::int64_t>::min();
  target_ms_ = std::clamp(config_.initial_delay_ms, config_.min_delay_ms, config_.max_delay_ms);
  stats_ = Stats{};
}

std::size_t Buffer::index(std::int64_t frame) const noexcept {
  return static_cast<std::size_t>(static_cast<std::uint64_t>(frame) % config_.capacity);
}

const Buffer::Slot* Buffer::find(std::int64_t frame) const noexcept {
  const Slot& s = slots_[index(frame)];
  return (s.state != SlotState::empty && s.frame == frame) ? &s : nullptr;
}

// Timestamps are rounded to the nearest frame: a sender whose timestamps are not exact
// multiples of the frame still maps each packet to one frame.
std::int64_t Buffer::frame_of(std::int64_t ext_ts) const noexcept {
  const auto spf = static_cast<std::int64_t>(spf_);
  return floor_div(ext_ts - ts_anchor_ + spf / 2, spf);
}

std::int64_t Buffer::deadline(std::int64_t frame) const noexcept {
  return base_ms_ + frame * static_cast<std::int64_t>(config_.frame_ms) + target_ms_;
}

std::uint32_t Buffer::timestamp_of(std::int64_t frame) const noexcept {
  const std::int64_t ts = ts_anchor_ + frame * static_cast<std::int64_t>(spf_);
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(ts) & 0xFFFFFFFFu);
}

void Buffer::store(std::int64_t frame, SlotState state, const Packet& p, std::int64_t ext_seq,
                   std::int64_t arrival_ms) {
  Slot& s = slots_[index(frame)];
  if (s.state == SlotState::empty) ++stored_;
  s.state = state;
  s.frame = frame;
  s.arrival_ms = arrival_ms;
  s.timestamp = p.timestamp;
  s.sequence = p.sequence;
  s.ext_sequence = ext_seq;
  s.payload_type = p.payload_type;
  s.has_fec = p.has_fec;
  s.low_energy = p.low_energy;
  s.size = static_cast<std::uint32_t>(p.payload.size());
  if (!p.payload.empty()) {
    std::memcpy(pool_.data() + index(frame) * config_.max_payload, p.payload.data(),
                p.payload.size());
  }
  newest_ = stored_ == 1 ? frame : std::max(newest_, frame);
}

void Buffer::drop(std::int64_t frame) noexcept {
  Slot& s = slots_[index(frame)];
  if (s.state != SlotState::empty && s.frame == frame) {
    s.state = SlotState::empty;
    --stored_;
  }
}

// Overflow policy: the newest audio wins. Frames older than the capacity allows are dropped
// and counted as discarded.
void Buffer::make_room(std::int64_t frame) noexcept {
  const std::int64_t new_next = frame - static_cast<std::int64_t>(config_.capacity) + 1;
  if (new_next <= next_) return;
  if (new_next - next_ >= static_cast<std::int64_t>(config_.capacity)) {
    stats_.packets_discarded += stored_;
    std::fill(slots_.begin(), slots_.end(), Slot{});
    stored_ = 0;
  } else {
    for (std::int64_t f = next_; f < new_next; ++f) {
      if (find(f) != nullptr) {
        drop(f);
        ++stats_.packets_discarded;
      }
    }
  }
  next_ = new_next;
  last_played_seq_ = -1;
}

// The arrival reference (base_ms_) is the earliest "arrival - frame * frame_ms" over a window
// of kWindowBuckets buckets of kBucketMs: the transit of the fastest recent packet. A window
// rather than an all-time minimum lets the reference follow sender clock drift and route
// changes; relative delays (arrival - reference) then feed the histogram, as in the
// relative-delay estimators of NetEq-style buffers.
void Buffer::observe_arrival(std::int64_t frame, std::int64_t arrival_ms,
                             bool reordered) noexcept {
  last_arrival_ms_ = std::max(last_arrival_ms_, arrival_ms);
  const std::int64_t v = arrival_ms - frame * static_cast<std::int64_t>(config_.frame_ms);
  const std::int64_t id = floor_div(last_arrival_ms_, kBucketMs);
  Bucket& b = window_[static_cast<std::size_t>(static_cast<std::uint64_t>(id) % kWindowBuckets)];
  if (!b.used || b.id != id) {
    b = Bucket{id, v, true};
  } else {
    b.min = std::min(b.min, v);
  }
  std::int64_t base = v;
  for (const Bucket& w : window_) {
    if (w.used && id - w.id < static_cast<std::int64_t>(kWindowBuckets) && w.id <= id) {
      base = std::min(base, w.min);
    }
  }
  base_ms_ = base;

  const std::int64_t rel = v - base;  // >= 0: base includes v
  const auto bin = static_cast<std::size_t>(std::min<std::int64_t>(kBins - 1, rel / kBinMs));
  // Warm-up: while few packets have been seen, the histogram is a plain running average
  // (factor 1 - 1/(n + 2)), so the initial guess is forgotten within a second; then the
  // configured forgetting factor takes over.
  ++observed_;
  const double f = std::min(config_.forget, 1.0 - 1.0 / static_cast<double>(observed_ + 1));
  delay_hist_.add(bin, f);
  reorder_hist_.add(reordered ? bin : 0, f);
  update_target();
}

void Buffer::ForgettingHistogram::reset(std::size_t bin) noexcept {
  w_.fill(0.0);
  w_[bin] = 1.0;
  total_ = 1.0;
  unit_ = 1.0;
}

void Buffer::ForgettingHistogram::add(std::size_t bin, double f) noexcept {
  // Stored weights are true weights divided by the product of all factors so far; a new
  // sample is stored with weight (1 - f) / that product.
  unit_ /= f;
  if (unit_ > 1e100) {
    for (double& w : w_) w /= unit_;
    total_ /= unit_;
    unit_ = 1.0;
  }
  w_[bin] += (1.0 - f) * unit_;
  total_ += (1.0 - f) * unit_;
}

std::size_t Buffer::ForgettingHistogram::quantile(double q) const noexcept {
  const double want = q * total_;
  double acc = 0.0;
  std::size_t i = 0;
  for (; i + 1 < w_.size(); ++i) {
    acc += w_[i];
    if (acc >= want) break;
  }
  return i;
}

double Buffer::ForgettingHistogram::share_above(std::size_t bin) const noexcept {
  double acc = 0.0;
  for (std::size_t i = 0; i <= bin && i < w_.size(); ++i) acc += w_[i];
  return total_ > 0.0 ? std::max(0.0, 1.0 - acc / total_) : 0.0;
}

void Buffer::update_target() noexcept {
  // A bin holds the delays [i, i + 1) * kBinMs; its top is the delay that covers them all.
  quantile_ms_ =
      static_cast<std::int64_t>(delay_hist_.quantile(config_.quantile) + 1) * kBinMs - 1;
  reorder_ms_ =
      static_cast<std::int64_t>(reorder_hist_.quantile(config_.reorder_quantile) + 1) * kBinMs -
      1;
  // With time-stretching, a reordered packet up to a frame past its deadline is still
  // played (pull() waits one pull for it), so the reordering term leaves that frame out.
  // That is worth it only while such waits are few: each costs a pull and a frame of lag
  // for time-stretching to shorten away, and when they come faster than it can (frequent
  // reordering that sits just past the lowered term, as on a network that holds a share of
  // packets back by a fixed time), the lag is caught up by skipping frames. So the frame is
  // kept in the term once the reordered packets beyond the lowered term exceed
  // kWaitShareHigh of all packets, and left out again below kWaitShareLow (measured on the
  // jitter bench's reordering traces, about 2-3.5% there, and on a live call holding 5% of
  // packets back 40 ms, 3-5%; see docs/jitter.md), once the histograms hold enough of them
  // to tell.
  std::int64_t waited = 0;
  if (config_.time_stretch) {
    const std::int64_t lowered = reorder_ms_ - static_cast<std::int64_t>(config_.frame_ms);
    const double beyond =
        lowered < 0 ? 0.0 : reorder_hist_.share_above(static_cast<std::size_t>(lowered / kBinMs));
    const double held = std::min(static_cast<double>(observed_), 1.0 / (1.0 - config_.forget));
    if (beyond > kWaitShareHigh && beyond * held >= kWaitEvidence) {
      wait_in_term_ = false;
    } else if (beyond < kWaitShareLow) {
      wait_in_term_ = true;
    }
    if (wait_in_term_) waited = config_.frame_ms;
  }
  std::int64_t t = std::max(quantile_ms_, reorder_ms_ - waited);
  const auto recent = [this](std::int64_t at) {
    return at >= 0 && last_arrival_ms_ - at < kLossHoldMs;
  };
  if (config_.fec_lookahead && recent(last_loss_ms_) && recent(last_fec_ms_)) {
    // Room for the packet after a missing frame, which holds its FEC; with redundancy that
    // reaches two frames back and losses in runs, room for the one after that too.
    const bool two = recent(last_fec2_ms_) && recent(last_run_ms_);
    t += (two ? 2 : 1) * static_cast<std::int64_t>(config_.frame_ms);
  }
  target_ms_ = std::clamp(t, config_.min_delay_ms, config_.max_delay_ms);
}

// The buffer's own low-energy hint for G.711: the mean absolute value of the decoded frame.
bool Buffer::quiet_g711(const Packet& p) const noexcept {
  if (config_.g711_quiet_level == 0 || config_.clock_rate != 8000 ||
      (p.payload_type != 0 && p.payload_type != 8) || p.payload.size() != spf_) {
    return false;
  }
  std::int64_t sum = 0;
  for (const std::byte b : p.payload) {
    const auto code = std::to_integer<std::uint8_t>(b);
    const std::int16_t x =
        p.payload_type == 0 ? g711::decode_ulaw_sample(code) : g711::decode_alaw_sample(code);
    sum += x < 0 ? -static_cast<std::int64_t>(x) : x;
  }
  return sum <= static_cast<std::int64_t>(config_.g711_quiet_level) * spf_;
}

InsertResult Buffer::insert(const Packet& packet, std::int64_t arrival_ms) {
  Packet p = packet;
  p.low_energy = p.low_energy || quiet_g711(p);
  if (p.payload.size() > config_.max_payload) {
    ++stats_.packets_rejected;
    return InsertResult::too_large;
  }
  rtp::Header h;
  h.sequence = p.sequence;
  h.timestamp = p.timestamp;
  h.ssrc = p.ssrc;
  const std::int64_t lost_before = source_.stats().lost;
  const rtp::Source::Result r = source_.receive(h, arrival_ms);
  if (r.verdict == rtp::Verdict::duplicate) {
    ++stats_.packets_duplicated;
    return InsertResult::duplicate;
  }
  if (r.verdict != rtp::Verdict::accepted && r.verdict != rtp::Verdict::reordered) {
    ++stats_.packets_rejected;
    return InsertResult::rejected;
  }
  ++stats_.packets_received;
  const bool first = !started_;
  if (first) {
    ts_anchor_ = r.extended_timestamp;
    started_ = true;
  }
  if (r.verdict == rtp::Verdict::accepted) {
    last_ts_ = p.timestamp;
    last_ext_ts_ = r.extended_timestamp;
  }
  if (p.has_fec) {
    ++stats_.fec_packets_received;
    last_fec_ms_ = arrival_ms;
  }
  if (p.low_energy) last_hint_ms_ = arrival_ms;
  if (source_.stats().lost > lost_before) last_loss_ms_ = arrival_ms;
  if (source_.stats().lost > lost_before + 1) last_run_ms_ = arrival_ms;

  const std::int64_t frame = frame_of(r.extended_timestamp);
  if (first) {
    max_frame_seen_ = frame;
    next_ = frame;
  }
  // The reordering term: a packet that arrives after a later one (reordered) is the kind
  // that is lost late if its frame is given up before it comes (the frames after it are
  // there, so the buffer conceals rather than waits, or with time-stretching waits one pull
  // only). Its relative delay goes into a second histogram (in-order packets count as 0),
  // whose quantile becomes a floor of the target. Rare reordering adds nothing; frequent
  // reordering keeps room for its usual delay.
  const bool reordered = frame < max_frame_seen_;
  max_frame_seen_ = std::max(max_frame_seen_, frame);
  observe_arrival(frame, arrival_ms, reordered);

  // Before the first frame is played, a packet reordered ahead of the first one still plays.
  if (!playing_ && frame < next_ && (stored_ == 0 || newest_ - frame < config_.capacity)) {
    next_ = frame;
  }
  if (frame < next_) {
    ++stats_.packets_late;
    ++stats_.packets_discarded;
    return InsertResult::late;
  }
  if (const Slot* s = find(frame); s != nullptr) {
    if (s->state == SlotState::primary) {
      ++stats_.packets_duplicated;
      return InsertResult::duplicate;
    }
    ++stats_.fec_packets_discarded;  // the redundant copy gives way to the primary
  }
  make_room(frame);
  store(frame, SlotState::primary, p, r.extended_sequence, arrival_ms);
  return InsertResult::stored;
}

InsertResult Buffer::insert(const rtp::Header& header, std::span<const std::byte> datagram,
                            std::int64_t arrival_ms, bool has_fec, bool low_energy) {
  if (header.payload_offset > datagram.size() ||
      header.payload_size > datagram.size() - header.payload_offset) {
    throw std::invalid_argument("jitter::Buffer::insert: header does not match the datagram");
  }
  Packet p;
  p.sequence = header.sequence;
  p.timestamp = header.timestamp;
  p.ssrc = header.ssrc;
  p.payload_type = header.payload_type;
  p.marker = header.marker;
  p.has_fec = has_fec;
  p.low_energy = low_energy;
  p.payload = datagram.subspan(header.payload_offset, header.payload_size);
  return insert(p, arrival_ms);
}

InsertResult Buffer::insert_redundant(std::uint32_t timestamp, std::uint8_t payload_type,
                                      std::span<const std::byte> payload,
                                      std::int64_t arrival_ms, bool has_fec) {
  if (payload.size() > config_.max_payload) {
    ++stats_.packets_rejected;
    return InsertResult::too_large;
  }
  ++stats_.fec_packets_received;
  last_fec_ms_ = arrival_ms;
  if (!started_) {
    // Without a primary packet there is no timeline to place the copy on.
    ++stats_.fec_packets_discarded;
    return InsertResult::rejected;
  }
  const std::int64_t ext_ts = last_ext_ts_ + static_cast<std::int32_t>(timestamp - last_ts_);
  const std::int64_t frame = frame_of(ext_ts);
  // How far back this redundancy reaches from the newest frame: a copy of frame N - 1 that
  // holds in-band FEC of N - 2 reaches two frames.
  if (max_frame_seen_ - frame + (has_fec ? 1 : 0) >= 2) last_fec2_ms_ = arrival_ms;
  if (frame < next_) {
    ++stats_.fec_packets_discarded;
    return InsertResult::late;
  }
  if (find(frame) != nullptr || frame >= next_ + static_cast<std::int64_t>(config_.capacity)) {
    // Already covered, or beyond the store: a copy never pushes older frames out.
    ++stats_.fec_packets_discarded;
    return InsertResult::duplicate;
  }
  Packet p;
  p.timestamp = timestamp;
  p.payload_type = payload_type;
  p.has_fec = has_fec;
  p.payload = payload;
  store(frame, SlotState::redundant, p, -1, arrival_ms);
  return InsertResult::stored;
}

void Buffer::note_missing(std::int64_t now_ms, std::int64_t frames) noexcept {
  last_loss_ms_ = now_ms;
  missing_run_ += frames;
  if (missing_run_ >= 2) last_run_ms_ = now_ms;
}

bool Buffer::hints_recent(std::int64_t now_ms) const noexcept {
  return last_hint_ms_ >= 0 && now_ms - last_hint_ms_ < kHintMemoryMs;
}

std::int64_t Buffer::next_present_after(std::int64_t frame) const noexcept {
  if (stored_ == 0) return -1;
  for (std::int64_t f = frame + 1; f <= newest_; ++f) {
    if (find(f) != nullptr) return f;
  }
  return -1;
}

Unit Buffer::emit(Kind kind, Adjustment adj, std::int64_t frame, const Slot* slot,
                  bool decode_fec, std::int64_t now_ms) {
  Unit u;
  u.kind = kind;
  u.adjustment = adj;
  u.decode_fec = decode_fec;
  u.frame = frame;
  u.timestamp = timestamp_of(frame);
  u.samples = spf_;
  stats_.total_samples += spf_;
  if (slot != nullptr) {
    const std::size_t at = static_cast<std::size_t>(slot - slots_.data()) * config_.max_payload;
    if (slot->size != 0) std::memcpy(out_.data(), pool_.data() + at, slot->size);
    u.payload = std::span<const std::byte>(out_.data(), slot->size);
    u.sequence = slot->sequence;
    u.payload_type = slot->payload_type;
    u.low_energy = slot->low_energy;
    u.delay_ms = now_ms - slot->arrival_ms;
  }
  switch (kind) {
    case Kind::normal:
    case Kind::fec: {
      stats_.jitter_buffer_emitted_count += spf_;
      stats_.jitter_buffer_delay += static_cast<double>(u.delay_ms) / 1000.0 * spf_;
      stats_.jitter_buffer_target_delay += static_cast<double>(target_ms_) / 1000.0 * spf_;
      in_concealment_ = false;
      if (kind == Kind::normal) {
        last_played_seq_ = slot->ext_sequence;
        last_low_energy_ = slot->low_energy;
        missing_run_ = 0;
      } else {
        ++stats_.fec_frames_used;
        last_played_seq_ =
            decode_fec && slot->state == SlotState::primary ? slot->ext_sequence - 1 : -1;
        note_missing(now_ms, 1);
      }
      break;
    }
    case Kind::concealed:
      if (adj != Adjustment::expand) note_missing(now_ms, 1);
      stats_.concealed_samples += spf_;
      if (!in_concealment_) ++stats_.concealment_events;
      in_concealment_ = true;
      break;
    case Kind::silence:
      if (playing_) stats_.silent_concealed_samples += spf_;
      break;
  }
  if (adj == Adjustment::expand) stats_.inserted_samples_for_deceleration += spf_;
  if (kind != Kind::silence && adj != Adjustment::expand) {
    // The stream advances past this frame; it can never be played again.
    if (kind == Kind::normal || (kind == Kind::fec && !decode_fec)) drop(frame);
    next_ = frame + 1;
    playing_ = true;
  }
  return u;
}

Unit Buffer::pull(std::int64_t now_ms) {
  const auto F = static_cast<std::int64_t>(config_.frame_ms);
  if (!started_) {
    Unit u;
    u.samples = spf_;
    return u;
  }

  // Delay cap: a frame whose playout delay would exceed max_delay_ms + one frame is skipped.
  const std::int64_t min_frame = ceil_div(now_ms - base_ms_ - config_.max_delay_ms - F, F);
  if (next_ < min_frame) {
    if (min_frame - next_ >= static_cast<std::int64_t>(config_.capacity)) {
      if (stored_ > 0) last_played_seq_ = -1;
      stats_.packets_discarded += stored_;
      stats_.removed_samples_for_acceleration += std::uint64_t{stored_} * spf_;
      std::fill(slots_.begin(), slots_.end(), Slot{});
      stored_ = 0;
    } else {
      for (std::int64_t f = next_; f < min_frame; ++f) {
        if (const Slot* s = find(f); s != nullptr) {
          last_played_seq_ = s->state == SlotState::primary ? s->ext_sequence : -1;
          drop(f);
          ++stats_.packets_discarded;
          stats_.removed_samples_for_acceleration += spf_;
        }
      }
    }
    next_ = min_frame;
    waited_for_ = -1;
  }

  if (rebuffering_) {
    if (!playing_ && find(next_) == nullptr && stored_ > 0) {
      // Before the first frame (say after an overflow moved the start onto a hole), start
      // at the oldest frame stored.
      next_ = next_present_after(next_ - 1);
    }
    if (find(next_) == nullptr || now_ms < deadline(next_)) {
      return emit(Kind::silence, Adjustment::none, next_, nullptr, false, now_ms);
    }
    rebuffering_ = false;
  }

  bool accelerated = false;
  for (std::uint32_t guard = 0; guard <= config_.capacity + 1; ++guard) {
    const std::int64_t lag = now_ms - deadline(next_);
    const Slot* s = find(next_);
    const Adjustment adj = accelerated ? Adjustment::accelerate : Adjustment::none;
    if (s != nullptr && s->state == SlotState::primary) {
      const bool hinted = s->low_energy || !hints_recent(now_ms);
      const Slot* after = find(next_ + 1);
      const bool behind = lag >= F;
      behind_pulls_ = behind ? behind_pulls_ + (accelerated ? 0 : 1) : 0;
      early_pulls_ = (lag < 0 && !accelerated) ? early_pulls_ + 1 : 0;
      // Time-stretching: a voiced frame is shortened or lengthened by one pitch period
      // instead of a whole frame being skipped or inserted, while the error is small and the
      // caller has managed to stretch within kStretchPatience pulls (unvoiced audio cannot
      // be stretched; the whole-frame rules below then take over). A shortened frame makes
      // the caller pull the next one in the same tick: the stream advances a frame.
      if (config_.time_stretch && !s->low_energy && !accelerated) {
        Stretch want = Stretch::none;
        if (behind && behind_pulls_ >= kBehindPulls && lag <= 2 * F && after != nullptr &&
            after->state == SlotState::primary &&
            behind_pulls_ < kBehindPulls + kStretchPatience) {
          want = Stretch::shorten;
        } else if (lag < 0 && lag >= -kForceFrames * F && early_pulls_ <= kStretchPatience) {
          want = Stretch::lengthen;
        }
        if (want != Stretch::none) {
          Unit u = emit(Kind::normal, Adjustment::none, next_, s, false, now_ms);
          u.stretch = want;
          return u;
        }
      }
      // Accelerate: skip this frame and play the next one now. Once per pull, or as many
      // as it takes when more than two frames behind (after a stall: one jump instead of
      // many small cuts).
      if ((!accelerated || lag > 2 * F) && behind &&
          (behind_pulls_ >= kBehindPulls || lag > 2 * F) && after != nullptr &&
          after->state == SlotState::primary && (hinted || lag > kForceFrames * F)) {
        last_played_seq_ = s->ext_sequence;
        drop(next_);
        ++next_;
        stats_.removed_samples_for_acceleration += spf_;
        accelerated = true;
        continue;
      }
      if (!accelerated && lag < 0 && (hinted || lag < -kForceFrames * F)) {
        return emit(s->low_energy ? Kind::silence : Kind::concealed, Adjustment::expand, next_,
                    nullptr, false, now_ms);
      }
      return emit(Kind::normal, adj, next_, s, false, now_ms);
    }
    if (s != nullptr) {  // a redundant copy of this frame
      return emit(Kind::fec, adj, next_, s, false, now_ms);
    }
    // The frame is missing.
    if (const Slot* n = find(next_ + 1); n != nullptr && n->has_fec) {
      return emit(Kind::fec, adj, next_, n, true, now_ms);
    }
    const std::int64_t k1 = next_present_after(next_);
    if (k1 >= 0) {
      const Slot* s1 = find(k1);
      if (last_played_seq_ >= 0 && s1->state == SlotState::primary &&
          s1->ext_sequence == last_played_seq_ + 1) {
        // No sequence number is missing: the sender paused (discontinuous transmission).
        // Resume at the next talkspurt on its own deadline, with silence until then.
        next_ = k1;
        waited_for_ = -1;
        if (now_ms < deadline(k1)) {
          rebuffering_ = true;
          return emit(Kind::silence, adj, k1, nullptr, false, now_ms);
        }
        continue;
      }
      if (waited_for_ == next_) {
        // A wait unit already stood in for this frame: do not conceal it a second time.
        // That unit turned out to be the frame's concealment, not an inserted frame.
        waited_for_ = -1;
        stats_.inserted_samples_for_deceleration -=
            std::min<std::uint64_t>(spf_, stats_.inserted_samples_for_deceleration);
        note_missing(now_ms, 1);
        ++next_;
        continue;
      }
      if (!accelerated && lag > F) {
        // Far behind with a hole: jump over the missing frames instead of concealing each.
        const std::int64_t to = std::min(k1, next_ + lag / F);
        stats_.removed_samples_for_acceleration +=
            static_cast<std::uint64_t>(to - next_) * spf_;
        note_missing(now_ms, to - next_);
        next_ = to;
        accelerated = true;
        continue;
      }
      if (config_.time_stretch && !accelerated && lag < F) {
        // Later frames are in but this one is not: it may be reordered, a few ms behind
        // them. Wait one pull for it (an expand unit) rather than give it up. If it comes,
        // it plays a frame late and time-stretching shortens the excess away; if not, the
        // next pull skips it and plays the following frame on time, so a frame that is
        // truly lost costs one concealed pull either way. With whole frames the excess
        // would cost a skipped frame later, so the frame is given up now instead.
        waited_for_ = next_;
        return emit(last_low_energy_ ? Kind::silence : Kind::concealed, Adjustment::expand,
                    next_, nullptr, false, now_ms);
      }
      return emit(Kind::concealed, adj, next_, nullptr, false, now_ms);
    }
    // Nothing stored ahead: the packet is late or lost, or the sender is quiet. Wait for it
    // (an expand unit) - the delay cap above bounds the wait.
    waited_for_ = next_;
    return emit(last_low_energy_ ? Kind::silence : Kind::concealed, Adjustment::expand, next_,
                nullptr, false, now_ms);
  }
  // Unreachable: every iteration returns or advances next_ towards a stored frame.
  return emit(Kind::concealed, Adjustment::none, next_, nullptr, false, now_ms);
}

void Buffer::note_stretch(std::int64_t samples) noexcept {
  if (samples < 0) {
    stats_.removed_samples_for_acceleration += static_cast<std::uint64_t>(-samples);
  } else {
    stats_.inserted_samples_for_deceleration += static_cast<std::uint64_t>(samples);
  }
}

Stats Buffer::stats() const noexcept {
  Stats out = stats_;
  const rtp::SourceStats s = source_.stats();
  out.packets_lost = s.lost;
  out.packets_reordered = s.reordered;
  out.jitter = s.jitter_seconds;
  out.restarts = s.restarts;
  return out;
}

}  // namespace voxwire::jitter
