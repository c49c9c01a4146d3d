// N-API entry points of the token-statistics kernels (token_stats.h). Each validates its
// arguments on the JavaScript thread (TypeError/RangeError rather than an out-of-bounds read),
// then runs the kernel in a Napi::AsyncWorker off the event loop and returns a Promise that
// resolves once the work is done (for forward/backward: the caller's output arrays are filled).
#pragma once

#include <napi.h>

namespace intuitor {

// forward(dtype, logits, rows, vocab, ids|null, invTemperature,
//         logsumexp, selfCertainty, entropy, logprob|null, validCount, threads?) → Promise<void>
Napi::Value ForwardAsync(const Napi::CallbackInfo& info);

// backward(dtype, logits, rows, vocab, ids|null, invTemperature, logsumexp, validCount,
//          gLogprob|null, gSelfCertainty|null, out, threads?) → Promise<void>
Napi::Value BackwardAsync(const Napi::CallbackInfo& info);

// readBandwidth(bytes, samples, threads?) → Promise<number[]>: milliseconds per parallel read
// pass over `bytes` of memory (readBandwidthMs).
Napi::Value ReadBandwidthAsync(const Napi::CallbackInfo& info);

}  // namespace intuitor
