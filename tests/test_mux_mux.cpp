// test_mux_mux.cpp — the text multiplexers of mux/multiplexer.h (gaussian_hadamard, binary_hadamard,
// random_ortho; fixed or learned keys).
//
// Covers: kind names; output and key shapes and the key's registration (a buffer named
// "instance_embedding" when fixed, a parameter when learned) for N in {1, 2, 5}; hand-computed forward
// values for tiny cases; the keys themselves (binary blocks and the reference's overlap rule, gaussian
// rows of length `norm`, random_ortho orthogonal with det ±1 and equal to the sign-corrected QR of the
// documented seeded draw); the forward against a naive double-loop reference in f32 and f64 on
// contiguous, transposed, strided and broadcast inputs; gradient checks in f64 through the module (the
// input always, the keys when learned); fixed keys get no gradient, learned keys do; the N = 1
// identity case; seeded reproducibility; the error messages.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "mux/multiplexer.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::mux;
using muxnet::test::random_tensor;
using Tensors = std::vector<Tensor>;

namespace {

const MuxKind kKinds[] = {MuxKind::GaussianHadamard, MuxKind::BinaryHadamard, MuxKind::RandomOrtho};

MuxOptions opts(MuxKind kind, int64_t n, int64_t dim, bool learned = false) {
  MuxOptions o;
  o.kind = kind;
  o.n = n;
  o.dim = dim;
  o.learned = learned;
  return o;
}

// Writes values into a key tensor in place, outside autograd (as a checkpoint load would).
void set_keys(const Tensor& keys, const std::vector<double>& values) {
  NoGradGuard no_grad;
  keys.detach().copy_(from_vector<double>(values, keys.shape()).to(keys.dtype()));
}

Tensor f64(const std::vector<double>& values, const Shape& shape) { return from_vector<double>(values, shape); }

// Naive reference in double. x: (B·N, L, d); keys (N, d) or (N, d, d) -> (B, L, d)
//   hadamard: out[b, t, k] = (1/N) Σ_i x[b·N+i, t, k] keys[i, k]
//   ortho:    out[b, t, r] = (1/√N) Σ_i Σ_c keys[i, r, c] x[b·N+i, t, c]
Tensor reference(const Tensor& x, const Tensor& keys, int64_t n, bool ortho) {
  const int64_t b_count = x.size(0) / n, l = x.size(1), d = x.size(2);
  std::vector<double> out(size_t(b_count * l * d), 0.0);
  for (int64_t b = 0; b < b_count; ++b) {
    for (int64_t t = 0; t < l; ++t) {
      for (int64_t r = 0; r < d; ++r) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          if (ortho) {
            for (int64_t c = 0; c < d; ++c) acc += keys.at({i, r, c}) * x.at({b * n + i, t, c});
          } else {
            acc += x.at({b * n + i, t, r}) * keys.at({i, r});
          }
        }
        out[size_t((b * l + t) * d + r)] = ortho ? acc / std::sqrt(double(n)) : acc / double(n);
      }
    }
  }
  return f64(out, {b_count, l, d});
}

// a: (d, d) -> the Q of a = Q R with diag(R) > 0, by modified Gram-Schmidt over the columns (an
// algorithm independent of the module's Householder QR; the factorisation is unique).
std::vector<double> gram_schmidt_q(const Tensor& a) {
  const int64_t d = a.size(0);
  std::vector<double> q(size_t(d * d));
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c = 0; c < d; ++c) q[size_t(r * d + c)] = a.at({r, c});
  for (int64_t c = 0; c < d; ++c) {
    double nn = 0.0;
    for (int64_t r = 0; r < d; ++r) nn += q[size_t(r * d + c)] * q[size_t(r * d + c)];
    nn = std::sqrt(nn);
    for (int64_t r = 0; r < d; ++r) q[size_t(r * d + c)] /= nn;
    for (int64_t c2 = c + 1; c2 < d; ++c2) {
      double dot = 0.0;
      for (int64_t r = 0; r < d; ++r) dot += q[size_t(r * d + c)] * q[size_t(r * d + c2)];
      for (int64_t r = 0; r < d; ++r) q[size_t(r * d + c2)] -= dot * q[size_t(r * d + c)];
    }
  }
  return q;
}

// Determinant of a (d, d) matrix by LU with partial pivoting, in double.
double determinant(std::vector<double> m, int64_t d) {
  double det = 1.0;
  for (int64_t k = 0; k < d; ++k) {
    int64_t p = k;
    for (int64_t r = k + 1; r < d; ++r)
      if (std::fabs(m[size_t(r * d + k)]) > std::fabs(m[size_t(p * d + k)])) p = r;
    if (p != k) {
      for (int64_t c = 0; c < d; ++c) std::swap(m[size_t(k * d + c)], m[size_t(p * d + c)]);
      det = -det;
    }
    const double piv = m[size_t(k * d + k)];
    det *= piv;
    if (piv == 0.0) return 0.0;
    for (int64_t r = k + 1; r < d; ++r) {
      const double f = m[size_t(r * d + k)] / piv;
      for (int64_t c = k; c < d; ++c) m[size_t(r * d + c)] -= f * m[size_t(k * d + c)];
    }
  }
  return det;
}

std::vector<double> matrix(const Tensor& keys, int64_t i) {
  return keys.select(0, i).to(DType::F64).contiguous().to_vector<double>();
}

}  // namespace

TEST_CASE("mux kind names", "[mux][mux-mux]") {
  for (MuxKind k : kKinds) CHECK(parse_mux_kind(mux_kind_name(k)) == k);
  CHECK(std::string(mux_kind_name(MuxKind::GaussianHadamard)) == "gaussian_hadamard");
  CHECK(std::string(mux_kind_name(MuxKind::BinaryHadamard)) == "binary_hadamard");
  CHECK(std::string(mux_kind_name(MuxKind::RandomOrtho)) == "random_ortho");
  REQUIRE_THROWS_WITH(parse_mux_kind("hadamard"),
                      "mux: unknown multiplexer kind 'hadamard' (expected gaussian_hadamard, binary_hadamard or "
                      "random_ortho)");
}

TEST_CASE("multiplexer shapes and key registration for N in {1, 2, 5}", "[mux][mux-mux]") {
  const int64_t d = 6, b = 3, l = 4;
  for (MuxKind kind : kKinds) {
    for (int64_t n : {1, 2, 5}) {
      for (bool learned : {false, true}) {
        INFO(mux_kind_name(kind) << " n=" << n << " learned=" << learned);
        Generator gen(3);
        Multiplexer m(opts(kind, n, d, learned), &gen);
        const Shape key_shape = kind == MuxKind::RandomOrtho ? Shape{n, d, d} : Shape{n, d};
        CHECK(m.keys.shape() == key_shape);
        CHECK(m.keys.dtype() == DType::F32);
        CHECK(m.forward(random_tensor({b * n, l, d}, DType::F32, 1)).shape() == Shape{b, l, d});
        auto params = m.named_parameters();
        auto buffers = m.named_buffers();
        if (learned) {
          REQUIRE(params.size() == 1);
          CHECK(buffers.empty());
          CHECK(params[0].first == "instance_embedding");
          CHECK(params[0].second.is_same(m.keys));
          CHECK(m.keys.requires_grad());
        } else {
          CHECK(params.empty());
          REQUIRE(buffers.size() == 1);
          CHECK(buffers[0].first == "instance_embedding");
          CHECK(buffers[0].second.is_same(m.keys));
          CHECK_FALSE(m.keys.requires_grad());
        }
        auto state = m.state();  // what a checkpoint saves
        REQUIRE(state.size() == 1);
        CHECK(state[0].first == "instance_embedding");
      }
    }
  }
  // Empty batches and sequences.
  Multiplexer g(opts(MuxKind::GaussianHadamard, 2, 3));
  CHECK(g.forward(zeros({0, 4, 3})).shape() == Shape{0, 4, 3});
  CHECK(g.forward(zeros({4, 0, 3})).shape() == Shape{2, 0, 3});
  Multiplexer o(opts(MuxKind::RandomOrtho, 2, 3));
  CHECK(o.forward(zeros({0, 4, 3})).shape() == Shape{0, 4, 3});
  CHECK(o.forward(zeros({4, 0, 3})).shape() == Shape{2, 0, 3});
}

TEST_CASE("binary_hadamard keys and hand-computed forward", "[mux][mux-mux]") {
  // N = 2, d = 4: blocks [0, 2) and [2, 4).
  Multiplexer m(opts(MuxKind::BinaryHadamard, 2, 4));
  CHECK_CLOSE(m.keys, f64({1, 1, 0, 0, 0, 0, 1, 1}, {2, 4}), 0.0, 0.0);
  // Rows b·N + i: mixed sequence 0 = rows 0, 1; mixed sequence 1 = rows 2, 3. L = 1.
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, 10, 20, 30, 40}, {4, 1, 4});
  // out[b] = (x[b·2] ⊙ [1,1,0,0] + x[b·2+1] ⊙ [0,0,1,1]) / 2
  CHECK_CLOSE(m.forward(x), f64({0.5, 1, 3.5, 4, -0.5, -1, 15, 20}, {2, 1, 4}), 0.0, 0.0);

  // N = 3, d = 10: width 3, the last block runs to d.
  Multiplexer m3(opts(MuxKind::BinaryHadamard, 3, 10));
  CHECK_CLOSE(m3.keys,
              f64({1, 1, 1, 0, 0, 0, 0, 0, 0, 0,  //
                   0, 0, 0, 1, 1, 1, 0, 0, 0, 0,  //
                   0, 0, 0, 0, 0, 0, 1, 1, 1, 1},
                  {3, 10}),
              0.0, 0.0);

  // Overlap, integer: N = 3, d = 12, width 4, eps = 0.5 -> o = 1: [0, 5), [3, 9), [7, 12).
  MuxOptions o = opts(MuxKind::BinaryHadamard, 3, 12);
  o.epsilon = 0.5;
  CHECK_CLOSE(Multiplexer(o).keys,
              f64({1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,  //
                   0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0,  //
                   0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1},
                  {3, 12}),
              0.0, 0.0);
  // Overlap, fractional: eps = 0.3 -> o = 0.6. The reference truncates start - o and end + o:
  // start 4 -> trunc(3.4) = 3, start 8 -> 7; end 4 -> trunc(4.6) = 4, end 8 -> 8: [0, 4), [3, 8), [7, 12).
  o.epsilon = 0.3;
  CHECK_CLOSE(Multiplexer(o).keys,
              f64({1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,  //
                   0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0,  //
                   0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1},
                  {3, 12}),
              0.0, 0.0);
  // Full overlap eps = 1, N = 2, d = 8, width 4, o = 2: [0, 6), [2, 8).
  MuxOptions full = opts(MuxKind::BinaryHadamard, 2, 8);
  full.epsilon = 1.0;
  CHECK_CLOSE(Multiplexer(full).keys, f64({1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {2, 8}), 0.0, 0.0);
  // N = d: one coordinate each.
  CHECK_CLOSE(Multiplexer(opts(MuxKind::BinaryHadamard, 3, 3)).keys, f64({1, 0, 0, 0, 1, 0, 0, 0, 1}, {3, 3}), 0.0,
              0.0);
}

TEST_CASE("gaussian_hadamard keys have length norm; hand-computed forward", "[mux][mux-mux]") {
  for (double norm : {1.0, 20.0}) {
    MuxOptions o = opts(MuxKind::GaussianHadamard, 5, 16);
    o.norm = norm;
    Generator gen(9);
    Multiplexer m(o, &gen);
    // The documented draw: randn((N, d), f64, gen), rows normalised to `norm`.
    Generator replay(9);
    Tensor g = randn({5, 16}, DType::F64, &replay);
    for (int64_t i = 0; i < 5; ++i) {
      double len = 0.0, glen = 0.0;
      for (int64_t k = 0; k < 16; ++k) {
        len += m.keys.at({i, k}) * m.keys.at({i, k});
        glen += g.at({i, k}) * g.at({i, k});
      }
      CHECK(std::sqrt(len) == Approx(norm).epsilon(1e-6));
      for (int64_t k = 0; k < 16; ++k)
        CHECK(m.keys.at({i, k}) == Approx(g.at({i, k}) / std::sqrt(glen) * norm).epsilon(1e-6).margin(1e-7));
    }
  }
  // Hand-computed with set keys: N = 2, d = 3, B = 1, L = 1.
  Multiplexer m(opts(MuxKind::GaussianHadamard, 2, 3));
  set_keys(m.keys, {1, 2, 3, -1, 0.5, 2});
  // ([1,-2,4] ⊙ [1,2,3] + [2,2,-1] ⊙ [-1,0.5,2]) / 2 = ([1,-4,12] + [-2,1,-2]) / 2
  Tensor x = from_vector<float>({1, -2, 4, 2, 2, -1}, {2, 1, 3});
  CHECK_CLOSE(m.forward(x), f64({-0.5, -1.5, 5}, {1, 1, 3}), 0.0, 0.0);
}

TEST_CASE("random_ortho keys are Haar QR factors: orthogonal, det ±1", "[mux][mux-mux]") {
  const int64_t n = 8, d = 12;
  Generator gen(21);
  Multiplexer m(opts(MuxKind::RandomOrtho, n, d), &gen);
  Generator replay(21);
  Tensor a = randn({n, d, d}, DType::F64, &replay);  // the documented draw
  int positive = 0, negative = 0;
  for (int64_t i = 0; i < n; ++i) {
    INFO("instance " << i);
    std::vector<double> w = matrix(m.keys, i);
    // W Wᵀ = I and Wᵀ W = I (f32-stored entries: error ~ d · 6e-8).
    double worst = 0.0, worst_t = 0.0;
    for (int64_t r = 0; r < d; ++r) {
      for (int64_t c = 0; c < d; ++c) {
        double s = 0.0, st = 0.0;
        for (int64_t k = 0; k < d; ++k) {
          s += w[size_t(r * d + k)] * w[size_t(c * d + k)];
          st += w[size_t(k * d + r)] * w[size_t(k * d + c)];
        }
        worst = std::max(worst, std::fabs(s - (r == c ? 1.0 : 0.0)));
        worst_t = std::max(worst_t, std::fabs(st - (r == c ? 1.0 : 0.0)));
      }
    }
    CHECK(worst < 1e-6);
    CHECK(worst_t < 1e-6);
    const double det = determinant(w, d);
    CHECK(std::fabs(std::fabs(det) - 1.0) < 1e-5);
    (det > 0 ? positive : negative)++;
    // The unique QR with positive diag(R), computed here by Gram-Schmidt from the same draw.
    std::vector<double> q = gram_schmidt_q(a.select(0, i));
    CHECK_CLOSE(m.keys.select(0, i), f64(q, {d, d}), 1e-6, 0.0);
  }
  // Haar on O(d), not SO(d): this seed's 8 draws include both orientations.
  CHECK(positive > 0);
  CHECK(negative > 0);
  // Different instances get different matrices.
  CHECK(matrix(m.keys, 0) != matrix(m.keys, 1));
}

TEST_CASE("random_ortho hand-computed forward", "[mux][mux-mux]") {
  Multiplexer m(opts(MuxKind::RandomOrtho, 2, 2));
  // W_0 = rotation by 90°, W_1 = reflection about the first axis.
  set_keys(m.keys, {0, -1, 1, 0, 1, 0, 0, -1});
  // x_0 = (1, 2), x_1 = (3, 4): W_0 x_0 = (-2, 1), W_1 x_1 = (3, -4); (1, -3) / sqrt 2.
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 1, 2});
  CHECK_CLOSE(m.forward(x), f64({1 / std::sqrt(2.0), -3 / std::sqrt(2.0)}, {1, 1, 2}), 1e-7, 1e-7);
}

TEST_CASE("multiplexer forward matches the naive reference (f32, f64, layouts)", "[mux][mux-mux]") {
  const int64_t b = 2, l = 3, d = 5;
  for (MuxKind kind : kKinds) {
    for (int64_t n : {1, 2, 3}) {
      for (DType dt : {DType::F32, DType::F64}) {
        INFO(mux_kind_name(kind) << " n=" << n << " dtype=" << dt);
        Generator gen(uint64_t(7 + n));
        Multiplexer m(opts(kind, n, d), &gen);
        m.to(dt);
        const bool ortho = kind == MuxKind::RandomOrtho;
        Tensor x = random_tensor({b * n, l, d}, dt, uint64_t(100 + n));
        // Tolerance from the dtype: a handful of roundings per output.
        const double tol = dt == DType::F64 ? 1e-12 : 1e-6;
        CHECK_CLOSE(m.forward(x), reference(x, m.keys, n, ortho), tol, tol);
        Tensor xt = test::transposed_layout(x);
        CHECK_FALSE(xt.is_contiguous());
        CHECK_CLOSE(m.forward(xt), reference(x, m.keys, n, ortho), tol, tol);
        Tensor xs = test::strided_layout(x);
        CHECK_CLOSE(m.forward(xs), reference(x, m.keys, n, ortho), tol, tol);
        Tensor x01 = test::transposed_layout(x, 0, 1);
        CHECK_CLOSE(m.forward(x01), reference(x, m.keys, n, ortho), tol, tol);
        // Every row the same broadcast (stride-0) row.
        Tensor row = random_tensor({1, l, d}, dt, 55);
        Tensor xe = row.expand({b * n, l, d});
        CHECK_CLOSE(m.forward(xe), reference(xe.contiguous(), m.keys, n, ortho), tol, tol);
        // Large magnitudes scale through.
        Tensor big = ops::mul(x, 1e6);
        CHECK_CLOSE(m.forward(big), reference(big, m.keys, n, ortho), tol * 1e6, tol);
      }
    }
  }
}

TEST_CASE("multiplexer f32 forward matches the f64 forward", "[mux][mux-mux]") {
  for (MuxKind kind : kKinds) {
    INFO(mux_kind_name(kind));
    Generator g1(4), g2(4);
    Multiplexer m32(opts(kind, 4, 16), &g1), m64(opts(kind, 4, 16), &g2);
    m64.to(DType::F64);
    Tensor x = random_tensor({8, 5, 16}, DType::F64, 12);
    CHECK_CLOSE(m32.forward(x.to(DType::F32)), m64.forward(x), 1e-5, 1e-5);
  }
}

TEST_CASE("multiplexer gradcheck in f64 (input; keys when learned)", "[mux][mux-mux][grad]") {
  const int64_t b = 2, l = 3, d = 4;
  for (MuxKind kind : kKinds) {
    for (int64_t n : {1, 2, 3}) {
      for (bool learned : {false, true}) {
        INFO(mux_kind_name(kind) << " n=" << n << " learned=" << learned);
        Generator gen(uint64_t(30 + n));
        Multiplexer m(opts(kind, n, d, learned), &gen);
        m.to(DType::F64);
        if (kind == MuxKind::BinaryHadamard && learned) {
          // Learned binary keys move away from 0/1 during training: check at a generic point.
          set_keys(m.keys, random_tensor(m.keys.shape(), DType::F64, 77).to_vector<double>());
        }
        CHECK(int64_t(m.parameters().size()) == (learned ? 1 : 0));
        auto f = [&](const std::vector<Tensor>& in) { return m.forward(in[0]); };
        Tensor x = random_tensor({b * n, l, d}, DType::F64, uint64_t(40 + n));
        CHECK_GRADCHECK_MODULE(m, Tensors{x}, f);
        CHECK_GRADCHECK_MODULE(m, Tensors{test::transposed_layout(x)}, f);
        CHECK_GRADCHECK_MODULE(m, Tensors{test::strided_layout(x)}, f);
      }
    }
  }
}

TEST_CASE("fixed keys get no gradient, learned keys do", "[mux][mux-mux][grad]") {
  for (MuxKind kind : kKinds) {
    for (bool learned : {false, true}) {
      INFO(mux_kind_name(kind) << " learned=" << learned);
      Multiplexer m(opts(kind, 3, 4, learned));
      Tensor x = random_tensor({6, 2, 4}, DType::F32, 5);
      x.requires_grad_();
      Tensor w = random_tensor({2, 2, 4}, DType::F32, 6);  // a generic upstream gradient
      sum(mul(m.forward(x), w)).backward();
      REQUIRE(x.grad().defined());
      CHECK(ops::max(ops::abs(x.grad())).item() > 0);
      if (learned) {
        REQUIRE(m.keys.grad().defined());
        CHECK(m.keys.grad().shape() == m.keys.shape());
        CHECK(ops::max(ops::abs(m.keys.grad())).item() > 0);
      } else {
        CHECK(m.parameters().empty());
        CHECK_FALSE(m.keys.requires_grad());
        CHECK_FALSE(m.keys.grad().defined());
      }
    }
  }
  // With fixed keys and an input that needs no gradient, nothing is recorded.
  Multiplexer m(opts(MuxKind::GaussianHadamard, 2, 4));
  CHECK_FALSE(m.forward(random_tensor({4, 2, 4}, DType::F32, 1)).requires_grad());
}

TEST_CASE("multiplexer N = 1 with unit keys is the identity", "[mux][mux-mux]") {
  Tensor x = random_tensor({3, 4, 5}, DType::F32, 8);
  Multiplexer g(opts(MuxKind::GaussianHadamard, 1, 5));
  set_keys(g.keys, std::vector<double>(5, 1.0));
  CHECK_CLOSE(g.forward(x), x, 0.0, 0.0);
  // Binary with N = 1 is one block covering every coordinate: already all ones.
  Multiplexer bh(opts(MuxKind::BinaryHadamard, 1, 5));
  CHECK_CLOSE(bh.keys, ones({1, 5}), 0.0, 0.0);
  CHECK_CLOSE(bh.forward(x), x, 0.0, 0.0);
  CHECK_CLOSE(bh.forward(test::transposed_layout(x)), x, 0.0, 0.0);
  // random_ortho with W = I.
  Multiplexer o(opts(MuxKind::RandomOrtho, 1, 5));
  std::vector<double> eye(25, 0.0);
  for (int k = 0; k < 5; ++k) eye[size_t(k * 6)] = 1.0;
  set_keys(o.keys, eye);
  CHECK_CLOSE(o.forward(x), x, 0.0, 0.0);
  // Learned keys at ones: still the identity, and the gradient flows straight through.
  Multiplexer gl(opts(MuxKind::GaussianHadamard, 1, 5, true));
  set_keys(gl.keys, std::vector<double>(5, 1.0));
  Tensor xg = x.clone();
  xg.requires_grad_();
  Tensor y = gl.forward(xg);
  CHECK_CLOSE(y, x, 0.0, 0.0);
  sum(y).backward();
  CHECK_CLOSE(xg.grad(), ones({3, 4, 5}), 0.0, 0.0);
}

TEST_CASE("multiplexer keys are reproducible from the seed", "[mux][mux-mux]") {
  for (MuxKind kind : {MuxKind::GaussianHadamard, MuxKind::RandomOrtho}) {
    INFO(mux_kind_name(kind));
    Generator a(11), b(11), c(12);
    Multiplexer ma(opts(kind, 3, 6), &a), mb(opts(kind, 3, 6), &b), mc(opts(kind, 3, 6), &c);
    CHECK(ma.keys.to_vector<float>() == mb.keys.to_vector<float>());
    CHECK(ma.keys.to_vector<float>() != mc.keys.to_vector<float>());
    // The default generator, reseeded.
    manual_seed(99);
    Multiplexer d1(opts(kind, 3, 6));
    manual_seed(99);
    Multiplexer d2(opts(kind, 3, 6));
    CHECK(d1.keys.to_vector<float>() == d2.keys.to_vector<float>());
    // Successive modules from one generator differ.
    Multiplexer again(opts(kind, 3, 6), &a);
    CHECK(again.keys.to_vector<float>() != ma.keys.to_vector<float>());
  }
}

TEST_CASE("multiplexer error messages", "[mux][mux-mux]") {
  REQUIRE_THROWS_WITH(Multiplexer(opts(MuxKind::GaussianHadamard, 0, 4)),
                      "Multiplexer: n (instances) must be >= 1, got 0");
  REQUIRE_THROWS_WITH(Multiplexer(opts(MuxKind::RandomOrtho, -2, 4)),
                      "Multiplexer: n (instances) must be >= 1, got -2");
  REQUIRE_THROWS_WITH(Multiplexer(opts(MuxKind::BinaryHadamard, 2, 0)), "Multiplexer: dim must be >= 1, got 0");
  REQUIRE_THROWS_WITH(Multiplexer(opts(MuxKind::BinaryHadamard, 5, 4)),
                      "Multiplexer: binary_hadamard needs n <= dim (one block of coordinates per instance), got "
                      "n=5 dim=4");
  MuxOptions eps = opts(MuxKind::BinaryHadamard, 2, 4);
  eps.epsilon = 1.5;
  REQUIRE_THROWS_WITH(Multiplexer(eps), "Multiplexer: binary_hadamard epsilon must be in [0, 1], got 1.5");
  MuxOptions norm = opts(MuxKind::GaussianHadamard, 2, 4);
  norm.norm = 0;
  REQUIRE_THROWS_WITH(Multiplexer(norm), "Multiplexer: gaussian_hadamard norm must be positive and finite, got 0");

  Multiplexer m(opts(MuxKind::GaussianHadamard, 2, 4));
  REQUIRE_THROWS_WITH(m.forward(zeros({5, 3, 4})),
                      "Multiplexer: x has 5 rows, not a multiple of N = 2 (rows b*N + i hold instance i of mixed "
                      "sequence b)");
  REQUIRE_THROWS_WITH(m.forward(zeros({4, 3, 5})), "Multiplexer: expected x of shape (B*N, L, 4), got (4, 3, 5)");
  REQUIRE_THROWS_WITH(m.forward(zeros({4, 4})), "Multiplexer: expected x of shape (B*N, L, 4), got (4, 4)");
  REQUIRE_THROWS_WITH(m.forward(Tensor()), "Multiplexer: x is an undefined tensor");
  REQUIRE_THROWS_WITH(m.forward(zeros({4, 3, 4}, DType::F64)),
                      "Multiplexer: x has dtype f64 but instance_embedding has f32 (convert the module with to())");
  Multiplexer o(opts(MuxKind::RandomOrtho, 3, 4));
  REQUIRE_THROWS_WITH(o.forward(zeros({4, 3, 4})),
                      "Multiplexer: x has 4 rows, not a multiple of N = 3 (rows b*N + i hold instance i of mixed "
                      "sequence b)");
}
