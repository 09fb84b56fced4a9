// blas.h — OpenBLAS, loaded at first use with a GEMM kernel that fits this CPU.
//
// Why not just link -lopenblas: OpenBLAS picks its kernels when the library is loaded, from CPUID.
// Debian's OpenBLAS 0.3.21 does not know CPUs newer than itself (e.g. the Emerald Rapids Xeons of our
// CI machines) and falls back to its generic "Prescott" kernel, which runs sgemm ~5x slower than its
// AVX-512 "SkylakeX" kernel on the same machine (15 vs 74-80 GFLOP/s, 1 thread, measured with
// ../shared/bench/sgemm.c). Its only switch is the OPENBLAS_CORETYPE environment variable, read while
// the library loads, before main. So muxnet loads OpenBLAS itself with dlopen, after setting
// OPENBLAS_CORETYPE from the CPU's features when the user has not set it:
//   AVX-512 F/BW/VL/DQ -> SkylakeX, AVX2 + FMA -> Haswell, else OpenBLAS's own choice.
// A user's OPENBLAS_CORETYPE always wins. The library is the OpenMP build found by the Makefile.
#pragma once

#include <string>

namespace muxnet::blas {

// Row-major GEMM: c (m, n) = alpha * op(a) @ op(b) + beta * c, as cblas_?gemm with CblasRowMajor.
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc);
void dgemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda,
           const double* b, int ldb, double beta, double* c, int ldc);

void set_num_threads(int n);
std::string core_name();     // the kernel OpenBLAS runs, e.g. "SkylakeX"
std::string library_path();  // the shared object that was loaded

}  // namespace muxnet::blas
