// init.h — seeded parameter initialisation, as PyTorch's defaults.
//
// Every layer takes a Generator* (the default generator when null), so a model built after
// manual_seed(s) — or with its own Generator — has the same weights on every run and thread count.
#pragma once

#include "tensor/random.h"

namespace muxnet::nn {

// U(-bound, bound): nn.Linear / nn.Conv2d weights and biases use bound = 1 / sqrt(fan_in)
// (kaiming_uniform with a = sqrt(5), as PyTorch's reset_parameters).
Tensor uniform_init(const Shape& shape, double bound, Generator* gen, DType dtype = DType::F32);
// N(0, std): nn.Embedding uses std = 1.
Tensor normal_init(const Shape& shape, double std, Generator* gen, DType dtype = DType::F32);

}  // namespace muxnet::nn
