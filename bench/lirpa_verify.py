#!/usr/bin/env python3
"""Runs auto_LiRPA's CROWN (Xu et al. 2020, "Automatic Perturbation Analysis for Scalable
Certified Robustness and Beyond"; method "CROWN": backward linear bounds for every intermediate
layer and the output, adaptive ReLU lower slopes as in Zhang et al. 2018) on an aegis model file
(zoo `cnn-res` or `mlp`) and the bundled digits test set, with the margin specification
z_y - z_c as C matrix, and reports the time per example and the verified accuracy beside what
`aegis verify` reports for the same file, radius and examples.

usage: lirpa_verify.py MODEL.safetensors [--eps 0.005] [--max 100] [--batch 16]
                       [--per-example aegis_rows.tsv]   (from `aegis verify --per-example`)
Prints one JSON object. With --per-example, also the largest difference between auto_LiRPA's
smallest margin lower bound and the margin_crown column per example (aegis intersects its bounds
with IBP's, so its margins may be larger, never smaller beyond float rounding).

Needs torch and auto_LiRPA, which are not dependencies of aegis. auto_LiRPA 0.3 (the release on
PyPI) requires torch < 1.13, so Python <= 3.10; newer torch needs auto_LiRPA from its source
repository. Without auto_LiRPA the script still checks the PyTorch model against the file (clean
accuracy) and then exits with status 2.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_interop import read_safetensors  # noqa: E402


class Residual(nn.Module):
    """y = x + body(x): the state_dict names of aegis's nn::Residual ("<i>.body.<j>.weight")."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def cnn_res(c, h, w, k):
    """nn/zoo.cpp's cnn-res with ReLU: conv 16@3x3 p1, two identity blocks, avgpool 2, fc 100, fc K."""
    def block():
        return Residual(nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1)))
    return nn.Sequential(nn.Conv2d(c, 16, 3, 1, 1), nn.ReLU(), block(), nn.ReLU(), nn.AvgPool2d(2, 2), block(),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * (h // 2) * (w // 2), 100), nn.ReLU(),
                         nn.Linear(100, k))


def mlp(c, h, w, k):
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, k))


def digits_test(source_dir):
    """The bundled digits' fixed test split (nn/data/dataset.h): the last 297 of 1797 rows, /16."""
    with gzip.open(os.path.join(source_dir, "data", "digits", "digits.csv.gz"), "rt") as f:
        rows = np.array([[int(v) for v in line.split(",")] for line in f if line.strip()], dtype=np.float32)
    test = rows[1500:]
    x = torch.from_numpy(test[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(test[:, 64].astype(np.int64))
    return x, y


def margin_spec(y, k):
    """C [N, K-1, K] with rows e_y - e_c for c != y in class order (as certify/bounds.cpp)."""
    c = torch.zeros(len(y), k - 1, k)
    for i, yi in enumerate(y.tolist()):
        others = [j for j in range(k) if j != yi]
        for s, j in enumerate(others):
            c[i, s, yi] = 1.0
            c[i, s, j] = -1.0
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--eps", type=float, default=0.005)
    p.add_argument("--max", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--per-example", default="")
    p.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = p.parse_args()
    torch.set_grad_enabled(False)
    tensors, meta = read_safetensors(a.model)
    name = meta["aegis.model"]
    if meta.get("aegis.activation", "relu") not in ("", "relu"):
        sys.exit(f"{a.model}: only ReLU models are compared, this one has {meta['aegis.activation']}")
    c, h, w = (int(v) for v in meta["aegis.input_shape"].strip("[]").replace(" ", "").split(",")[-3:])
    k = int(meta["aegis.num_classes"])
    build = {"cnn-res": cnn_res, "mlp": mlp}.get(name)
    if build is None:
        sys.exit(f"{a.model}: model {name} is not compared (cnn-res or mlp)")
    model = build(c, h, w, k)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    x, y = digits_test(a.source_dir)
    x, y = x[:a.max], y[:a.max]
    clean = (model(x).argmax(1) == y)
    result = {"impl": "auto_LiRPA", "torch": torch.__version__, "model_file": a.model, "model": name,
              "eps": a.eps, "norm": "linf", "examples": len(y), "batch": a.batch,
              "threads": torch.get_num_threads(), "clean_accuracy": clean.float().mean().item()}
    try:
        from auto_LiRPA import BoundedModule, BoundedTensor
        from auto_LiRPA.perturbations import PerturbationLpNorm
    except Exception as e:  # noqa: BLE001 - any import failure means: not runnable here
        result["error"] = f"auto_LiRPA unavailable: {type(e).__name__}: {e}"
        print(json.dumps(result))
        sys.exit(2)
    bounded = BoundedModule(model, torch.zeros(1, c, h, w), device="cpu")
    margins, seconds = [], 0.0
    for b in range(0, len(y), a.batch):
        xb, yb = x[b:b + a.batch], y[b:b + a.batch]
        # B = the L-inf ball intersected with [0, 1], given as its box (exact for L-inf).
        ptb = PerturbationLpNorm(norm=np.inf, eps=a.eps, x_L=(xb - a.eps).clamp(0, 1), x_U=(xb + a.eps).clamp(0, 1))
        t0 = time.perf_counter()
        lower, _ = bounded.compute_bounds(x=(BoundedTensor(xb, ptb),), C=margin_spec(yb, k), method="CROWN",
                                          bound_upper=False)
        seconds += time.perf_counter() - t0
        margins.append(lower.min(dim=1).values)
    margin = torch.cat(margins)
    verified = clean & (margin > 0)
    result.update({"seconds": seconds, "ms_per_example": 1000.0 * seconds / max(1, len(y)),
                   "verified_accuracy_crown": verified.float().mean().item()})
    if a.per_example:
        with open(a.per_example) as f:
            header = f.readline().rstrip("\n").split("\t")
            col = header.index("margin_crown")
            aegis = {int(r[0]): float(r[col]) for r in (line.rstrip("\n").split("\t") for line in f)}
        diffs = [aegis[i] - margin[i].item() for i in range(len(y)) if i in aegis]
        result.update({"compared_examples": len(diffs), "aegis_minus_lirpa_min": min(diffs),
                       "aegis_minus_lirpa_max": max(diffs)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
