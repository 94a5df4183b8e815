#pragma once
/// Streaming sample-rate conversion by a rational factor L/M with a polyphase windowed-sinc
/// FIR filter.
///
/// Method: the ideal band-limited interpolator (Shannon; Crochiere & Rabiner, "Multirate
/// Digital Signal Processing", 1983, for the polyphase structure) truncated by a Kaiser window
/// (Kaiser, "Nonrecursive digital filter design using the I0-sinh window function", 1974, whose
/// empirical length and shape formulas are also given with the Kaiser window design method in
/// Oppenheim & Schafer, "Discrete-Time Signal Processing"). The cutoff sits at the lower of the
/// two Nyquist frequencies and the transition band is centred on it, so both presets trade a
/// little aliasing inside the transition band for a short filter: the filter is linear-phase
/// and its half length is the only delay.
///
/// Time alignment: output sample k is the input signal evaluated at time k / out_rate, the same
/// instant as input sample k * in_rate / out_rate (no phase offset). Computing it needs the input
/// up to `lookahead()` samples past that instant, so after n input samples a stream has produced
/// exactly
///
///     m(n) = max(0, ceil((n - lookahead) * L / M))
///
/// output samples, which is the ideal count n * L / M less the latency (lookahead / in_rate
/// seconds) rounded up. `flush()` completes the stream to ceil(n * L / M) samples. Every output
/// sample is a dot product over the same inputs in the same order whatever the chunking, so the
/// output does not depend on how the input is split, to the bit.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace voxwire::resample {

/// Quality presets. Edges are fractions of the lower Nyquist frequency min(in, out) / 2.
enum class Quality : std::uint8_t {
  /// Passband flat within +-0.1 dB (designed: +-0.0002 dB) to 0.85, aliasing and imaging at
  /// least 80 dB down (designed: at least 94 dB, the int16 noise floor) beyond 1.15. Latency
  /// at most 2.55 ms when 8 kHz is the lower rate (20 / 8000 s for 8 kHz in), about 1.3 ms
  /// when 16 kHz is.
  voice = 0,
  /// Passband to 0.9, rejection at least 100 dB (designed: at least 104 dB) beyond 1.1.
  /// Latency 36 / 8000 s = 4.5 ms when 8 kHz is the lower rate.
  high = 1,
};

/// The name of a preset: "voice" or "high".
[[nodiscard]] std::string_view quality_name(Quality q) noexcept;
/// Parses "voice" or "high". Throws std::invalid_argument for anything else.
[[nodiscard]] Quality parse_quality(std::string_view name);

/// Lowest and highest accepted sample rate in Hz.
inline constexpr std::uint32_t kMinRate = 1000;
/// Highest accepted sample rate in Hz.
inline constexpr std::uint32_t kMaxRate = 384000;
/// Largest accepted number of polyphase branches L (out_rate / gcd(in_rate, out_rate)).
inline constexpr std::uint32_t kMaxPhases = 2048;

/// An immutable polyphase filter for one (in_rate / out_rate reduced to L / M, quality) pair.
/// Shared by every stream that uses the pair; obtain it with `Filter::get`.
class Filter {
 public:
  /// The cached filter for this conversion; built on first use, then shared and kept for the
  /// life of the process. Thread-safe. Throws std::invalid_argument for rates outside
  /// [kMinRate, kMaxRate], more than kMaxPhases branches, or a filter longer than a stream's
  /// history buffer can hold (kMaxTaps).
  [[nodiscard]] static std::shared_ptr<const Filter> get(std::uint32_t in_rate,
                                                         std::uint32_t out_rate, Quality quality);

  /// Builds a filter without the cache (for tests). Same validation as `get`.
  Filter(std::uint32_t in_rate, std::uint32_t out_rate, Quality quality);

  /// Interpolation factor L = out_rate / gcd(in_rate, out_rate).
  [[nodiscard]] std::uint32_t up() const noexcept { return up_; }
  /// Decimation factor M = in_rate / gcd(in_rate, out_rate).
  [[nodiscard]] std::uint32_t down() const noexcept { return down_; }
  /// Taps per polyphase branch (input samples under the window); 1 when the rates are equal.
  [[nodiscard]] std::size_t taps() const noexcept { return taps_; }
  /// Input samples the filter reads past an output sample's instant: taps / 2 (0 when the rates
  /// are equal). This is the whole delay of a stream, in input samples.
  [[nodiscard]] std::size_t lookahead() const noexcept { return lookahead_; }
  /// The preset the filter was designed for.
  [[nodiscard]] Quality quality() const noexcept { return quality_; }
  /// Taps per branch as stored: taps() rounded up to a multiple of 8 with leading zeros, so
  /// that every dot product is whole SIMD vectors. The zeros multiply (finite) samples that
  /// precede the window.
  [[nodiscard]] std::size_t stride() const noexcept { return stride_; }
  /// Coefficients of branch `phase` (0 <= phase < up()), stride() of them; coefficient r
  /// weights input sample i - (stride - 1 - lookahead) + r for an output at input position
  /// i + phase / up. The first stride() - taps() are zero. Each branch sums to 1 (unity gain at
  /// DC in every branch).
  [[nodiscard]] std::span<const float> branch(std::size_t phase) const noexcept {
    return {coefficients_.get() + phase * stride_, stride_};
  }
  /// The tap at which branch 0 is a unit pulse (it is for integer-factor interpolation and equal
  /// rates: those outputs are input samples, copied), or stride() if it is not.
  [[nodiscard]] std::size_t pulse() const noexcept { return pulse_; }
  /// The branches again, in the order a stream visits them: slot k holds branch (k * down()) %
  /// up(), so consecutive outputs read consecutive memory. Empty (nullptr) for ratios whose
  /// kernels do not use it (equal rates, integer-factor interpolation, at most 8 branches).
  [[nodiscard]] const float* visit_order() const noexcept { return visit_.get(); }
  /// The slot of branch `phase` in visit_order() (0 <= phase < up()); only when it is set.
  [[nodiscard]] std::size_t visit_slot(std::size_t phase) const noexcept {
    return slot_[phase];
  }
  /// Cutoff (-6 dB point) in cycles per input sample.
  [[nodiscard]] double cutoff() const noexcept { return cutoff_; }
  /// Kaiser window shape parameter beta.
  [[nodiscard]] double beta() const noexcept { return beta_; }

 private:
  std::uint32_t up_ = 1;
  std::uint32_t down_ = 1;
  std::size_t taps_ = 1;
  std::size_t stride_ = 8;
  std::size_t lookahead_ = 0;
  std::size_t pulse_ = 8;
  Quality quality_ = Quality::voice;
  double cutoff_ = 0.5;
  double beta_ = 0.0;
  std::unique_ptr<float[]> coefficients_;
  std::unique_ptr<float[]> visit_;
  std::unique_ptr<std::uint32_t[]> slot_;
};

/// Floats in a stream's history buffer: the filter window plus room to convert input in blocks.
/// As many as fit a stream's 4 KB, so that a 20 ms chunk at 44.1 kHz and the window before it
/// (882 + 111 samples) are one block.
inline constexpr std::size_t kBufferSize = 1000;
/// Longest accepted filter (taps per branch, before padding to a multiple of 8): leaves at
/// least 280 samples per block.
inline constexpr std::size_t kMaxTaps = 712;
static_assert(kMaxTaps + 8 + 280 <= kBufferSize);

/// One mono stream being converted from in_rate to out_rate.
///
/// State: a fixed history buffer of kBufferSize floats (input samples scaled to [-1, 1)), a few
/// counters and a reference to the shared Filter; sizeof(Resampler) <= 4096. Construction takes
/// the filter from the cache (building it on first use); `process`, `flush` and `reset` never
/// allocate. Not safe for concurrent use; use one object per stream.
///
/// int16 samples are scaled by 2^-15 on the way in and 2^15 on the way out (exact in binary
/// floating point), so an int16 stream and a float32 stream of the same signal compute the same
/// values. int16 output is rounded to nearest (ties to even) and saturated to [-32768, 32767];
/// every saturated sample is counted in `clipped()`. No dither is added. Digital silence in
/// gives exact zeros out.
class Resampler {
 public:
  /// A stream from in_rate to out_rate (Hz). Throws as Filter::get.
  Resampler(std::uint32_t in_rate, std::uint32_t out_rate, Quality quality = Quality::voice);

  /// Input sample rate in Hz.
  [[nodiscard]] std::uint32_t in_rate() const noexcept { return in_rate_; }
  /// Output sample rate in Hz.
  [[nodiscard]] std::uint32_t out_rate() const noexcept { return out_rate_; }
  /// The filter in use.
  [[nodiscard]] const Filter& filter() const noexcept { return *filter_; }
  /// Total delay in seconds from an input sample to the output sample at the same instant:
  /// lookahead() / in_rate. Nothing else is held: the group delay of the output is zero, and
  /// an output sample is produced as soon as the input it needs has arrived.
  [[nodiscard]] double latency() const noexcept;
  /// Saturated int16 output samples since construction or the last reset() (flush() keeps it).
  [[nodiscard]] std::uint64_t clipped() const noexcept { return clipped_; }
  /// Input samples consumed since construction or the last reset() / flush().
  [[nodiscard]] std::uint64_t samples_in() const noexcept { return samples_in_; }
  /// Output samples produced since construction or the last reset() / flush().
  [[nodiscard]] std::uint64_t samples_out() const noexcept { return samples_out_; }

  /// Exactly how many samples `process` returns for the next n input samples.
  /// Throws std::length_error if n > kMaxBlock.
  [[nodiscard]] std::size_t output_size(std::size_t n) const;
  /// Exactly how many samples `flush` returns now.
  [[nodiscard]] std::size_t flush_size() const noexcept;

  /// Largest accepted input block (2^40 samples).
  static constexpr std::size_t kMaxBlock = std::size_t{1} << 40;

  /// Consumes `in` and writes output_size(in.size()) samples to the front of `out`; returns
  /// that count. Throws std::invalid_argument, leaving the stream unchanged, if `out` is
  /// shorter. An empty input is allowed and produces nothing.
  std::size_t process(std::span<const std::int16_t> in, std::span<std::int16_t> out);
  /// As above for float32 samples (full scale +-1.0; nothing is clipped).
  std::size_t process(std::span<const float> in, std::span<float> out);

  /// Ends the stream: writes the flush_size() samples still owed (the input is completed with
  /// lookahead() zeros), so that the stream totals ceil(n * L / M) samples, then returns to
  /// the initial state for a new stream (as reset(), except that clipped() keeps counting).
  /// Throws std::invalid_argument, leaving the stream unchanged, if `out` is shorter.
  std::size_t flush(std::span<std::int16_t> out);
  /// As above for float32 samples.
  std::size_t flush(std::span<float> out);

  /// Returns to the state after construction (clears history, counters and `clipped()`);
  /// keeps the filter. Does not allocate.
  void reset() noexcept;

 private:
  template <class In, class Out>
  std::size_t run(std::span<const In> in, Out* out);
  template <class Out>
  std::size_t produce(Out* out);
  template <class Out>
  std::size_t flush_into(std::span<Out> out);

  std::shared_ptr<const Filter> filter_;
  std::uint32_t in_rate_;
  std::uint32_t out_rate_;
  // buffer_[0, fill_) holds consecutive input samples; the next output's window starts at
  // buffer_[next_] and its polyphase branch is phase_.
  std::size_t fill_ = 0;
  std::size_t next_ = 0;
  std::size_t phase_ = 0;
  std::uint64_t samples_in_ = 0;
  std::uint64_t samples_out_ = 0;
  std::uint64_t clipped_ = 0;
  std::array<float, kBufferSize> buffer_{};
};

}  // namespace voxwire::resample
