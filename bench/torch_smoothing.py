#!/usr/bin/env python3
"""PyTorch baseline for bench_smoothing: the Monte Carlo loop of Cohen, Rosenfeld & Kolter's
randomized-smoothing code (Smooth._sample_noise in their core.py): per batch, repeat the input,
draw torch.randn_like noise scaled by sigma, run the base classifier, argmax, and count on the host.
Same model, batch and number of samples as bench_smoothing. Prints one JSON object per model.

usage: torch_smoothing.py [--model cnn-fmnist|resnet20|all] [--batch 1000] [--samples 10000]
                          [--repeats 3] [--device cpu|cuda] [--threads N]
"""
import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_train_step import cnn_fmnist


class BasicBlock(nn.Module):
    """aegis' resnet20 block: conv3x3-GN-ReLU-conv3x3-GN + shortcut, ReLU (GroupNorm for DP)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.GroupNorm(min(16, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.GroupNorm(min(16, cout), cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.GroupNorm(min(16, cout), cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.GroupNorm(16, 16)
        layers, cin = [], 16
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.linear(F.adaptive_avg_pool2d(h, 1).flatten(1))


def sample_noise(model, x, num, batch_size, sigma, num_classes, dev):
    """Cohen et al.'s _sample_noise, unchanged in substance."""
    with torch.no_grad():
        counts = np.zeros(num_classes, dtype=int)
        remaining = num
        for _ in range(math.ceil(num / batch_size)):
            this_batch_size = min(batch_size, remaining)
            remaining -= this_batch_size
            batch = x.repeat((this_batch_size, 1, 1, 1))
            noise = torch.randn_like(batch, device=dev) * sigma
            predictions = model(batch + noise).argmax(1)
            counts += np.bincount(predictions.cpu().numpy(), minlength=num_classes)
        return counts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="all", choices=["cnn-fmnist", "resnet20", "all"])
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    models = ["cnn-fmnist", "resnet20"] if a.model == "all" else [a.model]
    for m in models:
        torch.manual_seed(0)
        model = (cnn_fmnist() if m == "cnn-fmnist" else ResNet20()).to(dev).eval()
        shape = (1, 28, 28) if m == "cnn-fmnist" else (3, 32, 32)
        x = torch.rand(1, *shape, device=dev)
        sample_noise(model, x, a.batch, a.batch, a.sigma, 10, dev)  # warm-up
        times = []
        for _ in range(a.repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            sample_noise(model, x, a.samples, a.batch, a.sigma, 10, dev)
            times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        print(json.dumps({"bench": "smoothing", "impl": "pytorch " + torch.__version__, "model": m,
                          "batch": a.batch, "samples": a.samples, "device": name,
                          "threads": torch.get_num_threads(), "seconds": s,
                          "samples_per_s": a.samples / s}), flush=True)


if __name__ == "__main__":
    main()
