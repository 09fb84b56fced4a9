// register.cu — fills the CUDA column of the dispatch table and installs the CUDA runtime.
//
// Kernels are registered even on a machine without a GPU, so that a missing GPU is reported by the
// runtime ("no CUDA GPU ...") when a CUDA tensor is first allocated, not as a missing kernel.
#include "cuda/common.cuh"

namespace muxnet {

void register_cuda_kernels() {
  register_cuda_runtime();
  register_cuda_copy();
  register_cuda_elementwise();
  register_cuda_reduce();
  register_cuda_matmul();
  register_cuda_softmax();
  register_cuda_layernorm();
  register_cuda_index();
  register_cuda_conv();
  register_cuda_pool();
  register_cuda_optim();
}

}  // namespace muxnet
