// iter.h — the one place where broadcasting and strides are handled for elementwise kernels.
//
// An ElemIter describes a loop over every element of an output and of up to three inputs that
// broadcast to it. Building it (make_elem_iter) turns each operand's strides into byte strides in the
// output's index space (0 along broadcast dims), drops size-1 dims and merges dims that are
// contiguous in every operand, so a dense tensor becomes a single run. for_each_run() then calls
//
//     body(char* const* ptrs, const int64_t* inner_strides, int64_t n)
//
// for each innermost run of n elements: ptrs[k] points at operand k's first element of the run
// (operand 0 is the output) and inner_strides[k] is its byte stride within the run. A kernel writes
// one loop over n, with a fast path when every stride equals the element size (which the compiler
// vectorises). Above kParallelGrain elements the runs are split over OpenMP threads; every element is
// computed by exactly one thread, so results do not depend on the thread count.
#pragma once

#include <omp.h>

#include <cstdint>
#include <initializer_list>

#include "tensor/tensor.h"

namespace muxnet {

// Below this many elements a loop runs on one thread: the fork/join cost (~1-2 us) would dominate.
constexpr int64_t kParallelGrain = 32768;

struct ElemIter {
  static constexpr int kMaxOperands = 4;
  int ndim = 0;      // after coalescing; 0 means a single element
  int noperands = 0;
  int64_t numel = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};  // bytes
  char* data[kMaxOperands] = {};
};

// out first, then the inputs; every input must broadcast to out.shape() (checked by the op layer,
// asserted here). All operands must be on out's device; for_each_run is for the CPU only, the CUDA
// kernels take the ElemIter by value and compute each element's offsets from its linear index.
ElemIter make_elem_iter(const Tensor& out, std::initializer_list<const Tensor*> inputs);

template <typename Body>
void for_each_run(const ElemIter& it, Body&& body) {
  const int nops = it.noperands;
  if (it.numel == 0) return;
  if (it.ndim == 0) {
    char* ptrs[ElemIter::kMaxOperands];
    int64_t st[ElemIter::kMaxOperands] = {};
    for (int k = 0; k < nops; ++k) ptrs[k] = it.data[k];
    body(ptrs, st, int64_t(1));
    return;
  }
  const int last = it.ndim - 1;
  const int64_t inner = it.shape[last];
  int64_t inner_strides[ElemIter::kMaxOperands];
  for (int k = 0; k < nops; ++k) inner_strides[k] = it.strides[k][last];

  // Processes linear element range [begin, end) in row-major order of the coalesced shape.
  auto run_range = [&](int64_t begin, int64_t end) {
    int64_t idx[kMaxDims];
    int64_t rem = begin;
    for (int d = last; d >= 0; --d) {
      idx[d] = rem % it.shape[d];
      rem /= it.shape[d];
    }
    char* ptrs[ElemIter::kMaxOperands];
    for (int k = 0; k < nops; ++k) {
      char* p = it.data[k];
      for (int d = 0; d <= last; ++d) p += idx[d] * it.strides[k][d];
      ptrs[k] = p;
    }
    int64_t pos = begin;
    while (pos < end) {
      int64_t n = inner - idx[last];
      if (n > end - pos) n = end - pos;
      body(ptrs, inner_strides, n);
      pos += n;
      if (pos >= end) break;
      // Advance to the start of the next run: carry the multi-index.
      for (int k = 0; k < nops; ++k) ptrs[k] += n * inner_strides[k];
      idx[last] += n;
      for (int d = last; d > 0 && idx[d] == it.shape[d]; --d) {
        idx[d] = 0;
        idx[d - 1]++;
        for (int k = 0; k < nops; ++k) ptrs[k] += it.strides[k][d - 1] - it.shape[d] * it.strides[k][d];
      }
    }
  };

  const int64_t n = it.numel;
  if (n < 2 * kParallelGrain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    run_range(0, n);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
    if (b < e) run_range(b, e);
  }
}

// Runs fn(begin, end) over [0, n) split across threads when n * cost_per_item is large enough.
// cost_per_item is a rough count of element operations per item (e.g. the row length for row ops).
template <typename Fn>
void parallel_for(int64_t n, int64_t cost_per_item, Fn&& fn) {
  if (n <= 0) return;
  if (n == 1 || n * cost_per_item < kParallelGrain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    fn(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
    if (b < e) fn(b, e);
  }
}

}  // namespace muxnet
