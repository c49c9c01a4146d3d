// Token statistics over language-model logits on the CPU: per row of a (rows, vocab) matrix of
// float32, float16 or bfloat16 logits z (16-bit ones as raw bit patterns), with x = z * invT in
// float32 deciding which entries are masked (−inf) or invalid (NaN, +inf), the forward computes
// logsumexp, selfCertainty, entropy, logprob of a chosen id and the count of finite entries; the
// backward writes dL/dz for upstream gradients of logprob and selfCertainty. Semantics (masked
// −inf entries, NaN rows, validCount) are exactly those of the float64 reference in
// src/ops/token-stats/reference.ts.
//
// Pure C++ (no N-API): the callers own every buffer and keep it alive for the whole call. Work is
// split over std::threads by rows, and rows are cut into chunks when there are too few rows to
// keep every thread busy. The SIMD kernels (AVX-512 F/BW/DQ/VL, AVX2+FMA+F16C or portable scalar)
// are chosen once, at run time, from the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace intuitor {

enum class DType { F32, F16, BF16 };

struct ForwardJob {
  DType dtype;
  const void* logits;  // rows * vocab elements: float, or uint16_t bit patterns
  size_t rows;
  size_t vocab;
  const int32_t* ids;  // rows entries in [0, vocab), or null (then logprob is not written)
  double invTemperature;  // applied in float32, with a float32 remainder for the exponents
  float* logsumexp;      // rows
  float* selfCertainty;  // rows
  float* entropy;        // rows
  float* logprob;        // rows, or null
  uint32_t* validCount;  // rows
};

struct BackwardJob {
  DType dtype;
  const void* logits;  // rows * vocab elements; may alias `out` (f32), the gradient is computed in place
  size_t rows;
  size_t vocab;
  const int32_t* ids;  // rows entries in [0, vocab), or null
  double invTemperature;
  const float* logsumexp;       // rows, from the forward
  const uint32_t* validCount;   // rows, from the forward
  const float* gLogprob;        // rows, or null (= 0)
  const float* gSelfCertainty;  // rows, or null (= 0)
  float* out;                   // rows * vocab, fully written
};

// "avx512", "avx2+fma" or "scalar": the kernels in use, the best the CPU (and OS) supports.
// INTUITOR_NATIVE_SIMD in the environment caps the choice, to test the other paths on machines
// that have better: "scalar" forces the portable kernels, "avx2" the AVX2 ones (scalar without
// AVX2).
const char* simdName();

// std::thread::hardware_concurrency(), or 1 where it is unknown.
unsigned defaultThreadCount();

// `threads` is an upper bound (0 = defaultThreadCount()); small jobs use fewer. The calling thread
// is one of the workers. If threads cannot be started, fewer do the work; the only exception is
// std::bad_alloc from the forward's few-row partials. On Linux the backward asks for transparent
// huge pages (madvise MADV_HUGEPAGE, a hint) on the 2 MiB-aligned part of an `out` of 4 MiB or
// more, which is usually freshly allocated and first touched here, and writes outputs of 16 MiB
// or more with non-temporal stores where the kernels have them.
void tokenStatsForward(const ForwardJob& job, unsigned threads);
void tokenStatsBackward(const BackwardJob& job, unsigned threads);

// Milliseconds per pass of a parallel read (a float sum) over `bytes` of memory allocated and
// touched here, one entry per sample: this machine's single-pass read bandwidth with the kernels'
// threads and SIMD path, the ceiling the forward is compared with (bench/token-stats.bench.ts).
// Throws std::bad_alloc when the buffer cannot be allocated.
std::vector<double> readBandwidthMs(size_t bytes, unsigned samples, unsigned threads);

}  // namespace intuitor
