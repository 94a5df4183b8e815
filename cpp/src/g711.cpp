#include "voxwire/g711.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Portable paths: the encoders are written branch-free over 32-bit lanes so that the compiler
// vectorises them for the baseline ISA, and the decoders read a 256-entry table. On x86-64
// (GCC or clang), hand-written AVX2 kernels (below) take over when the CPU has AVX2, and
// AVX-512 encoders when it also has AVX-512 BW and VBMI (and the OS saves their registers).
// Every path computes the same integers, so results never depend on the CPU; the tests
// compare each with the reference on all 65,536 inputs.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VOXWIRE_X86_DISPATCH 1
#else
#define VOXWIRE_X86_DISPATCH 0
#endif

namespace voxwire::g711 {
namespace {

bool cpu_has_avx2() noexcept {
#if VOXWIRE_X86_DISPATCH
  return __builtin_cpu_supports("avx2") != 0;
#else
  return false;
#endif
}

bool cpu_has_avx512() noexcept {
#if VOXWIRE_X86_DISPATCH
  // The runtime checks also require the OS to save the 512-bit state.
  return cpu_has_avx2() && __builtin_cpu_supports("avx512bw") != 0 &&
         __builtin_cpu_supports("avx512vbmi") != 0;
#else
  return false;
#endif
}

Isa best_isa() noexcept {
  if (cpu_has_avx512()) return Isa::avx512;
  return cpu_has_avx2() ? Isa::avx2 : Isa::portable;
}

// Chosen once from the CPU; set_isa may restrict it (tests and benchmarks).
std::atomic<Isa> g_isa{best_isa()};

Isa active_isa() noexcept { return g_isa.load(std::memory_order_relaxed); }

void require_even(std::size_t bytes, const char* fn) {
  if (bytes % 2 != 0) {
    throw std::invalid_argument(std::string(fn) + ": PCM16 byte length must be even, got " +
                                std::to_string(bytes));
  }
}

void require(bool ok, const char* what, std::size_t need, std::size_t have) {
  if (!ok) {
    throw std::invalid_argument(std::string(what) + ": need " + std::to_string(need) + ", got " +
                                std::to_string(have));
  }
}

// The bits of float(v) from bit 19 up: the exponent (127 + index of the top bit of v) and,
// below it, the four bits that follow v's top bit, truncated. Exact for 0 < v < 2^24. This is
// how both encoders find segment and mantissa without a variable shift, which most SIMD
// instruction sets lack for 32-bit lanes, so the loops below vectorise for the baseline ISA.
inline std::int32_t float_code(std::int32_t v) noexcept {
  return static_cast<std::int32_t>(std::bit_cast<std::uint32_t>(static_cast<float>(v)) >> 19);
}

inline std::int16_t load_pcm(const std::byte* p) noexcept {
  std::int16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store_pcm(std::byte* p, std::int32_t v) noexcept {
  const auto s = static_cast<std::int16_t>(v);
  std::memcpy(p, &s, sizeof s);
}

// mu-law encoder (G.711 Table 2a, G.191 ulaw_compress): magnitude of the 14-bit sample plus
// the bias 33, clamped to 8191; segment = position of its top bit above bit 5; the code is the
// one's complement of (segment, 4 mantissa bits), sign bit set for x >= 0. `neg_bias` is 0 for
// G.191 (magnitude ~x >> 2) and 4 for audioop (magnitude -(x >> 2) = (~x + 4) >> 2).
// With a in [33, 8191] its top bit is bit seg + 5, so float_code(a) - ((127 + 5) << 4) is
// (seg << 4) | mant.
inline std::uint8_t ulaw_code(std::int32_t x, std::int32_t neg_bias) noexcept {
  const std::int32_t neg = x >> 31;
  const std::int32_t a = std::min((((x ^ neg) + (neg & neg_bias)) >> 2) + 33, 0x1FFF);
  const std::int32_t seg_mant = float_code(a) - (132 << 4);
  return static_cast<std::uint8_t>((seg_mant | (neg & 0x80)) ^ 0xFF);
}

// A-law encoder (G.711 Table 1a, G.191 alaw_compress): 12-bit magnitude (one's complement for
// negatives); segment 0 is linear, segment e >= 1 keeps the 4 bits below the top bit; even
// bits toggled with 0x55, sign bit set for x >= 0.
// (seg << 4) | mant equals ix itself below 32 (segments 0 and 1 share the step 1), and
// float_code(ix) - ((127 + 3) << 4) from 16 up, which is at most ix there; so it is the
// smaller of ix and the float form of max(ix, 16).
inline std::uint8_t alaw_code(std::int32_t x) noexcept {
  const std::int32_t neg = x >> 31;
  const std::int32_t ix = (x ^ neg) >> 4;
  const std::int32_t seg_mant = std::min(ix, float_code(std::max(ix, 16)) - (130 << 4));
  return static_cast<std::uint8_t>((seg_mant | (~neg & 0x80)) ^ 0x55);
}

// mu-law decoder (G.191 ulaw_expand): ((mantissa * 8 + 132) << segment) - 132, signed.
constexpr std::int32_t ulaw_value(std::uint32_t code) noexcept {
  const std::uint32_t u = ~code & 0xFF;
  const std::uint32_t e = (u >> 4) & 7;
  const auto mag = static_cast<std::int32_t>((((u & 0xF) << 3) + 0x84) << e) - 0x84;
  const std::int32_t neg = -static_cast<std::int32_t>(u >> 7);
  return (mag ^ neg) - neg;
}

// A-law decoder (G.191 alaw_expand): mantissa with its implied leading one above segment 0,
// plus half a step, shifted by segment - 1; sign bit set means positive.
constexpr std::int32_t alaw_value(std::uint32_t code) noexcept {
  const std::uint32_t ix = (code ^ 0x55) & 0x7F;
  const std::uint32_t e = ix >> 4;
  const std::uint32_t m = (ix & 0xF) | (e > 0 ? 0x10u : 0u);
  const std::uint32_t shift = e > 0 ? e - 1 : 0;
  const auto mag = static_cast<std::int32_t>(((m << 4) + 8) << shift);
  const std::int32_t neg = static_cast<std::int32_t>(code >> 7) - 1;
  return (mag ^ neg) - neg;
}

void ulaw_encode_portable(const std::byte* in, std::uint8_t* out, std::size_t n,
                          std::int32_t neg_bias) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = ulaw_code(load_pcm(in + 2 * i), neg_bias);
}

void alaw_encode_portable(const std::byte* in, std::uint8_t* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = alaw_code(load_pcm(in + 2 * i));
}

template <std::int32_t (*value)(std::uint32_t) noexcept>
struct DecodeTable {
  std::array<std::int16_t, 256> v{};
  constexpr DecodeTable() {
    for (std::uint32_t c = 0; c < 256; ++c) v[c] = static_cast<std::int16_t>(value(c));
  }
};
constexpr DecodeTable<ulaw_value> kUlawTable{};
constexpr DecodeTable<alaw_value> kAlawTable{};

void decode_table_loop(const std::array<std::int16_t, 256>& table, const std::uint8_t* in,
                       std::byte* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) store_pcm(out + 2 * i, table[in[i]]);
}

#if VOXWIRE_X86_DISPATCH
// Both laws decode, 16 codes at a time in 16-bit lanes, as
//   x = code ^ flip;  seg = (x >> 4) & 7;  mag = (x & 15) * step[seg] + bias[seg];
//   value = (x & 0x80) ? -mag : mag
// with flip = 0xFF for mu-law (all bits inverted on the line) and 0xD5 for A-law (even bits
// inverted, sign bit meaning positive). step and bias are 8-entry int16 tables read with
// vpshufb, which AVX2 has, where it lacks a variable shift for 16-bit lanes.
struct SegmentTables {
  std::uint8_t flip;
  std::array<std::int16_t, 8> step;
  std::array<std::int16_t, 8> bias;
};
// mu-law: ((m * 8 + 132) << e) - 132  =  m * (8 << e) + ((132 << e) - 132).
constexpr SegmentTables kUlawSegments{
    0xFF, {8, 16, 32, 64, 128, 256, 512, 1024}, {0, 132, 396, 924, 1980, 4092, 8316, 16764}};
// A-law: segment 0 is m * 16 + 8; segment e >= 1 is ((m + 16) * 16 + 8) << (e - 1).
constexpr SegmentTables kAlawSegments{
    0xD5, {16, 16, 32, 64, 128, 256, 512, 1024}, {8, 264, 528, 1056, 2112, 4224, 8448, 16896}};

__attribute__((target("avx2"))) void decode_avx2(const SegmentTables& t, const std::uint8_t* in,
                                                 std::byte* out, std::size_t n) noexcept {
  const __m128i step128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.step.data()));
  const __m128i bias128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.bias.data()));
  const __m256i step = _mm256_broadcastsi128_si256(step128);
  const __m256i bias = _mm256_broadcastsi128_si256(bias128);
  const __m256i flip = _mm256_set1_epi16(t.flip);
  const __m256i seven = _mm256_set1_epi16(7);
  const __m256i fifteen = _mm256_set1_epi16(15);
  const __m256i sign = _mm256_set1_epi16(0x80);
  const __m256i pair = _mm256_set1_epi16(0x0100);  // byte index 2e in the low byte, 2e+1 high
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i c8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m256i x = _mm256_xor_si256(_mm256_cvtepu8_epi16(c8), flip);
    const __m256i e = _mm256_and_si256(_mm256_srli_epi16(x, 4), seven);
    const __m256i e2 = _mm256_add_epi16(e, e);
    const __m256i idx = _mm256_or_si256(_mm256_or_si256(e2, _mm256_slli_epi16(e2, 8)), pair);
    const __m256i mag = _mm256_add_epi16(
        _mm256_mullo_epi16(_mm256_and_si256(x, fifteen), _mm256_shuffle_epi8(step, idx)),
        _mm256_shuffle_epi8(bias, idx));
    const __m256i neg = _mm256_cmpeq_epi16(_mm256_and_si256(x, sign), sign);
    const __m256i v = _mm256_sub_epi16(_mm256_xor_si256(mag, neg), neg);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), v);
  }
  const auto& table = t.flip == kUlawSegments.flip ? kUlawTable.v : kAlawTable.v;
  decode_table_loop(table, in + i, out + 2 * i, n - i);
}

// Both laws encode 32 samples at a time in 16-bit lanes. With v the magnitude above the
// linear segment (mu-law: biased 13-bit magnitude a >> 6; A-law: 11-bit magnitude >> 4, both
// 0..127), the segment is the bit length of v, read with two vpshufb lookups on its nibbles.
// The mantissa is a right shift by a per-lane amount, done as vpmulhuw by a power of two
// picked with vpshufb (AVX2 has no variable shift for 16-bit lanes).
//   mu-law: seg = bitlen(a >> 6), mant = (a >> (seg + 1)) & 15, code = (seg, mant, sign) ^ 0xFF
//   A-law:  seg = bitlen(ix >> 4), mant = (ix >> max(seg - 1, 0)) & 15,
//           code = (seg, mant, sign) ^ 0xD5  (the A-law sign bit means positive)
struct EncodeTables {
  bool ulaw;
  std::uint8_t flip;
  std::array<std::uint16_t, 8> mult;  // 2^(15 - shift) for each segment
};
constexpr EncodeTables kUlawEncode{true, 0xFF,
                                   {0x8000, 0x4000, 0x2000, 0x1000, 0x800, 0x400, 0x200, 0x100}};
// A-law multiplies 2 * ix so that segments 0 and 1 (shift 0) fit the same scheme.
constexpr EncodeTables kAlawEncode{false, 0xD5,
                                   {0x8000, 0x8000, 0x4000, 0x2000, 0x1000, 0x800, 0x400, 0x200}};

__attribute__((target("avx2"))) inline __m256i encode16_avx2(const EncodeTables& t,
                                                              __m256i x, __m256i neg_bias,
                                                              __m256i mult) noexcept {
  const __m256i bitlen_lo = _mm256_setr_epi8(0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4,
                                             0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4);
  const __m256i bitlen_hi = _mm256_setr_epi8(0, 5, 6, 6, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0, 5, 6, 6, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i fifteen = _mm256_set1_epi16(15);
  const __m256i neg = _mm256_srai_epi16(x, 15);
  __m256i m = _mm256_xor_si256(x, neg);  // ~x for negative samples, as G.191
  __m256i v;
  __m256i val;
  if (t.ulaw) {
    m = _mm256_add_epi16(m, _mm256_and_si256(neg, neg_bias));  // audioop: -(x >> 2)
    val = _mm256_min_epu16(_mm256_add_epi16(_mm256_srli_epi16(m, 2), _mm256_set1_epi16(33)),
                           _mm256_set1_epi16(0x1FFF));
    v = _mm256_srli_epi16(val, 6);
  } else {
    const __m256i ix = _mm256_srli_epi16(m, 4);
    v = _mm256_srli_epi16(ix, 4);
    val = _mm256_add_epi16(ix, ix);
  }
  const __m256i seg =
      _mm256_max_epu8(_mm256_shuffle_epi8(bitlen_lo, _mm256_and_si256(v, fifteen)),
                      _mm256_shuffle_epi8(bitlen_hi, _mm256_srli_epi16(v, 4)));
  // Byte indices 2*seg (low byte) and 2*seg + 1 (high byte) pick the 16-bit multiplier.
  const __m256i idx = _mm256_add_epi16(_mm256_mullo_epi16(seg, _mm256_set1_epi16(0x0202)),
                                       _mm256_set1_epi16(0x0100));
  const __m256i mant =
      _mm256_and_si256(_mm256_mulhi_epu16(val, _mm256_shuffle_epi8(mult, idx)), fifteen);
  const __m256i code = _mm256_or_si256(_mm256_or_si256(_mm256_slli_epi16(seg, 4), mant),
                                       _mm256_and_si256(neg, _mm256_set1_epi16(0x80)));
  return _mm256_xor_si256(code, _mm256_set1_epi16(t.flip));
}

__attribute__((target("avx2"))) void encode_avx2(const EncodeTables& t, std::int32_t neg_bias,
                                                 const std::byte* in, std::uint8_t* out,
                                                 std::size_t n) noexcept {
  const __m256i mult = _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.mult.data())));
  const __m256i bias = _mm256_set1_epi16(static_cast<std::int16_t>(neg_bias));
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i + 32));
    const __m256i packed = _mm256_packus_epi16(encode16_avx2(t, x0, bias, mult),
                                               encode16_avx2(t, x1, bias, mult));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_permute4x64_epi64(packed, 0xD8));
  }
  if (t.ulaw) {
    ulaw_encode_portable(in + 2 * i, out + i, n - i, neg_bias);
  } else {
    alaw_encode_portable(in + 2 * i, out + i, n - i);
  }
}

// AVX-512 (BW for 16-bit lanes and per-lane shifts, VBMI for 128-byte table lookups):
// 32 samples per vector. v = the magnitude above the linear segment (as for AVX2, 0..127)
// indexes two tables with vpermi2b: the segment's shift and (segment << 4) ^ 16; the
// mantissa with its leading one (16 + mant, or ix itself in A-law's segment 0) is one
// variable shift, and the code is three-way XOR of those and the sign/inversion byte
// (the leading one cancels against the table's 16). Only the low byte of each lane is kept.
struct Tables512 {
  std::array<std::uint8_t, 128> shift;
  std::array<std::uint8_t, 128> seg;
};

constexpr Tables512 make_tables512(bool ulaw) {
  Tables512 t{};
  for (std::uint32_t v = 0; v < 128; ++v) {
    std::uint32_t len = 0;
    while ((v >> len) != 0) ++len;  // the segment: bit length of v
    // mu-law shifts a >> 1 by the segment; A-law shifts ix by max(segment - 1, 0).
    t.shift[v] = static_cast<std::uint8_t>(ulaw ? len : (len > 0 ? len - 1 : 0));
    t.seg[v] = static_cast<std::uint8_t>(ulaw || len > 0 ? (len << 4) ^ 0x10 : 0);
  }
  return t;
}
constexpr Tables512 kUlaw512 = make_tables512(true);
constexpr Tables512 kAlaw512 = make_tables512(false);

#define VOXWIRE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vbmi")))

VOXWIRE_AVX512 inline __m512i lookup128(const std::array<std::uint8_t, 128>& t,
                                        __m512i idx) noexcept {
  return _mm512_permutex2var_epi8(_mm512_loadu_si512(t.data()), idx,
                                  _mm512_loadu_si512(t.data() + 64));
}

template <bool kUlaw, bool kAudioop>
VOXWIRE_AVX512 inline __m512i encode32_avx512(__m512i x) noexcept {
  const Tables512& t = kUlaw ? kUlaw512 : kAlaw512;
  const __m512i neg = _mm512_srai_epi16(x, 15);
  __m512i m = _mm512_xor_si512(x, neg);  // ~x for negative samples, as G.191
  __m512i mag;  // the value the mantissa is shifted out of
  __m512i v;
  if constexpr (kUlaw) {
    if constexpr (kAudioop) m = _mm512_add_epi16(m, _mm512_and_si512(neg, _mm512_set1_epi16(4)));
    const __m512i a = _mm512_min_epu16(
        _mm512_add_epi16(_mm512_srli_epi16(m, 2), _mm512_set1_epi16(33)), _mm512_set1_epi16(0x1FFF));
    v = _mm512_srli_epi16(a, 6);
    mag = _mm512_srli_epi16(a, 1);
  } else {
    mag = _mm512_srli_epi16(m, 4);
    v = _mm512_srli_epi16(mag, 4);
  }
  // v < 128 leaves each lane's high byte 0, which looks up entry 0: a shift of 0.
  const __m512i q = _mm512_srlv_epi16(mag, lookup128(t.shift, v));
  // mu-law: (mask & 0x80) ^ 0xFF; A-law: (~mask & 0x80) ^ 0x55 (its sign bit means positive).
  const __m512i sign = kUlaw ? _mm512_ternarylogic_epi32(neg, _mm512_set1_epi16(0x80),
                                                         _mm512_set1_epi16(0xFF), 0x6A)
                             : _mm512_ternarylogic_epi32(neg, _mm512_set1_epi16(0x80),
                                                         _mm512_set1_epi16(0x55), 0xA6);
  return _mm512_ternarylogic_epi32(lookup128(t.seg, v), q, sign, 0x96);  // a ^ b ^ c
}

template <bool kUlaw, bool kAudioop>
VOXWIRE_AVX512 void encode_avx512(const std::byte* in, std::uint8_t* out,
                                  std::size_t n) noexcept {
  // Even bytes of the two vectors: the low byte of each of their 64 lanes, in order.
  alignas(64) std::uint8_t even[64];
  for (std::uint32_t i = 0; i < 64; ++i) even[i] = static_cast<std::uint8_t>(2 * i);
  const __m512i pick = _mm512_load_si512(even);
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i c0 = encode32_avx512<kUlaw, kAudioop>(_mm512_loadu_si512(in + 2 * i));
    const __m512i c1 = encode32_avx512<kUlaw, kAudioop>(_mm512_loadu_si512(in + 2 * i + 64));
    _mm512_storeu_si512(out + i, _mm512_permutex2var_epi8(c0, pick, c1));
  }
  if constexpr (kUlaw) {
    ulaw_encode_portable(in + 2 * i, out + i, n - i, kAudioop ? 4 : 0);
  } else {
    alaw_encode_portable(in + 2 * i, out + i, n - i);
  }
}
#endif

void ulaw_encode_loop(const std::byte* in, std::uint8_t* out, std::size_t n,
                      std::int32_t neg_bias) noexcept {
#if VOXWIRE_X86_DISPATCH
  if (active_isa() == Isa::avx512) {
    if (neg_bias != 0) {
      encode_avx512<true, true>(in, out, n);
    } else {
      encode_avx512<true, false>(in, out, n);
    }
    return;
  }
  if (active_isa() == Isa::avx2) {
    encode_avx2(kUlawEncode, neg_bias, in, out, n);
    return;
  }
#endif
  ulaw_encode_portable(in, out, n, neg_bias);
}

void alaw_encode_loop(const std::byte* in, std::uint8_t* out, std::size_t n) noexcept {
#if VOXWIRE_X86_DISPATCH
  if (active_isa() == Isa::avx512) {
    encode_avx512<false, false>(in, out, n);
    return;
  }
  if (active_isa() == Isa::avx2) {
    encode_avx2(kAlawEncode, 0, in, out, n);
    return;
  }
#endif
  alaw_encode_portable(in, out, n);
}

void decode_loop(bool ulaw, const std::uint8_t* in, std::byte* out, std::size_t n) noexcept {
#if VOXWIRE_X86_DISPATCH
  if (active_isa() == Isa::avx2 || active_isa() == Isa::avx512) {  // AVX-512 CPUs have AVX2
    decode_avx2(ulaw ? kUlawSegments : kAlawSegments, in, out, n);
    return;
  }
#endif
  decode_table_loop(ulaw ? kUlawTable.v : kAlawTable.v, in, out, n);
}

std::int32_t neg_bias_of(EncodeMode mode) noexcept { return mode == EncodeMode::audioop ? 4 : 0; }

}  // namespace

bool set_isa(Isa isa) noexcept {
  if (isa == Isa::best) isa = best_isa();
  if (isa == Isa::avx2 && !cpu_has_avx2()) return false;
  if (isa == Isa::avx512 && !cpu_has_avx512()) return false;
  g_isa.store(isa, std::memory_order_relaxed);
  return true;
}

Isa current_isa() noexcept { return active_isa(); }

std::uint8_t encode_ulaw_sample(std::int16_t x, EncodeMode mode) noexcept {
  return ulaw_code(x, neg_bias_of(mode));
}

std::uint8_t encode_alaw_sample(std::int16_t x, EncodeMode /*mode*/) noexcept {
  return alaw_code(x);
}

std::int16_t decode_ulaw_sample(std::uint8_t code) noexcept { return kUlawTable.v[code]; }

std::int16_t decode_alaw_sample(std::uint8_t code) noexcept { return kAlawTable.v[code]; }

std::size_t encode_ulaw(std::span<const std::byte> pcm, std::span<std::uint8_t> out,
                        EncodeMode mode) {
  require_even(pcm.size(), "encode_ulaw");
  const std::size_t n = pcm.size() / 2;
  require(out.size() >= n, "encode_ulaw: output too short", n, out.size());
  ulaw_encode_loop(pcm.data(), out.data(), n, neg_bias_of(mode));
  return n;
}

std::size_t encode_ulaw(std::span<const std::int16_t> in, std::span<std::uint8_t> out,
                        EncodeMode mode) {
  return encode_ulaw(std::as_bytes(in), out, mode);
}

std::size_t encode_alaw(std::span<const std::byte> pcm, std::span<std::uint8_t> out,
                        EncodeMode /*mode*/) {
  require_even(pcm.size(), "encode_alaw");
  const std::size_t n = pcm.size() / 2;
  require(out.size() >= n, "encode_alaw: output too short", n, out.size());
  alaw_encode_loop(pcm.data(), out.data(), n);
  return n;
}

std::size_t encode_alaw(std::span<const std::int16_t> in, std::span<std::uint8_t> out,
                        EncodeMode mode) {
  return encode_alaw(std::as_bytes(in), out, mode);
}

std::size_t decode_ulaw(std::span<const std::uint8_t> codes, std::span<std::byte> pcm) {
  require(pcm.size() >= 2 * codes.size(), "decode_ulaw: output bytes too short",
          2 * codes.size(), pcm.size());
  decode_loop(true, codes.data(), pcm.data(), codes.size());
  return codes.size();
}

std::size_t decode_ulaw(std::span<const std::uint8_t> codes, std::span<std::int16_t> out) {
  require(out.size() >= codes.size(), "decode_ulaw: output too short", codes.size(), out.size());
  return decode_ulaw(codes, std::as_writable_bytes(out));
}

std::size_t decode_alaw(std::span<const std::uint8_t> codes, std::span<std::byte> pcm) {
  require(pcm.size() >= 2 * codes.size(), "decode_alaw: output bytes too short",
          2 * codes.size(), pcm.size());
  decode_loop(false, codes.data(), pcm.data(), codes.size());
  return codes.size();
}

std::size_t decode_alaw(std::span<const std::uint8_t> codes, std::span<std::int16_t> out) {
  require(out.size() >= codes.size(), "decode_alaw: output too short", codes.size(), out.size());
  return decode_alaw(codes, std::as_writable_bytes(out));
}

}  // namespace voxwire::g711
