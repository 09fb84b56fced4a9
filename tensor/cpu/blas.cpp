// blas.cpp — loading OpenBLAS with a fitting kernel (see blas.h for why).
#include "tensor/cpu/blas.h"

#include <cblas.h>
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "tensor/check.h"

#ifndef MUXNET_OPENBLAS_SO
#define MUXNET_OPENBLAS_SO "libopenblas.so.0"
#endif

namespace muxnet::blas {

namespace {

struct Library {
  std::string path;
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_dgemm) dgemm = nullptr;
  void (*set_threads)(int) = nullptr;
  char* (*corename)() = nullptr;
};

// The OpenBLAS kernel family for this CPU, or nullptr to let OpenBLAS decide.
const char* pick_core() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

template <typename Fn>
Fn symbol(void* handle, const char* name, const std::string& path) {
  void* p = dlsym(handle, name);
  MUXNET_CHECK(p != nullptr, "blas: ", path, " has no symbol ", name);
  return reinterpret_cast<Fn>(p);
}

const Library& library() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    if (!std::getenv("OPENBLAS_CORETYPE")) {
      if (const char* core = pick_core()) setenv("OPENBLAS_CORETYPE", core, 0);
    }
    lib.path = MUXNET_OPENBLAS_SO;
    void* h = dlopen(lib.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      lib.path = "libopenblas.so.0";
      h = dlopen(lib.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    }
    MUXNET_CHECK(h != nullptr, "blas: cannot load OpenBLAS (", MUXNET_OPENBLAS_SO, "): ", dlerror(),
                 ". Install it with: apt-get install libopenblas-openmp-dev");
    lib.sgemm = symbol<decltype(&cblas_sgemm)>(h, "cblas_sgemm", lib.path);
    lib.dgemm = symbol<decltype(&cblas_dgemm)>(h, "cblas_dgemm", lib.path);
    lib.set_threads = symbol<void (*)(int)>(h, "openblas_set_num_threads", lib.path);
    lib.corename = symbol<char* (*)()>(h, "openblas_get_corename", lib.path);
  });
  return lib;
}

inline CBLAS_TRANSPOSE flag(bool t) { return t ? CblasTrans : CblasNoTrans; }

}  // namespace

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc) {
  library().sgemm(CblasRowMajor, flag(trans_a), flag(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dgemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda,
           const double* b, int ldb, double beta, double* c, int ldc) {
  library().dgemm(CblasRowMajor, flag(trans_a), flag(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void set_num_threads(int n) { library().set_threads(n); }
std::string core_name() { return library().corename(); }
std::string library_path() { return library().path; }

}  // namespace muxnet::blas
