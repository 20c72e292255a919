#!/usr/bin/env bash
# Installs .gpu-bundle/ (made by scripts/gpu-bundle.sh) on a machine that lacks evl's non-LibTorch
# dependencies: the Debian packages' files are added under / without replacing any file the
# machine already has (its own glibc, libstdc++ and CUDA stay in charge), FFmpeg goes to
# /opt/evl-ffmpeg. Prints the environment to export (PKG_CONFIG_PATH, LD_LIBRARY_PATH).
#
#   eval "$(scripts/gpu-unbundle.sh [BUNDLE_DIR])"
set -euo pipefail
bundle=${1:-$(dirname "$0")/../.gpu-bundle}
stage=$(mktemp -d)
for deb in "$bundle"/debs/*.deb; do
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$stage"
  else  # a .deb is an ar archive holding data.tar.*
    (cd "$stage" && ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -x -f - -a 2>/dev/null ||
       ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -xJ -f -)
  fi
done
rm -rf "$stage/usr/share/doc" "$stage/usr/share/man"
# --keep-directory-symlink: merged-/usr systems have /lib -> usr/lib; keep it a link.
tar -C "$stage" -cf - . | tar -C / -xf - --skip-old-files --keep-directory-symlink
rm -rf "$stage"
# Debian names its MPI tools through update-alternatives, which only dpkg's scripts set up.
for tool in mpicc mpicxx mpic++ mpiCC mpirun mpiexec; do
  [ -e "/usr/bin/$tool" ] || [ ! -e "/usr/bin/$tool.openmpi" ] || ln -s "$tool.openmpi" "/usr/bin/$tool"
done
mkdir -p /opt/evl-ffmpeg
tar -C /opt/evl-ffmpeg -xzf "$bundle/ffmpeg.tar.gz"
sed -i -e 's|^prefix=.*|prefix=/opt/evl-ffmpeg|' -e 's|^libdir=.*|libdir=${prefix}/lib|' \
  -e 's|^includedir=.*|includedir=${prefix}/include|' /opt/evl-ffmpeg/lib/pkgconfig/*.pc  # built under another prefix
# protobuf's headers also under a prefix of their own: a CMake -I there outranks the older copy
# that PyTorch's wheel keeps in torch/include (cmake -DProtobuf_INCLUDE_DIR=/opt/evl-protobuf/include).
mkdir -p /opt/evl-protobuf/include
cp -a /usr/include/google /opt/evl-protobuf/include/
ldconfig 2>/dev/null || true
echo "export PKG_CONFIG_PATH=/opt/evl-ffmpeg/lib/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
echo "export LD_LIBRARY_PATH=/opt/evl-ffmpeg/lib:/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
# A 1-rank MPI job (singleton) starts a local daemon, and OpenMPI refuses to when its remote
# launcher (ssh/rsh) is missing, though a single node never uses it.
command -v ssh >/dev/null || command -v rsh >/dev/null || echo "export OMPI_MCA_plm_rsh_agent=/bin/false"
