// multiplexer.h — text multiplexers: N instances in, one mixed representation out (PAPER.md §1.2).
//
// x: (B·N, L, d), rows ordered b·N + i (instance i of mixed sequence b, as the reference's loader
// groups them) -> (B, L, d). Variants (the same key at every position):
//   gaussian_hadamard  v_i = g_i / ||g_i|| · norm, g_i ~ N(0, I_d);  out = (1/N) Σ_i x_i ⊙ v_i
//   binary_hadamard    v_i = 1 on coordinate block i (width d / N, the last block runs to d), 0 elsewhere;
//                      with epsilon > 0 the blocks overlap by o = eps/2 · width: start_i -= ceil(o) for
//                      i >= 1, end_i += floor(o) for i < N-1 (the reference's truncating int64 - float
//                      arithmetic; both are o when o is an integer);   out = (1/N) Σ_i x_i ⊙ v_i
//   random_ortho       W_i Haar-random orthogonal (d x d);                 out = (1/sqrt N) Σ_i W_i x_i
//                      with x_i a column vector, i.e. row-wise x_i @ W_iᵀ as the reference's
//                      matmul(W, eᵀ)ᵀ (a sum over sqrt N, not a mean, as the reference)
// The keys are a buffer named "instance_embedding" ((N, d), or (N, d, d) for random_ortho) when fixed,
// or a parameter of that name when learned; either way they are saved in checkpoints. They are drawn
// from gen (the default generator when null) in f64 and stored in f32; Module::to converts them.
// N = 1 is allowed for every kind (binary_hadamard's single block is all ones: the identity).
#pragma once

#include <string>

#include "nn/module.h"
#include "tensor/random.h"

namespace muxnet::mux {

enum class MuxKind { GaussianHadamard, BinaryHadamard, RandomOrtho };
MuxKind parse_mux_kind(const std::string& name);  // "gaussian_hadamard" | "binary_hadamard" | "random_ortho"
const char* mux_kind_name(MuxKind kind);

struct MuxOptions {
  MuxKind kind = MuxKind::GaussianHadamard;
  int64_t n = 1;         // instances
  int64_t dim = 0;       // d
  bool learned = false;  // keys trained (a parameter) instead of fixed (a buffer)
  double norm = 1.0;     // gaussian_hadamard key norm (20 in the reference's retrieval warm-up)
  double epsilon = 0.0;  // binary_hadamard block overlap
};

class Multiplexer : public nn::Module {
 public:
  explicit Multiplexer(const MuxOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (B·N, L, d) -> (B, L, d)
  MuxOptions options;
  Tensor keys;  // "instance_embedding"
};

}  // namespace muxnet::mux
