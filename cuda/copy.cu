// copy.cu — CUDA kernels of OpId::copy (strided, broadcasting copy with dtype conversion) and OpId::fill.
// The oracle is tensor/cpu/copy.cpp: dst = static_cast<D>(src) element by element, src broadcast to
// dst's shape; fill writes static_cast<T>(value) through dst's strides.
//
// Fast paths: a same-dtype copy of two dense runs is one cudaMemcpyAsync (device to device), and a fill
// whose value is all-zero bits over a dense run is one cudaMemsetAsync. Everything else goes through
// launch_elementwise (cuda/elem_iter.cuh). Conversions are C++ static_casts on the device, which round
// exactly as the host does for the in-range values the CPU kernel defines (float->int truncates toward
// zero; int64->float and double->float round to nearest even).
//
// What this is not: a host<->device copy (the runtime's copy_from_host / copy_to_host do that); both
// tensors here are on the GPU (Tensor::copy_ checks it).
#include <cstring>
#include <type_traits>

#include "cuda/elem_iter.cuh"
#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

template <typename D, typename S> struct CastFn {
  __device__ D operator()(S s) const { return static_cast<D>(s); }
};

template <typename T> struct FillFn {
  T value;
  __device__ T operator()() const { return value; }
};

// ---------------------------------------------------------------- launchers

template <typename D, typename S>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const ElemIter it = make_elem_iter(dst, {&src});
  if (it.numel == 0) return;
  if constexpr (std::is_same_v<D, S>) {
    if (cuda::elem_iter_is_dense<D, S>(it)) {
      CUDA_CHECK(cudaMemcpyAsync(it.data[0], it.data[1], size_t(it.numel) * sizeof(D), cudaMemcpyDeviceToDevice,
                                 cuda::stream()));
      return;
    }
  }
  cuda::launch_elementwise<CastFn<D, S>, D, S>(it, CastFn<D, S>{}, "copy");
}

// src broadcast to dst (op layer checked); dtypes may differ.
void copy_cuda(const Tensor& src, const Tensor& dst) {
  dispatch_all(dst.dtype(), "copy", [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype(), "copy", [&](auto st) {
      using S = typename decltype(st)::type;
      copy_typed<D, S>(src, dst);
    });
  });
}

void fill_cuda(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = static_cast<T>(value);
    const ElemIter it = make_elem_iter(dst, {});
    if (it.numel == 0) return;
    const T zero{};
    // NOTE: compared as bytes, not as values: -0.0 == 0.0 but has the sign bit set.
    if (std::memcmp(&v, &zero, sizeof(T)) == 0 && cuda::elem_iter_is_dense<T>(it)) {
      CUDA_CHECK(cudaMemsetAsync(it.data[0], 0, size_t(it.numel) * sizeof(T), cuda::stream()));
      return;
    }
    cuda::launch_elementwise<FillFn<T>, T>(it, FillFn<T>{v}, "fill");
  });
}

}  // namespace

void register_cuda_copy() {
  register_kernel<OpId::copy>(Device::CUDA, copy_cuda);
  register_kernel<OpId::fill>(Device::CUDA, fill_cuda);
}

}  // namespace muxnet
