// lenet.cpp — LeNet (nn/lenet.h).
#include "nn/lenet.h"

namespace muxnet::nn {

LeNet::LeNet(int64_t in, int64_t c1c, int64_t classes, Generator* gen)
    : in_channels(in), c1_channels(c1c), num_classes(classes) {
  MUXNET_CHECK(in > 0 && c1c > 0 && classes > 0, "LeNet: sizes must be positive, got in_channels=", in,
               " c1=", c1c, " num_classes=", classes);
  c1 = register_module("c1", std::make_shared<Conv2d>(in, c1c, 3, 1, 0, true, gen));
  c3 = register_module("c3", std::make_shared<Conv2d>(c1c, kC3, 4, 1, 0, true, gen));
  c5 = register_module("c5", std::make_shared<Conv2d>(kC3, kC5, 3, 1, 0, true, gen));
  f6 = register_module("f6", std::make_shared<Linear>(kC5, kF6, true, gen));
  ol = register_module("ol", std::make_shared<Linear>(kF6, classes, true, gen));
}

Tensor LeNet::features(const Tensor& x) const {
  MUXNET_CHECK(x.defined() && x.ndim() == 4 && x.size(1) == in_channels && x.size(2) == kImageSize &&
                   x.size(3) == kImageSize,
               "LeNet: expected input (B, ", in_channels, ", ", kImageSize, ", ", kImageSize, "), got ",
               x.defined() ? x.shape().str() : "an undefined tensor");
  Tensor h = max_pool2d(tanh(c1->forward(x)), 2);  // (B, c1, 9, 9)
  h = max_pool2d(tanh(c3->forward(h)), 2);         // (B, 16, 3, 3)
  h = tanh(c5->forward(h));                        // (B, 120, 1, 1)
  return tanh(f6->forward(h.flatten(1)));          // (B, 84)
}

Tensor LeNet::forward(const Tensor& x) const { return ol->forward(features(x)); }

}  // namespace muxnet::nn
