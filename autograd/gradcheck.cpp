// gradcheck.cpp — central differences against backward() (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "tensor/random.h"

namespace muxnet {

namespace {

// <v, y> in double.
double project(const Tensor& v, const Tensor& y) {
  std::vector<double> a = v.to_vector<double>(), b = y.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Address of element `flat` (row-major index) of a strided f64 tensor.
double* element(const Tensor& t, int64_t flat) {
  int64_t off = 0;
  for (int d = t.ndim() - 1; d >= 0; --d) {
    off += (flat % t.size(d)) * t.stride(d);
    flat /= t.size(d);
  }
  return t.data<double>() + off;
}

}  // namespace

std::string GradcheckResult::report() const {
  std::ostringstream os;
  os.precision(10);
  os << (ok ? "gradcheck passed" : "gradcheck FAILED") << ": " << checked << " coordinates";
  if (worst_input >= 0) {
    os << "; worst: input " << worst_input << " coordinate " << worst_coord << ", numeric " << numeric
       << ", analytic " << analytic << ", |diff| " << std::fabs(numeric - analytic) << ", margin " << margin;
  }
  return os.str();
}

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  // Fresh leaves that share nothing with the caller's tensors but keep their layout.
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    if (!in.defined() || !is_floating(in.dtype())) {
      leaves.push_back(in);
      continue;
    }
    MUXNET_CHECK(in.dtype() == DType::F64, "gradcheck: inputs must be f64, got ", in.dtype());
    Tensor leaf;
    {
      NoGradGuard no_grad;
      Tensor base = in.detach();
      int64_t span = base.offset() + 1;
      for (int d = 0; d < base.ndim(); ++d) {
        MUXNET_CHECK(base.size(d) <= 1 || base.stride(d) != 0, "gradcheck: input ", leaves.size(),
                     " is an expanded view (stride 0 in dim ", d, "); expand inside f instead");
        span += (base.size(d) - 1) * base.stride(d);
      }
      // Same shape, strides and offset as the caller's tensor, over cpu storage of our own (element()
      // writes it through a host pointer; copy_ below brings a device input over).
      Tensor storage = zeros({base.numel() == 0 ? 0 : span}, DType::F64);
      leaf = Tensor(storage.storage(), base.shape(), base.strides(), base.numel() == 0 ? 0 : base.offset(),
                    DType::F64);
      leaf.copy_(base);
    }
    leaf.requires_grad_(true);
    leaves.push_back(leaf);
  }

  Tensor y = f(leaves);
  MUXNET_CHECK(y.dtype() == DType::F64, "gradcheck: f must return an f64 tensor, got ", y.dtype());
  Generator gen(opt.seed);
  Tensor v = randn(y.shape(), DType::F64, &gen, 0.0, 1.0, y.device());  // y may live on another device
  MUXNET_CHECK(y.requires_grad(), "gradcheck: the output does not depend on any input that requires grad");
  y.backward(v);

  GradcheckResult r;
  double worst_ratio = -1;
  NoGradGuard no_grad;
  for (size_t k = 0; k < leaves.size(); ++k) {
    const Tensor& x = leaves[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor ana = x.grad();
    std::vector<double> analytic = ana.defined() ? ana.to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);
    std::vector<int64_t> coords;
    if (x.numel() <= opt.max_coords) {
      for (int64_t j = 0; j < x.numel(); ++j) coords.push_back(j);
    } else {
      for (int64_t j = 0; j < opt.max_coords; ++j) coords.push_back(int64_t(gen.randint(uint64_t(x.numel()))));
    }
    for (int64_t j : coords) {
      double* p = element(x, j);
      const double saved = *p;
      *p = saved + opt.eps;
      double plus = project(v, f(leaves));
      *p = saved - opt.eps;
      double minus = project(v, f(leaves));
      *p = saved;
      double numeric = (plus - minus) / (2 * opt.eps);
      double a = analytic[size_t(j)];
      double err = std::fabs(numeric - a);
      double tol = opt.atol + opt.rtol * std::fabs(numeric);
      bool pass = err <= tol;  // NaN fails
      double ratio = std::isnan(err) ? INFINITY : err / tol;
      r.checked++;
      if (!pass) r.ok = false;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        r.worst_input = int(k);
        r.worst_coord = j;
        r.numeric = numeric;
        r.analytic = a;
        r.margin = tol - err;
      }
    }
  }
  return r;
}

}  // namespace muxnet
