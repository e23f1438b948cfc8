#!/usr/bin/env python3
"""PyTorch baseline for bench_train_step: the same model, batch and step (forward, mean
cross-entropy, backward, SGD update), timed the same way. Prints one JSON object.

usage: torch_train_step.py [--model cnn-fmnist] [--batch 256] [--steps 50] [--warmup 5] [--device cpu|cuda]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def cnn_fmnist(act=nn.Tanh):
    return nn.Sequential(nn.Conv2d(1, 16, 8, 2, padding=2), act(), nn.MaxPool2d(2, 1),
                         nn.Conv2d(16, 32, 4, 2), act(), nn.MaxPool2d(2, 1), nn.Flatten(),
                         nn.Linear(32 * 4 * 4, 32), act(), nn.Linear(32, 10))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cnn-fmnist", choices=["cnn-fmnist", "mlp"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = (cnn_fmnist() if a.model == "cnn-fmnist" else mlp()).to(dev)
    x = torch.rand(a.batch, 1, 28, 28, device=dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) * 1e3
        if s >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"bench": "train_step", "impl": "pytorch " + torch.__version__, "model": a.model,
                      "batch": a.batch, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                      "threads": torch.get_num_threads(), "steps": a.steps, "median_ms": med,
                      "min_ms": min(times), "examples_per_s": 1000.0 * a.batch / med}))


if __name__ == "__main__":
    main()
