// lenet.h — LeNet: the LeNet-style CNN of the data-multiplexing paper's MNIST experiments
// (/work/shared/PAPER.md §1.7), on 20x20 images (MNIST centre-cropped from 28x28).
//
//   x (B, c_in, 20, 20)
//   C1 conv c_in -> c1, 3x3  -> tanh -> maxpool 2   (B, c1, 18, 18) -> (B, c1, 9, 9)
//   C3 conv c1 -> 16, 4x4    -> tanh -> maxpool 2   (B, 16, 6, 6)   -> (B, 16, 3, 3)
//   C5 conv 16 -> 120, 3x3   -> tanh                (B, 120, 1, 1)  -> flatten (B, 120)
//   F6 Linear 120 -> 84      -> tanh                features(x): (B, 84)
//   OL Linear 84 -> classes                         forward(x): (B, classes), no final activation
//
// Parameter names (the PyTorch fixture builds a module with the same attribute names):
//   c1.weight (c1, c_in, 3, 3)  c1.bias (c1)
//   c3.weight (16, c1, 4, 4)    c3.bias (16)
//   c5.weight (120, 16, 3, 3)   c5.bias (120)
//   f6.weight (84, 120)         f6.bias (84)
//   ol.weight (classes, 84)     ol.bias (classes)
// All initialised as nn.Conv2d / nn.Linear, in that order, from `gen`. The paper's single-instance
// reference uses c1 = 6; its multiplexed backbone uses c1 = 10 and feeds features() to per-instance
// demultiplexers before OL. The paper's MSE-on-±1-targets recipe applies tanh to forward()'s output
// itself; forward() returns the raw OL logits (for cross_entropy).
// What this is not: a general LeNet for other image sizes (the input must be 20x20).
#pragma once

#include <memory>

#include "nn/conv.h"
#include "nn/layers.h"

namespace muxnet::nn {

class LeNet : public Module {
 public:
  explicit LeNet(int64_t in_channels = 1, int64_t c1_channels = 6, int64_t num_classes = 10,
                 Generator* gen = nullptr);
  Tensor features(const Tensor& x) const;  // x: (B, in_channels, 20, 20) -> (B, 84), tanh'd F6 output
  Tensor forward(const Tensor& x) const;   // x: (B, in_channels, 20, 20) -> (B, num_classes) logits

  static constexpr int64_t kImageSize = 20, kC3 = 16, kC5 = 120, kF6 = 84;
  int64_t in_channels, c1_channels, num_classes;
  std::shared_ptr<Conv2d> c1, c3, c5;
  std::shared_ptr<Linear> f6, ol;
};

}  // namespace muxnet::nn
