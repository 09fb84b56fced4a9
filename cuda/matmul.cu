// matmul.cu — the CUDA matmul kernel (OpId::matmul): batched GEMM through cuBLAS
// (cublasSgemm / cublasDgemm, and their StridedBatched forms when the batch has more than one entry).
//
// out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i] for every batch entry i, the same contract as
// tensor/cpu/matmul.cpp (the oracle). Each 2-d matrix is handed over in the layout it already has,
// with the same rule as the CPU kernel: a row-major matrix (unit stride along its last dim) is read as
// is with ld = its row stride, a column-major one (a transposed view) as the transpose of a row-major
// matrix with the transpose flag flipped, so transposed views cost no copy.
//
// cuBLAS is column-major. A row-major (R, C) matrix with leading dimension ld is, to cuBLAS, the
// column-major (C, R) matrix with the same ld: its transpose. So the row-major product
// out = op(a) @ op(b) is computed as the column-major product out^T = op(b)^T @ op(a)^T, i.e. one
// cuBLAS GEMM with the operands swapped, m = N, n = M, and the same transpose flags and leading
// dimensions the CPU kernel gives row-major BLAS.
//
// The op layer (tensor/ops_matmul.cpp) guarantees: every operand is a 3-d (batch, rows, cols) view;
// a and b have one unit stride per matrix and a single batch stride (0 = shared by every entry);
// out has a unit column stride (or N <= 1), non-overlapping rows and a single batch stride.
//
// Precision: f32 GEMMs use full f32 arithmetic (CUBLAS_DEFAULT_MATH, as PyTorch with TF32 off)
// unless allow_tf32() (tensor/device.h) is on, which switches the handle to TF32 tensor cores.
// What this is not: a GEMM implementation, nor a shape checker (the op layer validated the shapes).
#include <algorithm>
#include <climits>

#include "cuda/common.cuh"
#include "tensor/device.h"
#include "tensor/matmul_layout.h"

namespace muxnet {

namespace {

// out[i, r, j] = beta * out[i, r, j] over a (batch, M, N) view with strides (c_bs, ldc, 1): the empty
// sum of a K == 0 product. beta == 0 overwrites (a NaN already in out does not survive), as BLAS does.
template <typename T>
__global__ void scale_out_kernel(T* c, int64_t batch, int64_t M, int64_t N, int64_t c_bs, int64_t ldc, T beta) {
  const int64_t total = batch * M * N;
  MUXNET_GRID_STRIDE(idx, total) {
    const int64_t j = idx % N;
    const int64_t r = (idx / N) % M;
    const int64_t i = idx / (N * M);
    T* p = c + i * c_bs + r * ldc + j;
    *p = beta == T(0) ? T(0) : *p * beta;
  }
}

// ---------------------------------------------------------------- launchers

// The names in this kernel's errors (tensor/matmul_layout.h, the CPU kernel's layout rule).
constexpr GemmBackend kCublas{"matmul kernel (CUDA)", "matmul (CUDA)", "cuBLAS"};

inline cublasOperation_t op_flag(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Column-major GEMM (x is cuBLAS's A, y its B): C = alpha * op(x) @ op(y) + beta * C, batched when
// batch > 1. The f32 overload picks the math mode from allow_tf32() on every call, so a change of the
// setting takes effect at the next matmul.
void gemm(cublasOperation_t tx, cublasOperation_t ty, int m, int n, int k, float alpha, const float* x, int ldx,
          long long sx, const float* y, int ldy, long long sy, float beta, float* c, int ldc, long long sc,
          int batch) {
  cublasHandle_t h = cuda::cublas();
  // alpha and beta live on the host (cuBLAS's default; set in case another caller changed it).
  CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  // NOTE: CUBLAS_DEFAULT_MATH keeps f32 GEMMs in full f32 ("at least the requested precision", no TF32
  // and no BF16x9 emulation unless asked for); CUBLAS_TF32_TENSOR_OP_MATH allows TF32 tensor cores.
  CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  if (batch == 1) {
    CUBLAS_CHECK(cublasSgemm(h, tx, ty, m, n, k, &alpha, x, ldx, y, ldy, &beta, c, ldc));
  } else {
    CUBLAS_CHECK(
        cublasSgemmStridedBatched(h, tx, ty, m, n, k, &alpha, x, ldx, sx, y, ldy, sy, &beta, c, ldc, sc, batch));
  }
}

void gemm(cublasOperation_t tx, cublasOperation_t ty, int m, int n, int k, double alpha, const double* x, int ldx,
          long long sx, const double* y, int ldy, long long sy, double beta, double* c, int ldc, long long sc,
          int batch) {
  cublasHandle_t h = cuda::cublas();
  CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  // The default math mode: plain f64 (the fixed-point emulation of f64 is opt-in only).
  CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  if (batch == 1) {
    CUBLAS_CHECK(cublasDgemm(h, tx, ty, m, n, k, &alpha, x, ldx, y, ldy, &beta, c, ldc));
  } else {
    CUBLAS_CHECK(
        cublasDgemmStridedBatched(h, tx, ty, m, n, k, &alpha, x, ldx, sx, y, ldy, sy, &beta, c, ldc, sc, batch));
  }
}

// a: (Bt, M, K) or (Bt, K, M) when trans_a; b: (Bt, K, N) or (Bt, N, K) when trans_b; out: (Bt, M, N)
template <typename T>
void matmul_typed(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                  double beta) {
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  if (batch == 0 || M == 0 || N == 0) return;

  // A size-1 batch dim may carry any stride; a shared operand has stride 0.
  const int64_t a_bs = a.size(0) == 1 ? 0 : a.stride(0);
  const int64_t b_bs = b.size(0) == 1 ? 0 : b.stride(0);
  const int64_t c_bs = batch == 1 ? 0 : out.stride(0);
  const int64_t ldc = M <= 1 ? std::max<int64_t>(1, N) : out.stride(1);
  MUXNET_CHECK((out.stride(2) == 1 || N <= 1) && ldc >= N, "matmul kernel (CUDA): out of shape ", out.shape(),
               " has strides ", out.strides(), "; it needs a unit column stride");
  T* c = out.data<T>();

  if (K == 0) {
    // NOTE: the empty sum is done here rather than trusting every GEMM path with k == 0:
    // out = beta * out, and beta == 0 overwrites. beta == 1 leaves out as it is.
    if (T(beta) == T(1)) return;
    const int64_t total = batch * M * N;
    scale_out_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(c, batch, M, N, c_bs, ldc,
                                                                                     T(beta));
    CUDA_CHECK_LAUNCH("matmul scale_out_kernel");
    return;
  }

  const BlasOperand pa = blas_operand(a.size(1), a.size(2), a.stride(1), a.stride(2), trans_a, "a", kCublas);
  const BlasOperand pb = blas_operand(b.size(1), b.size(2), b.stride(1), b.stride(2), trans_b, "b", kCublas);
  check_blas_int(M, "M", kCublas);
  check_blas_int(N, "N", kCublas);
  check_blas_int(K, "K", kCublas);
  check_blas_int(pa.ld, "lda", kCublas);
  check_blas_int(pb.ld, "ldb", kCublas);
  check_blas_int(ldc, "ldc", kCublas);
  check_blas_int(batch, "batch", kCublas);

  // Row-major out (M, N) = op(a) @ op(b)  <=>  column-major out^T (N, M) = op(b)^T @ op(a)^T: b goes
  // first with m = N, a second with n = M; flags and leading dimensions stay those of row-major BLAS.
  gemm(op_flag(pb.transpose), op_flag(pa.transpose), int(N), int(M), int(K), T(alpha), b.data<T>(), int(pb.ld),
       (long long)b_bs, a.data<T>(), int(pa.ld), (long long)a_bs, T(beta), c, int(ldc), (long long)c_bs, int(batch));
}

void matmul_cuda(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                 double beta) {
  switch (out.dtype()) {
    case DType::F32: matmul_typed<float>(a, b, out, trans_a, trans_b, alpha, beta); return;
    case DType::F64: matmul_typed<double>(a, b, out, trans_a, trans_b, alpha, beta); return;
    default: MUXNET_FAIL("matmul (CUDA): expected a floating dtype (f32 or f64), got ", out.dtype());
  }
}

}  // namespace

void register_cuda_matmul() { register_kernel<OpId::matmul>(Device::CUDA, matmul_cuda); }

}  // namespace muxnet
