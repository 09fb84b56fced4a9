// cuda_test_util.h — helpers for tests that compare the CUDA device with the CPU (the oracle): named
// tolerances, inputs in several memory layouts that are rebuilt identically on each device, a
// comparison that reports the worst element, and a runner that checks an autograd function's output
// and every input gradient on both devices.
//
// Why inputs are carried as (base, view): a non-contiguous argument on the GPU must hold exactly the
// CPU's values without going through a GPU kernel (else a broken copy kernel would show up as a
// failure of the op under test). So every argument is a contiguous CPU `base` plus a recipe of pure
// view operations; the base is moved byte for byte (Tensor::to) and the recipe applied on each device.
//
// What this is not: a numerical reference. The CPU kernels are the reference; these helpers only move
// data and compare. Every random input is seeded, so a failure reproduces exactly.
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "tensor/device.h"
#include "tests/test_util.h"

namespace muxnet::test {

constexpr Device kGpu = Device::CUDA;

// |got - want| <= atol + rtol * |want|, elementwise (want is the CPU result).
struct Tol {
  double atol = 0, rtol = 0;
};

// Data movement and selection (copy, where, gather, max, argmax, ...): bit-identical results.
inline Tol tol_exact() { return {0.0, 0.0}; }
// One correctly rounded operation that may be evaluated with another rounding of a scalar or with an
// FMA contraction on one side: a couple of ulps.
inline Tol tol_arith(DType t) { return t == DType::F64 ? Tol{1e-300, 5e-16} : Tol{1e-37, 2.5e-7}; }
// exp, log, tanh, erf, pow, rsqrt: CUDA's libdevice (<= 2 ulp) against the CPU's own vectorised
// approximations (<= 5 ulp, tensor/cpu/vec_math.h) in f32, libm against libdevice (~1 ulp) in f64. The
// absolute floor covers results near 0 (log(1 + d), gelu'(x) at its zero).
inline Tol tol_transcendental(DType t) { return t == DType::F64 ? Tol{1e-14, 1e-13} : Tol{1e-6, 1e-5}; }
// A sum of n terms of magnitude <= scale: the CPU accumulates f32 in f64, a GPU tree in f32 or f64;
// rounding errors grow like sqrt(n) for random signs (a wrong or missing term costs ~scale, far above).
inline Tol tol_sum(DType t, int64_t n, double scale = 1.0) {
  const double root = std::sqrt(double(std::max<int64_t>(n, 1)));
  return t == DType::F64 ? Tol{1e-14 * root * scale, 1e-13} : Tol{2e-6 * root * scale, 1e-5};
}
// A GEMM with inner dimension K and operands of magnitude <= scale (TF32 off): atol grows like sqrt(K).
inline Tol tol_matmul(DType t, int64_t K, double scale = 1.0) {
  const double root = std::sqrt(double(std::max<int64_t>(K, 1)));
  return t == DType::F64 ? Tol{1e-13 * root * scale * scale, 1e-12} : Tol{1e-5 * root * scale * scale, 1e-5};
}

// A detached, contiguous copy of t on device d (the bytes move unchanged).
inline Tensor on(Device d, const Tensor& t) { return t.defined() ? t.detach().to(d) : Tensor(); }
inline Tensor to_cpu(const Tensor& t) { return on(Device::CPU, t); }

// "(2, 0, 5)" multi-index of flat (row-major) element i of shape.
inline std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(size_t(shape.ndim()), 0);
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    if (shape[d] > 0) {
      idx[size_t(d)] = flat % shape[d];
      flat /= shape[d];
    }
  }
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < idx.size(); ++i) os << (i ? ", " : "") << idx[i];
  os << (idx.size() == 1 ? ",)" : ")");
  return os.str();
}

struct ParityReport {
  bool ok = true;
  std::string problem;  // a shape / dtype / device mismatch, else empty
  int64_t count = 0, bad = 0;
  double max_abs = 0;
  int64_t max_abs_at = -1;
  int64_t worst = -1;  // the element that used the largest share of its tolerance
  double got = 0, want = 0, tol_at_worst = 0, ratio = 0;
  std::string str(const Shape& shape, const Tol& tol) const {
    std::ostringstream os;
    os.precision(9);
    if (!problem.empty()) return problem;
    os << bad << " of " << count << " elements out of tolerance (atol " << tol.atol << ", rtol " << tol.rtol
       << "); max abs error " << max_abs;
    if (max_abs_at >= 0) os << " at " << index_str(shape, max_abs_at);
    if (worst >= 0) {
      os << "; worst element " << index_str(shape, worst) << ": cuda " << got << ", cpu " << want << ", |diff| "
         << std::fabs(got - want) << " vs tolerance " << tol_at_worst;
    }
    return os.str();
  }
};

// got (on `device`) against want (CPU): same shape, dtype, and every element within tol; NaN matches
// NaN and equal infinities match (an infinity against a finite value never does).
inline ParityReport compare_parity(const Tensor& got, const Tensor& want, const Tol& tol, Device device = kGpu) {
  ParityReport r;
  if (!got.defined() || !want.defined()) {
    r.ok = got.defined() == want.defined();
    if (!r.ok) r.problem = std::string("cuda result is ") + (got.defined() ? "defined" : "undefined") +
                           ", cpu result is " + (want.defined() ? "defined" : "undefined");
    return r;
  }
  std::ostringstream os;
  if (got.device() != device) os << "result is on " << got.device() << ", expected " << device << "; ";
  if (got.shape() != want.shape()) os << "shape: cuda " << got.shape() << ", cpu " << want.shape() << "; ";
  if (got.dtype() != want.dtype()) os << "dtype: cuda " << got.dtype() << ", cpu " << want.dtype() << "; ";
  r.problem = os.str();
  if (!r.problem.empty()) {
    r.ok = false;
    return r;
  }
  const std::vector<double> g = to_cpu(got).to_vector<double>(), w = want.to_vector<double>();
  r.count = int64_t(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i]))) continue;
    const double diff = std::fabs(g[i] - w[i]);
    const double t = tol.atol + tol.rtol * std::fabs(w[i]);
    const double ratio = (std::isnan(diff) || std::isinf(diff)) ? INFINITY : (t > 0 ? diff / t : INFINITY);
    if (std::isnan(diff) || diff > r.max_abs || r.max_abs_at < 0) {
      r.max_abs = std::isnan(diff) ? INFINITY : std::max(r.max_abs, diff);
      r.max_abs_at = int64_t(i);
    }
    if (r.worst < 0 || ratio > r.ratio) {
      r.worst = int64_t(i);
      r.ratio = ratio;
      r.got = g[i];
      r.want = w[i];
      r.tol_at_worst = t;
    }
    if (!(diff <= t)) {
      r.ok = false;
      ++r.bad;
    }
  }
  return r;
}

}  // namespace muxnet::test

// CHECK_PARITY(what, got_on_cuda, want_on_cpu, tol): passes when got is on the CUDA device and matches
// want in shape, dtype and every element; on failure prints what was compared, the max abs error and
// its index, the worst element and its tolerance.
// (tol is last and variadic, so a braced Tol{atol, rtol} needs no parentheses.)
#define CHECK_PARITY(what, got, want, ...)                                                        \
  do {                                                                                            \
    const ::muxnet::Tensor& _pg = (got);                                                          \
    const ::muxnet::Tensor& _pw = (want);                                                         \
    const ::muxnet::test::Tol _pt = __VA_ARGS__;                                                  \
    auto _pr = ::muxnet::test::compare_parity(_pg, _pw, _pt);                                     \
    INFO("parity of " << what << " " << (_pw.defined() ? _pw.shape().str() : std::string("undefined")) \
                      << (_pw.defined() ? std::string(" ") + ::muxnet::dtype_name(_pw.dtype()) : std::string()) \
                      << ": " << _pr.str(_pw.defined() ? _pw.shape() : ::muxnet::Shape{}, _pt));      \
    CHECK(_pr.ok);                                                                                \
  } while (0)

namespace muxnet::test {

// ---------------------------------------------------------------- arguments in several layouts

// One argument: a contiguous CPU base and pure view operations that turn it into the argument. The
// argument holds the same values on every device; only its strides differ from layout to layout.
struct Arg {
  Tensor base;
  std::function<Tensor(const Tensor&)> view = [](const Tensor& t) { return t; };
  std::string layout = "contiguous";
  bool grad = false;  // a leaf that requires grad (autograd tests compare its gradient)
  Tensor on(Device d) const { return view(test::on(d, base)); }
  Arg& requires_grad(bool yes = true) {
    grad = yes;
    return *this;
  }
};

inline Arg contiguous_arg(const Tensor& x) {
  Arg a;
  a.base = x.detach().contiguous();
  return a;
}

// x's values stored with dims a and b swapped: a transposed (non-contiguous) view.
inline Arg transposed_arg(const Tensor& x, int a = -1, int b = -2) {
  if (x.ndim() < 2) return contiguous_arg(x);
  Arg r;
  r.base = x.detach().transpose(a, b).contiguous();
  r.view = [a, b](const Tensor& t) { return t.transpose(a, b); };
  r.layout = "transposed(" + std::to_string(a) + ", " + std::to_string(b) + ")";
  return r;
}

// x's values at every second element (from offset 1) along dim: a sliced view with a step and an
// offset; the elements in between hold a sentinel that must never be read.
inline Arg strided_arg(const Tensor& x, int dim = -1) {
  if (x.ndim() == 0) return contiguous_arg(x);
  const int d = normalize_dim(dim, x.ndim(), "strided_arg");
  Shape big = x.shape();
  big[d] = 2 * x.size(d) + 1;
  Arg r;
  r.base = full(big, is_floating(x.dtype()) ? 1e30 : 77777, x.dtype());
  if (x.numel() > 0) r.base.slice(d, 1, big[d], 2).copy_(x.detach());
  r.view = [d](const Tensor& t) { return t.slice(d, 1, t.size(d), 2); };
  r.layout = "strided(step 2, offset 1, dim " + std::to_string(d) + ")";
  return r;
}

// x (with size-1 dims, or fewer dims) broadcast to shape with stride-0 dims: an expanded view.
inline Arg expanded_arg(const Tensor& x, const Shape& shape) {
  Arg r;
  r.base = x.detach().contiguous();
  r.view = [shape](const Tensor& t) { return t.expand(shape); };
  r.layout = "expanded to " + shape.str();
  return r;
}

// The same values in the layouts every strided op must accept: contiguous, transposed (ndim >= 2),
// strided along the last dim, and strided along dim 0 (ndim >= 2).
inline std::vector<Arg> layouts_of(const Tensor& x) {
  std::vector<Arg> v{contiguous_arg(x)};
  if (x.ndim() >= 2) v.push_back(transposed_arg(x));
  if (x.ndim() >= 1) v.push_back(strided_arg(x, -1));
  if (x.ndim() >= 2) v.push_back(strided_arg(x, 0));
  return v;
}

// Seeded inputs (CPU).
inline Tensor rnd(const Shape& shape, uint64_t seed, DType dtype = DType::F32, double lo = -2.0, double hi = 2.0) {
  if (is_integral(dtype)) {
    Generator gen(seed);
    return randint(int64_t(lo), int64_t(hi), shape, dtype, &gen);
  }
  return random_tensor(shape, dtype, seed, lo, hi);
}
// Small integers stored as floats: ties and exact equalities are frequent (comparisons, max, argmax).
inline Tensor rnd_ties(const Shape& shape, uint64_t seed, DType dtype = DType::F32, int64_t lo = -3, int64_t hi = 4) {
  Generator gen(seed);
  return randint(lo, hi, shape, DType::I64, &gen).to(dtype);
}

// ---------------------------------------------------------------- autograd parity

// Runs fn forward and backward on the CPU and on the GPU from the same inputs, and compares every
// output (fwd) and the gradient of every argument marked requires_grad (grad). The upstream gradient of
// each floating output is a seeded random tensor (identical on both devices); with several outputs,
// the backward starts from sum_i sum(out_i * g_i). Outputs without grad (argmax) are compared only.
using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct AutogradRun {
  std::vector<Tensor> leaves, outputs;
};

inline AutogradRun run_autograd(Device d, const std::vector<Arg>& args, const MultiFn& fn, uint64_t seed) {
  AutogradRun r;
  std::vector<Tensor> inputs;
  for (const Arg& a : args) {
    Tensor leaf = test::on(d, a.base);
    if (a.grad) leaf.requires_grad_();
    r.leaves.push_back(leaf);
    inputs.push_back(a.view(leaf));
  }
  r.outputs = fn(inputs);
  std::vector<Tensor> diff_outs, upstream;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const Tensor& o = r.outputs[i];
    if (!o.defined() || !o.requires_grad()) continue;
    diff_outs.push_back(o);
    upstream.push_back(test::on(d, rnd(o.shape(), seed + 101 * (i + 1), o.dtype())));
  }
  if (diff_outs.size() == 1) {
    diff_outs[0].backward(upstream[0]);
  } else if (!diff_outs.empty()) {
    Tensor total;
    for (size_t i = 0; i < diff_outs.size(); ++i) {
      Tensor part = muxnet::sum(muxnet::mul(diff_outs[i], upstream[i]));
      total = total.defined() ? muxnet::add(total, part) : part;
    }
    total.backward();
  }
  return r;
}

inline void check_autograd_parity(const std::string& name, const std::vector<Arg>& args, const MultiFn& fn,
                                  const Tol& fwd, const Tol& grad, uint64_t seed = 11) {
  std::string layouts;
  for (size_t i = 0; i < args.size(); ++i) layouts += (i ? ", " : "") + args[i].layout;
  INFO("autograd function " << name << " with inputs [" << layouts << "]");
  AutogradRun cpu = run_autograd(Device::CPU, args, fn, seed);
  AutogradRun gpu = run_autograd(kGpu, args, fn, seed);
  REQUIRE(cpu.outputs.size() == gpu.outputs.size());
  for (size_t i = 0; i < cpu.outputs.size(); ++i) {
    CHECK_PARITY(name << " output " << i, gpu.outputs[i], cpu.outputs[i], fwd);
    if (cpu.outputs[i].defined() && gpu.outputs[i].defined()) {
      CHECK(cpu.outputs[i].requires_grad() == gpu.outputs[i].requires_grad());
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].grad) continue;
    CHECK_PARITY(name << " gradient of input " << i << " (" << args[i].layout << ")", gpu.leaves[i].grad(),
                 cpu.leaves[i].grad(), grad);
  }
}

inline void check_autograd_parity(const std::string& name, const std::vector<Arg>& args,
                                  const std::function<Tensor(const std::vector<Tensor>&)>& fn, const Tol& fwd,
                                  const Tol& grad, uint64_t seed = 11) {
  check_autograd_parity(name, args, MultiFn([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in)}; }),
                        fwd, grad, seed);
}

}  // namespace muxnet::test
