// test_util.h — shared helpers for the Catch2 tests: named tolerances, seeded random tensors,
// layouts that hold the same values with other strides, and comparisons that report the worst element.
//
// Tolerances live here, named, with the reason for their size. Every random input is seeded, so a
// failure reproduces exactly.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace muxnet::test {

// f64 kernels vs naive f64 references: only summation order differs.
constexpr double kF64Rtol = 1e-12;
constexpr double kF64Atol = 1e-12;
// f32 kernels vs naive references computed in f64 from the same f32 inputs: a few ulps per operation,
// more for transcendental functions and for reductions over many terms.
constexpr double kF32Rtol = 1e-5;
constexpr double kF32Atol = 1e-6;

// Writes content to /tmp/muxnet_test_<name> (bytes as given) and returns the path: small data files for
// the reader tests.
inline std::string write_temp(const std::string& name, const std::string& content) {
  std::string path = "/tmp/muxnet_test_" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

inline double rtol_for(DType t) { return t == DType::F64 ? kF64Rtol : kF32Rtol; }
inline double atol_for(DType t) { return t == DType::F64 ? kF64Atol : kF32Atol; }

// Uniform values in [lo, hi) from a private generator: the same seed gives the same tensor.
inline Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  Generator gen(seed);
  return rand(shape, dtype, &gen, lo, hi);
}

// The same values as x, stored transposed in memory (dims a and b swapped): a non-contiguous view.
inline Tensor transposed_layout(const Tensor& x, int a = -1, int b = -2) {
  if (x.ndim() < 2) return x;
  Tensor storage = x.transpose(a, b).contiguous();
  return storage.transpose(a, b);
}

// The same values as x, stored every second element along the last dim: a strided (sliced) view.
inline Tensor strided_layout(const Tensor& x) {
  if (x.ndim() == 0) return x;
  Shape big = x.shape();
  big[big.ndim() - 1] *= 2;
  Tensor storage = zeros(big, x.dtype());
  Tensor view = storage.slice(-1, 0, big.back(), 2);
  view.copy_(x);
  return view;
}

// Calls f(index) for every multi-index of shape in row-major order.
inline void for_each_index(const Shape& shape, const std::function<void(const std::vector<int64_t>&)>& f) {
  if (shape.numel() == 0) return;
  std::vector<int64_t> idx(size_t(shape.ndim()), 0);
  while (true) {
    f(idx);
    int d = shape.ndim() - 1;
    for (; d >= 0; --d) {
      if (++idx[size_t(d)] < shape[d]) break;
      idx[size_t(d)] = 0;
    }
    if (d < 0) break;
  }
}

struct CloseReport {
  bool ok = true;
  bool shape_ok = true;
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1;  // flat index of the element with the largest |got - want| / (atol + rtol |want|)
  double got = 0, want = 0, worst_ratio = 0;
  std::string str() const {
    std::ostringstream os;
    if (!shape_ok) return "shape mismatch";
    os << "max abs diff " << max_abs << ", max rel diff " << max_rel << ", worst element #" << worst
       << ": got " << got << " want " << want << " (" << 100.0 * worst_ratio << "% of tolerance)";
    return os.str();
  }
};

// Elementwise |got - want| <= atol + rtol * |want|; NaN matches NaN, equal infinities match.
inline CloseReport compare_close(const Tensor& got, const Tensor& want, double atol, double rtol) {
  CloseReport r;
  if (got.shape() != want.shape()) {
    r.ok = r.shape_ok = false;
    return r;
  }
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i]))) continue;
    double diff = std::fabs(g[i] - w[i]);
    double tol = atol + rtol * std::fabs(w[i]);
    double ratio = std::isnan(diff) ? INFINITY : diff / tol;
    r.max_abs = std::max(r.max_abs, diff);
    if (w[i] != 0) r.max_rel = std::max(r.max_rel, diff / std::fabs(w[i]));
    if (ratio > r.worst_ratio || r.worst < 0) {
      r.worst_ratio = ratio;
      r.worst = int64_t(i);
      r.got = g[i];
      r.want = w[i];
    }
    if (!(diff <= tol)) r.ok = false;
  }
  return r;
}

}  // namespace muxnet::test

// CHECK_CLOSE(got, want, atol, rtol): passes when every element is within tolerance; on failure,
// prints the shapes, the worst element and how far past the tolerance it is.
#define CHECK_CLOSE(got, want, atol, rtol)                                                 \
  do {                                                                                     \
    auto _report = ::muxnet::test::compare_close((got), (want), (atol), (rtol));           \
    INFO("got shape " << (got).shape() << ", want shape " << (want).shape() << "; "        \
                      << _report.str());                                                   \
    CHECK(_report.ok);                                                                     \
  } while (0)

// Tolerances chosen by the dtype of the result under test (want may be an f64 reference).
#define CHECK_CLOSE_DT(got, want)                                                          \
  CHECK_CLOSE((got), (want), ::muxnet::test::atol_for((got).dtype()),                     \
              ::muxnet::test::rtol_for((got).dtype()))
