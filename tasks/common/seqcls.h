// seqcls.h — T-MUX sentence classification: the model setup, the training loop and the dev evaluation
// that tasks/sst2.cpp runs (and its tests run on generated data, through the same code).
//
// N = 1 is the un-multiplexed baseline: multiplex = false, task loss only. N > 1 multiplexes N
// sentences per mixed sequence and trains (1 - r)·task + r·retrieval (r = 0.1 as the paper's finetuning,
// PAPER.md §1.6). Evaluation groups the sentences N at a time in their order; the last group is filled
// with dummy instances (copies of the first sentences) whose predictions are ignored.
// The model may live on any device (Module::to before train_seqcls): batches go to its parameters'
// device, predictions come back to the host.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mux/tmux.h"
#include "nn/checkpoint.h"
#include "tasks/common/tmux_flags.h"

namespace muxnet::tasks {

// Encoded sentences (each exactly the model's max_len ids) and their class labels.
struct SeqClsData {
  std::vector<std::vector<int64_t>> ids;
  std::vector<int64_t> labels;
  int64_t size() const { return int64_t(ids.size()); }
};

struct SeqClsModelOptions {
  TMuxArchFlags arch{128, 4, 512, 2, 0.1};  // d, heads, ff, layers, dropout; gaussian_hadamard 20, index
  double retrieval_coeff = 0.1;  // N > 1 only; the task weight is 1 - retrieval_coeff
  int64_t num_classes = 2;
};

// A fresh model's configuration (pad_id: the vocabulary's padding id, never a retrieval target).
mux::TMuxConfig seqcls_config(const SeqClsModelOptions& opt, int64_t vocab, int64_t len, int64_t n, int64_t pad_id);
// A retrieval warm-up checkpoint's configuration turned into the sequence task: its vocabulary size,
// length, N, widths and multiplexer win; the task head, loss weights and dropout come from opt.
mux::TMuxConfig seqcls_config_from_warmup(const nn::Metadata& meta, const SeqClsModelOptions& opt);

struct SeqClsTrainOptions {
  int64_t steps = 2000, batch = 32, warmup = 100, eval_every = 500;  // batch: mixed sequences per step
  double lr = 1e-3, weight_decay = 0.01, clip = 1.0;
  uint64_t seed = 0;
  std::string label = "train";  // progress bar label
  bool progress = true;
  // Called after each dev evaluation with {"step", "loss", "train_acc", "dev_acc"}.
  std::function<void(const nlohmann::json&)> on_eval;
};

struct SeqClsResult {
  double dev_acc = 0;       // after the last step
  double best_dev_acc = 0;  // best of the periodic evaluations (selection on dev, as the paper does)
  int64_t best_step = 0, steps = 0;
  double train_s = 0, train_loss = 0, train_acc = 0;  // train_*: moving averages at the end
};

// Predicted class of every sentence (data.size() values), N sentences per mixed sequence.
std::vector<int64_t> seqcls_predict(const mux::TMux& model, const SeqClsData& data, int64_t mixed_batch = 32);
double seqcls_accuracy(const mux::TMux& model, const SeqClsData& data, int64_t mixed_batch = 32);

// AdamW with linear warmup and decay, gradient clipping; shuffled epochs over train, batch·N sentences
// per step; dev accuracy every eval_every steps and at the end. Leaves the model in eval mode.
SeqClsResult train_seqcls(mux::TMux& model, const SeqClsData& train, const SeqClsData& dev,
                          const SeqClsTrainOptions& opt);

}  // namespace muxnet::tasks
