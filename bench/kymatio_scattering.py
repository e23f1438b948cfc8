#!/usr/bin/env python3
"""Kymatio baseline for bench_scattering: Scattering2D(J=2, L=8) of a batch of 28 x 28 images
(the same values as bench_scattering), median of --repeats calls, in images per second, with
Kymatio's NumPy backend and, when torch is installed, its PyTorch backend on the CPU (forward,
and forward + backward of the summed output for the input gradient).

    python3 -m venv /tmp/ky && /tmp/ky/bin/pip install numpy "scipy<1.15" kymatio [torch]
    /tmp/ky/bin/python bench/kymatio_scattering.py [--batch 256] [--repeats 5] [--threads N]
"""
import argparse
import json
import statistics
import time

import numpy as np


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    n = a.batch * a.size * a.size
    x = (((np.arange(n, dtype=np.int64) * 7919) % 256) / 255.0).astype(np.float32).reshape(a.batch, 1, a.size, a.size)

    def report(impl, pass_, s):
        print(json.dumps({"bench": "scattering", "impl": impl, "pass": pass_, "batch": a.batch, "size": a.size,
                          "J": 2, "L": 8, "ms": s * 1e3, "images_per_s": a.batch / s}))

    from kymatio.numpy import Scattering2D as NumpyScattering

    s = NumpyScattering(J=2, shape=(a.size, a.size), L=8)
    report("kymatio-numpy", "forward", timed(lambda: s(x), a.repeats))
    try:
        import torch
        from kymatio.torch import Scattering2D as TorchScattering
    except ImportError:
        return
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t = TorchScattering(J=2, shape=(a.size, a.size), L=8)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        report("kymatio-torch", "forward", timed(lambda: t(xt), a.repeats))

    def both():
        xi = xt.clone().requires_grad_(True)
        t(xi).sum().backward()

    report("kymatio-torch", "forward+backward", timed(both, a.repeats))


if __name__ == "__main__":
    main()
