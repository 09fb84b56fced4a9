// vision_train.h — what the vision task and its tests share: the model choice (MlpMux / CnnMux) with
// its checkpoint metadata, image batches from IDX data, the sampler, one training step and the
// slot-wise test evaluation.
//
// Batches are instance-grouped as mux/vision_models.h expects: rows b·N + i hold instance i of mixed
// example b. Pixels are scaled to [0, 1] (/255) after cropping `crop` pixels off every border
// (PAPER.md §1.7: [4:-4, 4:-4], 28x28 -> 20x20 for the CNN; the MLP takes the whole 28x28 image).
//
// Loss, summed over the N instance slots of the per-slot mean (PAPER.md §1.7):
//   mse  Σ_i mean(0.5 (y_i − tanh(logits_i))²) with ±1 one-hot targets y_i (the paper's CNN recipe)
//   ce   Σ_i mean(cross_entropy(logits_i, label_i))
// Both equal N times the mean over all B·N rows, since every slot has B rows. The prediction is the
// argmax of the logits (tanh is monotonic, so the same for mse).
//
// Test protocol: the test split is cut into N contiguous blocks of count/N images (the remainder,
// under N images, is left out); instance slot i sees block i, so mixed example b holds images
// i·(count/N) + b, i = 0..N-1. Accuracy is reported per slot and as the mean over slots.
//
// Device: the model may live on any device (Module::to before the optimizer is built); batches are
// built on the host and moved to the device of the model's parameters inside train_step and
// evaluate_slots.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mux/vision_models.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tasks/common/idx_data.h"

namespace muxnet::tasks {

struct VisionConfig {
  std::string model = "cnn";  // mlp | cnn
  int64_t n = 1;
  std::string mux = "nonlinear_expand";  // cnn: an ImageMuxKind name; mlp: none | gaussian_hadamard
  std::string loss = "mse";              // mse | ce
  int64_t rows = 28, cols = 28;          // the data's image size (before the crop)
  int64_t crop = 4;                      // pixels cut off every border
  int64_t num_classes = 10;
  int64_t hidden = 512;                  // mlp: width of fc1 and of each demux head
  int64_t c1 = 10;                       // cnn: LeNet's C1 channels (the notebook's MuxLeNet: 10)
  int64_t mux_hidden = 16, expand = 8;   // cnn: the nonlinear muxes' widths

  int64_t height() const { return rows - 2 * crop; }
  int64_t width() const { return cols - 2 * crop; }
  nn::Metadata to_metadata() const;       // keys "vision.<field>"
  static VisionConfig from_metadata(const nn::Metadata& meta);  // InputError on a missing/bad key
  void validate() const;          // InputError: validate_choices(), or a crop that does not fit the model
  void validate_choices() const;  // InputError: unknown model/mux/loss, a mux the model or N cannot take
};

// The model a config describes; exactly one of mlp / cnn is set.
struct VisionNet {
  explicit VisionNet(const VisionConfig& config, Generator* gen = nullptr);
  nn::Module& module();
  Tensor logits(const Tensor& x) const;  // x (B·N, 1, H, W) -> (B·N, classes)
  VisionConfig config;
  std::shared_ptr<mux::MlpMux> mlp;
  std::shared_ptr<mux::CnnMux> cnn;
};

// Images idx of the split, cropped and scaled: (idx.size(), 1, rows − 2·crop, cols − 2·crop) f32.
Tensor image_batch(const IdxImages& images, const std::vector<int64_t>& idx, int64_t crop);
Tensor label_batch(const std::vector<uint8_t>& labels, const std::vector<int64_t>& idx);  // (idx.size()) i64

// Draws without replacement from a shuffled permutation of [0, count); reshuffles when fewer than
// the requested number remain (the leftover is skipped, as a dataloader's drop_last).
class EpochSampler {
 public:
  EpochSampler(int64_t count, Generator& gen);
  std::vector<int64_t> next(int64_t k);

 private:
  void shuffle();
  Generator& gen_;
  std::vector<int64_t> perm_;
  size_t pos_ = 0;
};

struct StepResult {
  double loss = 0;
  int64_t correct = 0, count = 0;
};
// One optimisation step on a batch (x instance-grouped, y its labels; host tensors, moved to the
// model's device here): forward, loss, backward, step.
StepResult train_step(VisionNet& net, nn::Optimizer& optim, const Tensor& x, const Tensor& y);

struct SlotAccuracy {
  std::vector<double> per_slot;  // accuracy of instance slot i on its block
  double mean = 0;               // mean over the slots
  int64_t per_slot_images = 0;   // block size count / N
};
// The test protocol above, in forward passes of at most `mixed_batch` mixed examples (no gradient,
// eval mode).
SlotAccuracy evaluate_slots(VisionNet& net, const ImageSplit& split, int64_t mixed_batch = 250);

}  // namespace muxnet::tasks
