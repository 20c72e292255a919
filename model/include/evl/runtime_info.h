// What LibTorch this process was built against and runs with: versions, threads, BLAS.
// Cheap header (no LibTorch includes) so the launcher's `evl info` stays quick to compile.
#pragma once

#include <string>

namespace evl {

std::string TorchVersion();
// Whether this LibTorch has CUDA compiled in (it may still see no device).
bool TorchBuiltWithCuda();
bool TorchCudaAvailable();
int TorchCudaDeviceCount();
int TorchNumThreads();
void SetTorchNumThreads(int n);
// The BLAS shared library actually mapped into this process (resolved symlink), e.g.
// ".../openblas-openmp/libblas.so.3"; "unknown" if none is loaded.
std::string LoadedBlasLibrary();
// The CUDA caching allocator's peak of allocated bytes on `device` since the last reset (0 without
// CUDA), and its reset.
double CudaPeakAllocatedBytes(int device);
void ResetCudaPeakAllocated(int device);
// This process's peak resident memory, bytes.
double PeakResidentBytes();

}  // namespace evl
