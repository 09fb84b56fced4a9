// ner_metrics.cpp — conlleval's entity extraction and the micro-averaged scores.
#include "tasks/common/ner_metrics.h"

#include <algorithm>
#include <tuple>

#include "tensor/check.h"

namespace muxnet::tasks {

bool Entity::operator<(const Entity& o) const {
  return std::tie(start, end, type) < std::tie(o.start, o.end, o.type);
}

std::vector<Entity> extract_entities(const std::vector<std::string>& tags) {
  std::vector<Entity> out;
  bool open = false;
  Entity cur;
  for (size_t t = 0; t <= tags.size(); ++t) {
    char prefix = 'O';
    std::string type;
    if (t < tags.size()) {
      const std::string& tag = tags[t];
      const bool ok = tag == "O" || (tag.size() > 2 && (tag[0] == 'B' || tag[0] == 'I') && tag[1] == '-');
      MUXNET_CHECK(ok, "extract_entities: tag '", tag, "' at position ", t, " is not O, B-X or I-X");
      prefix = tag[0];
      if (prefix != 'O') type = tag.substr(2);
    }
    // conlleval endOfChunk: O, B-, a type change or the sentence end closes the open entity.
    if (open && (prefix != 'I' || type != cur.type)) {
      cur.end = int64_t(t);
      out.push_back(cur);
      open = false;
    }
    // conlleval startOfChunk: B-X, or I-X with nothing of type X open (after O or another type).
    if (prefix == 'B' || (prefix == 'I' && !open)) {
      cur = Entity{type, int64_t(t), 0};
      open = true;
    }
  }
  return out;
}

double EntityScores::f1() const {
  const double p = precision(), r = recall();
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

void NerScorer::add(const std::vector<std::string>& gold, const std::vector<std::string>& predicted) {
  MUXNET_CHECK(gold.size() == predicted.size(), "NerScorer: ", gold.size(), " gold tags but ", predicted.size(),
               " predicted tags");
  std::vector<Entity> g = extract_entities(gold), p = extract_entities(predicted);
  std::sort(g.begin(), g.end());
  for (const Entity& e : g) {
    total_.gold++;
    per_type_[e.type].gold++;
  }
  for (const Entity& e : p) {
    total_.predicted++;
    per_type_[e.type].predicted++;
    if (std::binary_search(g.begin(), g.end(), e)) {
      total_.correct++;
      per_type_[e.type].correct++;
    }
  }
}

}  // namespace muxnet::tasks
