// init.cpp — seeded initialisers.
#include "nn/init.h"

namespace muxnet::nn {

Tensor uniform_init(const Shape& shape, double bound, Generator* gen, DType dtype) {
  return rand(shape, dtype, gen, -bound, bound);
}

Tensor normal_init(const Shape& shape, double std, Generator* gen, DType dtype) {
  return randn(shape, dtype, gen, 0.0, std);
}

}  // namespace muxnet::nn
