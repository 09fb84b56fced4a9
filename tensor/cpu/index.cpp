// index.cpp — placeholder, being written.
#include "tensor/cpu/kernels.h"
namespace muxnet {
void register_cpu_index() {}
}  // namespace muxnet
