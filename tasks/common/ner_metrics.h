// ner_metrics.h — entity-level precision, recall and F1, as conlleval (the CoNLL-2000/2003 scorer)
// computes them.
//
// Entities are extracted from each IOB tag sequence with conlleval's chunk rules (tags "O", "B-X",
// "I-X"; a sentence boundary closes everything):
//   an entity starts at t when tag_t is B-X, or tag_t is I-X and tag_{t-1} is O or of another type
//     (so an ill-formed I-X start is an entity, as conlleval counts it);
//   it ends before t when tag_t is O, B-anything, or of another type.
// A predicted entity is correct when an entity of the same type spans exactly the same tokens in the
// gold sequence (conlleval's in-sync start and end test is the same thing). Micro-averaged:
//   precision = correct / predicted, recall = correct / gold, F1 = 2PR / (P + R),
// each 0 when its denominator is 0 (conlleval prints 0 there too, never NaN). Per-type figures use the
// same formulas on the entities of one type. Fractions in [0, 1]; conlleval prints them ×100.
// What this is not: the IOBES (E-, S-) tags or conlleval's token accuracy.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace muxnet::tasks {

struct Entity {
  std::string type;
  int64_t start = 0, end = 0;  // tokens [start, end)
  bool operator==(const Entity& o) const { return type == o.type && start == o.start && end == o.end; }
  bool operator<(const Entity& o) const;
};

// The entities of one sentence's tags. Throws muxnet::Error on a tag that is not O, B-X or I-X.
std::vector<Entity> extract_entities(const std::vector<std::string>& tags);

struct EntityScores {
  int64_t correct = 0, predicted = 0, gold = 0;
  double precision() const { return predicted ? double(correct) / double(predicted) : 0.0; }
  double recall() const { return gold ? double(correct) / double(gold) : 0.0; }
  double f1() const;
};

// Accumulates sentences, then reports the totals and per-type scores.
class NerScorer {
 public:
  // gold and predicted tags of one sentence (same length, else muxnet::Error).
  void add(const std::vector<std::string>& gold, const std::vector<std::string>& predicted);
  const EntityScores& total() const { return total_; }
  const std::map<std::string, EntityScores>& per_type() const { return per_type_; }

 private:
  EntityScores total_;
  std::map<std::string, EntityScores> per_type_;
};

}  // namespace muxnet::tasks
