// grad_mode.h — the switch that tells whether operations are being recorded for autograd.
//
// The flag lives in the tensor layer because Tensor's own view methods (reshape, transpose, narrow,
// expand, ...) must know whether to record themselves: they call detail::record_view(), which the
// autograd engine implements. The tensor layer never includes autograd/; the hook is a function
// pointer that autograd installs the first time a tensor is made to require grad.
#pragma once

#include <functional>

namespace muxnet {

class Tensor;

// True unless a NoGradGuard is alive on this thread.
bool grad_enabled();
void set_grad_enabled(bool enabled);

// Nothing is recorded while a NoGradGuard is alive: inference allocates no graph.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace detail {
// Maps the gradient of a view's output to the gradient of its source.
using ViewBackward = std::function<Tensor(const Tensor& grad_out)>;
using RecordViewFn = void (*)(const Tensor& src, const Tensor& out, const char* name, ViewBackward backward);
// Installed by autograd/engine.cpp; null until some tensor requires grad.
extern RecordViewFn record_view_hook;
}  // namespace detail

}  // namespace muxnet
