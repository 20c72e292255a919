// Versions of the FFmpeg libraries evl was built against and runs with.
#pragma once

#include <string>

namespace evl {

// e.g. "5.1.6 (libavformat 59.27.100, libavcodec 59.37.100, libswscale 6.7.100)"
std::string FFmpegVersion();

}  // namespace evl
