// jsonl2dat.cpp — turns a runs/*.jsonl metrics file into a gnuplot data file: one row per x value,
// the latest matching line winning (so a rerun replaces the older point), rows sorted by x.
//
//   jsonl2dat FILE X Y[,Y2...] [KEY=VALUE ...] [--percent]
//
// X, Y: top-level keys of the JSON lines. Each Y column may list alternatives separated by '|' (the
// first present wins, e.g. "test_acc|mean_acc"). KEY=VALUE keeps only lines whose KEY equals VALUE
// (strings by value, numbers and booleans as JSON writes them: n=5, baseline=false). --percent scales
// values in [0, 1] by 100. Lines that are not JSON objects, or lack X or a Y, are skipped. A missing
// FILE prints nothing and exits 0, so plots of tasks that have not run yet come out empty.
// Output: "x y1 y2 ..." per row; exit 2 with one line on bad arguments.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

std::string as_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// The first alternative of `alts` that is a number in `rec`, or nullptr.
const nlohmann::json* find_number(const nlohmann::json& rec, const std::vector<std::string>& alts) {
  for (const std::string& k : alts) {
    auto it = rec.find(k);
    if (it != rec.end() && it->is_number()) return &*it;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: jsonl2dat FILE X Y[,Y2...] [KEY=VALUE ...] [--percent]\n";
    return 2;
  }
  const std::string path = argv[1], xkey = argv[2];
  std::vector<std::vector<std::string>> ycols;
  for (const std::string& col : split(argv[3], ',')) ycols.push_back(split(col, '|'));
  std::vector<std::pair<std::string, std::string>> filters;
  bool percent = false;
  for (int i = 4; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--percent") {
      percent = true;
      continue;
    }
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "error: jsonl2dat: expected KEY=VALUE or --percent, got '" << a << "'\n";
      return 2;
    }
    filters.emplace_back(a.substr(0, eq), a.substr(eq + 1));
  }
  std::ifstream in(path);
  if (!in) return 0;  // that task has not written metrics yet

  std::map<double, std::vector<double>> rows;  // x -> ys, the latest line wins
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json rec = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!rec.is_object()) continue;
    bool keep = true;
    for (const auto& [k, v] : filters) {
      auto it = rec.find(k);
      keep = keep && it != rec.end() && as_text(*it) == v;
    }
    auto xv = rec.find(xkey);
    if (!keep || xv == rec.end() || !xv->is_number()) continue;
    std::vector<double> ys;
    for (const auto& alts : ycols) {
      const nlohmann::json* y = find_number(rec, alts);
      if (!y) break;
      double v = y->get<double>();
      ys.push_back(percent && v >= 0.0 && v <= 1.0 ? 100.0 * v : v);
    }
    if (ys.size() == ycols.size()) rows[xv->get<double>()] = ys;
  }
  for (const auto& [x, ys] : rows) {
    std::cout << x;
    for (double y : ys) std::cout << ' ' << y;
    std::cout << '\n';
  }
  return 0;
}
