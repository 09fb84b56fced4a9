// loss.cpp — CrossEntropyLoss and MSELoss (nn/loss.h). The functions validate shapes and dtypes and
// name themselves in their errors.
#include "nn/loss.h"

namespace muxnet::nn {

Tensor CrossEntropyLoss::forward(const Tensor& logits, const Tensor& targets) const {
  return cross_entropy(logits, targets, ignore_index);
}

Tensor MSELoss::forward(const Tensor& pred, const Tensor& target) const { return mse_loss(pred, target); }

}  // namespace muxnet::nn
