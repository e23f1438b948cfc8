#!/usr/bin/env python3
"""PyTorch baseline for bench_conv: torch.nn.functional.conv2d (no bias, padding 1) on ResNet-20's
3x3 layer shapes, batch 100 by default, median of --repeats calls under torch.no_grad(). Prints
one JSON object per layer, multiply-adds counted as in the direct definition.

usage: torch_conv.py [--batch 100] [--repeats 20] [--threads N]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

LAYERS = [(3, 32, 16, 1), (16, 32, 16, 1), (16, 32, 32, 2), (32, 16, 32, 1), (32, 16, 64, 2), (64, 8, 64, 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    with torch.no_grad():
        for c, size, o, stride in LAYERS:
            x = torch.rand(a.batch, c, size, size) * 2 - 1
            w = torch.rand(o, c, 3, 3) * 2 - 1
            F.conv2d(x, w, None, stride, 1)
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                F.conv2d(x, w, None, stride, 1)
                times.append(time.perf_counter() - t0)
            s = statistics.median(times)
            out = (size + 2 - 3) // stride + 1
            macs = a.batch * o * c * 9 * out * out
            print(json.dumps({"bench": "conv", "impl": "torch", "batch": a.batch, "in_channels": c, "size": size,
                              "out_channels": o, "stride": stride, "ms": s * 1e3, "gmac_per_s": macs / s / 1e9}))


if __name__ == "__main__":
    main()
