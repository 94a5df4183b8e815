#pragma once
/// The per-message media path of the JSON + base64 telephony transports, in one call each way.
///
/// Inbound: base64 text (RFC 4648 section 4, standard alphabet, padded) -> wire bytes ->
/// PCM16 (G.711 mu-law or A-law expansion, or 16-bit linear in either byte order) -> PCM16 at
/// the pipeline rate through a voxwire::resample::Resampler that keeps its state from one
/// message to the next. Outbound: PCM16 at the TTS rate -> line rate -> wire bytes -> base64.
///
/// Every stage is the existing kernel (voxwire::g711, voxwire::resample), so the result is
/// bit for bit the step-by-step composition of those kernels, whatever the message sizes.
///
/// Base64 is strict: the length must be a multiple of 4, only the 64 alphabet characters
/// appear before the padding, padding is one or two '=' at the very end, and the bits a
/// padded final group leaves over must be zero (the canonical encoding of RFC 4648 section
/// 3.5). No whitespace or line breaks are skipped (section 3.3). Anything else is a
/// PayloadError naming the rule and the offset; nothing is read outside the input.
///
/// Memory: each stream holds fixed scratch of a few kilobytes (allocated at construction) and
/// converts long messages in blocks, so no call allocates. A message may carry at most
/// kMaxPayloadBytes decoded bytes (about 131 s of 8 kHz mu-law); longer ones are refused.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "voxwire/g711.hpp"
#include "voxwire/resample.hpp"

namespace voxwire::media {

/// Largest accepted payload of one message, in decoded bytes (1 MiB).
inline constexpr std::size_t kMaxPayloadBytes = std::size_t{1} << 20;
/// Largest accepted outbound message, in input samples.
inline constexpr std::size_t kMaxSamples = std::size_t{1} << 20;

/// What is wrong with a payload. The names (fault_name) are stable, for counters.
enum class PayloadFault : std::uint8_t {
  none = 0,
  bad_length,     ///< base64 text length is not a multiple of 4
  bad_character,  ///< a character outside the base64 alphabet and not '='
  bad_padding,    ///< '=' other than as the last one or two characters, or non-zero bits
                  ///< left over before the padding
  too_long,       ///< more than kMaxPayloadBytes decoded bytes
  odd_length,     ///< a 16-bit linear payload with an odd number of bytes
};

/// The stable name of a fault: "bad_length", "bad_character", ... ("none" for none).
[[nodiscard]] std::string_view fault_name(PayloadFault fault) noexcept;

/// A malformed payload. Derives from std::invalid_argument; `fault()` says which rule broke
/// and `position()` the offset in the text (or the decoded length, for size faults).
class PayloadError : public std::invalid_argument {
 public:
  PayloadError(PayloadFault fault, std::size_t position, const std::string& message)
      : std::invalid_argument(message), fault_(fault), position_(position) {}
  /// The rule the payload broke.
  [[nodiscard]] PayloadFault fault() const noexcept { return fault_; }
  /// Offset of the offending character, or the decoded length for too_long / odd_length.
  [[nodiscard]] std::size_t position() const noexcept { return position_; }

 private:
  PayloadFault fault_;
  std::size_t position_;
};

/// Base64 characters for `bytes` bytes: 4 * ceil(bytes / 3).
[[nodiscard]] constexpr std::size_t base64_encoded_size(std::size_t bytes) noexcept {
  return (bytes + 2) / 3 * 4;
}

/// Bytes that `text` decodes to if it is valid: 3 * size / 4 less one per trailing '=' (at
/// most two). Reads only the length and the last two characters.
[[nodiscard]] std::size_t base64_decoded_size(std::string_view text) noexcept;

/// The outcome of decode_base64: `fault` is none on success, when `size` bytes were written;
/// otherwise `position` is the offset of the first offending character.
struct Base64Result {
  PayloadFault fault = PayloadFault::none;
  std::size_t size = 0;
  std::size_t position = 0;
};

/// Decodes strict base64 `text` into `out[0, base64_decoded_size(text))`. Never throws for
/// bad text (the result says what is wrong; `out` may then hold partial output). Throws
/// std::invalid_argument if `out` is shorter than base64_decoded_size(text).
Base64Result decode_base64(std::string_view text, std::span<std::uint8_t> out);

/// Checks `text` as decode_base64 would, writing nothing.
[[nodiscard]] Base64Result validate_base64(std::string_view text) noexcept;

/// Encodes `in` as padded base64 into `out[0, base64_encoded_size(in.size()))`; returns that
/// count. Throws std::invalid_argument if `out` is shorter.
std::size_t encode_base64(std::span<const std::uint8_t> in, std::span<char> out);

/// Wire encodings of the media payload.
enum class Encoding : std::uint8_t {
  ulaw = 0,    ///< G.711 mu-law, one byte per sample
  alaw = 1,    ///< G.711 A-law, one byte per sample
  l16_be = 2,  ///< 16-bit linear, big-endian (network order, RFC 3551 L16)
  l16_le = 3,  ///< 16-bit linear, little-endian
};

/// Bytes per sample on the wire: 1 for G.711, 2 for L16.
[[nodiscard]] constexpr std::size_t bytes_per_sample(Encoding e) noexcept {
  return e == Encoding::ulaw || e == Encoding::alaw ? 1 : 2;
}

/// Parses "mulaw"/"ulaw"/"pcmu", "alaw"/"pcma", "l16" (big-endian), "l16be", "l16le".
/// Throws std::invalid_argument for anything else.
[[nodiscard]] Encoding parse_encoding(std::string_view name);

/// One inbound media stream: base64 payloads at the line rate in, PCM16 at the pipeline rate
/// out. The resampler (none when the rates are equal) keeps its state across messages, so
/// the output does not depend on how the audio was split into messages.
///
/// State: a Resampler (under 4 KiB) and 9 KiB of scratch. Not safe for concurrent use.
class Inbound {
 public:
  /// Throws std::invalid_argument for rates the resampler refuses.
  Inbound(Encoding encoding, std::uint32_t line_rate, std::uint32_t pipeline_rate,
          resample::Quality quality = resample::Quality::voice);

  [[nodiscard]] Encoding encoding() const noexcept { return encoding_; }
  [[nodiscard]] std::uint32_t line_rate() const noexcept { return line_rate_; }
  [[nodiscard]] std::uint32_t pipeline_rate() const noexcept { return pipeline_rate_; }
  /// Delay added by the resampler in seconds (0 when the rates are equal).
  [[nodiscard]] double latency() const noexcept;
  /// The resampler, or nullptr when the rates are equal.
  [[nodiscard]] const resample::Resampler* resampler() const noexcept {
    return resampler_ ? &*resampler_ : nullptr;
  }

  /// Samples `decode(payload, ...)` writes if the payload is valid. Looks only at the size:
  /// throws PayloadError (bad_length, too_long) when that alone is wrong, so a caller can
  /// size its output before decoding without trusting the payload. (An L16 payload of an odd
  /// byte count is refused by decode, after its characters are checked.)
  [[nodiscard]] std::size_t output_size(std::string_view payload) const;

  /// Decodes one message's base64 payload and writes output_size(payload) samples at the
  /// pipeline rate to the front of `out`; returns that count. An empty payload gives 0.
  /// Throws PayloadError for a malformed payload and std::invalid_argument if `out` is too
  /// short; either way the stream is left unchanged.
  std::size_t decode(std::string_view payload, std::span<std::int16_t> out);

  /// Forgets the resampler history (a new stream on the same object). Does not allocate.
  void reset() noexcept;

 private:
  void convert(std::span<const std::uint8_t> wire, std::span<std::int16_t> out,
               std::size_t& written);

  Encoding encoding_;
  std::uint32_t line_rate_;
  std::uint32_t pipeline_rate_;
  std::optional<resample::Resampler> resampler_;
  std::vector<std::uint8_t> bytes_;  // one block of decoded payload
  std::vector<std::int16_t> pcm_;    // the same block as line-rate PCM
};

/// One outbound media stream: PCM16 at the source (TTS) rate in, base64 payloads at the line
/// rate out. The resampler keeps its state across messages.
///
/// State: a Resampler (under 4 KiB) and scratch sized at construction for one block of
/// input (a few KiB at most, more for high upsampling ratios). Not safe for concurrent use.
class Outbound {
 public:
  /// Throws std::invalid_argument for rates the resampler refuses.
  Outbound(Encoding encoding, std::uint32_t source_rate, std::uint32_t line_rate,
           resample::Quality quality = resample::Quality::voice,
           g711::EncodeMode mode = g711::EncodeMode::g191);

  [[nodiscard]] Encoding encoding() const noexcept { return encoding_; }
  [[nodiscard]] std::uint32_t source_rate() const noexcept { return source_rate_; }
  [[nodiscard]] std::uint32_t line_rate() const noexcept { return line_rate_; }
  /// Delay added by the resampler in seconds (0 when the rates are equal).
  [[nodiscard]] double latency() const noexcept;
  /// The resampler, or nullptr when the rates are equal.
  [[nodiscard]] const resample::Resampler* resampler() const noexcept {
    return resampler_ ? &*resampler_ : nullptr;
  }

  /// Line-rate samples the next encode of n input samples produces.
  /// Throws std::length_error if n > kMaxSamples.
  [[nodiscard]] std::size_t line_samples(std::size_t n) const;
  /// Base64 characters the next encode of n input samples produces.
  [[nodiscard]] std::size_t output_size(std::size_t n) const {
    return base64_encoded_size(line_samples(n) * bytes_per_sample(encoding_));
  }

  /// Converts `pcm` and writes the base64 payload, output_size(pcm.size()) characters, to the
  /// front of `out`; returns that count (0 while the resampler is still filling, or for empty
  /// input). Throws std::length_error for more than kMaxSamples input samples and
  /// std::invalid_argument if `out` is too short; either way the stream is left unchanged.
  std::size_t encode(std::span<const std::int16_t> pcm, std::span<char> out);

  /// Forgets the resampler history. Does not allocate.
  void reset() noexcept;

 private:
  Encoding encoding_;
  std::uint32_t source_rate_;
  std::uint32_t line_rate_;
  g711::EncodeMode mode_;
  std::optional<resample::Resampler> resampler_;
  std::vector<std::int16_t> line_;   // one block of line-rate PCM
  std::vector<std::uint8_t> bytes_;  // up to 2 carried bytes + that block on the wire
};

}  // namespace voxwire::media
