// reduce_plan.h — the host-side planning of a reduction, shared by the CPU kernels
// (tensor/cpu/reduce.cpp) and the CUDA launchers (cuda/reduce.cu), so that both walk the same loop
// nests: x's dims are split into kept dims (one output element per index) and reduced dims, size-1
// dims are dropped, and each group is then sorted by x's stride (largest first) with adjacent dims
// that step through x (and out) as one merged.
//
// ReduceNest is plain data in the layout cuda/elem_iter.cuh's element_offsets reads (ndim, shape,
// strides[operand][dim]), so the CUDA kernels take it by value; its member functions are host-only.
// What this is not: the kernels, nor the choice between their paths (each backend makes its own).
#pragma once

#include <cstdint>
#include <type_traits>

#include "tensor/dispatch.h"
#include "tensor/dtype_dispatch.h"

namespace muxnet {

// A loop nest over up to kMaxDims dims: sizes, and strides IN ELEMENTS of x (strides[0]) and of out
// (strides[1]; 0 for reduced dims).
struct ReduceNest {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[2][kMaxDims] = {};

  int64_t numel() const {
    int64_t m = 1;
    for (int d = 0; d < ndim; ++d) m *= shape[d];
    return m;
  }
  void push(int64_t size, int64_t x_stride, int64_t out_stride) {
    shape[ndim] = size;
    strides[0][ndim] = x_stride;
    strides[1][ndim] = out_stride;
    ++ndim;
  }
  // Drops the innermost dim.
  ReduceNest outer() const {
    ReduceNest o = *this;
    o.ndim = ndim > 0 ? ndim - 1 : 0;
    return o;
  }
  // Orders dims by x's stride, largest first (stable), then merges each dim into its outer neighbour
  // when both x and out step through the pair as through one dim.
  void sort_and_coalesce();
};

// Splits x's dims for a reduction over `dims` (out has the keepdim shape): non-reduced dims go to kept
// (x's and out's strides), reduced ones to red (out stride 0); size-1 dims are dropped from both.
// Returns the number of reduced elements per output (0 over an empty dim). Not yet sorted.
int64_t split_reduce_dims(const Tensor& x, DimMask dims, const Tensor& out, ReduceNest& kept, ReduceNest& red);

// The kept dims of an argmax over `dim` (every other dim of size > 1), sorted and coalesced.
ReduceNest argmax_kept_dims(const Tensor& x, int dim, const Tensor& out);

// "sum", "mean", "max", "min": the op's name in errors.
const char* reduce_op_name(ReduceOp op);

template <ReduceOp op> using ReduceOpTag = std::integral_constant<ReduceOp, op>;

// Calls f(TypeTag<T>{}, ReduceOpTag<op>{}) for x's dtype and the op, so that a backend instantiates its
// reduce_typed<T, op>; throws for mean over an integer dtype and for an unknown op.
template <typename F>
void dispatch_reduce(ReduceOp op, DType dtype, F&& f) {
  dispatch_all(dtype, reduce_op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case ReduceOp::Sum: f(tag, ReduceOpTag<ReduceOp::Sum>{}); return;
      case ReduceOp::Mean:
        if constexpr (std::is_floating_point_v<T>) {
          f(tag, ReduceOpTag<ReduceOp::Mean>{});
          return;
        } else {
          MUXNET_FAIL("mean: expected a floating dtype (f32 or f64), got ", dtype);
        }
      case ReduceOp::Max: f(tag, ReduceOpTag<ReduceOp::Max>{}); return;
      case ReduceOp::Min: f(tag, ReduceOpTag<ReduceOp::Min>{}); return;
      default: MUXNET_FAIL("reduce: unknown op ", int(op));
    }
  });
}

}  // namespace muxnet
