// tensor.cpp — Tensor metadata, views, copies, element access and factories.
#include "tensor/tensor.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/cpu/blas.h"
#include "tensor/device.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"


namespace muxnet {

Tensor::Tensor(StoragePtr storage, const Shape& shape, const Shape& strides, int64_t offset, DType dtype)
    : impl_(std::make_shared<TensorImpl>()) {
  MUXNET_CHECK(storage != nullptr, "Tensor: null storage");
  MUXNET_CHECK(shape.ndim() == strides.ndim(), "Tensor: shape ", shape, " and strides ", strides,
               " differ in rank");
  impl_->storage = std::move(storage);
  impl_->shape = shape;
  impl_->strides = strides;
  impl_->offset = offset;
  impl_->dtype = dtype;
}

int64_t Tensor::size(int dim) const { return shape()[normalize_dim(dim, ndim(), "Tensor::size")]; }
int64_t Tensor::stride(int dim) const { return strides()[normalize_dim(dim, ndim(), "Tensor::stride")]; }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (int d = sh.ndim() - 1; d >= 0; --d) {
    if (sh[d] == 1) continue;  // the stride of a size-1 dim never matters
    if (sh[d] == 0) return true;
    if (st[d] != expected) return false;
    expected *= sh[d];
  }
  return true;
}

void* Tensor::data_ptr() const {
  char* base = static_cast<char*>(storage()->data());
  if (!base) return nullptr;
  return base + offset() * int64_t(element_size());
}

Tensor Tensor::make_view(const Shape& shape, const Shape& strides, int64_t offset) const {
  return Tensor(storage(), shape, strides, offset, dtype());
}

// ---------------------------------------------------------------- autograd hooks

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }
detail::RecordViewFn detail::record_view_hook = nullptr;

template <typename Backward>
Tensor Tensor::recorded(Tensor out, const char* name, Backward&& backward) const {
  if (requires_grad() && t_grad_enabled && detail::record_view_hook) {
    detail::record_view_hook(*this, out, name, detail::ViewBackward(std::forward<Backward>(backward)));
  }
  return out;
}

void Tensor::check_writable(const char* op) const {
  MUXNET_CHECK(!(requires_grad() && t_grad_enabled), op,
               ": in-place write to a tensor that requires grad (initialise parameters inside a NoGradGuard)");
}

Tensor Tensor::detach() const { return make_view(shape(), strides(), offset()); }

// ---------------------------------------------------------------- views

namespace {

// Resolves one -1 in a requested shape and checks the element count.
Shape infer_shape(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape out = requested;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < out.ndim(); ++i) {
    if (out[i] == -1) {
      MUXNET_CHECK(infer < 0, op, ": only one dim can be -1, got ", requested);
      infer = i;
    } else {
      MUXNET_CHECK(out[i] >= 0, op, ": invalid size ", out[i], " in shape ", requested);
      known *= out[i];
    }
  }
  if (infer >= 0) {
    MUXNET_CHECK(known != 0 && numel % known == 0, op, ": shape ", requested, " is invalid for ", from,
                 " (", numel, " elements)");
    out[infer] = numel / known;
  }
  MUXNET_CHECK(out.numel() == numel, op, ": shape ", requested, " is invalid for ", from, " (", numel,
               " elements)");
  return out;
}

// Strides for viewing (old_shape, old_strides) as new_shape without copying, if possible.
// Walks both shapes from the innermost dim, matching "chunks" of old dims that are contiguous among
// themselves against runs of new dims with the same element count (the algorithm PyTorch uses).
bool view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape, Shape& out) {
  out = new_shape;
  if (old_shape.numel() == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  Shape os = old_shape, ost = old_strides;
  if (os.ndim() == 0) {
    os = Shape{1};
    ost = Shape{1};
  }
  int view_d = new_shape.ndim() - 1;
  int64_t chunk_base = ost[os.ndim() - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = os.ndim() - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    if (d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base = ost[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "view", this->shape());
  Shape strides;
  MUXNET_CHECK(view_strides(this->shape(), this->strides(), shape, strides), "view: cannot view ",
               this->shape(), " with strides ", this->strides(), " as ", shape,
               " without a copy (use reshape)");
  Shape src = this->shape();
  return recorded(make_view(shape, strides, offset()), "view", [src](const Tensor& g) { return g.reshape(src); });
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "reshape", this->shape());
  Shape strides;
  if (view_strides(this->shape(), this->strides(), shape, strides)) {
    Shape src = this->shape();
    return recorded(make_view(shape, strides, offset()), "reshape",
                    [src](const Tensor& g) { return g.reshape(src); });
  }
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int start_dim, int end_dim) const {
  if (ndim() == 0) return reshape(Shape{1});
  int s = normalize_dim(start_dim, ndim(), "flatten"), e = normalize_dim(end_dim, ndim(), "flatten");
  MUXNET_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape out;
  for (int d = 0; d < s; ++d) out.push_back(size(d));
  int64_t m = 1;
  for (int d = s; d <= e; ++d) m *= size(d);
  out.push_back(m);
  for (int d = e + 1; d < ndim(); ++d) out.push_back(size(d));
  return reshape(out);
}

Tensor Tensor::transpose(int dim0, int dim1) const {
  int a = normalize_dim(dim0, ndim(), "transpose"), b = normalize_dim(dim1, ndim(), "transpose");
  if (ndim() == 0) return *this;
  Shape sh = shape(), st = strides();
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return recorded(make_view(sh, st, offset()), "transpose", [a, b](const Tensor& g) { return g.transpose(a, b); });
}

Tensor Tensor::t() const {
  MUXNET_CHECK(ndim() == 2, "t: expected a 2-d tensor, got shape ", shape());
  return transpose(0, 1);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  MUXNET_CHECK(int(dims.size()) == ndim(), "permute: got ", dims.size(), " dims for a tensor of shape ",
               shape());
  Shape sh, st;
  bool seen[kMaxDims] = {};
  std::vector<int> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int nd = normalize_dim(dims[i], ndim(), "permute");
    MUXNET_CHECK(!seen[nd], "permute: dim ", dims[i], " appears twice");
    seen[nd] = true;
    inverse[size_t(nd)] = int(i);
    sh.push_back(size(nd));
    st.push_back(stride(nd));
  }
  return recorded(make_view(sh, st, offset()), "permute", [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::narrow(int dim, int64_t start, int64_t length) const {
  MUXNET_CHECK(ndim() > 0, "narrow: cannot narrow a 0-d tensor");
  int d = normalize_dim(dim, ndim(), "narrow");
  MUXNET_CHECK(start >= 0 && length >= 0 && start + length <= size(d), "narrow: range [", start, ", ",
               start + length, ") out of bounds for dim ", d, " of size ", size(d));
  Shape sh = shape();
  sh[d] = length;
  Shape src = shape();
  DType dt = dtype();
  return recorded(make_view(sh, strides(), offset() + start * stride(d)), "narrow", [=](const Tensor& g) {
    Tensor gx = zeros(src, dt, g.device());
    gx.narrow(d, start, length).copy_(g);
    return gx;
  });
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end, int64_t step) const {
  MUXNET_CHECK(ndim() > 0, "slice: cannot slice a 0-d tensor");
  int d = normalize_dim(dim, ndim(), "slice");
  MUXNET_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] = stride(d) * step;
  Shape src = shape();
  DType dt = dtype();
  return recorded(make_view(sh, st, offset() + start * stride(d)), "slice", [=](const Tensor& g) {
    Tensor gx = zeros(src, dt, g.device());
    gx.slice(d, start, end, step).copy_(g);
    return gx;
  });
}

Tensor Tensor::select(int dim, int64_t index) const {
  MUXNET_CHECK(ndim() > 0, "select: cannot select from a 0-d tensor");
  int d = normalize_dim(dim, ndim(), "select");
  int64_t n = size(d);
  MUXNET_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  Shape sh = shape(), st = strides();
  int64_t off = offset() + index * st[d];
  sh.erase(d);
  st.erase(d);
  Shape src = shape();
  DType dt = dtype();
  return recorded(make_view(sh, st, off), "select", [=](const Tensor& g) {
    Tensor gx = zeros(src, dt, g.device());
    gx.select(d, index).copy_(g);
    return gx;
  });
}

Tensor Tensor::expand(const Shape& target) const {
  MUXNET_CHECK(target.ndim() >= ndim(), "expand: cannot expand shape ", shape(), " to ", target,
               " (fewer dims)");
  Shape sh, st;
  int lead = target.ndim() - ndim();
  for (int d = 0; d < target.ndim(); ++d) {
    if (d < lead) {
      MUXNET_CHECK(target[d] >= 0, "expand: invalid size ", target[d], " for a new leading dim in ", target);
      sh.push_back(target[d]);
      st.push_back(0);
      continue;
    }
    int64_t cur = size(d - lead), want = target[d] == -1 ? cur : target[d];
    MUXNET_CHECK(want >= 0, "expand: invalid size ", want, " in ", target);
    MUXNET_CHECK(cur == want || cur == 1, "expand: cannot expand shape ", shape(), " to ", target,
                 " (dim ", d, ": ", cur, " vs ", want, ")");
    sh.push_back(want);
    st.push_back(cur == want ? stride(d - lead) : 0);
  }
  Shape src = shape();
  return recorded(make_view(sh, st, offset()), "expand", [src](const Tensor& g) { return ops::sum_to_shape(g, src); });
}

Tensor Tensor::squeeze() const {
  Shape sh, st;
  for (int d = 0; d < ndim(); ++d) {
    if (size(d) == 1) continue;
    sh.push_back(size(d));
    st.push_back(stride(d));
  }
  Shape src = shape();
  return recorded(make_view(sh, st, offset()), "squeeze", [src](const Tensor& g) { return g.reshape(src); });
}

Tensor Tensor::squeeze(int dim) const {
  if (ndim() == 0) return *this;
  int d = normalize_dim(dim, ndim(), "squeeze");
  if (size(d) != 1) return *this;  // as in PyTorch: squeezing a non-1 dim is a no-op
  Shape sh = shape(), st = strides();
  sh.erase(d);
  st.erase(d);
  Shape src = shape();
  return recorded(make_view(sh, st, offset()), "squeeze", [src](const Tensor& g) { return g.reshape(src); });
}

Tensor Tensor::unsqueeze(int dim) const {
  int d = normalize_dim(dim, ndim() + 1, "unsqueeze");
  Shape sh = shape(), st = strides();
  int64_t s = d < ndim() ? stride(d) * size(d) : 1;
  sh.insert(d, 1);
  st.insert(d, s);
  Shape src = shape();
  return recorded(make_view(sh, st, offset()), "unsqueeze", [src](const Tensor& g) { return g.reshape(src); });
}

// ---------------------------------------------------------------- copies

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  {
    NoGradGuard no_grad;  // the copy below is the forward of clone, recorded as a whole
    out.copy_(*this);
  }
  return recorded(out, "clone", [](const Tensor& g) { return g; });
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_writable("copy_");
  bool ok = src.ndim() <= ndim();
  for (int d = 0; ok && d < src.ndim(); ++d) {
    int64_t s = src.size(d), t = size(d + ndim() - src.ndim());
    ok = s == t || s == 1;
  }
  MUXNET_CHECK(ok, "copy_: source shape ", src.shape(), " does not broadcast to destination ", shape());
  // copy_ records nothing: a gradient could not flow from the destination back to the source.
  MUXNET_CHECK(!(src.requires_grad() && grad_enabled()), "copy_: the source requires grad, and copy_ does not ",
               "record a gradient; build the tensor with concat/stack, or copy src.detach() explicitly");
  for (int d = 0; d < ndim(); ++d) {
    // Several elements of an expanded destination share one address: the result would depend on the
    // order of the writes.
    MUXNET_CHECK(size(d) <= 1 || stride(d) != 0, "copy_: the destination ", shape(), " is an expanded view ",
                 "(stride 0 in dim ", d, ")");
  }
  if (numel() == 0) return *this;
  Tensor source = src;
  if (src.device() != device()) {
    source = src.detach().to(device());  // across devices: move the source first (a contiguous copy)
  } else if (src.storage() == storage()) {
    if (src.offset() == offset() && src.shape() == shape() && src.strides() == strides()) return *this;
    source = src.detach().clone();  // overlapping source and destination: read from a copy
  }
  kernel<OpId::copy>(device())(source, *this);
  return *this;
}

const Tensor& Tensor::fill_(double value) const {
  check_writable("fill_");
  if (numel() == 0) return *this;
  kernel<OpId::fill>(device())(*this, value);
  return *this;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  {
    NoGradGuard no_grad;
    out.copy_(*this);
  }
  if (!is_floating(target)) return out;  // rounding to integers has no gradient
  DType src = dtype();
  return recorded(out, "to", [src](const Tensor& g) { return g.to(src); });
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  const Device from = device();
  MUXNET_CHECK(from == Device::CPU || target == Device::CPU, "to: copies go through the cpu, got ", from,
               " -> ", target);
  const Device gpu = from == Device::CPU ? target : from;
  require_device(gpu, "to");
  Tensor src = detach().contiguous();  // dense bytes on the source device
  Tensor out = empty(shape(), dtype(), target);
  const size_t nbytes = size_t(numel()) * element_size();
  if (nbytes) {
    const DeviceRuntime* rt = device_runtime(gpu);
    if (target == Device::CPU) {
      rt->copy_to_host(out.data_ptr(), src.data_ptr(), nbytes);
    } else {
      rt->copy_from_host(out.data_ptr(), src.data_ptr(), nbytes);
    }
  }
  if (!is_floating(dtype())) return out;
  return recorded(out, "to", [from](const Tensor& g) { return g.to(from); });
}

// ---------------------------------------------------------------- element access

double Tensor::at(const std::vector<int64_t>& index) const {
  MUXNET_CHECK(int(index.size()) == ndim(), "at: got ", index.size(), " indices for a tensor of shape ",
               shape());
  int64_t off = offset();
  for (int d = 0; d < ndim(); ++d) {
    int64_t i = index[d];
    MUXNET_CHECK(i >= 0 && i < size(d), "at: index ", i, " out of range for dim ", d, " of size ", size(d),
                 " in shape ", shape());
    off += i * stride(d);
  }
  if (device() != Device::CPU) {
    // One element from device memory: view it and copy it over.
    Tensor one(storage(), Shape{}, Shape{}, off, dtype());
    return one.to(Device::CPU).at({});
  }
  const char* base = static_cast<const char*>(storage()->data());
  switch (dtype()) {
    case DType::F32: return double(reinterpret_cast<const float*>(base)[off]);
    case DType::F64: return reinterpret_cast<const double*>(base)[off];
    case DType::I32: return double(reinterpret_cast<const int32_t*>(base)[off]);
    case DType::I64: return double(reinterpret_cast<const int64_t*>(base)[off]);
    default: MUXNET_FAIL("at: unsupported dtype");
  }
}

double Tensor::item() const {
  MUXNET_CHECK(numel() == 1, "item: expected a tensor with 1 element, got shape ", shape());
  return detach().reshape(Shape{}).at({});
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(Device::CPU).to(dtype_of<T>::value).contiguous();
  std::vector<T> out(size_t(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

// ---------------------------------------------------------------- printing

namespace {

constexpr int64_t kSummarizeAbove = 1000;  // elements, as in PyTorch
constexpr int64_t kEdgeItems = 3;

struct Printer {
  const std::vector<double>& v;
  const Shape& shape;
  bool integral;
  bool sci;
  bool summarize;
  std::string out;

  void value(double x) {
    char buf[64];
    if (integral) {
      snprintf(buf, sizeof buf, "%lld", (long long)x);
    } else if (std::isnan(x) || std::isinf(x)) {
      snprintf(buf, sizeof buf, "%s", std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"));
    } else if (sci) {
      snprintf(buf, sizeof buf, "%.4e", x);
    } else {
      snprintf(buf, sizeof buf, "%.4f", x);
    }
    out += buf;
  }

  // Prints the sub-tensor starting at flat index base, at dim d.
  void rec(int d, int64_t base, int64_t stride_elems, int indent) {
    out += "[";
    int64_t n = shape[d];
    int64_t inner = stride_elems / std::max<int64_t>(n, 1);
    for (int64_t i = 0; i < n; ++i) {
      if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
        out += (d == shape.ndim() - 1) ? "..., " : "...,\n" + std::string(indent + 1, ' ');
        i = n - kEdgeItems - 1;
        continue;
      }
      if (d == shape.ndim() - 1) {
        value(v[size_t(base + i)]);
      } else {
        rec(d + 1, base + i * inner, inner, indent + 1);
      }
      if (i + 1 < n) {
        out += ",";
        if (d == shape.ndim() - 1) {
          out += " ";
        } else {
          out += std::string(size_t(shape.ndim() - 1 - d), '\n') + std::string(indent + 1, ' ');
        }
      }
    }
    out += "]";
  }
};

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  bool integral = is_integral(dtype());
  double maxabs = 0, minabs = INFINITY;
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    maxabs = std::max(maxabs, std::fabs(x));
    if (x != 0) minabs = std::min(minabs, std::fabs(x));
  }
  bool sci = !integral && (maxabs >= 1e8 || (minabs < 1e-4 && minabs != INFINITY));
  Printer p{v, shape(), integral, sci, numel() > kSummarizeAbove, "tensor("};
  if (ndim() == 0) {
    p.value(v[0]);
  } else {
    p.rec(0, 0, numel(), 7);
  }
  p.out += ", shape=" + shape().str() + ", dtype=" + dtype_name(dtype());
  if (device() != Device::CPU) p.out += std::string(", device=") + device_name(device());
  return p.out + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---------------------------------------------------------------- factories

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MUXNET_CHECK(s >= 0, "empty: negative size in shape ", shape);
  size_t nbytes = size_t(shape.numel()) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>(nbytes, device);
  return Tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }

Tensor arange(double start, double end, double step, DType dtype) {
  MUXNET_CHECK(step != 0, "arange: step must be non-zero");
  MUXNET_CHECK(std::isfinite(start) && std::isfinite(end), "arange: bounds must be finite");
  double span = (end - start) / step;
  int64_t n = span > 0 ? int64_t(std::ceil(span)) : 0;
  Tensor t = empty(Shape{n}, dtype);
  for (int64_t i = 0; i < n; ++i) {
    double v = start + double(i) * step;
    switch (dtype) {
      case DType::F32: t.data<float>()[i] = float(v); break;
      case DType::F64: t.data<double>()[i] = v; break;
      case DType::I32: t.data<int32_t>()[i] = int32_t(v); break;
      case DType::I64: t.data<int64_t>()[i] = int64_t(v); break;
      default: MUXNET_FAIL("arange: unsupported dtype");
    }
  }
  return t;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  MUXNET_CHECK(int64_t(values.size()) == shape.numel(), "from_vector: ", values.size(),
               " values do not fill shape ", shape, " (", shape.numel(), " elements)");
  Tensor t = empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&);

Tensor scalar_tensor(double value, DType dtype) { return full(Shape{}, value, dtype); }

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    if (va[i] == vb[i]) continue;  // equal infinities are close
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) return false;
  }
  return true;
}

void set_num_threads(int n) {
  MUXNET_CHECK(n >= 1, "set_num_threads: need at least 1 thread, got ", n);
  omp_set_num_threads(n);
  blas::set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace muxnet
