#pragma once

#include <napi.h>

namespace intuitor {

// beginStderrCapture(): points file descriptor 2 at a temporary file (one capture at a time).
Napi::Value BeginStderrCapture(const Napi::CallbackInfo& info);
// endStderrCapture(): restores file descriptor 2 and returns what was written meanwhile.
Napi::Value EndStderrCapture(const Napi::CallbackInfo& info);

}  // namespace intuitor
