// index.cu — CUDA kernels for indexing: embedding (+ backward), index_select / index_add,
// gather / scatter_add. The oracle is tensor/cpu/index.cpp; the semantics are the same:
//
//   embedding:          out[i, k] = weight[idx[i], k]                       weight (V, D), out idx.shape + (D)
//   embedding_backward: grad_weight[idx[i], k] += grad_out[i, k], rows with idx[i] == padding_idx skipped
//   index_select:       out[o, j, k] = x[o, idx[j], k]                      x viewed as (outer, S, inner)
//   index_add:          out[o, idx[j], k] += src[o, j, k]                   out viewed as (outer, S, inner)
//   gather:             out[i] = x[i with i[dim] = idx[i]]                  idx and out the same shape
//   scatter_add:        out[i with i[dim] = idx[i]] += src[i]               idx and src the same shape
//
// Every operand is contiguous (the op layer, tensor/ops_index.cpp, makes it so, and hands the in-place
// ops a contiguous target) and every index is already range-checked. In gather / scatter_add the big
// tensor (x / out) may be larger than idx along every dim but dim, so the offset of element i of idx in
// it is computed from idx's multi-index and the big tensor's own strides, as the CPU does.
//
// Element types: all four dtypes (these ops only copy and add), index types i32 and i64, as on the CPU.
// The accumulating kernels (embedding_backward, index_add, scatter_add) add with atomics because
// indices may repeat; they ACCUMULATE into their destination (never zero it). NOTE: unlike the CPU
// kernels, which add each destination's contributions in index order, float sums over repeated indices
// may differ in the last bits from run to run (atomic order); integer sums are exact.
//
// One thread per element of the smaller (indexed) side, grid-stride, with int64 index math; the last
// dim is the fastest-varying thread index so that rows are read and written coalesced. The
// accumulating kernels take no __restrict__: nothing stops a caller from passing src and out over the
// same storage (a race, as in PyTorch, but not one the compiler should be told cannot happen).
#include <cstdint>

#include "cuda/common.cuh"
#include "tensor/dtype_dispatch.h"

namespace muxnet {

namespace {

// *p += v atomically, for the four element types. i64 goes through the unsigned 64-bit overload:
// two's-complement addition is the same bit operation for signed and unsigned.
__device__ inline void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ inline void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ inline void atomic_add(int32_t* p, int32_t v) { atomicAdd(reinterpret_cast<int*>(p), int(v)); }
__device__ inline void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}

// ---------------------------------------------------------------- embedding

// out: (n, D), t = i*D + k: consecutive threads read consecutive k of one weight row.
template <typename T, typename I>
__global__ void embedding_kernel(const T* __restrict__ weight, const I* __restrict__ idx, T* __restrict__ out,
                                 int64_t total, int64_t D) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t i = t / D, k = t - i * D;
    out[t] = weight[int64_t(idx[i]) * D + k];
  }
}

// grad_out: (n, D) -> grad_weight: (V, D) accumulated; skip is padding_idx (-1: none, never equal to an index).
template <typename T, typename I>
__global__ void embedding_backward_kernel(const T* grad_out, const I* idx, T* grad_weight, int64_t total, int64_t D,
                                          int64_t skip) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t i = t / D, k = t - i * D;
    const int64_t r = int64_t(idx[i]);
    if (r == skip) continue;
    atomic_add(grad_weight + r * D + k, grad_out[t]);
  }
}

// ---------------------------------------------------------------- index_select / index_add

// x: (outer, S, inner), idx: (n), out: (outer, n, inner); t = (o*n + j)*inner + k.
template <typename T, typename I>
__global__ void index_select_kernel(const T* __restrict__ x, const I* __restrict__ idx, T* __restrict__ out,
                                    int64_t total, int64_t S, int64_t n, int64_t inner) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t k = t % inner, oj = t / inner;
    const int64_t j = oj % n, o = oj / n;
    out[t] = x[(o * S + int64_t(idx[j])) * inner + k];
  }
}

// src: (outer, n, inner), idx: (n), out: (outer, S, inner) accumulated; t = (o*n + j)*inner + k.
template <typename T, typename I>
__global__ void index_add_kernel(const T* src, const I* idx, T* out, int64_t total, int64_t S, int64_t n,
                                 int64_t inner) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t k = t % inner, oj = t / inner;
    const int64_t j = oj % n, o = oj / n;
    atomic_add(out + (o * S + int64_t(idx[j])) * inner + k, src[t]);
  }
}

// ---------------------------------------------------------------- gather / scatter_add

// idx's shape and the big tensor's (contiguous) strides, passed by value to the kernels.
struct GatherGeom {
  int nd = 0, dim = 0;
  int64_t size[kMaxDims] = {};        // idx's shape
  int64_t big_stride[kMaxDims] = {};  // contiguous strides of x (gather) / out (scatter_add)
};

// The offset in the big tensor of flat element t of idx, whose index value along dim is v.
__device__ inline int64_t gather_offset(const GatherGeom& g, int64_t t, int64_t v) {
  int64_t off = v * g.big_stride[g.dim];
  for (int d = g.nd - 1; d >= 0; --d) {
    const int64_t c = t % g.size[d];
    t /= g.size[d];
    if (d != g.dim) off += c * g.big_stride[d];
  }
  return off;
}

// idx and out: the same shape; out[t] = x[offset of t with idx[t] along dim].
template <typename T, typename I>
__global__ void gather_kernel(const T* __restrict__ x, const I* __restrict__ idx, T* __restrict__ out,
                              int64_t total, GatherGeom g) {
  MUXNET_GRID_STRIDE(t, total) { out[t] = x[gather_offset(g, t, int64_t(idx[t]))]; }
}

// idx and src: the same shape; out[offset of t with idx[t] along dim] += src[t].
template <typename T, typename I>
__global__ void scatter_add_kernel(const T* src, const I* idx, T* out, int64_t total, GatherGeom g) {
  MUXNET_GRID_STRIDE(t, total) { atomic_add(out + gather_offset(g, t, int64_t(idx[t])), src[t]); }
}

// ---------------------------------------------------------------- launchers

// Product of shape[begin:end].
int64_t span(const Shape& shape, int begin, int end) {
  int64_t n = 1;
  for (int d = begin; d < end; ++d) n *= shape[d];
  return n;
}

// weight: (V, D), idx: (n...), out: (n..., D)
void embedding_cuda(const Tensor& weight, const Tensor& idx, const Tensor& out) {
  const int64_t D = weight.size(1), total = idx.numel() * D;
  if (total == 0) return;
  dispatch_value_index(weight.dtype(), idx.dtype(), "embedding", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    embedding_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        weight.data<T>(), idx.data<I>(), out.data<T>(), total, D);
    CUDA_CHECK_LAUNCH("embedding_kernel");
  });
}

// grad_out: (n..., D), idx: (n...), grad_weight: (V, D) accumulated
void embedding_backward_cuda(const Tensor& grad_out, const Tensor& idx, int64_t padding_idx,
                             const Tensor& grad_weight) {
  const int64_t D = grad_weight.size(1), total = idx.numel() * D;
  if (total == 0) return;
  dispatch_value_index(grad_weight.dtype(), idx.dtype(), "embedding_backward", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    embedding_backward_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        grad_out.data<T>(), idx.data<I>(), grad_weight.data<T>(), total, D, padding_idx);
    CUDA_CHECK_LAUNCH("embedding_backward_kernel");
  });
}

// x: (outer, S, inner), idx: (n), out: (outer, n, inner)
void index_select_cuda(const Tensor& x, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t outer = span(x.shape(), 0, dim), S = x.size(dim), inner = span(x.shape(), dim + 1, x.ndim());
  const int64_t n = idx.numel(), total = outer * n * inner;
  if (total == 0) return;
  dispatch_value_index(x.dtype(), idx.dtype(), "index_select", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    index_select_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        x.data<T>(), idx.data<I>(), out.data<T>(), total, S, n, inner);
    CUDA_CHECK_LAUNCH("index_select_kernel");
  });
}

// src: (outer, n, inner), idx: (n), out: (outer, S, inner) accumulated
void index_add_cuda(const Tensor& src, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t outer = span(out.shape(), 0, dim), S = out.size(dim), inner = span(out.shape(), dim + 1, out.ndim());
  const int64_t n = idx.numel(), total = outer * n * inner;
  if (total == 0) return;
  dispatch_value_index(out.dtype(), idx.dtype(), "index_add", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    index_add_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        src.data<T>(), idx.data<I>(), out.data<T>(), total, S, n, inner);
    CUDA_CHECK_LAUNCH("index_add_kernel");
  });
}

GatherGeom gather_geom(const Tensor& big, int dim, const Tensor& idx) {
  GatherGeom g;
  const Shape strides = contiguous_strides(big.shape());
  g.nd = idx.ndim();
  g.dim = dim;
  for (int d = 0; d < g.nd; ++d) {
    g.size[d] = idx.size(d);
    g.big_stride[d] = strides[d];
  }
  return g;
}

// x: big tensor, idx and out: the same shape
void gather_cuda(const Tensor& x, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t total = idx.numel();
  if (total == 0) return;
  const GatherGeom g = gather_geom(x, dim, idx);
  dispatch_value_index(x.dtype(), idx.dtype(), "gather", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    gather_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        x.data<T>(), idx.data<I>(), out.data<T>(), total, g);
    CUDA_CHECK_LAUNCH("gather_kernel");
  });
}

// src and idx: the same shape, out: big tensor accumulated
void scatter_add_cuda(const Tensor& src, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t total = idx.numel();
  if (total == 0) return;
  const GatherGeom g = gather_geom(out, dim, idx);
  dispatch_value_index(out.dtype(), idx.dtype(), "scatter_add", [&](auto tt, auto it) {
    using T = typename decltype(tt)::type;
    using I = typename decltype(it)::type;
    scatter_add_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        src.data<T>(), idx.data<I>(), out.data<T>(), total, g);
    CUDA_CHECK_LAUNCH("scatter_add_kernel");
  });
}

}  // namespace

void register_cuda_index() {
  register_kernel<OpId::embedding>(Device::CUDA, embedding_cuda);
  register_kernel<OpId::embedding_backward>(Device::CUDA, embedding_backward_cuda);
  register_kernel<OpId::index_select>(Device::CUDA, index_select_cuda);
  register_kernel<OpId::index_add>(Device::CUDA, index_add_cuda);
  register_kernel<OpId::gather>(Device::CUDA, gather_cuda);
  register_kernel<OpId::scatter_add>(Device::CUDA, scatter_add_cuda);
}

}  // namespace muxnet
