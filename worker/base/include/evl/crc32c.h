// CRC-32C (Castagnoli), the checksum of evl checkpoints and TensorBoard's TFRecord framing, in the
// shape of LevelDB's util/crc32c.h. Written here: Debian 12 has no C++ crc32c library (abseil
// predates absl/crc); docs/architecture.md says more.
#pragma once

#include <cstddef>
#include <cstdint>

namespace evl {

// The crc32c of n bytes.
uint32_t Crc32c(const void* data, size_t n);
// Continues a crc32c over more bytes: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
// The table-driven version used where the CPU lacks SSE4.2's crc32 instruction (tests compare them).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);

}  // namespace evl
