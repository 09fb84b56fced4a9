// text_data.h — SST-2 sentences and a word-level vocabulary.
//
// SST-2 (../shared/data/README.md §2): UTF-8, LF line endings, a header line "sentence<TAB>label", then
// rows "<sentence><TAB><0|1>"; sentences are lower-cased and PTB-tokenised (tokens separated by
// spaces), most with a trailing space before the TAB. The reader rejects a malformed or truncated
// file with the file name, the line number and what it expected.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

namespace muxnet::tasks {

struct LabeledSentences {
  std::vector<std::vector<std::string>> tokens;  // one token list per row
  std::vector<int64_t> labels;
};

// Reads an SST-2 train/dev file (with labels). Throws InputError naming the file and line.
LabeledSentences read_sst2(const std::string& path);

// Word-level vocabulary: id 0 is <pad>, id 1 is <unk>, then words by decreasing count (ties by the
// word's bytes), keeping those seen at least min_count times, at most max_size ids in all.
class Vocabulary {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kUnk = 1;
  static Vocabulary build(const std::vector<std::vector<std::string>>& sentences, int64_t min_count = 1,
                          int64_t max_size = 0);
  int64_t size() const { return int64_t(words_.size()); }
  int64_t id(const std::string& word) const;  // kUnk when absent
  const std::string& word(int64_t id) const;
  // Exactly `length` ids: truncated, or padded with kPad.
  std::vector<int64_t> encode(const std::vector<std::string>& tokens, int64_t length) const;
  // A JSON list of the words in id order (stored in checkpoint metadata), and back.
  std::string to_json() const;
  static Vocabulary from_json(const std::string& json);

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> index_;
};

}  // namespace muxnet::tasks
