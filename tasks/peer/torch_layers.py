#!/usr/bin/python3
"""torch_layers.py — the PyTorch peer of tasks/bench_layers.cpp: the same two training steps.

Backbone: torch.nn.TransformerEncoder, 4 post-LN layers, d=256, 4 heads, FFN 1024, GELU, dropout 0,
batch_first, on B=8 sequences of T = 64 + N + 1; step = forward, MSE against a fixed random target,
backward, AdamW(lr=1e-4). CNN: the LeNet of PAPER.md §1.7 with C1 of 10 channels on 128 images 20x20,
cross-entropy, backward, AdamW(lr=1e-4). Median of --steps timed steps after --warmup.
One JSON line per measurement, in the same form as `bench_layers --json`.

    /usr/bin/python3 tasks/peer/torch_layers.py --threads 2
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self, c1=10):
        super().__init__()
        self.c1, self.c3, self.c5 = nn.Conv2d(1, c1, 3), nn.Conv2d(c1, 16, 4), nn.Conv2d(16, 120, 3)
        self.f6, self.ol = nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.max_pool2d(torch.tanh(self.c3(x)), 2)
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.ol(torch.tanh(self.f6(x)))


def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    t = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return statistics.median(t), min(t), max(t)


def report(model, threads, n, t, gflop):
    print(json.dumps({"engine": "pytorch", "model": model, "threads": threads, "n": n, "step_s": t[0],
                      "min_s": t[1], "max_s": t[2], "gflops": gflop / t[0],
                      "env": {k: os.environ.get(k, "") for k in ("OPENBLAS_CORETYPE", "LD_PRELOAD")}}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--n", default="1,10,40")
    ap.add_argument("--models", default="backbone,cnn")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    if "backbone" in a.models:
        for n in [int(v) for v in a.n.split(",")]:
            B, T, d, ff, layers = 8, 64 + n + 1, 256, 1024, 4
            layer = nn.TransformerEncoderLayer(d, 4, ff, dropout=0.0, activation="gelu", batch_first=True)
            model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x, target = torch.randn(B, T, d), torch.randn(B, T, d)

            def step():
                opt.zero_grad()
                F.mse_loss(model(x), target).backward()
                opt.step()

            per_layer = 2 * T * d * 3 * d + 2 * T * d * d + 2 * 2 * T * d * ff + 2 * 2 * T * T * d
            report("backbone", a.threads, n, time_steps(step, a.warmup, a.steps), 3.0 * B * layers * per_layer / 1e9)
    if "cnn" in a.models:
        B = 128
        model = LeNet()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = torch.randn(B, 1, 20, 20), torch.randint(0, 10, (B,))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        per_image = 2.0 * (18 * 18 * 10 * 9 + 6 * 6 * 16 * 160 + 120 * 144 + 120 * 84 + 84 * 10)
        report("cnn", a.threads, 1, time_steps(step, a.warmup, a.steps), 3.0 * B * per_image / 1e9)


if __name__ == "__main__":
    main()
