"""The Python side of bench/model_bench.cpp: forward and training-step throughput of the official
EVL model code (from --official-repo, a checkout of OpenGVLab/efficient-video-recognition) or, without
it, of evl's own reference (tests/fixtures/evl_reference.py), on CPU or CUDA.

Prints 'forward_clips_per_s X' and 'step_clips_per_s Y'. The frozen backbone is built directly (no
CLIP file needed: random weights); on a CPU-only machine TemporalCrossAttention's hard-coded
device='cuda' buffer is created on the CPU instead. --dtype fp16 is the official main.py's default
GPU recipe: backbone_mode 'freeze_fp16', the forward under torch.cuda.amp.autocast and a GradScaler.
"""
import argparse
import contextlib
import os
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--batch', type=int, default=2)
ap.add_argument('--frames', type=int, default=8)
ap.add_argument('--iters', type=int, default=2)
ap.add_argument('--preset', default='B16')
ap.add_argument('--dtype', default='fp32')
ap.add_argument('--official-repo', default='')
ap.add_argument('--device', default='cpu')
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

if a.preset == 'tiny':
    width, layers, heads, patch, size, dec_layers, qkv, dec_heads = 64, 4, 4, 8, 32, 2, 64, 4
elif a.preset == 'L14':
    width, layers, heads, patch, size, dec_layers, qkv, dec_heads = 1024, 24, 16, 14, 224, 4, 1024, 16
elif a.preset == 'B16':
    width, layers, heads, patch, size, dec_layers, qkv, dec_heads = 768, 12, 12, 16, 224, 4, 768, 12
else:
    sys.exit(f'--preset {a.preset}: unknown (B16, L14, tiny)')

if a.official_repo:
    sys.path.insert(0, a.official_repo)
    import model as official  # noqa: E402
    import vision_transformer as ovt  # noqa: E402

    _zeros = torch.zeros

    def _cpu_zeros(*args, **kw):
        if kw.get('device') == 'cuda' and not torch.cuda.is_available():
            kw['device'] = 'cpu'
        return _zeros(*args, **kw)

    official.torch.zeros = _cpu_zeros
    preset = dict(feature_dim=width, input_size=(size, size), patch_size=(patch, patch), num_heads=heads,
                  num_layers=layers, mlp_factor=4.0, ln_pre=True)
    ovt.vit_presets['bench'] = preset
    official.vit_presets['bench'] = preset
    official.weight_loader_fn_dict['random'] = lambda path: ovt.VisionTransformer2D(
        return_all_features=True, **preset).state_dict()
    model = official.EVLTransformer(num_frames=a.frames, backbone_name='bench', backbone_type='random',
                                    backbone_mode='freeze_fp16' if a.dtype == 'fp16' else 'freeze_fp32',
                                    decoder_num_layers=dec_layers,
                                    decoder_qkv_dim=qkv, decoder_num_heads=dec_heads, num_classes=400)
else:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures'))
    import evl_reference as ref  # noqa: E402
    backbone = ref.VisionTransformer2D(width, layers, heads, patch, size).eval().requires_grad_(False)
    model = ref.EVLTransformer(backbone, a.frames, dec_layers, qkv, dec_heads, 400, dropout=0.5, cls_dropout=0.5)

cuda = a.device == 'cuda'
fp16 = a.dtype == 'fp16'
model = model.to(a.device)
x = torch.randn(a.batch, 3, a.frames, size, size, device=a.device)
y = torch.randint(0, 400, (a.batch,), device=a.device)


def now():
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def amp():
    return torch.autocast('cuda') if fp16 and cuda else contextlib.nullcontext()


def forward():
    with amp():
        return model(x)


model.eval()
with torch.no_grad():
    forward()
    t = now()
    for _ in range(a.iters):
        forward()
    print('forward_clips_per_s', a.batch * a.iters / (now() - t))

model.train()
opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.05)
crit = torch.nn.CrossEntropyLoss()
scaler = torch.cuda.amp.GradScaler(enabled=fp16 and cuda)


def step():
    opt.zero_grad()
    with amp():
        loss = crit(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


step()
t = now()
for _ in range(a.iters):
    step()
print('step_clips_per_s', a.batch * a.iters / (now() - t))
print('trainable_params', sum(p.numel() for p in model.parameters()))
