// test_text_data.cpp — the SST-2 reader and the vocabulary on small generated files, and the task
// helpers (list flags, data directory). Real data is not needed.
#include <algorithm>
#include <cstdio>
#include <fstream>

#include "tasks/common/cli.h"
#include "tasks/common/text_data.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;
using muxnet::test::write_temp;

TEST_CASE("SST-2 rows are read with their labels", "[tasks][sst2][text]") {
  std::string p = write_temp("sst2_ok.tsv", "sentence\tlabel\nhide new secretions from the parental units \t0\n"
                                            "a gorgeous , witty film\t1\n");
  LabeledSentences s = read_sst2(p);
  REQUIRE(s.tokens.size() == 2);
  CHECK(s.tokens[0] == std::vector<std::string>{"hide", "new", "secretions", "from", "the", "parental", "units"});
  CHECK(s.labels == std::vector<int64_t>{0, 1});
}

TEST_CASE("malformed or truncated SST-2 files are rejected with file and line", "[tasks][sst2][text]") {
  auto err = [](const std::string& name, const std::string& content) {
    std::string p = write_temp(name, content);
    try {
      read_sst2(p);
    } catch (const InputError& e) {
      std::string m = e.what();
      return m.substr(m.find(name));  // drop the temp directory
    }
    return std::string("no error");
  };
  CHECK(err("a.tsv", "sentence\tlabel\nfine\t1\ncut off wi") ==
        "a.tsv:3: truncated: the last line has no newline (expected '<sentence><TAB><0|1>' and LF)");
  CHECK(err("a2.tsv", "sentence\tlab") ==
        "a2.tsv:1: truncated: the last line has no newline (expected 'sentence<TAB>label' and LF)");
  CHECK(err("a3.tsv", "sentence\tlabel\nfine\t1\nfine\t") == "a3.tsv:3: truncated: the last line has no newline "
                                                                "(expected '<sentence><TAB><0|1>' and LF)");
  CHECK(err("a4.tsv", "sentence\tlabel\nfine\t1\n\nmore\t0\n") == "a4.tsv:3: expected '<sentence><TAB><label>' (two fields)");
  CHECK(err("a5.tsv", "sentence\tlabel\nx\t1\ty\n") == "a5.tsv:2: expected '<sentence><TAB><label>' (two fields)");
  CHECK(err("b.tsv", "index\tsentence\n0\tx\n") == "b.tsv:1: expected the header 'sentence<TAB>label', got 'index\tsentence'");
  CHECK(err("c.tsv", "sentence\tlabel\nno tab here\n") == "c.tsv:2: expected '<sentence><TAB><label>' (two fields)");
  CHECK(err("d.tsv", "sentence\tlabel\ngood\t1\nbad\t2\n") == "d.tsv:3: label must be 0 or 1, got '2'");
  CHECK(err("e.tsv", "sentence\tlabel\n \t1\n") == "e.tsv:2: empty sentence");
  CHECK(err("f.tsv", "sentence\tlabel\r\nx\t1\r\n") == "f.tsv:1: CRLF line ending (expected LF)");
  CHECK(err("g.tsv", "sentence\tlabel\n") == "g.tsv: no rows after the header");
  CHECK(err("h.tsv", "") == "h.tsv: empty file (expected the header 'sentence<TAB>label')");
  REQUIRE_THROWS_WITH(read_sst2("/nonexistent/train.tsv"), "cannot open SST-2 file /nonexistent/train.tsv");
}

TEST_CASE("the vocabulary orders words by count and round-trips", "[tasks][vocab][text]") {
  std::vector<std::vector<std::string>> s = {{"b", "a", "b"}, {"c", "b", "a"}, {"d"}};
  Vocabulary v = Vocabulary::build(s);
  CHECK(v.size() == 6);
  CHECK(v.word(0) == "<pad>");
  CHECK(v.word(1) == "<unk>");
  CHECK(v.word(2) == "b");  // 3 times
  CHECK(v.word(3) == "a");  // 2 times
  CHECK(v.id("zzz") == Vocabulary::kUnk);
  CHECK(v.encode({"a", "zzz", "b"}, 5) == std::vector<int64_t>{3, 1, 2, 0, 0});
  CHECK(v.encode({"a", "b", "c"}, 2) == std::vector<int64_t>{3, 2});
  Vocabulary min2 = Vocabulary::build(s, 2);
  CHECK(min2.size() == 4);
  CHECK(min2.id("c") == Vocabulary::kUnk);  // seen once: below min_count, so <unk>
  CHECK(min2.id("a") == 3);
  Vocabulary capped = Vocabulary::build(s, 1, 3);
  CHECK(capped.size() == 3);
  Vocabulary back = Vocabulary::from_json(v.to_json());
  CHECK(back.size() == v.size());
  CHECK(back.id("c") == v.id("c"));
  REQUIRE_THROWS_WITH(Vocabulary::from_json("{"), Catch::StartsWith("vocabulary: not valid JSON"));
  REQUIRE_THROWS_WITH(Vocabulary::from_json("[\"a\", \"b\"]"), "vocabulary: ids 0 and 1 must be <pad> and <unk>");
  REQUIRE_THROWS_WITH(Vocabulary::from_json("[\"<pad>\", \"<unk>\", \"x\", \"x\"]"),
                      "vocabulary: the word 'x' appears twice (ids 2 and 3)");
  REQUIRE_THROWS_WITH(Vocabulary::from_json("[\"<pad>\", \"<unk>\", 3]"), "vocabulary: every entry must be a string");
}

TEST_CASE("task helpers: list flags and the data directory", "[tasks]") {
  CHECK(parse_int_list("2,5,10", "--n") == std::vector<int64_t>{2, 5, 10});
  REQUIRE_THROWS_WITH(parse_int_list("2,x", "--n"), "--n: '2,x' is not a comma-separated list of integers");
  CHECK(data_dir("/tmp") == "/tmp");
  REQUIRE_THROWS_WITH(data_dir("/nonexistent-dir"),
                      "data directory '/nonexistent-dir' (from --data-dir) does not exist; pass --data-dir or set "
                      "MUXNET_DATA (see ../shared/data/README.md)");
}

TEST_CASE("task helpers: number flags say the bound and the value they rejected", "[tasks]") {
  int64_t steps = 7;
  double lr = 0.5;
  CLI::App app{"t", "t"};
  app.add_option("--steps", steps)->check(kNonNegative);
  app.add_option("--lr", lr)->check(kPositive);
  auto parse = [&](std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last-first
    app.parse(args);
  };
  parse({"--steps", "0", "--lr", "1e-3"});
  CHECK(steps == 0);
  CHECK(lr == Approx(1e-3));
  REQUIRE_THROWS_WITH(parse({"--steps", "3000,3000"}), "--steps: expected a number >= 0, got '3000,3000'");
  REQUIRE_THROWS_WITH(parse({"--steps", "-1"}), "--steps: expected a number >= 0, got -1");
  REQUIRE_THROWS_WITH(parse({"--lr", "0"}), "--lr: expected a number > 0, got 0");
  REQUIRE_THROWS_WITH(parse({"--lr", "nan"}), "--lr: expected a number > 0, got nan");
}

TEST_CASE("the real SST-2 files parse (skipped without the data)", "[tasks][sst2][text][data]") {
  const char* env = std::getenv("MUXNET_DATA");
  std::string dir = env && *env ? env : "../shared/data";
  std::ifstream probe(dir + "/sst2/train.tsv");
  if (!probe) {
    WARN("SST-2 not found under " << dir << ": skipped");
    return;
  }
  LabeledSentences train = read_sst2(dir + "/sst2/train.tsv");
  LabeledSentences dev = read_sst2(dir + "/sst2/dev.tsv");
  CHECK(train.tokens.size() == 67349);  // the official GLUE counts (../shared/data/README.md)
  CHECK(dev.tokens.size() == 872);
  int64_t pos = 0;
  for (int64_t l : dev.labels) pos += l;
  CHECK(pos == 444);
}
