#!/usr/bin/env python3
"""Opacus baseline for the DP-SGD step benchmark: the same model and batch as
bench_dp_step, one step = forward, per-example clipping (hooks: materialized per-sample
gradients; ghost: ghost clipping with two backward passes), Gaussian noise and the SGD
update. Also times the non-private step of the same model. Prints one JSON object per mode.

usage: opacus_dp_step.py [--batch 256] [--steps 30] [--warmup 5] [--device cpu|cuda]
"""
import argparse
import json
import statistics
import time
import warnings

import torch
import torch.nn as nn
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from torch_train_step import cnn_fmnist

warnings.filterwarnings("ignore")


def time_steps(step, steps, warmup, dev):
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if s >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    x = torch.rand(a.batch, 1, 28, 28, device=dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    for mode in ["non-private", "hooks", "ghost"]:
        model = cnn_fmnist().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        criterion = nn.CrossEntropyLoss()
        if mode != "non-private":
            loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=a.batch)
            out = PrivacyEngine().make_private(module=model, optimizer=opt, data_loader=loader,
                                               criterion=criterion, noise_multiplier=1.0,
                                               max_grad_norm=1.0, grad_sample_mode=mode,
                                               poisson_sampling=False)
            model, opt = out[0], out[1]
            if mode == "ghost":
                criterion = out[2]

        def step():
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()

        med, lo = time_steps(step, a.steps, a.warmup, dev)
        print(json.dumps({"bench": "dp_step", "impl": "opacus " + __import__("opacus").__version__,
                          "mode": mode, "model": "cnn-fmnist", "batch": a.batch,
                          "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                          "threads": torch.get_num_threads(), "median_ms": med, "min_ms": lo}))


if __name__ == "__main__":
    main()
