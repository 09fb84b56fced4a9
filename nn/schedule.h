// schedule.h — learning-rate schedules and global gradient-norm clipping.
//
// LRSchedule::lr_at(step) is the learning rate of optimizer step `step` (0-based: the first update
// uses lr_at(0)). This matches Hugging Face's get_linear_schedule_with_warmup used as intended with
// torch's LambdaLR (scheduler.step() after each optimizer.step()):
//   linear_warmup(lr, W, T):  step < W: lr * step / max(1, W)     (so step 0 trains with lr 0 when W > 0)
//                             else:     lr * max(0, (T - step) / max(1, T - W))   (0 from step T on)
// apply(opt) sets opt's lr for its next step, lr_at(opt.step_count()); after load_state() the restored
// step count puts the schedule where it was.
//
// clip_grad_norm follows torch.nn.utils.clip_grad_norm_ (L2 norm): the total norm over every gradient
// is sqrt(sum of squares), accumulated in f64 (deterministic for any thread count); when
// coef = max_norm / (norm + 1e-6) is below 1 every gradient is multiplied by coef (rounded to the
// gradients' dtype). It returns the norm before clipping. Parameters without a gradient are skipped.
// A packed module is one pass over the gradient arena. As torch (error_if_nonfinite=False), a NaN or
// infinite norm is returned and the gradients are scaled by the resulting NaN or 0 coefficient.
//
// What this is not: cosine or step schedules, other norm types, per-parameter-group clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/module.h"
#include "nn/optim.h"

namespace muxnet::nn {

class LRSchedule {
 public:
  static LRSchedule constant(double lr);
  static LRSchedule linear_warmup(double peak_lr, int64_t warmup_steps, int64_t total_steps);
  double lr_at(int64_t step) const;
  void apply(Optimizer& opt) const { opt.set_lr(lr_at(opt.step_count())); }

 private:
  enum class Kind { Constant, LinearWarmup };
  LRSchedule(Kind kind, double lr, int64_t warmup, int64_t total) : kind_(kind), lr_(lr), warmup_(warmup), total_(total) {}
  Kind kind_;
  double lr_;
  int64_t warmup_, total_;
};

// Returns the L2 norm of all gradients (before clipping); see the header comment.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const Module& module, double max_norm);
// The norm alone (no clipping).
double grad_norm(const std::vector<Tensor>& params);
double grad_norm(const Module& module);

}  // namespace muxnet::nn
