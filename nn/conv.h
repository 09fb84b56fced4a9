// conv.h — Conv2d and MaxPool2d modules over the differentiable conv2d / max_pool2d (autograd/functions.h).
//
// Conv2d matches torch.nn.Conv2d with square kernels, one stride and one padding for both spatial
// dims, dilation 1, groups 1 and zero padding: parameters "weight" (out_channels, in_channels, k, k)
// and "bias" (out_channels), both initialised U(-b, b) with b = 1 / sqrt(in_channels * k * k), as
// PyTorch's reset_parameters (kaiming_uniform with a = sqrt(5) gives the same bound for the weight).
// MaxPool2d matches torch.nn.MaxPool2d(kernel, stride, padding) with square windows (stride 0 stands
// for PyTorch's stride=None, i.e. the kernel size), floor mode and no dilation; padding is at most
// half the kernel, as in PyTorch, and padded cells never win the max.
// What these are not: rectangular kernels, dilation, groups, other padding modes, ceil_mode.
#pragma once

#include "autograd/functions.h"
#include "nn/init.h"
#include "nn/module.h"

namespace muxnet::nn {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         bool bias = true, Generator* gen = nullptr);
  // x: (B, in_channels, H, W) -> (B, out_channels, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1)
  Tensor forward(const Tensor& x) const;
  int64_t in_channels, out_channels, kernel_size, stride, padding;
  Tensor weight, bias;  // bias undefined when bias = false
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  // x: (B, C, H, W) -> (B, C, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1)
  Tensor forward(const Tensor& x) const;
  int64_t kernel_size, stride, padding;  // stride is the resolved one (the kernel size when 0 was given)
};

}  // namespace muxnet::nn
