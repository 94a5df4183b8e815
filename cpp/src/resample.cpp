#include "voxwire/resample.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// Two exact definitions of an output sample, each computed the same way by the portable loops
// (std::fma) and the AVX2+FMA kernels, so results depend neither on the CPU nor on where a
// chunk boundary fell (this file is compiled without implicit contraction, cpp/CMakeLists.txt):
//  * chain: integer-factor interpolation (M = 1) and ratios with few branches (L <= 8, M >= 2):
//    acc = fma(c[r], x[r], acc) over the taps in order. The kernels run eight or more outputs
//    side by side, one per vector lane.
//  * blocked: every other ratio: block b of eight taps is fused-multiply-added lane by lane into
//    accumulator b % 4, the accumulators are summed as (a0 + a2) + (a1 + a3), and the eight lanes
//    as ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
// A branch that is a unit pulse (branch 0 of an interpolator by an integer factor, and the
// identity) copies its input sample.
// Define VOXWIRE_RESAMPLE_PORTABLE to build the portable loops only (to test them on a CPU
// that would otherwise take the AVX2 kernels).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(VOXWIRE_RESAMPLE_PORTABLE)
#define VOXWIRE_RESAMPLE_AVX2 1
#include <immintrin.h>
#else
#define VOXWIRE_RESAMPLE_AVX2 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VOXWIRE_INLINE inline __attribute__((always_inline))
#else
#define VOXWIRE_INLINE inline
#endif

namespace voxwire::resample {
namespace {

struct Preset {
  double passband;     // fraction of the lower Nyquist frequency
  double stopband;     // fraction of the lower Nyquist frequency
  double attenuation;  // minimum Kaiser design attenuation in dB (a margin above the promise)
};

Preset preset_of(Quality q) {
  switch (q) {
    case Quality::voice:
      return {0.85, 1.15, 94.0};
    case Quality::high:
      return {0.90, 1.10, 104.0};
  }
  throw std::invalid_argument("resample: unknown quality preset");
}

// Modified Bessel function of the first kind, order 0, by its power series (converges for
// all x; beta <= 12 here needs about 30 terms).
double bessel_i0(double x) {
  const double q = x * x / 4.0;
  double term = 1.0;
  double sum = 1.0;
  for (int k = 1; k < 1000; ++k) {
    term *= q / (static_cast<double>(k) * static_cast<double>(k));
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

// sin(pi x) / (pi x), exactly 0 at the nonzero integers (std::sin(pi * n) is not), so that an
// integer-factor interpolator passes its input samples through unchanged.
double sinc(double x) {
  if (x == 0.0) return 1.0;
  if (x == std::round(x)) return 0.0;
  const double px = std::numbers::pi * x;
  return std::sin(px) / px;
}

void check_rate(const char* name, std::uint32_t rate) {
  if (rate < kMinRate || rate > kMaxRate) {
    throw std::invalid_argument(std::string("resample: ") + name + " must be between " +
                                std::to_string(kMinRate) + " and " + std::to_string(kMaxRate) +
                                " Hz, got " + std::to_string(rate));
  }
}

// Ratios with at most this many branches and M >= 2 use the per-branch decimator kernels.
constexpr std::size_t kFewBranches = 8;
// The AVX2 decimator splits a window into its M phases on the stack, M - 1 floats past the
// window at most; beyond this M (rates far apart, such as 135 kHz -> 8 kHz) the portable loop,
// with the same arithmetic, runs instead.
constexpr std::size_t kFewMaxDown = 64;

// The read-only part of a stream's step through its filter.
struct Walk {
  const float* coefficients;
  std::size_t taps;  // stride: a multiple of 8
  std::size_t up;
  std::size_t step_whole;  // M / L: whole input samples per output
  std::size_t step_phase;  // M % L: branches per output beyond that
  std::size_t pulse;       // branch 0 is a unit pulse at this tap; >= taps if it is not
  std::size_t first;       // taps before this one are the zero padding
  const Filter* filter;    // for the branches in visiting order, where the filter has them
};

// Output k of a block: window buffer[next, next + taps) through branch `phase`; then the window
// moves by M / L input samples. Stops at the first window that is not complete.
struct Cursor {
  std::size_t next;
  std::size_t phase;
};

VOXWIRE_INLINE void advance(const Walk& w, Cursor& c) noexcept {
  c.next += w.step_whole;
  c.phase += w.step_phase;
  if (c.phase >= w.up) {
    c.phase -= w.up;
    c.next += 1;
  }
}

// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to the nearest
// integer, ties to even, in the default rounding mode. |v| <= 2^15 * sum |h| < 2^17.
VOXWIRE_INLINE std::int16_t to_int16(float acc, std::uint64_t& clips) noexcept {
  constexpr float kRound = 12582912.0f;
  const float v = acc * 32768.0f;
  const auto r = static_cast<std::int32_t>((v + kRound) - kRound);
  const std::int32_t s = std::clamp(r, std::int32_t{-32768}, std::int32_t{32767});
  clips += static_cast<std::uint64_t>(s != r);
  return static_cast<std::int16_t>(s);
}

VOXWIRE_INLINE float dot(const float* c, const float* x, std::size_t taps) noexcept {
  float a[4][8] = {};
  for (std::size_t r = 0; r < taps; r += 8) {
    float* acc = a[(r / 8) % 4];
    for (std::size_t l = 0; l < 8; ++l) acc[l] = std::fma(c[r + l], x[r + l], acc[l]);
  }
  float v[8];
  for (std::size_t l = 0; l < 8; ++l) v[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

template <class Out>
std::size_t produce_portable(const Walk& w, const float* buffer, std::size_t fill,
                             Cursor& cursor, Out* out, std::uint64_t& clipped) noexcept {
  std::size_t n = 0;
  std::uint64_t clips = 0;
  Cursor c = cursor;
  while (c.next + w.taps <= fill) {
    const float acc = c.phase == 0 && w.pulse < w.taps
                          ? buffer[c.next + w.pulse]
                          : dot(w.coefficients + c.phase * w.taps, buffer + c.next, w.taps);
    if constexpr (std::is_same_v<Out, float>) {
      out[n++] = acc;
    } else {
      out[n++] = to_int16(acc, clips);
    }
    advance(w, c);
  }
  cursor = c;
  clipped += clips;
  return n;
}

template <class Out>
std::size_t produce_up_portable(const Walk& w, const float* buffer, std::size_t fill,
                                Cursor& cursor, Out* out, std::uint64_t& clipped) noexcept {
  std::size_t n = 0;
  std::uint64_t clips = 0;
  for (; cursor.next + w.taps <= fill; ++cursor.next) {
    const float* x = buffer + cursor.next;
    for (std::size_t p = 0; p < w.up; ++p) {
      float acc;
      if (p == 0 && w.pulse < w.taps) {
        acc = x[w.pulse];
      } else {
        const float* c = w.coefficients + p * w.taps;
        acc = 0.0f;
        for (std::size_t r = w.first; r < w.taps; ++r) acc = std::fma(c[r], x[r], acc);
      }
      if constexpr (std::is_same_v<Out, float>) {
        out[n++] = acc;
      } else {
        out[n++] = to_int16(acc, clips);
      }
    }
  }
  clipped += clips;
  return n;
}

template <class Out>
std::size_t produce_chain_portable(const Walk& w, const float* buffer, std::size_t fill,
                                   Cursor& cursor, Out* out, std::uint64_t& clipped) noexcept {
  std::size_t n = 0;
  std::uint64_t clips = 0;
  Cursor c = cursor;
  while (c.next + w.taps <= fill) {
    const float* x = buffer + c.next;
    float acc = 0.0f;
    if (c.phase == 0 && w.pulse < w.taps) {
      acc = x[w.pulse];
    } else {
      const float* coef = w.coefficients + c.phase * w.taps;
      for (std::size_t r = w.first; r < w.taps; ++r) acc = std::fma(coef[r], x[r], acc);
    }
    if constexpr (std::is_same_v<Out, float>) {
      out[n++] = acc;
    } else {
      out[n++] = to_int16(acc, clips);
    }
    advance(w, c);
  }
  cursor = c;
  clipped += clips;
  return n;
}

#if VOXWIRE_RESAMPLE_AVX2
#define VOXWIRE_AVX2 __attribute__((target("avx2,fma")))

VOXWIRE_AVX2 VOXWIRE_INLINE float dot_avx2(const float* c, const float* x, std::size_t taps) noexcept {
#define VOXWIRE_BLOCK(acc, r) \
  _mm256_fmadd_ps(_mm256_loadu_ps(c + (r)), _mm256_loadu_ps(x + (r)), acc)
  __m256 a0 = _mm256_setzero_ps();
  __m256 a1 = a0;
  __m256 a2 = a0;
  __m256 a3 = a0;
  std::size_t r = 0;
  for (; r + 32 <= taps; r += 32) {
    a0 = VOXWIRE_BLOCK(a0, r);
    a1 = VOXWIRE_BLOCK(a1, r + 8);
    a2 = VOXWIRE_BLOCK(a2, r + 16);
    a3 = VOXWIRE_BLOCK(a3, r + 24);
  }
  if (r < taps) a0 = VOXWIRE_BLOCK(a0, r);
  if (r + 8 < taps) a1 = VOXWIRE_BLOCK(a1, r + 8);
  if (r + 16 < taps) a2 = VOXWIRE_BLOCK(a2, r + 16);
#undef VOXWIRE_BLOCK
  const __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_hadd_ps(s, s);  // (v0 + v4) + (v1 + v5), (v2 + v6) + (v3 + v7), ...
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

// dot_avx2 for two windows through the same branch, each coefficient vector loaded once.
VOXWIRE_AVX2 VOXWIRE_INLINE void dot2_avx2(const float* c, const float* x, const float* y,
                                           std::size_t taps, float& dx, float& dy) noexcept {
#define VOXWIRE_BLOCK2(acc, bcc, r)                               \
  do {                                                            \
    const __m256 k = _mm256_loadu_ps(c + (r));                    \
    acc = _mm256_fmadd_ps(k, _mm256_loadu_ps(x + (r)), acc);      \
    bcc = _mm256_fmadd_ps(k, _mm256_loadu_ps(y + (r)), bcc);      \
  } while (false)
  __m256 a0 = _mm256_setzero_ps();
  __m256 a1 = a0;
  __m256 a2 = a0;
  __m256 a3 = a0;
  __m256 b0 = a0;
  __m256 b1 = a0;
  __m256 b2 = a0;
  __m256 b3 = a0;
  std::size_t r = 0;
  for (; r + 32 <= taps; r += 32) {
    VOXWIRE_BLOCK2(a0, b0, r);
    VOXWIRE_BLOCK2(a1, b1, r + 8);
    VOXWIRE_BLOCK2(a2, b2, r + 16);
    VOXWIRE_BLOCK2(a3, b3, r + 24);
  }
  if (r < taps) VOXWIRE_BLOCK2(a0, b0, r);
  if (r + 8 < taps) VOXWIRE_BLOCK2(a1, b1, r + 8);
  if (r + 16 < taps) VOXWIRE_BLOCK2(a2, b2, r + 16);
#undef VOXWIRE_BLOCK2
  const __m256 va = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  const __m256 vb = _mm256_add_ps(_mm256_add_ps(b0, b2), _mm256_add_ps(b1, b3));
  const __m128 sa = _mm_add_ps(_mm256_castps256_ps128(va), _mm256_extractf128_ps(va, 1));
  const __m128 sb = _mm_add_ps(_mm256_castps256_ps128(vb), _mm256_extractf128_ps(vb, 1));
  const __m128 h = _mm_hadd_ps(sa, sb);  // a: h0 h1, b: h2 h3
  dx = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
  dy = _mm_cvtss_f32(_mm_add_ss(_mm_movehl_ps(h, h), _mm_shuffle_ps(h, h, 3)));
}

// Eight outputs to dst[0, 8): as float, or through to_int16's exact steps (scale, round to
// nearest even with 1.5 * 2^23, truncate the integer, saturate) with the clip count.
template <class Out>
VOXWIRE_AVX2 inline void store8(Out* dst, __m256 acc, std::uint64_t& clips) noexcept {
  if constexpr (std::is_same_v<Out, float>) {
    _mm256_storeu_ps(dst, acc);
  } else {
    const __m256 round = _mm256_set1_ps(12582912.0f);
    const __m256 v = _mm256_mul_ps(acc, _mm256_set1_ps(32768.0f));
    const __m256i r = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(v, round), round));
    const __m256i out_of_range =
        _mm256_or_si256(_mm256_cmpgt_epi32(r, _mm256_set1_epi32(32767)),
                        _mm256_cmpgt_epi32(_mm256_set1_epi32(-32768), r));
    clips += static_cast<std::uint64_t>(
        __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(out_of_range)))));
    const __m128i packed =
        _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), packed);
  }
}

// Writes eight[0, k) to dst: one vector conversion for eight, else one at a time.
template <class Out>
VOXWIRE_AVX2 VOXWIRE_INLINE void put_avx2(Out* dst, const float* eight, std::size_t k,
                                          std::uint64_t& clips) noexcept {
  if (k == 8) {
    store8(dst, _mm256_loadu_ps(eight), clips);
    return;
  }
  for (std::size_t j = 0; j < k; ++j) {
    if constexpr (std::is_same_v<Out, float>) {
      dst[j] = eight[j];
    } else {
      dst[j] = to_int16(eight[j], clips);
    }
  }
}

// Every other ratio, one dot product per output. Outputs L apart use the same branch with
// windows M samples apart; where both are in this block (a 20 ms chunk at 44.1 kHz -> 16 kHz
// is two whole cycles of the 160 branches), they are computed together so that each
// coefficient is loaded once for two outputs. The arithmetic per output is unchanged.
template <class Out>
VOXWIRE_AVX2 std::size_t produce_avx2(const Walk& w, const float* buffer, std::size_t fill,
                                      Cursor& cursor, Out* out,
                                      std::uint64_t& clipped) noexcept {
  std::uint64_t clips = 0;
  Cursor c = cursor;
  const std::size_t L = w.up;
  const std::size_t M = w.step_whole * L + w.step_phase;
  // Outputs whose window is complete, as Resampler::output_size counts them.
  const std::size_t total =
      c.next + w.taps > fill ? 0 : ((fill - c.next - w.taps + 1) * L - c.phase + M - 1) / M;
  // Branches in visiting order where the filter has them: the next output's follow this one's.
  const float* visit = w.filter->visit_order();
  const float* table = visit != nullptr ? visit : w.coefficients;
  std::size_t slot = visit != nullptr ? w.filter->visit_slot(c.phase) : c.phase;
  const bool has_pulse = w.pulse < w.taps;
  alignas(32) float eight[8];
  std::size_t n = 0;
  if (visit != nullptr) {
    alignas(32) float later[8];
    for (; n + 2 * L <= total; n += 2 * L) {
      for (std::size_t j = 0; j < L; j += 8) {
        const std::size_t k = std::min<std::size_t>(8, L - j);
        for (std::size_t i = 0; i < k; ++i) {
          const float* x = buffer + c.next;
          if (c.phase == 0 && has_pulse) {
            eight[i] = x[w.pulse];
            later[i] = x[M + w.pulse];
          } else {
            dot2_avx2(table + slot * w.taps, x, x + M, w.taps, eight[i], later[i]);
          }
          advance(w, c);
          slot = slot + 1 == L ? 0 : slot + 1;
        }
        put_avx2(out + n + j, eight, k, clips);
        put_avx2(out + n + L + j, later, k, clips);
      }
      c.next += M;  // past the second cycle: L outputs on, the same branch M samples later
    }
  }
  for (; n < total; n += 8) {
    const std::size_t k = std::min<std::size_t>(8, total - n);
    for (std::size_t j = 0; j < k; ++j) {
      eight[j] = c.phase == 0 && has_pulse
                     ? buffer[c.next + w.pulse]
                     : dot_avx2(table + slot * w.taps, buffer + c.next, w.taps);
      advance(w, c);
      slot = visit == nullptr ? c.phase : (slot + 1 == L ? 0 : slot + 1);
    }
    put_avx2(out + n, eight, k, clips);
  }
  cursor = c;
  clipped += clips;
  return total;
}

// Integer-factor interpolation (M = 1): all L branches read the same window, and output
// n * L + p is branch p's dot product at input position n. Here the products are taken the
// other way round, eight consecutive positions per vector lane set: lane j accumulates
// c[r] * x[n + j + r] over r = 0 .. taps - 1 in order, one fused multiply-add per tap, with no
// horizontal sum. produce_up_portable defines the same arithmetic one output at a time.
template <class Out>
VOXWIRE_AVX2 std::size_t produce_up_avx2(const Walk& w, const float* buffer, std::size_t fill,
                                         Cursor& cursor, Out* out,
                                         std::uint64_t& clipped) noexcept {
  const std::size_t taps = w.taps;
  const std::size_t L = w.up;
  if (cursor.next + taps > fill) return 0;
  const std::size_t positions = fill - taps + 1 - cursor.next;
  const float* x0 = buffer + cursor.next;
  std::size_t n = 0;
  std::size_t j = 0;
  std::uint64_t clips = 0;
  Out lanes[32];
  // Four blocks of eight positions at once: four independent FMA chains per branch.
  for (; j + 32 <= positions; j += 32) {
    for (std::size_t p = 0; p < L; ++p) {
      const float* x = x0 + j;
      if (p == 0 && w.pulse < taps) {
        for (std::size_t b = 0; b < 4; ++b) {
          store8(lanes + 8 * b, _mm256_loadu_ps(x + 8 * b + w.pulse), clips);
        }
      } else {
        const float* c = w.coefficients + p * taps;
        __m256 a0 = _mm256_setzero_ps();
        __m256 a1 = a0;
        __m256 a2 = a0;
        __m256 a3 = a0;
        for (std::size_t r = w.first; r < taps; ++r) {
          const __m256 k = _mm256_broadcast_ss(c + r);
          a0 = _mm256_fmadd_ps(k, _mm256_loadu_ps(x + r), a0);
          a1 = _mm256_fmadd_ps(k, _mm256_loadu_ps(x + r + 8), a1);
          a2 = _mm256_fmadd_ps(k, _mm256_loadu_ps(x + r + 16), a2);
          a3 = _mm256_fmadd_ps(k, _mm256_loadu_ps(x + r + 24), a3);
        }
        store8(lanes, a0, clips);
        store8(lanes + 8, a1, clips);
        store8(lanes + 16, a2, clips);
        store8(lanes + 24, a3, clips);
      }
      for (std::size_t l = 0; l < 32; ++l) out[n + l * L + p] = lanes[l];
    }
    n += 32 * L;
  }
  for (; j + 8 <= positions; j += 8) {
    for (std::size_t p = 0; p < L; ++p) {
      const float* x = x0 + j;
      __m256 acc;
      if (p == 0 && w.pulse < taps) {
        acc = _mm256_loadu_ps(x + w.pulse);
      } else {
        const float* c = w.coefficients + p * taps;
        __m256 a = _mm256_setzero_ps();
        for (std::size_t r = w.first; r < taps; ++r) {
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(c + r), _mm256_loadu_ps(x + r), a);
        }
        acc = a;
      }
      store8(lanes, acc, clips);
      for (std::size_t l = 0; l < 8; ++l) out[n + l * L + p] = lanes[l];
    }
    n += 8 * L;
  }
  for (; j < positions; ++j) {
    for (std::size_t p = 0; p < L; ++p) {
      float acc;
      if (p == 0 && w.pulse < taps) {
        acc = x0[j + w.pulse];
      } else {
        const float* c = w.coefficients + p * taps;
        acc = 0.0f;
        for (std::size_t r = w.first; r < taps; ++r) acc = std::fma(c[r], x0[j + r], acc);
      }
      if constexpr (std::is_same_v<Out, float>) {
        out[n++] = acc;
      } else {
        out[n++] = to_int16(acc, clips);
      }
    }
  }
  cursor.next += positions;
  clipped += clips;
  return n;
}

// d[q * per_phase + m] = x[m * M + q] for m * M + q < n: the window split into its M phases.
// Vector deinterleaving for M = 2 and 3 (the common decimations), scalar otherwise.
VOXWIRE_AVX2 inline void split_phases(const float* x, std::size_t n, std::size_t M,
                                      std::size_t per_phase, float* d) noexcept {
  std::size_t m = 0;  // groups of 8 per phase done
  if (M == 2) {
    for (; (m + 8) * 2 <= n; m += 8) {
      const __m256 a = _mm256_loadu_ps(x + 2 * m);
      const __m256 b = _mm256_loadu_ps(x + 2 * m + 8);
      // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6], likewise the odd ones.
      const __m256 even = _mm256_shuffle_ps(a, b, 0x88);
      const __m256 odd = _mm256_shuffle_ps(a, b, 0xDD);
      _mm256_storeu_ps(d + m, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8)));
      _mm256_storeu_ps(d + per_phase + m,
                       _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xD8)));
    }
  } else if (M == 3) {
    // Phase q takes lane l from a, b or c by (l * 3 + q) / 8, then a fixed permutation.
    const __m256i p0 = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5);
    const __m256i p1 = _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6);
    const __m256i p2 = _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7);
    for (; (m + 8) * 3 <= n; m += 8) {
      const __m256 a = _mm256_loadu_ps(x + 3 * m);
      const __m256 b = _mm256_loadu_ps(x + 3 * m + 8);
      const __m256 c = _mm256_loadu_ps(x + 3 * m + 16);
      // t0 = [a0 b1 c2 a3 b4 c5 a6 b7], t1 = [c0 a1 b2 c3 a4 b5 c6 a7],
      // t2 = [b0 c1 a2 b3 c4 a5 b6 c7]
      const __m256 t0 = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x92), c, 0x24);
      const __m256 t1 = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x24), c, 0x49);
      const __m256 t2 = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x49), c, 0x92);
      _mm256_storeu_ps(d + m, _mm256_permutevar8x32_ps(t0, p0));
      _mm256_storeu_ps(d + per_phase + m, _mm256_permutevar8x32_ps(t1, p1));
      _mm256_storeu_ps(d + 2 * per_phase + m, _mm256_permutevar8x32_ps(t2, p2));
    }
  }
  for (std::size_t q = 0; q < M; ++q) {
    for (std::size_t i = m * M + q, k = m; i < n; i += M, ++k) d[q * per_phase + k] = x[i];
  }
}

// One residue's pass over the split window (see produce_few_avx2).
struct FewPass {
  const float* coef;
  std::size_t first;
  std::size_t taps;
  std::size_t M;
  std::size_t per_phase;
  std::size_t q0;
  bool pulse;
};

// V vectors of eight consecutive outputs from `start`: lane j of a[b] accumulates c[r] * x
// over the taps in order, one fused multiply-add per tap. Tap r of an output whose window
// starts at offset o reads phase (o + r) % M at (o + r) / M; stepped instead of divided.
template <std::size_t V>
VOXWIRE_AVX2 VOXWIRE_INLINE void few_vectors(const FewPass& f, const float* start,
                                             __m256* a) noexcept {
  if (f.pulse) {
    for (std::size_t b = 0; b < V; ++b) a[b] = _mm256_loadu_ps(start + 8 * b);
    return;
  }
  __m256 acc[V];
  for (auto& v : acc) v = _mm256_setzero_ps();
  const float* d = start;
  std::size_t q = f.q0;
  for (std::size_t r = f.first; r < f.taps; ++r) {
    const __m256 k = _mm256_broadcast_ss(f.coef + r);
    for (std::size_t b = 0; b < V; ++b) acc[b] = _mm256_fmadd_ps(k, _mm256_loadu_ps(d + 8 * b), acc[b]);
    if (++q == f.M) {
      q = 0;
      d -= (f.M - 1) * f.per_phase - 1;
    } else {
      d += f.per_phase;
    }
  }
  for (std::size_t b = 0; b < V; ++b) a[b] = acc[b];
}

// Writes the first k outputs of vectors a[0, nv) (k > 8 (nv - 1)) to dst[(m0 + l) * L]: lanes
// past k read the zeroed slack or the next phase and are dropped, uncounted.
template <class Out>
VOXWIRE_AVX2 void few_write(Out* dst, std::size_t L, std::size_t m0, const __m256* a,
                            std::size_t nv, std::size_t k, Out* lanes,
                            std::uint64_t& clips) noexcept {
  if (k == 8 * nv && L == 1) {
    for (std::size_t b = 0; b < nv; ++b) store8(dst + m0 + 8 * b, a[b], clips);
    return;
  }
  for (std::size_t b = 0; b + 1 < nv; ++b) store8(lanes + 8 * b, a[b], clips);
  if (k == 8 * nv) {
    store8(lanes + 8 * (nv - 1), a[nv - 1], clips);
  } else {
    alignas(32) float last[8];
    _mm256_store_ps(last, a[nv - 1]);
    for (std::size_t l = 0; 8 * (nv - 1) + l < k; ++l) {
      if constexpr (std::is_same_v<Out, float>) {
        lanes[8 * (nv - 1) + l] = last[l];
      } else {
        lanes[8 * (nv - 1) + l] = to_int16(last[l], clips);
      }
    }
  }
  for (std::size_t l = 0; l < k; ++l) dst[(m0 + l) * L] = lanes[l];
}

// Ratios with few branches (L <= kFewBranches, M >= 2; e.g. 48k -> 16k, 24k -> 16k): outputs
// k, k + L, k + 2L, ... use one branch and windows M inputs apart. The window is first split
// into its M phases (d_q[m] = x[next + m M + q]) so that, for each of the L residues, eight
// outputs read eight consecutive floats per tap; lane j accumulates c[r] * x[start_j + r] over
// r in order, one fused multiply-add per tap, as produce_chain_portable does one output at a
// time.
template <class Out>
VOXWIRE_AVX2 std::size_t produce_few_avx2(const Walk& w, const float* buffer, std::size_t fill,
                                          Cursor& cursor, Out* out,
                                          std::uint64_t& clipped) noexcept {
  const std::size_t taps = w.taps;
  const std::size_t L = w.up;
  const std::size_t M = w.step_whole * L + w.step_phase;
  if (cursor.next + taps > fill) return 0;
  // Outputs whose window is complete (as Resampler::output_size).
  const std::size_t total = ((fill - cursor.next - taps + 1) * L - cursor.phase + M - 1) / M;
  const std::size_t span = fill - cursor.next;
  const std::size_t per_phase = (span + M - 1) / M;
  // Phase q fills split[q * per_phase, q * per_phase + ceil((span - q) / M)); at most its last
  // slot stays empty. Empty slots and the eight past the end are zeroed for the partial
  // vector of each residue.
  alignas(32) float split[kBufferSize + 2 * kFewMaxDown];
  split_phases(buffer + cursor.next, span, M, per_phase, split);
  for (std::size_t q = 0; q < M; ++q) {
    if (q + (per_phase - 1) * M >= span) split[q * per_phase + per_phase - 1] = 0.0f;
  }
  std::fill_n(split + M * per_phase, 8, 0.0f);
  // Tap r of an output whose window starts at offset o reads phase (o + r) % M at
  // (o + r) / M; stepped instead of divided.
  std::uint64_t clips = 0;
  Cursor c{0, cursor.phase};  // window offsets relative to cursor.next
  Out lanes[64];
  for (std::size_t res = 0; res < L && res < total; ++res, advance(w, c)) {
    const std::size_t count = (total - res + L - 1) / L;
    const float* coef = w.coefficients + c.phase * taps;
    const bool pulse = c.phase == 0 && w.pulse < taps;
    const std::size_t o = c.next + (pulse ? w.pulse : w.first);
    const float* start = split + (o % M) * per_phase + o / M;
    const std::size_t q0 = o % M;
    Out* dst = out + res;
    const FewPass pass{coef, w.first, taps, M, per_phase, q0, pulse};
    __m256 a[8];
    std::size_t m = 0;
    for (; m + 64 <= count; m += 64) {
      few_vectors<8>(pass, start + m, a);
      few_write(dst, L, m, a, 8, 64, lanes, clips);
    }
    // The rest in one pass over the taps, one accumulator per started vector of eight, so
    // that as many independent chains as possible hide the latency of the multiply-adds.
    if (m < count) {
      const std::size_t nv = (count - m + 7) / 8;
      switch (nv) {
        case 1: few_vectors<1>(pass, start + m, a); break;
        case 2: few_vectors<2>(pass, start + m, a); break;
        case 3: few_vectors<3>(pass, start + m, a); break;
        case 4: few_vectors<4>(pass, start + m, a); break;
        case 5: few_vectors<5>(pass, start + m, a); break;
        case 6: few_vectors<6>(pass, start + m, a); break;
        case 7: few_vectors<7>(pass, start + m, a); break;
        default: few_vectors<8>(pass, start + m, a); break;
      }
      few_write(dst, L, m, a, nv, count - m, lanes, clips);
    }
  }
  // Move the cursor past `total` outputs.
  const std::size_t steps = cursor.phase + total * M;
  cursor.next += steps / L;
  cursor.phase = steps % L;
  clipped += clips;
  return total;
}

bool has_avx2() noexcept {
  static const bool yes =
      __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
  return yes;
}
#endif

template <class Out>
std::size_t produce_block(const Walk& w, const float* buffer, std::size_t fill, Cursor& c,
                          Out* out, std::uint64_t& clipped) noexcept {
  // Interpolation by an integer factor always stops between positions (all L branches of a
  // position need the same input), so phase is 0 here and the position-major kernels apply.
  const bool up = w.step_whole == 0 && w.step_phase == 1 && w.up > 1;
  // Few branches, M >= 2: each branch's outputs are a decimator by M.
  const bool few = w.up <= kFewBranches && w.step_whole * w.up + w.step_phase >= 2;
#if VOXWIRE_RESAMPLE_AVX2
  if (has_avx2()) {
    if (up) return produce_up_avx2(w, buffer, fill, c, out, clipped);
    if (few && w.step_whole * w.up + w.step_phase <= kFewMaxDown) {
      return produce_few_avx2(w, buffer, fill, c, out, clipped);
    }
    if (few) return produce_chain_portable(w, buffer, fill, c, out, clipped);
    return produce_avx2(w, buffer, fill, c, out, clipped);
  }
#endif
  if (up) return produce_up_portable(w, buffer, fill, c, out, clipped);
  if (few) return produce_chain_portable(w, buffer, fill, c, out, clipped);
  return produce_portable(w, buffer, fill, c, out, clipped);
}

void load(const std::int16_t* in, float* to, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) to[i] = static_cast<float>(in[i]) * (1.0f / 32768.0f);
}

void load(const float* in, float* to, std::size_t n) noexcept {
  std::memcpy(to, in, n * sizeof(float));
}

void require_room(const char* fn, std::size_t need, std::size_t have) {
  if (have < need) {
    throw std::invalid_argument(std::string("resample: ") + fn + ": output too short: need " +
                                std::to_string(need) + " samples, got " + std::to_string(have));
  }
}

}  // namespace

std::string_view quality_name(Quality q) noexcept {
  return q == Quality::high ? "high" : "voice";
}

Quality parse_quality(std::string_view name) {
  if (name == "voice") return Quality::voice;
  if (name == "high") return Quality::high;
  throw std::invalid_argument("resample: quality must be 'voice' or 'high', got '" +
                              std::string(name) + "'");
}

Filter::Filter(std::uint32_t in_rate, std::uint32_t out_rate, Quality quality)
    : quality_(quality) {
  check_rate("in_rate", in_rate);
  check_rate("out_rate", out_rate);
  const Preset preset = preset_of(quality);
  const std::uint32_t g = std::gcd(in_rate, out_rate);
  up_ = out_rate / g;
  down_ = in_rate / g;
  if (up_ > kMaxPhases) {
    throw std::invalid_argument(
        "resample: " + std::to_string(in_rate) + " -> " + std::to_string(out_rate) +
        " Hz reduces to L/M = " + std::to_string(up_) + "/" + std::to_string(down_) +
        ", more than " + std::to_string(kMaxPhases) + " polyphase branches");
  }
  const double L = up_;
  const double M = down_;
  if (up_ == down_) {
    // Equal rates: the identity, with no delay.
    taps_ = 1;
    stride_ = 8;
    lookahead_ = 0;
    cutoff_ = 0.5;
    coefficients_ = std::make_unique<float[]>(stride_);  // zeros
    coefficients_[stride_ - 1] = 1.0f;
    pulse_ = stride_ - 1;
    return;
  }
  // All frequencies in cycles per input sample. The lower rate's Nyquist frequency, relative
  // to the input rate, is min(L, M) / (2 M).
  const double nyquist = std::min(L, M) / (2.0 * M);
  const double transition = (preset.stopband - preset.passband) * nyquist;
  cutoff_ = nyquist;
  // Kaiser's length estimate: order = (A - 7.95) / (2.285 * 2 pi df); one branch spans
  // order / L samples of the prototype, i.e. (A - 7.95) / (14.36 df) input samples. Rounded up
  // to whole 8-float vectors (the dot products cost the same either way), and the window shape
  // is then chosen for the attenuation that length reaches, not the minimum asked for.
  auto taps = static_cast<std::size_t>(std::ceil((preset.attenuation - 7.95) / (14.36 * transition)));
  // The window must move by at most its own length per output (M / L <= taps), which keeps the
  // next window inside the buffer; any filter that meets the presets is far longer.
  taps = std::max(taps, static_cast<std::size_t>((down_ + up_ - 1) / up_));
  taps = (taps + 7) / 8 * 8;
  const double a = 7.95 + 14.36 * transition * static_cast<double>(taps);
  beta_ = a > 50.0 ? 0.1102 * (a - 8.7) : 0.5842 * std::pow(a - 21.0, 0.4) + 0.07886 * (a - 21.0);
  if (taps > kMaxTaps) {
    throw std::invalid_argument("resample: " + std::to_string(in_rate) + " -> " +
                                std::to_string(out_rate) + " Hz at quality '" +
                                std::string(quality_name(quality)) + "' needs " +
                                std::to_string(taps) + " taps per branch, more than " +
                                std::to_string(kMaxTaps) + "; convert in two steps");
  }
  taps_ = taps;
  stride_ = (taps + 7) / 8 * 8;
  pulse_ = stride_;
  lookahead_ = taps / 2;
  coefficients_ = std::make_unique<float[]>(up_ * stride_);  // zeros
  const std::size_t pad = stride_ - taps_;
  const double half = static_cast<double>(lookahead_);
  const double i0_beta = bessel_i0(beta_);
  std::vector<double> branch(taps_);
  for (std::size_t p = 0; p < up_; ++p) {
    // Coefficient r weights input i - (lookahead - 1) + r for an output at i + p / L, a time
    // offset t = p / L + lookahead - 1 - r in [-half, half).
    double sum = 0.0;
    for (std::size_t r = 0; r < taps_; ++r) {
      const double t = static_cast<double>(p) / L + half - 1.0 - static_cast<double>(r);
      const double u = t / half;
      const double w = bessel_i0(beta_ * std::sqrt(std::max(0.0, 1.0 - u * u))) / i0_beta;
      branch[r] = 2.0 * cutoff_ * sinc(2.0 * cutoff_ * t) * w;
      sum += branch[r];
    }
    // Unit DC gain in every branch: a constant input gives a constant output with no ripple
    // at the branch rate.
    for (std::size_t r = 0; r < taps_; ++r) {
      coefficients_[p * stride_ + pad + r] = static_cast<float>(branch[r] / sum);
    }
  }
  const std::span<const float> b0 = Filter::branch(0);
  const auto ones = std::count(b0.begin(), b0.end(), 1.0f);
  const auto zeros = std::count(b0.begin(), b0.end(), 0.0f);
  if (ones == 1 && static_cast<std::size_t>(zeros) == stride_ - 1) {
    pulse_ = static_cast<std::size_t>(std::find(b0.begin(), b0.end(), 1.0f) - b0.begin());
  }
  // The general kernel reads one branch per output, stepping by M mod L; with many branches
  // that walk jumps through a table larger than the L1 cache. A copy in visiting order makes
  // it one sequential stream. (gcd(L, M) = 1, so the walk visits every branch once per cycle.)
  if (up_ > kFewBranches && down_ > 1) {
    visit_ = std::make_unique<float[]>(up_ * stride_);
    slot_ = std::make_unique<std::uint32_t[]>(up_);
    for (std::uint32_t k = 0; k < up_; ++k) {
      const std::uint32_t p = static_cast<std::uint32_t>(
          (static_cast<std::uint64_t>(k) * down_) % up_);
      slot_[p] = k;
      std::copy_n(coefficients_.get() + p * stride_, stride_, visit_.get() + k * stride_);
    }
  }
}

std::shared_ptr<const Filter> Filter::get(std::uint32_t in_rate, std::uint32_t out_rate,
                                          Quality quality) {
  check_rate("in_rate", in_rate);
  check_rate("out_rate", out_rate);
  const std::uint32_t g = std::gcd(in_rate, out_rate);
  const auto key = std::make_tuple(out_rate / g, in_rate / g, static_cast<int>(quality));
  // Leaked on purpose: streams may outlive static destruction at interpreter exit.
  struct Registry {
    std::mutex mutex;
    std::map<std::tuple<std::uint32_t, std::uint32_t, int>, std::shared_ptr<const Filter>> filters;
  };
  static auto* const registry = new Registry;
  const std::lock_guard<std::mutex> lock(registry->mutex);
  auto it = registry->filters.find(key);
  if (it == registry->filters.end()) {
    it = registry->filters.emplace(key, std::make_shared<const Filter>(in_rate, out_rate, quality))
             .first;
  }
  return it->second;
}

Resampler::Resampler(std::uint32_t in_rate, std::uint32_t out_rate, Quality quality)
    : filter_(Filter::get(in_rate, out_rate, quality)), in_rate_(in_rate), out_rate_(out_rate) {
  reset();
}

double Resampler::latency() const noexcept {
  return static_cast<double>(filter_->lookahead()) / static_cast<double>(in_rate_);
}

void Resampler::reset() noexcept {
  // The first output's (padded) window starts stride - 1 - lookahead samples before input 0:
  // those are zeros.
  fill_ = filter_->stride() - 1 - filter_->lookahead();
  std::fill(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(fill_), 0.0f);
  next_ = 0;
  phase_ = 0;
  samples_in_ = 0;
  samples_out_ = 0;
  clipped_ = 0;
}

std::size_t Resampler::output_size(std::size_t n) const {
  if (n > kMaxBlock) {
    throw std::length_error("resample: input block of " + std::to_string(n) +
                            " samples is longer than " + std::to_string(kMaxBlock));
  }
  // Output j (j >= 0) of this call ends its window at next_ + stride - 1 + floor((phase_ + j M)
  // / L); it is produced if that is below fill_ + n.
  const std::size_t end = next_ + filter_->stride();
  const std::size_t avail = fill_ + n;
  if (avail < end) return 0;
  const std::size_t up = filter_->up();
  const std::size_t down = filter_->down();
  return ((avail - end + 1) * up - phase_ + down - 1) / down;
}

std::size_t Resampler::flush_size() const noexcept {
  return output_size(filter_->lookahead());
}

template <class Out>
std::size_t Resampler::produce(Out* out) {
  const Filter& f = *filter_;
  const Walk walk{f.branch(0).data(), f.stride(), f.up(), f.down() / f.up(), f.down() % f.up(),
                  f.pulse(), f.stride() - f.taps(), &f};
  Cursor cursor{next_, phase_};
  const std::size_t n = produce_block(walk, buffer_.data(), fill_, cursor, out, clipped_);
  next_ = cursor.next;
  phase_ = cursor.phase;
  return n;
}

template <class In, class Out>
std::size_t Resampler::run(std::span<const In> in, Out* out) {
  std::size_t produced = 0;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::size_t take = std::min(in.size() - pos, kBufferSize - fill_);
    load(in.data() + pos, buffer_.data() + fill_, take);
    fill_ += take;
    pos += take;
    produced += produce(out + produced);
    // Keep only what later windows need. The window moves by at most `taps` per output, so
    // next_ <= fill_, and what stays (fill_ - next_ < stride <= kMaxTaps + 7) leaves room to
    // load.
    if (next_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + next_, (fill_ - next_) * sizeof(float));
      fill_ -= next_;
      next_ = 0;
    }
  }
  samples_in_ += in.size();
  samples_out_ += produced;
  return produced;
}

std::size_t Resampler::process(std::span<const std::int16_t> in, std::span<std::int16_t> out) {
  require_room("process", output_size(in.size()), out.size());
  return run(in, out.data());
}

std::size_t Resampler::process(std::span<const float> in, std::span<float> out) {
  require_room("process", output_size(in.size()), out.size());
  return run(in, out.data());
}

template <class Out>
std::size_t Resampler::flush_into(std::span<Out> out) {
  require_room("flush", flush_size(), out.size());
  static constexpr std::array<float, 64> kZeros{};
  std::size_t produced = 0;
  for (std::size_t left = filter_->lookahead(); left > 0;) {
    const std::size_t n = std::min(left, kZeros.size());
    produced += run(std::span<const float>(kZeros.data(), n), out.data() + produced);
    left -= n;
  }
  const std::uint64_t clipped = clipped_;
  reset();
  clipped_ = clipped;
  return produced;
}

std::size_t Resampler::flush(std::span<std::int16_t> out) { return flush_into(out); }

std::size_t Resampler::flush(std::span<float> out) { return flush_into(out); }

static_assert(sizeof(Resampler) <= 4096, "a stream's state must stay within 4 KB");

}  // namespace voxwire::resample
