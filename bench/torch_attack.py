#!/usr/bin/env python3
"""PyTorch baseline for bench_attack: PGD-L∞ and CW-L2 written the way torchattacks writes them
(one torch.autograd.grad per step on a frozen model; CW in tanh space with torch.optim.Adam),
on the same model, batch and iteration counts. Prints one JSON object per attack.

usage: torch_attack.py [--batch 256] [--steps 10] [--repeats 5] [--device cpu|cuda]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_train_step import cnn_fmnist


def pgd(model, x, y, eps, alpha, steps):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv


def cw(model, x, y, steps, c=1e-3, lr=1e-2, kappa=0.0):
    w = torch.atanh((2 * x - 1) * (1 - 1e-6)).detach().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    onehot = F.one_hot(y, 10).bool()
    for _ in range(steps):
        adv = (torch.tanh(w) / (1 - 1e-6) + 1) / 2
        z = model(adv)
        real = z[onehot]
        other = z.masked_fill(onehot, float("-inf")).amax(1)
        f = torch.clamp(real - other, min=-kappa)
        loss = ((adv - x) ** 2).flatten(1).sum(1).sum() + (c * f).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return adv.detach()


def median_ms(fn, repeats, dev):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = cnn_fmnist().to(dev).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    x = torch.rand(a.batch, 1, 28, 28, device=dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    ms = median_ms(lambda: pgd(model, x, y, 0.1, 0.25 * 0.1, a.steps), a.repeats, dev)
    print(json.dumps({"bench": "attack", "impl": "pytorch " + torch.__version__, "attack": "pgd-linf",
                      "batch": a.batch, "iterations": a.steps, "device": name, "median_ms": ms,
                      "steps_per_s": 1000.0 * a.batch * a.steps / ms}))
    ms = median_ms(lambda: cw(model, x, y, 100), max(1, a.repeats // 2), dev)
    print(json.dumps({"bench": "attack", "impl": "pytorch " + torch.__version__, "attack": "cw-l2",
                      "batch": a.batch, "iterations": 100, "device": name, "median_ms": ms,
                      "steps_per_s": 1000.0 * a.batch * 100 / ms}))


if __name__ == "__main__":
    main()
