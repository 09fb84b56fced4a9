// ner_train.h — T-MUX token classification (NER): the data layout, training with best-on-dev
// selection, and conlleval-style evaluation. tasks/ner.cpp and the [ner] tests call the same code.
//
// Instances. A sentence becomes ceil(len / L) instances of at most L tokens (so no token is dropped
// and every gold entity is scored); each is padded to L with the pad id and label -100. Predictions of
// a sentence's pieces are put back together before scoring.
// Mixed groups. A training step draws B·N instances from a shuffled epoch order; rows b·N + i form
// mixed sequence b. Evaluation walks the instances in order and pads the last group with instances
// from the start of the set, whose predictions are dropped, so every instance is predicted inside a
// full group of N and counted once.
// Loss: TMuxConfig's task_coeff · CE(task) + retrieval_coeff · CE(retrieval). An optional retrieval
// warm-up (PAPER.md §1.5) first trains on the retrieval loss alone, with its own AdamW, before the
// task optimizer starts from zero state (as finetuning from a warm-up checkpoint does).
// Device: the model may live on any device (Module::to before train_ner); batches go to its parameters'
// device, predictions and metrics come back to the host.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mux/tmux.h"
#include "tasks/common/conll_data.h"
#include "tasks/common/ner_metrics.h"
#include "tasks/common/text_data.h"

namespace muxnet::tasks {

// Vocabulary with word-shape classes: words seen fewer than min_count times in training are replaced
// by a shape token ("<unk:Aa>" capitalised, "<unk:AA>" all caps, "<unk:a>" lower case, "<unk:0>" with
// a digit, "<unk:.>" no letter or digit, "<unk:aA>" other), so an unseen name still looks like one.
std::string word_shape(const std::string& word);
Vocabulary build_ner_vocabulary(const std::vector<std::vector<std::string>>& sentences, int64_t min_count,
                                int64_t max_size);
// The word's id, else its shape's id, else Vocabulary::kUnk.
int64_t ner_word_id(const Vocabulary& vocab, const std::string& word);
std::vector<std::vector<int64_t>> encode_ner_words(const Vocabulary& vocab,
                                                   const std::vector<std::vector<std::string>>& sentences);
// The id of each word's shape class (Vocabulary::kUnk when the class is not in the vocabulary): what
// word dropout replaces a word with.
std::vector<std::vector<int64_t>> encode_ner_shapes(const Vocabulary& vocab,
                                                    const std::vector<std::vector<std::string>>& sentences);

struct NerInstances {
  int64_t len = 0;                         // L
  int64_t start = 0;                       // first position holding a token (1 for the mlp demux)
  std::vector<int64_t> ids, labels;        // (count, L) row-major; labels -100 on padding
  std::vector<int64_t> shapes;             // (count, L) the word-dropout replacements, or empty
  std::vector<int64_t> sentence, offset;   // per instance: its sentence and its first token there
  std::vector<std::vector<int64_t>> gold;  // per sentence: the gold tag ids (ner_tags())
  int64_t count() const { return int64_t(sentence.size()); }
};
// words[s] and tags[s]: sentence s as token ids (in [0, vocab)) and tag ids; pad_id fills the padding.
// Tokens go at positions start .. L-1 (start = 1 leaves position 0 to the mlp demux's CLS). shapes
// (optional, laid out like words) are the word-dropout replacements.
NerInstances make_ner_instances(const std::vector<std::vector<int64_t>>& words,
                                const std::vector<std::vector<int64_t>>& tags, int64_t len, int64_t pad_id,
                                int64_t start = 0, const std::vector<std::vector<int64_t>>& shapes = {});

struct NerEval {
  EntityScores total;
  std::map<std::string, EntityScores> per_type;
  double token_accuracy = 0;  // over every gold token
};
// Predicts every instance (groups of model.config.n, `groups` mixed sequences per forward) and scores
// the sentences against their gold tags. Puts the model in eval mode and leaves it there.
NerEval evaluate_ner(mux::TMux& model, const NerInstances& data, int64_t groups = 64);

struct NerTrainOptions {
  int64_t steps = 1000;         // task steps
  int64_t batch = 32;           // mixed sequences per step (B·N instances)
  int64_t warmup_steps = 0;     // retrieval-only steps first (needs a retrieval head)
  int64_t lr_warmup = 100;      // linear learning-rate warm-up of each phase, then linear decay
  double lr = 1e-3, weight_decay = 0.01, clip = 1.0;
  double word_dropout = 0;      // each training word becomes its shape class with this probability
  int64_t eval_every = 500;     // dev evaluation interval (and at the last step); best dev F1 is kept
  uint64_t seed = 0;
  double max_seconds = 0;       // > 0: stop the task phase once this much time has passed
  // Called after each step: phase ("warmup" or "task"), step, smoothed loss, smoothed accuracy (token
  // accuracy for the task, retrieval accuracy for the warm-up).
  std::function<void(const std::string&, int64_t, double, double)> on_step;
  // Called after each dev evaluation: step, smoothed loss, dev scores.
  std::function<void(int64_t, double, const NerEval&)> on_eval;
};

struct NerTrainResult {
  int64_t steps_run = 0, best_step = 0, warmup_steps_run = 0;
  double best_dev_f1 = 0, train_seconds = 0;
  NerEval best_dev;
};
// Trains, evaluating on dev every eval_every steps, and leaves the model holding the parameters of the
// best dev F1 (in eval mode). An empty dev set skips selection (the last parameters are kept).
NerTrainResult train_ner(mux::TMux& model, const NerInstances& train, const NerInstances& dev,
                         const NerTrainOptions& options);

}  // namespace muxnet::tasks
