// test_transformer.cpp — MultiHeadSelfAttention, TransformerEncoderLayer and TransformerEncoder:
// torch's parameter names and shapes; forward values by hand and against a naive reference written
// here with explicit loops in double (projections, per-head softmax attention with a key padding mask,
// merge, out_proj, layer norm, GELU, residuals in post- and pre-LN order); the fused and separate
// projection layouts agreeing; padded keys not influencing unpadded outputs; f32 vs f64; gradchecks
// (input and every parameter) with a padding mask, in eval mode and with dropout masks from a generator
// re-seeded inside forward; error messages.
#include <cmath>
#include <string>

#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

std::vector<std::string> names(const std::vector<NamedTensor>& list) {
  std::vector<std::string> out;
  for (auto& [n, t] : list) out.push_back(n);
  return out;
}

// Overwrites every parameter with seeded values in [-1, 1): non-zero biases and non-trivial layer-norm
// affines, so the references check that each parameter is used where it belongs.
void randomize(Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  for (const Tensor& p : m.parameters()) p.copy_(test::random_tensor(p.shape(), p.dtype(), seed++, -1.0, 1.0));
}

// ---------------------------------------------------------------- naive references (double, row-major)

using Vec = std::vector<double>;

Vec values(const Tensor& t) { return t.to_vector<double>(); }

// x: (rows, in), W: (out, in), b: (out) or empty -> (rows, out)
Vec ref_linear(const Vec& x, int64_t rows, int64_t in, const Vec& W, const Vec& b, int64_t out) {
  Vec y(size_t(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[size_t(o)];
      for (int64_t i = 0; i < in; ++i) s += x[size_t(r * in + i)] * W[size_t(o * in + i)];
      y[size_t(r * out + o)] = s;
    }
  }
  return y;
}

struct RefAttention {
  Vec Wq, bq, Wk, bk, Wv, bv, Wo, bo;  // (d, d) weights as nn.Linear, (d) biases
};

RefAttention ref_params(const MultiHeadSelfAttention& m) {
  RefAttention p;
  const size_t d = size_t(m.d_model);
  if (m.fused_qkv) {
    // in_proj_weight rows: q, then k, then v.
    Vec w = values(m.in_proj_weight), b = values(m.in_proj_bias);
    p.Wq.assign(w.begin(), w.begin() + long(d * d));
    p.Wk.assign(w.begin() + long(d * d), w.begin() + long(2 * d * d));
    p.Wv.assign(w.begin() + long(2 * d * d), w.end());
    p.bq.assign(b.begin(), b.begin() + long(d));
    p.bk.assign(b.begin() + long(d), b.begin() + long(2 * d));
    p.bv.assign(b.begin() + long(2 * d), b.end());
  } else {
    p.Wq = values(m.q_proj->weight), p.bq = values(m.q_proj->bias);
    p.Wk = values(m.k_proj->weight), p.bk = values(m.k_proj->bias);
    p.Wv = values(m.v_proj->weight), p.bv = values(m.v_proj->bias);
  }
  p.Wo = values(m.out_proj->weight), p.bo = values(m.out_proj->bias);
  return p;
}

// x: (B, T, d); mask: B*T flags (nonzero = padded key) or empty -> (B, T, d)
Vec ref_attention(const Vec& x, int64_t B, int64_t T, int64_t d, int64_t H, const RefAttention& p,
                  const std::vector<int64_t>& mask) {
  const int64_t dh = d / H;
  Vec q = ref_linear(x, B * T, d, p.Wq, p.bq, d), k = ref_linear(x, B * T, d, p.Wk, p.bk, d),
      v = ref_linear(x, B * T, d, p.Wv, p.bv, d);
  Vec ctx(size_t(B * T * d), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        Vec s(size_t(T), 0.0);
        double mx = -INFINITY;
        for (int64_t j = 0; j < T; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < dh; ++e) dot += q[size_t((b * T + i) * d + h * dh + e)] * k[size_t((b * T + j) * d + h * dh + e)];
          s[size_t(j)] = (!mask.empty() && mask[size_t(b * T + j)]) ? -INFINITY : dot / std::sqrt(double(dh));
          mx = std::max(mx, s[size_t(j)]);
        }
        double z = 0;
        for (int64_t j = 0; j < T; ++j) z += s[size_t(j)] == -INFINITY ? 0.0 : std::exp(s[size_t(j)] - mx);
        for (int64_t j = 0; j < T; ++j) {
          double pj = s[size_t(j)] == -INFINITY ? 0.0 : std::exp(s[size_t(j)] - mx) / z;
          for (int64_t e = 0; e < dh; ++e) ctx[size_t((b * T + i) * d + h * dh + e)] += pj * v[size_t((b * T + j) * d + h * dh + e)];
        }
      }
    }
  }
  return ref_linear(ctx, B * T, d, p.Wo, p.bo, d);
}

// Normalises each row of x (rows, d) with the biased variance, then w * xhat + b.
Vec ref_layer_norm(const Vec& x, int64_t rows, int64_t d, const Vec& w, const Vec& b, double eps) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += x[size_t(r * d + i)];
    mean /= double(d);
    for (int64_t i = 0; i < d; ++i) var += (x[size_t(r * d + i)] - mean) * (x[size_t(r * d + i)] - mean);
    var /= double(d);
    for (int64_t i = 0; i < d; ++i) {
      y[size_t(r * d + i)] = (x[size_t(r * d + i)] - mean) / std::sqrt(var + eps) * w[size_t(i)] + b[size_t(i)];
    }
  }
  return y;
}

Vec ref_add(Vec a, const Vec& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

// One encoder layer in eval mode (no dropout), GELU activation.
Vec ref_layer(const Vec& x, int64_t B, int64_t T, const TransformerEncoderLayer& l, const std::vector<int64_t>& mask) {
  const int64_t d = l.options.d_model, ff = l.options.dim_feedforward, rows = B * T;
  const double eps = l.options.layer_norm_eps;
  RefAttention pa = ref_params(*l.self_attn);
  auto sa = [&](const Vec& in) { return ref_attention(in, B, T, d, l.options.heads, pa, mask); };
  auto ffn = [&](const Vec& in) {
    Vec h = ref_linear(in, rows, d, values(l.linear1->weight), values(l.linear1->bias), ff);
    for (double& v : h) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return ref_linear(h, rows, ff, values(l.linear2->weight), values(l.linear2->bias), d);
  };
  auto n1 = [&](const Vec& in) { return ref_layer_norm(in, rows, d, values(l.norm1->weight), values(l.norm1->bias), eps); };
  auto n2 = [&](const Vec& in) { return ref_layer_norm(in, rows, d, values(l.norm2->weight), values(l.norm2->bias), eps); };
  if (l.options.norm_first) {
    Vec h = ref_add(x, sa(n1(x)));
    return ref_add(h, ffn(n2(h)));
  }
  Vec h = n1(ref_add(x, sa(x)));
  return n2(ref_add(h, ffn(h)));
}

Tensor as_tensor(const Vec& v, const Shape& shape) { return from_vector<double>(v, shape); }

// Mask (B=2, T=3): the last key of sequence 1 is padded, sequence 0 is not.
const std::vector<int64_t> kMask23{0, 0, 0, 0, 0, 1};
Tensor mask23() { return from_vector<int64_t>(kMask23, {2, 3}); }

TransformerEncoderLayerOptions tiny_options(bool norm_first, double dropout) {
  TransformerEncoderLayerOptions o;
  o.d_model = 4;
  o.heads = 2;
  o.dim_feedforward = 6;
  o.dropout = dropout;
  o.norm_first = norm_first;
  return o;
}

}  // namespace

TEST_CASE("attention and encoder parameters have torch's names and shapes", "[nn][nn-transformer]") {
  Generator gen(1);
  MultiHeadSelfAttention fused(8, 2, 0.0, true, true, &gen);
  CHECK(names(fused.named_parameters()) ==
        std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  CHECK(fused.in_proj_weight.shape() == Shape{24, 8});
  CHECK(fused.in_proj_bias.shape() == Shape{24});
  CHECK(fused.out_proj->weight.shape() == Shape{8, 8});
  CHECK(fused.head_dim == 4);

  MultiHeadSelfAttention separate(8, 2, 0.0, false, true, &gen);
  CHECK(names(separate.named_parameters()) ==
        std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight",
                                 "v_proj.bias", "out_proj.weight", "out_proj.bias"});
  MultiHeadSelfAttention no_bias(8, 2, 0.0, true, false, &gen);
  CHECK(names(no_bias.named_parameters()) == std::vector<std::string>{"in_proj_weight", "out_proj.weight"});

  TransformerEncoderLayerOptions o;
  o.d_model = 8;
  o.heads = 2;
  o.dim_feedforward = 16;
  TransformerEncoder enc(o, 2, &gen, /*final_norm=*/true);
  // torch.nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2,
  // norm=nn.LayerNorm(8)).state_dict().keys(), in order:
  std::vector<std::string> want;
  for (std::string l : {"layers.0.", "layers.1."}) {
    for (std::string n : {"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                          "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                          "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}) {
      want.push_back(l + n);
    }
  }
  want.push_back("norm.weight");
  want.push_back("norm.bias");
  CHECK(names(enc.named_parameters()) == want);
  CHECK(enc.named_buffers().empty());
  CHECK(enc.num_layers() == 2);
  CHECK(enc.layer(1).linear1->weight.shape() == Shape{16, 8});
  CHECK(enc.layer(1).linear2->weight.shape() == Shape{8, 16});
  CHECK(enc.num_parameters() == 2 * (24 * 8 + 24 + 64 + 8 + 128 + 16 + 128 + 8 + 4 * 8) + 16);
  TransformerEncoder plain(o, 1, &gen);
  CHECK(plain.norm == nullptr);
  CHECK(names(plain.named_parameters()).back() == "layers.0.norm2.bias");
}

TEST_CASE("attention initialisation follows torch.nn.MultiheadAttention", "[nn][nn-transformer]") {
  Generator g1(3), g2(3);
  MultiHeadSelfAttention a(16, 4, 0.0, true, true, &g1), b(16, 4, 0.0, true, true, &g2);
  CHECK(allclose(a.in_proj_weight, b.in_proj_weight, 0, 0));  // seeded
  // xavier_uniform over (48, 16): bound sqrt(6 / (16 + 48)); the biases start at zero.
  const double bound = std::sqrt(6.0 / 64.0);
  double max_abs = ops::max(ops::abs(a.in_proj_weight)).item();
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.9 * bound);
  CHECK(ops::max(ops::abs(a.in_proj_bias)).item() == 0);
  CHECK(ops::max(ops::abs(a.out_proj->bias)).item() == 0);
  CHECK(ops::max(ops::abs(a.out_proj->weight)).item() <= 0.25);  // nn.Linear: 1 / sqrt(16)
}

TEST_CASE("self-attention forward by hand", "[nn][nn-transformer]") {
  // d = 2, two heads of dh = 1, identity projections and zero biases: head h attends with scalar
  // queries/keys/values x[:, h]. x = [[1, 0], [0, 1]] (B = 1, T = 2), scale 1 / sqrt(1).
  //   head 0: token 0 scores (1, 0) -> weights (e, 1) / (e + 1) -> e / (e + 1); token 1 scores (0, 0) -> 1/2.
  //   head 1: token 0 -> 1/2; token 1 -> e / (e + 1).
  MultiHeadSelfAttention m(2, 2, 0.0, false);
  {
    NoGradGuard no_grad;
    for (auto* l : {m.q_proj.get(), m.k_proj.get(), m.v_proj.get(), m.out_proj.get()}) {
      l->weight.copy_(from_vector<float>({1, 0, 0, 1}, {2, 2}));
      l->bias.zero_();
    }
  }
  Tensor x = from_vector<float>({1, 0, 0, 1}, {1, 2, 2});
  const double s = std::exp(1.0) / (std::exp(1.0) + 1.0);  // 0.7310585786
  CHECK_CLOSE(m.forward(x), from_vector<double>({s, 0.5, 0.5, s}, {1, 2, 2}), 1e-6, 1e-6);
  // Padding key 1 sends all the weight to key 0, whose values are (1, 0).
  Tensor mask = from_vector<int64_t>({0, 1}, {1, 2});
  CHECK_CLOSE(m.forward(x, mask), from_vector<double>({1, 0, 1, 0}, {1, 2, 2}), 1e-6, 1e-6);
}

TEST_CASE("self-attention matches the naive reference (fused and separate, f64 and f32)", "[nn][nn-transformer]") {
  const int64_t B = 2, T = 3, d = 4, H = 2;
  for (bool fused : {true, false}) {
    for (DType dt : {DType::F64, DType::F32}) {
      INFO("fused " << fused << ", dtype " << dt);
      Generator gen(10);
      MultiHeadSelfAttention m(d, H, 0.0, fused, true, &gen);
      m.to(dt);
      randomize(m, 100);
      Tensor x = test::random_tensor({B, T, d}, dt, 7);
      RefAttention p = ref_params(m);
      Tensor want = as_tensor(ref_attention(values(x), B, T, d, H, p, {}), {B, T, d});
      Tensor want_masked = as_tensor(ref_attention(values(x), B, T, d, H, p, kMask23), {B, T, d});
      const double tol = dt == DType::F64 ? 1e-12 : 2e-6;
      CHECK_CLOSE(m.forward(x), want, tol, tol);
      CHECK_CLOSE(m.forward(x, mask23()), want_masked, tol, tol);
      CHECK_CLOSE(m.forward(x, mask23().to(DType::I32)), want_masked, tol, tol);  // any mask dtype
      // A non-contiguous input gives the same result.
      CHECK_CLOSE(m.forward(test::transposed_layout(x, 0, 1), mask23()), want_masked, tol, tol);
      CHECK_FALSE(allclose(want, want_masked, 1e-3, 1e-3));  // the mask matters in sequence 1
    }
  }
}

TEST_CASE("fused and separate projections compute the same attention", "[nn][nn-transformer]") {
  Generator gen(11);
  MultiHeadSelfAttention fused(6, 3, 0.0, true, true, &gen), separate(6, 3, 0.0, false, true, &gen);
  randomize(fused, 5);
  {
    NoGradGuard no_grad;
    Linear* projs[3] = {separate.q_proj.get(), separate.k_proj.get(), separate.v_proj.get()};
    for (int i = 0; i < 3; ++i) {
      projs[i]->weight.copy_(fused.in_proj_weight.narrow(0, 6 * i, 6));
      projs[i]->bias.copy_(fused.in_proj_bias.narrow(0, 6 * i, 6));
    }
    separate.out_proj->weight.copy_(fused.out_proj->weight);
    separate.out_proj->bias.copy_(fused.out_proj->bias);
  }
  Tensor x = test::random_tensor({3, 5, 6}, DType::F32, 12);
  Tensor mask = from_vector<int64_t>({0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0}, {3, 5});
  CHECK_CLOSE(fused.forward(x, mask), separate.forward(x, mask), 1e-6, 1e-5);
}

TEST_CASE("encoder layers and a 2-layer encoder match the naive reference", "[nn][nn-transformer]") {
  const int64_t B = 2, T = 3, d = 4;
  Tensor x = test::random_tensor({B, T, d}, DType::F64, 21);
  for (bool norm_first : {false, true}) {
    INFO("norm_first " << norm_first);
    Generator gen(20);
    TransformerEncoderLayer layer(tiny_options(norm_first, 0.1), &gen);
    layer.to(DType::F64);
    randomize(layer, 300);
    layer.eval();
    Tensor want = as_tensor(ref_layer(values(x), B, T, layer, kMask23), {B, T, d});
    CHECK_CLOSE(layer.forward(x, mask23()), want, 1e-12, 1e-10);
    Tensor want_unmasked = as_tensor(ref_layer(values(x), B, T, layer, {}), {B, T, d});
    CHECK_CLOSE(layer.forward(x), want_unmasked, 1e-12, 1e-10);

    TransformerEncoder enc(tiny_options(norm_first, 0.1), 2, &gen, /*final_norm=*/true);
    enc.to(DType::F64);
    randomize(enc, 400);
    enc.eval();
    Vec h = ref_layer(ref_layer(values(x), B, T, enc.layer(0), kMask23), B, T, enc.layer(1), kMask23);
    Vec out = ref_layer_norm(h, B * T, d, values(enc.norm->weight), values(enc.norm->bias), 1e-5);
    CHECK_CLOSE(enc.forward(x, mask23()), as_tensor(out, {B, T, d}), 1e-12, 1e-10);
  }
}

TEST_CASE("the layer with the positional constructor and relu", "[nn][nn-transformer]") {
  Generator gen(22);
  TransformerEncoderLayer layer(4, 2, 6, 0.0, Activation::Relu, false, 1e-6, &gen);
  CHECK(layer.options.activation == Activation::Relu);
  CHECK(layer.norm1->eps == 1e-6);
  layer.to(DType::F64);
  randomize(layer, 50);
  // Post-LN reference with the ReLU feed-forward written out here (ref_layer uses GELU).
  Tensor x = test::random_tensor({1, 3, 4}, DType::F64, 23);
  Vec xv = values(x);
  RefAttention pa = ref_params(*layer.self_attn);
  Vec h = ref_layer_norm(ref_add(xv, ref_attention(xv, 1, 3, 4, 2, pa, {})), 3, 4, values(layer.norm1->weight),
                         values(layer.norm1->bias), 1e-6);
  Vec f = ref_linear(h, 3, 4, values(layer.linear1->weight), values(layer.linear1->bias), 6);
  for (double& v : f) v = std::max(v, 0.0);
  f = ref_linear(f, 3, 6, values(layer.linear2->weight), values(layer.linear2->bias), 4);
  Vec want = ref_layer_norm(ref_add(h, f), 3, 4, values(layer.norm2->weight), values(layer.norm2->bias), 1e-6);
  CHECK_CLOSE(layer.forward(x), as_tensor(want, {1, 3, 4}), 1e-12, 1e-10);
}

TEST_CASE("padded tokens do not affect the outputs at unpadded positions", "[nn][nn-transformer]") {
  Generator gen(30);
  TransformerEncoderLayerOptions o;
  o.d_model = 8;
  o.heads = 2;
  o.dim_feedforward = 16;
  TransformerEncoder enc(o, 2, &gen, true);
  enc.eval();
  const int64_t B = 2, T = 5;
  // Sequence 0 has 3 real tokens, sequence 1 has 5.
  Tensor mask = from_vector<int64_t>({0, 0, 0, 1, 1, 0, 0, 0, 0, 0}, {B, T});
  Tensor x = test::random_tensor({B, T, 8}, DType::F32, 31);
  Tensor x2 = x.clone();
  {
    NoGradGuard no_grad;
    x2.select(0, 0).narrow(0, 3, 2).copy_(test::random_tensor({2, 8}, DType::F32, 32, -5.0, 5.0));
  }
  Tensor y = enc.forward(x, mask), y2 = enc.forward(x2, mask);
  // Unpadded positions are bit-identical (the padded keys get exactly zero weight); the other
  // sequence is untouched; the padded positions themselves do change.
  CHECK(allclose(y.select(0, 0).narrow(0, 0, 3), y2.select(0, 0).narrow(0, 0, 3), 0, 0));
  CHECK(allclose(y.select(0, 1), y2.select(0, 1), 0, 0));
  CHECK_FALSE(allclose(y.select(0, 0).narrow(0, 3, 2), y2.select(0, 0).narrow(0, 3, 2), 1e-3, 1e-3));
  // Without the mask the change leaks into the unpadded positions.
  Tensor z = enc.forward(x), z2 = enc.forward(x2);
  CHECK_FALSE(allclose(z.select(0, 0).narrow(0, 0, 3), z2.select(0, 0).narrow(0, 0, 3), 1e-3, 1e-3));
}

TEST_CASE("f32 forward matches the f64 forward", "[nn][nn-transformer]") {
  Generator gen(40);
  TransformerEncoder enc(tiny_options(true, 0.1), 2, &gen, true);
  enc.eval();
  Tensor x = test::random_tensor({2, 3, 4}, DType::F32, 41);
  Tensor y32 = enc.forward(x, mask23());
  enc.to(DType::F64);
  Tensor y64 = enc.forward(x.to(DType::F64), mask23());
  CHECK(y32.dtype() == DType::F32);
  CHECK_CLOSE(y32, y64, 1e-5, 1e-4);
}

TEST_CASE("dropout: active in training, seeded, off in eval", "[nn][nn-transformer]") {
  Generator gen(50);
  TransformerEncoderLayer layer(tiny_options(false, 0.3), &gen);
  Tensor x = test::random_tensor({2, 3, 4}, DType::F32, 51);
  Generator dgen(0);
  layer.set_dropout_generator(&dgen);
  layer.train();
  dgen.manual_seed(9);
  Tensor a = layer.forward(x, mask23());
  dgen.manual_seed(9);
  Tensor b = layer.forward(x, mask23());
  Tensor c = layer.forward(x, mask23());  // the generator moved on: other masks
  CHECK(allclose(a, b, 0, 0));
  CHECK_FALSE(allclose(a, c, 1e-3, 1e-3));
  layer.eval();
  CHECK_FALSE(allclose(a, layer.forward(x, mask23()), 1e-3, 1e-3));
  CHECK(allclose(layer.forward(x, mask23()), layer.forward(x, mask23()), 0, 0));
  CHECK(layer.self_attn->dropout_gen == &dgen);
  CHECK(layer.dropout2->gen == &dgen);
}

TEST_CASE("gradcheck through self-attention with a padding mask", "[nn][nn-transformer][grad]") {
  for (bool fused : {true, false}) {
    for (bool with_dropout : {false, true}) {
      INFO("fused " << fused << ", dropout " << with_dropout);
      Generator gen(60);
      MultiHeadSelfAttention m(4, 2, with_dropout ? 0.3 : 0.0, fused, true, &gen);
      m.to(DType::F64);
      randomize(m, 61);
      Generator dgen(0);
      m.dropout_gen = &dgen;
      if (with_dropout) {
        m.train();
      } else {
        m.eval();
      }
      Tensor mask = mask23();
      // Non-contiguous input for the dropout run.
      Tensor x = test::random_tensor({2, 3, 4}, DType::F64, 62);
      if (with_dropout) x = test::transposed_layout(x, 0, 1);
      GradcheckResult r = test::gradcheck_module(m, {x}, [&](const std::vector<Tensor>& in) {
        dgen.manual_seed(63);  // the same dropout masks at every evaluation
        return m.forward(in[0], mask);
      });
      INFO(r.report());
      CHECK(r.ok);
      CHECK(r.checked == x.numel() + m.num_parameters());
    }
  }
}

TEST_CASE("gradcheck through encoder layers (post- and pre-LN, with dropout) and a 2-layer encoder",
          "[nn][nn-transformer][grad]") {
  Tensor mask = mask23();
  Tensor x = test::random_tensor({2, 3, 4}, DType::F64, 70);
  Generator dgen(0);
  for (bool norm_first : {false, true}) {
    INFO("norm_first " << norm_first);
    Generator gen(71);
    TransformerEncoderLayer layer(tiny_options(norm_first, 0.2), &gen);
    layer.to(DType::F64);
    randomize(layer, 72);
    layer.set_dropout_generator(&dgen);
    layer.train();
    GradcheckResult r = test::gradcheck_module(layer, {x}, [&](const std::vector<Tensor>& in) {
      dgen.manual_seed(73);
      return layer.forward(in[0], mask);
    });
    INFO(r.report());
    CHECK(r.ok);
  }
  Generator gen(74);
  TransformerEncoder enc(tiny_options(false, 0.1), 2, &gen, /*final_norm=*/true);
  enc.to(DType::F64);
  randomize(enc, 75);
  enc.eval();
  GradcheckResult r = test::gradcheck_module(enc, {x}, [&](const std::vector<Tensor>& in) {
    return enc.forward(in[0], mask);
  });
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("attention and encoder errors", "[nn][nn-transformer]") {
  REQUIRE_THROWS_WITH(MultiHeadSelfAttention(6, 4), "MultiHeadSelfAttention: d_model 6 is not divisible by heads 4");
  REQUIRE_THROWS_WITH(MultiHeadSelfAttention(0, 2),
                      "MultiHeadSelfAttention: d_model and heads must be positive, got d_model=0 heads=2");
  REQUIRE_THROWS_WITH(MultiHeadSelfAttention(4, 2, 1.5),
                      "MultiHeadSelfAttention: dropout must be in [0, 1], got 1.5");
  MultiHeadSelfAttention m(4, 2);
  REQUIRE_THROWS_WITH(m.forward(zeros({3, 4})), "MultiHeadSelfAttention: expected x of shape (B, T, 4), got (3, 4)");
  REQUIRE_THROWS_WITH(m.forward(zeros({2, 3, 5})),
                      "MultiHeadSelfAttention: expected x of shape (B, T, 4), got (2, 3, 5)");
  REQUIRE_THROWS_WITH(m.forward(zeros({2, 3, 4}), zeros({2, 4}, DType::I64)),
                      "MultiHeadSelfAttention: key_padding_mask must have shape (B, T) = (2, 3), got (2, 4)");
  REQUIRE_THROWS_WITH(m.forward(zeros({2, 3, 4}), zeros({3, 2}, DType::I64)),
                      "MultiHeadSelfAttention: key_padding_mask must have shape (B, T) = (2, 3), got (3, 2)");
  REQUIRE_THROWS_WITH(TransformerEncoderLayer(6, 4, 8), "MultiHeadSelfAttention: d_model 6 is not divisible by heads 4");
  REQUIRE_THROWS_WITH(TransformerEncoderLayer(4, 2, 0),
                      "TransformerEncoderLayer: d_model, heads and dim_feedforward must be positive, got d_model=4 "
                      "heads=2 dim_feedforward=0");
  TransformerEncoderLayer layer(4, 2, 8);
  REQUIRE_THROWS_WITH(layer.forward(zeros({2, 3, 8})),
                      "TransformerEncoderLayer: expected x of shape (B, T, 4), got (2, 3, 8)");
  REQUIRE_THROWS_WITH(TransformerEncoder(tiny_options(false, 0.1), 0), "TransformerEncoder: num_layers must be positive, got 0");
  TransformerEncoder enc(tiny_options(false, 0.1), 1);
  REQUIRE_THROWS_WITH(enc.forward(zeros({2, 3, 4}), zeros({2, 2}, DType::I64)),
                      "MultiHeadSelfAttention: key_padding_mask must have shape (B, T) = (2, 3), got (2, 2)");
  REQUIRE_THROWS_WITH(m.forward(zeros({2, 3, 4}, DType::F64)), Catch::Contains("linear"));
}
