// shape.h — Shape: a small fixed-capacity vector of dimension sizes (also used for strides).
//
// Up to kMaxDims = 8 dimensions, stored inline (no heap), so shapes are cheap to copy into every
// tensor view. str() prints "(4, 3)", the form every error message uses.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace muxnet {

constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int ndim() const { return n_; }
  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  int64_t* begin() { return d_.data(); }
  int64_t* end() { return d_.data() + n_; }
  int64_t back() const { return d_[n_ - 1]; }

  void push_back(int64_t v);
  void insert(int pos, int64_t v);
  void erase(int pos);

  int64_t numel() const;  // product of the sizes; 1 for a 0-d shape
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }
  std::string str() const;  // "(4, 3)", "()" for 0-d

  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

// Row-major (C-order) strides, in elements, for a contiguous tensor of this shape.
Shape contiguous_strides(const Shape& shape);

// Wraps a possibly negative dim into [0, ndim); throws "<op>: dim 3 out of range for a 2-d tensor".
int normalize_dim(int dim, int ndim, const char* op);

// NumPy/PyTorch broadcasting of two shapes; throws "<op>: shapes (2, 3) and (4,) do not broadcast".
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace muxnet
