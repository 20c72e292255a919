#!/usr/bin/env bash
# Which `evl data prepare` settings feed training fastest for their size? On realistic K400-like
# footage (evl data synth --realistic), prepares copies with each short side x keyframe interval
# (x CRF x libx264 tune) and runs `evl data bench` (one core, the ViT-B/16 8-frame recipe) on each, printing a
# table of size against train-path clips/s, with and without RandAugment.
#   bench/prepare_sweep.sh EVL OUT_DIR [VIDEOS]     (SIDES, KEYINTS, CRFS, TUNES, ROUNDS override the defaults; tune 'none' is x264's default)
set -euo pipefail
evl=$(realpath "${1:?EVL binary}")
out=$(realpath -m "${2:?OUT_DIR}")
videos=${3:-8}
src=$(cd "$(dirname "$0")/.." && pwd)
config="$src/configs/k400_vitb16_8f_dec4x768.pbtxt"
mkdir -p "$out"
if [ ! -f "$out/originals/all.txt" ]; then
  "$evl" data synth --realistic --out "$out/originals" --videos "$videos"
  cat "$out/originals/train.txt" "$out/originals/val.txt" > "$out/originals/all.txt"
fi
bench() {  # LIST ROOT -> "train train+RA eval" clips/s
  "$evl" data bench --config "$config" --set train.run_dir="$out/bench_run" --list "$1" --data-root "$2" \
    --rounds "${ROUNDS:-2}" --python '' 2>/dev/null |
    awk '/^train  /{t=$2} /^train \+/{a=$4} /^eval /{e=$2} END {print t, a, e}'
}
size_of() { du -sb --exclude='*.txt' "$1" | cut -f1; }
orig_size=$(size_of "$out/originals/videos")
read -r t a e < <(bench "$out/originals/all.txt" "$out/originals")
printf '| copy | size | size / original | train clips/s | train + RandAugment | eval (3 views) |\n|---|---|---|---|---|---|\n'
printf '| originals (GOP 250, B-frames, CRF 16) | %.1f MB | 1.00 | %s | %s | %s |\n' "$(echo "$orig_size" | awk '{print $1/1e6}')" "$t" "$a" "$e"
for side in ${SIDES:-256 320}; do
  for keyint in ${KEYINTS:-1 4 16}; do
    for crf in ${CRFS:-23}; do
      for tune in ${TUNES:-none fastdecode}; do
        dir="$out/prepared_s${side}_k${keyint}_c${crf}"
        [ "$tune" = none ] || dir="${dir}_$tune"
        if [ ! -f "$dir/all.txt" ]; then
          "$evl" data prepare --list "$out/originals/all.txt" --data-root "$out/originals" --out "$dir" \
            --short-side "$side" --keyint "$keyint" --crf "$crf" --tune "${tune/none/}" >/dev/null 2>&1
        fi
        size=$(size_of "$dir")
        read -r t a e < <(bench "$dir/all.txt" "$dir")
        printf '| --short-side %s --keyint %s --crf %s --tune %s | %.1f MB | %.2f | %s | %s | %s |\n' "$side" "$keyint" \
          "$crf" "$tune" "$(echo "$size" | awk '{print $1/1e6}')" "$(awk -v a="$size" -v b="$orig_size" 'BEGIN{print a/b}')" \
          "$t" "$a" "$e"
      done
    done
  done
done
