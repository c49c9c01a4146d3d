// Captures what is written to file descriptor 2 during a synchronous call. Dawn prints warnings
// about the adapter's limits there with fprintf while it discovers adapters, out of JavaScript's
// reach; src/gpu/dawn-stderr.ts wraps that call, drops the known harmless lines and passes every
// other line on.
#include "stderr_capture.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace intuitor {

namespace {

FILE* capture = nullptr;  // the temporary file fd 2 points at while a capture is open
int savedStderr = -1;     // the real fd 2 meanwhile

}  // namespace

Napi::Value BeginStderrCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (capture != nullptr) throw Napi::Error::New(env, "beginStderrCapture: a capture is already open");
  std::fflush(stderr);
  FILE* file = std::tmpfile();
  if (file == nullptr) throw Napi::Error::New(env, "beginStderrCapture: cannot create a temporary file");
  int saved = dup(STDERR_FILENO);
  if (saved < 0 || dup2(fileno(file), STDERR_FILENO) < 0) {
    if (saved >= 0) close(saved);
    std::fclose(file);
    throw Napi::Error::New(env, "beginStderrCapture: cannot redirect file descriptor 2");
  }
  capture = file;
  savedStderr = saved;
  return env.Undefined();
}

Napi::Value EndStderrCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (capture == nullptr) throw Napi::Error::New(env, "endStderrCapture: no capture is open");
  std::fflush(stderr);
  dup2(savedStderr, STDERR_FILENO);
  close(savedStderr);
  savedStderr = -1;
  std::string text;
  std::rewind(capture);
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, capture)) > 0) text.append(chunk, n);
  std::fclose(capture);
  capture = nullptr;
  return Napi::String::New(env, text);
}

}  // namespace intuitor
