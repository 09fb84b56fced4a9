// test_grad_shape.cpp — the differentiable matmul, linear, views, joins, gathers and embedding
// (autograd/functions/{matmul,shape,embedding}.cpp).
//
// For each function: hand-computed forward values (and, where it pins a convention, a hand-computed
// backward), an f64 gradcheck on non-trivial shapes including non-contiguous inputs, and the error
// messages of the function's own checks. matmul: all four transpose combinations, 2-d, equal batches,
// a shared 2-d operand on either side (the folded-GEMM gradient, with views that fold for free and
// views that force a copy), 4-d attention shapes. linear: with and without bias, 1-d, 2-d and 3-d x.
// Joins with inputs of which only some require grad; split pieces used with different weights;
// index_select / gather / embedding with repeated indices (gradients accumulate), embedding's
// padding_idx, i32 and i64 indices.
//
// Only this family's functions and raw ops are used, so these tests do not depend on other families.
#include <cmath>
#include <string>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

Tensor rt(const Shape& shape, uint64_t seed) { return random_tensor(shape, DType::F64, seed); }

Tensor leaf(const std::vector<double>& v, const Shape& shape) {
  Tensor t = from_vector<double>(v, shape);
  t.requires_grad_();
  return t;
}

std::vector<double> vec(const Tensor& t) { return t.to_vector<double>(); }

void expect_gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {}) {
  GradcheckResult r = gradcheck(f, inputs, opt);
  INFO(r.report());
  CHECK(r.ok);
}

// The shape of a matmul operand holding a (rows, cols) matrix, transposed when trans, after batch dims.
Shape operand_shape(const Shape& batch, int64_t rows, int64_t cols, bool trans) {
  Shape s = batch;
  s.push_back(trans ? cols : rows);
  s.push_back(trans ? rows : cols);
  return s;
}

std::string flags_str(bool ta, bool tb) {
  return std::string("trans_a=") + (ta ? "1" : "0") + " trans_b=" + (tb ? "1" : "0");
}

}  // namespace

// ================================================================ matmul

TEST_CASE("matmul: forward and backward by hand for each transpose flag", "[grad][grad-shape]") {
  // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]
  Tensor A = from_vector<double>({1, 2, 3, 4}, {2, 2});
  Tensor B = from_vector<double>({5, 6, 7, 8}, {2, 2});
  CHECK(vec(matmul(A, B)) == std::vector<double>{19, 22, 43, 50});
  CHECK(vec(matmul(A, B, true, false)) == std::vector<double>{26, 30, 38, 44});   // Aᵀ B
  CHECK(vec(matmul(A, B, false, true)) == std::vector<double>{17, 23, 39, 53});   // A Bᵀ
  CHECK(vec(matmul(A, B, true, true)) == std::vector<double>{23, 31, 34, 46});    // Aᵀ Bᵀ

  // out = A B, backward(ones): dA[m][k] = Σ_n B[k][n], dB[k][n] = Σ_m A[m][k].
  Tensor a = leaf({1, 2, 3, 4}, {2, 2}), b = leaf({5, 6, 7, 8}, {2, 2});
  Tensor out = matmul(a, b);
  CHECK(out.grad_fn_name() == "matmul");
  out.backward(ones({2, 2}, DType::F64));
  CHECK(vec(a.grad()) == std::vector<double>{11, 15, 11, 15});
  CHECK(vec(b.grad()) == std::vector<double>{4, 4, 6, 6});

  // out = Aᵀ B with g = [[1, 0], [0, 0]]: dA = B gᵀ = [[5, 0], [7, 0]], dB = A g = [[1, 0], [3, 0]].
  Tensor a2 = leaf({1, 2, 3, 4}, {2, 2}), b2 = leaf({5, 6, 7, 8}, {2, 2});
  matmul(a2, b2, true, false).backward(from_vector<double>({1, 0, 0, 0}, {2, 2}));
  CHECK(vec(a2.grad()) == std::vector<double>{5, 0, 7, 0});
  CHECK(vec(b2.grad()) == std::vector<double>{1, 0, 3, 0});
}

TEST_CASE("matmul: a shared 2-d operand gets its gradient summed over the batch (by hand)", "[grad][grad-shape]") {
  // a: (2, 1, 2) = [[[1, 2]], [[3, 4]]], b: (2, 1) = [[1], [1]] shared -> out (2, 1, 1) = [[[3]], [[7]]]
  Tensor a = leaf({1, 2, 3, 4}, {2, 1, 2}), b = leaf({1, 1}, {2, 1});
  Tensor out = matmul(a, b);
  CHECK(out.shape() == Shape{2, 1, 1});
  CHECK(vec(out) == std::vector<double>{3, 7});
  out.backward(from_vector<double>({1, 10}, {2, 1, 1}));
  CHECK(vec(a.grad()) == std::vector<double>{1, 1, 10, 10});      // g_i bᵀ
  CHECK(vec(b.grad()) == std::vector<double>{1 + 30, 2 + 40});    // Σ_i a_iᵀ g_i
  CHECK(b.grad().shape() == Shape{2, 1});

  // The mirror: a (1, 2) shared, b (2, 2, 1) batched.
  Tensor a2 = leaf({1, 1}, {1, 2}), b2 = leaf({1, 2, 3, 4}, {2, 2, 1});
  Tensor out2 = matmul(a2, b2);
  CHECK(vec(out2) == std::vector<double>{3, 7});
  out2.backward(from_vector<double>({1, 10}, {2, 1, 1}));
  CHECK(vec(a2.grad()) == std::vector<double>{1 + 30, 2 + 40});  // Σ_i g_i b_iᵀ
  CHECK(vec(b2.grad()) == std::vector<double>{1, 1, 10, 10});     // aᵀ g_i
}

TEST_CASE("matmul: gradcheck for every transpose combination, 2-d and batched", "[grad][grad-shape]") {
  const int64_t M = 3, K = 4, N = 2;
  const std::vector<std::pair<Shape, Shape>> batches = {
      {Shape{}, Shape{}},          // 2-d @ 2-d
      {Shape{2}, Shape{2}},        // equal batches
      {Shape{2, 3}, Shape{2, 3}},  // equal 2-d batches
      {Shape{2, 3}, Shape{}},      // b shared: its gradient is folded over the 6·M rows
      {Shape{}, Shape{3, 2}},      // a shared
  };
  uint64_t seed = 100;
  for (const auto& [ba, bb] : batches) {
    for (int f = 0; f < 4; ++f) {
      const bool ta = f & 1, tb = f & 2;
      INFO("batch a=" << ba << " b=" << bb << " " << flags_str(ta, tb));
      Tensor a = rt(operand_shape(ba, M, K, ta), seed++);
      Tensor b = rt(operand_shape(bb, K, N, tb), seed++);
      expect_gradcheck([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
    }
  }
}

TEST_CASE("matmul: gradcheck on non-contiguous operands", "[grad][grad-shape]") {
  for (int f = 0; f < 4; ++f) {
    const bool ta = f & 1, tb = f & 2;
    INFO(flags_str(ta, tb));
    // Transposed and strided matrices (BLAS reads both without copies).
    Tensor a = transposed_layout(rt(operand_shape({2}, 3, 4, ta), 200 + f));
    Tensor b = strided_layout(rt(operand_shape({2}, 4, 5, tb), 210 + f));
    expect_gradcheck([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
    // A batched operand whose batch and rows do not fold into one row stride (dims 0 and 1 swapped in
    // memory): the shared operand's summed gradient goes through a copy, and must still be right.
    Tensor a3 = transposed_layout(rt(operand_shape({2, 3}, 3, 4, ta), 220 + f), 0, 1);
    Tensor b3 = transposed_layout(rt(operand_shape({}, 4, 2, tb), 230 + f));
    REQUIRE_FALSE(a3.is_contiguous());
    expect_gradcheck([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); }, {a3, b3});
    expect_gradcheck([ta, tb](const std::vector<Tensor>& in) { return matmul(in[1], in[0], !tb, !ta); }, {a3, b3});
  }
}

TEST_CASE("matmul: gradcheck of attention-shaped 4-d products", "[grad][grad-shape]") {
  // q, k, v: (B, H, T, dh) = (2, 2, 3, 4); out = (q kᵀ) v, as attention without the softmax.
  Tensor q = rt({2, 2, 3, 4}, 301), k = rt({2, 2, 3, 4}, 302), v = rt({2, 2, 3, 4}, 303);
  expect_gradcheck([](const std::vector<Tensor>& in) {
    Tensor scores = matmul(in[0], in[1], false, true);  // (B, H, T, T)
    return matmul(scores, in[2]);
  }, {q, k, v});
  // Heads split from a (B, T, H, dh) tensor: q.transpose(1, 2) is a non-contiguous 4-d view.
  Tensor qh = rt({2, 3, 2, 4}, 304), kh = rt({2, 3, 2, 4}, 305);
  expect_gradcheck([](const std::vector<Tensor>& in) {
    return matmul(in[0].transpose(1, 2), in[1].transpose(1, 2), false, true);
  }, {qh, kh});
}

TEST_CASE("matmul: only the inputs that require grad get one; no graph under no-grad", "[grad][grad-shape]") {
  Tensor a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor out = matmul(a, b);
  REQUIRE(out.requires_grad());
  out.backward(ones({2, 2}, DType::F64));
  CHECK(vec(a.grad()) == std::vector<double>{1, 1, 2, 1, 1, 2});
  CHECK_FALSE(b.grad().defined());
  CHECK_FALSE(b.requires_grad());
  {
    NoGradGuard ng;
    CHECK_FALSE(matmul(a, b).requires_grad());
  }
  CHECK_FALSE(matmul(b.t(), b).requires_grad());
}

TEST_CASE("matmul: f32 forward matches f64 and errors name matmul", "[grad][grad-shape]") {
  Tensor a = rt({2, 5, 7}, 41), b = rt({7, 3}, 42);
  Tensor want = matmul(a, b);
  Tensor got = matmul(a.to(DType::F32), b.to(DType::F32));
  CHECK(got.dtype() == DType::F32);
  // 7-term dot products of values below 2 in magnitude: a few f32 ulps of 28.
  CHECK_CLOSE(got, want, 1e-5, 1e-5);

  Tensor x = rt({2, 3}, 43);
  x.requires_grad_();
  REQUIRE_THROWS_WITH(matmul(x, rt({4, 5}, 44)), "matmul: inner dims differ: a=(2, 3) b=(4, 5)");
  REQUIRE_THROWS_WITH(matmul(x, rt({3, 4}, 44), false, true), "matmul: inner dims differ: a=(2, 3) b=(3, 4) with trans_b");
}

// ================================================================ linear

TEST_CASE("linear: forward and backward by hand", "[grad][grad-shape]") {
  // x = [[1, 2, 3], [4, 5, 6]], W = [[1, 0, -1], [2, 1, 0]], b = [10, 20]
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = leaf({1, 0, -1, 2, 1, 0}, {2, 3});
  Tensor b = leaf({10, 20}, {2});
  Tensor out = linear(x, w, b);
  CHECK(out.grad_fn_name() == "linear");
  CHECK(out.shape() == Shape{2, 2});
  CHECK(vec(out) == std::vector<double>{8, 24, 8, 33});  // x Wᵀ = [[-2, 4], [-2, 13]], plus b
  out.backward(ones({2, 2}, DType::F64));
  CHECK(vec(x.grad()) == std::vector<double>{3, 1, -1, 3, 1, -1});  // g W
  CHECK(vec(w.grad()) == std::vector<double>{5, 7, 9, 5, 7, 9});     // gᵀ x
  CHECK(vec(b.grad()) == std::vector<double>{2, 2});                 // Σ rows of g

  // Without bias; a 3-d x (2, 1, 3) gives the same rows; a 1-d x is one row.
  Tensor x3 = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 1, 3});
  Tensor out3 = linear(x3, w.detach(), Tensor());
  CHECK(out3.shape() == Shape{2, 1, 2});
  CHECK(vec(out3) == std::vector<double>{-2, 4, -2, 13});
  Tensor out1 = linear(from_vector<double>({4, 5, 6}), w.detach(), b.detach());
  CHECK(out1.shape() == Shape{2});
  CHECK(vec(out1) == std::vector<double>{8, 33});
}

TEST_CASE("linear: gradcheck with and without bias on 1-d, 2-d, 3-d and non-contiguous x", "[grad][grad-shape]") {
  Tensor w = rt({3, 4}, 51), bias = rt({3}, 52);
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); };
  const std::vector<std::pair<const char*, Tensor>> xs = {
      {"1-d", rt({4}, 53)},
      {"2-d", rt({5, 4}, 54)},
      {"3-d", rt({2, 3, 4}, 55)},
      {"3-d transposed (batch and rows swapped in memory)", transposed_layout(rt({2, 3, 4}, 56), 0, 1)},
      {"2-d transposed", transposed_layout(rt({5, 4}, 57))},
      {"3-d strided", strided_layout(rt({2, 3, 4}, 58))},
  };
  for (const auto& [what, x] : xs) {
    INFO(what);
    expect_gradcheck(with_bias, {x, w, bias});
    expect_gradcheck(no_bias, {x, w});
  }
  // A transposed weight (e.g. tied to an embedding stored (in, out)).
  expect_gradcheck(with_bias, {rt({2, 3, 4}, 59), transposed_layout(w), bias});
}

TEST_CASE("linear: f32 matches f64; only inputs that require grad get one", "[grad][grad-shape]") {
  Tensor x = rt({2, 3, 6}, 61), w = rt({4, 6}, 62), b = rt({4}, 63);
  Tensor want = linear(x, w, b);
  CHECK_CLOSE(linear(x.to(DType::F32), w.to(DType::F32), b.to(DType::F32)), want, 1e-5, 1e-5);
  // The result equals matmul with trans_b plus the broadcast bias, computed here element by element.
  Tensor mm = ops::matmul(x, w, false, true);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t t = 0; t < 3; ++t) {
      for (int64_t o = 0; o < 4; ++o) CHECK(want.at({i, t, o}) == Approx(mm.at({i, t, o}) + b.at({o})).epsilon(1e-14));
    }
  }

  Tensor wl = w.clone().requires_grad_();
  Tensor out = linear(x, wl, b);
  out.backward(ones(out.shape(), DType::F64));
  CHECK(wl.grad().shape() == Shape{4, 6});
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("linear: errors name the shapes", "[grad][grad-shape]") {
  Tensor x = rt({2, 4}, 71);
  REQUIRE_THROWS_WITH(linear(x, rt({3, 5}, 72), Tensor()),
                      "linear: weight has shape (3, 5), expected (out, 4) for input (2, 4)");
  REQUIRE_THROWS_WITH(linear(x, rt({4}, 72), Tensor()),
                      "linear: weight has shape (4,), expected (out, 4) for input (2, 4)");
  REQUIRE_THROWS_WITH(linear(x, rt({3, 4}, 72), rt({4}, 73)),
                      "linear: bias has shape (4,), expected (3,) for weight (3, 4)");
  REQUIRE_THROWS_WITH(linear(x, rt({3, 4}, 72), rt({1, 3}, 73)),
                      "linear: bias has shape (1, 3), expected (3,) for weight (3, 4)");
  REQUIRE_THROWS_WITH(linear(scalar_tensor(1.0, DType::F64), rt({3, 4}, 72), Tensor()),
                      "linear: expected an input of shape (..., in), got a 0-d tensor");
  REQUIRE_THROWS_WITH(linear(x, rt({3, 4}, 72).to(DType::F32), Tensor()), "linear: dtypes differ: f64 and f32");
  REQUIRE_THROWS_WITH(linear(x, Tensor(), Tensor()), "linear: the weight is an undefined tensor");
}

// ================================================================ views

TEST_CASE("views: forward values by hand", "[grad][grad-shape]") {
  Tensor x = arange(0.0, 6.0, 1.0, DType::F64).view({2, 3});  // [[0, 1, 2], [3, 4, 5]]
  CHECK(reshape(x, {3, 2}).shape() == Shape{3, 2});
  CHECK(vec(reshape(x, {3, 2})) == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(vec(view(x, {6})) == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(vec(transpose(x, 0, 1)) == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(vec(narrow(x, 1, 1, 2)) == std::vector<double>{1, 2, 4, 5});
  CHECK(vec(slice(x, 1, 0, 3, 2)) == std::vector<double>{0, 2, 3, 5});
  CHECK(vec(slice(x, 1, -2, 3)) == std::vector<double>{1, 2, 4, 5});
  CHECK(vec(select(x, 0, 1)) == std::vector<double>{3, 4, 5});
  CHECK(vec(select(x, 1, -1)) == std::vector<double>{2, 5});
  CHECK(vec(expand(select(x, 0, 0).unsqueeze(0), {2, 3})) == std::vector<double>{0, 1, 2, 0, 1, 2});
  CHECK(unsqueeze(x, 1).shape() == Shape{2, 1, 3});
  CHECK(squeeze(unsqueeze(x, -1), -1).shape() == Shape{2, 3});
  CHECK(squeeze(x, 0).shape() == Shape{2, 3});  // not size 1: unchanged
  Tensor x3 = arange(0.0, 24.0, 1.0, DType::F64).view({2, 3, 4});
  CHECK(flatten(x3, 1).shape() == Shape{2, 12});
  CHECK(flatten(x3).shape() == Shape{24});
  Tensor p = permute(x3, {2, 0, 1});  // p[k][i][j] = x3[i][j][k] = 12 i + 4 j + k
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.at({3, 1, 2}) == 12 + 8 + 3);
  Tensor c = contiguous(transpose(x, 0, 1));
  CHECK(c.is_contiguous());
  CHECK(vec(c) == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("views: backward by hand scatters into the viewed positions", "[grad][grad-shape]") {
  Tensor x = leaf({0, 1, 2, 3, 4, 5}, {2, 3});
  select(x, 0, 1).backward(from_vector<double>({1, 2, 3}));
  CHECK(vec(x.grad()) == std::vector<double>{0, 0, 0, 1, 2, 3});
  x.zero_grad();
  slice(x, 1, 0, 3, 2).backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
  CHECK(vec(x.grad()) == std::vector<double>{1, 0, 2, 3, 0, 4});
  x.zero_grad();
  transpose(x, 0, 1).backward(from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(vec(x.grad()) == std::vector<double>{1, 3, 5, 2, 4, 6});
  // expand sums the gradient over the broadcast rows.
  Tensor r = leaf({1, 2, 3}, {1, 3});
  expand(r, {4, 3}).backward(ones({4, 3}, DType::F64));
  CHECK(vec(r.grad()) == std::vector<double>{4, 4, 4});
}

TEST_CASE("views: gradcheck of every view function, on non-contiguous inputs too", "[grad][grad-shape]") {
  using Fn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, Fn>> views = {
      {"reshape", [](const Tensor& x) { return reshape(x, {4, 6}); }},
      {"reshape -1", [](const Tensor& x) { return reshape(x, {-1, 2}); }},
      {"view", [](const Tensor& x) { return view(x, {6, 2, 2}); }},  // merges dims 0-1, splits dim 2
      {"flatten", [](const Tensor& x) { return flatten(x, 0, 1); }},
      {"transpose", [](const Tensor& x) { return transpose(x, 0, 2); }},
      {"permute", [](const Tensor& x) { return permute(x, {1, 2, 0}); }},
      {"narrow", [](const Tensor& x) { return narrow(x, 2, 1, 2); }},
      {"slice with step", [](const Tensor& x) { return slice(x, 1, 0, 3, 2); }},
      {"select", [](const Tensor& x) { return select(x, 1, -1); }},
      {"expand", [](const Tensor& x) { return expand(narrow(x, 0, 0, 1), {3, 3, 4}); }},
      {"expand new dim", [](const Tensor& x) { return expand(x, {2, 2, 3, 4}); }},
      {"squeeze", [](const Tensor& x) { return squeeze(narrow(x, 1, 1, 1), 1); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, -1); }},
      {"contiguous", [](const Tensor& x) { return contiguous(transpose(x, 1, 2)); }},
  };
  // (2, 3, 4): contiguous, transposed in memory (last two dims), strided along the last dim.
  const std::vector<std::pair<const char*, Tensor>> inputs = {
      {"contiguous", rt({2, 3, 4}, 81)},
      {"transposed", transposed_layout(rt({2, 3, 4}, 82))},
      {"strided", strided_layout(rt({2, 3, 4}, 83))},
  };
  for (const auto& [vname, fn] : views) {
    for (const auto& [iname, x] : inputs) {
      // view cannot merge or split dims whose strides do not allow it: only the compatible layouts.
      if (std::string(vname) == "view" && std::string(iname) == "transposed") continue;
      INFO(vname << " on a " << iname << " input");
      expect_gradcheck([fn = fn](const std::vector<Tensor>& in) { return fn(in[0]); }, {x});
    }
  }
}

// ================================================================ concat, stack, split

TEST_CASE("concat and stack: forward and backward by hand", "[grad][grad-shape]") {
  Tensor a = leaf({1, 2}, {1, 2});
  Tensor b = from_vector<double>({3, 4, 5, 6}, {2, 2});  // does not require grad
  Tensor c = leaf({7, 8}, {1, 2});
  Tensor out = concat({a, b, c}, 0);
  CHECK(out.grad_fn_name() == "concat");
  CHECK(out.shape() == Shape{4, 2});
  CHECK(vec(out) == std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8});
  out.backward(from_vector<double>({10, 11, 12, 13, 14, 15, 16, 17}, {4, 2}));
  CHECK(vec(a.grad()) == std::vector<double>{10, 11});
  CHECK(vec(c.grad()) == std::vector<double>{16, 17});
  CHECK_FALSE(b.grad().defined());

  Tensor s = leaf({1, 2, 3}, {3}), t = leaf({4, 5, 6}, {3});
  Tensor st = stack({s, t}, 1);  // [[1, 4], [2, 5], [3, 6]]
  CHECK(st.grad_fn_name() == "stack");
  CHECK(st.shape() == Shape{3, 2});
  CHECK(vec(st) == std::vector<double>{1, 4, 2, 5, 3, 6});
  st.backward(from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(vec(s.grad()) == std::vector<double>{1, 3, 5});
  CHECK(vec(t.grad()) == std::vector<double>{2, 4, 6});
}

TEST_CASE("concat and stack: gradcheck along several dims, only some inputs requiring grad", "[grad][grad-shape]") {
  for (int dim : {0, 1, 2, -1}) {
    INFO("concat dim " << dim);
    const int d = dim < 0 ? dim + 3 : dim;
    Shape s0{2, 3, 4}, s1{2, 3, 4}, s2{2, 3, 4};
    s0[d] = 1;
    s1[d] = 2;
    s2[d] = 3;
    // The middle input is a constant captured by f: it needs no gradient and gets none.
    Tensor constant = rt(s1, 90 + uint64_t(d));
    expect_gradcheck([dim, constant](const std::vector<Tensor>& in) { return concat({in[0], constant, in[1]}, dim); },
                     {rt(s0, 91), transposed_layout(rt(s2, 92))});
  }
  for (int dim : {0, 1, 3, -1}) {
    INFO("stack dim " << dim);
    Tensor constant = rt({2, 3, 4}, 93);
    expect_gradcheck([dim, constant](const std::vector<Tensor>& in) { return stack({constant, in[0], in[1]}, dim); },
                     {strided_layout(rt({2, 3, 4}, 94)), rt({2, 3, 4}, 95)});
  }
}

TEST_CASE("split: pieces are differentiable views; unused pieces get zero gradient", "[grad][grad-shape]") {
  // x: (5, 2) = rows 0..4; split(2) along 0 -> rows {0, 1}, {2, 3}, {4}. Use pieces 2 and 0 only.
  Tensor x = leaf({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {5, 2});
  std::vector<Tensor> pieces = split(x, 2, 0);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[2].shape() == Shape{1, 2});
  CHECK(vec(pieces[1]) == std::vector<double>{4, 5, 6, 7});
  CHECK(pieces[1].storage() == x.storage());  // a view
  Tensor y = concat({pieces[2], pieces[0]}, 0);
  y.backward(from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(vec(x.grad()) == std::vector<double>{3, 4, 5, 6, 0, 0, 0, 0, 1, 2});

  std::vector<Tensor> by_sizes = split(x, std::vector<int64_t>{1, 0, 1}, 1);
  REQUIRE(by_sizes.size() == 3);
  CHECK(by_sizes[1].shape() == Shape{5, 0});
  CHECK(vec(by_sizes[2]) == std::vector<double>{1, 3, 5, 7, 9});
  REQUIRE_THROWS_WITH(split(x, std::vector<int64_t>{1, 2}, 1), "split: sizes (1, 2) sum to 3 but dim 1 has size 2");
}

TEST_CASE("split: gradcheck with pieces used with different weights", "[grad][grad-shape]") {
  // x: (4, 6) split along dim 1 into widths 1, 2, 3 (both overloads); piece i goes through its own
  // weight W_i (c_i, 2), and the results are joined: every piece's gradient differs.
  auto f = [](bool by_sizes) {
    return [by_sizes](const std::vector<Tensor>& in) {
      std::vector<Tensor> p = by_sizes ? split(in[0], std::vector<int64_t>{1, 2, 3}, 1) : split(in[0], 3, 1);
      std::vector<Tensor> outs;
      for (size_t i = 0; i < p.size(); ++i) outs.push_back(matmul(p[i], in[1 + i]));
      outs.push_back(p[0]);  // piece 0 is used twice: its gradients add up
      return concat(outs, 1);
    };
  };
  Tensor x = transposed_layout(rt({4, 6}, 101));
  expect_gradcheck(f(true), {x, rt({1, 2}, 102), rt({2, 2}, 103), rt({3, 2}, 104)});
  // split(3): two pieces of width 3.
  expect_gradcheck(f(false), {x, rt({3, 2}, 105), rt({3, 2}, 106)});
}

TEST_CASE("joins: errors come from the op layer", "[grad][grad-shape]") {
  Tensor a = rt({2, 3}, 111);
  a.requires_grad_();
  REQUIRE_THROWS_WITH(concat({a, rt({2, 4}, 112)}, 0),
                      "concat: tensor 1 has shape (2, 4) but tensor 0 has shape (2, 3); sizes must match except along dim 0");
  REQUIRE_THROWS_WITH(stack({a, rt({3, 2}, 112)}, 0),
                      "stack: tensor 1 has shape (3, 2) but tensor 0 has shape (2, 3); all shapes must be equal");
  REQUIRE_THROWS_WITH(concat({}, 0), "concat: expected at least one tensor, got an empty list");
}

// ================================================================ index_select, gather

TEST_CASE("index_select and gather: forward and accumulating backward by hand", "[grad][grad-shape]") {
  // x = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
  std::vector<double> xv(12);
  for (int i = 0; i < 12; ++i) xv[size_t(i)] = i;
  Tensor x = leaf(xv, {4, 3});
  Tensor idx = from_vector<int64_t>({2, 0, 2, 2});
  Tensor sel = index_select(x, 0, idx);
  CHECK(sel.grad_fn_name() == "index_select");
  CHECK(vec(sel) == std::vector<double>{6, 7, 8, 0, 1, 2, 6, 7, 8, 6, 7, 8});
  sel.backward(ones({4, 3}, DType::F64));
  CHECK(vec(x.grad()) == std::vector<double>{1, 1, 1, 0, 0, 0, 3, 3, 3, 0, 0, 0});  // row 2 picked 3 times

  Tensor y = leaf({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor gidx = from_vector<int32_t>({0, 0, 2, 1}, {2, 2});
  Tensor g = gather(y, 1, gidx);  // [[y00, y00], [y12, y11]]
  CHECK(g.grad_fn_name() == "gather");
  CHECK(vec(g) == std::vector<double>{0, 0, 5, 4});
  g.backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
  CHECK(vec(y.grad()) == std::vector<double>{3, 0, 0, 0, 4, 3});
}

TEST_CASE("index_select and gather: gradcheck with repeated indices", "[grad][grad-shape]") {
  for (DType it : {DType::I32, DType::I64}) {
    INFO("index dtype " << it);
    Tensor idx = from_vector<int64_t>({3, 1, 3, 0, 3}).to(it);
    expect_gradcheck([idx](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx); },
                     {transposed_layout(rt({3, 4}, 121))});
    expect_gradcheck([idx](const std::vector<Tensor>& in) { return index_select(in[0], -3, idx); },
                     {strided_layout(rt({4, 2, 3}, 122))});
    // gather along dim 0 and 1 of (3, 4); idx smaller than x along the other dim.
    Tensor g0 = from_vector<int64_t>({2, 2, 0, 1, 2, 0}, {2, 3}).to(it);
    Tensor g1 = from_vector<int64_t>({3, 3, 3, 0, 1, 1, 2, 0, 0}, {3, 3}).to(it);
    expect_gradcheck([g0](const std::vector<Tensor>& in) { return gather(in[0], 0, g0); },
                     {transposed_layout(rt({3, 4}, 123))});
    expect_gradcheck([g1](const std::vector<Tensor>& in) { return gather(in[0], -1, g1); }, {rt({3, 4}, 124)});
  }
}

TEST_CASE("index_select and gather: errors come from the op layer", "[grad][grad-shape]") {
  Tensor x = rt({3, 4}, 131);
  x.requires_grad_();
  REQUIRE_THROWS_WITH(index_select(x, 0, from_vector<int64_t>({0, 3})),
                      "index_select: index 3 out of range for size 3 along dim 0 (at position 1)");
  REQUIRE_THROWS_WITH(gather(x, 1, from_vector<double>({0, 1}, {1, 2})),
                      "gather: expected an index tensor (i32 or i64), got f64");
}

// ================================================================ embedding

TEST_CASE("embedding: forward, accumulation and padding_idx by hand", "[grad][grad-shape]") {
  // weight row v = [v, 10 v, 100 v] for v = 0..4
  std::vector<double> wv;
  for (int v = 0; v < 5; ++v) {
    wv.push_back(v);
    wv.push_back(10 * v);
    wv.push_back(100 * v);
  }
  for (DType it : {DType::I32, DType::I64}) {
    INFO("index dtype " << it);
    Tensor idx = from_vector<int64_t>({1, 4, 1, 0, 1, 2}, {2, 3}).to(it);
    Tensor w = leaf(wv, {5, 3});
    Tensor out = embedding(w, idx, /*padding_idx=*/1);
    CHECK(out.grad_fn_name() == "embedding");
    CHECK(out.shape() == Shape{2, 3, 3});
    // The forward still returns the padding row's values (as PyTorch).
    CHECK(vec(out) == std::vector<double>{1, 10, 100, 4, 40, 400, 1, 10, 100, 0, 0, 0, 1, 10, 100, 2, 20, 200});
    out.backward(ones({2, 3, 3}, DType::F64));
    // Row 1 appears 3 times but is the padding row: its gradient is defined and exactly 0.
    CHECK(vec(w.grad()) == std::vector<double>{1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1});

    Tensor w2 = leaf(wv, {5, 3});
    embedding(w2, idx).backward(ones({2, 3, 3}, DType::F64));  // no padding row: row 1 accumulates 3
    CHECK(vec(w2.grad()) == std::vector<double>{1, 1, 1, 3, 3, 3, 1, 1, 1, 0, 0, 0, 1, 1, 1});
  }
}

TEST_CASE("embedding: gradcheck with repeated indices, i32 and i64", "[grad][grad-shape]") {
  for (DType it : {DType::I32, DType::I64}) {
    INFO("index dtype " << it);
    Tensor idx = from_vector<int64_t>({3, 0, 3, 5, 3, 1, 0, 5}, {2, 4}).to(it);
    expect_gradcheck([idx](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {rt({6, 3}, 141)});
    expect_gradcheck([idx](const std::vector<Tensor>& in) { return embedding(in[0], idx); },
                     {transposed_layout(rt({6, 3}, 142))});
    // A padding row that idx never uses changes nothing (the padding row's own gradient is 0 by
    // design, which no finite difference can confirm: that case is checked by hand above).
    expect_gradcheck([idx](const std::vector<Tensor>& in) { return embedding(in[0], idx, 2); }, {rt({6, 3}, 143)});
  }
}

TEST_CASE("embedding: errors", "[grad][grad-shape]") {
  Tensor w = rt({5, 3}, 151);
  w.requires_grad_();
  Tensor idx = from_vector<int64_t>({0, 4, 1, 7});
  REQUIRE_THROWS_WITH(embedding(w, idx), "embedding: index 7 out of range for 5 rows (at position 3)");
  Tensor ok = from_vector<int64_t>({0, 4});
  REQUIRE_THROWS_WITH(embedding(w, ok, 5), "embedding: padding_idx 5 out of range for 5 rows (use -1 for no padding row)");
  REQUIRE_THROWS_WITH(embedding(w, ok, -2), "embedding: padding_idx -2 out of range for 5 rows (use -1 for no padding row)");
  REQUIRE_THROWS_WITH(embedding(w, from_vector<double>({0, 1})), "embedding: expected an index tensor (i32 or i64), got f64");
  NoGradGuard ng;
  CHECK_FALSE(embedding(w, ok).requires_grad());
}
