// index.cpp — CPU kernels for indexing: embedding (+ backward), index_select / index_add,
// gather / scatter_add (torch.gather / Tensor.scatter_add_ semantics).
//
// Every kernel takes contiguous tensors (the op layer, tensor/ops_index.cpp, makes them so) and
// trusts the index values: the op layer has checked each one against its range before any kernel
// runs. Element types: all four dtypes (these ops only copy and add); index types i32 and i64.
//
// The accumulating kernels (embedding_backward, index_add, scatter_add) are deterministic and
// race-free under OpenMP even with repeated indices: the work is split so that every destination
// element is owned by exactly one thread, which adds its contributions in index order. The result is
// bit-identical for any thread count. embedding_backward and a dim-0 index_add bucket the positions
// by destination row first (a stable counting sort) and then parallelise over rows.
//
// What this is not: a general advanced-indexing engine (no boolean masks, no multi-tensor indices).
#include <algorithm>
#include <cstring>
#include <vector>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// Product of shape[begin:end].
int64_t span(const Shape& shape, int begin, int end) {
  int64_t n = 1;
  for (int d = begin; d < end; ++d) n *= shape[d];
  return n;
}

// Offsets (in elements) of every multi-index of sizes[0:nd] in row-major order, under strides.
std::vector<int64_t> offset_table(const int64_t* sizes, const int64_t* strides, int nd) {
  int64_t count = 1;
  for (int d = 0; d < nd; ++d) count *= sizes[d];
  std::vector<int64_t> table(size_t(count), 0);
  if (count == 0) return table;
  int64_t idx[kMaxDims] = {};
  int64_t off = 0;
  for (int64_t t = 0; t < count; ++t) {
    table[size_t(t)] = off;
    for (int d = nd - 1; d >= 0; --d) {
      off += strides[d];
      if (++idx[d] < sizes[d]) break;
      off -= idx[d] * strides[d];
      idx[d] = 0;
    }
  }
  return table;
}

// dst row r (length D) += src row i for every i with idx[i] == r != skip, in increasing i.
template <typename T, typename I>
void rows_add_serial(T* dst, int64_t D, const T* src, const I* idx, int64_t n, int64_t skip) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = int64_t(idx[i]);
    if (r == skip) continue;
    T* d = dst + r * D;
    const T* s = src + i * D;
    for (int64_t k = 0; k < D; ++k) d[k] += s[k];
  }
}

// dst: (V, D), src: (n, D), idx: (n) -> the same sums as rows_add_serial, split over threads by
// destination row. Positions are bucketed by row with a stable counting sort, so each row still
// receives its contributions in increasing i: the result does not depend on the thread count.
template <typename T, typename I>
void rows_add(T* dst, int64_t V, int64_t D, const T* src, const I* idx, int64_t n, int64_t skip) {
  if (n == 0 || D == 0) return;
  if (n * D < 2 * kParallelGrain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    rows_add_serial(dst, D, src, idx, n, skip);
    return;
  }
  std::vector<int64_t> start(size_t(V) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = int64_t(idx[i]);
    if (r != skip) start[size_t(r) + 1]++;
  }
  std::vector<int64_t> rows;  // destination rows that receive anything
  for (int64_t r = 0; r < V; ++r) {
    if (start[size_t(r) + 1] > 0) rows.push_back(r);
    start[size_t(r) + 1] += start[size_t(r)];
  }
  std::vector<int64_t> order(static_cast<size_t>(start[size_t(V)]));
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = int64_t(idx[i]);
    if (r != skip) order[size_t(cursor[size_t(r)]++)] = i;
  }
  const int64_t nrows = int64_t(rows.size());
  const int64_t cost = nrows > 0 ? D * (int64_t(order.size()) / nrows + 1) : 0;
  parallel_for(nrows, cost, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t r = rows[size_t(q)];
      T* d = dst + r * D;
      for (int64_t p = start[size_t(r)]; p < start[size_t(r) + 1]; ++p) {
        const T* s = src + order[size_t(p)] * D;
        for (int64_t k = 0; k < D; ++k) d[k] += s[k];
      }
    }
  });
}

// ---------------------------------------------------------------- embedding

// weight: (V, D), idx: (n...), out: (n..., D)
void embedding_cpu(const Tensor& weight, const Tensor& idx, const Tensor& out) {
  const int64_t n = idx.numel(), D = weight.size(1);
  if (n == 0 || D == 0) return;
  dispatch_all(weight.dtype(), "embedding", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "embedding", [&](auto it) {
      using I = typename decltype(it)::type;
      const T* w = weight.data<T>();
      const I* ix = idx.data<I>();
      T* o = out.data<T>();
      parallel_for(n, D, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          std::memcpy(o + i * D, w + int64_t(ix[i]) * D, size_t(D) * sizeof(T));
        }
      });
    });
  });
}

// grad_out: (n..., D), idx: (n...), grad_weight: (V, D) accumulated
void embedding_backward_cpu(const Tensor& grad_out, const Tensor& idx, int64_t padding_idx,
                            const Tensor& grad_weight) {
  const int64_t n = idx.numel(), V = grad_weight.size(0), D = grad_weight.size(1);
  dispatch_all(grad_weight.dtype(), "embedding_backward", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "embedding_backward", [&](auto it) {
      using I = typename decltype(it)::type;
      rows_add(grad_weight.data<T>(), V, D, grad_out.data<T>(), idx.data<I>(), n, padding_idx);
    });
  });
}

// ---------------------------------------------------------------- index_select / index_add

// x: (outer, S, inner), idx: (n), out: (outer, n, inner)
void index_select_cpu(const Tensor& x, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t outer = span(x.shape(), 0, dim), S = x.size(dim), inner = span(x.shape(), dim + 1, x.ndim());
  const int64_t n = idx.numel();
  if (outer * n * inner == 0) return;
  dispatch_all(x.dtype(), "index_select", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "index_select", [&](auto it) {
      using I = typename decltype(it)::type;
      const T* px = x.data<T>();
      const I* ix = idx.data<I>();
      T* po = out.data<T>();
      parallel_for(outer * n, inner, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t o = t / n, j = t % n;
          std::memcpy(po + t * inner, px + (o * S + int64_t(ix[j])) * inner, size_t(inner) * sizeof(T));
        }
      });
    });
  });
}

// src: (outer, n, inner), idx: (n), out: (outer, S, inner) accumulated
void index_add_cpu(const Tensor& src, int dim, const Tensor& idx, const Tensor& out) {
  const int64_t outer = span(out.shape(), 0, dim), S = out.size(dim), inner = span(out.shape(), dim + 1, out.ndim());
  const int64_t n = idx.numel();
  if (outer * n * inner == 0) return;
  dispatch_all(out.dtype(), "index_add", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "index_add", [&](auto it) {
      using I = typename decltype(it)::type;
      const T* ps = src.data<T>();
      const I* ix = idx.data<I>();
      T* po = out.data<T>();
      if (outer == 1) {
        rows_add(po, S, inner, ps, ix, n, -1);
        return;
      }
      // Each outer slice is an independent (S, inner) destination: one thread per slice.
      parallel_for(outer, n * inner, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) rows_add_serial(po + o * S * inner, inner, ps + o * n * inner, ix, n, -1);
      });
    });
  });
}

// ---------------------------------------------------------------- gather / scatter_add

// The geometry shared by gather and scatter_add: idx viewed as (outer, n, inner) around dim, and the
// offsets in the big tensor (x for gather, out for scatter_add; contiguous, same ndim as idx, at
// least as large along every dim but dim) of each outer and inner multi-index of idx.
struct GatherGeom {
  int64_t outer = 1, n = 0, inner = 1;
  int64_t dim_stride = 1;  // the big tensor's stride along dim
  std::vector<int64_t> outer_off, inner_off;
};

GatherGeom gather_geom(const Tensor& big, int dim, const Tensor& idx) {
  GatherGeom g;
  const Shape strides = contiguous_strides(big.shape());
  const Shape& is = idx.shape();
  const int nd = idx.ndim();
  g.outer = span(is, 0, dim);
  g.n = is[dim];
  g.inner = span(is, dim + 1, nd);
  g.dim_stride = strides[dim];
  g.outer_off = offset_table(is.begin(), strides.begin(), dim);
  g.inner_off = offset_table(is.begin() + dim + 1, strides.begin() + dim + 1, nd - dim - 1);
  return g;
}

// x: big tensor, idx and out: the same shape; out[o, j, k] = x[outer_off[o] + idx[o, j, k] * ds + inner_off[k]]
void gather_cpu(const Tensor& x, int dim, const Tensor& idx, const Tensor& out) {
  if (idx.numel() == 0) return;
  const GatherGeom g = gather_geom(x, dim, idx);
  dispatch_all(x.dtype(), "gather", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "gather", [&](auto it) {
      using I = typename decltype(it)::type;
      const T* px = x.data<T>();
      const I* ix = idx.data<I>();
      T* po = out.data<T>();
      const int64_t* inner_off = g.inner_off.data();
      parallel_for(g.outer * g.n, g.inner, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const T* base = px + g.outer_off[size_t(t / g.n)];
          const I* ip = ix + t * g.inner;
          T* op = po + t * g.inner;
          for (int64_t k = 0; k < g.inner; ++k) op[k] = base[int64_t(ip[k]) * g.dim_stride + inner_off[k]];
        }
      });
    });
  });
}

// Columns (inner positions) per work item of scatter_add: small enough to spread a dim-0 scatter
// over threads, large enough to keep the inner loop long.
constexpr int64_t kScatterChunk = 256;

// src and idx: the same shape, out: big tensor; out[outer_off[o] + idx[o, j, k] * ds + inner_off[k]] += src[o, j, k]
void scatter_add_cpu(const Tensor& src, int dim, const Tensor& idx, const Tensor& out) {
  if (idx.numel() == 0) return;
  const GatherGeom g = gather_geom(out, dim, idx);
  dispatch_all(out.dtype(), "scatter_add", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_index(idx.dtype(), "scatter_add", [&](auto it) {
      using I = typename decltype(it)::type;
      const T* ps = src.data<T>();
      const I* ix = idx.data<I>();
      T* po = out.data<T>();
      const int64_t* inner_off = g.inner_off.data();
      // Distinct (o, k) never write the same element of out, so a work item is (o, chunk of k) and
      // loops over j in order: every element is owned by one thread and summed in j order.
      const int64_t chunks = (g.inner + kScatterChunk - 1) / kScatterChunk;
      parallel_for(g.outer * chunks, g.n * std::min(g.inner, kScatterChunk), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t o = t / chunks, k0 = (t % chunks) * kScatterChunk;
          const int64_t k1 = std::min(g.inner, k0 + kScatterChunk);
          T* base = po + g.outer_off[size_t(o)];
          for (int64_t j = 0; j < g.n; ++j) {
            const int64_t row = (o * g.n + j) * g.inner;
            for (int64_t k = k0; k < k1; ++k) base[int64_t(ix[row + k]) * g.dim_stride + inner_off[k]] += ps[row + k];
          }
        }
      });
    });
  });
}

}  // namespace

void register_cpu_index() {
  register_kernel<OpId::embedding>(Device::CPU, embedding_cpu);
  register_kernel<OpId::embedding_backward>(Device::CPU, embedding_backward_cpu);
  register_kernel<OpId::index_select>(Device::CPU, index_select_cpu);
  register_kernel<OpId::index_add>(Device::CPU, index_add_cpu);
  register_kernel<OpId::gather>(Device::CPU, gather_cpu);
  register_kernel<OpId::scatter_add>(Device::CPU, scatter_add_cpu);
}

}  // namespace muxnet
