// conll_data.h — CoNLL-2003 NER sentences (../shared/data/README.md §3) and the 9 IOB2 tags.
//
// The format: one token per line, 4 columns separated by single spaces, "WORD POS CHUNK NER"; sentences
// separated by an empty line; each document opens with "-DOCSTART- -X- -X- O" followed by an empty
// line (both skipped). NER tags are IOB2: O, B-X, I-X with X in {PER, ORG, LOC, MISC}, and an I-X
// continues an entity of type X, so it must follow B-X or I-X. The reader rejects anything else (a
// wrong column count, an unknown tag, an I-X that starts an entity — an IOB1 file —, a CRLF line
// ending, a file that does not end with a newline, an empty file) with the file name, the line number
// and what it expected. Only WORD and NER are kept; POS and CHUNK are read past.
#pragma once

#include <string>
#include <vector>

namespace muxnet::tasks {

// The label set in a fixed order (the Hugging Face conll2003 order): ids 0..8.
const std::vector<std::string>& ner_tags();
// The tag's id, or -1 when it is not one of ner_tags().
int64_t ner_tag_id(const std::string& tag);

struct TaggedSentences {
  std::vector<std::vector<std::string>> tokens;  // one word list per sentence
  std::vector<std::vector<int64_t>> tags;        // ner_tags() ids, same lengths
  int64_t documents = 0;                         // -DOCSTART- lines seen
};

// Reads a CoNLL-2003 file (train.txt / valid.txt / test.txt). Throws InputError naming file and line.
TaggedSentences read_conll2003(const std::string& path);

}  // namespace muxnet::tasks
