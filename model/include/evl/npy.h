// Minimal .npy (NumPy format 1.0/2.0) reading and writing for float32 C-order arrays: the exchange
// format of `evl predict` and the parity fixtures.
#pragma once

#include <string>

namespace at {
class Tensor;
}

namespace evl {

// Throws std::runtime_error naming the file on anything but a little-endian float32 (or float64,
// converted) C-order array.
at::Tensor ReadNpy(const std::string& path);
// The .npy file of `t` (converted to contiguous float32 on CPU), for a caller that writes it its own
// way (evl's runs write every file atomically: evl/file_util.h).
std::string NpyBytes(const at::Tensor& t);
// Writes NpyBytes(t) to `path`; throws std::runtime_error naming it if any byte is not written.
void WriteNpy(const std::string& path, const at::Tensor& t);

}  // namespace evl
