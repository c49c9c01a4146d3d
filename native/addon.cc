// Registers the exports of the native CPU backend (build/Release/intuitor_native.node), loaded by
// src/native/addon.ts: the asynchronous token-statistics forward/backward (token_stats_worker.h,
// matching src/ops/token-stats/reference.ts), a memory read-bandwidth probe (the forward's
// ceiling), the SIMD kernels chosen for this CPU, the default thread count, and a capture of
// file descriptor 2 (stderr_capture.h) that keeps Dawn's harmless warnings off the console.
#include <napi.h>

#include "stderr_capture.h"
#include "token_stats.h"
#include "token_stats_worker.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("forward", Napi::Function::New(env, intuitor::ForwardAsync, "forward"));
  exports.Set("backward", Napi::Function::New(env, intuitor::BackwardAsync, "backward"));
  exports.Set("readBandwidth", Napi::Function::New(env, intuitor::ReadBandwidthAsync, "readBandwidth"));
  exports.Set("simd", Napi::String::New(env, intuitor::simdName()));
  exports.Set("hardwareConcurrency", Napi::Number::New(env, intuitor::defaultThreadCount()));
  exports.Set("beginStderrCapture", Napi::Function::New(env, intuitor::BeginStderrCapture, "beginStderrCapture"));
  exports.Set("endStderrCapture", Napi::Function::New(env, intuitor::EndStderrCapture, "endStderrCapture"));
  return exports;
}

}  // namespace

NODE_API_MODULE(intuitor_native, Init)
