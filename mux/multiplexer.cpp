// multiplexer.cpp — the text multiplexers (PAPER.md §1.2): key construction and the mixing forward/backward.
//
// Matches princeton-nlp/DataMUX models/multiplexing.py + models/utils.py (random_encoding,
// binary_encoding, ortho_group) in what it computes; the random draws come from muxnet's Generator,
// so the key VALUES differ from a PyTorch run (a PyTorch state_dict's instance_embedding loads unchanged).
//
// Keys (drawn in f64 from the generator, stored in the module's dtype, f32 by default):
//   gaussian_hadamard  g = randn((N, d), f64, gen); v_i = g_i / ||g_i||_2 · norm.
//   binary_hadamard    deterministic blocks (no draw); see binary_keys() for the exact overlap rule.
//   random_ortho       A = randn((N, d, d), f64, gen); W_i = Q_i · diag(sign(diag R_i)) where A_i = Q_i R_i
//                      (Householder QR in f64). With the sign correction the factorisation is the unique
//                      one with diag(R) > 0, and Q is Haar-distributed on O(d) (det +1 or -1).
//
// Forward, x: (B·N, L, d) with rows b·N + i, viewed (B, N, L, d):
//   Hadamard   out[b] = Σ_i x[b, i] ⊙ (v_i / N)        the 1/N is folded into the N·d keys first, then
//              out = x[:, 0] ⊙ v'_0, out += x[:, i] ⊙ v'_i (no (B, N, L, d) tensor is materialised).
//   ortho      out[b, t] = (1/√N) Σ_i W_i x[b, i, t]  with x[b, i, t] a column vector, i.e. the row form
//              x[b, i] @ W_iᵀ — the reference's matmul(W, eᵀ)ᵀ. Computed instance-major: x is copied once
//              to xp (N, B·L, d) (row block i = every row of instance i), then N GEMMs (B·L x d x d)
//              accumulate into out with alpha = 1/√N and beta = 1, so no (N, B·L, d) product is stored.
// Both are single recorded functions (not compositions) so the backward does exactly the work needed.
//
// What this is not: the reference's random_ortho_low_rank variant, nor a mux over a subset of keys
// (the reference slices instance_embedding[:N]; here the module has exactly N keys).
#include "mux/multiplexer.h"

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet::mux {

MuxKind parse_mux_kind(const std::string& name) {
  if (name == "gaussian_hadamard") return MuxKind::GaussianHadamard;
  if (name == "binary_hadamard") return MuxKind::BinaryHadamard;
  if (name == "random_ortho") return MuxKind::RandomOrtho;
  MUXNET_FAIL("mux: unknown multiplexer kind '", name,
              "' (expected gaussian_hadamard, binary_hadamard or random_ortho)");
}

const char* mux_kind_name(MuxKind kind) {
  switch (kind) {
    case MuxKind::GaussianHadamard: return "gaussian_hadamard";
    case MuxKind::BinaryHadamard: return "binary_hadamard";
    default: return "random_ortho";
  }
}

namespace {

// (N, d): rows of N(0, I) normalised to length `norm`.
Tensor gaussian_keys(int64_t n, int64_t d, double norm, Generator* gen) {
  std::vector<double> g = randn({n, d}, DType::F64, gen).to_vector<double>();
  for (int64_t i = 0; i < n; ++i) {
    double* row = g.data() + i * d;
    double ss = 0.0;
    for (int64_t k = 0; k < d; ++k) ss += row[k] * row[k];
    // NOTE: ss == 0 has probability 0 (every one of d normal draws exactly 0); it would give NaN keys,
    // as torch's gauss / norm would.
    const double scale = norm / std::sqrt(ss);
    for (int64_t k = 0; k < d; ++k) row[k] *= scale;
  }
  return from_vector(g, {n, d});
}

// (N, d) 0/1 blocks, exactly as the reference's binary_encoding: width = d / N (integer division),
// block i = [i·width, (i+1)·width), the last block ends at d. With overlap o = eps/2 · width (a Python
// float there), the reference computes start[1:] - o and end[:-1] + o on int64 tensors, which PyTorch
// promotes to f32 and stores back into the int64 tensors with truncation. So, for i >= 1,
// start_i = trunc(f32(start_i) - f32(o)) = start_i - ceil(o), and for i < N-1,
// end_i = trunc(f32(end_i) + f32(o)) = end_i + floor(o) (the same when o is an integer).
Tensor binary_keys(int64_t n, int64_t d, double epsilon) {
  const int64_t width = d / n;
  const float overlap = float(epsilon / 2.0 * double(width));
  std::vector<double> v(size_t(n * d), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t start = i * width;
    int64_t end = i == n - 1 ? d : start + width;
    if (i >= 1) start = int64_t(float(start) - overlap);
    if (i < n - 1) end = int64_t(float(end) + overlap);
    for (int64_t k = start; k < end; ++k) v[size_t(i * d + k)] = 1.0;
  }
  return from_vector(v, {n, d});
}

// a: (d, d) row-major -> the Q of a = Q R with diag(R) > 0 (Householder reflections, f64).
std::vector<double> haar_q(std::vector<double> a, int64_t d) {
  std::vector<double> vs(size_t(d * d), 0.0);  // v_k in rows k..d-1 of column k
  std::vector<double> vnorm2(size_t(d), 0.0);  // v_kᵀ v_k; 0 when H_k = I
  std::vector<double> rdiag(size_t(d), 0.0);
  auto A = [&](int64_t r, int64_t c) -> double& { return a[size_t(r * d + c)]; };
  auto V = [&](int64_t r, int64_t k) -> double& { return vs[size_t(r * d + k)]; };
  for (int64_t k = 0; k < d; ++k) {
    double ss = 0.0;
    for (int64_t r = k; r < d; ++r) ss += A(r, k) * A(r, k);
    const double norm = std::sqrt(ss);
    if (norm == 0.0) continue;  // a zero column (probability 0): H_k = I, R_kk = 0 taken as positive
    // H_k x = alpha e_1 with alpha of the opposite sign to x_0, so v = x - alpha e_1 has no cancellation.
    const double alpha = A(k, k) > 0 ? -norm : norm;
    for (int64_t r = k; r < d; ++r) V(r, k) = A(r, k);
    V(k, k) -= alpha;
    double vv = 0.0;
    for (int64_t r = k; r < d; ++r) vv += V(r, k) * V(r, k);
    vnorm2[size_t(k)] = vv;
    // A[k:, k:] -= (2 / vᵀv) v (vᵀ A[k:, k:])
    for (int64_t c = k; c < d; ++c) {
      double s = 0.0;
      for (int64_t r = k; r < d; ++r) s += V(r, k) * A(r, c);
      const double f = 2.0 * s / vv;
      for (int64_t r = k; r < d; ++r) A(r, c) -= f * V(r, k);
    }
    rdiag[size_t(k)] = A(k, k);
  }
  // Q = H_0 H_1 ... H_{d-1}: apply the reflections to I from the left, last one first.
  std::vector<double> q(size_t(d * d), 0.0);
  for (int64_t r = 0; r < d; ++r) q[size_t(r * d + r)] = 1.0;
  for (int64_t k = d - 1; k >= 0; --k) {
    const double vv = vnorm2[size_t(k)];
    if (vv == 0.0) continue;
    for (int64_t c = 0; c < d; ++c) {
      double s = 0.0;
      for (int64_t r = k; r < d; ++r) s += V(r, k) * q[size_t(r * d + c)];
      const double f = 2.0 * s / vv;
      for (int64_t r = k; r < d; ++r) q[size_t(r * d + c)] -= f * V(r, k);
    }
  }
  // Q diag(sign(diag R)): flips the columns whose R_kk came out negative.
  for (int64_t c = 0; c < d; ++c) {
    if (rdiag[size_t(c)] >= 0) continue;
    for (int64_t r = 0; r < d; ++r) q[size_t(r * d + c)] = -q[size_t(r * d + c)];
  }
  return q;
}

// (N, d, d): N independent Haar-random orthogonal matrices.
Tensor ortho_keys(int64_t n, int64_t d, Generator* gen) {
  std::vector<double> g = randn({n, d, d}, DType::F64, gen).to_vector<double>();
  std::vector<double> out;
  out.reserve(g.size());
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> a(g.begin() + i * d * d, g.begin() + (i + 1) * d * d);
    std::vector<double> q = haar_q(std::move(a), d);
    out.insert(out.end(), q.begin(), q.end());
  }
  return from_vector(out, {n, d, d});
}

// x: (B·N, L, d), keys: (N, d) -> (B, L, d) = mean over instances of x_i ⊙ keys_i.
Tensor mix_hadamard(const Tensor& x, const Tensor& keys, int64_t n) {
  const int64_t b = x.size(0) / n, l = x.size(1), d = x.size(2);
  const Shape x4{b, n, l, d};
  Tensor out, ks;
  {
    NoGradGuard no_grad;
    ks = ops::mul(keys, 1.0 / double(n));  // (N, d): the 1/N of the mean, applied to N·d numbers
    // Splitting dim 0 into (B, N) is a view for any strides; xv.select(1, i) is instance i, (B, L, d).
    // Accumulating instance by instance measured 1.6-2x faster than one broadcast multiply to
    // (B, N, L, d) followed by a sum over the instance dim (f32, 1 thread, N=5 B=8 L=70 d=256:
    // 0.23 vs 0.41 ms; N=2 B=16 L=67 d=128: 0.08 vs 0.16 ms).
    Tensor xv = x.view(x4);
    out = ops::mul(xv.select(1, 0), ks.select(0, 0));
    for (int64_t i = 1; i < n; ++i) ops::add_(out, ops::mul(xv.select(1, i), ks.select(0, i)));
  }
  if (needs_grad({x, keys})) {
    const bool gx = x.requires_grad(), gk = keys.requires_grad();
    record(out, "multiplex_hadamard", {x, keys},
           [ks = gx ? ks : Tensor(), xs = gk ? x.detach() : Tensor(), gx, gk, x4, n, d,
            x_shape = x.shape()](const Tensor& g) {
             // forward: out[b] = Σ_i x[b, i] ⊙ keys_i / N
             Tensor dx, dk;
             // ∂/∂x[b, i] = g[b] ⊙ keys_i / N: one broadcast multiply writes all of dx.
             if (gx) dx = ops::mul(g.unsqueeze(1), ks.view({1, n, 1, d})).view(x_shape);
             if (gk) {
               // ∂/∂keys_i = Σ_{b, t} g[b, t] ⊙ x[b, i, t] / N, instance by instance (20% faster than
               // reducing one (B, N, L, d) product over dims 0 and 2).
               Tensor xv = xs.view(x4);
               std::vector<Tensor> rows;
               for (int64_t i = 0; i < n; ++i) rows.push_back(ops::sum(ops::mul(xv.select(1, i), g), {0, 1}));
               dk = ops::mul(ops::stack(rows, 0), 1.0 / double(n));
             }
             return std::vector<Tensor>{dx, dk};
           });
  }
  return out;
}

// x: (B·N, L, d), keys: (N, d, d) -> (B, L, d) = (1/√N) Σ_i x_i @ W_iᵀ.
Tensor mix_ortho(const Tensor& x, const Tensor& keys, int64_t n) {
  const int64_t b = x.size(0) / n, l = x.size(1), d = x.size(2);
  const double alpha = 1.0 / std::sqrt(double(n));
  Tensor out, xp;
  {
    NoGradGuard no_grad;
    // Instance-major rows: xp[i] = every row of instance i as one (B·L, d) matrix. A copy of x unless
    // B == 1 or N == 1 (then the permuted view is already contiguous and nothing is copied).
    xp = x.view({b, n, l, d}).permute({1, 0, 2, 3}).contiguous().view({n, b * l, d});
    out = empty({b, l, d}, x.dtype(), x.device());
    Tensor out2 = out.view({b * l, d});
    // Measured (f32, 1 thread, N=5 B=8 L=70 d=256): this 3.0 ms; one batched matmul to (N, B·L, d)
    // + sum over N 3.3 ms; no copy, matmul_out on the strided x[:, i] (N·B GEMMs of L rows) 4.1 ms.
    for (int64_t i = 0; i < n; ++i) {
      ops::matmul_out(xp.select(0, i), keys.select(0, i), out2, /*trans_a=*/false, /*trans_b=*/true, alpha,
                      i == 0 ? 0.0 : 1.0);
    }
  }
  if (needs_grad({x, keys})) {
    const bool gx = x.requires_grad(), gk = keys.requires_grad();
    record(out, "multiplex_ortho", {x, keys},
           [w = gx ? keys.detach() : Tensor(), xp = gk ? xp : Tensor(), gx, gk, alpha, n, b, l, d,
            x_shape = x.shape()](const Tensor& g) {
             // forward: out = α Σ_i xp_i @ W_iᵀ, xp_i: (B·L, d)
             // g is shared by every instance: a stride-0 batch of N, no copy.
             Tensor gexp = g.reshape({1, b * l, d}).expand({n, b * l, d});
             Tensor dx, dk;
             if (gx) {
               Tensor gxp = empty({n, b * l, d}, g.dtype(), g.device());
               ops::matmul_out(gexp, w, gxp, false, false, alpha, 0.0);  // ∂/∂xp_i = α g @ W_i
               dx = gxp.view({n, b, l, d}).permute({1, 0, 2, 3}).contiguous().view(x_shape);
             }
             if (gk) {
               dk = empty({n, d, d}, g.dtype(), g.device());
               ops::matmul_out(gexp, xp, dk, /*trans_a=*/true, false, alpha, 0.0);  // ∂/∂W_i = α gᵀ @ xp_i
             }
             return std::vector<Tensor>{dx, dk};
           });
  }
  return out;
}

}  // namespace

Multiplexer::Multiplexer(const MuxOptions& opts, Generator* gen) : options(opts) {
  const int64_t n = opts.n, d = opts.dim;
  MUXNET_CHECK(n >= 1, "Multiplexer: n (instances) must be >= 1, got ", n);
  MUXNET_CHECK(d >= 1, "Multiplexer: dim must be >= 1, got ", d);
  Tensor k;
  switch (opts.kind) {
    case MuxKind::GaussianHadamard:
      MUXNET_CHECK(opts.norm > 0 && std::isfinite(opts.norm),
                   "Multiplexer: gaussian_hadamard norm must be positive and finite, got ", opts.norm);
      k = gaussian_keys(n, d, opts.norm, gen);
      break;
    case MuxKind::BinaryHadamard:
      MUXNET_CHECK(n <= d, "Multiplexer: binary_hadamard needs n <= dim (one block of coordinates per instance), got n=",
                   n, " dim=", d);
      MUXNET_CHECK(opts.epsilon >= 0 && opts.epsilon <= 1,
                   "Multiplexer: binary_hadamard epsilon must be in [0, 1], got ", opts.epsilon);
      k = binary_keys(n, d, opts.epsilon);
      break;
    case MuxKind::RandomOrtho:
      k = ortho_keys(n, d, gen);
      break;
  }
  k = k.to(DType::F32);
  keys = opts.learned ? register_parameter("instance_embedding", k) : register_buffer("instance_embedding", k);
}

Tensor Multiplexer::forward(const Tensor& x) const {
  const int64_t n = options.n, d = options.dim;
  MUXNET_CHECK(x.defined(), "Multiplexer: x is an undefined tensor");
  MUXNET_CHECK(x.ndim() == 3 && x.size(2) == d, "Multiplexer: expected x of shape (B*N, L, ", d, "), got ", x.shape());
  MUXNET_CHECK(x.size(0) % n == 0, "Multiplexer: x has ", x.size(0), " rows, not a multiple of N = ", n,
               " (rows b*N + i hold instance i of mixed sequence b)");
  MUXNET_CHECK(x.dtype() == keys.dtype(), "Multiplexer: x has dtype ", x.dtype(), " but instance_embedding has ",
               keys.dtype(), " (convert the module with to())");
  MUXNET_CHECK(x.device() == keys.device(), "Multiplexer: x is on ", x.device(), " but instance_embedding is on ",
               keys.device());
  return options.kind == MuxKind::RandomOrtho ? mix_ortho(x, keys, n) : mix_hadamard(x, keys, n);
}

}  // namespace muxnet::mux
