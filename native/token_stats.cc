// Token statistics kernels (see token_stats.h): forward and backward over (rows, vocab) logits of
// float32, float16 or bfloat16, matching src/ops/token-stats/reference.ts.
//
// Forward: one pass over each row with an online maximum, as a GPU kernel would do. Every SIMD
// lane keeps a running maximum m of x and, relative to it, s = Σe^{x−m} and u = Σ(x−m)e^{x−m},
// plus Σz, a count and NaN/+inf flags; when a lane's maximum grows, s and u are rescaled (rare
// after the first elements). Lanes accumulate in float32 and are flushed into float64 every
// kFlushElements, so rounding does not grow with the vocabulary; lanes, then chunks of a row,
// are combined in float64 with the same rescaling. Exponents are formed from z with 1/T as a
// float pair (InvT), so they carry the reference's accuracy rather than float32 x's. (The
// AVX-512 kernels keep one reference point per chunk instead and check whole blocks: see there.)
// Backward: one pass writing (1/T)[gL(δ − p) + gS(p − 1/validCount)], p = e^{x − logsumexp}.
//
// Threads: tasks are (row, chunk) pairs handed out through an atomic counter; a row is cut into
// chunks only when there are fewer than 4 rows per thread. Kernels, chosen at run time through
// __builtin_cpu_supports (no -march flags: each set is compiled for its extensions through
// target attributes): AVX-512 F/BW/DQ/VL (vreduceps/vscalefps exp2, masked instructions),
// AVX2+FMA+F16C (Cephes-style polynomial exp, vector f16/bf16 decode), or portable scalar code.
// Built without -ffast-math; special values are told apart by their bits (scalar) or by IEEE
// comparisons on ordered/unordered predicates and vfpclassps (vector).
#include "token_stats.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <numeric>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wuninitialized reports
// wherever they are inlined; the warnings are located in the header, silenced here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#define INTUITOR_X86 1
#endif

namespace intuitor {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kInfD = std::numeric_limits<double>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint32_t kExponentMask = 0x7f800000u;
constexpr uint32_t kMinusInfBits = 0xff800000u;
constexpr uint16_t kF16MinusInf = 0xfc00u;
constexpr uint16_t kBf16MinusInf = 0xff80u;

// Float32 lane sums are moved to float64 this often: 128 terms per lane keep their rounding far
// below the tolerance whatever the vocabulary.
constexpr size_t kFlushElements = 1024;
// Splitting below this many elements costs more in thread hand-off than it gains.
constexpr size_t kMinChunk = 16384;
// Elements per thread worth starting a thread for (~100 µs of work against ~10-30 µs to start
// one): a single 151936-entry row runs on the calling thread alone.
constexpr size_t kMinThreadElements = size_t(1) << 18;
// Keeps the per-lane int32 counts of a chunk from overflowing.
constexpr size_t kMaxChunk = size_t(1) << 28;
constexpr size_t kChunkAlign = 64;
// Backward outputs from this size on are written around the caches (non-temporal stores, where
// the kernels have them): they would not fit anyway, and this saves reading each line first.
constexpr size_t kStreamBytes = size_t(16) << 20;

inline uint32_t bitsOf(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

inline float fromBits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

inline bool isNaNBits(float x) { return (bitsOf(x) & 0x7fffffffu) > kExponentMask; }

inline float f16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return fromBits(sign | kExponentMask | (mantissa << 13));
  if (exponent != 0) return fromBits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa · 2^-24, exact in float32.
  const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

inline float bf16ToFloat(uint16_t h) { return fromBits(uint32_t(h) << 16); }

template <DType D>
inline float loadScalar(const void* row, size_t i) {
  if constexpr (D == DType::F32) {
    return static_cast<const float*>(row)[i];
  } else if constexpr (D == DType::F16) {
    return f16ToFloat(static_cast<const uint16_t*>(row)[i]);
  } else {
    return bf16ToFloat(static_cast<const uint16_t*>(row)[i]);
  }
}

inline float loadScalar(DType dtype, const void* row, size_t i) {
  switch (dtype) {
    case DType::F32: return loadScalar<DType::F32>(row, i);
    case DType::F16: return loadScalar<DType::F16>(row, i);
    case DType::BF16: return loadScalar<DType::BF16>(row, i);
  }
  return kNaN;
}

inline size_t elementSize(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

// v as hi + lo, two floats (lo = 0 where hi overflows).
void splitFloat(double v, float& hi, float& lo) {
  hi = float(v);
  lo = (bitsOf(hi) & kExponentMask) == kExponentMask ? 0.0f : float(v - double(hi));
}

// 1/T as the float32 `hi` that defines x = z·hi (masks, maxima, the reference points), and
// c = 1/T·log2(e) as a float pair for the vector kernels: fma(z, cLo, fma(z, cHi, −r)) is
// z/T·log2e − r with about one rounding, so exponents match the float64 reference to ~1e-7
// even where |x| is in the hundreds and float32 x itself is 1e-5 off. The scalar kernels use
// `value` in float64.
//
// The AVX-512 kernels use their own pair, with c2Hi rounded down so that c2Lo > 0: an infinite z
// then gives an infinite w of its own sign (never ∞ − ∞ = NaN), and `maskedAtOrBelow`, the
// largest float z with z·hi = −inf in float32 (−inf itself unless 1/T > 1 makes −FLT_MAX·hi
// overflow), so that one comparison of z tells masked entries. They require `avx512` (1/T > 0,
// both halves normal); other temperatures go to the AVX2 kernels.
struct InvT {
  double value;
  float hi;
  float log2Hi, log2Lo;
  float c2Hi, c2Lo;
  float maskedAtOrBelow;
  bool avx512;
};

// Largest z with hi·z = −inf in float32, hi > 0 and finite: −inf when −FLT_MAX·hi is finite;
// otherwise found by bisection over the magnitudes' bit patterns (z·hi is monotonic in z).
float maskedThreshold(float hi) {
  constexpr float kMax = std::numeric_limits<float>::max();
  const auto overflows = [hi](float magnitude) { return (bitsOf(-magnitude * hi) & 0x7fffffffu) == kExponentMask; };
  if (!overflows(kMax)) return -kInf;
  uint32_t finite = 0, infinite = bitsOf(kMax);  // overflows(fromBits(infinite)), not overflows(fromBits(finite))
  while (infinite - finite > 1) {
    const uint32_t mid = finite + (infinite - finite) / 2;
    (overflows(fromBits(mid)) ? infinite : finite) = mid;
  }
  return -fromBits(infinite);
}

InvT splitInvT(double value) {
  InvT inv;
  inv.value = value;
  inv.hi = float(value);
  const double c = value * 1.4426950408889634;
  splitFloat(c, inv.log2Hi, inv.log2Lo);
  inv.c2Hi = float(c);
  if (double(inv.c2Hi) >= c) inv.c2Hi = std::nextafter(inv.c2Hi, -kInf);
  inv.c2Lo = float(c - double(inv.c2Hi));
  constexpr float kMinNormal = std::numeric_limits<float>::min();
  inv.avx512 = inv.hi > 0 && inv.hi <= std::numeric_limits<float>::max() && inv.c2Hi >= kMinNormal &&
               inv.c2Hi <= std::numeric_limits<float>::max() && inv.c2Lo >= kMinNormal;
  inv.maskedAtOrBelow = inv.avx512 ? maskedThreshold(inv.hi) : -kInf;
  return inv;
}

// Online-softmax state of a set of elements, relative to a reference point m at (or within
// rounding of) their maximum; m = −inf when no element is finite.
struct Partial {
  double m = -kInfD;
  double s = 0;    // Σ e^{x−m}
  double u = 0;    // Σ (x−m) e^{x−m}
  double sumZ = 0;  // Σ z over the finite x, so that mean(x) = invT·Σz/count
  uint64_t count = 0;
  bool invalid = false;  // saw NaN or +inf
};

Partial merge(const Partial& a, const Partial& b) {
  Partial r;
  r.sumZ = a.sumZ + b.sumZ;
  r.count = a.count + b.count;
  r.invalid = a.invalid || b.invalid;
  // An empty side has no mass; skipping it also avoids (−inf) − (−inf).
  if (a.m == -kInfD) {
    r.m = b.m, r.s = b.s, r.u = b.u;
  } else if (b.m == -kInfD) {
    r.m = a.m, r.s = a.s, r.u = a.u;
  } else {
    r.m = std::max(a.m, b.m);
    const double da = a.m - r.m, db = b.m - r.m;
    const double ea = std::exp(da), eb = std::exp(db);
    r.s = a.s * ea + b.s * eb;
    r.u = (a.u + da * a.s) * ea + (b.u + db * b.s) * eb;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Portable kernels: one element at a time, float64 accumulators.

// Cap on x − m, whose rounding residuals only exceed it where |x| > ~5e8: keeps e^{x−m} finite
// (the vector kernels' cap, 64 in base 2).
constexpr double kMaxResidual = 64 * 0.69314718055994531;

template <DType D>
Partial forwardChunkScalar(const void* row, size_t begin, size_t end, const InvT& inv) {
  float m = -kInf;
  double s = 0, u = 0, sumZ = 0;
  uint64_t count = 0;
  bool invalid = false;
  for (size_t j = begin; j < end; ++j) {
    const float z = loadScalar<D>(row, j);
    const float x = z * inv.hi;
    const uint32_t bits = bitsOf(x);
    if ((bits & kExponentMask) == kExponentMask) {
      invalid |= bits != kMinusInfBits;
      continue;
    }
    ++count;
    sumZ += z;
    if (x > m) {
      if (count > 1) {  // rescale what was summed relative to the old maximum
        const double d = double(m) - double(x);
        const double alpha = std::exp(d);
        u = alpha * (u + d * s);
        s *= alpha;
      }
      m = x;
    }
    const double t = std::min(double(z) * inv.value - double(m), kMaxResidual);
    const double e = std::exp(t);
    s += e;
    u += t * e;
  }
  Partial p;
  p.m = m, p.s = s, p.u = u, p.sumZ = sumZ, p.count = count, p.invalid = invalid;
  return p;
}

float sumScalar(const float* p, size_t n) {
  float s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) s[k] += p[i + k];
  }
  for (; i < n; ++i) s[0] += p[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

template <DType D>
void backwardChunkScalar(const void* row, float* out, size_t begin, size_t end, const InvT& inv, float lse, float a,
                         float b, bool /*stream*/) {
  for (size_t j = begin; j < end; ++j) {
    const float z = loadScalar<D>(row, j);
    const bool masked = bitsOf(z * inv.hi) == kMinusInfBits;
    out[j] = masked ? 0.0f : float(double(a) * std::exp(double(z) * inv.value - double(lse)) + double(b));
  }
}

// Exact count of finite x in [begin, end): the vector lanes also count +inf, which only occurs in
// invalid rows (rare), so those are recounted here.
template <DType D>
uint64_t countFinite(const void* row, size_t begin, size_t end, const InvT& inv) {
  uint64_t count = 0;
  for (size_t j = begin; j < end; ++j) {
    count += (bitsOf(loadScalar<D>(row, j) * inv.hi) & kExponentMask) != kExponentMask;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C kernels, compiled for those extensions only here and called only when the CPU
// has them.
#ifdef INTUITOR_X86
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

// The vector kernels work in base 2: e^{x−c} = 2^w with w = z·(invT·log2e) − c·log2e, one
// fused multiply-add for w and a cheaper polynomial than for e^x.

// 2^w for w in [−126, 127], relative error ~2e-7 (Cephes exp2f: w = n + f, |f| ≤ 1/2,
// degree-6 polynomial in f).
AVX2_INLINE __m256 exp2Core(__m256 w) {
  // w + 1.5·2^23 rounds w to the integer n in the low mantissa bits; with 127 also added, shifting
  // those bits up by 23 gives the float 2^n.
  const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f);
  const __m256 k = _mm256_add_ps(w, magic);
  const __m256 f = _mm256_sub_ps(w, _mm256_sub_ps(k, magic));
  __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
  const __m256 y = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(k), 23)));
}

// 2^w for any w: below −126 (−inf included) 0, above 127 +inf, NaN stays NaN.
AVX2_INLINE __m256 exp2All(__m256 w) {
  const __m256 lo = _mm256_set1_ps(-126.0f), hi = _mm256_set1_ps(127.0f);
  // max/min return their second operand for NaN: w goes second so NaN survives the clamp.
  const __m256 y = exp2Core(_mm256_min_ps(hi, _mm256_max_ps(lo, w)));
  const __m256 big = _mm256_blendv_ps(y, _mm256_set1_ps(kInf), _mm256_cmp_ps(w, hi, _CMP_GT_OQ));
  return _mm256_and_ps(big, _mm256_cmp_ps(w, lo, _CMP_NLT_UQ));
}

// The forward's 2^w, w ≤ 0 up to rounding residuals. NaN and w < −126 (masked entries give −inf
// or NaN) yield exactly 0; `t` receives w clamped to [−126, 64], finite, for Σ t·2^t. The cap only
// matters where |x| > ~5e8, whose float32 rounding residuals could otherwise overflow.
AVX2_INLINE __m256 exp2Forward(__m256 w, __m256& t) {
  const __m256 lo = _mm256_set1_ps(-126.0f);
  t = _mm256_min_ps(_mm256_max_ps(w, lo), _mm256_set1_ps(64.0f));  // max_ps(NaN, lo) is lo
  return _mm256_and_ps(exp2Core(t), _mm256_cmp_ps(w, lo, _CMP_GE_OQ));
}

template <DType D>
AVX2_INLINE __m256 decode8(const void* p) {
  if constexpr (D == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p));
  } else {
    const __m128i h = _mm_loadu_si128(static_cast<const __m128i*>(p));
    if constexpr (D == DType::F16) {
      return _mm256_cvtph_ps(h);
    } else {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
}

template <DType D>
AVX2_INLINE __m256 load8(const void* row, size_t i) {
  if constexpr (D == DType::F32) {
    return decode8<D>(static_cast<const float*>(row) + i);
  } else {
    return decode8<D>(static_cast<const uint16_t*>(row) + i);
  }
}

// The last n < 8 elements, padded with −inf (a masked entry: no effect on any statistic).
template <DType D>
AVX2_INLINE __m256 loadTail(const void* row, size_t i, size_t n) {
  if constexpr (D == DType::F32) {
    alignas(32) float buf[8];
    std::fill(buf, buf + 8, -kInf);
    std::memcpy(buf, static_cast<const float*>(row) + i, n * sizeof(float));
    return decode8<D>(buf);
  } else {
    alignas(16) uint16_t buf[8];
    std::fill(buf, buf + 8, D == DType::F16 ? kF16MinusInf : kBf16MinusInf);
    std::memcpy(buf, static_cast<const uint16_t*>(row) + i, n * sizeof(uint16_t));
    return decode8<D>(buf);
  }
}

// Per-lane online state, in base 2: w = x·log2e − m2, s = Σ 2^w, u = Σ w·2^w.
struct Lanes {
  __m256 m;    // running maximum of x (−inf while the lane is empty)
  __m256 m2;   // float(m·log2e): the reference point of s and u
  __m256 s, u, sum, nan;  // float32 sums since the last flush; sum is Σz; nan flags a NaN seen
  __m256i count;
  __m256d s64[2], u64[2], sum64[2];  // flushed sums, lanes 0-3 and 4-7
};

AVX2_INLINE void toDouble(__m256 v, __m256d out[2]) {
  out[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  out[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

// New lane maxima mn ≥ m: s ← α s and u ← α (u + d s), α = 2^d, d = m2_old − m2_new, in both the
// float32 and the float64 sums. An empty lane (m2 = −inf, s = u = 0) gets d = −1e30: α = 0, d·s = 0.
AVX2_INLINE void rescale(Lanes& L, __m256 mn) {
  const __m256 m2 = _mm256_mul_ps(mn, _mm256_set1_ps(1.44269504088896341f));
  const __m256 d = _mm256_max_ps(_mm256_sub_ps(L.m2, m2), _mm256_set1_ps(-1e30f));
  const __m256 alpha = exp2All(d);
  L.u = _mm256_mul_ps(alpha, _mm256_fmadd_ps(d, L.s, L.u));
  L.s = _mm256_mul_ps(alpha, L.s);
  __m256d d64[2], alpha64[2];
  toDouble(d, d64);
  toDouble(alpha, alpha64);
  for (int h = 0; h < 2; ++h) {
    L.u64[h] = _mm256_mul_pd(alpha64[h], _mm256_fmadd_pd(d64[h], L.s64[h], L.u64[h]));
    L.s64[h] = _mm256_mul_pd(alpha64[h], L.s64[h]);
  }
  L.m = mn;
  L.m2 = m2;
}

// Lets the lane maxima cover `x` (the max of the vectors about to be accumulated). NaN compares
// false, so it never triggers a rescale; a +inf becomes the lane maximum, which marks the row
// invalid in lanesToPartial.
AVX2_INLINE void raiseMax(Lanes& L, __m256 x) {
  if (_mm256_movemask_ps(_mm256_cmp_ps(x, L.m, _CMP_GT_OQ))) rescale(L, _mm256_max_ps(x, L.m));
}

// One vector of logits z and its x = z·hi, after raiseMax covered x; NaNs are flagged by the caller.
AVX2_INLINE void accumulate(Lanes& L, __m256 z, __m256 x, __m256 log2Hi, __m256 log2Lo) {
  // x > −inf: finite or +inf (the latter only in invalid rows, whose count is redone exactly).
  const __m256 counted = _mm256_cmp_ps(x, _mm256_set1_ps(-kInf), _CMP_GT_OQ);
  // w from z with one rounding (see InvT).
  __m256 t;
  const __m256 e = exp2Forward(_mm256_fmadd_ps(z, log2Lo, _mm256_fmsub_ps(z, log2Hi, L.m2)), t);
  L.s = _mm256_add_ps(L.s, e);
  L.u = _mm256_fmadd_ps(t, e, L.u);
  L.sum = _mm256_add_ps(L.sum, _mm256_and_ps(counted, z));
  L.count = _mm256_sub_epi32(L.count, _mm256_castps_si256(counted));
}

AVX2_INLINE void flush(Lanes& L) {
  __m256d v[2];
  toDouble(L.s, v);
  L.s64[0] = _mm256_add_pd(L.s64[0], v[0]), L.s64[1] = _mm256_add_pd(L.s64[1], v[1]);
  toDouble(L.u, v);
  L.u64[0] = _mm256_add_pd(L.u64[0], v[0]), L.u64[1] = _mm256_add_pd(L.u64[1], v[1]);
  toDouble(L.sum, v);
  L.sum64[0] = _mm256_add_pd(L.sum64[0], v[0]), L.sum64[1] = _mm256_add_pd(L.sum64[1], v[1]);
  L.s = L.u = L.sum = _mm256_setzero_ps();
}

// Back to natural units: the lane's reference point is m2·ln2 and its u scales by ln2.
AVX2_FN Partial lanesToPartial(const Lanes& L) {
  constexpr double kLn2 = 0.69314718055994531;
  alignas(32) float m2[8];
  alignas(32) double s[8], u[8], sum[8];
  alignas(32) int32_t count[8];
  _mm256_store_ps(m2, L.m2);
  for (int h = 0; h < 2; ++h) {
    _mm256_store_pd(s + 4 * h, L.s64[h]);
    _mm256_store_pd(u + 4 * h, L.u64[h]);
    _mm256_store_pd(sum + 4 * h, L.sum64[h]);
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(count), L.count);
  Partial p;
  p.invalid = _mm256_movemask_ps(_mm256_or_ps(L.nan, _mm256_cmp_ps(L.m, _mm256_set1_ps(kInf), _CMP_EQ_OQ))) != 0;
  for (int l = 0; l < 8; ++l) {
    Partial lane;
    lane.m = double(m2[l]) * kLn2, lane.s = s[l], lane.u = u[l] * kLn2, lane.sumZ = sum[l];
    lane.count = uint32_t(count[l]);
    p = merge(p, lane);
  }
  return p;
}

template <DType D>
AVX2_FN Partial forwardChunkAvx2(const void* row, size_t begin, size_t end, const InvT& inv) {
  const __m256 hi = _mm256_set1_ps(inv.hi);
  const __m256 log2Hi = _mm256_set1_ps(inv.log2Hi), log2Lo = _mm256_set1_ps(inv.log2Lo);
  Lanes L;
  L.m = L.m2 = _mm256_set1_ps(-kInf);
  L.s = L.u = L.sum = L.nan = _mm256_setzero_ps();
  L.count = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) L.s64[h] = L.u64[h] = L.sum64[h] = _mm256_setzero_pd();
  size_t i = begin;
  // Pairs of vectors share one NaN test (unordered compare of the two) and one maximum test.
  while (end - i >= 16) {
    const size_t stop = i + std::min(kFlushElements, (end - i) / 16 * 16);
    for (; i < stop; i += 16) {
      const __m256 z0 = load8<D>(row, i), z1 = load8<D>(row, i + 8);
      const __m256 x0 = _mm256_mul_ps(z0, hi), x1 = _mm256_mul_ps(z1, hi);
      L.nan = _mm256_or_ps(L.nan, _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q));
      raiseMax(L, _mm256_max_ps(x0, x1));
      accumulate(L, z0, x0, log2Hi, log2Lo);
      accumulate(L, z1, x1, log2Hi, log2Lo);
    }
    flush(L);
  }
  // At most 15 elements left: one vector, then the tail padded with −inf.
  for (size_t left = end - i; left > 0; left = end - i) {
    const __m256 z = left >= 8 ? load8<D>(row, i) : loadTail<D>(row, i, left);
    const __m256 x = _mm256_mul_ps(z, hi);
    L.nan = _mm256_or_ps(L.nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    raiseMax(L, x);
    accumulate(L, z, x, log2Hi, log2Lo);
    i += std::min<size_t>(left, 8);
  }
  flush(L);
  Partial p = lanesToPartial(L);
  if (p.invalid) p.count = countFinite<D>(row, begin, end, inv);
  return p;
}

// a·2^{w} + b, w = (z/T − lse)·log2e, where x = z·hi is not −inf; 0 where it is (masked).
AVX2_INLINE __m256 gradient(__m256 z, __m256 hi, __m256 log2Hi, __m256 log2Lo, __m256 lse2Hi, __m256 lse2Lo, __m256 a,
                            __m256 b) {
  const __m256 w = _mm256_sub_ps(_mm256_fmadd_ps(z, log2Lo, _mm256_fmsub_ps(z, log2Hi, lse2Hi)), lse2Lo);
  const __m256 g = _mm256_fmadd_ps(a, exp2All(w), b);
  return _mm256_and_ps(g, _mm256_cmp_ps(_mm256_mul_ps(z, hi), _mm256_set1_ps(-kInf), _CMP_NEQ_UQ));
}

AVX2_FN float sumAvx2(const float* p, size_t n) {
  __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) s[k] = _mm256_add_ps(s[k], _mm256_loadu_ps(p + i + 8 * k));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
  return std::accumulate(lanes, lanes + 8, 0.0f) + sumScalar(p + i, n - i);
}

template <DType D>
AVX2_FN void backwardChunkAvx2(const void* row, float* out, size_t begin, size_t end, const InvT& inv, float lse,
                               float a, float b, bool /*stream*/) {
  // lse·log2e as a float pair, so that w keeps the accuracy of the float64 reference.
  float lse2Hi, lse2Lo;
  splitFloat(double(lse) * 1.4426950408889634, lse2Hi, lse2Lo);
  const __m256 hi = _mm256_set1_ps(inv.hi), log2Hi = _mm256_set1_ps(inv.log2Hi), log2Lo = _mm256_set1_ps(inv.log2Lo);
  const __m256 vLse2Hi = _mm256_set1_ps(lse2Hi), vLse2Lo = _mm256_set1_ps(lse2Lo);
  const __m256 vA = _mm256_set1_ps(a), vB = _mm256_set1_ps(b);
  size_t i = begin;
  for (; end - i >= 8; i += 8) {
    _mm256_storeu_ps(out + i, gradient(load8<D>(row, i), hi, log2Hi, log2Lo, vLse2Hi, vLse2Lo, vA, vB));
  }
  if (i < end) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, gradient(loadTail<D>(row, i, end - i), hi, log2Hi, log2Lo, vLse2Hi, vLse2Lo, vA, vB));
    std::memcpy(out + i, buf, (end - i) * sizeof(float));
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 (F, BW, DQ, VL) kernels, compiled for those extensions only here and called only when
// the CPU has them. Compared with the AVX2 ones they do less per element:
// - 2^w is vreduceps (f = w − ⌊w⌋), a degree-5 polynomial and vscalefps (· 2^⌊w⌋), which also
//   gives exactly 0 below the float range (−inf included), +inf above and NaN for NaN, so w needs
//   no clamping or masking;
// - masked entries are told by one comparison of z with InvT::maskedAtOrBelow, which also keeps
//   them out of Σz, Σw·2^w and the count through masked (free) instructions;
// - the forward keeps one reference point for the whole chunk and no per-vector maximum: blocks
//   of kBlock512 elements are summed against it in float32 and checked once (vfpclassps) at the
//   end: a NaN or ±inf among the logits makes Σz non-finite and sends the block to the AVX2
//   kernel (which classifies every element), and a block whose maximum outgrew the reference
//   overflows Σ2^w and is redone once against its own maximum; after a block whose Σ2^w grew
//   large, the reference moves up by a whole power of two. Blocks that still fail, and leading
//   blocks with no unmasked entry, go to the AVX2 kernel too; its partials are merged in float64.
#define AVX512_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,popcnt"
#define AVX512_FN __attribute__((target(AVX512_TARGET)))
#define AVX512_INLINE __attribute__((target(AVX512_TARGET), always_inline)) inline

// Elements per block of the forward: 128 float32 terms per lane between float64 flushes, as in
// the AVX2 kernels.
constexpr size_t kBlock512 = 2048;
// Largest |reference| (log2 units) of the AVX-512 kernels: its float32 rounding stays ≤ 1, so the
// largest w stays near 0, and the backward's 2^−lse2Lo near 1.
constexpr float kMaxReference512 = 16777216.0f;  // 2^24
// A block whose largest lane of Σ2^w reaches this moves the reference up (by ⌊log2⌋ of it).
constexpr float kRaiseSum = 1048576.0f;  // 2^20

// 2^w with relative error ≤ 1.5e-7: f = w − ⌊w⌋ ∈ [0, 1) (vreduceps gives 0 for ±inf), 2^f by a
// minimax polynomial of degree 5, scaled by 2^⌊w⌋ (vscalefps).
AVX512_INLINE __m512 exp2Avx512(__m512 w) {
  const __m512 f = _mm512_reduce_ps(w, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(1.87757669e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.98933970e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.58263175e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.40153611e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.93153083e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.99999940e-1f));
  return _mm512_scalef_ps(p, w);
}

AVX512_INLINE __mmask32 firstBits32(size_t n) { return n >= 32 ? ~__mmask32(0) : __mmask32((1u << n) - 1); }

// Thirty-two logits from element i as two vectors, in an order of their own (bf16: even then odd
// elements): the forward only sums them.
template <DType D>
AVX512_INLINE void load32(const void* row, size_t i, __m512& a, __m512& b) {
  if constexpr (D == DType::F32) {
    const float* p = static_cast<const float*>(row) + i;
    a = _mm512_loadu_ps(p);
    b = _mm512_loadu_ps(p + 16);
  } else if constexpr (D == DType::F16) {
    const uint16_t* p = static_cast<const uint16_t*>(row) + i;
    a = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    b = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
  } else {
    const __m512i v = _mm512_loadu_si512(static_cast<const uint16_t*>(row) + i);
    a = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    b = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int32_t(0xffff0000u))));
  }
}

// The same for the last n < 32 elements, padded with −inf (masked entries); nothing past them is
// read.
template <DType D>
AVX512_INLINE void loadTail32(const void* row, size_t i, size_t n, __m512& a, __m512& b) {
  const __mmask32 k = firstBits32(n);
  if constexpr (D == DType::F32) {
    const float* p = static_cast<const float*>(row) + i;
    const __m512 pad = _mm512_set1_ps(-kInf);
    a = _mm512_mask_loadu_ps(pad, __mmask16(k), p);
    b = _mm512_mask_loadu_ps(pad, __mmask16(k >> 16), p + 16);
  } else if constexpr (D == DType::F16) {
    const uint16_t* p = static_cast<const uint16_t*>(row) + i;
    const __m256i pad = _mm256_set1_epi16(int16_t(kF16MinusInf));
    a = _mm512_cvtph_ps(_mm256_mask_loadu_epi16(pad, __mmask16(k), p));
    b = _mm512_cvtph_ps(_mm256_mask_loadu_epi16(pad, __mmask16(k >> 16), p + 16));
  } else {
    const __m512i v = _mm512_mask_loadu_epi16(_mm512_set1_epi16(int16_t(kBf16MinusInf)), k,
                                              static_cast<const uint16_t*>(row) + i);
    a = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    b = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int32_t(0xffff0000u))));
  }
}

// Sixteen logits from element i in order, or the first n of them (the rest 0, not to be stored).
template <DType D>
AVX512_INLINE __m512 load16(const void* row, size_t i) {
  if constexpr (D == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i));
    if constexpr (D == DType::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <DType D>
AVX512_INLINE __m512 load16(const void* row, size_t i, __mmask16 k) {
  if constexpr (D == DType::F32) {
    return _mm512_maskz_loadu_ps(k, static_cast<const float*>(row) + i);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(row) + i);
    if constexpr (D == DType::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

AVX512_INLINE bool anyNonFinite(__m512 v) {
  // QNaN, +inf, −inf, SNaN.
  return _mm512_fpclass_ps_mask(v, 0x99) != 0;
}

AVX512_INLINE double sumLanes(const __m512d v[2]) { return _mm512_reduce_add_pd(_mm512_add_pd(v[0], v[1])); }

AVX512_INLINE void toDouble(__m512 v, __m512d out[2]) {
  out[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  out[1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// Float32 sums of one block against the reference m2 (base 2): Σ2^w, Σw·2^w and Σz over the
// unmasked entries, w = z·c − m2; count = unmasked entries (NaN included: such a block is
// rejected anyway).
struct BlockSums {
  __m512 s, u, z;
  uint64_t count;
};

struct ForwardConsts512 {
  __m512 cHi, cLo, masked;
};

AVX512_INLINE void accumulate512(__m512 z, const ForwardConsts512& C, __m512 m2, __m512& s, __m512& u, __m512& sz,
                                 uint64_t& count) {
  // Not masked: finite x, or NaN (unordered), or +inf.
  const __mmask16 k = _mm512_cmp_ps_mask(z, C.masked, _CMP_NLE_UQ);
  count += unsigned(_mm_popcnt_u32(k));
  sz = _mm512_mask_add_ps(sz, k, sz, z);
  // w from z with one rounding (see InvT); −inf for masked z.
  const __m512 w = _mm512_fmadd_ps(z, C.cLo, _mm512_fmsub_ps(z, C.cHi, m2));
  const __m512 e = exp2Avx512(w);
  s = _mm512_add_ps(s, e);
  u = _mm512_mask3_fmadd_ps(w, e, u, k);
}

template <DType D>
AVX512_FN void blockSums512(const void* row, size_t i, size_t n, const ForwardConsts512& C, float m2, BlockSums& out) {
  const __m512 vm2 = _mm512_set1_ps(m2);
  __m512 s0 = _mm512_setzero_ps(), u0 = s0, z0 = s0, s1 = s0, u1 = s0, z1 = s0;
  uint64_t count = 0;
  const size_t end = i + n;
  for (; end - i >= 32; i += 32) {
    __m512 a, b;
    load32<D>(row, i, a, b);
    accumulate512(a, C, vm2, s0, u0, z0, count);
    accumulate512(b, C, vm2, s1, u1, z1, count);
  }
  if (i < end) {
    __m512 a, b;
    loadTail32<D>(row, i, end - i, a, b);
    accumulate512(a, C, vm2, s0, u0, z0, count);
    accumulate512(b, C, vm2, s1, u1, z1, count);
  }
  out.s = _mm512_add_ps(s0, s1);
  out.u = _mm512_add_ps(u0, u1);
  out.z = _mm512_add_ps(z0, z1);
  out.count = count;
}

// Largest z > maskedAtOrBelow (NaN left out) in [i, i + n), or −inf.
template <DType D>
AVX512_FN float blockMax512(const void* row, size_t i, size_t n, __m512 masked) {
  __m512 m0 = _mm512_set1_ps(-kInf), m1 = m0;
  const size_t end = i + n;
  for (size_t j = i; j < end; j += 32) {
    __m512 a, b;
    if (end - j >= 32) {
      load32<D>(row, j, a, b);
    } else {
      loadTail32<D>(row, j, end - j, a, b);
    }
    m0 = _mm512_mask_max_ps(m0, _mm512_cmp_ps_mask(a, masked, _CMP_GT_OQ), m0, a);
    m1 = _mm512_mask_max_ps(m1, _mm512_cmp_ps_mask(b, masked, _CMP_GT_OQ), m1, b);
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

// Float64 sums of the accepted blocks, all relative to the reference m2.
struct Totals512 {
  float m2 = -kInf;
  __m512d s[2], u[2], z[2];
  uint64_t count = 0;
  bool any = false;  // a block was accepted
};

// Moves the reference to m2new: s ← α s and u ← α (u + d s), α = 2^d, d = m2 − m2new.
AVX512_INLINE void moveReference(Totals512& T, float m2new) {
  const double d = double(T.m2) - double(m2new);
  const __m512d vd = _mm512_set1_pd(d), alpha = _mm512_set1_pd(std::exp2(d));
  for (int h = 0; h < 2; ++h) {
    T.u[h] = _mm512_mul_pd(alpha, _mm512_fmadd_pd(vd, T.s[h], T.u[h]));
    T.s[h] = _mm512_mul_pd(alpha, T.s[h]);
  }
  T.m2 = m2new;
}

template <DType D>
AVX512_FN Partial forwardChunkAvx512(const void* row, size_t begin, size_t end, const InvT& inv) {
  if (!inv.avx512) return forwardChunkAvx2<D>(row, begin, end, inv);
  const ForwardConsts512 C{_mm512_set1_ps(inv.c2Hi), _mm512_set1_ps(inv.c2Lo), _mm512_set1_ps(inv.maskedAtOrBelow)};
  Totals512 T;
  for (int h = 0; h < 2; ++h) T.s[h] = T.u[h] = T.z[h] = _mm512_setzero_pd();
  Partial side;  // blocks left to the AVX2 kernel
  for (size_t i = begin; i < end;) {
    const size_t n = std::min(kBlock512, end - i);
    bool accepted = false;
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (attempt > 0 || T.m2 == -kInf) {
        // Reference from this block's maximum (x = z·hi is monotonic in z, hi > 0).
        const float zmax = blockMax512<D>(row, i, n, C.masked);
        const float x = zmax * inv.hi;
        const float m2 = float(double(zmax) * inv.value * 1.4426950408889634);
        // No unmasked entry, an x = +inf, or |x| > ~1e7, where the float32 reference is too coarse
        // for the largest w to be near 0: the AVX2 kernel.
        if ((bitsOf(x) & kExponentMask) == kExponentMask || !(std::fabs(m2) <= kMaxReference512)) break;
        if (!(m2 > T.m2)) break;  // redone against the same reference: it failed for another reason
        if (T.m2 == -kInf) {
          T.m2 = m2;  // nothing summed yet
        } else {
          moveReference(T, m2);
        }
      }
      BlockSums B;
      blockSums512<D>(row, i, n, C, T.m2, B);
      if (anyNonFinite(B.z)) break;  // NaN or ±inf among the logits (or Σz overflowed)
      if (anyNonFinite(B.s) || anyNonFinite(B.u)) continue;  // some 2^w overflowed: the reference is too low
      __m512d v[2];
      toDouble(B.s, v);
      T.s[0] = _mm512_add_pd(T.s[0], v[0]), T.s[1] = _mm512_add_pd(T.s[1], v[1]);
      toDouble(B.u, v);
      T.u[0] = _mm512_add_pd(T.u[0], v[0]), T.u[1] = _mm512_add_pd(T.u[1], v[1]);
      toDouble(B.z, v);
      T.z[0] = _mm512_add_pd(T.z[0], v[0]), T.z[1] = _mm512_add_pd(T.z[1], v[1]);
      T.count += B.count;
      T.any = true;
      accepted = true;
      const float smax = _mm512_reduce_max_ps(B.s);
      if (smax >= kRaiseSum) moveReference(T, T.m2 + float(std::ilogb(smax)));
      break;
    }
    if (!accepted) side = merge(side, forwardChunkAvx2<D>(row, i, i + n, inv));
    i += n;
  }
  Partial p;
  if (T.any) {
    constexpr double kLn2 = 0.69314718055994531;
    p.m = double(T.m2) * kLn2;
    p.s = sumLanes(T.s);
    p.u = sumLanes(T.u) * kLn2;
    p.sumZ = sumLanes(T.z);
    p.count = T.count;
  }
  return merge(p, side);
}

// Backward: (a·2^{−lse2Lo})·2^w + b with w = z·c − lse2Hi, 0 for masked z (zero-masked FMA);
// NaN and +inf logits propagate as in the reference. Stores are aligned from the first 64-byte
// boundary of `out` on, and non-temporal when `stream`.
struct BackwardConsts512 {
  __m512 cHi, cLo, masked, lse2, a, b;
};

AVX512_INLINE __m512 gradient512(__m512 z, const BackwardConsts512& C) {
  const __mmask16 k = _mm512_cmp_ps_mask(z, C.masked, _CMP_NLE_UQ);
  const __m512 w = _mm512_fmadd_ps(z, C.cLo, _mm512_fmsub_ps(z, C.cHi, C.lse2));
  return _mm512_maskz_fmadd_ps(k, C.a, exp2Avx512(w), C.b);
}

template <DType D>
AVX512_FN void backwardChunkAvx512(const void* row, float* out, size_t begin, size_t end, const InvT& inv, float lse,
                                   float a, float b, bool stream) {
  float lse2Hi, lse2Lo;
  splitFloat(double(lse) * 1.4426950408889634, lse2Hi, lse2Lo);
  // Beyond kMaxReference512, lse2Lo could overflow 2^−lse2Lo (and x means little in float32).
  if (!inv.avx512 || !(std::fabs(lse2Hi) <= kMaxReference512)) {
    return backwardChunkAvx2<D>(row, out, begin, end, inv, lse, a, b, stream);
  }
  const BackwardConsts512 C{_mm512_set1_ps(inv.c2Hi), _mm512_set1_ps(inv.c2Lo), _mm512_set1_ps(inv.maskedAtOrBelow),
                            _mm512_set1_ps(lse2Hi), _mm512_set1_ps(float(double(a) * std::exp2(-double(lse2Lo)))),
                            _mm512_set1_ps(b)};
  size_t i = begin;
  const size_t head = std::min<size_t>(end - i, (64 - (reinterpret_cast<uintptr_t>(out + i) & 63)) / 4 % 16);
  if (head > 0) {
    const __mmask16 k = __mmask16((1u << head) - 1);
    _mm512_mask_storeu_ps(out + i, k, gradient512(load16<D>(row, i, k), C));
    i += head;
  }
  if (stream) {
    for (; end - i >= 16; i += 16) _mm512_stream_ps(out + i, gradient512(load16<D>(row, i), C));
  } else {
    for (; end - i >= 16; i += 16) _mm512_store_ps(out + i, gradient512(load16<D>(row, i), C));
  }
  if (i < end) {
    const __mmask16 k = __mmask16((1u << (end - i)) - 1);
    _mm512_mask_storeu_ps(out + i, k, gradient512(load16<D>(row, i, k), C));
  }
  if (stream) _mm_sfence();  // streaming stores are weakly ordered: done before this thread reports back
}

AVX512_FN float sumAvx512(const float* p, size_t n) {
  __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 4; ++k) s[k] = _mm512_add_ps(s[k], _mm512_loadu_ps(p + i + 16 * k));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]))) +
         sumScalar(p + i, n - i);
}
#endif  // INTUITOR_X86

// ---------------------------------------------------------------------------------------------
// Kernel selection, planning, threads.

using ForwardChunkFn = Partial (*)(const void* row, size_t begin, size_t end, const InvT& inv);
// `stream`: the output is too large to stay in the caches (the kernel may bypass them).
using BackwardChunkFn = void (*)(const void* row, float* out, size_t begin, size_t end, const InvT& inv, float lse,
                                 float a, float b, bool stream);

struct Kernels {
  const char* name;
  ForwardChunkFn forward[3];  // indexed by DType
  BackwardChunkFn backward[3];
  float (*sum)(const float* p, size_t n);  // for readBandwidthMs
};

// INTUITOR_NATIVE_SIMD caps the choice: "scalar" or "avx2" (anything else: the best the CPU has).
Kernels chooseKernels() {
  const char* forced = std::getenv("INTUITOR_NATIVE_SIMD");
  const bool scalarOnly = forced != nullptr && std::strcmp(forced, "scalar") == 0;
  const bool avx2Only = forced != nullptr && std::strcmp(forced, "avx2") == 0;
#ifdef INTUITOR_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 state.
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("popcnt");
  if (!scalarOnly && !avx2Only && avx512) {
    return {"avx512",
            {forwardChunkAvx512<DType::F32>, forwardChunkAvx512<DType::F16>, forwardChunkAvx512<DType::BF16>},
            {backwardChunkAvx512<DType::F32>, backwardChunkAvx512<DType::F16>, backwardChunkAvx512<DType::BF16>},
            sumAvx512};
  }
  if (!scalarOnly && avx2) {
    return {"avx2+fma",
            {forwardChunkAvx2<DType::F32>, forwardChunkAvx2<DType::F16>, forwardChunkAvx2<DType::BF16>},
            {backwardChunkAvx2<DType::F32>, backwardChunkAvx2<DType::F16>, backwardChunkAvx2<DType::BF16>},
            sumAvx2};
  }
#else
  (void)scalarOnly;
  (void)avx2Only;
#endif
  return {"scalar",
          {forwardChunkScalar<DType::F32>, forwardChunkScalar<DType::F16>, forwardChunkScalar<DType::BF16>},
          {backwardChunkScalar<DType::F32>, backwardChunkScalar<DType::F16>, backwardChunkScalar<DType::BF16>},
          sumScalar};
}

const Kernels& kernels() {
  static const Kernels chosen = chooseKernels();
  return chosen;
}

struct Plan {
  size_t chunks = 1;    // per row
  size_t chunkLen = 0;  // elements; multiple of kChunkAlign
  size_t tasks = 0;     // rows · chunks
  size_t batch = 1;     // tasks taken per counter increment, so each grab covers ≥ kMinChunk elements
  unsigned threads = 1;
};

Plan makePlan(size_t rows, size_t vocab, unsigned threads) {
  Plan plan;
  if (rows == 0) return plan;
  if (threads == 0) threads = defaultThreadCount();
  const size_t worthwhile = std::max<size_t>(1, (rows * vocab + kMinThreadElements - 1) / kMinThreadElements);
  threads = unsigned(std::min<size_t>(threads, worthwhile));
  // Aim at ≥ 4 tasks per thread so a slow thread does not leave the others idle at the end.
  const size_t wanted = size_t(4) * threads;
  size_t chunks = rows >= wanted ? 1 : (wanted + rows - 1) / rows;
  chunks = std::min(chunks, std::max<size_t>(1, vocab / kMinChunk));
  chunks = std::max(chunks, (vocab + kMaxChunk - 1) / kMaxChunk);
  size_t len = (vocab + chunks - 1) / chunks;
  len = (len + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  plan.chunks = len == 0 ? 1 : (vocab + len - 1) / len;
  plan.chunkLen = len;
  plan.tasks = rows * plan.chunks;
  plan.batch = std::max<size_t>(1, kMinChunk / std::max<size_t>(len, 1));
  const size_t grabs = (plan.tasks + plan.batch - 1) / plan.batch;
  plan.threads = unsigned(std::min<size_t>(threads, grabs));
  return plan;
}

template <typename Task>
void runTasks(const Plan& plan, const Task& task) {
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (;;) {
      const size_t first = next.fetch_add(plan.batch, std::memory_order_relaxed);
      if (first >= plan.tasks) return;
      const size_t last = std::min(plan.tasks, first + plan.batch);
      for (size_t t = first; t < last; ++t) task(t);
    }
  };
  std::vector<std::thread> helpers;
  try {
    helpers.reserve(plan.threads - 1);
    for (unsigned k = 1; k < plan.threads; ++k) helpers.emplace_back(work);
  } catch (const std::exception&) {
    // Out of threads: those already started and this one take every task from the counter.
  }
  work();
  for (std::thread& helper : helpers) helper.join();
}

void finishRow(const ForwardJob& job, const InvT& inv, size_t r, const Partial& p) {
  job.validCount[r] = uint32_t(p.count);
  if (p.invalid || p.count == 0) {
    job.logsumexp[r] = job.selfCertainty[r] = job.entropy[r] = kNaN;
    if (job.logprob) job.logprob[r] = kNaN;
    return;
  }
  const double logS = std::log(p.s);
  const double lse = p.m + logS;
  const double n = double(p.count);
  job.logsumexp[r] = float(lse);
  // ≥ 0, and exactly 0 for one finite entry, as in the reference (rounding may go a hair below).
  const bool single = p.count == 1;
  job.selfCertainty[r] = single ? 0.0f : float(std::max(lse - inv.value * p.sumZ / n - std::log(n), 0.0));
  job.entropy[r] = single ? 0.0f : float(std::max(logS - p.u / p.s, 0.0));
  if (job.logprob && job.ids) {
    const void* row = static_cast<const char*>(job.logits) + r * job.vocab * elementSize(job.dtype);
    const float z = loadScalar(job.dtype, row, size_t(job.ids[r]));
    job.logprob[r] = bitsOf(z * inv.hi) == kMinusInfBits ? -kInf : float(double(z) * inv.value - lse);
  }
}

void backwardRange(const BackwardJob& job, const InvT& inv, BackwardChunkFn kernel, bool stream, size_t r,
                   size_t begin, size_t end) {
  float* out = job.out + r * job.vocab;
  const float lse = job.logsumexp[r];
  if (isNaNBits(lse)) {
    std::fill(out + begin, out + end, kNaN);
    return;
  }
  const void* row = static_cast<const char*>(job.logits) + r * job.vocab * elementSize(job.dtype);
  const double invT = inv.value;
  const double gL = job.gLogprob ? job.gLogprob[r] : 0.0;
  const double gS = job.gSelfCertainty ? job.gSelfCertainty[r] : 0.0;
  const double uniform = 1.0 / double(job.validCount[r]);
  const int64_t id = job.ids ? job.ids[r] : -1;
  const bool ownsId = id >= int64_t(begin) && id < int64_t(end);
  // Read before the kernel runs: `out` may be the logits themselves.
  const float zId = ownsId ? loadScalar(job.dtype, row, size_t(id)) : 0.0f;
  kernel(row, out, begin, end, inv, lse, float(invT * (gS - gL)), float(-invT * gS * uniform), stream);
  if (ownsId) {
    // The one-hot term, recomputed in float64 rather than added to a rounded value.
    if (bitsOf(zId * inv.hi) == kMinusInfBits) {
      out[id] = float(invT * gL);
    } else {
      const double p = std::exp(double(zId) * invT - double(lse));
      out[id] = float(invT * (gL * (1.0 - p) + gS * (p - uniform)));
    }
  }
}

// A large `out` is usually a fresh allocation whose pages are first touched by the backward: one
// fault per 4 KiB page costs more than computing the gradient. Asking for transparent huge pages
// on the 2 MiB-aligned part of it (a hint; errors ignored, no effect on the contents or on pages
// already present) makes that one fault per 2 MiB.
void adviseHugePages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace

const char* simdName() { return kernels().name; }

unsigned defaultThreadCount() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

void tokenStatsForward(const ForwardJob& job, unsigned threads) {
  const ForwardChunkFn kernel = kernels().forward[int(job.dtype)];
  const InvT inv = splitInvT(job.invTemperature);
  const Plan plan = makePlan(job.rows, job.vocab, threads);
  const size_t rowBytes = job.vocab * elementSize(job.dtype);
  const auto rowOf = [&](size_t r) { return static_cast<const char*>(job.logits) + r * rowBytes; };
  if (plan.chunks == 1) {
    runTasks(plan, [&](size_t r) { finishRow(job, inv, r, kernel(rowOf(r), 0, job.vocab, inv)); });
    return;
  }
  // Few rows (< 4 per thread), so this holds at most a few hundred partials.
  std::vector<Partial> partials(plan.tasks);
  runTasks(plan, [&](size_t t) {
    const size_t r = t / plan.chunks, begin = t % plan.chunks * plan.chunkLen;
    partials[t] = kernel(rowOf(r), begin, std::min(begin + plan.chunkLen, job.vocab), inv);
  });
  for (size_t r = 0; r < job.rows; ++r) {
    Partial p = partials[r * plan.chunks];
    for (size_t c = 1; c < plan.chunks; ++c) p = merge(p, partials[r * plan.chunks + c]);
    finishRow(job, inv, r, p);
  }
}

void tokenStatsBackward(const BackwardJob& job, unsigned threads) {
  const BackwardChunkFn kernel = kernels().backward[int(job.dtype)];
  const InvT inv = splitInvT(job.invTemperature);
  const size_t outBytes = job.rows * job.vocab * sizeof(float);
  adviseHugePages(job.out, outBytes);
  const bool stream = outBytes >= kStreamBytes;
  const Plan plan = makePlan(job.rows, job.vocab, threads);
  runTasks(plan, [&](size_t t) {
    const size_t r = t / plan.chunks, begin = t % plan.chunks * plan.chunkLen;
    backwardRange(job, inv, kernel, stream, r, begin, std::min(begin + plan.chunkLen, job.vocab));
  });
}

std::vector<double> readBandwidthMs(size_t bytes, unsigned samples, unsigned threads) {
  if (threads == 0) threads = defaultThreadCount();
  const size_t n = bytes / sizeof(float);
  const std::vector<float> data(n, 1.0f);  // written once, so every page is mapped before timing
  const auto sum = kernels().sum;
  std::vector<float> partial(threads);
  const auto part = [&](unsigned k) {
    const size_t begin = n / threads * k, end = k + 1 == threads ? n : n / threads * (k + 1);
    partial[k] = sum(data.data() + begin, end - begin);
  };
  std::vector<double> ms;
  volatile float sink = 0;  // keeps the sums, hence the reads, from being optimised away
  for (unsigned s = 0; s < samples; ++s) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> helpers;
    unsigned started = 1;
    try {
      for (; started < threads; ++started) helpers.emplace_back(part, started);
    } catch (const std::exception&) {
      // Out of threads: this one reads the parts no helper took.
    }
    for (unsigned k = started; k < threads; ++k) part(k);
    part(0);
    for (std::thread& helper : helpers) helper.join();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    sink = sink + std::accumulate(partial.begin(), partial.end(), 0.0f);
  }
  return ms;
}

}  // namespace intuitor
