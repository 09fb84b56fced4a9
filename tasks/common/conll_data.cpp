// conll_data.cpp — the CoNLL-2003 reader.
#include "tasks/common/conll_data.h"

#include <fstream>
#include <iterator>

#include "tasks/common/cli.h"

namespace muxnet::tasks {

const std::vector<std::string>& ner_tags() {
  static const std::vector<std::string> tags = {"O",     "B-PER", "I-PER",  "B-ORG", "I-ORG",
                                                "B-LOC", "I-LOC", "B-MISC", "I-MISC"};
  return tags;
}

int64_t ner_tag_id(const std::string& tag) {
  const auto& tags = ner_tags();
  for (size_t i = 0; i < tags.size(); ++i) {
    if (tags[i] == tag) return int64_t(i);
  }
  return -1;
}

namespace {

std::vector<std::string> split_on_space(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ' ') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

}  // namespace

TaggedSentences read_conll2003(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open CoNLL-2003 file " + path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (text.empty()) throw InputError(path + ": empty file (expected lines 'WORD POS CHUNK NER')");
  if (text.back() != '\n') throw InputError(path + ": the file does not end with a newline (truncated?)");

  TaggedSentences out;
  std::vector<std::string> words;
  std::vector<int64_t> tags;
  auto end_sentence = [&] {
    if (words.empty()) return;
    out.tokens.push_back(std::move(words));
    out.tags.push_back(std::move(tags));
    words.clear();
    tags.clear();
  };
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (!line.empty() && line.back() == '\r') throw InputError(where + "CRLF line ending (expected LF)");
    if (line.empty()) {
      end_sentence();
      continue;
    }
    std::vector<std::string> cols = split_on_space(line);
    if (cols.size() != 4) {
      throw InputError(where + "expected 4 space-separated columns 'WORD POS CHUNK NER', got " +
                       std::to_string(cols.size()) + " in '" + line.substr(0, 60) + "'");
    }
    for (const auto& c : cols) {
      if (c.empty()) throw InputError(where + "empty column (expected single spaces between 4 columns)");
    }
    if (cols[0] == "-DOCSTART-") {
      if (!words.empty()) throw InputError(where + "-DOCSTART- inside a sentence (expected an empty line before it)");
      out.documents++;
      continue;
    }
    const int64_t tag = ner_tag_id(cols[3]);
    if (tag < 0) {
      throw InputError(where + "unknown NER tag '" + cols[3].substr(0, 20) +
                       "' (expected O, B-X or I-X with X in PER, ORG, LOC, MISC)");
    }
    if (cols[3][0] == 'I') {
      // IOB2: I-X continues an entity of type X. After anything else it would start one (IOB1).
      const std::string type = cols[3].substr(2);
      const std::string prev = tags.empty() ? "O" : ner_tags()[size_t(tags.back())];
      if (prev == "O" || prev.substr(2) != type) {
        throw InputError(where + cols[3] + " follows " + (tags.empty() ? "the sentence start" : prev) +
                         ": not IOB2 (expected B-" + type + " to start the entity; an IOB1 file?)");
      }
    }
    words.push_back(cols[0]);
    tags.push_back(tag);
  }
  end_sentence();
  if (out.tokens.empty()) throw InputError(path + ": no sentences (expected lines 'WORD POS CHUNK NER')");
  return out;
}

}  // namespace muxnet::tasks
