#include "evl/ffmpeg_info.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libswscale/swscale.h>
}

namespace evl {
namespace {
std::string Ver(unsigned v) {
  return std::to_string(AV_VERSION_MAJOR(v)) + "." + std::to_string(AV_VERSION_MINOR(v)) + "." +
         std::to_string(AV_VERSION_MICRO(v));
}
}  // namespace

std::string FFmpegVersion() {
  return std::string(av_version_info()) + " (libavformat " + Ver(avformat_version()) +
         ", libavcodec " + Ver(avcodec_version()) + ", libswscale " + Ver(swscale_version()) + ")";
}

}  // namespace evl
