// Internal to evl_dataio: what the SIMD kernels may use. EVL_X86 is defined where the x86
// intrinsics exist; HaveAvx2() says whether this CPU runs AVX2 (each kernel keeps a scalar twin
// that gives the same results, used otherwise).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EVL_X86 1

namespace evl {
inline bool HaveAvx2() {
  static const bool have = __builtin_cpu_supports("avx2");
  return have;
}
}  // namespace evl
#endif
