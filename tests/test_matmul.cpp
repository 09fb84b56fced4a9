// test_matmul.cpp — ops::matmul / ops::matmul_out (OpenBLAS kernel) against matmul_ref, a naive
// triple loop in double kept here as the oracle: transpose flags, transposed and strided views,
// batches (equal, shared 2-d on either side, the folded nn.Linear path, 4-d attention shapes), sizes
// of 1 and 0, alpha/beta accumulation, f32 and f64, and the error messages.
#include <algorithm>
#include <cmath>

#include "tests/test_util.h"
#include "tensor/ops.h"

using namespace muxnet;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

// The naive reference: op(a) @ op(b) in double, with the batch rules of ops::matmul (equal batch
// dims, or one side 2-d and shared). Returns an f64 tensor.
Tensor matmul_ref(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false) {
  const int64_t M = trans_a ? a.size(-1) : a.size(-2), K = trans_a ? a.size(-2) : a.size(-1);
  const int64_t N = trans_b ? b.size(-2) : b.size(-1);
  REQUIRE((trans_b ? b.size(-1) : b.size(-2)) == K);
  const Tensor& batched = a.ndim() > 2 ? a : b;
  Shape shape = batched.shape();
  shape[shape.ndim() - 2] = M;
  shape[shape.ndim() - 1] = N;
  int64_t batch = 1;
  for (int d = 0; d < shape.ndim() - 2; ++d) batch *= shape[d];
  const std::vector<double> A = a.to_vector<double>(), B = b.to_vector<double>();
  const int64_t a_bs = a.ndim() > 2 ? M * K : 0, b_bs = b.ndim() > 2 ? K * N : 0;
  std::vector<double> C(size_t(batch * M * N), 0.0);
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double av = A[size_t(i * a_bs + (trans_a ? k * M + m : m * K + k))];
          const double bv = B[size_t(i * b_bs + (trans_b ? n * K + k : k * N + n))];
          s += av * bv;
        }
        C[size_t((i * M + m) * N + n)] = s;
      }
    }
  }
  return from_vector(C, shape);
}

double max_abs(const Tensor& x) {
  double m = 0;
  for (double v : x.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

// f32: each output is a K-term dot product, so the rounding error grows with K and with the size of
// the terms: atol = eps * K * max|a| * max|b| (eps 1e-6 ~ 8 f32 ulps). f64: the same with 1e-14.
void check_matmul(const Tensor& got, const Tensor& a, const Tensor& b, bool ta = false, bool tb = false) {
  Tensor want = matmul_ref(a, b, ta, tb);
  const int64_t K = ta ? a.size(-2) : a.size(-1);
  const double eps = got.dtype() == DType::F64 ? 1e-14 : 1e-6;
  const double atol = eps * double(std::max<int64_t>(K, 1)) * max_abs(a) * max_abs(b) + 1e-30;
  REQUIRE(got.dtype() == a.dtype());
  CHECK_CLOSE(got, want, atol, got.dtype() == DType::F64 ? 1e-12 : 1e-5);
}

// alpha * x + beta * y elementwise, in double (an f64 tensor of x's shape).
Tensor axpby(double alpha, const Tensor& x, double beta, const Tensor& y) {
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  REQUIRE(xv.size() == yv.size());
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = alpha * xv[i] + beta * yv[i];
  return from_vector(xv, x.shape());
}

const DType kFloatTypes[] = {DType::F32, DType::F64};

}  // namespace

TEST_CASE("matmul: hand-computed 2x2 and 2x3 examples", "[matmul]") {
  for (DType dt : kFloatTypes) {
    Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt);
    Tensor b = from_vector<double>({5, 6, 7, 8}, {2, 2}).to(dt);
    CHECK(ops::matmul(a, b).to_vector<double>() == std::vector<double>{19, 22, 43, 50});
    // a^T b = [[1, 3], [2, 4]] @ [[5, 6], [7, 8]]
    CHECK(ops::matmul(a, b, true, false).to_vector<double>() == std::vector<double>{26, 30, 38, 44});
    // a b^T = [[1, 2], [3, 4]] @ [[5, 7], [6, 8]]
    CHECK(ops::matmul(a, b, false, true).to_vector<double>() == std::vector<double>{17, 23, 39, 53});
    CHECK(ops::matmul(a, b, true, true).to_vector<double>() == std::vector<double>{23, 31, 34, 46});

    Tensor c = from_vector<double>({1, 0, -1, 2, 1, 0}, {2, 3}).to(dt);   // (2, 3)
    Tensor d = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}).to(dt);    // (3, 2)
    Tensor cd = ops::matmul(c, d);
    CHECK(cd.shape() == Shape{2, 2});
    CHECK(cd.to_vector<double>() == std::vector<double>{-4, -4, 5, 8});
  }
}

TEST_CASE("matmul: all four transpose combinations match the naive reference", "[matmul]") {
  const int64_t M = 7, K = 13, N = 5;
  uint64_t seed = 100;
  for (DType dt : kFloatTypes) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        Tensor a = random_tensor(ta ? Shape{K, M} : Shape{M, K}, dt, seed++);
        Tensor b = random_tensor(tb ? Shape{N, K} : Shape{K, N}, dt, seed++);
        Tensor got = ops::matmul(a, b, ta, tb);
        CHECK(got.shape() == Shape{M, N});
        check_matmul(got, a, b, ta, tb);
      }
    }
  }
}

TEST_CASE("matmul: transposed, sliced and strided views give the contiguous result", "[matmul]") {
  for (DType dt : kFloatTypes) {
    Tensor a = random_tensor({6, 9}, dt, 1);
    Tensor b = random_tensor({9, 4}, dt, 2);
    Tensor want = ops::matmul(a, b);
    check_matmul(want, a, b);
    // The same values in other layouts: column-major (read by BLAS as a transpose, no copy),
    // every second element (no unit stride: copied), and a narrow() of a wider matrix (ld > cols).
    Tensor wide = random_tensor({6, 15}, dt, 3);
    Tensor a_narrow = wide.narrow(1, 3, 9);
    a_narrow.copy_(a);
    for (const Tensor& av : {transposed_layout(a), strided_layout(a), a_narrow}) {
      for (const Tensor& bv : {b, transposed_layout(b), strided_layout(b)}) {
        CHECK_CLOSE(ops::matmul(av, bv), want, 1e-5 * 9 * 4, 1e-5);
      }
    }
    // A .t() view with the transpose flag, against its contiguous copy.
    Tensor p = random_tensor({9, 6}, dt, 4);  // p.t() is (6, 9)
    Tensor q = random_tensor({4, 9}, dt, 5);  // q.t() is (9, 4)
    Tensor via_views = ops::matmul(p.t(), q.t());
    check_matmul(via_views, p.t().contiguous(), q.t().contiguous());
    CHECK_CLOSE(via_views, ops::matmul(p.t().contiguous(), q.t().contiguous()), 1e-5 * 9 * 4, 1e-5);
    CHECK_CLOSE(ops::matmul(p, q, true, true), via_views, 1e-5 * 9 * 4, 1e-5);
    // trans flag on a transposed view: op(p.t()) = p.
    Tensor r = random_tensor({6, 4}, dt, 6);
    check_matmul(ops::matmul(p.t(), r, true, false), p.t().contiguous(), r, true, false);
  }
}

TEST_CASE("matmul: batched with equal batch dims", "[matmul]") {
  uint64_t seed = 200;
  for (DType dt : kFloatTypes) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        Tensor a = random_tensor(ta ? Shape{3, 6, 4} : Shape{3, 4, 6}, dt, seed++);
        Tensor b = random_tensor(tb ? Shape{3, 5, 6} : Shape{3, 6, 5}, dt, seed++);
        Tensor got = ops::matmul(a, b, ta, tb);
        CHECK(got.shape() == Shape{3, 4, 5});
        check_matmul(got, a, b, ta, tb);
        // Non-contiguous batched operands: per-matrix transposes and strided last dims.
        check_matmul(ops::matmul(transposed_layout(a), strided_layout(b), ta, tb), a, b, ta, tb);
      }
    }
    // Batch dims that need a copy: a batch-dim transpose whose strides do not merge.
    Tensor x = random_tensor({4, 3, 2, 5}, dt, seed++);  // viewed as (3, 4, 2, 5)
    Tensor y = random_tensor({3, 4, 5, 2}, dt, seed++);
    Tensor xv = x.transpose(0, 1);
    check_matmul(ops::matmul(xv, y), xv.contiguous(), y);
    // An expanded (stride 0) batch operand is read without a copy.
    Tensor m = random_tensor({2, 5}, dt, seed++);
    Tensor me = m.expand({3, 4, 2, 5});
    check_matmul(ops::matmul(me, y), me.contiguous(), y);
  }
}

TEST_CASE("matmul: a shared 2-d operand on either side", "[matmul]") {
  uint64_t seed = 300;
  for (DType dt : kFloatTypes) {
    Tensor x = random_tensor({4, 6, 8}, dt, seed++);  // (B, T, C)
    Tensor w = random_tensor({5, 8}, dt, seed++);     // (out, in): the nn.Linear weight
    Tensor wt = random_tensor({8, 5}, dt, seed++);
    // Right side shared: the folded (B*T, C) x (C, N) GEMM, with and without trans_b.
    check_matmul(ops::matmul(x, w, false, true), x, w, false, true);
    check_matmul(ops::matmul(x, wt), x, wt);
    // Folds through a narrowed activation too (rows stride 16, batch stride 6 * 16).
    Tensor wide = random_tensor({4, 6, 16}, dt, seed++);
    Tensor xn = wide.narrow(2, 4, 8);
    check_matmul(ops::matmul(xn, wt), xn.contiguous(), wt);
    // Does not fold (batch stride != T * row stride): one GEMM per batch entry.
    Tensor tb = random_tensor({6, 4, 8}, dt, seed++);
    Tensor xt = tb.transpose(0, 1);  // (4, 6, 8), batch stride 8, row stride 32
    check_matmul(ops::matmul(xt, wt), xt.contiguous(), wt);
    // trans_a with a shared right side: no fold either.
    Tensor xa = random_tensor({4, 8, 6}, dt, seed++);
    check_matmul(ops::matmul(xa, wt, true, false), xa, wt, true, false);
    // T == 1 folds with the batch stride as row stride.
    Tensor x1 = random_tensor({4, 1, 8}, dt, seed++);
    check_matmul(ops::matmul(x1, wt), x1, wt);
    // Left side shared.
    Tensor l = random_tensor({3, 6}, dt, seed++);
    check_matmul(ops::matmul(l, x), l, x);
    check_matmul(ops::matmul(l, transposed_layout(x)), l, x);
    check_matmul(ops::matmul(transposed_layout(l), x), l, x);
    Tensor lt = random_tensor({6, 3}, dt, seed++);
    check_matmul(ops::matmul(lt, x, true, false), lt, x, true, false);
  }
}

TEST_CASE("matmul: 4-d attention shapes (B, H, T, dh)", "[matmul]") {
  const int64_t B = 2, H = 3, T = 5, dh = 4;
  uint64_t seed = 400;
  for (DType dt : kFloatTypes) {
    Tensor q = random_tensor({B, H, T, dh}, dt, seed++);
    Tensor k = random_tensor({B, H, T, dh}, dt, seed++);
    Tensor v = random_tensor({B, H, T, dh}, dt, seed++);
    Tensor scores = ops::matmul(q, k, false, true);  // (B, H, T, T)
    CHECK(scores.shape() == Shape{B, H, T, T});
    check_matmul(scores, q, k, false, true);
    Tensor att = random_tensor({B, H, T, T}, dt, seed++);
    check_matmul(ops::matmul(att, v), att, v);
    // The backward products: att^T @ grad and grad @ v^T.
    Tensor g = random_tensor({B, H, T, dh}, dt, seed++);
    check_matmul(ops::matmul(att, g, true, false), att, g, true, false);
    check_matmul(ops::matmul(g, v, false, true), g, v, false, true);
    // Heads split from a (B, T, H*dh) projection: (B, T, H, dh).transpose(1, 2) has batch dims that
    // do not merge into one stride, so the op copies; k as a (B, H, dh, T) transposed view does not.
    Tensor proj = random_tensor({B, T, H * dh}, dt, seed++);
    Tensor qh = proj.view({B, T, H, dh}).transpose(1, 2);
    check_matmul(ops::matmul(qh, k, false, true), qh.contiguous(), k, false, true);
    Tensor kt = k.transpose(-1, -2);  // (B, H, dh, T)
    check_matmul(ops::matmul(q, kt), q, kt.contiguous());
  }
}

TEST_CASE("matmul: dims of size 1", "[matmul]") {
  uint64_t seed = 500;
  const int64_t sizes[][3] = {{1, 1, 1}, {1, 5, 1}, {1, 1, 4}, {3, 1, 1}, {1, 5, 4}, {3, 1, 4}, {3, 5, 1}};
  for (DType dt : kFloatTypes) {
    for (const auto& s : sizes) {
      const int64_t M = s[0], K = s[1], N = s[2];
      for (int ta = 0; ta < 2; ++ta) {
        for (int tb = 0; tb < 2; ++tb) {
          Tensor a = random_tensor(ta ? Shape{K, M} : Shape{M, K}, dt, seed++);
          Tensor b = random_tensor(tb ? Shape{N, K} : Shape{K, N}, dt, seed++);
          check_matmul(ops::matmul(a, b, ta, tb), a, b, ta, tb);
          check_matmul(ops::matmul(transposed_layout(a), transposed_layout(b), ta, tb), a, b, ta, tb);
          Tensor ab = random_tensor(ta ? Shape{1, K, M} : Shape{1, M, K}, dt, seed++);
          check_matmul(ops::matmul(ab, b, ta, tb), ab, b, ta, tb);
          Tensor a2 = random_tensor(ta ? Shape{2, K, M} : Shape{2, M, K}, dt, seed++);
          check_matmul(ops::matmul(a2, b, ta, tb), a2, b, ta, tb);
        }
      }
    }
  }
}

TEST_CASE("matmul: zero-size dims", "[matmul]") {
  for (DType dt : kFloatTypes) {
    CHECK(ops::matmul(zeros({0, 3}, dt), zeros({3, 4}, dt)).shape() == Shape{0, 4});
    CHECK(ops::matmul(zeros({2, 3}, dt), zeros({3, 0}, dt)).shape() == Shape{2, 0});
    CHECK(ops::matmul(zeros({0, 2, 3}, dt), zeros({3, 4}, dt)).shape() == Shape{0, 2, 4});
    // K == 0: the empty sum is 0, whatever empty() left in memory.
    Tensor z = ops::matmul(zeros({2, 0}, dt), zeros({0, 3}, dt));
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.to_vector<double>() == std::vector<double>(6, 0.0));
    Tensor zb = ops::matmul(zeros({2, 0, 2}, dt), zeros({2, 3, 0}, dt), true, true);
    CHECK(zb.shape() == Shape{2, 2, 3});
    CHECK(zb.to_vector<double>() == std::vector<double>(12, 0.0));
    // K == 0 with matmul_out: out = beta * out, and beta == 0 clears NaN.
    Tensor out = full({2, 3}, 4.0, dt);
    ops::matmul_out(zeros({2, 0}, dt), zeros({0, 3}, dt), out, false, false, 2.0, 0.5);
    CHECK(out.to_vector<double>() == std::vector<double>(6, 2.0));
    Tensor nan_out = full({2, 3}, NAN, dt);
    ops::matmul_out(zeros({2, 0}, dt), zeros({0, 3}, dt), nan_out, false, false, 1.0, 0.0);
    CHECK(nan_out.to_vector<double>() == std::vector<double>(6, 0.0));
  }
}

TEST_CASE("matmul_out: alpha and beta accumulate into existing outputs", "[matmul]") {
  uint64_t seed = 600;
  for (DType dt : kFloatTypes) {
    const double tol = dt == DType::F64 ? 1e-12 : 1e-4;
    Tensor a = random_tensor({4, 6}, dt, seed++);
    Tensor b = random_tensor({5, 6}, dt, seed++);
    Tensor out0 = random_tensor({4, 5}, dt, seed++);
    Tensor out = out0.clone();
    ops::matmul_out(a, b, out, false, true, 0.5, 1.0);
    Tensor want = axpby(0.5, matmul_ref(a, b, false, true), 1.0, out0);
    CHECK_CLOSE(out, want, tol, tol);

    // Hand-computed: out = 2 * [[19, 22], [43, 50]] - 1 * [[1, 1], [1, 1]]
    Tensor h = ones({2, 2}, dt);
    ops::matmul_out(from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt), from_vector<double>({5, 6, 7, 8}, {2, 2}).to(dt),
                    h, false, false, 2.0, -1.0);
    CHECK(h.to_vector<double>() == std::vector<double>{37, 43, 85, 99});

    // beta == 0 ignores whatever out held, NaN included.
    Tensor n = full({4, 5}, NAN, dt);
    ops::matmul_out(a, b, n, false, true);
    check_matmul(n, a, b, false, true);

    // Accumulating twice doubles (gradient accumulation).
    Tensor acc = zeros({4, 5}, dt);
    ops::matmul_out(a, b, acc, false, true, 1.0, 1.0);
    ops::matmul_out(a, b, acc, false, true, 1.0, 1.0);
    Tensor ref = matmul_ref(a, b, false, true);
    CHECK_CLOSE(acc, axpby(1.0, ref, 1.0, ref), tol, tol);

    // Into a narrowed view of a wider buffer (row stride 9): the columns outside stay untouched.
    Tensor buf = full({4, 9}, 7.0, dt);
    Tensor view = buf.narrow(1, 2, 5);
    ops::matmul_out(a, b, view, false, true);
    check_matmul(view, a, b, false, true);
    CHECK(buf.narrow(1, 0, 2).to_vector<double>() == std::vector<double>(8, 7.0));
    CHECK(buf.narrow(1, 7, 2).to_vector<double>() == std::vector<double>(8, 7.0));

    // Batched out with a shared right side (the folded path) and beta = 1: the weight-gradient-like
    // accumulation x @ w^T += ...
    Tensor x = random_tensor({3, 4, 6}, dt, seed++);
    Tensor bo0 = random_tensor({3, 4, 5}, dt, seed++);
    Tensor bo = bo0.clone();
    ops::matmul_out(x, b, bo, false, true, 1.0, 1.0);
    CHECK_CLOSE(bo, axpby(1.0, matmul_ref(x, b, false, true), 1.0, bo0), tol, tol);
    // The same into a batched out that does not fold (batch-dim transpose of a contiguous buffer).
    Tensor tbuf = zeros({4, 3, 5}, dt);
    Tensor tview = tbuf.transpose(0, 1);  // (3, 4, 5)
    ops::matmul_out(x, b, tview, false, true);
    check_matmul(tview, x, b, false, true);
  }
}

TEST_CASE("matmul: larger f32 and f64 products with the K-scaled tolerance", "[matmul]") {
  for (DType dt : kFloatTypes) {
    Tensor a = random_tensor({33, 257}, dt, 700, -3.0, 3.0);
    Tensor b = random_tensor({257, 19}, dt, 701, -1.0, 1.0);
    check_matmul(ops::matmul(a, b), a, b);
    check_matmul(ops::matmul(a.t().contiguous(), b, true, false), a.t().contiguous(), b, true, false);
    // Large magnitudes: the tolerance scales with max|a| * max|b|.
    Tensor big = axpby(1e6, a, 0.0, a).to(dt);
    check_matmul(ops::matmul(big, b), big, b);
  }
}

TEST_CASE("matmul: error messages", "[matmul]") {
  Tensor a = zeros({4, 3});
  REQUIRE_THROWS_WITH(ops::matmul(a, zeros({5, 2})), "matmul: inner dims differ: a=(4, 3) b=(5, 2)");
  REQUIRE_THROWS_WITH(ops::matmul(a, zeros({3, 2}), true, false),
                      "matmul: inner dims differ: a=(4, 3) b=(3, 2) with trans_a");
  REQUIRE_THROWS_WITH(ops::matmul(a, zeros({2, 4}), false, true),
                      "matmul: inner dims differ: a=(4, 3) b=(2, 4) with trans_b");
  REQUIRE_THROWS_WITH(ops::matmul(a, zeros({2, 3}), true, true),
                      "matmul: inner dims differ: a=(4, 3) b=(2, 3) with trans_a and trans_b");
  REQUIRE_THROWS_WITH(ops::matmul(zeros({2, 4, 3}), zeros({3, 3, 2})),
                      "matmul: batch dims differ: a=(2, 4, 3) b=(3, 3, 2) (batch dims must be equal, or one side 2-d)");
  REQUIRE_THROWS_WITH(ops::matmul(zeros({2, 4, 3}), zeros({1, 3, 2})),
                      "matmul: batch dims differ: a=(2, 4, 3) b=(1, 3, 2) (batch dims must be equal, or one side 2-d)");
  REQUIRE_THROWS_WITH(ops::matmul(zeros({3}), zeros({3, 2})),
                      "matmul: expected a and b with at least 2 dims, got a=(3,) b=(3, 2) (unsqueeze vectors into "
                      "1-row or 1-column matrices)");
  REQUIRE_THROWS_WITH(ops::matmul(a, zeros({3, 2}, DType::F64)), "matmul: dtypes differ: f32 and f64");
  REQUIRE_THROWS_WITH(ops::matmul(zeros({2, 2}, DType::I64), zeros({2, 2}, DType::I64)),
                      "matmul: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::matmul(a, Tensor()), "matmul: got an undefined tensor");

  Tensor b = zeros({3, 2});
  REQUIRE_THROWS_WITH(ops::matmul_out(a, b, zeros({2, 4})), "matmul_out: out has shape (2, 4), expected (4, 2)");
  REQUIRE_THROWS_WITH(ops::matmul_out(a, zeros({5, 2}), zeros({4, 2})),
                      "matmul_out: inner dims differ: a=(4, 3) b=(5, 2)");
  REQUIRE_THROWS_WITH(ops::matmul_out(a, b, zeros({4, 2}, DType::F64)),
                      "matmul_out: out has dtype f64, expected f32");
  REQUIRE_THROWS_WITH(ops::matmul_out(a, b, zeros({2, 4}).t()),
                      "matmul_out: out must have unit stride along its last dim and non-overlapping rows, got shape "
                      "(4, 2) with strides (1, 4)");
  REQUIRE_THROWS_WITH(ops::matmul_out(a, b, zeros({1, 2}).expand({4, 2})),
                      "matmul_out: out must not be a broadcast (expanded) view, got shape (4, 2) with strides (0, 1)");
  REQUIRE_THROWS_WITH(ops::matmul_out(zeros({2, 3, 4, 3}), b, zeros({3, 2, 4, 2}).transpose(0, 1)),
                      "matmul_out: out's batch dims must be walkable with a single stride, got shape (2, 3, 4, 2) "
                      "with strides (8, 16, 2, 1)");
}
