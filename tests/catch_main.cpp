// catch_main.cpp — the test binary's main: Catch2, except that [cuda] tests are skipped, never run and
// never passed, when no CUDA GPU is usable.
//
// Catch2 v2 has no SKIP, so main decides before the run: it parses the command line, finds the test
// cases the user's filter selects, and if some carry the [cuda] tag and device_available(CUDA) is false
// it prints "SKIPPED (no GPU): <test> — <reason>" for each and runs the rest. A filter that selects only
// [cuda] tests then exits 0 after a summary line instead of failing. With a GPU (or with
// MUXNET_EMULATE_CUDA=1, which makes the device available) nothing changes.
//
// How the rest is run. Catch2 v2 builds its test spec from the positional arguments like this
// (TestSpecParser in catch.hpp): commas separate filters that are OR-ed; the patterns inside one filter
// are AND-ed; and separate ARGUMENTS do not start a new filter — they all extend the current one.
// So `muxnet_tests "[a],[b]" "[c]"` means [a] OR ([b] AND [c]), and appending one more argument
// "~[cuda]" would exclude [cuda] from the last filter only. Instead main splits the arguments into
// their filters and gives EACH filter its own "~[cuda]", separating filters with a "," argument (an
// argument of its own that Catch reads as a separator, as it does for -f files). Filters that selected
// only [cuda] tests are dropped, so Catch does not report them as matching nothing; filters that
// matched nothing to begin with are kept, so a mistyped filter still fails as before.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "tensor/device.h"

namespace {

bool is_cuda_test(const Catch::TestCaseInfo& test) {
  return std::find(test.lcaseTags.begin(), test.lcaseTags.end(), "cuda") != test.lcaseTags.end();
}

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// One filter of the user's test spec: the text it was built from, one piece per argument it spans.
using Filter = std::vector<std::string>;

// The filters Catch builds from the arguments, in order, without the empty ones (",," or a trailing
// comma make none). A backslash escapes the next character, a comma included, as in Catch.
std::vector<Filter> split_filters(const std::vector<std::string>& args) {
  std::vector<Filter> filters(1);
  for (const std::string& arg : args) {
    std::string piece;
    for (size_t i = 0; i < arg.size(); ++i) {
      if (arg[i] == '\\' && i + 1 < arg.size()) {
        piece += arg[i];
        piece += arg[++i];
      } else if (arg[i] == ',') {
        filters.back().push_back(piece);
        piece.clear();
        filters.emplace_back();
      } else {
        piece += arg[i];
      }
    }
    filters.back().push_back(piece);
  }
  std::vector<Filter> out;
  for (const Filter& f : filters) {
    Filter kept;
    for (const std::string& piece : f) {
      if (Catch::parseTestSpec(trim(piece)).hasFilters()) kept.push_back(trim(piece));
    }
    if (!kept.empty()) out.push_back(kept);
  }
  return out;
}

// "[#test_device]" for a test in tests/test_device.cpp: what Catch's -# (--filenames-as-tags) adds.
void add_filename_tag(Catch::TestCase& test) {
  std::string name = test.lineInfo.file;
  const size_t slash = name.find_last_of("\\/");
  if (slash != std::string::npos) name.erase(0, slash + 1);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos) name.erase(dot);
  std::vector<std::string> tags = test.tags;
  tags.push_back("#" + name);
  Catch::setTags(test, tags);
}

std::string plural(size_t n, const char* word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

}  // namespace

int main(int argc, char* argv[]) {
  Catch::Session session;
  const int parse_rc = session.applyCommandLine(argc, argv);
  if (parse_rc != 0) return parse_rc;
  Catch::ConfigData data = session.configData();
  if (data.showHelp || data.libIdentify || data.listTests || data.listTestNamesOnly || data.listTags ||
      data.listReporters) {
    return session.run();
  }

  // What the user's filter selects: one match list per filter, or every visible test without one.
  Catch::Config& config = session.config();
  const Catch::TestSpec& spec = config.testSpec();
  if (!spec.getInvalidArgs().empty()) return session.run();  // Catch reports the bad argument
  // Copies: with -# the file tags are added to them the way Catch adds them to its own copies at run
  // time, so filters like "[#test_device]" select here what they will select there.
  std::vector<Catch::TestCase> all = Catch::getRegistryHub().getTestCaseRegistry().getAllTests();
  if (data.filenamesAsTags) {
    for (Catch::TestCase& test : all) add_filename_tag(test);
  }
  const Catch::TestSpec::Matches matches = spec.matchesByFilter(all, config);
  std::vector<const Catch::TestCase*> cuda_tests;
  size_t other_tests = 0;
  for (const Catch::TestCase& test : all) {
    bool selected = false;
    if (matches.empty()) {
      selected = !test.isHidden();
    } else {
      for (const auto& match : matches) {
        selected = selected || std::find(match.tests.begin(), match.tests.end(), &test) != match.tests.end();
      }
    }
    if (!selected) continue;
    if (is_cuda_test(test)) {
      cuda_tests.push_back(&test);
    } else {
      ++other_tests;
    }
  }
  if (cuda_tests.empty()) return session.run();

  // Asked only now, after Catch parsed the arguments, and only when [cuda] tests were selected.
  std::string reason;
  try {
    reason = muxnet::device_unavailable_reason(muxnet::Device::CUDA);
  } catch (const std::exception& e) {
    reason = e.what();
  }
  if (reason.empty()) return session.run();

  // Machine-readable reports on stdout (xml, junit, ...) must stay parseable: skip lines go to stderr.
  const bool human = data.reporterName == "console" || data.reporterName == "compact" || !data.outputFilename.empty();
  std::ostream& out = human ? std::cout : std::cerr;
  for (const Catch::TestCase* test : cuda_tests) out << "SKIPPED (no GPU): " << test->name << " — " << reason << "\n";
  const std::string summary = plural(cuda_tests.size(), "CUDA test") + " skipped: " + reason;
  const bool filter_matched_nothing =
      std::any_of(matches.begin(), matches.end(), [](const auto& m) { return m.tests.empty(); });
  if (other_tests == 0 && !filter_matched_nothing) {
    out << summary << std::endl;
    return 0;  // only [cuda] tests were asked for: skipped, which is not a failure
  }
  out.flush();

  // Run the rest: every filter gets "~[cuda]" (see the header comment).
  std::vector<std::string> args;
  if (!data.testsOrTags.empty()) {
    const std::vector<Filter> filters = split_filters(data.testsOrTags);
    const bool aligned = filters.size() == matches.size();  // else keep every filter (a safe superset)
    for (size_t i = 0; i < filters.size(); ++i) {
      if (aligned && !matches[i].tests.empty() &&
          std::all_of(matches[i].tests.begin(), matches[i].tests.end(),
                      [](const Catch::TestCase* t) { return is_cuda_test(*t); })) {
        continue;
      }
      if (!args.empty()) args.push_back(",");
      args.push_back("~[cuda]");
      args.insert(args.end(), filters[i].begin(), filters[i].end());
    }
  }
  if (args.empty()) args = {"~[cuda]~[.]"};  // no filter: Catch's default is every test that is not hidden
  data.testsOrTags = args;
  session.useConfigData(data);
  const int rc = session.run();
  out << summary << std::endl;
  return rc;
}
