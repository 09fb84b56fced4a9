// embedding.cpp — the differentiable embedding lookup (torch.nn.functional.embedding).
//
// out[..., :] = weight[idx[...], :]. The backward scatters the output gradient back into a zero (V, D)
// gradient with the fused embedding_backward_ kernel: rows looked up several times accumulate, and
// rows equal to padding_idx get no gradient (their gradient row stays exactly 0), as PyTorch's
// padding_idx. The forward still returns weight[padding_idx] for those positions, as PyTorch does.
//
// What this is not: PyTorch's max_norm / scale_grad_by_freq / sparse gradients, nor its negative
// padding_idx wrapping: here -1 means "no padding row" and other negative values are errors.
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

// weight: (V, D), idx: (...) i32/i64 in [0, V) -> (..., D)
Tensor embedding(const Tensor& weight, const Tensor& idx, int64_t padding_idx) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::embedding(weight, idx);  // validates weight, idx's dtype and every index
  }
  const int64_t V = weight.size(0);
  MUXNET_CHECK(padding_idx >= -1 && padding_idx < V, "embedding: padding_idx ", padding_idx, " out of range for ",
               V, " rows (use -1 for no padding row)");
  if (needs_grad({weight})) {
    record(out, "embedding", {weight},
           [idx, padding_idx, shape = weight.shape(), dtype = weight.dtype()](const Tensor& g) {
             // forward: out[p] = weight[idx[p]]; weight[v] receives Σ_{p: idx[p] = v} g[p], none for padding
             Tensor gw = zeros(shape, dtype, g.device());
             ops::embedding_backward_(gw, g, idx, padding_idx);
             return std::vector<Tensor>{gw};
           });
  }
  return out;
}

}  // namespace muxnet
