// loss.cpp — differentiable losses: cross_entropy (fused log_softmax + NLL) and mse_loss
// (autograd/functions.h).
//
// cross_entropy(logits (..., C), targets (...)) matches torch.nn.functional.cross_entropy with class
// indices, reduction='mean' and ignore_index: the mean over the targets that are not ignore_index of
// -log_softmax(logits)[target]. Deliberate difference: when every target is ignored the loss is 0 (a
// 0-d tensor) with a zero gradient, where PyTorch returns NaN. Targets are i32 or i64 and must lie in
// [0, C) unless equal to ignore_index (which may itself be a valid class); a bad target is an error
// naming its value and position. The targets are read on the host to validate them (one small copy
// from the device); the loss and its fused gradient (softmax - onehot) * valid / count are computed
// with raw ops (log_softmax, gather, exp, scatter_add_), so they run on the logits' device.
//
// mse_loss(pred, target) matches torch.nn.functional.mse_loss with reduction='mean': mean of the
// squared differences; pred and target must have the same shape (no broadcasting) and dtype. Both
// receive a gradient when they require grad.
// What this is not: label smoothing, class weights, probability targets, or reductions other than mean.
#include <sstream>

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {

// The multi-index of element `flat` (row-major) of shape, as "(1, 2)"; "(2,)" for 1-d, "()" for 0-d.
std::string position_str(int64_t flat, const Shape& shape) {
  Shape idx = shape;
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx.str();
}

}  // namespace

// logits: (..., C); targets: (...) i32/i64 -> 0-d
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* fn = "cross_entropy";
  MUXNET_CHECK(logits.defined() && targets.defined(), fn, ": got an undefined tensor");
  MUXNET_CHECK(is_floating(logits.dtype()), fn, ": logits must be f32 or f64, got ", logits.dtype());
  MUXNET_CHECK(logits.ndim() >= 1, fn, ": logits must have a class dim (..., C), got a 0-d tensor");
  MUXNET_CHECK(is_integral(targets.dtype()), fn, ": targets must be i32 or i64 class indices, got ",
               targets.dtype());
  Shape want = logits.shape();
  want.erase(want.ndim() - 1);
  MUXNET_CHECK(targets.shape() == want, fn, ": targets must have shape ", want, " (logits ", logits.shape(),
               " without the class dim), got ", targets.shape());
  ops::check_same_device(fn, logits, targets);

  const int64_t C = logits.size(-1), N = want.numel();
  const DType dtype = logits.dtype();
  const Device device = logits.device();
  // Host pass over the targets: validate, count the non-ignored ones, and build the gather index
  // (ignored rows point at class 0) and the row weights w = -valid / count.
  std::vector<int64_t> t = targets.to_vector<int64_t>();
  std::vector<int64_t> safe(size_t(N), 0);
  std::vector<double> w(size_t(N), 0.0);
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t ti = t[size_t(i)];
    if (ti == ignore_index) continue;
    MUXNET_CHECK(ti >= 0 && ti < C, fn, ": target ", ti, " at position ", position_str(i, want),
                 " is out of range for ", C, " classes (expected [0, ", C, ") or ignore_index ", ignore_index, ")");
    safe[size_t(i)] = ti;
    ++count;
  }
  for (int64_t i = 0; i < N; ++i) {
    if (t[size_t(i)] != ignore_index) w[size_t(i)] = -1.0 / double(count);
  }

  Tensor out, lsm, idx, weight;  // lsm: (N, C); idx: (N, 1) i64; weight: (N, 1)
  {
    NoGradGuard no_grad;
    if (count == 0) {
      out = zeros(Shape{}, dtype, device);
    } else {
      lsm = ops::log_softmax(logits.reshape({N, C}));
      idx = from_vector(safe, {N, 1}).to(device);
      weight = from_vector(w, {N, 1}).to(dtype).to(device);
      // loss = sum_i w_i lsm[i, t_i] = -(1 / count) sum_{valid i} log_softmax(logits_i)[t_i]
      out = ops::sum(ops::mul(ops::gather(lsm, 1, idx), weight));
    }
  }
  if (needs_grad({logits})) {
    if (count == 0) {
      record(out, fn, {logits}, [shape = logits.shape(), dtype, device](const Tensor&) {
        // forward: loss = 0 (every target ignored)
        return std::vector<Tensor>{zeros(shape, dtype, device)};
      });
    } else {
      record(out, fn, {logits}, [lsm, idx, weight, shape = logits.shape()](const Tensor& g) {
        // forward: loss = sum_i w_i lsm[i, t_i], lsm = log_softmax(logits), w_i = -valid_i / count
        //   => dloss/dlogits[i, c] = w_i (onehot(t_i)[c] - softmax[i, c]) = (softmax - onehot) * valid / count
        Tensor grad = ops::exp(lsm);  // softmax, (N, C), fresh and contiguous: modified in place below
        ops::scatter_add_(grad, 1, idx, full({idx.size(0), 1}, -1.0, grad.dtype(), grad.device()));
        ops::binary_(BinaryOp::Mul, grad, ops::mul(weight, ops::neg(g)));  // (N, 1) row scales * g
        return std::vector<Tensor>{grad.view(shape)};
      });
    }
  }
  return out;
}

// pred, target: same shape -> 0-d
Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  const char* fn = "mse_loss";
  MUXNET_CHECK(pred.defined() && target.defined(), fn, ": got an undefined tensor");
  MUXNET_CHECK(is_floating(pred.dtype()), fn, ": pred must be f32 or f64, got ", pred.dtype());
  MUXNET_CHECK(pred.shape() == target.shape(), fn, ": pred shape ", pred.shape(), " differs from target shape ",
               target.shape());
  MUXNET_CHECK(pred.dtype() == target.dtype(), fn, ": pred dtype ", pred.dtype(), " differs from target dtype ",
               target.dtype());
  ops::check_same_device(fn, pred, target);
  Tensor diff, out;
  {
    NoGradGuard no_grad;
    diff = ops::sub(pred, target);
    out = ops::mean(ops::mul(diff, diff));
  }
  if (needs_grad({pred, target})) {
    record(out, fn, {pred, target},
           [diff, n = pred.numel(), gp = pred.requires_grad(), gt = target.requires_grad()](const Tensor& g) {
             // forward: loss = sum (pred - target)^2 / n  =>  dpred = 2 (pred - target) g / n = -dtarget
             Tensor dpred = ops::mul(diff, ops::mul(g, 2.0 / double(n)));
             return std::vector<Tensor>{gp ? dpred : Tensor(), gt ? ops::neg(dpred) : Tensor()};
           });
  }
  return out;
}

}  // namespace muxnet
