// vision_models.cpp — StackedHeads, MlpMux and CnnMux (mux/vision_models.h).
#include "mux/vision_models.h"

namespace muxnet::mux {

namespace {

std::string shape_or_undefined(const Tensor& x) { return x.defined() ? x.shape().str() : "an undefined tensor"; }

}  // namespace

FlatMuxKind parse_flat_mux_kind(const std::string& name) {
  if (name == "none") return FlatMuxKind::None;
  if (name == "gaussian_hadamard") return FlatMuxKind::GaussianHadamard;
  MUXNET_FAIL("flat mux: unknown kind '", name, "' (expected none or gaussian_hadamard)");
}

const char* flat_mux_kind_name(FlatMuxKind kind) {
  return kind == FlatMuxKind::None ? "none" : "gaussian_hadamard";
}

StackedHeads::StackedHeads(int64_t n_, int64_t dim_, nn::Activation act, Generator* gen)
    : n(n_), dim(dim_), activation(act) {
  MUXNET_CHECK(n > 0 && dim > 0, "StackedHeads: sizes must be positive, got n=", n, " dim=", dim);
  lin = register_module("lin", std::make_shared<nn::Linear>(dim, n * dim, true, gen));
}

// h: (B, dim) -> (B·N, dim)
Tensor StackedHeads::forward(const Tensor& h) const {
  MUXNET_CHECK(h.defined() && h.ndim() == 2 && h.size(1) == dim, "StackedHeads: expected input (B, ", dim,
               "), got ", shape_or_undefined(h));
  // (B, N·dim) is (B, N, dim) row-major, so the view puts head i of example b at row b·N + i.
  return nn::activate(activation, lin->forward(h)).view({h.size(0) * n, dim});
}

MlpMux::MlpMux(const MlpMuxOptions& o, Generator* gen) : options(o) {
  MUXNET_CHECK(o.n > 0 && o.in_features > 0 && o.hidden > 0 && o.num_classes > 0,
               "MlpMux: sizes must be positive, got n=", o.n, " in_features=", o.in_features, " hidden=", o.hidden,
               " num_classes=", o.num_classes);
  MUXNET_CHECK(o.mux != FlatMuxKind::None || o.n == 1, "MlpMux: mux none needs n = 1, got n = ", o.n);
  if (o.mux == FlatMuxKind::GaussianHadamard) mux_v = register_buffer("mux_v", randn({o.n, o.in_features}, DType::F32, gen));
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(o.in_features, o.hidden, true, gen));
  heads = register_module("heads", std::make_shared<StackedHeads>(o.n, o.hidden, nn::Activation::Relu, gen));
  cls = register_module("cls", std::make_shared<nn::Linear>(o.hidden, o.num_classes, true, gen));
}

MlpMux::MlpMux(int64_t n, FlatMuxKind mux, Generator* gen) : MlpMux(MlpMuxOptions{n, mux}, gen) {}

// x: (B·N, ...) -> (B·N, classes)
Tensor MlpMux::forward(const Tensor& x) const {
  const int64_t n = options.n, d = options.in_features;
  MUXNET_CHECK(x.defined() && x.ndim() >= 2 && x.size(0) % n == 0 && x.numel() == x.size(0) * d,
               "MlpMux: expected input (B*N, ", d, ") or (B*N, ...) with ", d, " elements per row and N = ", n,
               ", got ", shape_or_undefined(x));
  Tensor flat = x.ndim() == 2 ? x : x.reshape({x.size(0), d});
  Tensor mixed = mux_v.defined() ? gaussian_hadamard_mix(flat, mux_v) : flat;  // (B, in)
  return cls->forward(heads->forward(relu(fc1->forward(mixed))));
}

CnnMux::CnnMux(const CnnMuxOptions& o, Generator* gen) : options(o) {
  MUXNET_CHECK(o.n > 0, "CnnMux: n must be positive, got ", o.n);
  MUXNET_CHECK(o.demux_heads || o.n == 1, "CnnMux: demux_heads = false needs n = 1, got n = ", o.n);
  int64_t backbone_in = o.in_channels;
  if (o.mux != ImageMuxKind::None) {
    ImageMuxOptions mo;
    mo.kind = o.mux;
    mo.n = o.n;
    mo.in_channels = o.in_channels;
    mo.height = mo.width = nn::LeNet::kImageSize;
    mo.hidden_channels = o.hidden_channels;
    mo.expand_channels = o.expand_channels;
    mux = register_module("mux", std::make_shared<ImageMux>(mo, gen));
    backbone_in = mux->output_channels();
  } else {
    MUXNET_CHECK(o.n == 1, "CnnMux: mux none needs n = 1, got n = ", o.n);
  }
  lenet = register_module("lenet", std::make_shared<nn::LeNet>(backbone_in, o.c1_channels, o.num_classes, gen));
  if (o.demux_heads)
    heads = register_module("heads", std::make_shared<StackedHeads>(o.n, nn::LeNet::kF6, nn::Activation::Tanh, gen));
}

CnnMux::CnnMux(int64_t n, ImageMuxKind kind, Generator* gen) : CnnMux(CnnMuxOptions{n, kind}, gen) {}

// x: (B·N, C, 20, 20) -> (B·N, classes)
Tensor CnnMux::forward(const Tensor& x) const {
  const int64_t n = options.n, c = options.in_channels, s = nn::LeNet::kImageSize;
  MUXNET_CHECK(x.defined() && x.ndim() == 4 && x.size(0) % n == 0 && x.size(1) == c && x.size(2) == s &&
                   x.size(3) == s,
               "CnnMux: expected input (B*N, ", c, ", ", s, ", ", s, ") with N = ", n, ", got ", shape_or_undefined(x));
  Tensor mixed = mux ? mux->forward(x) : x;   // (B, C', 20, 20)
  Tensor f = lenet->features(mixed);          // (B, 84)
  return lenet->ol->forward(heads ? heads->forward(f) : f);  // OL(tanh(DC_i f)): (B·N, classes)
}

}  // namespace muxnet::mux
