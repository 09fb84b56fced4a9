// register.cpp — fills the CPU column of the dispatch table.
#include "tensor/cpu/kernels.h"

namespace muxnet {

void register_cpu_kernels() {
  register_cpu_copy();
  register_cpu_elementwise();
  register_cpu_reduce();
  register_cpu_matmul();
  register_cpu_softmax();
  register_cpu_layernorm();
  register_cpu_index();
  register_cpu_conv();
  register_cpu_pool();
  register_cpu_optim();
}

#ifndef MUXNET_WITH_CUDA
// Built without nvcc: the CUDA column stays empty and every lookup says so.
void register_cuda_kernels() {}
#endif

}  // namespace muxnet
