#!/bin/bash
# Writes the real-footage corpus with the ffmpeg CLI (not evl's own writer): the containers and
# codecs of Kinetics/SSv2/UCF/HMDB-like data, each with the quirk that broke evl before.
# Content: testsrc2 with temporal noise and motion, 3-6 s, so every frame differs.
#   make_corpus.sh OUT_DIR
set -euo pipefail
out=$1
mkdir -p "$out"
cd "$out"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
src="testsrc2=size=320x240:rate=30,noise=alls=12:allf=t"
# MPEG-4 Part 2 (XviD tag) in AVI with B-frames.
ff -f lavfi -i "$src" -t 4 -c:v mpeg4 -bf 2 -q:v 5 -vtag XVID mpeg4_bframes.avi
# MS-MPEG4v3 (DivX 3) in AVI.
ff -f lavfi -i "$src" -t 4 -c:v msmpeg4 -q:v 5 msmpeg4v3.avi
# Motion JPEG in AVI.
ff -f lavfi -i "$src" -t 3 -c:v mjpeg -q:v 5 mjpeg.avi
# Cinepak in AVI (UCF-101-era).
ff -f lavfi -i "testsrc2=size=160x120:rate=25" -t 3 -c:v cinepak cinepak.avi
# H.264 MP4 whose first stream is audio.
ff -f lavfi -i "sine=f=440:d=5" -f lavfi -i "$src" -t 5 -map 0:a -map 1:v -c:v libx264 -bf 3 -g 48 -c:a aac \
   audio_first.mp4
# An edit list: a stream copy that starts between keyframes.
ff -f lavfi -i "$src" -t 6 -c:v libx264 -bf 2 -g 60 base.mp4
ff -ss 1.3 -i base.mp4 -c copy editlist.mp4
rm base.mp4
# H.264 without B-frames, a keyframe every 4 frames, tune fastdecode: what `evl data prepare`
# writes, from another encoder front end (the reader indexes these without PyAV's stream probe).
ff -f lavfi -i "$src" -t 4 -c:v libx264 -bf 0 -g 4 -tune fastdecode prepared_like.mp4
# The same kind cut between keyframes: an edit list without B-frames (packets to discard).
ff -f lavfi -i "$src" -t 6 -c:v libx264 -bf 0 -g 60 base.mp4
ff -ss 1.3 -i base.mp4 -c copy editlist_no_bframes.mp4
rm base.mp4
# Open GOP.
ff -f lavfi -i "$src" -t 5 -c:v libx264 -bf 3 -g 30 -x264-params open-gop=1 open_gop.mp4
# Variable frame rate: frames dropped irregularly, timestamps kept.
ff -f lavfi -i "$src" -t 5 -vf "select='not(mod(n\,3))+not(mod(n\,7))',setpts=N/FRAME_RATE/TB+0.01*sin(N)/TB" \
   -fps_mode vfr -c:v libx264 -bf 2 vfr.mkv
# HEVC, VP9 in WebM, AV1.
ff -f lavfi -i "$src" -t 4 -c:v libx265 -x265-params log-level=error:bframes=4 hevc.mp4
ff -f lavfi -i "$src" -t 4 -c:v libvpx-vp9 -b:v 500k -deadline realtime -cpu-used 8 vp9.webm
ff -f lavfi -i "$src" -t 3 -c:v libaom-av1 -cpu-used 8 -b:v 300k av1.mkv
# MPEG-TS with a timestamp discontinuity (two programs' worth of timestamps, concatenated).
ff -f lavfi -i "$src" -t 3 -c:v libx264 -bf 2 -g 30 -output_ts_offset 10 a.ts
ff -f lavfi -i "$src" -t 3 -c:v libx264 -bf 2 -g 30 -output_ts_offset 1000 b.ts
cat a.ts b.ts > ts_discontinuity.ts
rm a.ts b.ts
# Packets sharing a timestamp: Matroska's millisecond clock at 3000 fps gives 60 frames 21 distinct
# timestamps (the official loader keeps the last frame of each: 21 frames). Its packets cannot say
# which frame is which, so the reader decodes it from the start.
ff -f lavfi -i "testsrc2=size=160x120:rate=3000,noise=alls=12:allf=t" -frames:v 60 -c:v libx264 -bf 0 -g 12 \
   dup_timestamps.mkv
# Interlaced H.264 (field-coded, 576i-like).
ff -f lavfi -i "testsrc2=size=352x288:rate=25,noise=alls=12:allf=t" -t 4 -c:v libx264 -flags +ilme+ildct \
   -x264-params interlaced=1:tff=1 -bf 2 interlaced.mp4
# PAL-sized camera-like footage: where swscale's antialiased resize and the official
# F.interpolate differ most.
ff -f lavfi -i "testsrc2=size=768x576:rate=25,noise=alls=16:allf=t" -t 6 -c:v libx264 -bf 2 -g 50 pal_768x576.mp4
ls
