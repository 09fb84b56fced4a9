// test_sst2.cpp — T-MUX sentence classification (tasks/common/seqcls.*, what build/sst2 runs): the
// grouped evaluation with dummy instances, a short learning run on generated sentences, warm-starting
// from a retrieval checkpoint (nn::load_matching), and the per-N checkpoint names.
#include <chrono>
#include <cstdio>

#include "nn/checkpoint.h"
#include "tasks/common/cli.h"
#include "tasks/common/seqcls.h"
#include "tasks/common/text_data.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;

namespace {

constexpr int64_t kMarker = 2;  // label = 1 iff this token occurs in the sentence

// Sentences of 3..len tokens from ids [3, vocab) (0 = <pad>, 1 = <unk> unused), half of them with the
// marker at a random position.
SeqClsData marker_sentences(int64_t count, int64_t vocab, int64_t len, uint64_t seed) {
  Generator g(seed);
  SeqClsData d;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t n_tok = 3 + int64_t(g.randint(uint64_t(len - 2)));
    std::vector<int64_t> ids(size_t(len), Vocabulary::kPad);
    for (int64_t t = 0; t < n_tok; ++t) ids[size_t(t)] = 3 + int64_t(g.randint(uint64_t(vocab - 3)));
    const int64_t label = int64_t(g.randint(2));
    if (label) ids[g.randint(uint64_t(n_tok))] = kMarker;
    d.ids.push_back(ids);
    d.labels.push_back(label);
  }
  return d;
}

SeqClsModelOptions tiny_model() {
  SeqClsModelOptions o;
  o.arch.d = 32;
  o.arch.heads = 2;
  o.arch.ff = 64;
  o.arch.layers = 1;
  o.arch.dropout = 0.0;
  return o;
}

}  // namespace

TEST_CASE("seqcls configurations: N = 1 is the plain classifier, N > 1 mixes 0.9 task + 0.1 retrieval", "[sst2]") {
  mux::TMuxConfig one = seqcls_config(tiny_model(), 20, 8, 1, Vocabulary::kPad);
  CHECK_FALSE(one.multiplex);
  CHECK(one.task == "sequence");
  CHECK(one.task_coeff == 1.0);
  CHECK(one.retrieval_coeff == 0.0);
  mux::TMux plain(one);
  CHECK(plain.mux == nullptr);
  CHECK(plain.retrieval == nullptr);
  mux::TMuxConfig five = seqcls_config(tiny_model(), 20, 8, 5, Vocabulary::kPad);
  CHECK(five.multiplex);
  CHECK(five.task_coeff == Approx(0.9));
  CHECK(five.retrieval_coeff == Approx(0.1));
  CHECK(five.pad_id == Vocabulary::kPad);
}

TEST_CASE("evaluation pads the last mixed group with dummy instances and drops them", "[sst2]") {
  Generator gen(3);
  mux::TMux model(seqcls_config(tiny_model(), 12, 6, 3, Vocabulary::kPad), &gen);
  model.eval();
  SeqClsData nine = marker_sentences(9, 12, 6, 5);
  SeqClsData seven = nine;
  seven.ids.resize(7);
  seven.labels.resize(7);
  std::vector<int64_t> p9 = seqcls_predict(model, nine, 2);  // 3 groups, mixed batches of 2 groups
  std::vector<int64_t> p7 = seqcls_predict(model, seven, 2);
  REQUIRE(p9.size() == 9);
  REQUIRE(p7.size() == 7);
  // Sentences 0..5 sit in the same two full groups in both: same predictions.
  CHECK(std::vector<int64_t>(p9.begin(), p9.begin() + 6) == std::vector<int64_t>(p7.begin(), p7.begin() + 6));
  // The accuracy counts the 7 real sentences only.
  int64_t hit = 0;
  for (size_t k = 0; k < 7; ++k) hit += p7[k] == seven.labels[k];
  CHECK(seqcls_accuracy(model, seven, 2) == Approx(double(hit) / 7.0));
  // The mixed batch size does not change the result.
  CHECK(seqcls_predict(model, seven, 1) == p7);
}

TEST_CASE("T-MUX N = 2 learns a marker-token sentence label through the sst2 training loop", "[sst2][learning]") {
  // One thread: these tensors are tiny, and on a loaded machine OpenMP's barriers make 2 threads ~20x slower.
  const int threads = get_num_threads();
  set_num_threads(1);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t vocab = 12, len = 8;
  SeqClsData train = marker_sentences(4000, vocab, len, 1);
  SeqClsData dev = marker_sentences(301, vocab, len, 2);  // 301: the last group of 2 has a dummy
  Generator gen(0);
  mux::TMux model(seqcls_config(tiny_model(), vocab, len, 2, Vocabulary::kPad), &gen);
  const double before = seqcls_accuracy(model, dev);
  SeqClsTrainOptions opt;
  opt.steps = 200;
  opt.batch = 16;
  opt.lr = 3e-3;
  opt.warmup = 20;
  opt.eval_every = 100;
  opt.progress = false;
  int evals = 0;
  opt.on_eval = [&](const nlohmann::json& e) {
    ++evals;
    CHECK(e.contains("dev_acc"));
  };
  SeqClsResult r = train_seqcls(model, train, dev, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  set_num_threads(threads);
  INFO("dev accuracy before " << before << ", after " << r.dev_acc << " (best " << r.best_dev_acc << " at step "
                              << r.best_step << "), " << secs << " s");
  CHECK(evals == 2);
  CHECK(r.steps == 200);
  CHECK(r.dev_acc >= 0.9);  // chance is 0.5
  CHECK(r.dev_acc == Approx(seqcls_accuracy(model, dev)));
  CHECK(r.best_dev_acc >= r.dev_acc);
}

TEST_CASE("--init: a retrieval checkpoint warm-starts every matching tensor, the sentence head stays fresh", "[sst2]") {
  // A tiny retrieval warm-up model with non-initial weights, saved as `retrieval --data sst2` does.
  mux::TMuxConfig rc;
  rc.vocab = 10;
  rc.max_len = 6;
  rc.n = 2;
  rc.d_model = 16;
  rc.heads = 2;
  rc.dim_feedforward = 32;
  rc.layers = 1;
  rc.pad_id = Vocabulary::kPad;
  Generator g0(11);
  mux::TMux warm(rc, &g0);
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : warm.named_parameters()) {
      Tensor t = p;
      t.copy_(ops::add(p, test::random_tensor(p.shape(), p.dtype(), 7, -0.5, 0.5)));
    }
  }
  nn::Metadata meta = rc.to_metadata();
  meta["task"] = "retrieval";
  meta["vocab.json"] = Vocabulary::build({{"a", "b", "c"}}).to_json();
  const std::string path = "/tmp/muxnet_test_sst2_warm.safetensors";
  nn::save_checkpoint(path, warm, meta);

  SeqClsModelOptions opt = tiny_model();  // d = 32 here: the checkpoint's architecture must win
  mux::TMuxConfig cfg = seqcls_config_from_warmup(nn::read_safetensors(path).metadata, opt);
  CHECK(cfg.d_model == 16);
  CHECK(cfg.n == 2);
  CHECK(cfg.vocab == 10);
  CHECK(cfg.task == "sequence");
  CHECK(cfg.task_coeff == Approx(0.9));
  CHECK(cfg.retrieval_coeff == Approx(0.1));

  Generator g1(5), g2(5);
  mux::TMux model(cfg, &g1), fresh(cfg, &g2);  // same seed: `fresh` is what model was before loading
  nn::PartialLoad pl = nn::load_matching(path, model);
  CHECK(pl.mismatched.empty());
  CHECK(pl.unused.empty());
  REQUIRE_FALSE(pl.fresh.empty());
  for (const auto& name : pl.fresh) CHECK(name.rfind("demux.", 0) == 0);
  CHECK(pl.loaded.size() == warm.state().size());
  CHECK(pl.metadata.at("vocab.json") == meta.at("vocab.json"));

  auto find = [](const nn::Module& m, const std::string& name) {
    for (auto& [n, t] : m.state()) {
      if (n == name) return t;
    }
    FAIL("no tensor " << name);
    return Tensor();
  };
  for (const std::string& name : {std::string("word.weight"), std::string("encoder.layers.0.linear1.weight"),
                                   std::string("retrieval.decoder.weight")}) {
    INFO(name);
    CHECK(ops::max(ops::abs(ops::sub(find(model, name), find(warm, name)))).item() == 0.0);
    CHECK(ops::max(ops::abs(ops::sub(find(model, name), find(fresh, name)))).item() > 0.01);
  }
  for (const auto& name : pl.fresh) {
    INFO(name);
    CHECK(ops::max(ops::abs(ops::sub(find(model, name), find(fresh, name)))).item() == 0.0);
  }
  // The multiplexing keys (a buffer) come from the warm-up too.
  CHECK(ops::max(ops::abs(ops::sub(find(model, "mux.instance_embedding"), find(warm, "mux.instance_embedding")))).item() == 0.0);

  // Another width: nothing of that shape is copied, each mismatch is named.
  mux::TMuxConfig wide = cfg;
  wide.d_model = 32;
  wide.dim_feedforward = 64;
  mux::TMux other(wide);
  nn::PartialLoad bad = nn::load_matching(path, other);
  REQUIRE_FALSE(bad.mismatched.empty());
  CHECK(bad.mismatched[0].find(": file f32 (") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("per-N checkpoint names", "[sst2]") {
  CHECK(with_n_suffix("runs/warm.safetensors", 5, true) == "runs/warm_n5.safetensors");
  CHECK(with_n_suffix("warm", 10, true) == "warm_n10");
  CHECK(with_n_suffix("warm.safetensors", 10, false) == "warm.safetensors");
  CHECK(with_n_suffix("a.b/warm", 2, true) == "a.b/warm_n2");
}
