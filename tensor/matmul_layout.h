// matmul_layout.h — how a strided 2-d matrix is handed to a row-major GEMM, shared by the CPU matmul
// kernel (tensor/cpu/matmul.cpp, OpenBLAS) and the CUDA one (cuda/matmul.cu, cuBLAS), so that both
// read every operand layout by the same rule.
//
// A row-major matrix (unit stride along its last dim) is passed as is with ld = its row stride; a
// column-major one (unit stride along its second-to-last dim, e.g. a transposed view) as the transpose
// of a row-major matrix, with the transpose flag flipped. So transposed views cost no copy.
// Plain host C++: no BLAS or CUDA header. Errors speak with the caller's names (GemmBackend).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>

#include "tensor/check.h"

namespace muxnet {

// The names a backend's errors use: the kernel ("matmul kernel (CUDA)"), the op ("matmul (CUDA)") and
// the library ("cuBLAS").
struct GemmBackend {
  const char* kernel;
  const char* op;
  const char* lib;
};

// How one stored (rows, cols) matrix with strides (s_row, s_col) is handed to row-major BLAS.
struct BlasOperand {
  bool transpose;  // the row-major op flag (after flipping for a column-major layout)
  int64_t ld;      // leading dimension of the row-major matrix read
};

// logical_trans is the caller's trans flag for this operand (the stored matrix is op's argument);
// name is the operand's name in errors ("a", "b").
inline BlasOperand blas_operand(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col, bool logical_trans,
                                const char* name, const GemmBackend& be) {
  const bool row_major = (s_col == 1 || cols <= 1) && (rows <= 1 || s_row >= std::max<int64_t>(1, cols));
  if (row_major) return {logical_trans, rows <= 1 ? std::max<int64_t>(1, cols) : s_row};
  const bool col_major = (s_row == 1 || rows <= 1) && (cols <= 1 || s_col >= std::max<int64_t>(1, rows));
  // The memory holds the (cols, rows) transpose row-major: BLAS sees it with the other flag.
  if (col_major) return {!logical_trans, cols <= 1 ? std::max<int64_t>(1, rows) : s_col};
  MUXNET_FAIL(be.kernel, ": operand ", name, " of shape (", rows, ", ", cols, ") has strides (", s_row, ", ", s_col,
              "), which ", be.lib, " cannot read (the op layer should have made it contiguous)");
}

// BLAS takes its sizes and leading dimensions as int: v (named `what` in the error) must fit.
inline void check_blas_int(int64_t v, const char* what, const GemmBackend& be) {
  MUXNET_CHECK(v <= int64_t(INT_MAX), be.op, ": ", what, " = ", v, " exceeds the ", be.lib, " integer range");
}

}  // namespace muxnet
