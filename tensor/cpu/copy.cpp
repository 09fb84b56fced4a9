// copy.cpp — strided copy with dtype conversion, and fill. Every contiguous(), clone() and to(dtype)
// goes through here.
#include <cstring>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

template <typename D, typename S>
void copy_typed(const Tensor& src, const Tensor& dst) {
  ElemIter it = make_elem_iter(dst, {&src});
  for_each_run(it, [](char* const* p, const int64_t* s, int64_t n) {
    D* out = reinterpret_cast<D*>(p[0]);
    const S* in = reinterpret_cast<const S*>(p[1]);
    if (s[0] == sizeof(D) && s[1] == sizeof(S)) {
      if constexpr (std::is_same_v<D, S>) {
        std::memcpy(out, in, size_t(n) * sizeof(D));
      } else {
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<D>(in[i]);
      }
    } else if (s[0] == sizeof(D) && s[1] == 0) {
      const D v = static_cast<D>(*in);
      for (int64_t i = 0; i < n; ++i) out[i] = v;
    } else {
      for (int64_t i = 0; i < n; ++i) {
        *reinterpret_cast<D*>(p[0] + i * s[0]) = static_cast<D>(*reinterpret_cast<const S*>(p[1] + i * s[1]));
      }
    }
  });
}

void copy_cpu(const Tensor& src, const Tensor& dst) {
  dispatch_all(dst.dtype(), "copy", [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype(), "copy", [&](auto st) {
      using S = typename decltype(st)::type;
      copy_typed<D, S>(src, dst);
    });
  });
}

void fill_cpu(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = static_cast<T>(value);
    ElemIter it = make_elem_iter(dst, {});
    for_each_run(it, [v](char* const* p, const int64_t* s, int64_t n) {
      if (s[0] == sizeof(T)) {
        T* out = reinterpret_cast<T*>(p[0]);
        for (int64_t i = 0; i < n; ++i) out[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
      }
    });
  });
}

}  // namespace

void register_cpu_copy() {
  register_kernel<OpId::copy>(Device::CPU, copy_cpu);
  register_kernel<OpId::fill>(Device::CPU, fill_cpu);
}

}  // namespace muxnet
