#!/usr/bin/env python3
"""The Python package's cost over the library it calls. Prints one JSON object per measurement:

  call_overhead    model(x) from Python (one example, the mlp) minus the same forward pass timed
                   inside C++ (aegis._aegis._forward_seconds): what the Python layer adds per call
                   (argument parsing, DLPack, GIL release, result wrapping). Beside it, the same
                   measurement for PyTorch: torch's forward of the same mlp on one example.
  certify          a certification sweep through Python (aegis.certify.Sweep) and through the
                   command line (`aegis certify`), same model file, data, seed and work; wall times
                   and the ratio.
  dlpack           a 100 MB float32 array into aegis and back out (aegis._aegis._round_trip),
                   NumPy and torch, and whether the memory is shared (no copy).

usage: python_overhead.py --cli build/aegis [--data fashion-mnist] [--images 100] [--n 10000]
                          [--repeats 2000] [--threads N]
Needs the installed aegis package (pip install .), numpy and torch.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import torch

import aegis
from torch_train_step import mlp


def per_call(fn, repeats):
    """Median over 5 rounds of the mean time of one call (seconds)."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        rounds.append((time.perf_counter() - start) / repeats)
    return statistics.median(rounds)


def call_overhead(repeats, side):
    model = aegis.zoo("mlp", (1, side, side), seed=0)
    x = np.random.default_rng(0).random((1, 1, side, side), dtype=np.float32)
    model(x)
    python = per_call(lambda: model(x), repeats)
    inside = statistics.median(aegis._aegis._forward_seconds(model._core, x, repeats) / repeats for _ in range(5))
    net = mlp().eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        torch_call = per_call(lambda: net(xt), repeats)
    return {"bench": "python_call_overhead", "model": "mlp", "input": [1, 1, side, side],
            "python_call_us": python * 1e6, "cxx_forward_us": inside * 1e6,
            "overhead_us": (python - inside) * 1e6, "torch_forward_us": torch_call * 1e6, "repeats": repeats}


def certify(cli, data, images, n, model_file):
    out = tempfile.mkdtemp(prefix="aegis-bench-")
    args = dict(sigma=0.25, n0=100, n=n, batch=1000, seed=0, data=data, max=images)
    model = aegis.load(model_file)
    start = time.perf_counter()
    py = aegis.certify.Sweep(model, os.path.join(out, "py.tsv"), **args).run(progress=False)
    python_s = time.perf_counter() - start
    start = time.perf_counter()
    p = subprocess.run([cli, "certify", "--model", model_file, "--data", data, "--sigma", "0.25", "--n0", "100",
                        "--n", str(n), "--batch", "1000", "--seed", "0", "--max", str(images), "--out",
                        os.path.join(out, "cli.tsv"), "--quiet", "--json", "--device", "cpu"],
                       capture_output=True, text=True, check=True)
    cli_s = time.perf_counter() - start
    c = json.loads(p.stdout)
    same = open(os.path.join(out, "py.tsv")).read().split("\n")[1:]
    other = open(os.path.join(out, "cli.tsv")).read().split("\n")[1:]
    rows_equal = [r.split("\t")[:5] for r in same] == [r.split("\t")[:5] for r in other]
    return {"bench": "python_certify", "data": data, "images": images, "n": n,
            "python_s": python_s, "cli_s": cli_s, "ratio": python_s / cli_s,
            "python_sweep_s": py["sweeps"][0]["seconds"], "cli_sweep_s": c["sweeps"][0]["seconds"],
            "rows_equal": rows_equal}


def dlpack(megabytes=100):
    n = megabytes * 1024 * 1024 // 4
    results = []
    for kind, x in (("numpy", np.ones(n, dtype=np.float32)), ("torch", torch.ones(n, dtype=torch.float32))):
        pointer = x.ctypes.data if kind == "numpy" else x.data_ptr()
        back = lambda: (np.from_dlpack if kind == "numpy" else torch.from_dlpack)(aegis._aegis._round_trip(x))
        y = back()
        shared = (y.ctypes.data if kind == "numpy" else y.data_ptr()) == pointer
        t = per_call(back, 200)
        results.append({"bench": "python_dlpack_round_trip", "array": kind, "megabytes": megabytes,
                        "round_trip_us": t * 1e6, "shared_memory": shared})
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", default="build/aegis")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    side = 8 if a.data == "digits" else 28
    print(json.dumps(call_overhead(a.repeats, side)))
    for r in dlpack():
        print(json.dumps(r))
    # The certify model: cnn-fmnist (or the mlp on the digits), briefly trained with Gaussian noise.
    x, y, _, _ = aegis.load_data(a.data)
    name = "mlp" if a.data == "digits" else "cnn-fmnist"
    model = aegis.zoo(name, x.shape[1:], seed=0)
    aegis.privacy.train(model, x[:5000], y[:5000], epochs=1, batch_size=256, lr=0.1, noise_multiplier=0.5,
                        progress=False)
    model_file = os.path.join(tempfile.mkdtemp(prefix="aegis-bench-"), name + ".safetensors")
    model.save(model_file)
    print(json.dumps(certify(os.path.abspath(a.cli), a.data, a.images, a.n, model_file)))


if __name__ == "__main__":
    main()
