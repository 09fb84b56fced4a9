// register.cu — fills the CUDA column of the dispatch table.
//
// The CUDA kernels arrive with the CUDA-backend issue; until then this file only proves that the
// backend compiles and links (make builds cuda/ whenever nvcc is present), and every CUDA lookup
// fails with "<op>: no CUDA kernel (built without CUDA?)".
#include "tensor/dispatch.h"

namespace muxnet {

void register_cuda_kernels() {}

}  // namespace muxnet
