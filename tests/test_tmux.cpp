// test_tmux.cpp — T-MUX: the index prefix as PAPER.md §1.4 places it, the mlp variant's CLS slot,
// output shapes, retrieval targets, N = 1 equivalence with the plain model, config metadata, a
// gradient check through the whole model, and a short retrieval run that learns N = 2.
#include <chrono>

#include "mux/tmux.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::mux;

namespace {

TMuxConfig tiny(int64_t n, DemuxKind demux = DemuxKind::Index, const std::string& task = "retrieval") {
  TMuxConfig c;
  c.vocab = 7;
  c.max_len = 3;
  c.n = n;
  c.d_model = 8;
  c.heads = 2;
  c.dim_feedforward = 16;
  c.layers = 1;
  c.key_norm = 1.0;
  c.demux = demux;
  c.task = task;
  c.num_classes = 3;
  if (task != "retrieval") {
    c.task_coeff = 0.9;
    c.retrieval_coeff = 0.1;
  }
  return c;
}

void copy_params(const nn::Module& from, nn::Module& to) {
  NoGradGuard no_grad;
  auto src = from.named_parameters();
  for (auto& [name, p] : to.named_parameters()) {
    for (auto& [n2, q] : src) {
      if (n2 == name) p.copy_(q);
    }
  }
}

}  // namespace

TEST_CASE("the index prefix is [p_0 .. p_{N-1}, CLS] with instance i's index token at slot i", "[mux][tmux]") {
  TMux m(tiny(3));
  // fill = vocab = 7, CLS = 8, index token j = 9 + j
  Tensor ids = from_vector<int64_t>({1, 2, 3, 4, 5, 6, 0, 1, 2}, {3, 3});
  Tensor p = m.prefixed_ids(ids);
  CHECK(p.shape() == Shape{3, 7});
  CHECK(p.to_vector<int64_t>() == std::vector<int64_t>{9, 7, 7, 8, 1, 2, 3,     // instance 0
                                                        7, 10, 7, 8, 4, 5, 6,    // instance 1
                                                        7, 7, 11, 8, 0, 1, 2});  // instance 2
  TMux mlp(tiny(3, DemuxKind::Mlp));
  CHECK(mlp.prefixed_ids(ids).to_vector<int64_t>() == std::vector<int64_t>{8, 2, 3, 8, 5, 6, 8, 1, 2});
  REQUIRE_THROWS_WITH(m.prefixed_ids(from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3})),
                      "TMux: 2 rows do not group into mixed sequences of N = 3 instances");
  REQUIRE_THROWS_WITH(m.prefixed_ids(from_vector<int64_t>({1, 2, 7, 4, 5, 6, 0, 1, 2}, {3, 3})),
                      "TMux: token id 7 at (0, 2) is outside the vocabulary [0, 7)");
}

TEST_CASE("T-MUX output shapes and retrieval targets", "[mux][tmux]") {
  for (int64_t n : {1, 2, 5}) {
    for (DemuxKind dk : {DemuxKind::Index, DemuxKind::Mlp}) {
      INFO("N = " << n << " demux " << demux_kind_name(dk));
      Generator g(n);
      Tensor ids = randint(0, 7, {4 * n, 3}, DType::I64, &g);
      const int64_t Lp = dk == DemuxKind::Index ? 3 + n + 1 : 3;
      TMux ret(tiny(n, dk), &g);
      TMuxOutput r = ret.forward(ids, Tensor(), &g);
      CHECK(r.retrieval_logits.shape() == Shape{4, Lp, 7});
      CHECK(r.loss.ndim() == 0);
      // Targets: -100 on the prefix / CLS slots, else the queried instance's token.
      std::vector<int64_t> tgt = r.retrieval_targets.to_vector<int64_t>(), k = r.instance.to_vector<int64_t>();
      std::vector<int64_t> pid = ret.prefixed_ids(ids).to_vector<int64_t>();
      for (int64_t b = 0; b < 4; ++b) {
        for (int64_t t = 0; t < Lp; ++t) {
          bool slot = dk == DemuxKind::Index ? t < n + 1 : t == 0;
          int64_t want = slot ? -100 : pid[size_t((b * n + k[size_t(b * Lp + t)]) * Lp + t)];
          REQUIRE(tgt[size_t(b * Lp + t)] == want);
        }
      }
      CHECK(ret.retrieve_all(ids).shape() == Shape{4 * n, 3});
      TMux seq(tiny(n, dk, "sequence"), &g);
      TMuxOutput s = seq.forward(ids, randint(0, 3, {4 * n}, DType::I64, &g), &g);
      CHECK(s.task_logits.shape() == Shape{4 * n, 3});
      CHECK(seq.predict(ids).shape() == Shape{4 * n});
      TMux tok(tiny(n, dk, "token"), &g);
      TMuxOutput t = tok.forward(ids, randint(0, 3, {4 * n, 3}, DType::I64, &g), &g);
      CHECK(t.task_logits.shape() == Shape{4 * n, 3, 3});
      CHECK(t.loss.item() > 0);
    }
  }
}

TEST_CASE("with N = 1 and identity keys the multiplexed model equals the plain one", "[mux][tmux]") {
  TMuxConfig c = tiny(1, DemuxKind::Index, "sequence");
  c.reembed = false;  // the plain model has no second embedding pass to match
  TMux muxed(c);
  c.multiplex = false;
  TMux plain(c);
  copy_params(muxed, plain);
  {
    NoGradGuard no_grad;
    muxed.mux->keys.fill_(1.0);  // identity keys
  }
  muxed.eval();
  plain.eval();
  Generator g(3);
  Tensor ids = randint(0, 7, {5, 3}, DType::I64, &g);
  CHECK(allclose(muxed.encode(ids), plain.encode(ids), 0, 0));
  Generator g1(4), g2(4);
  Tensor labels = randint(0, 3, {5}, DType::I64, &g);
  CHECK(muxed.forward(ids, labels, &g1).loss.item() == plain.forward(ids, labels, &g2).loss.item());
  REQUIRE_THROWS_WITH(TMux([] {
                        TMuxConfig bad = tiny(2);
                        bad.multiplex = false;
                        return bad;
                      }()),
                      "TMuxConfig: multiplex = false needs n = 1, got n = 2");
}

TEST_CASE("T-MUX config round-trips through checkpoint metadata", "[mux][tmux]") {
  TMuxConfig c = tiny(4, DemuxKind::Mlp, "token");
  c.key_norm = 20.0;
  c.pad_id = 0;
  TMuxConfig back = TMuxConfig::from_metadata(c.to_metadata());
  CHECK(back.to_metadata() == c.to_metadata());
  auto meta = c.to_metadata();
  meta["tmux.n"] = "four";
  REQUIRE_THROWS_WITH(TMuxConfig::from_metadata(meta), "TMuxConfig: tmux.n = 'four' is not an integer");
  meta.erase("tmux.n");
  REQUIRE_THROWS_WITH(TMuxConfig::from_metadata(meta), "TMuxConfig: checkpoint metadata has no tmux.n");
}

TEST_CASE("gradients through the whole T-MUX", "[mux][tmux]") {
  for (DemuxKind dk : {DemuxKind::Index, DemuxKind::Mlp}) {
    INFO("demux " << demux_kind_name(dk));
    Generator g(5);
    TMux m(tiny(2, dk, "sequence"), &g);
    m.to(DType::F64);
    m.eval();
    Tensor ids = randint(0, 7, {4, 3}, DType::I64, &g), labels = randint(0, 3, {4}, DType::I64, &g);
    GradcheckOptions opt;
    opt.max_coords = 12;  // per parameter: a sample keeps this under a second
    auto r = test::gradcheck_module(m, {}, [&](const std::vector<Tensor>&) {
      Generator k(7);  // the same queried instances on every evaluation
      return m.forward(ids, labels, &k).loss;
    }, opt);
    INFO(r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("a short retrieval run learns N = 2", "[mux][tmux][learning]") {
  TMuxConfig c;
  c.vocab = 20;
  c.max_len = 8;
  c.n = 2;
  c.d_model = 64;
  c.heads = 4;
  c.dim_feedforward = 128;
  c.layers = 1;
  Generator init(1), data(2), query(3), held(4);
  TMux m(c, &init);
  m.pack_parameters();
  nn::AdamW optim(m, 3e-3, 0.9, 0.999, 1e-8, 0.0);
  Tensor heldout = randint(0, c.vocab, {64 * 2, 8}, DType::I64, &held);
  auto accuracy = [&] {
    m.eval();
    Tensor hit = ops::eq(m.retrieve_all(heldout), heldout);
    m.train();
    return ops::sum(hit).item() / double(heldout.numel());
  };
  auto t0 = std::chrono::steady_clock::now();
  double acc = 0;
  int step = 0;
  for (step = 1; step <= 800; ++step) {
    TMuxOutput out = m.forward(randint(0, c.vocab, {32 * 2, 8}, DType::I64, &data), Tensor(), &query);
    optim.zero_grad();
    out.loss.backward();
    optim.step();
    if (step % 50 == 0 && (acc = accuracy()) >= 0.95) break;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("held-out retrieval accuracy " << acc << " after " << step << " steps, " << secs << " s");
  CHECK(acc >= 0.9);
}

TEST_CASE("a T-MUX checkpoint rebuilds the same model from its metadata", "[mux][tmux][checkpoint]") {
  TMuxConfig c = tiny(3, DemuxKind::Index, "sequence");
  Generator g(11);
  TMux a(c, &g);
  a.eval();
  const std::string path = "/tmp/muxnet_test_tmux.safetensors";
  nn::save_checkpoint(path, a, c.to_metadata());
  nn::SafetensorsContents file = nn::read_safetensors(path);
  TMux b(TMuxConfig::from_metadata(file.metadata));  // other random weights until loaded
  nn::load_checkpoint(path, b);
  b.eval();
  Tensor ids = randint(0, 7, {6, 3}, DType::I64, &g);
  CHECK(allclose(a.encode(ids), b.encode(ids), 0, 0));
  CHECK(allclose(a.mux->keys, b.mux->keys, 0, 0));  // the fixed keys travel with the checkpoint
}
