// loss.h — loss modules: CrossEntropyLoss and MSELoss over muxnet::cross_entropy / mse_loss.
//
// CrossEntropyLoss(ignore_index) matches torch.nn.CrossEntropyLoss(ignore_index=..., reduction='mean')
// with class-index targets for logits (N, C) and targets (N). Deliberate differences (those of
// muxnet::cross_entropy): for more dims the class dim is the LAST one (logits (..., C), targets
// (...), as sequence models produce them) where PyTorch expects it at dim 1; and when every target is
// ignored the loss is 0 rather than NaN. MSELoss matches torch.nn.MSELoss(reduction='mean'): pred and
// target must have the same shape. Both return a 0-d tensor and carry no parameters.
// What these are not: class weights, label smoothing, probability targets, sum/none reductions.
#pragma once

#include "autograd/functions.h"
#include "nn/module.h"

namespace muxnet::nn {

class CrossEntropyLoss : public Module {
 public:
  explicit CrossEntropyLoss(int64_t ignore_index = -100) : ignore_index(ignore_index) {}
  // logits: (..., C) f32/f64; targets: (...) i32/i64 in [0, C) or ignore_index -> 0-d
  Tensor forward(const Tensor& logits, const Tensor& targets) const;
  int64_t ignore_index;
};

class MSELoss : public Module {
 public:
  // pred, target: the same shape and dtype -> 0-d mean of the squared differences
  Tensor forward(const Tensor& pred, const Tensor& target) const;
};

}  // namespace muxnet::nn
