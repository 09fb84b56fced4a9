// matmul.cpp — the CPU matmul kernel: batched GEMM through OpenBLAS (cblas_sgemm / cblas_dgemm,
// reached through tensor/cpu/blas.h, which loads OpenBLAS with a kernel that fits the CPU).
//
// out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i] for every batch entry i, one cblas_?gemm call
// per entry. Each 2-d matrix reaches BLAS in the layout it already has: a row-major matrix (unit
// stride along its last dim) is passed as is with ld = its row stride, a column-major one (unit stride
// along its second-to-last dim, e.g. a transposed view) as the transpose of a row-major matrix, with
// the transpose flag flipped. So transposed views cost no copy.
//
// What this is not: a GEMM implementation (OpenBLAS does the work and threads itself — the OpenMP
// build — so this file never opens an OpenMP region around BLAS), nor a shape checker: the op layer
// (tensor/ops_matmul.cpp) has validated the shapes and given every matrix one unit stride. The naive
// reference used as the test oracle lives in tests/test_matmul.cpp.
#include <algorithm>
#include <climits>

#include "tensor/cpu/blas.h"
#include "tensor/cpu/kernels.h"
#include "tensor/matmul_layout.h"

namespace muxnet {

namespace {

// The names in this kernel's errors (tensor/matmul_layout.h).
constexpr GemmBackend kBlas{"matmul kernel", "matmul", "BLAS"};

inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float beta, float* c, int ldc) {
  blas::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c, int ldc) {
  blas::dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
  const int64_t c_bs = out.stride(0);
  const int64_t ldc = M <= 1 ? std::max<int64_t>(1, N) : out.stride(1);
  MUXNET_CHECK((out.stride(2) == 1 || N <= 1) && ldc >= N, "matmul kernel: out of shape ", out.shape(),
               " has strides ", out.strides(), "; it needs a unit column stride");
  T* c = out.data<T>();

  if (K == 0) {
    // NOTE: BLAS implementations differ on K == 0 (some return early without applying beta), so the
    // empty sum is done here: out = beta * out, and beta == 0 overwrites (NaN in out does not survive).
    const T bt = T(beta);
    for (int64_t i = 0; i < batch; ++i) {
      for (int64_t r = 0; r < M; ++r) {
        T* row = c + i * c_bs + r * ldc;
        if (bt == T(0)) {
          std::fill(row, row + N, T(0));
        } else if (bt != T(1)) {
          for (int64_t j = 0; j < N; ++j) row[j] *= bt;
        }
      }
    }
    return;
  }

  const BlasOperand pa = blas_operand(a.size(1), a.size(2), a.stride(1), a.stride(2), trans_a, "a", kBlas);
  const BlasOperand pb = blas_operand(b.size(1), b.size(2), b.stride(1), b.stride(2), trans_b, "b", kBlas);
  check_blas_int(M, "M", kBlas);
  check_blas_int(N, "N", kBlas);
  check_blas_int(K, "K", kBlas);
  check_blas_int(pa.ld, "lda", kBlas);
  check_blas_int(pb.ld, "ldb", kBlas);
  check_blas_int(ldc, "ldc", kBlas);

  const T* pa0 = a.data<T>();
  const T* pb0 = b.data<T>();
  const bool ta = pa.transpose, tb = pb.transpose;
  // One GEMM per batch entry, serially: OpenBLAS parallelises each call on its own threads.
  for (int64_t i = 0; i < batch; ++i) {
    gemm(ta, tb, int(M), int(N), int(K), T(alpha), pa0 + i * a_bs, int(pa.ld), pb0 + i * b_bs, int(pb.ld), T(beta),
         c + i * c_bs, int(ldc));
  }
}

void matmul_cpu(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b, double alpha,
                double beta) {
  dispatch_floating(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    matmul_typed<T>(a, b, out, trans_a, trans_b, alpha, beta);
  });
}

}  // namespace

void register_cpu_matmul() { register_kernel<OpId::matmul>(Device::CPU, matmul_cpu); }

}  // namespace muxnet
