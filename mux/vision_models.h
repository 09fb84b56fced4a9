// vision_models.h — the multiplexed image classifiers: MlpMux (bench/torch_vision.py's MuxMLP) and
// CnnMux (PAPER.md §1.7's MuxLeNet). Both take instance-grouped input, rows b·N + i (instance i of
// mixed example b), and return per-instance logits (B·N, classes) in the same row order.
//
// MlpMux:  x (B·N, in) (any (B·N, ...) with in elements per row, e.g. (B·N, 1, 28, 28), is flattened)
//   mux      gaussian_hadamard: (1/N) Σ_i x_i ⊙ v_i, v_i ~ N(0, I) fixed      buffer "mux_v" (N, in)
//            none: identity (N = 1 only)
//   fc1      Linear(in, hidden) + ReLU                                           (B, hidden)
//   heads    N demux heads Linear(hidden, hidden) + ReLU, stacked as ONE Linear(hidden, N·hidden)
//            ("heads.lin": rows i·hidden .. (i+1)·hidden - 1 of its weight are head i), one GEMM for
//            all heads, as torch_vision.py's default --heads stacked. nn.Linear(hidden, N·hidden) and
//            N nn.Linear(hidden, hidden) draw from the same U(±1/sqrt(hidden)).        (B·N, hidden)
//   cls      shared Linear(hidden, classes)                                      (B·N, classes)
//   The names are MuxMLP's (mux_v, fc1, heads.lin, cls). With N = 1 and mux none this is exactly the
//   MLP in-hidden-hidden-classes (ReLU), i.e. nn::MLP({in, hidden, hidden, classes}) with layers.0/1/2
//   = fc1 / heads.lin / cls.
//
// CnnMux:  x (B·N, C, 20, 20)
//   mux      an ImageMux (mux/image_mux.h), child "mux" (absent for none)        (B, C', 20, 20)
//   lenet    nn::LeNet(in_channels = C', c1_channels, classes): features() gives f (B, 84)
//   heads    N private demux heads DC_i = Linear(84, 84) + tanh, stacked as ONE Linear(84, N·84)
//            (child "heads", rows i·84 .. as above)                              (B·N, 84)
//   OL       the shared output layer is LeNet's own "lenet.ol" Linear(84, classes) (B·N, classes)
//   out_i = OL(tanh(DC_i(f))), returned as logits (for cross_entropy). The paper's MSE recipe on ±1
//   targets (PAPER.md §1.7) applies tanh on top: out_i = tanh(OL(tanh(DC_i(f)))) — the caller's choice.
//   demux_heads = false (N = 1 only) drops the DC layer: out = OL(f), so CnnMux with N = 1, mux none,
//   no heads and c1 = 6 IS nn::LeNet's forward — the paper's single-instance "reference LeNet".
//   c1_channels defaults to 6 (the reference LeNet); the notebook's multiplexed runs use 10.
//
// What these are not: the loss or the training recipe (the task code chooses them); the separate-
// Linear head layout (--heads loop), which is the same maths.
#pragma once

#include <memory>
#include <string>

#include "mux/image_mux.h"
#include "nn/layers.h"
#include "nn/lenet.h"

namespace muxnet::mux {

enum class FlatMuxKind { None, GaussianHadamard };
FlatMuxKind parse_flat_mux_kind(const std::string& name);  // "none" | "gaussian_hadamard"
const char* flat_mux_kind_name(FlatMuxKind kind);

// N stacked heads Linear(dim, dim) + activation, as one Linear(dim, N·dim): h (B, dim) -> (B·N, dim),
// rows b·N + i = act(W_i h_b + b_i). Parameters "lin.weight" (N·dim, dim), "lin.bias" (N·dim).
class StackedHeads : public nn::Module {
 public:
  StackedHeads(int64_t n, int64_t dim, nn::Activation activation, Generator* gen = nullptr);
  Tensor forward(const Tensor& h) const;  // h: (B, dim) -> (B·N, dim)
  int64_t n, dim;
  nn::Activation activation;
  std::shared_ptr<nn::Linear> lin;
};

struct MlpMuxOptions {
  int64_t n = 1;
  FlatMuxKind mux = FlatMuxKind::GaussianHadamard;
  int64_t in_features = 784;
  int64_t hidden = 512;
  int64_t num_classes = 10;
};

class MlpMux : public nn::Module {
 public:
  explicit MlpMux(const MlpMuxOptions& options, Generator* gen = nullptr);
  MlpMux(int64_t n, FlatMuxKind mux, Generator* gen = nullptr);  // 784 -> 512 -> N x 512 -> 10
  Tensor forward(const Tensor& x) const;  // x: (B·N, ...) with in_features per row -> (B·N, classes)
  MlpMuxOptions options;
  Tensor mux_v;  // buffer "mux_v" (N, in) for gaussian_hadamard; undefined for none
  std::shared_ptr<nn::Linear> fc1, cls;
  std::shared_ptr<StackedHeads> heads;
};

struct CnnMuxOptions {
  int64_t n = 1;
  ImageMuxKind mux = ImageMuxKind::Gaussian;
  int64_t in_channels = 1;
  int64_t c1_channels = 6;  // LeNet's C1 width (6: the reference LeNet; the notebook's MuxLeNet: 10)
  int64_t num_classes = 10;
  bool demux_heads = true;  // false: no DC layer (N = 1 only)
  int64_t hidden_channels = 16, expand_channels = 8;  // the nonlinear muxes (mux/image_mux.h)
};

class CnnMux : public nn::Module {
 public:
  explicit CnnMux(const CnnMuxOptions& options, Generator* gen = nullptr);
  CnnMux(int64_t n, ImageMuxKind mux, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (B·N, C, 20, 20) -> (B·N, classes) logits
  CnnMuxOptions options;
  std::shared_ptr<ImageMux> mux;         // null for none
  std::shared_ptr<nn::LeNet> lenet;      // backbone; lenet->ol is the shared output layer OL
  std::shared_ptr<StackedHeads> heads;   // null when !demux_heads
};

}  // namespace muxnet::mux
