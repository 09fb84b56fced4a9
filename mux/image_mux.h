// image_mux.h — image multiplexers: N images in, one mixed image out (PAPER.md §1.7, the MNIST
// notebook's MuxLeNet.proj), and the Gaussian-Hadamard multiplexer on flattened images for the MLP
// (bench/torch_vision.py's MuxMLP).
//
// ImageMux: x (B·N, C, H, W), rows b·N + i (instance i of mixed image b, as the text multiplexer) ->
// (B, C', H, W). Every variant applies a per-instance map φ_i and SUMS over the instances (the
// notebook sums; it does not average):
//   gaussian          φ_i(x) = conv(x, k_i), k_i ~ N(0, 1) (3x3), fixed, padding 1, each channel alike;
//                     buffer "kernels" (N, 1, 1, 3, 3) (the notebook's [K, 1, 1, 3, 3] layout); C' = C
//   learnable         the same with learned kernels: parameter "kernels" (N, 1, 1, 3, 3), initialised
//                     N(0, 1) like the gaussian ones (the notebook's init was not recovered);  C' = C
//   nonlinear         φ_i(x) = tanh(conv(tanh(conv(x, A_i)), B_i)), padding 1 both, no biases;
//                     parameters "a" (N, 16, C, 3, 3) and "b" (N, C, 16, 3, 3) (16 = hidden_channels),
//                     initialised as nn.Conv2d's weights, U(±1/sqrt(fan_in)) (the notebook's init was
//                     not recovered);
//                     C' = C (the notebook: C = 1, B_i [1, 16, 3, 3])
//   nonlinear_expand  the same with "b" (N, E, 16, 3, 3), E = expand_channels (8, as the notebook);  C' = E
//   ortho             φ_i(x) = flatten(x) @ R_i per channel, reshaped back; R_i a fixed Haar-random
//                     orthogonal (HW x HW) matrix; buffer "rotations" (N, HW, HW);  C' = C
//                     (the notebook's `SO(N)` variant; Haar on O(HW): det(R_i) may be -1)
//   none              identity; needs N = 1 (the plain, unmultiplexed model)
// How each is computed (one differentiable function per step, no new kernels):
//   gaussian/learnable: instances become input channels, (B·N, C, H, W) -> (B·C, N, H, W), and ONE
//     conv2d with the (1, N, 3, 3) view of the kernels: a sum over input channels is the sum over
//     instances. Exact FLOPs, one im2col + GEMM. (C = 1: every reshape is a view.)
//   ortho: the N matrices stacked as one (N·HW, HW) matrix; (B·C, N·HW) @ it = Σ_i x_i R_i in ONE GEMM.
//   nonlinear: a loop over the N instances, two conv2d each. conv2d has no groups, and the one-call
//     alternatives (all N·16 filters on every instance, or a block-diagonal weight) do N times the
//     work; the tanh after each instance's second conv forbids folding the sum into that conv.
//     Its two 16-channel convs at full resolution cost ~3x LeNet itself: a CnnMux training step with
//     nonlinear is ~3-4x one with gaussian (measured, N = 2, 32 mixed images, one thread).
//
// HadamardMux (and gaussian_hadamard_mix): x (B·N, D) -> (1/N) Σ_i x_i ⊙ v_i, v_i ~ N(0, I_D) fixed
// (not normalised: torch_vision.py's MuxMLP draws torch.randn(n, 784)); buffer "mux_v" (N, D).
//
// What this is not: the notebook's other variants (graded, identity, learnable-W, rotation, remap);
// stride or kernel sizes other than 3x3 / padding 1.
#pragma once

#include <string>

#include "nn/module.h"
#include "tensor/random.h"

namespace muxnet::mux {

enum class ImageMuxKind { None, Gaussian, Learnable, Nonlinear, NonlinearExpand, Ortho };
// "none" | "gaussian" | "learnable" | "nonlinear" | "nonlinear_expand" | "ortho"
ImageMuxKind parse_image_mux_kind(const std::string& name);
const char* image_mux_kind_name(ImageMuxKind kind);

struct ImageMuxOptions {
  ImageMuxKind kind = ImageMuxKind::Gaussian;
  int64_t n = 1;                 // instances
  int64_t in_channels = 1;       // C
  int64_t height = 20, width = 20;  // ortho only: its matrices are (H·W, H·W); the convs take any size
  int64_t hidden_channels = 16;  // nonlinear: output channels of A_i
  int64_t expand_channels = 8;   // nonlinear_expand: output channels of B_i (C')
};

class ImageMux : public nn::Module {
 public:
  // Fixed keys and initial learned weights are drawn from gen (the default generator when null).
  explicit ImageMux(const ImageMuxOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (B·N, C, H, W) -> (B, C', H, W)
  int64_t output_channels() const;        // C': the input channels of the layer after the mux
  bool learned() const;                   // whether the mux has parameters

  ImageMuxOptions options;
  Tensor kernels;    // gaussian (buffer) / learnable (parameter): (N, 1, 1, 3, 3)
  Tensor a, b;       // nonlinear: (N, hidden, C, 3, 3) and (N, C', hidden, 3, 3)
  Tensor rotations;  // ortho: (N, H·W, H·W)
};

// n Haar-random orthogonal (dim x dim) matrices, (n, dim, dim) in dtype: Q of the QR decomposition of
// a N(0, 1) matrix drawn from gen, computed in double by Gram-Schmidt with re-orthogonalisation.
// Gram-Schmidt makes R's diagonal positive, which is the sign correction that makes Q Haar-distributed
// (Mezzadri 2007); without it (e.g. Householder's signs) the distribution is biased.
Tensor haar_orthogonal(int64_t n, int64_t dim, Generator* gen = nullptr, DType dtype = DType::F32);

// x: (B·N, D), keys v: (N, D) -> (B, D) = (1/N) Σ_i x[b·N + i] ⊙ v_i
Tensor gaussian_hadamard_mix(const Tensor& x, const Tensor& keys);

class HadamardMux : public nn::Module {
 public:
  HadamardMux(int64_t n, int64_t dim, Generator* gen = nullptr);  // v_i ~ N(0, I) from gen
  Tensor forward(const Tensor& x) const;                           // x: (B·N, D) -> (B, D)
  int64_t n, dim;
  Tensor keys;  // buffer "mux_v" (N, D)
};

}  // namespace muxnet::mux
