// text_data.cpp — the SST-2 reader and the vocabulary.
#include "tasks/common/text_data.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tasks/common/cli.h"

namespace muxnet::tasks {

namespace {

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) out.push_back(tok);
  return out;
}

}  // namespace

LabeledSentences read_sst2(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open SST-2 file " + path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (text.empty()) throw InputError(path + ": empty file (expected the header 'sentence<TAB>label')");
  LabeledSentences out;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    ++line_no;
    if (end == std::string::npos) {
      // Every row ends with LF; a last line without one is what an interrupted copy leaves.
      throw InputError(path + ":" + std::to_string(line_no) + ": truncated: the last line has no newline (expected '" +
                       (line_no == 1 ? "sentence<TAB>label" : "<sentence><TAB><0|1>") + "' and LF)");
    }
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') {
      throw InputError(path + ":" + std::to_string(line_no) + ": CRLF line ending (expected LF)");
    }
    if (line_no == 1) {
      if (line != "sentence\tlabel") {
        throw InputError(path + ":1: expected the header 'sentence<TAB>label', got '" + line.substr(0, 60) + "'");
      }
      continue;
    }
    size_t tab = line.find('\t');
    if (tab == std::string::npos || line.find('\t', tab + 1) != std::string::npos) {
      throw InputError(path + ":" + std::to_string(line_no) + ": expected '<sentence><TAB><label>' (two fields)");
    }
    std::string label = line.substr(tab + 1);
    if (label != "0" && label != "1") {
      throw InputError(path + ":" + std::to_string(line_no) + ": label must be 0 or 1, got '" + label.substr(0, 20) + "'");
    }
    std::vector<std::string> tokens = split_spaces(line.substr(0, tab));
    if (tokens.empty()) throw InputError(path + ":" + std::to_string(line_no) + ": empty sentence");
    out.tokens.push_back(std::move(tokens));
    out.labels.push_back(label == "1" ? 1 : 0);
  }
  if (out.tokens.empty()) throw InputError(path + ": no rows after the header");
  return out;
}

Vocabulary Vocabulary::build(const std::vector<std::vector<std::string>>& sentences, int64_t min_count,
                             int64_t max_size) {
  std::map<std::string, int64_t> counts;
  for (const auto& s : sentences) {
    for (const auto& w : s) counts[w]++;
  }
  std::vector<std::pair<std::string, int64_t>> items(counts.begin(), counts.end());
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  Vocabulary v;
  v.words_ = {"<pad>", "<unk>"};
  for (const auto& [w, c] : items) {
    if (c < min_count) break;
    if (max_size > 0 && int64_t(v.words_.size()) >= max_size) break;
    v.words_.push_back(w);
  }
  for (size_t i = 0; i < v.words_.size(); ++i) v.index_[v.words_[i]] = int64_t(i);
  return v;
}

int64_t Vocabulary::id(const std::string& word) const {
  auto it = index_.find(word);
  return it == index_.end() ? kUnk : it->second;
}

const std::string& Vocabulary::word(int64_t id) const { return words_.at(size_t(id)); }

std::vector<int64_t> Vocabulary::encode(const std::vector<std::string>& tokens, int64_t length) const {
  std::vector<int64_t> out(size_t(length), kPad);
  for (int64_t i = 0; i < length && i < int64_t(tokens.size()); ++i) out[size_t(i)] = id(tokens[size_t(i)]);
  return out;
}

std::string Vocabulary::to_json() const { return nlohmann::json(words_).dump(); }

Vocabulary Vocabulary::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw InputError(std::string("vocabulary: not valid JSON: ") + e.what());
  }
  if (!j.is_array() || j.size() < 2) throw InputError("vocabulary: expected a JSON list of at least 2 words");
  Vocabulary v;
  for (const auto& w : j) {
    if (!w.is_string()) throw InputError("vocabulary: every entry must be a string");
    v.words_.push_back(w.get<std::string>());
    if (!v.index_.emplace(v.words_.back(), int64_t(v.words_.size()) - 1).second) {
      throw InputError("vocabulary: the word '" + v.words_.back() + "' appears twice (ids " +
                       std::to_string(v.index_.at(v.words_.back())) + " and " + std::to_string(v.words_.size() - 1) + ")");
    }
  }
  if (v.words_[0] != "<pad>" || v.words_[1] != "<unk>") {
    throw InputError("vocabulary: ids 0 and 1 must be <pad> and <unk>");
  }
  return v;
}

}  // namespace muxnet::tasks
