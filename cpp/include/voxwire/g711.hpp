#pragma once
/// G.711 mu-law and A-law companding (ITU-T G.711, reference code ITU-T G.191 "g711.c").
///
/// Linear samples are 16-bit two's complement. Encoders read 16-bit PCM and write one code
/// byte per sample; decoders do the reverse. Every function works on buffers of any length and
/// any alignment (the byte-span overloads exist for PCM that sits at an odd address, as Python
/// bytes slices can). The bulk functions are vectorised where the CPU allows; each has a
/// scalar per-sample twin that defines its result.

#include <cstddef>
#include <cstdint>
#include <span>

namespace voxwire::g711 {

/// How a linear sample is rounded onto a code. Decoding is the same in both modes.
enum class EncodeMode : std::uint8_t {
  /// Bit-exact with the ITU-T G.191 reference encoder for all 65,536 inputs (the default).
  g191 = 0,
  /// Byte-for-byte what CPython's audioop.lin2ulaw / lin2alaw return. audioop's mu-law
  /// encoder takes the magnitude of a negative sample as -(x >> 2) where G.191 takes
  /// ~x >> 2, so 508 negative inputs land one code away. Its A-law encoder equals G.191.
  audioop = 1,
};

/// Instruction sets the bulk functions can run on. All give identical results.
enum class Isa : std::uint8_t {
  portable = 0,  ///< Plain C++ (compiler-vectorised for the baseline ISA, tables for decode).
  avx2 = 1,      ///< Hand-written AVX2 kernels (x86-64).
  best = 2,      ///< The fastest the CPU supports (the default).
  avx512 = 3,    ///< AVX-512 BW + VBMI encoders and the AVX2 decoders (x86-64).
};

/// Restricts the bulk functions to `isa` for the whole process (for tests and benchmarks).
/// Returns false, changing nothing, if the CPU does not support it. Thread-safe.
bool set_isa(Isa isa) noexcept;
/// The instruction set the bulk functions use now (never Isa::best).
[[nodiscard]] Isa current_isa() noexcept;

/// Encodes one sample to a mu-law code.
[[nodiscard]] std::uint8_t encode_ulaw_sample(std::int16_t x, EncodeMode mode = EncodeMode::g191) noexcept;
/// Encodes one sample to an A-law code (both modes give the same code).
[[nodiscard]] std::uint8_t encode_alaw_sample(std::int16_t x, EncodeMode mode = EncodeMode::g191) noexcept;
/// Decodes one mu-law code (G.191 ulaw_expand: outputs lie in [-32124, 32124]).
[[nodiscard]] std::int16_t decode_ulaw_sample(std::uint8_t code) noexcept;
/// Decodes one A-law code (G.191 alaw_expand: outputs lie in [-32256, 32256]).
[[nodiscard]] std::int16_t decode_alaw_sample(std::uint8_t code) noexcept;

/// Encodes `in` to mu-law codes in `out[0, in.size())`; returns in.size().
/// Throws std::invalid_argument if out.size() < in.size().
std::size_t encode_ulaw(std::span<const std::int16_t> in, std::span<std::uint8_t> out,
                        EncodeMode mode = EncodeMode::g191);
/// As encode_ulaw, reading native-endian 16-bit samples from bytes at any alignment.
/// Throws std::invalid_argument if pcm.size() is odd or out is shorter than pcm.size() / 2.
std::size_t encode_ulaw(std::span<const std::byte> pcm, std::span<std::uint8_t> out,
                        EncodeMode mode = EncodeMode::g191);

/// Encodes `in` to A-law codes in `out[0, in.size())`; returns in.size().
/// Throws std::invalid_argument if out.size() < in.size().
std::size_t encode_alaw(std::span<const std::int16_t> in, std::span<std::uint8_t> out,
                        EncodeMode mode = EncodeMode::g191);
/// As encode_alaw, reading native-endian 16-bit samples from bytes at any alignment.
std::size_t encode_alaw(std::span<const std::byte> pcm, std::span<std::uint8_t> out,
                        EncodeMode mode = EncodeMode::g191);

/// Decodes mu-law `codes` into `out[0, codes.size())`; returns codes.size().
/// Throws std::invalid_argument if out.size() < codes.size().
std::size_t decode_ulaw(std::span<const std::uint8_t> codes, std::span<std::int16_t> out);
/// As decode_ulaw, writing native-endian 16-bit samples to bytes at any alignment.
/// Throws std::invalid_argument if pcm.size() < 2 * codes.size().
std::size_t decode_ulaw(std::span<const std::uint8_t> codes, std::span<std::byte> pcm);

/// Decodes A-law `codes` into `out[0, codes.size())`; returns codes.size().
std::size_t decode_alaw(std::span<const std::uint8_t> codes, std::span<std::int16_t> out);
/// As decode_alaw, writing native-endian 16-bit samples to bytes at any alignment.
std::size_t decode_alaw(std::span<const std::uint8_t> codes, std::span<std::byte> pcm);

}  // namespace voxwire::g711
