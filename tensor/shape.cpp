// shape.cpp — Shape helpers: printing, numel, broadcasting, dim normalisation.
#include "tensor/shape.h"

#include <algorithm>

#include "tensor/check.h"

namespace muxnet {

Shape::Shape(std::initializer_list<int64_t> dims) {
  MUXNET_CHECK(dims.size() <= size_t(kMaxDims), "Shape: at most ", kMaxDims, " dims supported, got ",
               dims.size());
  for (int64_t v : dims) d_[n_++] = v;
}

Shape::Shape(const std::vector<int64_t>& dims) {
  MUXNET_CHECK(dims.size() <= size_t(kMaxDims), "Shape: at most ", kMaxDims, " dims supported, got ",
               dims.size());
  for (int64_t v : dims) d_[n_++] = v;
}

void Shape::push_back(int64_t v) {
  MUXNET_CHECK(n_ < kMaxDims, "Shape: at most ", kMaxDims, " dims supported");
  d_[n_++] = v;
}

void Shape::insert(int pos, int64_t v) {
  MUXNET_CHECK(n_ < kMaxDims, "Shape: at most ", kMaxDims, " dims supported");
  MUXNET_CHECK(pos >= 0 && pos <= n_, "Shape::insert: position ", pos, " out of range for ", n_, " dims");
  for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++n_;
}

void Shape::erase(int pos) {
  MUXNET_CHECK(pos >= 0 && pos < n_, "Shape::erase: position ", pos, " out of range for ", n_, " dims");
  for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
  --n_;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < n_; ++i) n *= d_[i];
  return n;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < n_; ++i) {
    if (i) s += ", ";
    s += std::to_string(d_[i]);
  }
  if (n_ == 1) s += ",";
  return s + ")";
}

bool Shape::operator==(const Shape& o) const {
  return n_ == o.n_ && std::equal(begin(), end(), o.begin());
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides = shape;
  int64_t s = 1;
  for (int i = shape.ndim() - 1; i >= 0; --i) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

int normalize_dim(int dim, int ndim, const char* op) {
  int lo = -std::max(ndim, 1), hi = std::max(ndim, 1) - 1;
  MUXNET_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " out of range for a ", ndim,
               "-d tensor (expected ", lo, " to ", hi, ")");
  return dim < 0 ? dim + std::max(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  int n = std::max(a.ndim(), b.ndim());
  Shape out;
  for (int i = 0; i < n; ++i) {
    int ia = a.ndim() - n + i, ib = b.ndim() - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MUXNET_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b, " do not broadcast");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

}  // namespace muxnet
