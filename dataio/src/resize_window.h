// Internal to evl_dataio: the official bilinear resize of uint8 frames, computed for one window of
// the output only, with the normalization folded in.
#pragma once

#include <array>
#include <cstdint>

#include "evl/sampling.h"

namespace at {
class Tensor;
}

namespace evl {

// The window `box` of uint8 frames [N, H, W, 3] resized to out_h x out_w as F.interpolate(bilinear,
// align_corners=False) resizes (no antialias; source index max(0, (dst + 0.5) * in / out - 0.5)),
// normalized ((v / 255 - mean) / std), as float [3, N, box.h, box.w]; `mirror` flips it left to
// right (the same values as flipping the result). `frames` may be a view (a crop of larger frames)
// as long as each pixel's three bytes are adjacent. It uses AVX2 where the CPU has it; `vectorized`
// = false forces the scalar code (the tests check that both give the same floats).
at::Tensor ResizeWindow(const at::Tensor& frames, int64_t out_h, int64_t out_w, const CropBox& box,
                        const std::array<float, 3>& mean, const std::array<float, 3>& std, bool mirror = false,
                        bool vectorized = true);

}  // namespace evl
