// Napi::AsyncWorker wrappers of the token-statistics forward and backward (token_stats.h; the
// semantics are those of src/ops/token-stats/reference.ts) and of the read-bandwidth probe.
// Arguments are checked on the JavaScript thread: dtype, typed-array kinds, exact lengths (rows,
// rows·vocab) and ids within [0, vocab), so the kernels never read or write out of bounds. Every
// typed array is held by a persistent reference until the worker completes, so the garbage
// collector cannot free a buffer that the worker threads (a libuv pool thread plus the kernel's
// std::threads) still use.
#include "token_stats_worker.h"

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "token_stats.h"

namespace intuitor {
namespace {

const char* typedArrayName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

std::string describe(const Napi::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsUndefined()) return "undefined";
  if (v.IsTypedArray()) {
    const Napi::TypedArray a = v.As<Napi::TypedArray>();
    return std::string(typedArrayName(a.TypedArrayType())) + " of length " + std::to_string(a.ElementLength());
  }
  if (v.IsNumber()) return std::to_string(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "string \"" + v.As<Napi::String>().Utf8Value() + "\"";
  return "a value of another type";
}

// Reads the positional arguments of one call, collecting references to the typed arrays.
class Arguments {
 public:
  explicit Arguments(const Napi::CallbackInfo& info) : info_(info), env_(info.Env()) {}

  [[noreturn]] void fail(const std::string& argument, const std::string& expected, const Napi::Value& got) const {
    throw Napi::TypeError::New(env_, argument + ": expected " + expected + ", got " + describe(got));
  }

  DType dtype(size_t i) const {
    const Napi::Value v = info_[i];
    if (v.IsString()) {
      const std::string s = v.As<Napi::String>().Utf8Value();
      if (s == "f32") return DType::F32;
      if (s == "f16") return DType::F16;
      if (s == "bf16") return DType::BF16;
    }
    fail("dtype", "one of f32, f16, bf16", v);
  }

  size_t count(size_t i, const char* argument) const {
    const Napi::Value v = info_[i];
    if (v.IsNumber()) {
      const double d = v.As<Napi::Number>().DoubleValue();
      if (d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d) return size_t(d);
    }
    fail(argument, "a non-negative integer", v);
  }

  double number(size_t i, const char* argument) const {
    const Napi::Value v = info_[i];
    if (!v.IsNumber()) fail(argument, "a number", v);
    return v.As<Napi::Number>().DoubleValue();
  }

  unsigned threads(size_t i) const {
    const Napi::Value v = info_[i];
    if (v.IsUndefined() || v.IsNull()) return 0;
    if (v.IsNumber()) {
      const double d = v.As<Napi::Number>().DoubleValue();
      if (d >= 0 && d <= 4096 && std::floor(d) == d) return unsigned(d);
    }
    fail("threads", "an integer in [0, 4096] (0 = all hardware threads)", v);
  }

  // The data of a typed array of `type` holding exactly `length` elements, or null when
  // `nullable` and the argument is null/undefined.
  template <typename T>
  T* array(size_t i, const char* argument, napi_typedarray_type type, size_t length, bool nullable) {
    const Napi::Value v = info_[i];
    if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
    const std::string expected = std::string(typedArrayName(type)) + " of length " + std::to_string(length);
    if (!v.IsTypedArray()) fail(argument, expected, v);
    const Napi::TypedArray a = v.As<Napi::TypedArray>();
    if (a.TypedArrayType() != type || a.ElementLength() != length) fail(argument, expected, v);
    // The data pointer, already at the view's first element; unlike ArrayBuffer().Data() this
    // also works for views on a SharedArrayBuffer.
    void* data = nullptr;
    NAPI_THROW_IF_FAILED(env_, napi_get_typedarray_info(env_, a, nullptr, nullptr, &data, nullptr, nullptr), nullptr);
    keepAlive_.push_back(Napi::Persistent(a.As<Napi::Object>()));
    return static_cast<T*>(data);
  }

  std::vector<Napi::ObjectReference> takeReferences() { return std::move(keepAlive_); }

  Napi::Env env() const { return env_; }

 private:
  const Napi::CallbackInfo& info_;
  Napi::Env env_;
  std::vector<Napi::ObjectReference> keepAlive_;
};

// rows·vocab, which must fit in memory (and vocab in the Uint32 validCount).
size_t elements(const Arguments& args, size_t rows, size_t vocab) {
  size_t n;
  if (__builtin_mul_overflow(rows, vocab, &n) || vocab > UINT32_MAX) {
    throw Napi::RangeError::New(args.env(), "rows × vocab (" + std::to_string(rows) + " × " + std::to_string(vocab) +
                                                ") is too large");
  }
  return n;
}

void checkIds(const Arguments& args, const int32_t* ids, size_t rows, size_t vocab) {
  if (!ids) return;
  for (size_t r = 0; r < rows; ++r) {
    if (ids[r] < 0 || size_t(ids[r]) >= vocab) {
      throw Napi::RangeError::New(args.env(), "ids[" + std::to_string(r) + "] = " + std::to_string(ids[r]) +
                                                  " is outside [0, " + std::to_string(vocab) + ")");
    }
  }
}

napi_typedarray_type logitsType(DType dtype) {
  return dtype == DType::F32 ? napi_float32_array : napi_uint16_array;
}

// Runs Run() on a libuv pool thread, then settles its promise on the JavaScript thread with
// Result() (or the exception's message); holds the references until then.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  PromiseWorker(Napi::Env env, const char* name, std::vector<Napi::ObjectReference> keepAlive, unsigned threads)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        keepAlive_(std::move(keepAlive)),
        threads_(threads) {}

  virtual void Run(unsigned threads) = 0;
  virtual Napi::Value Result() { return Env().Undefined(); }

 private:
  void Execute() override {
    try {
      Run(threads_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Result()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> keepAlive_;
  unsigned threads_;
};

// A token-statistics kernel run on a job whose arrays the worker keeps alive.
template <typename Job, void (*Kernel)(const Job&, unsigned)>
class JobWorker final : public PromiseWorker {
 public:
  JobWorker(Napi::Env env, const char* name, std::vector<Napi::ObjectReference> keepAlive, const Job& job, unsigned threads)
      : PromiseWorker(env, name, std::move(keepAlive), threads), job_(job) {}

 private:
  void Run(unsigned threads) override { Kernel(job_, threads); }
  Job job_;
};

using ForwardWorker = JobWorker<ForwardJob, tokenStatsForward>;
using BackwardWorker = JobWorker<BackwardJob, tokenStatsBackward>;

class ReadBandwidthWorker final : public PromiseWorker {
 public:
  ReadBandwidthWorker(Napi::Env env, size_t bytes, unsigned samples, unsigned threads)
      : PromiseWorker(env, "intuitor.readBandwidth", {}, threads), bytes_(bytes), samples_(samples) {}

 private:
  void Run(unsigned threads) override { ms_ = readBandwidthMs(bytes_, samples_, threads); }
  Napi::Value Result() override {
    Napi::Array out = Napi::Array::New(Env(), ms_.size());
    for (size_t i = 0; i < ms_.size(); ++i) out.Set(uint32_t(i), Napi::Number::New(Env(), ms_[i]));
    return out;
  }
  size_t bytes_;
  unsigned samples_;
  std::vector<double> ms_;
};

// Arguments 0–5, shared by the forward and the backward: dtype, logits, rows, vocab, ids, 1/T.
// Returns rows · vocab.
template <typename Job>
size_t readRowInputs(Arguments& args, Job& job) {
  job.dtype = args.dtype(0);
  job.rows = args.count(2, "rows");
  job.vocab = args.count(3, "vocab");
  const size_t n = elements(args, job.rows, job.vocab);
  job.logits = args.array<const void>(1, "logits", logitsType(job.dtype), n, false);
  job.ids = args.array<const int32_t>(4, "ids", napi_int32_array, job.rows, true);
  checkIds(args, job.ids, job.rows, job.vocab);
  job.invTemperature = args.number(5, "invTemperature");
  return n;
}

// Queues a worker (which deletes itself when done) and returns its promise.
Napi::Value queue(PromiseWorker* worker) {
  const Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace

Napi::Value ForwardAsync(const Napi::CallbackInfo& info) {
  Arguments args(info);
  ForwardJob job{};
  readRowInputs(args, job);
  job.logsumexp = args.array<float>(6, "logsumexp", napi_float32_array, job.rows, false);
  job.selfCertainty = args.array<float>(7, "selfCertainty", napi_float32_array, job.rows, false);
  job.entropy = args.array<float>(8, "entropy", napi_float32_array, job.rows, false);
  job.logprob = args.array<float>(9, "logprob", napi_float32_array, job.rows, job.ids == nullptr);
  job.validCount = args.array<uint32_t>(10, "validCount", napi_uint32_array, job.rows, false);
  const unsigned threads = args.threads(11);
  return queue(new ForwardWorker(info.Env(), "intuitor.tokenStatsForward", args.takeReferences(), job, threads));
}

Napi::Value BackwardAsync(const Napi::CallbackInfo& info) {
  Arguments args(info);
  BackwardJob job{};
  const size_t n = readRowInputs(args, job);
  job.logsumexp = args.array<const float>(6, "logsumexp", napi_float32_array, job.rows, false);
  job.validCount = args.array<const uint32_t>(7, "validCount", napi_uint32_array, job.rows, false);
  job.gLogprob = args.array<const float>(8, "gLogprob", napi_float32_array, job.rows, true);
  job.gSelfCertainty = args.array<const float>(9, "gSelfCertainty", napi_float32_array, job.rows, true);
  job.out = args.array<float>(10, "out", napi_float32_array, n, false);
  const unsigned threads = args.threads(11);
  return queue(new BackwardWorker(info.Env(), "intuitor.tokenStatsBackward", args.takeReferences(), job, threads));
}

Napi::Value ReadBandwidthAsync(const Napi::CallbackInfo& info) {
  const Arguments args(info);
  const size_t bytes = args.count(0, "bytes");
  const size_t samples = args.count(1, "samples");
  if (bytes < sizeof(float) || samples == 0 || samples > 10000) {
    throw Napi::RangeError::New(info.Env(), "readBandwidth: expected bytes ≥ 4 and 1 ≤ samples ≤ 10000");
  }
  return queue(new ReadBandwidthWorker(info.Env(), bytes, unsigned(samples), args.threads(2)));
}

}  // namespace intuitor
