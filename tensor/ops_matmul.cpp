// ops_matmul.cpp — the matmul ops: shape checks, batch handling and layouts, then the matmul kernel.
//
// matmul(a, b, trans_a, trans_b) matches torch.matmul for inputs of 2 or more dims, with op(a) =
// a^T over the last two dims when trans_a (likewise b): a (..., M, K), b (..., K, N) -> (..., M, N).
// The leading (batch) dims of a and b must be equal, or one side must be 2-d, in which case that
// matrix is shared by every batch entry (batch stride 0). matmul_out writes
// out = alpha * op(a) @ op(b) + beta * out into an existing tensor (beta = 1 accumulates gradients).
//
// What this is not: torch.matmul's vector cases or batch broadcasting. 1-d operands are rejected
// (unsqueeze them), and batch dims are not broadcast against each other ((1, M, K) with (B, K, N) is
// an error) — only the 2-d-shared case, which covers nn.Linear and every backward pass here.
//
// Layouts: every operand becomes a 3-d view (batch, rows, cols) over its own storage. A matrix with a
// unit stride along either of its last two dims goes to the kernel as is (a transposed view is read
// as a transpose by BLAS, no copy); otherwise, or when the batch dims cannot be described by a single
// stride, the operand is copied with contiguous(). When a is batched, b is a shared 2-d matrix and a's
// batch folds into its rows (e.g. a contiguous (B, T, C) activation times a weight), the whole
// product is one (B*T, K) x (K, N) GEMM instead of B small ones: that is the nn.Linear fast path.
//
// matmul_out's out must not be copied (it is the result), so it must already have a BLAS layout:
// unit stride along its last dim, a single batch stride, no broadcast (stride 0) dims. out must not
// overlap a or b (not checked).
#include <algorithm>

#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

// True when a (rows, cols) matrix with strides (s_row, s_col) is row-major or column-major in the
// sense BLAS needs: one unit stride and a leading dimension at least the length of a row (column).
// The CPU kernel applies the same rule to choose its transpose flags.
bool blas_layout_ok(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  const bool row_major = (s_col == 1 || cols <= 1) && (rows <= 1 || s_row >= std::max<int64_t>(1, cols));
  const bool col_major = (s_row == 1 || rows <= 1) && (cols <= 1 || s_col >= std::max<int64_t>(1, rows));
  return row_major || col_major;
}

// The single stride that walks x's batch dims (all but the last two) in row-major order, if one
// exists. Size-1 dims are ignored; no batch dims, or only size-1 ones, give 0.
bool single_batch_stride(const Tensor& x, int64_t* stride) {
  int64_t expected = -1;
  *stride = 0;
  for (int d = x.ndim() - 3; d >= 0; --d) {
    if (x.size(d) == 1) continue;
    if (expected < 0) {
      *stride = x.stride(d);
    } else if (x.stride(d) != expected) {
      return false;
    }
    expected = x.stride(d) * x.size(d);
  }
  return true;
}

// x: (..., R, C) -> a (batch, R, C) view the kernel can read; a 2-d x is shared (batch stride 0).
// Copies only when the matrices or the batch dims have no BLAS-compatible layout.
Tensor batched_operand(Tensor x, int64_t batch) {
  const int64_t rows = x.size(-2), cols = x.size(-1);
  if (!blas_layout_ok(rows, cols, x.stride(-2), x.stride(-1))) x = x.contiguous();
  int64_t bs = 0;
  if (x.ndim() > 2 && !single_batch_stride(x, &bs)) {
    x = x.contiguous();
    single_batch_stride(x, &bs);
  }
  return Tensor(x.storage(), Shape{batch, rows, cols}, Shape{bs, x.stride(-2), x.stride(-1)}, x.offset(),
                x.dtype());
}

std::string trans_suffix(bool trans_a, bool trans_b) {
  if (trans_a && trans_b) return " with trans_a and trans_b";
  if (trans_a) return " with trans_a";
  if (trans_b) return " with trans_b";
  return "";
}

// Checks a and b and returns the shape of op(a) @ op(b).
Shape matmul_shape(const char* op, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  MUXNET_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  check_same_device(op, a, b);
  check_floating(op, a);
  check_same_dtype(op, a, b);
  MUXNET_CHECK(a.ndim() >= 2 && b.ndim() >= 2, op, ": expected a and b with at least 2 dims, got a=", a.shape(),
               " b=", b.shape(), " (unsqueeze vectors into 1-row or 1-column matrices)");
  const int64_t M = trans_a ? a.size(-1) : a.size(-2);
  const int64_t Ka = trans_a ? a.size(-2) : a.size(-1);
  const int64_t Kb = trans_b ? b.size(-1) : b.size(-2);
  const int64_t N = trans_b ? b.size(-2) : b.size(-1);
  MUXNET_CHECK(Ka == Kb, op, ": inner dims differ: a=", a.shape(), " b=", b.shape(), trans_suffix(trans_a, trans_b));
  Shape batch_a = a.shape(), batch_b = b.shape();
  batch_a.erase(batch_a.ndim() - 1);
  batch_a.erase(batch_a.ndim() - 1);
  batch_b.erase(batch_b.ndim() - 1);
  batch_b.erase(batch_b.ndim() - 1);
  MUXNET_CHECK(batch_a.empty() || batch_b.empty() || batch_a == batch_b, op, ": batch dims differ: a=", a.shape(),
               " b=", b.shape(), " (batch dims must be equal, or one side 2-d)");
  Shape out = batch_a.empty() ? batch_b : batch_a;
  out.push_back(M);
  out.push_back(N);
  return out;
}

// out: (..., M, N) -> a (batch, M, N) view over out's storage; throws when out has no BLAS layout
// (out is the result, so it cannot be replaced by a contiguous copy).
Tensor batched_out(const char* op, const Tensor& out, int64_t batch) {
  const int64_t M = out.size(-2), N = out.size(-1);
  for (int d = 0; d < out.ndim(); ++d) {
    MUXNET_CHECK(out.size(d) <= 1 || out.stride(d) != 0, op, ": out must not be a broadcast (expanded) view, got shape ",
                 out.shape(), " with strides ", out.strides());
  }
  MUXNET_CHECK((out.stride(-1) == 1 || N <= 1) && (M <= 1 || out.stride(-2) >= N), op,
               ": out must have unit stride along its last dim and non-overlapping rows, got shape ", out.shape(),
               " with strides ", out.strides());
  int64_t bs = 0;
  MUXNET_CHECK(single_batch_stride(out, &bs), op, ": out's batch dims must be walkable with a single stride, got shape ",
               out.shape(), " with strides ", out.strides());
  return Tensor(out.storage(), Shape{batch, M, N}, Shape{bs, out.stride(-2), N <= 1 ? 1 : out.stride(-1)},
                out.offset(), out.dtype());
}

// (batch, R, C) -> (1, batch * R, C) when the batch continues the rows with a row-major layout:
// row r of entry i is at i * bs + r * sr == (i * R + r) * row_stride. Returns an undefined tensor when
// it does not fold.
Tensor fold_batch_into_rows(const Tensor& x) {
  const int64_t batch = x.size(0), rows = x.size(1), cols = x.size(2);
  const int64_t bs = x.stride(0), sr = x.stride(1), sc = x.stride(2);
  if (!(sc == 1 || cols <= 1)) return Tensor();
  int64_t row_stride = sr;
  if (rows == 1) {
    row_stride = bs;
  } else if (bs != rows * sr) {
    return Tensor();
  }
  if (row_stride < std::max<int64_t>(1, cols)) return Tensor();
  return Tensor(x.storage(), Shape{1, batch * rows, cols}, Shape{0, row_stride, 1}, x.offset(), x.dtype());
}

void run_matmul(const char* op, const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b,
                double alpha, double beta) {
  const Shape& shape = out.shape();
  if (shape.numel() == 0) return;
  int64_t batch = 1;
  for (int d = 0; d < shape.ndim() - 2; ++d) batch *= shape[d];
  Tensor a3 = batched_operand(a, batch);
  Tensor b3 = batched_operand(b, batch);
  Tensor c3 = batched_out(op, out, batch);
  if (batch > 1 && a.ndim() > 2 && b.ndim() == 2 && !trans_a) {
    Tensor af = fold_batch_into_rows(a3);
    Tensor cf = af.defined() ? fold_batch_into_rows(c3) : Tensor();
    if (cf.defined()) {
      a3 = af;
      c3 = cf;
      b3 = Tensor(b3.storage(), Shape{1, b3.size(1), b3.size(2)}, Shape{0, b3.stride(1), b3.stride(2)},
                  b3.offset(), b3.dtype());
    }
  }
  kernel<OpId::matmul>(out.device())(a3, b3, c3, trans_a, trans_b, alpha, beta);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  Shape shape = matmul_shape("matmul", a, b, trans_a, trans_b);
  Tensor out = empty(shape, a.dtype(), a.device());
  run_matmul("matmul", a, b, out, trans_a, trans_b, 1.0, 0.0);
  return out;
}

void matmul_out(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                double beta) {
  Shape shape = matmul_shape("matmul_out", a, b, trans_a, trans_b);
  MUXNET_CHECK(out.defined(), "matmul_out: out is an undefined tensor");
  check_same_device("matmul_out", a, out);
  MUXNET_CHECK(out.dtype() == a.dtype(), "matmul_out: out has dtype ", out.dtype(), ", expected ", a.dtype());
  MUXNET_CHECK(out.shape() == shape, "matmul_out: out has shape ", out.shape(), ", expected ", shape);
  run_matmul("matmul_out", a, b, out, trans_a, trans_b, alpha, beta);
}

}  // namespace muxnet::ops
