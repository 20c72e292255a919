#!/usr/bin/env bash
# Gathers what a GPU machine without FFmpeg, MPI, protobuf or glog needs to build and run the whole
# evl, into .gpu-bundle/ (git-ignored; carried to the machine): the Debian 12 packages of OpenMPI,
# protobuf, glog/gflags, nlohmann-json, CLI11 and GoogleTest (bench/gpu_check.sh builds and runs
# tests/precision_test there) as .deb files, and a minimal shared FFmpeg built
# from Debian's own source (the decoders and containers evl reads, libx264 + mpeg4 for writing).
# Debian's FFmpeg with its dependency closure is ~105 MiB compressed; this one is a few MiB.
# scripts/gpu-unbundle.sh installs it there (and in a clean Debian 12 root, to prove it suffices).
#
#   scripts/gpu-bundle.sh            # ~5 min on 2 cores, most of it the FFmpeg build
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-bundle
mkdir -p "$out/debs"
export DEBIAN_FRONTEND=noninteractive
need=(dpkg-dev nasm libx264-dev pkg-config build-essential)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] || { apt-get update -qq; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }

# Runtime and build files only; glibc, libstdc++, zlib and the compiler are the machine's own.
PACKAGES=(
  libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libevent-core-2.1-7 libevent-pthreads-2.1-7
  libhwloc15 libpmix2 libfabric1 libpsm2-2 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libucx0 libnuma1
  libprotobuf32 libprotobuf-dev libprotoc32 protobuf-compiler
  libgoogle-glog0v6 libgoogle-glog-dev libgflags2.2 libgflags-dev libunwind8 libunwind-dev
  nlohmann-json3-dev libcli11-dev libx264-164 pkg-config pkgconf pkgconf-bin libpkgconf3
  libgtest-dev  # headers, libgtest.a and its CMake config; GMock's targets are optional there
)
(cd "$out/debs" && rm -f ./*.deb && apt-get download -qq "${PACKAGES[@]}")

ff_prefix=$PWD/$out/ffmpeg
if [ ! -f "$ff_prefix/lib/libavformat.so" ]; then
  work=$(mktemp -d)
  lists=$work/lists
  mkdir -p "$lists/partial"
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  echo "deb-src $mirror bookworm main" > "$work/src.list"
  apt_src=(-o Dir::State::Lists="$lists" -o Dir::Etc::SourceList="$work/src.list" -o Dir::Etc::SourceParts=/dev/null)
  apt-get "${apt_src[@]}" update -qq
  (cd "$work" && apt-get "${apt_src[@]}" source --download-only -qq ffmpeg)
  tar -C "$work" -xf "$work"/ffmpeg_*.orig.tar.xz
  src=$(ls -d "$work"/ffmpeg-*/ | head -1)
  (cd "$src" && ./configure --prefix="$ff_prefix" --enable-shared --disable-static --enable-pic --enable-gpl \
     --enable-libx264 --disable-programs --disable-doc --disable-everything --disable-autodetect \
     --enable-swscale --enable-protocol=file --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,mpeg4_unpack_bframes \
     --enable-decoder=h264,hevc,mpeg4,msmpeg4v2,msmpeg4v3,cinepak,mjpeg,vp8,vp9,mpeg1video,mpeg2video,rawvideo \
     --enable-encoder=libx264,mpeg4,mjpeg \
     --enable-parser=h264,hevc,mpeg4video,vp8,vp9,mpegvideo,mjpeg \
     --enable-demuxer=mov,avi,matroska,mpegts,mjpeg,h264 --enable-muxer=mp4,mov,avi,matroska >/dev/null &&
   make -j"$(nproc)" >/dev/null && make install >/dev/null)
  rm -rf "$work"
fi
# One archive: symbolic links survive the trip to the GPU machine.
tar -C "$ff_prefix" -czf "$out/ffmpeg.tar.gz" lib include
du -sh "$out/debs" "$out/ffmpeg.tar.gz"
