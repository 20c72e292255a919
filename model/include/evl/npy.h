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
// Writes `t` (converted to contiguous float32 on CPU).
void WriteNpy(const std::string& path, const at::Tensor& t);

}  // namespace evl
