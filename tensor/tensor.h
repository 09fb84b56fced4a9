// tensor.h — Tensor: an N-d strided view over shared Storage.
//
// A Tensor is a cheap handle (a shared pointer to a TensorImpl): copying a Tensor aliases it, as in
// PyTorch. Views (view/reshape, transpose/permute, narrow/slice/select, expand, squeeze/unsqueeze)
// make a new TensorImpl over the same Storage with other sizes, strides (in elements) and offset; they
// never copy. Kernels that need dense rows call contiguous(), which copies only when needed.
//
// What this is not: differentiable. The methods here compute values only; autograd/ records graphs
// (the TensorImpl keeps a slot for its bookkeeping so that a tensor keeps its gradient identity).
//
// Layout is row-major; a tensor is contiguous when its strides equal contiguous_strides(shape).
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tensor/check.h"
#include "tensor/grad_mode.h"
#include "tensor/shape.h"
#include "tensor/storage.h"
#include "tensor/types.h"

namespace muxnet {

struct AutogradMeta;  // defined by autograd/: grad, grad_fn, requires_grad

struct TensorImpl {
  StoragePtr storage;
  Shape shape;
  Shape strides;       // in elements; 0 along expanded (broadcast) dims
  int64_t offset = 0;  // in elements, from storage->data()
  DType dtype = DType::F32;
  std::shared_ptr<AutogradMeta> autograd;  // null until autograd needs it
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false, every other call throws
  Tensor(StoragePtr storage, const Shape& shape, const Shape& strides, int64_t offset, DType dtype);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int ndim() const { return impl().shape.ndim(); }
  int64_t numel() const { return impl().shape.numel(); }
  int64_t size(int dim) const;    // negative dims count from the end
  int64_t stride(int dim) const;
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  const StoragePtr& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // Pointer to element 0 of this view (on the tensor's device).
  void* data_ptr() const;
  // Typed pointer; throws when T does not match dtype().
  template <typename T> T* data() const;

  // ---- views (never copy) ----
  Tensor view(const Shape& shape) const;     // one dim may be -1; throws if strides do not allow it
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a contiguous copy
  Tensor flatten(int start_dim = 0, int end_dim = -1) const;
  Tensor transpose(int dim0, int dim1) const;
  Tensor t() const;  // transpose of a 2-d tensor
  Tensor permute(const std::vector<int>& dims) const;
  Tensor narrow(int dim, int64_t start, int64_t length) const;
  Tensor slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;  // python-style bounds
  Tensor select(int dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;      // -1 keeps a size; new leading dims allowed
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor squeeze() const;  // drops every size-1 dim
  Tensor squeeze(int dim) const;
  Tensor unsqueeze(int dim) const;

  // ---- copies ----
  Tensor contiguous() const;  // *this when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  // Copies src into this view elementwise; src broadcasts to shape() and is cast to dtype(). A source
  // on another device is moved over first.
  const Tensor& copy_(const Tensor& src) const;
  const Tensor& fill_(double value) const;
  const Tensor& zero_() const { return fill_(0.0); }
  Tensor to(DType dtype) const;    // *this when the dtype already matches
  // A contiguous copy on device (same dtype and shape); *this when already there. Differentiable:
  // the gradient moves back. Throws naming the reason when the device is not available.
  Tensor to(Device device) const;

  // ---- element access (host; device tensors are copied over) ----
  double item() const;  // the single element of a 1-element tensor, as double
  template <typename T> T item() const { return static_cast<T>(item()); }
  double at(const std::vector<int64_t>& index) const;  // one element by index; validates the index
  template <typename T> std::vector<T> to_vector() const;  // all elements in row-major order

  std::string str() const;  // PyTorch-like printing, summarised beyond 1000 elements

  // ---- autograd (the engine is in autograd/engine.cpp; see autograd/engine.h) ----
  // A tensor requires grad when it is a leaf marked with requires_grad_() or the result of a recorded
  // operation. The view and copy methods above record themselves when their source requires grad and
  // grad mode is on, so x.transpose(0, 1) is differentiable like muxnet::transpose(x, 0, 1).
  bool requires_grad() const { return impl().autograd != nullptr; }
  const Tensor& requires_grad_(bool on = true) const;  // leaves only
  bool is_leaf() const;                                // no recorded function made it
  Tensor grad() const;                                 // accumulated gradient; undefined until reached
  void zero_grad() const;                              // fills an existing gradient with 0
  void set_grad(const Tensor& grad) const;             // replaces the gradient (e.g. with an arena view)
  // Runs the graph in reverse from this tensor. grad_output defaults to 1 for a one-element tensor.
  // Gradients ACCUMULATE into .grad() of the leaves (+=); the graph is freed unless retain_graph.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  std::string grad_fn_name() const;  // name of the function that made this tensor, "" for a leaf
  Tensor detach() const;             // same storage, no autograd history
  const std::shared_ptr<AutogradMeta>& autograd_meta() const { return impl().autograd; }
  void set_autograd_meta(std::shared_ptr<AutogradMeta> meta) const { impl().autograd = std::move(meta); }

 private:
  TensorImpl& impl() const {
    MUXNET_CHECK(impl_ != nullptr, "Tensor: use of an undefined tensor");
    return *impl_;
  }
  Tensor make_view(const Shape& shape, const Shape& strides, int64_t offset) const;
  // Records out as a differentiable function of *this when autograd is active (see grad_mode.h).
  template <typename Backward>
  Tensor recorded(Tensor out, const char* name, Backward&& backward) const;
  void check_writable(const char* op) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories (CPU unless a device is given) ----
Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::CPU);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// start, start+step, ... < end (> end for a negative step)
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::F32);
inline Tensor arange(int64_t n, DType dtype = DType::I64) { return arange(0.0, double(n), 1.0, dtype); }
// A tensor holding a copy of values; shape defaults to (values.size(),).
template <typename T> Tensor from_vector(const std::vector<T>& values, const Shape& shape);
template <typename T> Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{int64_t(values.size())});
}
Tensor scalar_tensor(double value, DType dtype = DType::F32);  // 0-d

// True when a and b have the same shape and |a - b| <= atol + rtol * |b| everywhere (NaN != NaN).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// Threads used by muxnet's OpenMP loops and by OpenBLAS (one setting for both).
void set_num_threads(int n);
int get_num_threads();

// ---- inline templates ----
template <typename T>
T* Tensor::data() const {
  MUXNET_CHECK(dtype_of<T>::value == dtype(), "Tensor::data: tensor has dtype ", dtype(),
               ", requested ", dtype_of<T>::value);
  return static_cast<T*>(data_ptr());
}

}  // namespace muxnet
