// shape.cpp — the differentiable views and joins: reshape ... contiguous, concat, stack, split,
// index_select, gather.
//
// The views are thin wrappers: Tensor's view methods (tensor/tensor.cpp) already record themselves when
// their source requires grad, so reshape(x, s) is x.reshape(s) and so on, with the same semantics
// (PyTorch's: views share storage; reshape copies only when strides make a view impossible).
// The joins and gathers are recorded here as one node each:
// - concat (torch.cat): the gradient of input i is the narrow() of the output gradient at i's place
//   (a view, no copy); inputs that do not require grad get none.
// - stack (torch.stack): the gradient of input i is the select() of the output gradient at index i.
// - split (torch.split, both overloads): the pieces are narrow() views of x, each recorded by narrow
//   itself; the gradients of the pieces a graph uses are summed into x's by the engine.
// - index_select (torch.index_select): gradient = index_add_ of the output gradient into zeros, so
//   repeated indices accumulate.
// - gather (torch.gather): gradient = scatter_add_ of the output gradient into zeros, likewise.
//
// What this is not: differentiable with respect to indices (they are integer tensors, captured, never
// given a gradient), nor a new kernel: the forwards are the raw ops of tensor/ops.h.
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

// ---------------------------------------------------------------- views (record themselves)

Tensor reshape(const Tensor& x, const Shape& shape) { return x.reshape(shape); }
Tensor view(const Tensor& x, const Shape& shape) { return x.view(shape); }
Tensor flatten(const Tensor& x, int start_dim, int end_dim) { return x.flatten(start_dim, end_dim); }
Tensor transpose(const Tensor& x, int dim0, int dim1) { return x.transpose(dim0, dim1); }
Tensor permute(const Tensor& x, const std::vector<int>& dims) { return x.permute(dims); }
Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length) { return x.narrow(dim, start, length); }
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step) {
  return x.slice(dim, start, end, step);
}
Tensor select(const Tensor& x, int dim, int64_t index) { return x.select(dim, index); }
Tensor expand(const Tensor& x, const Shape& shape) { return x.expand(shape); }
Tensor squeeze(const Tensor& x, int dim) { return x.squeeze(dim); }
Tensor unsqueeze(const Tensor& x, int dim) { return x.unsqueeze(dim); }
Tensor contiguous(const Tensor& x) { return x.contiguous(); }

// ---------------------------------------------------------------- joins

// xs[i]: (..., n_i, ...) with n_i at dim -> (..., Σ n_i, ...)
Tensor concat(const std::vector<Tensor>& xs, int dim) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::concat(xs, dim);  // validates the list, the shapes and the dim
  }
  if (needs_grad(xs)) {
    const int d = normalize_dim(dim, xs[0].ndim(), "concat");
    std::vector<int64_t> lengths;
    std::vector<bool> wants;
    for (const Tensor& x : xs) {
      lengths.push_back(x.size(d));
      wants.push_back(x.requires_grad());
    }
    record(out, "concat", xs, [d, lengths, wants](const Tensor& g) {
      // forward: out = [xs[0], xs[1], ...] along d, so xs[i] = out.narrow(d, Σ_{j<i} n_j, n_i)
      std::vector<Tensor> grads(lengths.size());
      int64_t at = 0;
      for (size_t i = 0; i < lengths.size(); ++i) {
        if (wants[i]) grads[i] = g.narrow(d, at, lengths[i]);
        at += lengths[i];
      }
      return grads;
    });
  }
  return out;
}

// xs[i]: (S) all equal -> S with a new dim of size xs.size() inserted at dim
Tensor stack(const std::vector<Tensor>& xs, int dim) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::stack(xs, dim);
  }
  if (needs_grad(xs)) {
    const int d = normalize_dim(dim, xs[0].ndim() + 1, "stack");
    std::vector<bool> wants;
    for (const Tensor& x : xs) wants.push_back(x.requires_grad());
    record(out, "stack", xs, [d, wants](const Tensor& g) {
      // forward: out.select(d, i) = xs[i]
      std::vector<Tensor> grads(wants.size());
      for (size_t i = 0; i < wants.size(); ++i) {
        if (wants[i]) grads[i] = g.select(d, int64_t(i));
      }
      return grads;
    });
  }
  return out;
}

namespace {

// Rebuilds the pieces of ops::split (validated there, under no-grad) as recorded narrow() views of x.
std::vector<Tensor> recorded_pieces(const Tensor& x, const std::vector<Tensor>& pieces, int dim) {
  if (!needs_grad({x})) return pieces;
  const int d = normalize_dim(dim, x.ndim(), "split");
  std::vector<Tensor> out;
  out.reserve(pieces.size());
  int64_t at = 0;
  for (const Tensor& p : pieces) {
    out.push_back(x.narrow(d, at, p.size(d)));
    at += p.size(d);
  }
  return out;
}

}  // namespace

// x: (..., S, ...) -> pieces of split_size along dim (the last may be shorter)
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int dim) {
  std::vector<Tensor> pieces;
  {
    NoGradGuard no_grad;
    pieces = ops::split(x, split_size, dim);
  }
  return recorded_pieces(x, pieces, dim);
}

// x: (..., S, ...) -> pieces of sizes[i] along dim, Σ sizes = S
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  std::vector<Tensor> pieces;
  {
    NoGradGuard no_grad;
    pieces = ops::split(x, sizes, dim);
  }
  return recorded_pieces(x, pieces, dim);
}

// ---------------------------------------------------------------- gathers

// x: (..., S, ...) with S at dim, idx: (n) -> (..., n, ...)
Tensor index_select(const Tensor& x, int dim, const Tensor& idx) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::index_select(x, dim, idx);
  }
  if (needs_grad({x})) {
    const int d = normalize_dim(dim, x.ndim(), "index_select");
    record(out, "index_select", {x}, [idx, d, shape = x.shape(), dtype = x.dtype()](const Tensor& g) {
      // forward: out.select(d, j) = x.select(d, idx[j]); a row picked k times gets k gradients
      Tensor gx = zeros(shape, dtype, g.device());
      ops::index_add_(gx, d, idx, g);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

// x: (...), idx: same ndim as x -> idx's shape
Tensor gather(const Tensor& x, int dim, const Tensor& idx) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::gather(x, dim, idx);
  }
  if (needs_grad({x})) {
    const int d = normalize_dim(dim, x.ndim(), "gather");
    record(out, "gather", {x}, [idx, d, shape = x.shape(), dtype = x.dtype()](const Tensor& g) {
      // forward: out[i] = x[i with i[d] = idx[i]]; an element picked k times gets k gradients
      Tensor gx = zeros(shape, dtype, g.device());
      ops::scatter_add_(gx, d, idx, g);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

}  // namespace muxnet
