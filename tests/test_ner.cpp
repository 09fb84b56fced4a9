// test_ner.cpp — CoNLL-2003 reading on small generated files (incl. malformed input and the messages),
// conlleval-style entity F1 on hand-worked examples, the NER instance layout, and a short T-MUX run
// (N = 2) on generated token-tagging data through the same train_ner the ner binary uses.
#include <algorithm>
#include <chrono>
#include <fstream>

#include "nn/checkpoint.h"
#include "tasks/common/cli.h"
#include "tasks/common/conll_data.h"
#include "tasks/common/ner_metrics.h"
#include "tasks/common/ner_train.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;
using muxnet::test::write_temp;

namespace {

// The reader's error for a file with this content, without the temp directory.
std::string conll_error(const std::string& name, const std::string& content) {
  std::string p = write_temp(name, content);
  try {
    read_conll2003(p);
  } catch (const InputError& e) {
    std::string m = e.what();
    return m.substr(m.find(name));
  }
  return "no error";
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::vector<Entity> entities(const std::string& tags) { return extract_entities(split(tags)); }

}  // namespace

TEST_CASE("CoNLL-2003 sentences are read with their tags, -DOCSTART- skipped", "[conll]") {
  std::string p = write_temp("conll_ok.txt",
                             "-DOCSTART- -X- -X- O\n\n"
                             "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
                             "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
                             "-DOCSTART- -X- -X- O\n\n"
                             "New NNP B-NP B-LOC\nYork NNP I-NP I-LOC\n");  // no blank line at the end: fine
  TaggedSentences s = read_conll2003(p);
  REQUIRE(s.tokens.size() == 3);
  CHECK(s.documents == 2);
  CHECK(s.tokens[0] == std::vector<std::string>{"EU", "rejects", "German"});
  CHECK(s.tags[0] == std::vector<int64_t>{ner_tag_id("B-ORG"), 0, ner_tag_id("B-MISC")});
  CHECK(s.tags[1] == std::vector<int64_t>{1, 2});  // B-PER, I-PER
  CHECK(s.tokens[2] == std::vector<std::string>{"New", "York"});
  CHECK(ner_tags().size() == 9);
  CHECK(ner_tags()[0] == "O");
  CHECK(ner_tag_id("I-MISC") == 8);
  CHECK(ner_tag_id("B-PERSON") == -1);
}

TEST_CASE("malformed CoNLL-2003 files are rejected with file, line and what was expected", "[conll]") {
  CHECK(conll_error("c1.txt", "EU NNP B-ORG\n") ==
        "c1.txt:1: expected 4 space-separated columns 'WORD POS CHUNK NER', got 3 in 'EU NNP B-ORG'");
  CHECK(conll_error("c2.txt", "a DT B-NP O\nEU NNP B-NP B-ORGANIZATION\n") ==
        "c2.txt:2: unknown NER tag 'B-ORGANIZATION' (expected O, B-X or I-X with X in PER, ORG, LOC, MISC)");
  CHECK(conll_error("c3.txt", "a DT B-NP O\nPeter NNP B-NP I-PER\n") ==
        "c3.txt:2: I-PER follows O: not IOB2 (expected B-PER to start the entity; an IOB1 file?)");
  CHECK(conll_error("c4.txt", "Peter NNP B-NP B-PER\nYork NNP I-NP I-LOC\n") ==
        "c4.txt:2: I-LOC follows B-PER: not IOB2 (expected B-LOC to start the entity; an IOB1 file?)");
  CHECK(conll_error("c5.txt", "x NN B-NP O\n\nPeter NNP B-NP I-PER\n") ==
        "c5.txt:3: I-PER follows the sentence start: not IOB2 (expected B-PER to start the entity; an IOB1 file?)");
  CHECK(conll_error("c6.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-V") ==
        "c6.txt: the file does not end with a newline (truncated?)");
  CHECK(conll_error("c7.txt", "") == "c7.txt: empty file (expected lines 'WORD POS CHUNK NER')");
  CHECK(conll_error("c8.txt", "-DOCSTART- -X- -X- O\n\n") ==
        "c8.txt: no sentences (expected lines 'WORD POS CHUNK NER')");
  CHECK(conll_error("c9.txt", "EU NNP B-NP B-ORG\r\n") == "c9.txt:1: CRLF line ending (expected LF)");
  CHECK(conll_error("c10.txt", "EU  NNP B-NP B-ORG\n") ==
        "c10.txt:1: expected 4 space-separated columns 'WORD POS CHUNK NER', got 5 in 'EU  NNP B-NP B-ORG'");
  CHECK(conll_error("c11.txt", "EU NNP B-NP B-ORG\n-DOCSTART- -X- -X- O\n") ==
        "c11.txt:2: -DOCSTART- inside a sentence (expected an empty line before it)");
  REQUIRE_THROWS_WITH(read_conll2003("/nonexistent/train.txt"), "cannot open CoNLL-2003 file /nonexistent/train.txt");
}

TEST_CASE("entities follow conlleval's chunk rules", "[ner]") {
  using E = std::vector<Entity>;
  CHECK(entities("B-PER I-PER O B-LOC") == E{{"PER", 0, 2}, {"LOC", 3, 4}});
  // Ill-formed I- starts open an entity: after O, and after another type.
  CHECK(entities("O I-PER I-PER O") == E{{"PER", 1, 3}});
  CHECK(entities("B-LOC I-PER") == E{{"LOC", 0, 1}, {"PER", 1, 2}});
  CHECK(entities("I-ORG") == E{{"ORG", 0, 1}});
  // Adjacent entities of one type are two entities; B- always starts a new one.
  CHECK(entities("B-PER B-PER") == E{{"PER", 0, 1}, {"PER", 1, 2}});
  CHECK(entities("B-PER I-PER B-PER I-PER") == E{{"PER", 0, 2}, {"PER", 2, 4}});
  // An entity at the sentence end is closed there.
  CHECK(entities("O B-ORG I-ORG") == E{{"ORG", 1, 3}});
  CHECK(entities("O O").empty());
  CHECK(entities("").empty());
  REQUIRE_THROWS_WITH(extract_entities({"O", "E-PER"}),
                      Catch::Contains("extract_entities: tag 'E-PER' at position 1 is not O, B-X or I-X"));
}

TEST_CASE("precision, recall and F1 on hand-worked examples", "[ner]") {
  SECTION("one of two entities right: the wrong type is a miss and a false alarm") {
    NerScorer s;
    s.add(split("B-PER I-PER O B-LOC"), split("B-PER I-PER O B-ORG"));
    CHECK(s.total().correct == 1);
    CHECK(s.total().precision() == 0.5);
    CHECK(s.total().recall() == 0.5);
    CHECK(s.total().f1() == 0.5);
    CHECK(s.per_type().at("ORG").predicted == 1);
    CHECK(s.per_type().at("ORG").gold == 0);
    CHECK(s.per_type().at("ORG").f1() == 0.0);
  }
  SECTION("two sentences, micro-averaged: P = 3/5, R = 3/4, F1 = 2/3") {
    NerScorer s;
    s.add(split("B-PER I-PER O B-LOC O"), split("B-PER I-PER O B-LOC O"));  // 2 of 2
    // gold ORG [0,2) and MISC [3,4); predicted ORG [0,1) (wrong span), PER [2,3) (spurious), MISC right
    s.add(split("B-ORG I-ORG O B-MISC"), split("B-ORG O B-PER B-MISC"));
    CHECK(s.total().gold == 4);
    CHECK(s.total().predicted == 5);
    CHECK(s.total().correct == 3);
    CHECK(s.total().precision() == Approx(0.6));
    CHECK(s.total().recall() == Approx(0.75));
    CHECK(s.total().f1() == Approx(2 * 0.6 * 0.75 / 1.35));
    const EntityScores& per = s.per_type().at("PER");  // 1 gold, 2 predicted, 1 right
    CHECK(per.precision() == 0.5);
    CHECK(per.recall() == 1.0);
    CHECK(per.f1() == Approx(2.0 / 3.0));
    CHECK(s.per_type().at("ORG").f1() == 0.0);
    CHECK(s.per_type().at("MISC").f1() == 1.0);
  }
  SECTION("adjacent B-PER B-PER predicted as one entity: nothing right") {
    NerScorer s;
    s.add(split("B-PER B-PER"), split("B-PER I-PER"));
    CHECK(s.total().gold == 2);
    CHECK(s.total().predicted == 1);
    CHECK(s.total().correct == 0);
    CHECK(s.total().f1() == 0.0);
  }
  SECTION("an ill-formed I- start with the right span and type counts as correct (as conlleval)") {
    NerScorer s;
    s.add(split("O B-LOC I-LOC"), split("O I-LOC I-LOC"));
    CHECK(s.total().correct == 1);
    CHECK(s.total().f1() == 1.0);
  }
  SECTION("no predictions: P = R = F1 = 0, no NaN") {
    NerScorer s;
    s.add(split("B-PER O B-LOC"), split("O O O"));
    CHECK(s.total().predicted == 0);
    CHECK(s.total().precision() == 0.0);
    CHECK(s.total().recall() == 0.0);
    CHECK(s.total().f1() == 0.0);
    NerScorer empty;
    CHECK(empty.total().f1() == 0.0);
  }
  REQUIRE_THROWS_WITH(NerScorer().add(split("O O"), split("O")),
                      Catch::Contains("NerScorer: 2 gold tags but 1 predicted tags"));
}

TEST_CASE("the NER vocabulary maps rare and unseen words to their shape", "[ner]") {
  CHECK(word_shape("Blackburn") == "<unk:Aa>");
  CHECK(word_shape("EU") == "<unk:AA>");
  CHECK(word_shape("rejects") == "<unk:a>");
  CHECK(word_shape("1996-08-22") == "<unk:0>");
  CHECK(word_shape("--") == "<unk:.>");
  CHECK(word_shape("iPhone") == "<unk:aA>");
  Vocabulary v = build_ner_vocabulary({{"the", "Smith", "the"}, {"the", "EU", "EU"}}, 2, 0);
  CHECK(v.id("the") > Vocabulary::kUnk);
  CHECK(v.id("EU") > Vocabulary::kUnk);
  CHECK(v.id("Smith") == Vocabulary::kUnk);  // seen once: only its shape is in the vocabulary
  CHECK(ner_word_id(v, "Smith") == v.id("<unk:Aa>"));
  CHECK(ner_word_id(v, "Jones") == v.id("<unk:Aa>"));
  CHECK(ner_word_id(v, "zebra") == Vocabulary::kUnk);  // no lower-case rare word in training
  CHECK(encode_ner_words(v, {{"the", "Jones"}}) == std::vector<std::vector<int64_t>>{{v.id("the"), v.id("<unk:Aa>")}});
}

TEST_CASE("long sentences are cut into instances of L tokens, padding labelled -100", "[ner]") {
  NerInstances d = make_ner_instances({{5, 6, 7, 8, 9}, {3}}, {{1, 2, 0, 3, 4}, {7}}, 2, 0);
  REQUIRE(d.count() == 4);
  CHECK(d.sentence == std::vector<int64_t>{0, 0, 0, 1});
  CHECK(d.offset == std::vector<int64_t>{0, 2, 4, 0});
  CHECK(d.ids == std::vector<int64_t>{5, 6, 7, 8, 9, 0, 3, 0});
  CHECK(d.labels == std::vector<int64_t>{1, 2, 0, 3, 4, -100, 7, -100});
  NerInstances m = make_ner_instances({{5, 6, 7}}, {{1, 2, 0}}, 3, 0, 1);  // mlp demux: position 0 reserved
  CHECK(m.ids == std::vector<int64_t>{0, 5, 6, 0, 7, 0});
  CHECK(m.labels == std::vector<int64_t>{-100, 1, 2, -100, 0, -100});
  CHECK(m.offset == std::vector<int64_t>{0, 2});
  CHECK(m.shapes.empty());
  NerInstances s = make_ner_instances({{5, 6, 7}}, {{1, 2, 0}}, 2, 0, 0, {{3, 4, 3}});  // word-dropout ids
  CHECK(s.shapes == std::vector<int64_t>{3, 4, 3, 0});
  REQUIRE_THROWS_WITH(make_ner_instances({{5, 6}}, {{1, 2}}, 2, 0, 0, {{3}}),
                      Catch::Contains("sentence 0 has 2 words, 2 tags and 1 shapes"));
}

namespace {

// Generated tagging data: valid IOB2 tag sequences (O, PER and LOC entities of 1-3 tokens), and each
// token drawn from its tag's own 3 words, so the tag is a function of the token. Word ids: 0 pad,
// 1 unk, then 3 words per tag id in [O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC].
void generate(int64_t sentences, Generator& g, std::vector<std::vector<int64_t>>& words,
              std::vector<std::vector<int64_t>>& tags) {
  for (int64_t s = 0; s < sentences; ++s) {
    std::vector<int64_t> w, t;
    const int64_t len = 3 + int64_t(g.randint(6));
    while (int64_t(t.size()) < len) {
      const uint64_t kind = g.randint(4);  // 0, 1: O; 2: PER; 3: LOC
      if (kind < 2) {
        t.push_back(0);
      } else {
        const int64_t b = kind == 2 ? ner_tag_id("B-PER") : ner_tag_id("B-LOC");
        const int64_t span = 1 + int64_t(g.randint(3));
        for (int64_t k = 0; k < span && int64_t(t.size()) < len; ++k) t.push_back(k == 0 ? b : b + 1);
      }
    }
    for (int64_t tag : t) w.push_back(2 + 3 * tag + int64_t(g.randint(3)));
    words.push_back(w);
    tags.push_back(t);
  }
}

}  // namespace

TEST_CASE("T-MUX token classification learns generated tags at N = 2 through train_ner", "[ner]") {
  const auto t0 = std::chrono::steady_clock::now();
  Generator g(7);
  std::vector<std::vector<int64_t>> tw, tt, dw, dt;
  generate(300, g, tw, tt);
  generate(61, g, dw, dt);  // odd: the last mixed group is padded
  const int64_t L = 6;      // sentences of up to 8 tokens: some are cut in two
  NerInstances train = make_ner_instances(tw, tt, L, 0), dev = make_ner_instances(dw, dt, L, 0);
  REQUIRE(dev.count() % 2 == 1);

  mux::TMuxConfig c;
  c.vocab = 2 + 3 * 7;
  c.max_len = L;
  c.n = 2;
  c.d_model = 32;
  c.heads = 2;
  c.dim_feedforward = 64;
  c.layers = 1;
  c.task = "token";
  c.num_classes = 9;
  c.task_coeff = 0.9;
  c.retrieval_coeff = 0.1;
  c.pad_id = 0;
  Generator init(1);
  mux::TMux model(c, &init);
  model.pack_parameters();

  NerEval before = evaluate_ner(model, dev);
  NerTrainOptions o;
  o.steps = 60;
  o.batch = 16;
  o.lr = 3e-3;
  o.lr_warmup = 10;
  o.eval_every = 20;
  int64_t evals = 0;
  o.on_eval = [&](int64_t, double, const NerEval&) { evals++; };
  NerTrainResult r = train_ner(model, train, dev, o);
  NerEval after = evaluate_ner(model, dev);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("dev F1 before " << before.total.f1() << ", after " << after.total.f1() << " (best step " << r.best_step
                        << "), token accuracy " << after.token_accuracy << ", " << seconds << " s");
  CHECK(evals == 3);
  CHECK(r.steps_run == 60);
  // Every dev entity is scored exactly once, padding instances included in no count.
  int64_t gold = 0;
  for (const auto& t : dt) gold += int64_t(extract_entities([&] {
                                      std::vector<std::string> s;
                                      for (int64_t x : t) s.push_back(ner_tags()[size_t(x)]);
                                      return s;
                                    }()).size());
  CHECK(after.total.gold == gold);
  CHECK(after.total.f1() == r.best_dev_f1);  // the best parameters are the ones left in the model
  CHECK(before.total.f1() < 0.2);
  CHECK(after.total.f1() > 0.8);
}

TEST_CASE("--init copies the tensors whose name and shape match, and lists the others", "[ner]") {
  mux::TMuxConfig c;
  c.vocab = 11;
  c.max_len = 4;
  c.n = 2;
  c.d_model = 8;
  c.heads = 2;
  c.dim_feedforward = 16;
  c.layers = 1;
  c.task = "retrieval";  // a warm-up checkpoint: no task head
  Generator g1(1), g2(2);
  mux::TMux warm(c, &g1);
  const std::string path = "/tmp/muxnet_test_ner_init.safetensors";
  nn::save_checkpoint(path, warm);
  c.task = "token";
  c.num_classes = 9;
  c.task_coeff = 0.9;
  c.retrieval_coeff = 0.1;
  mux::TMux tok(c, &g2);
  nn::PartialLoad init = nn::load_matching(path, tok);  // what ner --init does
  REQUIRE_FALSE(init.fresh.empty());
  for (const auto& s : init.fresh) CHECK(s.rfind("demux.", 0) == 0);  // only the new task head is left
  CHECK(init.mismatched.empty());
  CHECK(allclose(tok.word->weight, warm.word->weight, 0, 0));
  c.n = 1;  // one index token fewer: the embedding and position tables differ in shape
  c.multiplex = false;
  mux::TMux one(c, &g2);
  init = nn::load_matching(path, one);
  REQUIRE_FALSE(init.mismatched.empty());
  CHECK(std::count_if(init.mismatched.begin(), init.mismatched.end(),
                      [](const std::string& m) { return m.rfind("word.weight: ", 0) == 0; }) == 1);
}
