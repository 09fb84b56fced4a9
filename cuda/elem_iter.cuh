// elem_iter.cuh — the elementwise launch machinery shared by copy.cu and elementwise.cu: one dense
// kernel, one strided kernel, and the host launcher that picks between them.
//
// An op is a functor F with a __device__ `Out operator()(In...) const` (no device lambdas: the build
// does not pass --extended-lambda). launch_elementwise<F, Out, In...>(it, f, name) computes
// out = f(in...) for every element of an ElemIter built on the host by make_elem_iter(out, {&in...})
// (tensor/iter.h: broadcast strides in BYTES, size-1 dims dropped, mergeable dims coalesced):
//   - dense path: after coalescing every operand is one run with element-size strides (or a single
//     element): plain out[i] = f(in[i]...);
//   - strided path: each thread turns its linear index into per-operand byte offsets
//     (element_offsets below). One 1-d run (e.g. a broadcast scalar, stride 0) needs no division.
// Every element is computed by exactly one thread, so results are deterministic.
//
// What this is not: vectorised (float4) loads, or a kernel that fuses several ops.
#pragma once

#include <cstdint>
#include <utility>

#include "cuda/common.cuh"
#include "tensor/iter.h"

namespace muxnet::cuda {

// Offsets of the element with row-major index `linear` over g.shape[0 .. g.ndim), for the first K
// operands of g: off[k] = sum_d index_d * g.strides[k][d] (in whatever unit g's strides are in).
// Geom is any struct with `int ndim; int64_t shape[kMaxDims]; int64_t strides[K'][kMaxDims]` (K' >= K):
// ElemIter, or reduce.cu's nests. The loops are unrolled over kMaxDims with a guard so that every
// array index is a constant and g stays in the kernel's parameter space (no local-memory copy).
// Dim 0 needs no division: what is left of the index after the inner dims is its index.
template <int K, typename Idx, typename Geom>
__device__ __forceinline__ void linear_to_offsets(const Geom& g, Idx linear, int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 1; --d) {
    if (d < g.ndim) {
      const Idx size = Idx(g.shape[d]);
      const Idx q = linear / size;
      const int64_t r = int64_t(linear - q * size);
      linear = q;
#pragma unroll
      for (int k = 0; k < K; ++k) off[k] += r * g.strides[k][d];
    }
  }
  if (g.ndim > 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += int64_t(linear) * g.strides[k][0];
  }
}

// linear_to_offsets with 32-bit division whenever the index space allows it (64-bit integer division
// is emulated on the GPU and several times slower). `total` is the number of elements of g's shape;
// the branch is uniform across the grid.
template <int K, typename Geom>
__device__ __forceinline__ void element_offsets(const Geom& g, int64_t total, int64_t linear, int64_t (&off)[K]) {
  if (total <= int64_t(UINT32_MAX)) {
    linear_to_offsets<K>(g, uint32_t(linear), off);
  } else {
    linear_to_offsets<K>(g, uint64_t(linear), off);
  }
}

// out = f(in...) at byte offsets off[0] (out), off[1 + i] (input i).
template <typename F, typename Out, typename... In, size_t... I>
__device__ __forceinline__ void apply_at(const F& f, const ElemIter& it, const int64_t* off,
                                         std::index_sequence<I...>) {
  *reinterpret_cast<Out*>(it.data[0] + off[0]) = f(*reinterpret_cast<const In*>(it.data[I + 1] + off[I + 1])...);
}

// Every operand dense (same index i everywhere). No __restrict__: out may alias an input (in-place ops).
template <typename F, typename Out, typename... In>
__global__ void elementwise_dense_kernel(int64_t n, F f, Out* out, const In*... in) {
  for (int64_t i = grid_first(); i < n; i += grid_step()) out[i] = f(in[i]...);
}

// Any strides and broadcasts: offsets from the linear index (see element_offsets).
template <typename F, typename Out, typename... In>
__global__ void elementwise_strided_kernel(ElemIter it, F f) {
  constexpr int K = 1 + int(sizeof...(In));
  for (int64_t i = grid_first(); i < it.numel; i += grid_step()) {
    int64_t off[K];
    element_offsets<K>(it, it.numel, i, off);
    apply_at<F, Out, In...>(f, it, off, std::index_sequence_for<In...>{});
  }
}

// ---------------------------------------------------------------- launchers

// True when every operand is one run of element-size strides (or the iteration is one element).
template <typename Out, typename... In>
bool elem_iter_is_dense(const ElemIter& it) {
  if (it.ndim == 0) return true;
  if (it.ndim > 1) return false;
  const int64_t sizes[] = {int64_t(sizeof(Out)), int64_t(sizeof(In))...};
  for (int k = 0; k < 1 + int(sizeof...(In)); ++k) {
    if (it.strides[k][0] != sizes[k]) return false;
  }
  return true;
}

template <typename F, typename Out, typename... In, size_t... I>
void launch_elementwise_dense(const ElemIter& it, const F& f, std::index_sequence<I...>) {
  elementwise_dense_kernel<F, Out, In...><<<grid_for(it.numel), kBlock, 0, stream()>>>(
      it.numel, f, reinterpret_cast<Out*>(it.data[0]), reinterpret_cast<const In*>(it.data[I + 1])...);
}

// out = f(in...) over it (operand 0 = out, then the inputs in order, as make_elem_iter built it).
// `name` is what a failed launch reports. Nothing is launched for numel == 0.
template <typename F, typename Out, typename... In>
void launch_elementwise(const ElemIter& it, const F& f, const char* name) {
  if (it.numel == 0) return;
  MUXNET_CHECK(it.noperands == 1 + int(sizeof...(In)), name, ": elementwise launch expected ",
               1 + int(sizeof...(In)), " operands, got ", it.noperands);
  if (elem_iter_is_dense<Out, In...>(it)) {
    launch_elementwise_dense<F, Out, In...>(it, f, std::index_sequence_for<In...>{});
  } else {
    elementwise_strided_kernel<F, Out, In...><<<grid_for(it.numel), kBlock, 0, stream()>>>(it, f);
  }
  CUDA_CHECK_LAUNCH(name);
}

}  // namespace muxnet::cuda
