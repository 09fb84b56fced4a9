// test_parity.cpp — muxnet's layers against PyTorch: forward outputs and all gradients of a Linear, a
// LayerNorm, a 2-layer post-LN TransformerEncoder with a padding mask, and the LeNet CNN, on the
// fixtures written by tests/reference/make_fixtures.py (PyTorch 1.13, float32).
//
// Each fixture holds PyTorch's parameters ("param.<state_dict name>"), the inputs, the output, the
// upstream gradient g of loss = sum(output * g), and d loss / d input and d loss / d parameter. The
// parameter names are loaded unchanged: this also proves the layouts and names match PyTorch's.
// Tolerances (f32): forward 1e-5 relative, gradients 1e-4 relative, each with an absolute floor of
// that size times the largest reference magnitude (elements near zero have no meaningful relative error).
#include <cmath>
#include <map>

#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/lenet.h"
#include "nn/mlp.h"
#include "mux/tmux.h"
#include "mux/vision_models.h"
#include "tensor/ops.h"
#include "nn/transformer.h"
#include "tests/test_util.h"

using namespace muxnet;

namespace {

constexpr double kForwardRtol = 1e-5;
constexpr double kGradRtol = 1e-4;

struct Fixture {
  std::map<std::string, Tensor> t;
  nn::Metadata meta;
  const Tensor& get(const std::string& name) const {
    auto it = t.find(name);
    MUXNET_CHECK(it != t.end(), "fixture: no tensor ", name);
    return it->second;
  }
};

Fixture load(const std::string& name) {
  nn::SafetensorsContents c = nn::read_safetensors(std::string(MUXNET_SOURCE_DIR) + "/tests/fixtures/" + name +
                                                   ".safetensors");
  Fixture f;
  for (auto& [n, t] : c.tensors) f.t[n] = t;
  f.meta = c.metadata;
  return f;
}

// Copies every "param.<name>" / "buffer.<name>" into the module's parameter / buffer of that name;
// the sets of names must match.
void load_params(nn::Module& m, const Fixture& f) {
  NoGradGuard no_grad;
  size_t in_fixture = 0;
  for (auto& [n, t] : f.t) in_fixture += n.rfind("param.", 0) == 0 || n.rfind("buffer.", 0) == 0;
  auto params = m.named_parameters();
  auto buffers = m.named_buffers();
  REQUIRE(params.size() + buffers.size() == in_fixture);
  for (auto& [name, p] : params) {
    INFO("parameter " << name);
    const Tensor& v = f.get("param." + name);
    REQUIRE(v.shape() == p.shape());
    p.copy_(v);
  }
  for (auto& [name, b] : buffers) {
    INFO("buffer " << name);
    const Tensor& v = f.get("buffer." + name);
    REQUIRE(v.shape() == b.shape());
    b.copy_(v);
  }
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

void check_against(const std::string& what, const Tensor& got, const Tensor& want, double rtol) {
  INFO(what);
  REQUIRE(got.defined());
  CHECK_CLOSE(got, want, rtol * max_abs(want), rtol);
}

// Forward (compared), backward of sum(out * upstream), gradients compared.
void check_module(nn::Module& m, const Fixture& f, const std::function<Tensor(const Tensor&)>& forward) {
  load_params(m, f);
  Tensor x = f.get("input.x").clone();
  x.requires_grad_();
  Tensor out = forward(x);
  check_against("output", out, f.get("output"), kForwardRtol);
  sum(mul(out, f.get("upstream"))).backward();
  check_against("grad of the input", x.grad(), f.get("grad.input.x"), kGradRtol);
  for (auto& [name, p] : m.named_parameters()) check_against("grad of " + name, p.grad(), f.get("grad.param." + name), kGradRtol);
}

}  // namespace

TEST_CASE("Linear matches PyTorch", "[nn][parity]") {
  Fixture f = load("linear");
  nn::Linear m(5, 3);
  check_module(m, f, [&](const Tensor& x) { return m.forward(x); });
}

TEST_CASE("LayerNorm matches PyTorch", "[nn][parity]") {
  Fixture f = load("layernorm");
  nn::LayerNorm m(6, 1e-5);
  check_module(m, f, [&](const Tensor& x) { return m.forward(x); });
}

TEST_CASE("a 2-layer post-LN TransformerEncoder with a padding mask matches PyTorch", "[nn][parity]") {
  Fixture f = load("transformer");
  CHECK(f.meta.at("norm_first") == "False");
  nn::TransformerEncoderLayerOptions opt;
  opt.d_model = 16;
  opt.heads = 4;
  opt.dim_feedforward = 32;
  opt.dropout = 0.0;
  opt.activation = nn::Activation::Gelu;
  nn::TransformerEncoder m(opt, 2);
  Tensor mask = f.get("input.mask");
  check_module(m, f, [&](const Tensor& x) { return m.forward(x, mask); });
}

TEST_CASE("the LeNet CNN matches PyTorch", "[nn][parity]") {
  Fixture f = load("lenet");
  nn::LeNet m(1, 6, 10);
  check_module(m, f, [&](const Tensor& x) { return m.forward(x); });
}

TEST_CASE("a 1-layer pre-LN TransformerEncoder with a final norm matches PyTorch", "[nn][parity]") {
  Fixture f = load("transformer_preln");
  nn::TransformerEncoderLayerOptions opt;
  opt.d_model = 16;
  opt.heads = 4;
  opt.dim_feedforward = 32;
  opt.dropout = 0.0;
  opt.norm_first = true;
  nn::TransformerEncoder m(opt, 1, nullptr, /*final_norm=*/true);
  Tensor mask = f.get("input.mask");
  check_module(m, f, [&](const Tensor& x) { return m.forward(x, mask); });
}

TEST_CASE("Embedding (padding row) + positions + MLP + cross-entropy (ignore_index) match PyTorch", "[nn][parity]") {
  struct EmbedMLP : nn::Module {
    std::shared_ptr<nn::Embedding> embed = register_module("embed", std::make_shared<nn::Embedding>(12, 8, 0));
    std::shared_ptr<nn::PositionalEmbedding> pos = register_module("pos", std::make_shared<nn::PositionalEmbedding>(5, 8));
    std::shared_ptr<nn::MLP> mlp = register_module("mlp", std::make_shared<nn::MLP>(std::vector<int64_t>{8, 16, 5}));
  } m;
  Fixture f = load("embed_mlp_ce");
  load_params(m, f);
  Tensor loss = cross_entropy(m.mlp->forward(m.pos->forward(m.embed->forward(f.get("input.idx")))),
                              f.get("input.targets"));
  check_against("loss", loss, f.get("output"), kForwardRtol);
  loss.backward();
  for (auto& [name, p] : m.named_parameters()) check_against("grad of " + name, p.grad(), f.get("grad.param." + name), kGradRtol);
  // The padding row got no gradient, in both engines.
  CHECK(ops::sum(ops::abs(m.embed->weight.grad().select(0, 0))).item() == 0.0);
}

TEST_CASE("a tiny T-MUX (index demux, Gaussian Hadamard, N = 3) matches PyTorch", "[mux][parity]") {
  Fixture f = load("tmux");
  mux::TMuxConfig c;
  c.vocab = 11;
  c.max_len = 4;
  c.n = 3;
  c.d_model = 8;
  c.heads = 2;
  c.dim_feedforward = 16;
  c.layers = 1;
  c.task = "sequence";
  c.num_classes = 2;
  c.task_coeff = 0.9;
  c.retrieval_coeff = 0.1;
  c.key_norm = 2.0;
  mux::TMux m(c);
  load_params(m, f);
  // The fixture fixes the queried instance k per position; TMux::forward draws it, so the pieces of
  // forward are composed here with the fixture's k.
  Tensor ids = f.get("input.ids"), labels = f.get("input.labels"), k = f.get("input.k");
  Tensor h = m.encode(ids);
  Tensor task = m.demux->forward(h);
  Tensor r = m.retrieval->forward(h, k);
  check_against("task logits", task, f.get("output.task_logits"), kForwardRtol);
  check_against("retrieval logits", r, f.get("output.retrieval_logits"), kForwardRtol);
  // Retrieval targets as TMux::forward builds them: instance k's token, -100 on the prefix.
  std::vector<int64_t> pid = m.prefixed_ids(ids).to_vector<int64_t>(), kv = k.to_vector<int64_t>();
  const int64_t B = 2, Lp = c.seq_len();
  std::vector<int64_t> target(size_t(B * Lp), -100);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = c.prefix_len(); t < Lp; ++t) target[size_t(b * Lp + t)] = pid[size_t((b * 3 + kv[size_t(b * Lp + t)]) * Lp + t)];
  Tensor loss = 0.9 * cross_entropy(task, labels) + 0.1 * cross_entropy(r, from_vector<int64_t>(target, {B, Lp}));
  check_against("loss", loss, f.get("output"), kForwardRtol);
  loss.backward();
  for (auto& [name, p] : m.named_parameters()) check_against("grad of " + name, p.grad(), f.get("grad.param." + name), kGradRtol);
}

TEST_CASE("a tiny CnnMux (gaussian image mux, N = 2) matches PyTorch", "[mux][parity]") {
  Fixture f = load("cnnmux");
  Fixture lenet = load("lenet");  // the CnnMux fixture's LeNet has the LeNet fixture's weights
  for (auto& [name, t] : lenet.t) {
    if (name.rfind("param.", 0) == 0) f.t["param.lenet." + name.substr(6)] = t;
  }
  mux::CnnMux m(2, mux::ImageMuxKind::Gaussian);
  load_params(m, f);
  Tensor x = f.get("input.x").clone();
  x.requires_grad_();
  Tensor out = m.forward(x);
  check_against("output", out, f.get("output"), kForwardRtol);
  sum(mul(out, f.get("upstream"))).backward();
  check_against("grad of the input", x.grad(), f.get("grad.input.x"), kGradRtol);
  int checked = 0;
  for (auto& [name, p] : m.named_parameters()) {
    if (!f.t.count("grad.param." + name)) continue;  // LeNet's deeper layers: checked by the LeNet fixture
    check_against("grad of " + name, p.grad(), f.get("grad.param." + name), kGradRtol);
    ++checked;
  }
  CHECK(checked == 4);  // lenet.c1.weight/bias, heads.lin.weight/bias
}
