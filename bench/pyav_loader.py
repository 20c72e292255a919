"""The official EVL loader's logic through PyAV, timed: the baseline of `evl data bench`.

Per video, as video_dataset/dataset.py does it: open with PyAV, decode every frame of the stream,
order by pts, then
  train: pick num_frames x sampling_rate frames at a random start (last frame repeated for short
         videos), RGB ndarray, float/255, normalise, random resized crop of the clip
         (F.interpolate, bilinear) to the crop size;
  eval:  every frame to RGB, float/255, normalise, short side resized to spatial_size
         (F.interpolate), num_spatial_views crops x num_temporal_views clips.
  train_ra: train, with RandAugment (`rand-mM-nN-mstd0.5-inc1`, M and N from the optional last
         argument, default 7 and 4) the official way: the frames become PIL images and the same
         drawn ops (Pillow, tests/fixtures/rand_augment_reference.py) run on each, before the
         normalisation and the crop. The level-to-argument rules are timm's (the official code's).
Prints one line: "<mode> <clips/s>".
usage: pyav_loader.py MODE LIST ROOT FRAMES RATE CROP SPATIAL TVIEWS SVIEWS ROUNDS [M N]
"""
import math
import os
import random
import sys
import time

import av
import numpy as np
import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


def decode_all(path):
    container = av.open(path)
    frames = {f.pts: f for f in container.decode(video=0)}
    container.close()
    return [frames[k] for k in sorted(frames)]


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures'))
from PIL import Image  # noqa: E402
import rand_augment_reference  # noqa: E402

# timm's increasing ops and level -> argument rules (magnitude in [0, 10]).
RA_OPS = ['AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color',
          'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel']


def ra_arg(op, level):
    neg = -1 if random.random() < 0.5 else 1
    if op == 'Rotate':
        return neg * level / 10 * 30
    if op in ('ShearX', 'ShearY'):
        return neg * level / 10 * 0.3
    if op in ('TranslateXRel', 'TranslateYRel'):
        return neg * level / 10 * 0.45
    if op in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
        return 1 + neg * level / 10 * 0.9
    if op == 'Posterize':
        return 4 - int(level / 10 * 4)
    if op == 'Solarize':
        return 256 - int(level / 10 * 256)
    if op == 'SolarizeAdd':
        return int(level / 10 * 110)
    return 0


def rand_augment(frames, m, n):
    """The same drawn ops on every frame (uint8 [T, H, W, 3]), through PIL as the official code."""
    steps = []
    for op in random.choices(RA_OPS, k=n):
        if random.random() < 0.5:
            steps.append((op, ra_arg(op, min(10, max(0, random.gauss(m, 0.5))))))
    out = []
    for f in frames:
        img = Image.fromarray(f)
        for op, arg in steps:
            img = rand_augment_reference.run(op, arg, img)
        out.append(np.asarray(img))
    return np.stack(out)


def train_clip(path, num_frames, rate, crop, ra=None):
    frames = decode_all(path)
    seg = (num_frames - 1) * rate + 1
    if len(frames) >= seg:
        start = random.randrange(len(frames) - seg + 1)
        idx = [start + i * rate for i in range(num_frames)]
    else:
        idx = [min(i * rate, len(frames) - 1) for i in range(num_frames)]
    rgb = np.stack([frames[i].to_rgb().to_ndarray() for i in idx])
    if ra:
        rgb = rand_augment(rgb, *ra)
    x = torch.as_tensor(rgb).float() / 255.
    x = ((x - MEAN) / STD).permute(3, 0, 1, 2)
    h, w = x.shape[-2:]
    for _ in range(10):  # random resized crop, scale (0.08, 1), ratio (3/4, 4/3)
        area = h * w * random.uniform(0.08, 1.0)
        ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        ch, cw = min(h, w), min(h, w)
    y0, x0 = random.randint(0, h - ch), random.randint(0, w - cw)
    x = F.interpolate(x[:, :, y0:y0 + ch, x0:x0 + cw], size=(crop, crop), mode='bilinear', align_corners=False)
    return x


def eval_views(path, num_frames, rate, crop, spatial, tviews, sviews):
    frames = decode_all(path)
    x = torch.as_tensor(np.stack([f.to_rgb().to_ndarray() for f in frames])).float() / 255.
    x = ((x - MEAN) / STD).permute(3, 0, 1, 2)
    h, w = x.shape[-2:]
    nh, nw = (spatial, w * spatial // h) if h < w else (h * spatial // w, spatial)
    x = F.interpolate(x, size=(nh, nw), mode='bilinear', align_corners=False)
    crops = []
    if sviews == 1:
        y0, x0 = (nh - crop) // 2, (nw - crop) // 2
        crops.append(x[:, :, y0:y0 + crop, x0:x0 + crop])
    else:
        margin = max(nh, nw) - crop
        for i in range(sviews):
            st = margin // (sviews - 1) * i
            crops.append(x[:, :, st:st + crop, :] if nh > nw else x[:, :, :, st:st + crop])
    seg = (num_frames - 1) * rate + 1
    views = []
    for c in crops:
        if c.size(1) < seg:
            c = torch.cat([c, c[:, -1:].repeat(1, seg - c.size(1), 1, 1)], dim=1)
        slide = c.size(1) - seg
        for i in range(tviews):
            st = slide // 2 if tviews == 1 else slide * i // (tviews - 1)
            views.append(c[:, st:st + num_frames * rate:rate])
    return torch.stack(views)


def main():
    mode, lst, root = sys.argv[1], sys.argv[2], sys.argv[3]
    num_frames, rate, crop, spatial, tviews, sviews, rounds = map(int, sys.argv[4:11])
    ra = tuple(map(int, sys.argv[11:13])) if len(sys.argv) > 12 else (7, 4)
    torch.set_num_threads(1)
    random.seed(0)
    paths = []
    with open(lst) as f:
        for line in f:
            if line.strip():
                p = line.split(' ')[0]
                paths.append(p if p.startswith('/') or not root else root + '/' + p)
    t0 = time.perf_counter()
    n = 0
    for _ in range(rounds):
        for p in paths:
            if mode == 'train':
                train_clip(p, num_frames, rate, crop)
            elif mode == 'train_ra':
                train_clip(p, num_frames, rate, crop, ra)
            else:
                eval_views(p, num_frames, rate, crop, spatial, tviews, sviews)
            n += 1
    print(mode, n / (time.perf_counter() - t0))


if __name__ == '__main__':
    main()
