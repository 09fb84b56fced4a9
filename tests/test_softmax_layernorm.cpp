// test_softmax_layernorm.cpp — softmax / log_softmax (forward and backward) and layer_norm (forward
// and backward) against naive references in double.
//
// References: softmax rows computed directly from the definition; backward as the product of grad_out
// with the explicit Jacobian of each row (built from y, the forward output the kernel receives);
// layer_norm from its definition, its backward from the explicit Jacobian
// dy_i/dx_j = w_i rstd (delta_ij - 1/C - xhat_i xhat_j / C), and a central finite difference in f64.
// Also: hand-computed values, large magnitudes, -inf masking, non-contiguous inputs, the += contract
// of the backward kernel, 1-vs-2-thread bitwise equality and the error messages.
#include <cmath>
#include <cstring>
#include <limits>

#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::random_tensor;

namespace {

// The kernel computes exp(y) of log_softmax_backward in f32 while the reference does it in f64; the
// gradient g - exp(y) * sum(g) then carries a few f32 ulps of |sum(g)|.
constexpr double kLogSoftmaxBackwardF32Atol = 1e-5;
// Rows of values in [1000, 1001): the mean carries |mean| * eps ~ 2e-13 of rounding that depends on the
// summation order, and (x - mean) * rstd amplifies it by rstd ~ 3.5, in the kernel and the reference alike.
constexpr double kLargeMeanF64Atol = 1e-10;
// Central finite differences in f64 with h = 1e-6 (STYLE.md §10.7).
constexpr double kFiniteDiffH = 1e-6;
constexpr double kFiniteDiffAtol = 1e-6;
constexpr double kFiniteDiffRtol = 1e-4;

// Softmax (or log_softmax) of every row over the last dim, in double.
Tensor ref_softmax(const Tensor& x, bool log) {
  std::vector<double> v = x.to_vector<double>();
  const int64_t cols = x.size(-1), rows = cols ? x.numel() / cols : 0;
  std::vector<double> out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = v.data() + r * cols;
    double m = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, xr[c]);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
    for (int64_t c = 0; c < cols; ++c) {
      out[size_t(r * cols + c)] = log ? (xr[c] - m) - std::log(s) : std::exp(xr[c] - m) / s;
    }
  }
  return from_vector(out, x.shape());
}

// grad_in_j = sum_i g_i dy_i/dx_j with the Jacobian written out from y (p = y, or exp(y) for log).
Tensor ref_softmax_backward(const Tensor& g, const Tensor& y, bool log) {
  std::vector<double> gv = g.to_vector<double>(), yv = y.to_vector<double>();
  const int64_t cols = y.size(-1), rows = cols ? y.numel() / cols : 0;
  std::vector<double> out(gv.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* gr = gv.data() + r * cols;
    const double* yr = yv.data() + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const double pj = log ? std::exp(yr[j]) : yr[j];
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double delta = i == j ? 1.0 : 0.0;
        const double jac = log ? delta - pj : yr[i] * (delta - pj);
        s += gr[i] * jac;
      }
      out[size_t(r * cols + j)] = s;
    }
  }
  return from_vector(out, y.shape());
}

struct RefLayerNorm {
  Tensor y, mean, rstd;
};

Shape without_last(const Shape& s) {
  Shape r = s;
  r.erase(r.ndim() - 1);
  return r;
}

RefLayerNorm ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  std::vector<double> v = x.to_vector<double>();
  std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>();
  const int64_t cols = x.size(-1), rows = cols ? x.numel() / cols : 0;
  std::vector<double> y(v.size()), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = v.data() + r * cols;
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += xr[c];
    const double m = s / double(cols);
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += (xr[c] - m) * (xr[c] - m);
    const double rs = 1.0 / std::sqrt(ss / double(cols) + eps);
    mean[size_t(r)] = m;
    rstd[size_t(r)] = rs;
    for (int64_t c = 0; c < cols; ++c) {
      double val = (xr[c] - m) * rs;
      if (w.defined()) val *= wv[size_t(c)];
      if (b.defined()) val += bv[size_t(c)];
      y[size_t(r * cols + c)] = val;
    }
  }
  return {from_vector(y, x.shape()), from_vector(mean, without_last(x.shape())),
          from_vector(rstd, without_last(x.shape()))};
}

struct RefLayerNormGrads {
  Tensor x, w, b;
};

// From the explicit Jacobian, using the mean and rstd the kernel receives.
RefLayerNormGrads ref_layer_norm_backward(const Tensor& g, const Tensor& x, const Tensor& w, const Tensor& mean,
                                          const Tensor& rstd) {
  std::vector<double> gv = g.to_vector<double>(), xv = x.to_vector<double>();
  std::vector<double> mv = mean.to_vector<double>(), rv = rstd.to_vector<double>();
  const int64_t cols = x.size(-1), rows = cols ? x.numel() / cols : 0;
  std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>(size_t(cols), 1.0);
  std::vector<double> gx(xv.size()), gw(static_cast<size_t>(cols)), gb(static_cast<size_t>(cols)),
      xhat(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const double rs = rv[size_t(r)];
    for (int64_t c = 0; c < cols; ++c) xhat[size_t(c)] = (xv[size_t(r * cols + c)] - mv[size_t(r)]) * rs;
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double delta = i == j ? 1.0 : 0.0;
        const double jac =
            wv[size_t(i)] * rs * (delta - 1.0 / double(cols) - xhat[size_t(i)] * xhat[size_t(j)] / double(cols));
        s += gv[size_t(r * cols + i)] * jac;
      }
      gx[size_t(r * cols + j)] = s;
    }
    for (int64_t c = 0; c < cols; ++c) {
      gw[size_t(c)] += gv[size_t(r * cols + c)] * xhat[size_t(c)];
      gb[size_t(c)] += gv[size_t(r * cols + c)];
    }
  }
  return {from_vector(gx, x.shape()), from_vector(gw), from_vector(gb)};
}

// The same values in several layouts.
std::vector<std::pair<std::string, Tensor>> layouts(const Tensor& x) {
  return {{"contiguous", x}, {"transposed", test::transposed_layout(x, 0, -1)}, {"strided", test::strided_layout(x)}};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  return va.size() == vb.size() && (va.empty() || std::memcmp(va.data(), vb.data(), va.size() * sizeof(double)) == 0);
}

struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

}  // namespace

// ---------------------------------------------------------------- softmax

TEST_CASE("softmax and log_softmax of a small row match hand-computed values", "[softmax]") {
  for (DType dt : {DType::F32, DType::F64}) {
    // exp of [0, ln 2, ln 3] is [1, 2, 3]: probabilities 1/6, 2/6, 3/6.
    Tensor x = from_vector<double>({0, std::log(2.0), std::log(3.0), 5, 5, 5}, {2, 3}).to(dt);
    Tensor want = from_vector<double>({1.0 / 6, 2.0 / 6, 3.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 3}, {2, 3});
    CHECK_CLOSE_DT(ops::softmax(x), want);
    Tensor want_log = from_vector<double>(
        {std::log(1.0 / 6), std::log(2.0 / 6), std::log(3.0 / 6), -std::log(3.0), -std::log(3.0), -std::log(3.0)},
        {2, 3});
    CHECK_CLOSE_DT(ops::log_softmax(x), want_log);
    CHECK(ops::softmax(x).dtype() == dt);
  }
}

TEST_CASE("softmax and log_softmax match the reference on every layout", "[softmax]") {
  uint64_t seed = 100;
  for (DType dt : {DType::F32, DType::F64}) {
    for (Shape shape : {Shape{5, 7}, Shape{2, 3, 17}, Shape{4, 1}, Shape{3, 100}, Shape{9}}) {
      Tensor x0 = random_tensor(shape, dt, ++seed, -5, 5);
      auto cases = layouts(x0);
      if (shape.ndim() >= 2) {
        Shape one = shape;
        one[0] = 1;
        cases.push_back({"expanded", random_tensor(one, dt, ++seed, -5, 5).expand(shape)});
      }
      for (auto& [name, x] : cases) {
        for (bool log : {false, true}) {
          INFO(dtype_name(dt) << " " << shape << " " << name << (log ? " log_softmax" : " softmax"));
          Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
          REQUIRE(y.shape() == shape);
          CHECK_CLOSE_DT(y, ref_softmax(x, log));
        }
        // Every row sums to 1.
        Tensor p = ops::softmax(x);
        std::vector<double> pv = p.to_vector<double>();
        const int64_t cols = shape.back();
        for (size_t r = 0; r < pv.size() / size_t(cols); ++r) {
          double s = 0;
          for (int64_t c = 0; c < cols; ++c) s += pv[r * size_t(cols) + size_t(c)];
          CHECK(std::fabs(s - 1.0) <= 10 * test::rtol_for(dt));
        }
      }
    }
  }
}

TEST_CASE("softmax is stable for large magnitudes", "[softmax]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor big = from_vector<double>({1000, 1001, 1002, -1e4, 0, 1e4}, {2, 3}).to(dt);
    Tensor small = from_vector<double>({0, 1, 2}, {1, 3}).to(dt);
    CHECK_CLOSE_DT(ops::softmax(big).narrow(0, 0, 1), ops::softmax(small));
    CHECK_CLOSE_DT(ops::log_softmax(big).narrow(0, 0, 1), ops::log_softmax(small));
    CHECK_CLOSE_DT(ops::softmax(big).narrow(0, 1, 1), from_vector<double>({0, 0, 1}, {1, 3}));
    CHECK_CLOSE_DT(ops::log_softmax(big).narrow(0, 1, 1), from_vector<double>({-2e4, -1e4, 0}, {1, 3}));
    Tensor x = random_tensor({6, 40}, dt, 7, -1e4, 1e4);
    CHECK_CLOSE_DT(ops::softmax(x), ref_softmax(x, false));
    CHECK_CLOSE_DT(ops::log_softmax(x), ref_softmax(x, true));
  }
}

TEST_CASE("softmax gives -inf entries zero probability; an all -inf row is NaN", "[softmax]") {
  const double inf = INFINITY;
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = from_vector<double>({1, -inf, 1, -inf, -inf, -inf, -inf, -inf}, {2, 4}).to(dt);
    Tensor p = ops::softmax(x), lp = ops::log_softmax(x);
    CHECK_CLOSE_DT(p.narrow(0, 0, 1), from_vector<double>({0.5, 0, 0.5, 0}, {1, 4}));
    CHECK_CLOSE_DT(lp.narrow(0, 0, 1), from_vector<double>({-std::log(2.0), -inf, -std::log(2.0), -inf}, {1, 4}));
    for (double v : p.select(0, 1).to_vector<double>()) CHECK(std::isnan(v));
    for (double v : lp.select(0, 1).to_vector<double>()) CHECK(std::isnan(v));
  }
}

TEST_CASE("softmax of empty tensors", "[softmax]") {
  CHECK(ops::softmax(zeros({0, 5})).shape() == Shape{0, 5});
  CHECK(ops::log_softmax(zeros({3, 0})).shape() == Shape{3, 0});
  CHECK(ops::softmax_backward(zeros({0, 5}), zeros({0, 5})).shape() == Shape{0, 5});
}

TEST_CASE("softmax_backward and log_softmax_backward match the Jacobian-vector product", "[softmax]") {
  uint64_t seed = 200;
  const double inf = INFINITY;
  for (DType dt : {DType::F32, DType::F64}) {
    for (Shape shape : {Shape{4, 6}, Shape{2, 3, 17}, Shape{5, 1}, Shape{2, 70}}) {
      Tensor x = random_tensor(shape, dt, ++seed, -3, 3);
      Tensor g = random_tensor(shape, dt, ++seed);
      for (bool log : {false, true}) {
        Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
        for (auto& [name, gl] : layouts(g)) {
          INFO(dtype_name(dt) << " " << shape << " grad " << name << (log ? " log" : ""));
          Tensor got = log ? ops::log_softmax_backward(gl, y) : ops::softmax_backward(gl, y);
          Tensor want = ref_softmax_backward(g, y, log);
          const double atol = (log && dt == DType::F32) ? kLogSoftmaxBackwardF32Atol : test::atol_for(dt);
          CHECK_CLOSE(got, want, atol, test::rtol_for(dt));
        }
        // Non-contiguous y as well.
        Tensor yt = test::transposed_layout(y, 0, -1);
        Tensor got = log ? ops::log_softmax_backward(g, yt) : ops::softmax_backward(g, yt);
        const double atol = (log && dt == DType::F32) ? kLogSoftmaxBackwardF32Atol : test::atol_for(dt);
        CHECK_CLOSE(got, ref_softmax_backward(g, y, log), atol, test::rtol_for(dt));
      }
    }
    // Masked entries: softmax passes no gradient to them, log_softmax passes g through.
    Tensor xm = from_vector<double>({0.5, -inf, 1.5, -inf}, {1, 4}).to(dt);
    Tensor gm = from_vector<double>({1, 2, 3, 4}, {1, 4}).to(dt);
    Tensor gs = ops::softmax_backward(gm, ops::softmax(xm));
    CHECK_CLOSE_DT(gs, ref_softmax_backward(gm, ops::softmax(xm), false));
    CHECK(gs.at({0, 1}) == 0);
    Tensor gl = ops::log_softmax_backward(gm, ops::log_softmax(xm));
    CHECK_CLOSE(gl, ref_softmax_backward(gm, ops::log_softmax(xm), true), kLogSoftmaxBackwardF32Atol,
                test::rtol_for(dt));
    CHECK(gl.at({0, 3}) == 4);
  }
}

TEST_CASE("softmax errors name the op", "[softmax]") {
  REQUIRE_THROWS_WITH(ops::softmax(scalar_tensor(1.0)), "softmax: expected at least 1 dim, got a 0-d tensor");
  REQUIRE_THROWS_WITH(ops::log_softmax(zeros({3}, DType::I64)),
                      "log_softmax: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::softmax_backward(zeros({2, 3}), zeros({2, 4})),
                      "softmax_backward: grad_out shape (2, 3) differs from y shape (2, 4)");
  REQUIRE_THROWS_WITH(ops::log_softmax_backward(zeros({2, 3}, DType::F64), zeros({2, 3})),
                      "log_softmax_backward: grad_out dtype f64 differs from y dtype f32");
}

// ---------------------------------------------------------------- layer norm

TEST_CASE("layer_norm of a tiny row matches hand-computed values", "[layernorm]") {
  for (DType dt : {DType::F32, DType::F64}) {
    // x = [1, 2, 3, 4]: mean 2.5, biased var 1.25, rstd = 1 / sqrt(1.25) (eps = 0).
    Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4}).to(dt);
    ops::LayerNormResult r = ops::layer_norm(x, Tensor(), Tensor(), 0.0);
    CHECK(r.mean.shape() == Shape{1});
    CHECK(r.mean.item() == 2.5);
    CHECK(r.rstd.item() == Approx(0.8944271909999159).epsilon(1e-7));
    CHECK_CLOSE_DT(r.y, from_vector<double>({-1.3416407864998738, -0.4472135954999579, 0.4472135954999579,
                                             1.3416407864998738},
                                            {1, 4}));
    Tensor w = from_vector<double>({1, 2, 0.5, -1}).to(dt), b = from_vector<double>({0, 1, 0, 2}).to(dt);
    CHECK_CLOSE_DT(ops::layer_norm(x, w, b, 0.0).y, from_vector<double>({-1.3416407864998738, 0.1055728090000842,
                                                                         0.22360679774997896, 0.6583592135001262},
                                                                        {1, 4}));
    // The default eps = 1e-5 enters rstd.
    CHECK(ops::layer_norm(x, w, b).rstd.item() == Approx(1.0 / std::sqrt(1.25 + 1e-5)).epsilon(1e-7));
  }
}

TEST_CASE("layer_norm matches the reference with and without weight and bias", "[layernorm]") {
  uint64_t seed = 300;
  for (DType dt : {DType::F32, DType::F64}) {
    for (Shape shape : {Shape{6, 10}, Shape{2, 3, 33}, Shape{5, 1}, Shape{7}}) {
      const int64_t cols = shape.back();
      Tensor x0 = random_tensor(shape, dt, ++seed, -3, 3);
      Tensor w = random_tensor({cols}, dt, ++seed), b = random_tensor({cols}, dt, ++seed);
      for (auto& [name, x] : layouts(x0)) {
        for (int mode = 0; mode < 4; ++mode) {
          Tensor wm = mode & 1 ? w : Tensor(), bm = mode & 2 ? b : Tensor();
          INFO(dtype_name(dt) << " " << shape << " " << name << " weight " << (mode & 1) << " bias " << (mode & 2));
          ops::LayerNormResult r = ops::layer_norm(x, wm, bm, 1e-5);
          RefLayerNorm ref = ref_layer_norm(x, wm, bm, 1e-5);
          CHECK_CLOSE_DT(r.y, ref.y);
          CHECK_CLOSE_DT(r.mean, ref.mean);
          CHECK_CLOSE_DT(r.rstd, ref.rstd);
        }
      }
    }
    // A large mean with a small spread: statistics must not lose the variance.
    Tensor off = random_tensor({4, 64}, dt, ++seed, 1000, 1001);
    RefLayerNorm ref = ref_layer_norm(off, Tensor(), Tensor(), 1e-5);
    const double atol = dt == DType::F64 ? kLargeMeanF64Atol : test::atol_for(dt);
    CHECK_CLOSE(ops::layer_norm(off, Tensor(), Tensor()).y, ref.y, atol, test::rtol_for(dt));
    CHECK_CLOSE(ops::layer_norm(off, Tensor(), Tensor()).rstd, ref.rstd, atol, test::rtol_for(dt));
  }
  // Empty rows dimension.
  ops::LayerNormResult e = ops::layer_norm(zeros({0, 4}), Tensor(), Tensor());
  CHECK(e.y.shape() == Shape{0, 4});
  CHECK(e.mean.shape() == Shape{0});
}

TEST_CASE("layer_norm_backward matches the Jacobian reference", "[layernorm]") {
  uint64_t seed = 400;
  for (DType dt : {DType::F32, DType::F64}) {
    for (Shape shape : {Shape{7, 12}, Shape{3, 4, 9}, Shape{300, 16}, Shape{5, 1}}) {
      const int64_t cols = shape.back();
      Tensor x0 = random_tensor(shape, dt, ++seed, -3, 3);
      Tensor g0 = random_tensor(shape, dt, ++seed);
      Tensor w = random_tensor({cols}, dt, ++seed);
      for (bool with_w : {false, true}) {
        Tensor wm = with_w ? w : Tensor();
        ops::LayerNormResult f = ops::layer_norm(x0, wm, Tensor());
        RefLayerNormGrads ref = ref_layer_norm_backward(g0, x0, wm, f.mean, f.rstd);
        auto xs = layouts(x0);
        auto gs = layouts(g0);
        for (size_t k = 0; k < xs.size(); ++k) {
          INFO(dtype_name(dt) << " " << shape << " x " << xs[k].first << " grad " << gs[2 - k].first << " weight "
                              << with_w);
          ops::LayerNormGrads gr = ops::layer_norm_backward(gs[2 - k].second, xs[k].second, wm, f.mean, f.rstd);
          CHECK_CLOSE_DT(gr.x, ref.x);
          CHECK(gr.weight.defined() == with_w);
          if (with_w) CHECK_CLOSE_DT(gr.weight, ref.w);
          REQUIRE(gr.bias.defined());
          CHECK_CLOSE_DT(gr.bias, ref.b);
        }
      }
    }
  }
}

TEST_CASE("layer_norm_backward matches finite differences in f64", "[layernorm]") {
  Tensor x = random_tensor({3, 5}, DType::F64, 501);
  Tensor w = random_tensor({5}, DType::F64, 502), b = random_tensor({5}, DType::F64, 503);
  Tensor g = random_tensor({3, 5}, DType::F64, 504);
  const std::vector<double> gv = g.to_vector<double>();
  // L(x, w, b) = sum(g * layer_norm(x, w, b).y)
  auto loss = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
    std::vector<double> y = ops::layer_norm(xx, ww, bb).y.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += gv[i] * y[i];
    return s;
  };
  auto numeric = [&](const Tensor& t, auto&& eval) {
    std::vector<double> v = t.to_vector<double>(), out(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      std::vector<double> p = v, m = v;
      p[i] += kFiniteDiffH;
      m[i] -= kFiniteDiffH;
      out[i] = (eval(from_vector(p, t.shape())) - eval(from_vector(m, t.shape()))) / (2 * kFiniteDiffH);
    }
    return from_vector(out, t.shape());
  };
  ops::LayerNormResult f = ops::layer_norm(x, w, b);
  ops::LayerNormGrads gr = ops::layer_norm_backward(g, x, w, f.mean, f.rstd);
  CHECK_CLOSE(gr.x, numeric(x, [&](const Tensor& t) { return loss(t, w, b); }), kFiniteDiffAtol, kFiniteDiffRtol);
  CHECK_CLOSE(gr.weight, numeric(w, [&](const Tensor& t) { return loss(x, t, b); }), kFiniteDiffAtol, kFiniteDiffRtol);
  CHECK_CLOSE(gr.bias, numeric(b, [&](const Tensor& t) { return loss(x, w, t); }), kFiniteDiffAtol, kFiniteDiffRtol);
}

TEST_CASE("layer_norm_backward kernel writes grad_x and accumulates grad_w and grad_b", "[layernorm]") {
  Tensor x = random_tensor({6, 8}, DType::F64, 601), g = random_tensor({6, 8}, DType::F64, 602);
  Tensor w = random_tensor({8}, DType::F64, 603);
  ops::LayerNormResult f = ops::layer_norm(x, w, Tensor());
  RefLayerNormGrads ref = ref_layer_norm_backward(g, x, w, f.mean, f.rstd);
  Tensor gx = full({6, 8}, 123.0, DType::F64), gw = full({8}, 1.0, DType::F64), gb = full({8}, 2.0, DType::F64);
  kernel<OpId::layer_norm_backward>(Device::CPU)(g, x, w, f.mean, f.rstd, gx, gw, gb);
  CHECK_CLOSE_DT(gx, ref.x);
  std::vector<double> rw = ref.w.to_vector<double>(), rb = ref.b.to_vector<double>();
  for (double& v : rw) v += 1.0;
  for (double& v : rb) v += 2.0;
  CHECK_CLOSE_DT(gw, from_vector(rw));
  CHECK_CLOSE_DT(gb, from_vector(rb));
  // Undefined grad_w / grad_b are skipped.
  Tensor gx2 = empty({6, 8}, DType::F64);
  kernel<OpId::layer_norm_backward>(Device::CPU)(g, x, w, f.mean, f.rstd, gx2, Tensor(), Tensor());
  CHECK_CLOSE_DT(gx2, ref.x);
}

TEST_CASE("softmax and layer_norm give identical bits for 1 and 2 threads", "[layernorm][softmax]") {
  ThreadsGuard guard;
  Tensor x = random_tensor({4096, 64}, DType::F32, 701), g = random_tensor({4096, 64}, DType::F32, 702);
  Tensor w = random_tensor({64}, DType::F32, 703), b = random_tensor({64}, DType::F32, 704);
  auto run = [&] {
    ops::LayerNormResult f = ops::layer_norm(x, w, b);
    ops::LayerNormGrads gr = ops::layer_norm_backward(g, x, w, f.mean, f.rstd);
    Tensor p = ops::softmax(x);
    return std::vector<Tensor>{f.y, f.mean, f.rstd, gr.x, gr.weight, gr.bias, p, ops::softmax_backward(g, p)};
  };
  set_num_threads(1);
  std::vector<Tensor> one = run();
  set_num_threads(2);
  std::vector<Tensor> two = run();
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(same_bits(one[i], two[i]));
  }
}

TEST_CASE("layer_norm errors name the op", "[layernorm]") {
  Tensor x = zeros({2, 4});
  REQUIRE_THROWS_WITH(ops::layer_norm(x, zeros({3}), Tensor()),
                      "layer_norm: weight must have shape (4,) (the last dim of x (2, 4)), got (3,)");
  REQUIRE_THROWS_WITH(ops::layer_norm(x, Tensor(), zeros({4}, DType::F64)),
                      "layer_norm: bias dtype f64 differs from x dtype f32");
  REQUIRE_THROWS_WITH(ops::layer_norm(scalar_tensor(1.0), Tensor(), Tensor()),
                      "layer_norm: expected at least 1 dim, got a 0-d tensor");
  REQUIRE_THROWS_WITH(ops::layer_norm(zeros({2, 4}, DType::I64), Tensor(), Tensor()),
                      "layer_norm: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::layer_norm(x, Tensor(), Tensor(), -1.0), "layer_norm: eps must be non-negative, got -1");
  REQUIRE_THROWS_WITH(ops::layer_norm_backward(x, x, Tensor(), zeros({3}), zeros({2})),
                      "layer_norm_backward: mean must have shape (2,) (x shape (2, 4) without its last dim), got (3,)");
  REQUIRE_THROWS_WITH(ops::layer_norm_backward(zeros({2, 5}), x, Tensor(), zeros({2}), zeros({2})),
                      "layer_norm_backward: grad_y shape (2, 5) differs from x shape (2, 4)");
  REQUIRE_THROWS_WITH(ops::layer_norm_backward(x, x, zeros({4}), zeros({2}), zeros({2}, DType::F64)),
                      "layer_norm_backward: dtype f64 of rstd differs from x dtype f32");
  REQUIRE_THROWS_WITH(ops::layer_norm_backward(x, x, zeros({5}), zeros({2}), zeros({2})),
                      "layer_norm_backward: weight must have shape (4,) (the last dim of x (2, 4)), got (5,)");
}
