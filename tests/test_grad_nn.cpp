// test_grad_nn.cpp — the differentiable nn functions: softmax / log_softmax over any dim, layer_norm,
// dropout, cross_entropy, mse_loss and scaled_dot_product_attention.
//
// Forward values are checked against naive references written here in double (loops over indices)
// and against hand-computed numbers; gradients with gradcheck (central differences in f64, through the
// function's own recorded backward), on non-contiguous inputs too. Random functions (dropout, attention
// dropout) are made deterministic by constructing the Generator inside the function under test, so
// every evaluation of f draws the same mask. Also: f32 vs the double reference, eval-mode identities,
// NaN for fully padded keys, and the error messages of the functions' own checks.
#include <cmath>
#include <limits>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::for_each_index;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

// Dropout keep-rate check: n Bernoulli(keep) draws have a standard deviation of sqrt(p (1 - p) / n) in
// their mean, 0.0015 for n = 1e5 and p = 0.3; 0.01 is more than 6 standard deviations.
constexpr double kKeepRateTol = 0.01;

// gradcheck(f, inputs) with the default tolerances (autograd/gradcheck.h), reporting the worst coordinate.
#define CHECK_GRADCHECK(f, ...)                         \
  do {                                                  \
    GradcheckResult _r = gradcheck((f), __VA_ARGS__);   \
    INFO(_r.report());                                  \
    CHECK(_r.ok);                                       \
  } while (0)

// ---------------------------------------------------------------- references (double)

// softmax (or log_softmax) of x along dim, element by element from the definition.
Tensor ref_softmax(const Tensor& x, int dim, bool log) {
  const int d = dim < 0 ? dim + x.ndim() : dim;
  std::vector<double> out;
  out.reserve(size_t(x.numel()));
  for_each_index(x.shape(), [&](const std::vector<int64_t>& idx) {
    std::vector<int64_t> j = idx;
    double m = -INFINITY;
    for (j[size_t(d)] = 0; j[size_t(d)] < x.size(d); ++j[size_t(d)]) m = std::max(m, x.at(j));
    double s = 0;
    for (j[size_t(d)] = 0; j[size_t(d)] < x.size(d); ++j[size_t(d)]) s += std::exp(x.at(j) - m);
    const double xi = x.at(idx);
    out.push_back(log ? xi - m - std::log(s) : std::exp(xi - m) / s);
  });
  return from_vector(out, x.shape());
}

// layer norm of every row over the last dim; w, b may be undefined.
Tensor ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  std::vector<double> v = x.to_vector<double>();
  const int64_t C = x.size(-1), R = x.numel() / C;
  std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>(size_t(C), 1.0);
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(size_t(C), 0.0);
  std::vector<double> out(v.size());
  for (int64_t r = 0; r < R; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += v[size_t(r * C + c)];
    mean /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (v[size_t(r * C + c)] - mean) * (v[size_t(r * C + c)] - mean);
    var /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      out[size_t(r * C + c)] = (v[size_t(r * C + c)] - mean) / std::sqrt(var + eps) * wv[size_t(c)] + bv[size_t(c)];
    }
  }
  return from_vector(out, x.shape());
}

// mean over non-ignored rows of -log_softmax(logits_row)[target]; 0 when every target is ignored.
double ref_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  std::vector<double> l = logits.to_vector<double>();
  std::vector<int64_t> t = targets.to_vector<int64_t>();
  const int64_t C = logits.size(-1);
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == ignore_index) continue;
    const double* row = l.data() + int64_t(i) * C;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, row[c]);
    for (int64_t c = 0; c < C; ++c) s += std::exp(row[c] - m);
    total += -(row[t[i]] - m - std::log(s));
    ++count;
  }
  return count ? total / double(count) : 0.0;
}

// softmax(q k^T / sqrt(dh), -inf at padded keys) [* keep / (1 - p)] v, with loops. keep: (B, H, Tq, Tk)
// 0/1 mask or undefined.
Tensor ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, const Tensor& keep,
                     double p) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), dh = q.size(3), Tk = k.size(2), dv = v.size(3);
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(static_cast<size_t>(Tk));
        double m = -INFINITY;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < dh; ++c) dot += q.at({b, h, i, c}) * k.at({b, h, j, c});
          s[size_t(j)] = mask.defined() && mask.at({b, j}) != 0 ? -INFINITY : dot / std::sqrt(double(dh));
          m = std::max(m, s[size_t(j)]);
        }
        double z = 0;
        for (int64_t j = 0; j < Tk; ++j) z += std::exp(s[size_t(j)] - m);  // NaN when every key is padded
        for (int64_t c = 0; c < dv; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j) {
            double pj = std::exp(s[size_t(j)] - m) / z;
            if (keep.defined()) pj *= keep.at({b, h, i, j}) / (1.0 - p);
            acc += pj * v.at({b, h, j, c});
          }
          out.push_back(acc);
        }
      }
    }
  }
  return from_vector(out, {B, H, Tq, dv});
}

Tensor leaf(const Tensor& t) {
  Tensor l = t.detach().clone();
  l.requires_grad_();
  return l;
}

}  // namespace

// ================================================================ softmax / log_softmax

TEST_CASE("softmax / log_softmax: hand-computed values, over the last dim and over dim 0", "[grad][grad-nn]") {
  Tensor x = from_vector<double>({0.0, std::log(2.0), std::log(3.0)});
  CHECK_CLOSE_DT(softmax(x), from_vector<double>({1.0 / 6, 2.0 / 6, 3.0 / 6}));
  CHECK_CLOSE_DT(log_softmax(x), from_vector<double>({std::log(1.0 / 6), std::log(2.0 / 6), std::log(3.0 / 6)}));
  // Columns of [[0, 0], [ln 3, 0]]: softmax over dim 0 gives [1/4, 3/4] and [1/2, 1/2].
  Tensor y = from_vector<double>({0.0, 0.0, std::log(3.0), 0.0}, {2, 2});
  CHECK_CLOSE_DT(softmax(y, 0), from_vector<double>({0.25, 0.5, 0.75, 0.5}, {2, 2}));
  CHECK_CLOSE_DT(log_softmax(y, -2), from_vector<double>({std::log(0.25), std::log(0.5), std::log(0.75),
                                                          std::log(0.5)}, {2, 2}));
}

TEST_CASE("softmax / log_softmax: forward matches the reference over every dim, f32 and f64, any layout",
          "[grad][grad-nn]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor base = random_tensor({2, 3, 4}, dt, 11, -3.0, 3.0);
    for (const Tensor& x : {base, transposed_layout(base, 0, 2), strided_layout(base)}) {
      for (int dim : {0, 1, 2, -1, -2}) {
        for (bool log : {false, true}) {
          INFO("dtype " << dt << " dim " << dim << " log " << log << " contiguous " << x.is_contiguous());
          Tensor got = log ? log_softmax(x, dim) : softmax(x, dim);
          CHECK(got.dtype() == dt);
          CHECK_CLOSE_DT(got, ref_softmax(x.to(DType::F64), dim, log));
        }
      }
    }
  }
  // Large magnitudes: the row max is subtracted, so nothing overflows.
  Tensor big = from_vector<double>({1000, 1001, 999, -1000, -1001, -999}, {2, 3});
  CHECK_CLOSE_DT(softmax(big, 1), ref_softmax(big, 1, false));
  CHECK_CLOSE_DT(log_softmax(big, 0), ref_softmax(big, 0, true));
}

TEST_CASE("softmax / log_softmax: gradcheck over the last dim and over dims 0 and 1, non-contiguous inputs",
          "[grad][grad-nn]") {
  Tensor x2 = random_tensor({3, 5}, DType::F64, 21);
  Tensor x3 = random_tensor({2, 3, 4}, DType::F64, 22);
  for (bool log : {false, true}) {
    auto fn = [log](int dim) {
      return [log, dim](const std::vector<Tensor>& in) { return log ? log_softmax(in[0], dim) : softmax(in[0], dim); };
    };
    INFO("log " << log);
    CHECK_GRADCHECK(fn(-1), {x2});
    CHECK_GRADCHECK(fn(0), {x2});
    CHECK_GRADCHECK(fn(0), {x3});
    CHECK_GRADCHECK(fn(1), {x3});
    CHECK_GRADCHECK(fn(2), {x3});
    CHECK_GRADCHECK(fn(-1), {transposed_layout(x3, 0, 2)});
    CHECK_GRADCHECK(fn(1), {transposed_layout(x3, 1, 2)});
    CHECK_GRADCHECK(fn(0), {strided_layout(x3)});
  }
}

TEST_CASE("softmax: recording, no_grad, and errors", "[grad][grad-nn]") {
  Tensor x = leaf(random_tensor({2, 3}, DType::F64, 5));
  Tensor y = softmax(x, 0);
  CHECK(y.requires_grad());
  CHECK(y.grad_fn_name() == "softmax");
  CHECK(log_softmax(x).grad_fn_name() == "log_softmax");
  CHECK_FALSE(softmax(x.detach()).requires_grad());
  {
    NoGradGuard ng;
    CHECK_FALSE(softmax(x).requires_grad());
  }
  // Each row of a softmax sums to 1, so the gradient of the sum of all outputs is 0.
  y.backward(ones({2, 3}, DType::F64));
  CHECK_CLOSE(x.grad(), zeros({2, 3}, DType::F64), 1e-15, 0.0);

  REQUIRE_THROWS_WITH(softmax(x, 2), "softmax: dim 2 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(log_softmax(x, -3), "log_softmax: dim -3 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(softmax(scalar_tensor(1.0)), "softmax: expected at least 1 dim, got a 0-d tensor");
  REQUIRE_THROWS_WITH(softmax(arange(3), 0), Catch::Contains("softmax: expected a floating tensor"));
}

// ================================================================ layer_norm

TEST_CASE("layer_norm: hand-computed values", "[grad][grad-nn]") {
  // x = [1, 2, 3]: mean 2, biased variance 2/3, so xhat = [-1, 0, 1] * sqrt(3/2).
  Tensor x = from_vector<double>({1, 2, 3}, {1, 3});
  const double a = std::sqrt(1.5);
  CHECK_CLOSE_DT(layer_norm(x, Tensor(), Tensor(), 0.0), from_vector<double>({-a, 0, a}, {1, 3}));
  Tensor w = from_vector<double>({1, 2, 3});
  Tensor b = from_vector<double>({0, 1, -1});
  CHECK_CLOSE_DT(layer_norm(x, w, b, 0.0), from_vector<double>({-a, 1, 3 * a - 1}, {1, 3}));
  // eps enters under the square root: var + eps = 2/3 + 1/3 = 1.
  CHECK_CLOSE_DT(layer_norm(x, Tensor(), b, 1.0 / 3.0), from_vector<double>({-1, 1, 0}, {1, 3}));
}

TEST_CASE("layer_norm: forward matches the reference, with and without weight and bias, f32 and f64",
          "[grad][grad-nn]") {
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Shape& shape : {Shape{4, 6}, Shape{2, 3, 5}}) {
      Tensor base = random_tensor(shape, dt, 31);
      const int64_t C = shape.back();
      Tensor w = random_tensor({C}, dt, 32, 0.5, 1.5), b = random_tensor({C}, dt, 33);
      for (const Tensor& x : {base, transposed_layout(base), strided_layout(base)}) {
        for (int mask = 0; mask < 4; ++mask) {
          Tensor ww = mask & 1 ? w : Tensor(), bb = mask & 2 ? b : Tensor();
          INFO("dtype " << dt << " shape " << shape << " weight " << (mask & 1) << " bias " << (mask & 2)
                        << " contiguous " << x.is_contiguous());
          Tensor got = layer_norm(x, ww, bb, 1e-5);
          CHECK(got.dtype() == dt);
          CHECK_CLOSE_DT(got, ref_layer_norm(x.to(DType::F64), ww, bb, 1e-5));
        }
      }
    }
  }
}

TEST_CASE("layer_norm: gradcheck with and without weight and bias, 2-d and 3-d, non-contiguous x",
          "[grad][grad-nn]") {
  for (const Shape& shape : {Shape{3, 5}, Shape{2, 3, 4}}) {
    const int64_t C = shape.back();
    Tensor x = random_tensor(shape, DType::F64, 41);
    Tensor w = random_tensor({C}, DType::F64, 42, 0.5, 1.5), b = random_tensor({C}, DType::F64, 43);
    INFO("shape " << shape);
    auto f_none = [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-5); };
    auto f_w = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 1e-5); };
    auto f_b = [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), in[1], 1e-5); };
    auto f_wb = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); };
    CHECK_GRADCHECK(f_none, {x});
    CHECK_GRADCHECK(f_w, {x, w});
    CHECK_GRADCHECK(f_b, {x, b});
    CHECK_GRADCHECK(f_wb, {x, w, b});
    CHECK_GRADCHECK(f_wb, {transposed_layout(x), strided_layout(w), b});
    CHECK_GRADCHECK(f_none, {strided_layout(x)});
  }
}

TEST_CASE("layer_norm: gradients only for what requires grad; bias gradient is the sum of grad_y",
          "[grad][grad-nn]") {
  Tensor x = random_tensor({4, 3}, DType::F64, 51);
  Tensor w = leaf(random_tensor({3}, DType::F64, 52));
  Tensor b = leaf(random_tensor({3}, DType::F64, 53));
  Tensor y = layer_norm(x, w, b);
  CHECK(y.grad_fn_name() == "layer_norm");
  Tensor g = random_tensor({4, 3}, DType::F64, 54);
  y.backward(g);
  CHECK_FALSE(x.grad().defined());
  // y = xhat * w + b: db = sum over rows of g, dw = sum over rows of g * xhat.
  Tensor xhat = ref_layer_norm(x, Tensor(), Tensor(), 1e-5);
  std::vector<double> gv = g.to_vector<double>(), xv = xhat.to_vector<double>(), db(3, 0.0), dw(3, 0.0);
  for (size_t i = 0; i < gv.size(); ++i) {
    db[i % 3] += gv[i];
    dw[i % 3] += gv[i] * xv[i];
  }
  CHECK_CLOSE_DT(b.grad(), from_vector(db));
  CHECK_CLOSE_DT(w.grad(), from_vector(dw));
  // Only x requires grad: x gets one, and the forward without parameters records too.
  Tensor x2 = leaf(x);
  layer_norm(x2, Tensor(), Tensor()).backward(g);
  CHECK(x2.grad().shape() == Shape{4, 3});

  REQUIRE_THROWS_WITH(layer_norm(x, from_vector<double>({1, 2}), Tensor()),
                      "layer_norm: weight must have shape (3,) (the last dim of x (4, 3)), got (2,)");
  REQUIRE_THROWS_WITH(layer_norm(Tensor(), Tensor(), Tensor()), "layer_norm: x is an undefined tensor");
}

// ================================================================ dropout

TEST_CASE("dropout: keep rate, scaling, reproducibility from the generator", "[grad][grad-nn]") {
  const double p = 0.3;
  Tensor x = ones({100000}, DType::F32);
  Generator g1(7);
  Tensor y = dropout(x, p, true, &g1);
  std::vector<float> yv = y.to_vector<float>();
  const float scale = float(1.0 / (1.0 - p));
  int64_t kept = 0;
  bool only_zero_or_scale = true;
  for (float v : yv) {
    if (v == scale) {
      ++kept;
    } else if (v != 0.0f) {
      only_zero_or_scale = false;
    }
  }
  CHECK(only_zero_or_scale);
  CHECK(std::fabs(double(kept) / double(yv.size()) - (1.0 - p)) < kKeepRateTol);
  // The mask is bernoulli(1 - p) from the given generator: the same seed gives the same mask.
  Generator g2(7);
  Tensor mask = bernoulli({100000}, 1.0 - p, DType::F32, &g2);
  std::vector<float> mv = mask.to_vector<float>();
  bool matches = true;
  for (size_t i = 0; i < mv.size(); ++i) matches = matches && (yv[i] == mv[i] * scale);
  CHECK(matches);
  // The generator advanced: a second draw differs.
  Tensor y2 = dropout(x, p, true, &g1);
  CHECK_FALSE(allclose(y, y2));
  // Without a generator the default one is used.
  manual_seed(7);
  Tensor yd = dropout(x, p, true);
  CHECK(allclose(yd, y, 0.0, 0.0));
}

TEST_CASE("dropout: identity in eval mode and for p = 0; zeros for p = 1; errors", "[grad][grad-nn]") {
  Tensor x = leaf(random_tensor({3, 4}, DType::F64, 61));
  CHECK(dropout(x, 0.5, false).is_same(x));
  CHECK(dropout(x, 0.0, true).is_same(x));
  Generator g(1);
  Tensor z = dropout(x, 1.0, true, &g);
  CHECK_CLOSE(z, zeros({3, 4}, DType::F64), 0.0, 0.0);
  CHECK(z.grad_fn_name() == "dropout");
  z.backward(ones({3, 4}, DType::F64));
  CHECK_CLOSE(x.grad(), zeros({3, 4}, DType::F64), 0.0, 0.0);

  REQUIRE_THROWS_WITH(dropout(x, 1.5, true), "dropout: p must be in [0, 1], got 1.5");
  REQUIRE_THROWS_WITH(dropout(x, -0.1, false), "dropout: p must be in [0, 1], got -0.1");
  REQUIRE_THROWS_WITH(dropout(x, std::nan(""), true), Catch::Contains("dropout: p must be in [0, 1]"));
  REQUIRE_THROWS_WITH(dropout(arange(4), 0.5, true), Catch::Contains("dropout: expected a floating tensor"));
}

TEST_CASE("dropout: backward is grad * mask / (1 - p); gradcheck with a fixed generator", "[grad][grad-nn]") {
  const double p = 0.4;
  Tensor x = leaf(ones({5, 6}, DType::F64));
  Generator g(3);
  Tensor y = dropout(x, p, true, &g);
  Tensor go = random_tensor({5, 6}, DType::F64, 62);
  y.backward(go);
  // With x = 1, y is exactly mask / (1 - p), so the gradient must be go * y.
  std::vector<double> yv = y.to_vector<double>(), gv = go.to_vector<double>(), want(yv.size());
  for (size_t i = 0; i < yv.size(); ++i) want[i] = gv[i] * yv[i];
  CHECK_CLOSE_DT(x.grad(), from_vector(want, {5, 6}));

  Tensor xr = random_tensor({4, 5}, DType::F64, 63);
  auto f = [p](const std::vector<Tensor>& in) {
    Generator fixed(11);  // recreated on every call: the same mask for every evaluation of f
    return dropout(in[0], p, true, &fixed);
  };
  CHECK_GRADCHECK(f, {xr});
  CHECK_GRADCHECK(f, {transposed_layout(xr)});
}

// ================================================================ cross_entropy

TEST_CASE("cross_entropy: hand-computed values and gradient", "[grad][grad-nn]") {
  // logits [0, 0], target 0: -log(1/2) = log 2; gradient softmax - onehot = [-1/2, 1/2].
  Tensor l = leaf(from_vector<double>({0, 0}, {1, 2}));
  Tensor loss = cross_entropy(l, from_vector<int64_t>({0}));
  CHECK(loss.ndim() == 0);
  CHECK(loss.item() == Approx(std::log(2.0)).epsilon(1e-14));
  CHECK(loss.grad_fn_name() == "cross_entropy");
  loss.backward();
  CHECK_CLOSE_DT(l.grad(), from_vector<double>({-0.5, 0.5}, {1, 2}));

  // Two rows, the second ignored: the mean is over one row only, the ignored row gets no gradient.
  Tensor l2 = leaf(from_vector<double>({1, 2, 3, 5, 5, 5}, {2, 3}));
  Tensor loss2 = cross_entropy(l2, from_vector<int64_t>({2, -100}));
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK(loss2.item() == Approx(-std::log(std::exp(3.0) / z)).epsilon(1e-14));
  loss2.backward();
  CHECK_CLOSE_DT(l2.grad(), from_vector<double>({std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z - 1,
                                                 0, 0, 0}, {2, 3}));
  // 1-d logits (C) with a 0-d target.
  CHECK(cross_entropy(from_vector<double>({0, 0, 0, 0}), scalar_tensor(3, DType::I64)).item() ==
        Approx(std::log(4.0)).epsilon(1e-14));
}

TEST_CASE("cross_entropy: forward matches the reference, (N, C) and (B, T, C), i32/i64, ignore_index",
          "[grad][grad-nn]") {
  for (DType dt : {DType::F32, DType::F64}) {
    for (DType it : {DType::I32, DType::I64}) {
      Tensor l2 = random_tensor({6, 5}, dt, 71, -3, 3);
      Tensor t2 = from_vector<int64_t>({0, 4, -100, 2, 1, -100}).to(it);
      Tensor l3 = random_tensor({2, 3, 4}, dt, 72, -3, 3);
      Tensor t3 = from_vector<int64_t>({3, 0, 1, -100, 2, 2}, {2, 3}).to(it);
      INFO("dtype " << dt << " target dtype " << it);
      Tensor got2 = cross_entropy(l2, t2), got3 = cross_entropy(l3, t3);
      CHECK(got2.dtype() == dt);
      CHECK(got2.item() == Approx(ref_cross_entropy(l2, t2, -100)).epsilon(test::rtol_for(dt)));
      CHECK(got3.item() == Approx(ref_cross_entropy(l3, t3, -100)).epsilon(test::rtol_for(dt)));
      CHECK(cross_entropy(transposed_layout(l3, 0, 1), t3).item() ==
            Approx(ref_cross_entropy(l3, t3, -100)).epsilon(test::rtol_for(dt)));
      // ignore_index may be a valid class: targets equal to it are skipped.
      Tensor t4 = from_vector<int64_t>({0, 4, 3, 2, 1, 4}).to(it);
      CHECK(cross_entropy(l2, t4, 4).item() == Approx(ref_cross_entropy(l2, t4, 4)).epsilon(test::rtol_for(dt)));
      CHECK(ref_cross_entropy(l2, t4, 4) != Approx(ref_cross_entropy(l2, t4, -100)));  // the choice matters
    }
  }
}

TEST_CASE("cross_entropy: gradcheck with ignored targets, 3-d and non-contiguous logits", "[grad][grad-nn]") {
  Tensor l2 = random_tensor({4, 5}, DType::F64, 81, -2, 2);
  Tensor t2 = from_vector<int64_t>({1, -100, 4, 0});
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t2); }, {l2});
  Tensor l3 = random_tensor({2, 3, 4}, DType::F64, 82, -2, 2);
  Tensor t3 = from_vector<int32_t>({3, 0, 1, -1, 2, 2}, {2, 3});
  auto f3 = [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t3, -1); };
  CHECK_GRADCHECK(f3, {l3});
  CHECK_GRADCHECK(f3, {transposed_layout(l3, 0, 1)});
  CHECK_GRADCHECK(f3, {strided_layout(l3)});
}

TEST_CASE("cross_entropy: every target ignored gives 0 with a zero gradient", "[grad][grad-nn]") {
  Tensor l = leaf(random_tensor({3, 4}, DType::F64, 91));
  Tensor loss = cross_entropy(l, from_vector<int64_t>({-100, -100, -100}));
  CHECK(loss.ndim() == 0);
  CHECK(loss.item() == 0.0);
  loss.backward();
  REQUIRE(l.grad().defined());
  CHECK_CLOSE(l.grad(), zeros({3, 4}, DType::F64), 0.0, 0.0);
  CHECK(cross_entropy(zeros({0, 4}), zeros({0}, DType::I64)).item() == 0.0);
}

TEST_CASE("cross_entropy: errors name the bad target and its position", "[grad][grad-nn]") {
  Tensor l = random_tensor({2, 3, 4}, DType::F32, 95);
  REQUIRE_THROWS_WITH(cross_entropy(l, from_vector<int64_t>({0, 1, 2, 3, 4, 0}, {2, 3})),
                      "cross_entropy: target 4 at position (1, 1) is out of range for 4 classes "
                      "(expected [0, 4) or ignore_index -100)");
  REQUIRE_THROWS_WITH(cross_entropy(l.select(0, 0), from_vector<int32_t>({0, -1, 2})),
                      "cross_entropy: target -1 at position (1,) is out of range for 4 classes "
                      "(expected [0, 4) or ignore_index -100)");
  REQUIRE_THROWS_WITH(cross_entropy(l, zeros({2, 4}, DType::I64)),
                      "cross_entropy: targets must have shape (2, 3) (logits (2, 3, 4) without the class dim), "
                      "got (2, 4)");
  REQUIRE_THROWS_WITH(cross_entropy(l, zeros({2, 3}, DType::F32)),
                      "cross_entropy: targets must be i32 or i64 class indices, got f32");
  REQUIRE_THROWS_WITH(cross_entropy(arange(4).reshape({1, 4}), zeros({1}, DType::I64)),
                      "cross_entropy: logits must be f32 or f64, got i64");
  REQUIRE_THROWS_WITH(cross_entropy(scalar_tensor(1.0), scalar_tensor(0, DType::I64)),
                      "cross_entropy: logits must have a class dim (..., C), got a 0-d tensor");
}

// ================================================================ mse_loss

TEST_CASE("mse_loss: hand-computed value and gradients, gradcheck, errors", "[grad][grad-nn]") {
  Tensor p = leaf(from_vector<double>({1, 2, 3}));
  Tensor t = leaf(from_vector<double>({1, 0, 0}));
  Tensor loss = mse_loss(p, t);
  CHECK(loss.ndim() == 0);
  CHECK(loss.item() == Approx(13.0 / 3.0).epsilon(1e-14));
  CHECK(loss.grad_fn_name() == "mse_loss");
  loss.backward();
  // d/dpred = 2 (pred - target) / n = [0, 4/3, 2]; d/dtarget is its negation.
  CHECK_CLOSE_DT(p.grad(), from_vector<double>({0, 4.0 / 3, 2}));
  CHECK_CLOSE_DT(t.grad(), from_vector<double>({0, -4.0 / 3, -2}));
  // Only pred requires grad.
  Tensor p2 = leaf(from_vector<double>({1, 2, 3}));
  mse_loss(p2, from_vector<double>({1, 0, 0})).backward();
  CHECK_CLOSE_DT(p2.grad(), from_vector<double>({0, 4.0 / 3, 2}));
  // f32 value.
  CHECK(mse_loss(from_vector<float>({1, 2, 3}), from_vector<float>({1, 0, 0})).item() ==
        Approx(13.0 / 3.0).epsilon(1e-6));

  Tensor a = random_tensor({3, 4}, DType::F64, 101), b = random_tensor({3, 4}, DType::F64, 102);
  auto f = [](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); };
  CHECK_GRADCHECK(f, {a, b});
  CHECK_GRADCHECK(f, {transposed_layout(a), strided_layout(b)});

  REQUIRE_THROWS_WITH(mse_loss(zeros({2, 3}), zeros({3, 2})),
                      "mse_loss: pred shape (2, 3) differs from target shape (3, 2)");
  REQUIRE_THROWS_WITH(mse_loss(zeros({2}), zeros({2}, DType::F64)),
                      "mse_loss: pred dtype f32 differs from target dtype f64");
}

// ================================================================ scaled_dot_product_attention

TEST_CASE("attention: hand-computed tiny case (T = 2, dh = 1)", "[grad][grad-nn]") {
  Tensor q = from_vector<double>({1, 0}, {1, 1, 2, 1});
  Tensor k = from_vector<double>({1, 2}, {1, 1, 2, 1});
  Tensor v = from_vector<double>({1, 3}, {1, 1, 2, 1});
  // Query 0: scores [1, 2] -> weights [1, e] / (1 + e) -> (1 + 3e) / (1 + e). Query 1: scores [0, 0] -> 2.
  const double e = std::exp(1.0);
  CHECK_CLOSE_DT(scaled_dot_product_attention(q, k, v), from_vector<double>({(1 + 3 * e) / (1 + e), 2}, {1, 1, 2, 1}));
  // Key 1 padded: every query attends to key 0 only.
  Tensor mask = from_vector<int64_t>({0, 1}, {1, 2});
  CHECK_CLOSE_DT(scaled_dot_product_attention(q, k, v, mask), from_vector<double>({1, 1}, {1, 1, 2, 1}));
  // Gradient w.r.t. v with dO = 1: column sums of the weights, [1/(1+e) + 1/2, e/(1+e) + 1/2].
  Tensor vl = leaf(v);
  scaled_dot_product_attention(q, k, vl).backward(ones({1, 1, 2, 1}, DType::F64));
  CHECK_CLOSE_DT(vl.grad(), from_vector<double>({1 / (1 + e) + 0.5, e / (1 + e) + 0.5}, {1, 1, 2, 1}));
}

TEST_CASE("attention: forward matches the naive reference, with and without a padding mask, f32 and f64",
          "[grad][grad-nn]") {
  Tensor mask = from_vector<int64_t>({0, 0, 1, 0, 0, 1, 1, 0}, {2, 4});  // (B, Tk)
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor q = random_tensor({2, 3, 5, 4}, dt, 111);
    Tensor k = random_tensor({2, 3, 4, 4}, dt, 112);  // Tk = 4 != Tq = 5
    Tensor v = random_tensor({2, 3, 4, 6}, dt, 113);  // dv = 6 != dh = 4
    Tensor q64 = q.to(DType::F64), k64 = k.to(DType::F64), v64 = v.to(DType::F64);
    INFO("dtype " << dt);
    Tensor got = scaled_dot_product_attention(q, k, v);
    CHECK(got.dtype() == dt);
    CHECK(got.shape() == Shape{2, 3, 5, 6});
    CHECK_CLOSE_DT(got, ref_attention(q64, k64, v64, Tensor(), Tensor(), 0));
    CHECK_CLOSE_DT(scaled_dot_product_attention(q, k, v, mask), ref_attention(q64, k64, v64, mask, Tensor(), 0));
    // A float mask and non-contiguous q, k, v.
    CHECK_CLOSE_DT(scaled_dot_product_attention(transposed_layout(q, 1, 2), transposed_layout(k), strided_layout(v),
                                                mask.to(dt)),
                   ref_attention(q64, k64, v64, mask, Tensor(), 0));
    // Eval mode ignores dropout_p.
    CHECK_CLOSE_DT(scaled_dot_product_attention(q, k, v, mask, 0.5, false),
                   ref_attention(q64, k64, v64, mask, Tensor(), 0));
  }
}

TEST_CASE("attention: dropout on the attention weights from the given generator", "[grad][grad-nn]") {
  const double p = 0.25;
  Tensor q = random_tensor({1, 2, 3, 4}, DType::F64, 121);
  Tensor k = random_tensor({1, 2, 3, 4}, DType::F64, 122);
  Tensor v = random_tensor({1, 2, 3, 2}, DType::F64, 123);
  Tensor mask = from_vector<int64_t>({0, 1, 0}, {1, 3});
  Generator g(5);
  Tensor got = scaled_dot_product_attention(q, k, v, mask, p, true, &g);
  Generator same(5);
  Tensor keep = bernoulli({1, 2, 3, 3}, 1.0 - p, DType::F64, &same);
  CHECK_CLOSE_DT(got, ref_attention(q, k, v, mask, keep, p));
  // dropout_p = 1 drops everything.
  CHECK_CLOSE(scaled_dot_product_attention(q, k, v, mask, 1.0, true, &g), zeros({1, 2, 3, 2}, DType::F64), 0.0, 0.0);
}

TEST_CASE("attention: gradcheck w.r.t. q, k, v with a padding mask, with and without dropout", "[grad][grad-nn]") {
  Tensor q = random_tensor({2, 2, 3, 4}, DType::F64, 131);
  Tensor k = random_tensor({2, 2, 3, 4}, DType::F64, 132);
  Tensor v = random_tensor({2, 2, 3, 4}, DType::F64, 133);
  Tensor mask = from_vector<int64_t>({0, 0, 1, 0, 1, 0}, {2, 3});
  auto f = [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask); };
  CHECK_GRADCHECK(f, {q, k, v});
  CHECK_GRADCHECK(f, {transposed_layout(q), transposed_layout(k, 1, 2), strided_layout(v)});
  auto f_nomask = [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); };
  CHECK_GRADCHECK(f_nomask, {q, k, v});
  auto f_drop = [&](const std::vector<Tensor>& in) {
    Generator fixed(17);  // recreated on every call: the same dropout mask for every evaluation of f
    return scaled_dot_product_attention(in[0], in[1], in[2], mask, 0.3, true, &fixed);
  };
  CHECK_GRADCHECK(f_drop, {q, k, v});
  // Only v requires grad.
  auto f_v = [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(q, k, in[0], mask); };
  CHECK_GRADCHECK(f_v, {v});
}

TEST_CASE("attention: a query whose keys are all padded gives NaN, like PyTorch", "[grad][grad-nn]") {
  Tensor q = random_tensor({2, 1, 2, 3}, DType::F64, 141);
  Tensor k = random_tensor({2, 1, 2, 3}, DType::F64, 142);
  Tensor v = random_tensor({2, 1, 2, 3}, DType::F64, 143);
  Tensor mask = from_vector<int64_t>({1, 1, 0, 0}, {2, 2});  // batch 0: every key padded
  Tensor out = scaled_dot_product_attention(q, k, v, mask);
  CHECK(std::isnan(out.at({0, 0, 0, 0})));
  CHECK(std::isnan(out.at({0, 0, 1, 2})));
  CHECK_CLOSE_DT(out.select(0, 1), ref_attention(q, k, v, Tensor(), Tensor(), 0).select(0, 1));
}

TEST_CASE("attention: errors", "[grad][grad-nn]") {
  Tensor q = zeros({2, 2, 3, 4}), k = zeros({2, 2, 5, 4}), v = zeros({2, 2, 5, 6});
  const char* fn = "scaled_dot_product_attention: ";
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(zeros({2, 3, 4}), k, v),
                      std::string(fn) + "q must be 4-d (B, H, Tq, dh), got shape (2, 3, 4)");
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, zeros({2, 2, 5, 3}), v),
                      std::string(fn) + "q (2, 2, 3, 4) and k (2, 2, 5, 3) must agree in B, H and dh");
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, zeros({2, 2, 4, 6})),
                      std::string(fn) + "k (2, 2, 5, 4) and v (2, 2, 4, 6) must agree in B, H and Tk");
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v.to(DType::F64)),
                      std::string(fn) + "q, k and v must share a dtype, got f32, f32 and f64");
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, zeros({2, 3}, DType::I64)),
                      std::string(fn) + "key_padding_mask must have shape (2, 5) (B, Tk), got (2, 3)");
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, Tensor(), 1.5, true),
                      std::string(fn) + "dropout_p must be in [0, 1], got 1.5");
}
