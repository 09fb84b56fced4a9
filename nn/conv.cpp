// conv.cpp — Conv2d and MaxPool2d (nn/conv.h).
#include "nn/conv.h"

#include <cmath>

namespace muxnet::nn {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool with_bias, Generator* gen)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  MUXNET_CHECK(in > 0 && out > 0, "Conv2d: channel counts must be positive, got in_channels=", in,
               " out_channels=", out);
  MUXNET_CHECK(k > 0, "Conv2d: kernel_size must be positive, got ", k);
  MUXNET_CHECK(s > 0, "Conv2d: stride must be positive, got ", s);
  MUXNET_CHECK(p >= 0, "Conv2d: padding must be >= 0, got ", p);
  // fan_in = C * k * k: the number of inputs each output element sums.
  const double bound = 1.0 / std::sqrt(double(in * k * k));
  weight = register_parameter("weight", uniform_init({out, in, k, k}, bound, gen));
  if (with_bias) bias = register_parameter("bias", uniform_init({out}, bound, gen));
}

Tensor Conv2d::forward(const Tensor& x) const {
  MUXNET_CHECK(x.defined() && x.ndim() == 4 && x.size(1) == in_channels, "Conv2d: expected input (B, ",
               in_channels, ", H, W), got ", x.defined() ? x.shape().str() : "an undefined tensor");
  return conv2d(x, weight, bias, stride, padding);
}

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p) : kernel_size(k), stride(s == 0 ? k : s), padding(p) {
  MUXNET_CHECK(k > 0, "MaxPool2d: kernel_size must be positive, got ", k);
  MUXNET_CHECK(s >= 0, "MaxPool2d: stride must be positive (or 0 for the kernel size), got ", s);
  MUXNET_CHECK(p >= 0 && 2 * p <= k, "MaxPool2d: padding must be in [0, kernel_size / 2], got padding ", p,
               " for kernel_size ", k);
}

Tensor MaxPool2d::forward(const Tensor& x) const {
  MUXNET_CHECK(x.defined() && x.ndim() == 4, "MaxPool2d: expected input (B, C, H, W), got ",
               x.defined() ? x.shape().str() : "an undefined tensor");
  return max_pool2d(x, kernel_size, stride, padding);
}

}  // namespace muxnet::nn
