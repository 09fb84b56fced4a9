// ops_index.cpp — indexing and joins: embedding (+ backward), index_select / index_add_,
// gather / scatter_add_, concat, stack, split.
//
// Semantics follow PyTorch: F.embedding (no max_norm; padding_idx only matters in the backward, where
// -1 means none), torch.index_select / Tensor.index_add_ (1-d idx), torch.gather /
// Tensor.scatter_add_ (idx has the ndim of the indexed tensor, may be smaller along every dim but
// dim; scatter_add_ uses the leading idx.shape block of src), torch.cat / torch.stack /
// torch.split (split returns views).
//
// Every index is checked against its range here, before any kernel writes anything; the error names
// the first bad index and its position in idx ("embedding: index 7 out of range for 5 rows (at
// position 3)"). Negative indices are out of range (no Python-style wrapping). Indices of a CUDA
// tensor are checked on a host copy.
//
// The kernels need contiguous tensors; inputs are made contiguous here. The in-place ops
// (embedding_backward_, index_add_, scatter_add_) accept a non-contiguous destination by working on a
// contiguous copy and copying the result back; a broadcast (expanded, stride 0) destination is an error
// since its elements alias one another.
//
// What this is not: differentiable (autograd/ builds on these), nor a new kernel for the joins:
// concat writes each input into a narrow()ed view of the output with copy_().
#include <algorithm>
#include <sstream>

#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

std::string position_str(const Shape& shape, int64_t flat) {
  if (shape.ndim() <= 1) return std::to_string(flat);
  std::vector<int64_t> idx(size_t(shape.ndim()));
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % shape[d];
    flat /= shape[d];
  }
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < idx.size(); ++i) os << (i ? ", " : "") << idx[i];
  os << ")";
  return os.str();
}

template <typename I>
int64_t first_out_of_range(const I* p, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i) {
    if (int64_t(p[i]) < 0 || int64_t(p[i]) >= limit) return i;
  }
  return -1;
}

// Throws "<op>: index 7 out of range for <range> (at position 3)" for the first index of idx outside
// [0, limit). The position is flat for a 0-d or 1-d idx, a multi-index otherwise.
void check_index_range(const char* op, const Tensor& idx, int64_t limit, const std::string& range) {
  if (idx.numel() == 0) return;
  Tensor host = idx.device() == Device::CPU ? idx.contiguous() : idx.to(Device::CPU).contiguous();
  int64_t bad = -1, value = 0;
  if (host.dtype() == DType::I32) {
    bad = first_out_of_range(host.data<int32_t>(), host.numel(), limit);
    if (bad >= 0) value = host.data<int32_t>()[bad];
  } else {
    bad = first_out_of_range(host.data<int64_t>(), host.numel(), limit);
    if (bad >= 0) value = host.data<int64_t>()[bad];
  }
  MUXNET_CHECK(bad < 0, op, ": index ", value, " out of range for ", range, " (at position ",
               position_str(idx.shape(), bad), ")");
}

std::string dim_range(int64_t size, int dim) {
  return detail::concat("size ", size, " along dim ", dim);
}

// The tensor an in-place op's kernel writes: out itself when contiguous, else a contiguous copy that
// finish_inplace() copies back.
Tensor inplace_target(const char* op, const Tensor& out) {
  for (int d = 0; d < out.ndim(); ++d) {
    MUXNET_CHECK(out.size(d) <= 1 || out.stride(d) != 0, op,
                 ": the destination must not be a broadcast (expanded) view, got shape ", out.shape(),
                 " with strides ", out.strides());
  }
  return out.contiguous();
}

void finish_inplace(const Tensor& out, const Tensor& target) {
  if (!target.is_same(out)) out.copy_(target);
}

void check_defined(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) MUXNET_CHECK(t->defined(), op, ": got an undefined tensor");
}

std::string sizes_str(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << (v.size() == 1 ? ",)" : ")");
  return os.str();
}

}  // namespace

// ---------------------------------------------------------------- embedding

// weight: (V, D), idx: (...) -> (..., D)
Tensor embedding(const Tensor& weight, const Tensor& idx) {
  check_defined("embedding", {&weight, &idx});
  check_same_device("embedding", weight, idx);
  check_index_dtype("embedding", idx);
  MUXNET_CHECK(weight.ndim() == 2, "embedding: expected a 2-d weight (V, D), got ", weight.shape());
  MUXNET_CHECK(idx.ndim() < kMaxDims, "embedding: idx has ", idx.ndim(), " dims; the output would exceed ",
               kMaxDims);
  Shape shape = idx.shape();
  shape.push_back(weight.size(1));
  Tensor ic = idx.contiguous();
  check_index_range("embedding", ic, weight.size(0), detail::concat(weight.size(0), " rows"));
  Tensor out = empty(shape, weight.dtype(), weight.device());
  kernel<OpId::embedding>(weight.device())(weight.contiguous(), ic, out);
  return out;
}

// grad_weight: (V, D) accumulated, grad_out: (..., D), idx: (...)
void embedding_backward_(const Tensor& grad_weight, const Tensor& grad_out, const Tensor& idx, int64_t padding_idx) {
  const char* op = "embedding_backward_";
  check_defined(op, {&grad_weight, &grad_out, &idx});
  check_same_device(op, grad_weight, grad_out);
  check_same_device(op, grad_weight, idx);
  check_same_dtype(op, grad_weight, grad_out);
  check_index_dtype(op, idx);
  MUXNET_CHECK(grad_weight.ndim() == 2, op, ": expected a 2-d grad_weight (V, D), got ", grad_weight.shape());
  const int64_t V = grad_weight.size(0);
  MUXNET_CHECK(idx.ndim() < kMaxDims, op, ": idx has ", idx.ndim(), " dims; grad_out would exceed ", kMaxDims);
  Shape want = idx.shape();
  want.push_back(grad_weight.size(1));
  MUXNET_CHECK(grad_out.shape() == want, op, ": grad_out has shape ", grad_out.shape(), ", expected ", want,
               " (idx shape + (D,))");
  MUXNET_CHECK(padding_idx >= -1 && padding_idx < V, op, ": padding_idx ", padding_idx, " out of range for ", V,
               " rows (use -1 for none)");
  Tensor ic = idx.contiguous();
  check_index_range(op, ic, V, detail::concat(V, " rows"));
  Tensor target = inplace_target(op, grad_weight);
  kernel<OpId::embedding_backward>(grad_weight.device())(grad_out.contiguous(), ic, padding_idx, target);
  finish_inplace(grad_weight, target);
}

// ---------------------------------------------------------------- index_select / index_add_

// x: (..., S, ...) with S at dim, idx: (n) -> (..., n, ...)
Tensor index_select(const Tensor& x, int dim, const Tensor& idx) {
  const char* op = "index_select";
  check_defined(op, {&x, &idx});
  check_same_device(op, x, idx);
  check_index_dtype(op, idx);
  MUXNET_CHECK(x.ndim() >= 1, op, ": cannot index a 0-d tensor");
  const int d = normalize_dim(dim, x.ndim(), op);
  MUXNET_CHECK(idx.ndim() == 1, op, ": expected a 1-d idx, got shape ", idx.shape());
  Tensor ic = idx.contiguous();
  check_index_range(op, ic, x.size(d), dim_range(x.size(d), d));
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = empty(shape, x.dtype(), x.device());
  if (out.numel() > 0) kernel<OpId::index_select>(x.device())(x.contiguous(), d, ic, out);
  return out;
}

// out: (..., S, ...) accumulated, idx: (n), src: (..., n, ...)
void index_add_(const Tensor& out, int dim, const Tensor& idx, const Tensor& src) {
  const char* op = "index_add_";
  check_defined(op, {&out, &idx, &src});
  check_same_device(op, out, idx);
  check_same_device(op, out, src);
  check_same_dtype(op, out, src);
  check_index_dtype(op, idx);
  MUXNET_CHECK(out.ndim() >= 1, op, ": cannot index a 0-d tensor");
  const int d = normalize_dim(dim, out.ndim(), op);
  MUXNET_CHECK(idx.ndim() == 1, op, ": expected a 1-d idx, got shape ", idx.shape());
  Shape want = out.shape();
  want[d] = idx.numel();
  MUXNET_CHECK(src.shape() == want, op, ": src has shape ", src.shape(), ", expected ", want);
  Tensor ic = idx.contiguous();
  check_index_range(op, ic, out.size(d), dim_range(out.size(d), d));
  if (src.numel() == 0) return;
  Tensor target = inplace_target(op, out);
  kernel<OpId::index_add>(out.device())(src.contiguous(), d, ic, target);
  finish_inplace(out, target);
}

// ---------------------------------------------------------------- gather / scatter_add_

namespace {

// idx must have big's ndim and fit inside big along every dim but dim.
void check_gather_shapes(const char* op, const char* big_name, const Tensor& big, int d, const Tensor& idx) {
  MUXNET_CHECK(idx.ndim() == big.ndim(), op, ": idx must have as many dims as ", big_name, ": ", big_name, "=",
               big.shape(), " idx=", idx.shape());
  for (int k = 0; k < big.ndim(); ++k) {
    MUXNET_CHECK(k == d || idx.size(k) <= big.size(k), op, ": idx ", idx.shape(), " is larger than ", big_name, " ",
                 big.shape(), " along dim ", k);
  }
}

}  // namespace

// x: (...), idx: same ndim -> idx's shape; out[i] = x[i with i[dim] = idx[i]]
Tensor gather(const Tensor& x, int dim, const Tensor& idx) {
  const char* op = "gather";
  check_defined(op, {&x, &idx});
  check_same_device(op, x, idx);
  check_index_dtype(op, idx);
  MUXNET_CHECK(x.ndim() >= 1, op, ": cannot index a 0-d tensor");
  const int d = normalize_dim(dim, x.ndim(), op);
  check_gather_shapes(op, "x", x, d, idx);
  Tensor ic = idx.contiguous();
  check_index_range(op, ic, x.size(d), dim_range(x.size(d), d));
  Tensor out = empty(idx.shape(), x.dtype(), x.device());
  if (out.numel() > 0) kernel<OpId::gather>(x.device())(x.contiguous(), d, ic, out);
  return out;
}

// out: (...) accumulated, idx: same ndim, src: same ndim and at least idx's size along every dim;
// out[i with i[dim] = idx[i]] += src[i] for every i in idx's shape
void scatter_add_(const Tensor& out, int dim, const Tensor& idx, const Tensor& src) {
  const char* op = "scatter_add_";
  check_defined(op, {&out, &idx, &src});
  check_same_device(op, out, idx);
  check_same_device(op, out, src);
  check_same_dtype(op, out, src);
  check_index_dtype(op, idx);
  MUXNET_CHECK(out.ndim() >= 1, op, ": cannot index a 0-d tensor");
  const int d = normalize_dim(dim, out.ndim(), op);
  check_gather_shapes(op, "out", out, d, idx);
  MUXNET_CHECK(src.ndim() == idx.ndim(), op, ": src must have as many dims as idx: src=", src.shape(), " idx=",
               idx.shape());
  Tensor src_block = src;
  for (int k = 0; k < src.ndim(); ++k) {
    MUXNET_CHECK(idx.size(k) <= src.size(k), op, ": idx ", idx.shape(), " is larger than src ", src.shape(),
                 " along dim ", k);
    src_block = src_block.narrow(k, 0, idx.size(k));
  }
  Tensor ic = idx.contiguous();
  check_index_range(op, ic, out.size(d), dim_range(out.size(d), d));
  if (idx.numel() == 0) return;
  Tensor target = inplace_target(op, out);
  kernel<OpId::scatter_add>(out.device())(src_block.contiguous(), d, ic, target);
  finish_inplace(out, target);
}

// ---------------------------------------------------------------- joins

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  const char* op = "concat";
  MUXNET_CHECK(!xs.empty(), op, ": expected at least one tensor, got an empty list");
  for (const Tensor& x : xs) MUXNET_CHECK(x.defined(), op, ": got an undefined tensor");
  const Tensor& first = xs[0];
  MUXNET_CHECK(first.ndim() >= 1, op, ": cannot concatenate 0-d tensors (use stack)");
  const int d = normalize_dim(dim, first.ndim(), op);
  Shape shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    MUXNET_CHECK(x.device() == first.device(), op, ": tensor ", i, " is on ", x.device(), ", tensor 0 on ",
                 first.device());
    MUXNET_CHECK(x.dtype() == first.dtype(), op, ": tensor ", i, " has dtype ", x.dtype(), ", tensor 0 has ",
                 first.dtype());
    bool same = x.ndim() == first.ndim();
    for (int k = 0; same && k < x.ndim(); ++k) same = k == d || x.size(k) == first.size(k);
    MUXNET_CHECK(same, op, ": tensor ", i, " has shape ", x.shape(), " but tensor 0 has shape ", first.shape(),
                 "; sizes must match except along dim ", d);
    total += x.size(d);
  }
  shape[d] = total;
  Tensor out = empty(shape, first.dtype(), first.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    const int64_t len = x.size(d);
    if (len > 0 && out.numel() > 0) out.narrow(d, at, len).copy_(x);
    at += len;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int dim) {
  const char* op = "stack";
  MUXNET_CHECK(!xs.empty(), op, ": expected at least one tensor, got an empty list");
  for (const Tensor& x : xs) MUXNET_CHECK(x.defined(), op, ": got an undefined tensor");
  const int d = normalize_dim(dim, xs[0].ndim() + 1, op);
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    MUXNET_CHECK(xs[i].shape() == xs[0].shape(), op, ": tensor ", i, " has shape ", xs[i].shape(),
                 " but tensor 0 has shape ", xs[0].shape(), "; all shapes must be equal");
    parts.push_back(xs[i].unsqueeze(d));
  }
  return concat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int dim) {
  const char* op = "split";
  MUXNET_CHECK(x.defined(), op, ": got an undefined tensor");
  MUXNET_CHECK(x.ndim() >= 1, op, ": cannot split a 0-d tensor");
  const int d = normalize_dim(dim, x.ndim(), op);
  const int64_t size = x.size(d);
  MUXNET_CHECK(split_size > 0 || (split_size == 0 && size == 0), op, ": split_size must be positive, got ",
               split_size);
  std::vector<Tensor> pieces;
  if (size == 0) {
    pieces.push_back(x);  // as torch.split: one empty piece
    return pieces;
  }
  for (int64_t at = 0; at < size; at += split_size) pieces.push_back(x.narrow(d, at, std::min(split_size, size - at)));
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  const char* op = "split";
  MUXNET_CHECK(x.defined(), op, ": got an undefined tensor");
  MUXNET_CHECK(x.ndim() >= 1, op, ": cannot split a 0-d tensor");
  const int d = normalize_dim(dim, x.ndim(), op);
  int64_t sum = 0;
  for (int64_t s : sizes) {
    MUXNET_CHECK(s >= 0, op, ": sizes must be non-negative, got ", sizes_str(sizes));
    sum += s;
  }
  MUXNET_CHECK(sum == x.size(d), op, ": sizes ", sizes_str(sizes), " sum to ", sum, " but dim ", d, " has size ",
               x.size(d));
  std::vector<Tensor> pieces;
  int64_t at = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, at, s));
    at += s;
  }
  return pieces;
}

}  // namespace muxnet::ops
