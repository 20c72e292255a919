// y = x W^T + b, routed to oneDNN for fp32 on CPU.
//
// Why: Debian's LibTorch sends fp32 matmul to the system BLAS, and with OPENBLAS_CORETYPE pinned
// to Haswell kernels (as on our machines) OpenBLAS reaches ~170 GFLOP/s on 2 cores where oneDNN's
// AVX-512 kernels reach ~330 (bf16 already goes through oneDNN inside at::linear). Linear layers
// are >90% of EVL's FLOPs, so this is most of the model's CPU speed. Gradients are supported (a
// custom autograd function whose backward GEMMs also go through oneDNN). Other devices and dtypes
// use at::linear. EVL_DISABLE_MKLDNN_LINEAR=1 turns it off (for A/B benchmarks).
#pragma once

#include <ATen/core/Tensor.h>

namespace evl {

at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace evl
