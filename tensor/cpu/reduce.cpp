// reduce.cpp — CPU kernels for OpId::reduce (sum, mean, max, min over any set of dims) and OpId::argmax.
//
// Both kernels read any strided input directly (transposed, sliced, expanded views): no copy is made.
// The kernel contract (sig::Reduce) gives `out` the keepdim shape; squeezing the reduced dims for
// keepdim=false is the op layer's job (tensor/ops_reduce.cpp), as are all shape and dtype checks.
//
// How a reduction runs. The dims of x are split into kept dims (one output element per index) and
// reduced dims; size-1 dims are dropped, each group is sorted by input stride (largest first) and
// adjacent dims that are contiguous with each other are merged (tensor/reduce_plan.h, shared with
// cuda/reduce.cu). Then one of two paths runs:
//   - row path: the innermost reduced dim has the smallest stride (e.g. a sum over the last dim, or
//     over everything). Each output walks its reduction as runs along that innermost dim; a unit-stride
//     run is summed with kLanes independent accumulators so the compiler can vectorise it.
//   - column path: a kept dim has the smallest stride (e.g. a bias gradient (4096, 256) -> (256)).
//     A vector of accumulators, one per column of that kept dim, is updated row after row, so the inner
//     loop runs over contiguous columns.
// Determinism: results never depend on the number of threads. Each output is computed by one thread in
// a fixed order, except when a few outputs reduce over many elements: then the reduction is cut into
// blocks whose size is a function of the shape only, the blocks run in parallel, and their partial
// results are merged in block order.
//
// Semantics (PyTorch's, except the dtype of integer sums):
//   - sums of f32 accumulate in f64 and are rounded once at the end; sums of f64 in f64; sums of i32
//     accumulate in i64 and are cast back to i32 (PyTorch would return i64; muxnet keeps the dtype).
//   - mean = sum / count (floating dtypes only); over an empty dim sum = 0 and mean = NaN (0 / 0).
//   - max/min propagate NaN. Over an empty dim they have no value: the op layer rejects that.
//   - argmax returns the index (i64) of the first maximum; NaN counts as larger than everything, so the
//     first NaN wins.
// What this is not: a pairwise/Kahan summation (the f64 accumulator makes that unnecessary for f32).
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tensor/reduce_plan.h"

namespace muxnet {

namespace {

// Independent accumulators for a unit-stride run (fixed, so the summation order is fixed).
constexpr int kLanes = 16;
// Elements per block when few outputs each reduce over many elements (row path), and the target
// number of elements per block of rows in the column path.
constexpr int64_t kBlockElems = 16384;
// Split the reduction into blocks only when there are fewer independent tasks than this.
constexpr int64_t kSplitBelowTasks = 64;
// Columns handled by one task in the column path (bounds the accumulator buffer on the stack).
constexpr int64_t kColChunk = 1024;

// ---------------------------------------------------------------- loop nests

// Walks a ReduceNest (tensor/reduce_plan.h) in row-major order from a linear index, tracking the
// input and output offsets.
struct Cursor {
  const ReduceNest& nest;
  int64_t idx[kMaxDims] = {};
  int64_t in_off = 0, out_off = 0;

  Cursor(const ReduceNest& nst, int64_t linear) : nest(nst) {
    for (int d = nest.ndim - 1; d >= 0; --d) {
      idx[d] = linear % nest.shape[d];
      linear /= nest.shape[d];
      in_off += idx[d] * nest.strides[0][d];
      out_off += idx[d] * nest.strides[1][d];
    }
  }
  void next() {
    for (int d = nest.ndim - 1; d >= 0; --d) {
      in_off += nest.strides[0][d];
      out_off += nest.strides[1][d];
      if (++idx[d] < nest.shape[d]) return;
      in_off -= idx[d] * nest.strides[0][d];
      out_off -= idx[d] * nest.strides[1][d];
      idx[d] = 0;
    }
  }
};

// ---------------------------------------------------------------- reducers

template <typename T> using SumAcc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// step(acc, v) folds one input element in, merge(a, b) folds a partial result in, finish() makes the
// output value from the accumulator and the number of reduced elements.
template <typename T, ReduceOp op> struct Reducer;

template <typename T> struct Reducer<T, ReduceOp::Sum> {
  using Acc = SumAcc<T>;
  static Acc identity() { return Acc(0); }
  static Acc step(Acc a, T v) { return a + Acc(v); }
  static Acc merge(Acc a, Acc b) { return a + b; }
  static T finish(Acc a, int64_t) { return T(a); }
};

template <typename T> struct Reducer<T, ReduceOp::Mean> {
  using Acc = double;
  static Acc identity() { return 0.0; }
  static Acc step(Acc a, T v) { return a + Acc(v); }
  static Acc merge(Acc a, Acc b) { return a + b; }
  static T finish(Acc a, int64_t count) { return T(a / double(count)); }  // 0 / 0 = NaN for empty
};

// NOTE: `v != v` is true only for NaN; it makes a NaN win and then stay (NaN > x is always false).
// step_no_nan is the same without the NaN test (it ignores NaN inputs), for the multi-lane loop, which
// tracks NaN separately so that the compiler can vectorise it.
template <typename T> struct Reducer<T, ReduceOp::Max> {
  using Acc = T;
  static constexpr bool kNanAware = std::is_floating_point_v<T>;
  static Acc identity() {
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::lowest();
  }
  static Acc step(Acc a, T v) { return (v > a || v != v) ? v : a; }
  static Acc step_no_nan(Acc a, T v) { return v > a ? v : a; }
  static Acc merge(Acc a, Acc b) { return step(a, b); }
  static T finish(Acc a, int64_t) { return a; }
};

template <typename T> struct Reducer<T, ReduceOp::Min> {
  using Acc = T;
  static constexpr bool kNanAware = std::is_floating_point_v<T>;
  static Acc identity() {
    return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::max();
  }
  static Acc step(Acc a, T v) { return (v < a || v != v) ? v : a; }
  static Acc step_no_nan(Acc a, T v) { return v < a ? v : a; }
  static Acc merge(Acc a, Acc b) { return step(a, b); }
  static T finish(Acc a, int64_t) { return a; }
};

template <typename R, typename = void> struct IsNanAware : std::false_type {};
template <typename R> struct IsNanAware<R, std::void_t<decltype(R::kNanAware)>> : std::bool_constant<R::kNanAware> {};

// Folds n elements p[0], p[stride], ... into acc.
template <typename R, typename T>
typename R::Acc accumulate_run(typename R::Acc acc, const T* p, int64_t stride, int64_t n) {
  using Acc = typename R::Acc;
  if (stride == 1 && n >= 2 * kLanes) {
    Acc lanes[kLanes];
    for (int k = 0; k < kLanes; ++k) lanes[k] = R::identity();
    int64_t i = 0;
    if constexpr (IsNanAware<R>::value) {
      // Same-width integer flags: (v != v) as 0 / -1, OR-ed per lane; vectorises with the max itself.
      using Flag = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
      Flag nan[kLanes] = {};
      for (; i + kLanes <= n; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          lanes[k] = R::step_no_nan(lanes[k], p[i + k]);
          nan[k] |= -Flag(p[i + k] != p[i + k]);
        }
      }
      Flag any = 0;
      for (int k = 0; k < kLanes; ++k) any |= nan[k];
      if (any) return std::numeric_limits<T>::quiet_NaN();
    } else {
      for (; i + kLanes <= n; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) lanes[k] = R::step(lanes[k], p[i + k]);
      }
    }
    for (int k = 0; k < kLanes; ++k) acc = R::merge(acc, lanes[k]);
    for (; i < n; ++i) acc = R::step(acc, p[i]);
    return acc;
  }
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) acc = R::step(acc, p[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) acc = R::step(acc, p[i * stride]);
  }
  return acc;
}

// Folds the elements with linear index [begin, end) of the reduced nest (row-major), starting at base.
// The nest has at least one dim; runs go along its innermost dim.
template <typename R, typename T>
typename R::Acc reduce_range(const T* base, const ReduceNest& red, int64_t begin, int64_t end) {
  typename R::Acc acc = R::identity();
  const int last = red.ndim - 1;
  const int64_t inner = red.shape[last], inner_stride = red.strides[0][last];
  int64_t idx[kMaxDims];
  int64_t rem = begin;
  const T* p = base;
  for (int d = last; d >= 0; --d) {
    idx[d] = rem % red.shape[d];
    rem /= red.shape[d];
    p += idx[d] * red.strides[0][d];
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t n = std::min(inner - idx[last], end - pos);
    acc = accumulate_run<R>(acc, p, inner_stride, n);
    pos += n;
    if (pos >= end) break;
    p += n * inner_stride;
    idx[last] += n;
    for (int d = last; d > 0 && idx[d] == red.shape[d]; --d) {
      idx[d] = 0;
      idx[d - 1]++;
      p += red.strides[0][d - 1] - red.shape[d] * red.strides[0][d];
    }
  }
  return acc;
}

// ---------------------------------------------------------------- the two paths

// kept: output dims (input and output strides); red: reduced dims (at least one dim).
template <typename R, typename T>
void row_path(const T* x, T* out, const ReduceNest& kept, const ReduceNest& red, int64_t count) {
  using Acc = typename R::Acc;
  const int64_t nout = kept.numel(), nred = red.numel();
  if (nout < kSplitBelowTasks && nred >= 2 * kBlockElems) {
    // Few outputs, long reductions: fixed-size blocks in parallel, merged in block order.
    const int64_t nblocks = (nred + kBlockElems - 1) / kBlockElems;
    std::vector<Acc> partial(size_t(nout * nblocks));
    parallel_for(nout * nblocks, kBlockElems, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nblocks, blk = t % nblocks;
        Cursor c(kept, o);
        partial[size_t(t)] = reduce_range<R>(x + c.in_off, red, blk * kBlockElems,
                                             std::min(nred, (blk + 1) * kBlockElems));
      }
    });
    Cursor c(kept, 0);
    for (int64_t o = 0; o < nout; ++o, c.next()) {
      Acc acc = R::identity();
      for (int64_t blk = 0; blk < nblocks; ++blk) acc = R::merge(acc, partial[size_t(o * nblocks + blk)]);
      out[c.out_off] = R::finish(acc, count);
    }
    return;
  }
  parallel_for(nout, nred, [&](int64_t b, int64_t e) {
    Cursor c(kept, b);
    for (int64_t o = b; o < e; ++o, c.next()) {
      out[c.out_off] = R::finish(reduce_range<R>(x + c.in_off, red, 0, nred), count);
    }
  });
}

// The innermost kept dim (the one with the smallest input stride) is the vector of columns.
template <typename R, typename T>
void column_path(const T* x, T* out, const ReduceNest& kept, const ReduceNest& red, int64_t count) {
  using Acc = typename R::Acc;
  const int last = kept.ndim - 1;
  const int64_t ncol = kept.shape[last], col_in = kept.strides[0][last], col_out = kept.strides[1][last];
  const ReduceNest outer = kept.outer();
  const int64_t nouter = outer.numel(), nred = red.numel();
  const int64_t chunk = std::min(ncol, kColChunk);
  const int64_t nchunks = (ncol + chunk - 1) / chunk;
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockElems / chunk);
  const int64_t nblocks =
      (nouter * nchunks < kSplitBelowTasks && nred > rows_per_block) ? (nred + rows_per_block - 1) / rows_per_block
                                                                    : 1;
  const int64_t block_rows = nblocks == 1 ? nred : rows_per_block;
  // partial[(o * nblocks + blk) * ncol + col], only when the reduction is split.
  std::vector<Acc> partial(nblocks > 1 ? size_t(nouter * nblocks * ncol) : 0);

  parallel_for(nouter * nblocks * nchunks, block_rows * chunk, [&](int64_t b, int64_t e) {
    Acc acc[kColChunk];
    for (int64_t t = b; t < e; ++t) {
      const int64_t ch = t % nchunks, blk = (t / nchunks) % nblocks, o = t / (nchunks * nblocks);
      const int64_t c0 = ch * chunk, w = std::min(chunk, ncol - c0);
      const int64_t r0 = blk * block_rows, r1 = std::min(nred, r0 + block_rows);
      Cursor oc(outer, o);
      for (int64_t c = 0; c < w; ++c) acc[c] = R::identity();
      Cursor rc(red, r0);
      for (int64_t r = r0; r < r1; ++r, rc.next()) {
        const T* p = x + oc.in_off + rc.in_off + c0 * col_in;
        if (col_in == 1) {
          for (int64_t c = 0; c < w; ++c) acc[c] = R::step(acc[c], p[c]);
        } else {
          for (int64_t c = 0; c < w; ++c) acc[c] = R::step(acc[c], p[c * col_in]);
        }
      }
      if (nblocks == 1) {
        T* q = out + oc.out_off + c0 * col_out;
        for (int64_t c = 0; c < w; ++c) q[c * col_out] = R::finish(acc[c], count);
      } else {
        Acc* q = partial.data() + (o * nblocks + blk) * ncol + c0;
        for (int64_t c = 0; c < w; ++c) q[c] = acc[c];
      }
    }
  });
  if (nblocks == 1) return;
  parallel_for(nouter * nchunks, nblocks * chunk, [&](int64_t b, int64_t e) {
    Acc acc[kColChunk];
    for (int64_t t = b; t < e; ++t) {
      const int64_t ch = t % nchunks, o = t / nchunks;
      const int64_t c0 = ch * chunk, w = std::min(chunk, ncol - c0);
      for (int64_t c = 0; c < w; ++c) acc[c] = R::identity();
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const Acc* q = partial.data() + (o * nblocks + blk) * ncol + c0;
        for (int64_t c = 0; c < w; ++c) acc[c] = R::merge(acc[c], q[c]);
      }
      Cursor oc(outer, o);
      T* q = out + oc.out_off + c0 * col_out;
      for (int64_t c = 0; c < w; ++c) q[c * col_out] = R::finish(acc[c], count);
    }
  });
}

template <typename T, ReduceOp op>
void reduce_typed(const Tensor& x, DimMask dims, const Tensor& out) {
  using R = Reducer<T, op>;
  ReduceNest kept, red;
  const int64_t count = split_reduce_dims(x, dims, out, kept, red);
  T* o = out.data<T>();
  if (out.numel() == 0) return;
  if (count == 0) {
    MUXNET_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean, reduce_op_name(op),
                 ": cannot reduce over an empty dim (no identity)");
    const T v = R::finish(R::identity(), 0);
    Cursor c(kept, 0);
    for (int64_t i = 0; i < out.numel(); ++i, c.next()) o[c.out_off] = v;
    return;
  }
  kept.sort_and_coalesce();
  red.sort_and_coalesce();
  if (red.ndim == 0) red.push(1, 0, 0);  // nothing to reduce: each output is a run of one element
  const T* in = x.data<T>();
  const bool column = kept.ndim > 0 && kept.strides[0][kept.ndim - 1] < red.strides[0][red.ndim - 1];
  if (column) {
    column_path<R>(in, o, kept, red, count);
  } else {
    row_path<R>(in, o, kept, red, count);
  }
}

// x: any shape and strides; out: x's shape with the reduced dims of size 1.
void reduce_cpu(ReduceOp op, const Tensor& x, DimMask dims, const Tensor& out) {
  dispatch_reduce(op, x.dtype(), [&](auto tag, auto op_tag) {
    reduce_typed<typename decltype(tag)::type, decltype(op_tag)::value>(x, dims, out);
  });
}

// ---------------------------------------------------------------- argmax

template <typename T>
void argmax_typed(const Tensor& x, int dim, const Tensor& out) {
  int64_t* o = out.data<int64_t>();
  const T* in = x.data<T>();
  if (x.ndim() == 0) {
    o[0] = 0;
    return;
  }
  const int64_t len = x.size(dim), stride = x.stride(dim);
  const ReduceNest kept = argmax_kept_dims(x, dim, out);
  using MaxR = Reducer<T, ReduceOp::Max>;
  // Two passes over each row: the (vectorised, NaN-propagating) max, then the first element equal to
  // it; when the max is NaN, the first NaN.
  parallel_for(kept.numel(), 2 * len, [&](int64_t b, int64_t e) {
    Cursor c(kept, b);
    for (int64_t i = b; i < e; ++i, c.next()) {
      const T* p = in + c.in_off;
      const T best = accumulate_run<MaxR>(MaxR::identity(), p, stride, len);
      int64_t at = 0;
      if (best == best) {
        while (at < len - 1 && !(p[at * stride] == best)) ++at;
      } else {
        while (at < len - 1 && p[at * stride] == p[at * stride]) ++at;
      }
      o[c.out_off] = at;
    }
  });
}

// x: any shape and strides, x.size(dim) > 0; out: i64, x's shape with dim of size 1.
void argmax_cpu(const Tensor& x, int dim, const Tensor& out) {
  if (out.numel() == 0) return;
  dispatch_all(x.dtype(), "argmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    argmax_typed<T>(x, dim, out);
  });
}

}  // namespace

void register_cpu_reduce() {
  register_kernel<OpId::reduce>(Device::CPU, reduce_cpu);
  register_kernel<OpId::argmax>(Device::CPU, argmax_cpu);
}

}  // namespace muxnet
