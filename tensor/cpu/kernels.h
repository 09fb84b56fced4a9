// kernels.h — shared helpers for the CPU kernels, and each kernel family's registration function.
//
// Each tensor/cpu/<family>.cpp defines its kernels (f32 and f64, plus integer types where they make
// sense) and one register_cpu_<family>() that puts them into the dispatch table; register.cpp calls
// them all. Kernels never validate shapes (the op layer did); they do handle numel == 0.
#pragma once

#include "tensor/check.h"
#include "tensor/dispatch.h"
#include "tensor/dtype_dispatch.h"  // dispatch_floating, dispatch_all, dispatch_index
#include "tensor/iter.h"

namespace muxnet {

// Sum over i in [0, n) of f(i) in double, with kSumLanes independent partial sums (so the loop
// vectorises) combined in a fixed order: the result does not depend on the thread count.
constexpr int kSumLanes = 8;
template <typename F>
double lane_sum(int64_t n, F&& f) {
  double lanes[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int k = 0; k < kSumLanes; ++k) lanes[k] += f(i + k);
  }
  double s = 0.0;
  for (int k = 0; k < kSumLanes; ++k) s += lanes[k];
  for (; i < n; ++i) s += f(i);
  return s;
}

// Mean and biased variance (divided by n) of the n values f(0), ..., f(n - 1), in double, each sum
// over lanes as lane_sum: the two-pass statistics of layer_norm (a large mean does not eat the variance).
struct MeanVar {
  double mean, var;
};
template <typename F>
MeanVar lane_mean_var(int64_t n, F&& f) {
  const double m = lane_sum(n, f) / double(n);
  const double var = lane_sum(n, [&f, m](int64_t i) {
                       const double d = double(f(i)) - m;
                       return d * d;
                     }) / double(n);
  return {m, var};
}

void register_cpu_copy();         // copy, fill                       (tensor/cpu/copy.cpp)
void register_cpu_elementwise();  // unary, binary, compare, where...  (tensor/cpu/elementwise.cpp)
void register_cpu_reduce();       // reduce, argmax                     (tensor/cpu/reduce.cpp)
void register_cpu_matmul();       // matmul                             (tensor/cpu/matmul.cpp)
void register_cpu_softmax();      // softmax, softmax_backward          (tensor/cpu/softmax.cpp)
void register_cpu_layernorm();    // layer_norm, layer_norm_backward    (tensor/cpu/layernorm.cpp)
void register_cpu_index();        // embedding, index_select, gather... (tensor/cpu/index.cpp)
void register_cpu_conv();         // im2col, col2im                     (tensor/cpu/conv.cpp)
void register_cpu_pool();         // max_pool2d, max_pool2d_backward    (tensor/cpu/pool.cpp)
void register_cpu_optim();        // sgd_step, adamw_step, sum_squares  (tensor/cpu/optim.cpp)

}  // namespace muxnet
