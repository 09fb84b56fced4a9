// test_throughput.cpp — the throughput protocol's checkable parts (no timing here): the analytic FLOP
// count and the FLOP ceiling of a multiplier against hand-worked values and ../shared/bench/RESULTS.md
// table 9, the plain classifier's and T-MUX's prediction counts, and the fused inference embedding +
// multiplexer (mux/embed_mux.h), the fused inference attention and the fused residual + LayerNorm
// (nn/residual_norm_infer.h) against the unfused ops.
#include "autograd/functions.h"
#include "mux/embed_mux.h"
#include "mux/tmux.h"
#include "nn/attention.h"
#include "nn/residual_norm_infer.h"
#include "nn/transformer.h"
#include "tasks/common/throughput.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;

namespace {

ClsShape tiny_shape() {
  ClsShape s;
  s.len = 3;
  s.d = 2;
  s.ff = 4;
  s.layers = 1;
  s.classes = 2;
  return s;
}

mux::TMuxConfig small_tmux(int64_t n, mux::MuxKind kind = mux::MuxKind::GaussianHadamard) {
  mux::TMuxConfig c;
  c.vocab = 11;
  c.max_len = 5;
  c.n = n;
  c.d_model = 8;
  c.heads = 2;
  c.dim_feedforward = 16;
  c.layers = 1;
  c.mux = kind;
  c.key_norm = std::sqrt(8.0);
  c.task = "sequence";
  c.num_classes = 3;
  c.task_coeff = 1.0;
  c.retrieval_coeff = 0.0;
  return c;
}

}  // namespace

TEST_CASE("cls FLOPs: hand-worked values for a tiny shape", "[throughput]") {
  const ClsShape s = tiny_shape();  // L = 3, d = 2, f = 4, one layer, C = 2
  // backbone per sequence: 8·T·d² + 4·T·d·f + 4·T²·d
  CHECK(backbone_flops(s, 3, 1) == 8 * 3 * 4 + 4 * 3 * 2 * 4 + 4 * 9 * 2);      // 264
  CHECK(backbone_flops(s, 5, 2) == 2 * (8 * 5 * 4 + 4 * 5 * 2 * 4 + 4 * 25 * 2));  // 2 · 520
  // plain: T = L = 3, head 2d² + 2dC = 8 + 8
  CHECK(cls_pass_flops(s, 1, 1, true) == 264 + 16);
  // T-MUX N = 1: T = 5, head N·(4d² + 2d² + 2dC) = 16 + 8 + 8
  CHECK(cls_pass_flops(s, 1, 1, false) == 520 + 32);
  // T-MUX N = 2: T = 6 -> 8·6·4 + 4·6·8 + 4·36·2 = 192 + 192 + 288 = 672, head 2·32 = 64
  CHECK(cls_pass_flops(s, 2, 1, false) == 672 + 64);
  // factored demux (this library): (N + 1)·2d² + N·(2d² + 2dC) = 3·8 + 2·16 = 56 instead of 64
  CHECK(cls_pass_flops(s, 2, 1, false, true) == 672 + 56);
  CHECK(cls_flops_per_instance(s, 2, false) == Approx(736.0 / 2));
  // ceilings: reference FLOPs per instance / FLOPs per instance at N
  CHECK(cls_ceiling(s, 2, true) == Approx(280.0 / 368.0));
  CHECK(cls_ceiling(s, 2, false) == Approx(552.0 / 368.0));
  CHECK(cls_ceiling(s, 1, false) == Approx(1.0));
}

TEST_CASE("cls FLOPs: RESULTS.md table 9 (L = 64, d = 256, B = 32) and the L = 128 ceilings", "[throughput]") {
  ClsShape s;  // the peer's shape: d = 256, f = 1024, 4 layers, C = 2
  s.len = 64;
  CHECK(cls_pass_flops(s, 1, 32, true) / 1e9 == Approx(13.43).margin(0.005));
  CHECK(cls_pass_flops(s, 40, 32, false) / 1e9 == Approx(23.09).margin(0.005));
  CHECK(cls_pass_flops(s, 40, 32, false) / (32 * 40) / 1e6 == Approx(18.0).margin(0.05));
  const std::vector<std::pair<int64_t, double>> vs_plain = {{1, 0.97}, {2, 1.90}, {5, 4.54}, {10, 8.41},
                                                             {20, 14.66}, {40, 23.26}};
  for (auto [n, want] : vs_plain) CHECK(cls_ceiling(s, n, true) == Approx(want).margin(0.005));
  CHECK(cls_ceiling(s, 20, false) == Approx(15.15).margin(0.005));
  CHECK(cls_ceiling(s, 40, false) == Approx(24.03).margin(0.005));
  s.len = 128;  // RESULTS.md §8: "L=128 gives 16.8x / 29.2x vs plain"
  CHECK(cls_ceiling(s, 20, true) == Approx(16.8).margin(0.05));
  CHECK(cls_ceiling(s, 40, true) == Approx(29.2).margin(0.05));
}

TEST_CASE("plain classifier: logits (B, C) and one prediction per sentence", "[throughput]") {
  ClsShape s;
  s.len = 6;
  s.d = 8;
  s.ff = 16;
  s.layers = 1;
  s.classes = 3;
  Generator gen(1);
  PlainClassifier m(20, s, 2, &gen);
  m.eval();
  Tensor ids = randint(0, 20, {4, 6}, DType::I64, &gen);
  Tensor logits = m.forward(ids);
  CHECK(logits.shape() == Shape{4, 3});
  Tensor pred = m.predict(ids);
  CHECK(pred.shape() == Shape{4});
  for (int64_t c : pred.to_vector<int64_t>()) CHECK((c >= 0 && c < 3));
  CHECK_THROWS(m.forward(randint(0, 20, {4, 5}, DType::I64, &gen)));  // wrong length
}

TEST_CASE("T-MUX sequence classification predicts once per instance: B·N predictions", "[throughput]") {
  for (int64_t n : {1, 4}) {
    Generator gen(2);
    mux::TMux m(small_tmux(n), &gen);
    m.eval();
    Tensor pred = m.predict(randint(0, 11, {3 * n, 5}, DType::I64, &gen));
    CHECK(pred.shape() == Shape{3 * n});
  }
}

TEST_CASE("fused inference embedding + Hadamard mux matches the unfused ops", "[throughput][mux]") {
  for (auto kind : {mux::MuxKind::GaussianHadamard, mux::MuxKind::BinaryHadamard}) {
    for (bool reembed : {true, false}) {
      mux::TMuxConfig cfg = small_tmux(3, kind);
      cfg.reembed = reembed;
      Generator gen(3);
      mux::TMux m(cfg, &gen);
      if (reembed) m.pack_parameters();  // parameters as views into one arena, as the task binaries have them
      m.eval();
      {
        NoGradGuard no_grad;  // a non-trivial LayerNorm affine, so the γ/β refactoring is exercised
        m.emb_norm->weight.copy_(randn({8}, DType::F32, &gen, 1.0, 0.3));
        m.emb_norm->bias.copy_(randn({8}, DType::F32, &gen, 0.0, 0.3));
      }
      Tensor ids = randint(0, 11, {4 * 3, 5}, DType::I64, &gen);
      Tensor generic = m.encode(ids);  // grad mode on: the unfused ops
      Tensor fused;
      {
        NoGradGuard no_grad;
        fused = m.encode(ids);
      }
      CHECK(fused.shape() == Shape{4, 9, 8});
      CHECK_CLOSE(fused, generic.detach(), 1e-4, 1e-4);
    }
  }
}

TEST_CASE("fused embedding + mux: the shared prefix and a per-sequence prefix agree", "[throughput][mux]") {
  // `same`: both mixed sequences have the same tokens at positions 0 and 1 (computed once, copied);
  // `diff` changes one token at position 0 of sequence 1, so nothing is shared. Every row must come
  // out as if computed from its own tokens.
  Generator gen(4);
  const int64_t n = 2, T = 3, d = 4;
  Tensor word = randn({6, d}, DType::F32, &gen), pos = randn({T, d}, DType::F32, &gen);
  Tensor w = ones({d}), b = zeros({d}), keys = randn({n, d}, DType::F32, &gen);
  std::vector<int64_t> same = {1, 2, 3, 4, 5, 0, 1, 2, 0, 4, 5, 1};  // prefix position 0 shared
  std::vector<int64_t> diff = same;
  diff[6] = 5;  // sequence 1, instance 0, position 0
  Tensor xs = mux::hadamard_embed_mux(same, n, T, word, pos, w, b, 1e-5, keys);
  Tensor xd = mux::hadamard_embed_mux(diff, n, T, word, pos, w, b, 1e-5, keys);
  CHECK(xs.shape() == Shape{2, T, d});
  // Sequence 0 is the same in both; sequence 1 differs at position 0 only.
  CHECK_CLOSE(xd.select(0, 0), xs.select(0, 0), 0.0, 0.0);
  CHECK_CLOSE(xd.select(0, 1).narrow(0, 1, 2), xs.select(0, 1).narrow(0, 1, 2), 0.0, 0.0);
  CHECK_FALSE(test::compare_close(xd.select(0, 1).narrow(0, 0, 1), xs.select(0, 1).narrow(0, 0, 1), 1e-6, 0).ok);
  // Out-of-range ids are refused with the position.
  std::vector<int64_t> bad = same;
  bad[3] = 6;
  CHECK_THROWS_WITH(mux::hadamard_embed_mux(bad, n, T, word, pos, w, b, 1e-5, keys),
                    Catch::Contains("token id 6 at 3"));
}

TEST_CASE("fused inference self-attention matches the autograd path", "[throughput][nn-transformer]") {
  Generator gen(5);
  nn::MultiHeadSelfAttention attn(16, 4, 0.0, /*fused=*/true, /*bias=*/true, &gen);
  {
    NoGradGuard no_grad;  // non-zero projection biases, so the bias path of q, k and v is exercised
    attn.in_proj_bias.copy_(randn({48}, DType::F32, &gen, 0.0, 0.5));
  }
  Tensor x = randn({3, 7, 16}, DType::F32, &gen);
  Tensor generic = attn.forward(x);  // grad mode on: split_heads / scaled_dot_product_attention
  Tensor fused;
  {
    NoGradGuard no_grad;
    fused = attn.forward(x);
  }
  CHECK(fused.shape() == Shape{3, 7, 16});
  CHECK_CLOSE(fused, generic.detach(), 1e-5, 1e-4);
}

TEST_CASE("fused residual + LayerNorm: a row by hand", "[throughput][nn]") {
  // x + r = (1, 2, 3, 6): mean 3, var (4 + 1 + 0 + 9) / 4 = 3.5, rstd = 1 / sqrt(3.5 + eps).
  Tensor x = from_vector<float>({0.5f, 2.0f, 1.0f, 8.0f}, {1, 4});
  Tensor r = from_vector<float>({0.5f, 0.0f, 2.0f, -2.0f}, {1, 4});
  Tensor w = from_vector<float>({1.0f, 2.0f, -1.0f, 0.5f}, {4});
  Tensor b = from_vector<float>({0.0f, 1.0f, 0.0f, -1.0f}, {4});
  const double eps = 1e-5, rs = 1.0 / std::sqrt(3.5 + eps);
  std::vector<float> got = nn::add_layer_norm_inference(x, r, w, b, eps).to_vector<float>();
  const std::vector<double> want = {-2 * rs, -1 * rs * 2 + 1, 0.0, 3 * rs * 0.5 - 1};
  REQUIRE(got.size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(got[i] == Approx(want[i]).margin(1e-6));
  // Without weight and bias: plain normalisation.
  std::vector<float> plain = nn::add_layer_norm_inference(x, r, Tensor(), Tensor(), eps).to_vector<float>();
  CHECK(plain[3] == Approx(3 * rs).margin(1e-6));
}

TEST_CASE("fused residual + LayerNorm equals layer_norm(add(x, r))", "[throughput][nn]") {
  Generator gen(8);
  for (int64_t d : {1, 7, 64, 131}) {
    INFO("d " << d);
    Tensor x = randn({3, 5, d}, DType::F32, &gen, 1.5, 2.0);  // a large mean: the statistics must not lose it
    Tensor r = randn({3, 5, d}, DType::F32, &gen);
    Tensor w = randn({d}, DType::F32, &gen);
    Tensor b = randn({d}, DType::F32, &gen);
    Tensor want = layer_norm(add(x, r), w, b, 1e-5);
    CHECK_CLOSE(nn::add_layer_norm_inference(x, r, w, b, 1e-5), want, 1e-6, 1e-6);
  }
}

TEST_CASE("a post-LN encoder layer gives the same output with and without autograd", "[throughput][nn-transformer]") {
  Generator gen(9);
  nn::TransformerEncoderLayerOptions o;
  o.d_model = 16;
  o.heads = 4;
  o.dim_feedforward = 32;
  o.dropout = 0.1;
  o.activation = nn::Activation::Gelu;
  nn::TransformerEncoderLayer layer(o, &gen);
  layer.eval();
  Tensor x = randn({2, 6, 16}, DType::F32, &gen);
  Tensor generic = layer.forward(x);  // grad mode on: add, then layer_norm
  Tensor fused;
  {
    NoGradGuard no_grad;
    fused = layer.forward(x);  // fused attention, fused residual + LayerNorm
  }
  CHECK_CLOSE(fused, generic.detach(), 1e-5, 1e-4);
}

TEST_CASE("fused residual + LayerNorm rejects what it cannot run", "[throughput][nn]") {
  Tensor x = zeros({2, 4}, DType::F32);
  REQUIRE_THROWS_WITH(nn::add_layer_norm_inference(x, zeros({2, 3}, DType::F32), Tensor(), Tensor(), 1e-5),
                      Catch::Contains("expected contiguous f32 CPU tensors of one shape, got (2, 4) and (2, 3)"));
  REQUIRE_THROWS_WITH(nn::add_layer_norm_inference(x.to(DType::F64), x.to(DType::F64), Tensor(), Tensor(), 1e-5),
                      Catch::Contains("add_layer_norm_inference"));
  REQUIRE_THROWS_WITH(nn::add_layer_norm_inference(x, x, zeros({3}, DType::F32), Tensor(), 1e-5),
                      Catch::Contains("weight and bias must be contiguous f32 CPU (4,), got (3,)"));
}
