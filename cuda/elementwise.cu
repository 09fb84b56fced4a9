// elementwise.cu — placeholder: filled in by the CUDA-backend work (issue 7).
#include "cuda/common.cuh"

namespace muxnet {
void register_cuda_elementwise() {}
}  // namespace muxnet
