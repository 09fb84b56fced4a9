// test_mux_demux.cpp — the demultiplexers and the retrieval head (mux/demultiplexer.h).
//
// Covers: kind names; parameter names (the reference's state_dict keys) and initialisation; output
// shapes for N in {1, 2, 5}, both kinds, both levels and the retrieval head (forward and forward_all);
// every variant against a naive reference written here in double, which builds the concatenation
// [h_i ; h_t] explicitly and applies the weights with plain loops (the library computes the factored
// W1a h_i + W1b h_t instead), in f64 and f32 and on non-contiguous h; forward_all at instance k equals
// forward with k; a gradient check in f64 through every variant (h and every parameter, eval mode);
// a hand-computed index sequence demux; and the error messages.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "mux/demultiplexer.h"
#include "tensor/grad_mode.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::mux;
using muxnet::test::random_tensor;
using Tensors = std::vector<Tensor>;
using Vec = std::vector<double>;

namespace {

// ---------------------------------------------------------------- naive reference (double, loops)

std::vector<std::string> names(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

Tensor param(const nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return Tensor();
}

// Overwrites a parameter's values in place (no autograd record), keeping its dtype.
void set_values(const Tensor& p, const Vec& values) {
  p.detach().copy_(from_vector<double>(values, p.shape()).to(p.dtype()));
}

// A module's parameters as f64 host arrays.
struct Params {
  std::map<std::string, std::pair<Vec, Shape>> p;
  explicit Params(const nn::Module& m) {
    for (auto& [n, t] : m.named_parameters()) p[n] = {t.to_vector<double>(), t.shape()};
  }
  // y = W x + b with W = values of `w` (out, in) starting at element `w_at`, b likewise.
  Vec affine(const std::string& w, const std::string& b, const Vec& x, int64_t w_at = 0, int64_t b_at = 0) const {
    const Vec& wv = p.at(w).first;
    const Vec& bv = p.at(b).first;
    const int64_t in = int64_t(x.size()), out = p.at(b).second.back();
    Vec y(size_t(out), 0.0);
    for (int64_t o = 0; o < out; ++o) {
      double s = bv[size_t(b_at + o)];
      for (int64_t j = 0; j < in; ++j) s += wv[size_t(w_at + o * in + j)] * x[size_t(j)];
      y[size_t(o)] = s;
    }
    return y;
  }
  Vec linear(const std::string& layer, const Vec& x) const { return affine(layer + ".weight", layer + ".bias", x); }
  // instance i's W_i x + b_i
  Vec instance_linear(int64_t i, const Vec& x) const {
    const int64_t d = int64_t(x.size());
    return affine("instance_weight", "instance_bias", x, i * d * d, i * d);
  }
  // LN over x, then the affine rows of `w`/`b` starting at element `at` (none when w is "").
  Vec layer_norm(const Vec& x, const std::string& w = "", const std::string& b = "", int64_t at = 0) const {
    const double n = double(x.size());
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= n;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= n;
    Vec y(x.size());
    for (size_t j = 0; j < x.size(); ++j) {
      y[j] = (x[j] - mean) / std::sqrt(var + 1e-5);
      if (!w.empty()) y[j] = y[j] * p.at(w).first[size_t(at) + j] + p.at(b).first[size_t(at) + j];
    }
    return y;
  }
  // LN_i(GELU(W_i x + b_i))
  Vec instance_mlp(int64_t i, const Vec& x) const {
    return layer_norm(gelu(instance_linear(i, x)), "instance_norm_weight", "instance_norm_bias", i * int64_t(x.size()));
  }
  static Vec gelu(Vec x) {
    for (double& v : x) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return x;
  }
};

Vec concat(const Vec& a, const Vec& b) {
  Vec out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// h (B, L', d) as host rows.
struct Hidden {
  Vec v;
  int64_t B, L, d;
  explicit Hidden(const Tensor& h) : v(h.to_vector<double>()), B(h.size(0)), L(h.size(1)), d(h.size(2)) {}
  Vec row(int64_t b, int64_t t) const {
    return Vec(v.begin() + (b * L + t) * d, v.begin() + (b * L + t + 1) * d);
  }
};

// The reference demultiplexer, straight from the formulas of demultiplexer.h.
Tensor ref_demux(const Demultiplexer& m, const Tensor& h) {
  const Params P(m);
  const Hidden H(h);
  const int64_t N = m.options.n, C = m.options.num_classes;
  Vec out;
  Shape shape;
  if (m.options.kind == DemuxKind::Index) {
    if (!m.options.token_level) {
      for (int64_t b = 0; b < H.B; ++b)
        for (int64_t i = 0; i < N; ++i) {
          Vec z = P.layer_norm(Params::gelu(P.linear("dense_in", concat(H.row(b, i), H.row(b, N)))), "norm.weight",
                               "norm.bias");
          Vec y = P.linear("out_proj", Params::gelu(P.linear("dense", z)));
          out.insert(out.end(), y.begin(), y.end());
        }
      shape = {H.B * N, C};
    } else {
      for (int64_t b = 0; b < H.B; ++b)
        for (int64_t i = 0; i < N; ++i)
          for (int64_t t = N + 1; t < H.L; ++t) {
            Vec z = P.layer_norm(Params::gelu(P.linear("dense_in", concat(H.row(b, i), H.row(b, t)))), "norm.weight",
                                 "norm.bias");
            Vec y = P.linear("out_proj", z);
            out.insert(out.end(), y.begin(), y.end());
          }
      shape = {H.B * N, H.L - N - 1, C};
    }
  } else {
    if (!m.options.token_level) {
      for (int64_t b = 0; b < H.B; ++b)
        for (int64_t i = 0; i < N; ++i) {
          Vec z = P.instance_mlp(i, H.row(b, 0));
          Vec y = P.linear("out_proj", P.layer_norm(Params::gelu(P.linear("dense", z)), "norm.weight", "norm.bias"));
          out.insert(out.end(), y.begin(), y.end());
        }
      shape = {H.B * N, C};
    } else {
      for (int64_t b = 0; b < H.B; ++b)
        for (int64_t i = 0; i < N; ++i)
          for (int64_t t = 0; t < H.L; ++t) {
            Vec y = P.linear("out_proj", P.instance_mlp(i, H.row(b, t)));
            out.insert(out.end(), y.begin(), y.end());
          }
      shape = {H.B * N, H.L, C};
    }
  }
  return from_vector<double>(out, shape);
}

// The reference retrieval head at instance k[b][t] for every (b, t) -> (B, L', V).
Tensor ref_retrieval(const RetrievalHead& m, const Tensor& h, const std::vector<int64_t>& k) {
  const Params P(m);
  const Hidden H(h);
  Vec out;
  for (int64_t b = 0; b < H.B; ++b)
    for (int64_t t = 0; t < H.L; ++t) {
      const int64_t q = k[size_t(b * H.L + t)];
      Vec z = m.kind == DemuxKind::Index
                  ? P.layer_norm(Params::gelu(P.linear("dense_in", concat(H.row(b, q), H.row(b, t)))), "norm.weight",
                                 "norm.bias")
                  : P.layer_norm(Params::gelu(P.linear("dense", P.instance_mlp(q, H.row(b, t)))), "norm.weight",
                                 "norm.bias");
      Vec y = P.linear("decoder", z);
      out.insert(out.end(), y.begin(), y.end());
    }
  return from_vector<double>(out, {H.B, H.L, m.vocab});
}

// Seeded queries in [0, n) of shape (B, L'), row-major.
std::vector<int64_t> random_queries(int64_t B, int64_t L, int64_t n, uint64_t seed) {
  Generator gen(seed);
  return randint(0, n, {B, L}, DType::I64, &gen).to_vector<int64_t>();
}

DemuxOptions opts(DemuxKind kind, int64_t n, int64_t d, int64_t c, bool token) {
  DemuxOptions o;
  o.kind = kind;
  o.n = n;
  o.dim = d;
  o.num_classes = c;
  o.token_level = token;
  return o;
}

// Gives every parameter non-default values (the LayerNorms start at ones/zeros, which would leave
// their affine terms untested by a reference comparison).
void randomise(nn::Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  for (auto& [n, t] : m.named_parameters()) t.detach().copy_(random_tensor(t.shape(), t.dtype(), seed++, -1.0, 1.0));
}

const DemuxKind kKinds[] = {DemuxKind::Index, DemuxKind::Mlp};

}  // namespace

// ---------------------------------------------------------------- names, construction

TEST_CASE("demux kind names parse and print", "[mux][mux-demux]") {
  CHECK(parse_demux_kind("index") == DemuxKind::Index);
  CHECK(parse_demux_kind("mlp") == DemuxKind::Mlp);
  CHECK(std::string(demux_kind_name(DemuxKind::Index)) == "index");
  CHECK(std::string(demux_kind_name(DemuxKind::Mlp)) == "mlp");
  REQUIRE_THROWS_WITH(parse_demux_kind("prefix"), "demux: unknown kind 'prefix' (expected index or mlp)");
}

TEST_CASE("demultiplexer and retrieval head parameter names and shapes", "[mux][mux-demux]") {
  const int64_t N = 3, d = 4, C = 5, V = 7;
  using S = std::vector<std::string>;
  Demultiplexer is(opts(DemuxKind::Index, N, d, C, false));
  CHECK(names(is) == S{"dense_in.weight", "dense_in.bias", "norm.weight", "norm.bias", "dense.weight", "dense.bias",
                       "out_proj.weight", "out_proj.bias"});
  CHECK(param(is, "dense_in.weight").shape() == Shape{d, 2 * d});
  CHECK(param(is, "out_proj.weight").shape() == Shape{C, d});
  Demultiplexer it(opts(DemuxKind::Index, N, d, C, true));
  CHECK(names(it) == S{"dense_in.weight", "dense_in.bias", "norm.weight", "norm.bias", "out_proj.weight",
                       "out_proj.bias"});
  Demultiplexer ms(opts(DemuxKind::Mlp, N, d, C, false));
  CHECK(names(ms) == S{"instance_weight", "instance_bias", "instance_norm_weight", "instance_norm_bias",
                       "dense.weight", "dense.bias", "norm.weight", "norm.bias", "out_proj.weight", "out_proj.bias"});
  CHECK(param(ms, "instance_weight").shape() == Shape{N, d, d});
  CHECK(param(ms, "instance_bias").shape() == Shape{N, d});
  CHECK(param(ms, "instance_norm_weight").shape() == Shape{N, d});
  Demultiplexer mt(opts(DemuxKind::Mlp, N, d, C, true));
  CHECK(names(mt) == S{"instance_weight", "instance_bias", "instance_norm_weight", "instance_norm_bias",
                       "out_proj.weight", "out_proj.bias"});
  RetrievalHead ri(DemuxKind::Index, N, d, V);
  CHECK(names(ri) == S{"dense_in.weight", "dense_in.bias", "norm.weight", "norm.bias", "decoder.weight",
                       "decoder.bias"});
  CHECK(param(ri, "decoder.weight").shape() == Shape{V, d});
  RetrievalHead rm(DemuxKind::Mlp, N, d, V);
  CHECK(names(rm) == S{"instance_weight", "instance_bias", "instance_norm_weight", "instance_norm_bias",
                       "dense.weight", "dense.bias", "norm.weight", "norm.bias", "decoder.weight", "decoder.bias"});
}

TEST_CASE("demultiplexer initialisation is seeded and PyTorch-like", "[mux][mux-demux]") {
  const int64_t N = 4, d = 16;
  Generator g1(7), g2(7);
  Demultiplexer a(opts(DemuxKind::Mlp, N, d, 3, false), &g1), b(opts(DemuxKind::Mlp, N, d, 3, false), &g2);
  for (auto& [n, t] : a.named_parameters()) CHECK(allclose(t, param(b, n), 0, 0));
  const double bound = 1.0 / std::sqrt(double(d));
  for (const char* n : {"instance_weight", "instance_bias"}) {
    Vec v = param(a, n).to_vector<double>();
    double lo = 0, hi = 0;
    for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    INFO(n << " min " << lo << " max " << hi);
    CHECK(hi <= bound);
    CHECK(lo >= -bound);
    CHECK(hi > 0.8 * bound);  // (N·d·d or N·d draws reach near the bound)
    CHECK(lo < -0.8 * bound);
  }
  CHECK(allclose(param(a, "instance_norm_weight"), ones({N, d}), 0, 0));
  CHECK(allclose(param(a, "instance_norm_bias"), zeros({N, d}), 0, 0));
  // The per-instance weights differ between instances.
  CHECK_FALSE(allclose(param(a, "instance_weight").select(0, 0), param(a, "instance_weight").select(0, 1)));
}

// ---------------------------------------------------------------- shapes

TEST_CASE("demultiplexer and retrieval head output shapes for N in {1, 2, 5}", "[mux][mux-demux]") {
  const int64_t B = 2, L = 4, d = 6, C = 3, V = 9;
  for (int64_t N : {1, 2, 5}) {
    const int64_t Lp = L + N + 1;  // index: the prefix p_0 .. p_{N-1}, CLS
    Tensor h = random_tensor({B, Lp, d}, DType::F32, 100 + uint64_t(N));
    INFO("N = " << N);
    CHECK(Demultiplexer(opts(DemuxKind::Index, N, d, C, false)).forward(h).shape() == Shape{B * N, C});
    CHECK(Demultiplexer(opts(DemuxKind::Index, N, d, C, true)).forward(h).shape() == Shape{B * N, L, C});
    Tensor hm = random_tensor({B, L, d}, DType::F32, 200 + uint64_t(N));
    CHECK(Demultiplexer(opts(DemuxKind::Mlp, N, d, C, false)).forward(hm).shape() == Shape{B * N, C});
    CHECK(Demultiplexer(opts(DemuxKind::Mlp, N, d, C, true)).forward(hm).shape() == Shape{B * N, L, C});
    for (DemuxKind kind : kKinds) {
      RetrievalHead r(kind, N, d, V);
      Tensor k = from_vector<int64_t>(random_queries(B, Lp, N, 5), {B, Lp});
      CHECK(r.forward(h, k).shape() == Shape{B, Lp, V});
      CHECK(r.forward_all(h).shape() == Shape{B, N, Lp, V});
    }
  }
  // Index token level with only the prefix: no token positions, an empty result.
  Tensor h = random_tensor({B, 3, d}, DType::F32, 9);
  CHECK(Demultiplexer(opts(DemuxKind::Index, 2, d, C, true)).forward(h).shape() == Shape{B * 2, 0, C});
}

// ---------------------------------------------------------------- against the naive reference

TEST_CASE("demultiplexer matches the naive concat reference, every variant", "[mux][mux-demux]") {
  const int64_t B = 2, L = 5, d = 4, C = 3;
  for (DType dt : {DType::F64, DType::F32})
    for (DemuxKind kind : kKinds)
      for (bool token : {false, true})
        for (int64_t N : {1, 2, 5}) {
          Demultiplexer m(opts(kind, N, d, C, token));
          m.to(dt);
          randomise(m, 40 + uint64_t(N));
          const int64_t Lp = kind == DemuxKind::Index ? L + N + 1 : L;
          Tensor h = random_tensor({B, Lp, d}, dt, 300 + uint64_t(N));
          INFO(demux_kind_name(kind) << (token ? " token" : " sequence") << " N=" << N << " " << dt);
          Tensor want = ref_demux(m, h);
          CHECK_CLOSE_DT(m.forward(h), want);
          // Non-contiguous h: (B, L', d) stored as (L', B, d), and every second element of a wider row.
          CHECK_CLOSE_DT(m.forward(test::transposed_layout(h, 0, 1)), want);
          CHECK_CLOSE_DT(m.forward(test::strided_layout(h)), want);
        }
}

TEST_CASE("retrieval head matches the naive concat reference, forward and forward_all", "[mux][mux-demux]") {
  const int64_t B = 2, L = 5, d = 4, V = 6;
  for (DType dt : {DType::F64, DType::F32})
    for (DemuxKind kind : kKinds)
      for (int64_t N : {1, 2, 5}) {
        RetrievalHead r(kind, N, d, V);
        r.to(dt);
        randomise(r, 60 + uint64_t(N));
        const int64_t Lp = L + N + 1;
        Tensor h = random_tensor({B, Lp, d}, dt, 400 + uint64_t(N));
        std::vector<int64_t> kv = random_queries(B, Lp, N, 11 + uint64_t(N));
        Tensor k = from_vector<int64_t>(kv, {B, Lp});
        INFO(demux_kind_name(kind) << " N=" << N << " " << dt);
        Tensor want = ref_retrieval(r, h, kv);
        CHECK_CLOSE_DT(r.forward(h, k), want);
        CHECK_CLOSE_DT(r.forward(test::transposed_layout(h, 0, 1), k), want);
        CHECK_CLOSE_DT(r.forward(h, k.to(DType::I32)), want);
        // forward_all: instance i at every position is the reference with k filled with i.
        Tensor all = r.forward_all(h);
        for (int64_t i = 0; i < N; ++i) {
          std::vector<int64_t> ki(size_t(B * Lp), i);
          CHECK_CLOSE_DT(all.select(1, i).contiguous(), ref_retrieval(r, h, ki));
        }
        CHECK_CLOSE_DT(r.forward_all(test::strided_layout(h)), all);
      }
}

TEST_CASE("retrieval forward_all at instance k equals forward(h, k)", "[mux][mux-demux]") {
  const int64_t B = 3, d = 8, V = 11;
  for (DemuxKind kind : kKinds)
    for (int64_t N : {1, 2, 5}) {
      const int64_t Lp = 6 + N + 1;
      RetrievalHead r(kind, N, d, V);
      r.to(DType::F64);
      randomise(r, 80 + uint64_t(N));
      r.eval();
      Tensor h = random_tensor({B, Lp, d}, DType::F64, 500 + uint64_t(N));
      std::vector<int64_t> kv = random_queries(B, Lp, N, 21 + uint64_t(N));
      Tensor got = r.forward(h, from_vector<int64_t>(kv, {B, Lp}));
      Tensor all = r.forward_all(h);  // (B, N, L', V)
      // Slice all at k: all[b, k[b, t], t, :]
      Vec sliced;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Lp; ++t) {
          Vec row = all.select(0, b).select(0, kv[size_t(b * Lp + t)]).select(0, t).to_vector<double>();
          sliced.insert(sliced.end(), row.begin(), row.end());
        }
      INFO(demux_kind_name(kind) << " N=" << N);
      CHECK_CLOSE_DT(got, from_vector<double>(sliced, {B, Lp, V}));
    }
}

TEST_CASE("mlp retrieval head with an instance nobody queries", "[mux][mux-demux]") {
  // The rows are grouped by instance: an instance without rows is skipped, and gets no gradient.
  const int64_t B = 2, Lp = 4, d = 4, V = 5, N = 3;
  RetrievalHead r(DemuxKind::Mlp, N, d, V);
  r.to(DType::F64);
  randomise(r, 90);
  Tensor h = random_tensor({B, Lp, d}, DType::F64, 91);
  std::vector<int64_t> kv = {0, 2, 2, 0, 2, 0, 0, 2};  // instance 1 never queried
  Tensor k = from_vector<int64_t>(kv, {B, Lp});
  CHECK_CLOSE_DT(r.forward(h, k), ref_retrieval(r, h, kv));
  r.zero_grad();
  sum(r.forward(h, k)).backward();
  Tensor gw = param(r, "instance_weight").grad();
  REQUIRE(gw.defined());
  CHECK(allclose(gw.select(0, 1), zeros({d, d}, DType::F64), 0, 0));
  CHECK_FALSE(allclose(gw.select(0, 0), zeros({d, d}, DType::F64), 0, 0));
  CHECK_FALSE(allclose(gw.select(0, 2), zeros({d, d}, DType::F64), 0, 0));
  // All rows on a single instance.
  std::vector<int64_t> one(size_t(B * Lp), 1);
  CHECK_CLOSE_DT(r.forward(h, from_vector<int64_t>(one, {B, Lp})), ref_retrieval(r, h, one));
}

TEST_CASE("demultiplexer and retrieval head train the same packed and unpacked", "[mux][mux-demux]") {
  // pack_parameters rebinds every parameter into one arena: the views taken in forward (narrow of
  // dense_in.weight, view of instance_weight) must keep working and send their gradients there.
  const int64_t B = 2, L = 3, d = 4, V = 5, N = 2, Lp = L + N + 1;
  Tensor h = random_tensor({B, Lp, d}, DType::F32, 150);
  Tensor k = from_vector<int64_t>(random_queries(B, Lp, N, 151), {B, Lp});
  Generator gt(153);
  Tensor target = randint(0, V, {B * Lp}, DType::I64, &gt);
  for (DemuxKind kind : kKinds) {
    Generator g1(3), g2(3);
    RetrievalHead plain(kind, N, d, V, &g1), packed(kind, N, d, V, &g2);
    packed.pack_parameters();
    for (RetrievalHead* r : {&plain, &packed})
      cross_entropy(r->forward(h, k).view({B * Lp, V}), target).backward();
    INFO(demux_kind_name(kind));
    for (auto& [n, p] : plain.named_parameters()) {
      INFO(n);
      REQUIRE(p.grad().defined());
      CHECK_CLOSE(param(packed, n).grad(), p.grad(), 1e-7, 1e-6);
    }
    CHECK(packed.grad_arena().numel() == packed.num_parameters());
    CHECK(sum(mul(packed.grad_arena(), packed.grad_arena())).item() > 0);
  }
  Generator g3(4), g4(4);
  Demultiplexer plain(opts(DemuxKind::Mlp, N, d, 3, true), &g3), packed(opts(DemuxKind::Mlp, N, d, 3, true), &g4);
  packed.pack_parameters();
  Tensor hm = random_tensor({B, L, d}, DType::F32, 152);
  for (Demultiplexer* m : {&plain, &packed}) sum(m->forward(hm)).backward();
  for (auto& [n, p] : plain.named_parameters()) CHECK_CLOSE(param(packed, n).grad(), p.grad(), 1e-7, 1e-6);
}

// ---------------------------------------------------------------- hand-computed

TEST_CASE("index sequence demux, hand-computed (d=2, N=2, C=2)", "[mux][mux-demux]") {
  Demultiplexer m(opts(DemuxKind::Index, 2, 2, 2, false));
  m.to(DType::F64);
  set_values(param(m, "dense_in.weight"), {1, 0, 0, 1,    // row 0: h_i[0] + h_N[1]
                                           0, 1, 1, 0});  // row 1: h_i[1] + h_N[0]
  set_values(param(m, "dense_in.bias"), {0.5, -0.5});
  set_values(param(m, "dense.weight"), {1, 0.5, 0, -1});
  set_values(param(m, "dense.bias"), {0.1, 0});
  set_values(param(m, "out_proj.weight"), {2, 1, 1, -1});
  set_values(param(m, "out_proj.bias"), {0.5, -0.5});
  // One mixed sequence: h_0 = (1, 0), h_1 = (0, 2) (the index slots), h_2 = (1, 1) (CLS).
  Tensor h = from_vector<double>({1, 0, 0, 2, 1, 1}, {1, 3, 2});
  // i = 0: u = W1 [1, 0, 1, 1] + b1 = (1 + 1 + 0.5, 0 + 1 - 0.5) = (2.5, 0.5)
  //        GELU(u) = (2.4844758366855597, 0.34573123063700656); LN of two values a > b is (s, -s) with
  //        s = δ / sqrt(δ² + 1e-5), δ = (a - b) / 2 = 1.0693723030242766, so z = (0.9999956277066449, -z0)
  //        W2 z + b2 = (z0 - z0/2 + 0.1, z0) = (0.5999978138533224, 0.9999956277066449)
  //        GELU -> (0.43544610567541125, 0.8413400094978222)
  //        Wo . + bo = (2·0.43544610567541125 + 0.8413400094978222 + 0.5,
  //                     0.43544610567541125 - 0.8413400094978222 - 0.5)
  // i = 1: u = W1 [0, 2, 1, 1] + b1 = (0 + 1 + 0.5, 2 + 1 - 0.5) = (1.5, 2.5)
  //        GELU(u) = (1.399789198096713, 2.4844758366855597); z = (-0.9999830015101165, 0.9999830015101165)
  //        W2 z + b2 = (-0.3999915007550583, -0.9999830015101165); GELU -> (-0.13782962668362694, -0.1586566701336819)
  Tensor want = from_vector<double>({2.2122322208486445, -0.905893903822411, 0.06568407649906421, -0.4791729565499451},
                                    {2, 2});
  CHECK_CLOSE(m.forward(h), want, 1e-12, 1e-12);
}

// ---------------------------------------------------------------- gradients

TEST_CASE("demultiplexer gradcheck in f64, every variant (h and all parameters)", "[mux][mux-demux][grad]") {
  const int64_t B = 2, L = 3, d = 4, C = 3, N = 2;
  for (DemuxKind kind : kKinds)
    for (bool token : {false, true}) {
      Demultiplexer m(opts(kind, N, d, C, token));
      m.to(DType::F64);
      randomise(m, 120);
      m.eval();
      const int64_t Lp = kind == DemuxKind::Index ? L + N + 1 : L;
      Tensor h = random_tensor({B, Lp, d}, DType::F64, 121);
      INFO(demux_kind_name(kind) << (token ? " token" : " sequence"));
      CHECK_GRADCHECK_MODULE(m, (Tensors{h}), [&](const Tensors& in) { return m.forward(in[0]); });
      // A non-contiguous h keeps its layout through the check.
      CHECK_GRADCHECK_MODULE(m, (Tensors{test::transposed_layout(h, 0, 1)}),
                             [&](const Tensors& in) { return m.forward(in[0]); });
    }
}

TEST_CASE("retrieval head gradcheck in f64, forward and forward_all (h and all parameters)",
          "[mux][mux-demux][grad]") {
  const int64_t B = 2, L = 3, d = 4, V = 5, N = 3;
  const int64_t Lp = L + N + 1;
  for (DemuxKind kind : kKinds) {
    RetrievalHead r(kind, N, d, V);
    r.to(DType::F64);
    randomise(r, 140);
    r.eval();
    Tensor h = random_tensor({B, Lp, d}, DType::F64, 141);
    Tensor k = from_vector<int64_t>(random_queries(B, Lp, N, 142), {B, Lp});
    INFO(demux_kind_name(kind));
    CHECK_GRADCHECK_MODULE(r, (Tensors{h}), [&](const Tensors& in) { return r.forward(in[0], k); });
    CHECK_GRADCHECK_MODULE(r, (Tensors{h}), [&](const Tensors& in) { return r.forward_all(in[0]); });
  }
}

// ---------------------------------------------------------------- errors

TEST_CASE("demultiplexer and retrieval head error messages", "[mux][mux-demux]") {
  REQUIRE_THROWS_WITH(Demultiplexer(opts(DemuxKind::Index, 0, 4, 2, false)), "Demultiplexer: n must be >= 1, got 0");
  REQUIRE_THROWS_WITH(Demultiplexer(opts(DemuxKind::Mlp, 2, 0, 2, false)),
                      "Demultiplexer: dim must be positive, got 0");
  REQUIRE_THROWS_WITH(Demultiplexer(opts(DemuxKind::Mlp, 2, 4, 0, false)),
                      "Demultiplexer: num_classes must be positive, got 0");
  REQUIRE_THROWS_WITH(RetrievalHead(DemuxKind::Index, 2, 4, 0), "RetrievalHead: vocab must be positive, got 0");

  Demultiplexer di(opts(DemuxKind::Index, 2, 4, 3, true));
  Demultiplexer dm(opts(DemuxKind::Mlp, 2, 4, 3, false));
  // h not 3-d, d mismatch
  REQUIRE_THROWS_WITH(di.forward(zeros({2, 4})), "Demultiplexer: expected h of shape (B, L', 4), got (2, 4)");
  REQUIRE_THROWS_WITH(dm.forward(zeros({2, 5, 3})), "Demultiplexer: expected h of shape (B, L', 4), got (2, 5, 3)");
  // L' too short for the index prefix (N + 1 = 3)
  REQUIRE_THROWS_WITH(di.forward(zeros({2, 2, 4})),
                      "Demultiplexer: index demux needs L' >= N + 1 = 3 positions (the index prefix), got h of shape "
                      "(2, 2, 4)");
  REQUIRE_THROWS_WITH(dm.forward(zeros({2, 0, 4})),
                      "Demultiplexer: mlp sequence demux reads position 0 (CLS), got h of shape (2, 0, 4)");

  RetrievalHead ri(DemuxKind::Index, 2, 4, 5), rm(DemuxKind::Mlp, 2, 4, 5);
  Tensor h = zeros({2, 4, 4});
  Tensor k = zeros({2, 4}, DType::I64);
  REQUIRE_THROWS_WITH(ri.forward(zeros({2, 4, 4, 1}), k),
                      "RetrievalHead: expected h of shape (B, L', 4), got (2, 4, 4, 1)");
  REQUIRE_THROWS_WITH(rm.forward_all(zeros({2, 4, 6})), "RetrievalHead: expected h of shape (B, L', 4), got (2, 4, 6)");
  REQUIRE_THROWS_WITH(ri.forward(zeros({2, 2, 4}), zeros({2, 2}, DType::I64)),
                      "RetrievalHead: index demux needs L' >= N + 1 = 3 positions (the index prefix), got h of shape "
                      "(2, 2, 4)");
  REQUIRE_THROWS_WITH(ri.forward_all(zeros({2, 2, 4})),
                      "RetrievalHead: index demux needs L' >= N + 1 = 3 positions (the index prefix), got h of shape "
                      "(2, 2, 4)");
  // k: out of range, shape mismatch, dtype
  REQUIRE_THROWS_WITH(ri.forward(h, from_vector<int64_t>({0, 1, 0, 1, 1, 0, 2, 0}, {2, 4})),
                      "RetrievalHead: k must be in [0, 2), got 2 at (1, 2)");
  REQUIRE_THROWS_WITH(rm.forward(h, from_vector<int64_t>({0, -1, 0, 1, 1, 0, 1, 0}, {2, 4})),
                      "RetrievalHead: k must be in [0, 2), got -1 at (0, 1)");
  REQUIRE_THROWS_WITH(ri.forward(h, zeros({2, 3}, DType::I64)),
                      "RetrievalHead: expected k of shape (B, L') = (2, 4) to match h (2, 4, 4), got (2, 3)");
  REQUIRE_THROWS_WITH(rm.forward(h, zeros({8}, DType::I64)),
                      "RetrievalHead: expected k of shape (B, L') = (2, 4) to match h (2, 4, 4), got (8,)");
  REQUIRE_THROWS_WITH(ri.forward(h, zeros({2, 4})), "RetrievalHead: expected k of dtype i64 or i32, got f32");
}
