// vision_train.cpp — model construction, batches, sampler, training step and slot evaluation.
#include "tasks/common/vision_train.h"

#include <numeric>

#include "autograd/functions.h"
#include "tasks/common/cli.h"
#include "tensor/ops.h"

namespace muxnet::tasks {
namespace {

int64_t meta_int(const nn::Metadata& meta, const std::string& key) {
  auto it = meta.find("vision." + key);
  if (it == meta.end()) throw InputError("checkpoint metadata: missing 'vision." + key + "' (not a vision checkpoint?)");
  try {
    size_t used = 0;
    long long v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception&) {
  }
  throw InputError("checkpoint metadata: 'vision." + key + "' should be an integer, got '" + it->second + "'");
}

std::string meta_str(const nn::Metadata& meta, const std::string& key) {
  auto it = meta.find("vision." + key);
  if (it == meta.end()) throw InputError("checkpoint metadata: missing 'vision." + key + "' (not a vision checkpoint?)");
  return it->second;
}

}  // namespace

nn::Metadata VisionConfig::to_metadata() const {
  nn::Metadata m;
  m["vision.model"] = model;
  m["vision.mux"] = mux;
  m["vision.loss"] = loss;
  for (auto& [k, v] : std::vector<std::pair<std::string, int64_t>>{
           {"n", n}, {"rows", rows}, {"cols", cols}, {"crop", crop}, {"num_classes", num_classes},
           {"hidden", hidden}, {"c1", c1}, {"mux_hidden", mux_hidden}, {"expand", expand}}) {
    m["vision." + k] = std::to_string(v);
  }
  return m;
}

VisionConfig VisionConfig::from_metadata(const nn::Metadata& meta) {
  VisionConfig c;
  c.model = meta_str(meta, "model");
  c.mux = meta_str(meta, "mux");
  c.loss = meta_str(meta, "loss");
  c.n = meta_int(meta, "n");
  c.rows = meta_int(meta, "rows");
  c.cols = meta_int(meta, "cols");
  c.crop = meta_int(meta, "crop");
  c.num_classes = meta_int(meta, "num_classes");
  c.hidden = meta_int(meta, "hidden");
  c.c1 = meta_int(meta, "c1");
  c.mux_hidden = meta_int(meta, "mux_hidden");
  c.expand = meta_int(meta, "expand");
  c.validate();
  return c;
}

void VisionConfig::validate_choices() const {
  if (model != "mlp" && model != "cnn") throw InputError("--model: expected mlp or cnn, got '" + model + "'");
  if (loss != "mse" && loss != "ce") throw InputError("--loss: expected mse or ce, got '" + loss + "'");
  if (n < 1) throw InputError("--n: expected N >= 1, got " + std::to_string(n));
  if (model == "mlp") {
    if (mux != "none" && mux != "gaussian_hadamard") {
      throw InputError("--mux: the mlp takes none or gaussian_hadamard, got '" + mux + "'");
    }
  } else {
    try {
      mux::parse_image_mux_kind(mux);
    } catch (const std::exception&) {
      throw InputError("--mux: the cnn takes none, gaussian, learnable, nonlinear, nonlinear_expand or ortho, got '" +
                       mux + "'");
    }
  }
  if (mux == "none" && n != 1) throw InputError("--mux none needs --n 1, got " + std::to_string(n));
}

void VisionConfig::validate() const {
  validate_choices();
  if (crop < 0 || height() < 1 || width() < 1) {
    throw InputError("--crop: " + std::to_string(crop) + " does not fit " + std::to_string(rows) + "x" +
                     std::to_string(cols) + " images");
  }
  const int64_t s = nn::LeNet::kImageSize;
  if (model == "cnn" && (height() != s || width() != s)) {
    throw InputError("--crop: the cnn needs " + std::to_string(s) + "x" + std::to_string(s) + " inputs; " +
                     std::to_string(rows) + "x" + std::to_string(cols) + " images cropped by " +
                     std::to_string(crop) + " give " + std::to_string(height()) + "x" + std::to_string(width()));
  }
}

VisionNet::VisionNet(const VisionConfig& c, Generator* gen) : config(c) {
  config.validate();
  if (c.model == "mlp") {
    mux::MlpMuxOptions o;
    o.n = c.n;
    o.mux = mux::parse_flat_mux_kind(c.mux);
    o.in_features = c.height() * c.width();
    o.hidden = c.hidden;
    o.num_classes = c.num_classes;
    mlp = std::make_shared<mux::MlpMux>(o, gen);
  } else {
    mux::CnnMuxOptions o;
    o.n = c.n;
    o.mux = mux::parse_image_mux_kind(c.mux);
    o.c1_channels = c.c1;
    o.num_classes = c.num_classes;
    o.hidden_channels = c.mux_hidden;
    o.expand_channels = c.expand;
    cnn = std::make_shared<mux::CnnMux>(o, gen);
  }
}

nn::Module& VisionNet::module() { return mlp ? static_cast<nn::Module&>(*mlp) : static_cast<nn::Module&>(*cnn); }

Tensor VisionNet::logits(const Tensor& x) const { return mlp ? mlp->forward(x) : cnn->forward(x); }

Tensor image_batch(const IdxImages& images, const std::vector<int64_t>& idx, int64_t crop) {
  const int64_t h = images.rows - 2 * crop, w = images.cols - 2 * crop;
  Tensor out = empty({int64_t(idx.size()), 1, h, w}, DType::F32);
  float* o = out.data<float>();
  for (size_t k = 0; k < idx.size(); ++k) {
    const uint8_t* src = images.pixels.data() + idx[k] * images.rows * images.cols;
    for (int64_t r = 0; r < h; ++r) {
      for (int64_t c = 0; c < w; ++c) *o++ = float(src[(r + crop) * images.cols + c + crop]) / 255.0f;
    }
  }
  return out;
}

Tensor label_batch(const std::vector<uint8_t>& labels, const std::vector<int64_t>& idx) {
  std::vector<int64_t> y(idx.size());
  for (size_t k = 0; k < idx.size(); ++k) y[k] = labels[size_t(idx[k])];
  return from_vector<int64_t>(y, {int64_t(idx.size())});
}

EpochSampler::EpochSampler(int64_t count, Generator& gen) : gen_(gen), perm_(size_t(count)) {
  std::iota(perm_.begin(), perm_.end(), 0);
  shuffle();
}

void EpochSampler::shuffle() {
  for (size_t i = perm_.size(); i > 1; --i) std::swap(perm_[i - 1], perm_[size_t(gen_.randint(i))]);
  pos_ = 0;
}

std::vector<int64_t> EpochSampler::next(int64_t k) {
  if (k > int64_t(perm_.size())) {
    throw InputError("batch of " + std::to_string(k) + " images is larger than the " + std::to_string(perm_.size()) +
                     " training images");
  }
  if (pos_ + size_t(k) > perm_.size()) shuffle();
  std::vector<int64_t> out(perm_.begin() + int64_t(pos_), perm_.begin() + int64_t(pos_) + k);
  pos_ += size_t(k);
  return out;
}

StepResult train_step(VisionNet& net, nn::Optimizer& optim, const Tensor& host_x, const Tensor& host_y) {
  const VisionConfig& c = net.config;
  const Device device = module_device(net.module());
  const Tensor x = host_x.to(device), y = host_y.to(device);  // no copies on the cpu
  Tensor logits = net.logits(x);
  Tensor loss;
  if (c.loss == "mse") {
    // ±1 one-hot targets: 2·onehot − 1, built without autograd (targets need no gradient).
    const int64_t rows = y.numel();
    std::vector<float> t(size_t(rows * c.num_classes), -1.0f);
    std::vector<int64_t> labels = host_y.to_vector<int64_t>();
    for (int64_t r = 0; r < rows; ++r) t[size_t(r * c.num_classes + labels[size_t(r)])] = 1.0f;
    Tensor target = from_vector<float>(t, {rows, c.num_classes}).to(device);
    loss = muxnet::mul(muxnet::mse_loss(muxnet::tanh(logits), target), 0.5 * double(c.n));
  } else {
    loss = muxnet::mul(muxnet::cross_entropy(logits, y), double(c.n));
  }
  optim.zero_grad();
  loss.backward();
  optim.step();
  StepResult r;
  NoGradGuard no_grad;
  r.loss = loss.item();
  r.correct = int64_t(ops::sum(ops::eq(ops::argmax(logits.detach(), -1), y)).item());
  r.count = y.numel();
  return r;
}

SlotAccuracy evaluate_slots(VisionNet& net, const ImageSplit& split, int64_t mixed_batch) {
  const int64_t n = net.config.n, block = split.images.count / n;
  const Device device = module_device(net.module());
  NoGradGuard no_grad;
  const bool was_training = net.module().is_training();
  net.module().eval();
  std::vector<int64_t> correct(size_t(n), 0);
  for (int64_t b0 = 0; b0 < block; b0 += mixed_batch) {
    const int64_t rows = std::min(mixed_batch, block - b0);
    std::vector<int64_t> idx;
    for (int64_t b = b0; b < b0 + rows; ++b) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i * block + b);
    }
    Tensor pred = ops::argmax(net.logits(image_batch(split.images, idx, net.config.crop).to(device)), -1);
    std::vector<int64_t> p = pred.to_vector<int64_t>();  // copies to the host
    for (size_t k = 0; k < idx.size(); ++k) correct[k % size_t(n)] += p[k] == split.labels[size_t(idx[k])];
  }
  net.module().train(was_training);
  SlotAccuracy a;
  a.per_slot_images = block;
  for (int64_t i = 0; i < n; ++i) {
    a.per_slot.push_back(block ? double(correct[size_t(i)]) / double(block) : 0.0);
    a.mean += a.per_slot.back() / double(n);
  }
  return a;
}

}  // namespace muxnet::tasks
