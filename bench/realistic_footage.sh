#!/usr/bin/env bash
# Does `evl data synth --realistic` cost what camera footage costs to decode?
#   bench/realistic_footage.sh EVL OUT_DIR [--check]
# Writes one realistic clip per size (340x256, 640x360), re-encodes real camera footage shipped by
# Debian (opencv-doc's examples: vtest.avi, a street scene; box.mp4 and cup.mp4, hand-held clips)
# to the same sizes with the same x264 settings (CRF $CRF, default 16, GOP 250, 3 B-frames), and decodes every
# frame of each file on one thread (the ffmpeg CLI, the libavcodec evl uses), printing frames/s and
# bitrates. With --check, exits 1 unless every realistic/real decode-rate ratio is within 2x.
# Exits 77 when opencv-doc is not installed (scripts/install-deps.sh --test installs it).
set -euo pipefail
evl=${1:?EVL binary}
out=$(realpath -m "${2:?OUT_DIR}")
check=${3:-}
crf=${CRF:-16}
examples=/usr/share/doc/opencv-doc
if [ ! -f "$examples/examples/data/vtest.avi" ]; then
  echo "realistic_footage.sh: $examples/examples/data/vtest.avi missing: apt-get install opencv-doc" >&2
  exit 77
fi
mkdir -p "$out/real"
rm -rf "$out/synth"
"$evl" data synth --realistic --out "$out/synth" --videos 2 --sizes 340x256,640x360 --crf "$crf"
sources=("$examples/examples/data/vtest.avi")
for gz in "$examples"/opencv4/html/box.mp4.gz "$examples"/opencv4/html/cup.mp4.gz; do
  # Every real clip is part of the comparison: one missing is an error, not a smaller check.
  [ -f "$gz" ] || { echo "realistic_footage.sh: $gz missing (opencv-doc changed?)" >&2; exit 1; }
  name=$(basename "$gz" .gz)
  # These two have a broken first IDR slice (ffmpeg warns and goes on); the re-encode is clean.
  gunzip -c "$gz" > "$out/real/$name"
  sources+=("$out/real/$name")
done

# Frames decoded per second of user CPU time, one thread, by one decode; and the best of several
# (a loaded machine only ever slows a run down).
decode_once() {
  local log frames utime
  log=$(ffmpeg -hide_banner -nostdin -loglevel info -threads 1 -benchmark -i "$1" -map 0:v:0 -f null - 2>&1) ||
    { echo "realistic_footage.sh: ffmpeg cannot decode $1: $log" >&2; return 1; }
  frames=$(echo "$log" | grep -o 'frame= *[0-9]*' | tail -1 | grep -o '[0-9]*')
  utime=$(echo "$log" | grep -o 'utime=[0-9.]*' | tail -1 | cut -d= -f2)
  awk -v f="$frames" -v u="$utime" 'BEGIN { printf "%.0f", f / u }'
}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
# The two files' rates, decoded alternately three times each, best of each: this shared VM's speed
# drifts from minute to minute, and alternating makes the drift hit both files alike.
decode_pair() {
  local a=0 b=0
  for _ in 1 2 3; do
    a=$(best "$a" "$(decode_once "$1")")
    b=$(best "$b" "$(decode_once "$2")")
  done
  echo "$a $b"
}
bitrate() {
  ffprobe -v error -show_entries format=bit_rate -of default=nw=1:nk=1 "$1" | awk '{ printf "%.2f", $1 / 1e6 }'
}

status=0
printf '| size | file | decode frames/s (1 thread) | Mbit/s | realistic cost / real cost |\n|---|---|---|---|---|\n'
for i in 0 1; do
  size=$([ $i -eq 0 ] && echo 340x256 || echo 640x360)
  synth="$out/synth/videos/0000$i.mp4"
  printf '| %s | evl data synth --realistic | (beside each) | %s | |\n' "$size" "$(bitrate "$synth")"
  for src in "${sources[@]}"; do
    enc="$out/real/$(basename "${src%.*}")_$size.mp4"
    ffmpeg -hide_banner -nostdin -loglevel fatal -y -i "$src" -vf "scale=${size/x/:},format=yuv420p" -an \
      -c:v libx264 -crf "$crf" -g 250 -bf 3 "$enc"
    # Not a process substitution: a failed decode inside one escapes `set -e`.
    rates=$(decode_pair "$synth" "$enc")
    read -r s_rate r_rate <<<"$rates"
    for rate in "$s_rate" "$r_rate"; do
      awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || { echo "realistic_footage.sh: no decode rate for $enc or $synth" >&2; exit 1; }
    done
    ratio=$(awk -v a="$s_rate" -v b="$r_rate" 'BEGIN { printf "%.2f", b / a }')
    printf '| %s | %s (real; realistic: %s) | %s | %s | %sx |\n' "$size" "$(basename "$src")" "$s_rate" "$r_rate" \
      "$(bitrate "$enc")" "$ratio"
    if [ "$check" = --check ] && ! awk -v r="$ratio" 'BEGIN { exit !(r >= 0.5 && r <= 2) }'; then
      echo "realistic_footage.sh: $size decodes at $s_rate frames/s, $(basename "$src") at $r_rate: more than 2x apart" >&2
      status=1
    fi
  done
done
exit $status
