// schedule.cpp — LR schedules and gradient-norm clipping (see schedule.h).
#include "nn/schedule.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace muxnet::nn {

LRSchedule LRSchedule::constant(double lr) {
  MUXNET_CHECK(lr >= 0.0, "LRSchedule::constant: invalid learning rate ", lr);
  return LRSchedule(Kind::Constant, lr, 0, 0);
}

LRSchedule LRSchedule::linear_warmup(double peak_lr, int64_t warmup_steps, int64_t total_steps) {
  MUXNET_CHECK(peak_lr >= 0.0, "LRSchedule::linear_warmup: invalid learning rate ", peak_lr);
  MUXNET_CHECK(warmup_steps >= 0 && total_steps >= 0, "LRSchedule::linear_warmup: step counts must be >= 0, got warmup ",
               warmup_steps, " and total ", total_steps);
  return LRSchedule(Kind::LinearWarmup, peak_lr, warmup_steps, total_steps);
}

double LRSchedule::lr_at(int64_t step) const {
  MUXNET_CHECK(step >= 0, "LRSchedule::lr_at: negative step ", step);
  if (kind_ == Kind::Constant) return lr_;
  // HF's lr_lambda, multiplied into the base lr as LambdaLR does.
  double factor;
  if (step < warmup_) {
    factor = double(step) / double(std::max<int64_t>(1, warmup_));
  } else {
    factor = std::max(0.0, double(total_ - step) / double(std::max<int64_t>(1, total_ - warmup_)));
  }
  return lr_ * factor;
}

namespace {

// The gradients to clip: the arena when packed (one pass), else each defined gradient.
std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> seen, out;
  for (const Tensor& p : params) {
    MUXNET_CHECK(p.defined(), "clip_grad_norm: undefined parameter");
    bool dup = false;  // a tied parameter listed twice has one gradient: count it once
    for (const Tensor& q : seen) dup = dup || q.is_same(p);
    if (dup) continue;
    seen.push_back(p);
    Tensor g = p.grad();
    if (g.defined()) out.push_back(g);
  }
  return out;
}

std::vector<Tensor> grads_of(const Module& module) {
  if (module.packed()) return {module.grad_arena()};
  return grads_of(module.parameters());
}

double norm_of(const std::vector<Tensor>& grads) {
  double sum = 0.0;
  for (const Tensor& g : grads) {
    MUXNET_CHECK(is_floating(g.dtype()), "clip_grad_norm: gradient must be floating, got ", g.dtype());
    Tensor c = g.contiguous();
    sum += kernel<OpId::sum_squares>(c.device())(c);
  }
  return std::sqrt(sum);
}

double clip(const std::vector<Tensor>& grads, double max_norm) {
  MUXNET_CHECK(max_norm >= 0.0, "clip_grad_norm: max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  const double norm = norm_of(grads);
  const double coef = max_norm / (norm + 1e-6);
  if (!(coef >= 1.0)) {  // torch multiplies by min(coef, 1); a NaN coefficient propagates as there
    for (const Tensor& g : grads) ops::binary_(BinaryOp::Mul, g, full(Shape(), coef, g.dtype(), g.device()));
  }
  return norm;
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) { return clip(grads_of(params), max_norm); }
double clip_grad_norm(const Module& module, double max_norm) { return clip(grads_of(module), max_norm); }

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  return norm_of(grads_of(params));
}
double grad_norm(const Module& module) {
  NoGradGuard no_grad;
  return norm_of(grads_of(module));
}

}  // namespace muxnet::nn
