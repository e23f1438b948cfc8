#!/usr/bin/env python3
"""PyTorch -> ONNX -> aegis, end to end: trains a classifier in PyTorch on Fashion-MNIST, exports
it with torch.onnx.export (the current, torch.export-based exporter), and runs aegis on the ONNX
file: eval, certify (randomized smoothing), attack --attack suite and verify (bound propagation).
The same weights are also written as an aegis model file (safetensors, the zoo architecture of
the same name), and every aegis command runs on both files: the script checks that the accuracy
equals PyTorch's, that the certification rows are identical (same seed; the time column aside),
and that attack and verification results agree.

  python3 tools/pytorch_end_to_end.py --aegis build/aegis --out /tmp/e2e [--model cnn-fmnist|mlp]

Needs torch, onnx and numpy (not dependencies of aegis). Prints one JSON object; exit status 1
when a check fails.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn

# The zoo's architectures in torch and the IDX reader, shared with the benchmarks.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_interop import read_idx  # noqa: E402
from torch_train_step import cnn_fmnist, mlp  # noqa: E402


ACTIVATION = {"cnn-fmnist": "tanh", "mlp": "relu"}


def load_split(data_dir, split):
    x = read_idx(f"{data_dir}/{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx(f"{data_dir}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def write_safetensors(path, model, name):
    """aegis' model file: safetensors with the zoo architecture in its metadata (nn/model_file.h)."""
    header, blobs, offset = {}, [], 0
    for key, t in model.state_dict().items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"aegis.format": "classifier-1", "aegis.model": name, "aegis.input_shape": "1,28,28",
                              "aegis.num_classes": "10", "aegis.activation": ACTIVATION[name],
                              "trained_by": "pytorch " + torch.__version__}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def aegis(binary, *args):
    r = subprocess.run([binary, *args, "--json", "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"aegis {' '.join(args)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def rows_without_time(path):
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if not l.startswith("#")]
    header = lines[0]
    keep = [i for i, h in enumerate(header) if h != "time"]
    return [[r[i] for i in keep] for r in lines]


def comparable(report):
    """A result without what names the file or measures time."""
    return {k: v for k, v in report.items() if not any(w in k for w in ("model", "file", "second", "time"))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aegis", default="build/aegis")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="cnn-fmnist", choices=sorted(ACTIVATION))
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--certify-max", type=int, default=50)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--attack-max", type=int, default=200)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    x, y = load_split(a.data_dir, "train")
    xt, yt = load_split(a.data_dir, "t10k")
    model = cnn_fmnist() if a.model == "cnn-fmnist" else mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.time()
    for _ in range(a.epochs):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        torch_acc = (model(xt).argmax(1) == yt).float().mean().item()

    onnx_path = os.path.join(a.out, a.model + ".onnx")
    st_path = os.path.join(a.out, a.model + ".safetensors")
    torch.onnx.export(model, (xt[:2],), onnx_path, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)
    write_safetensors(st_path, model, a.model)
    data = ["--data", "fashion-mnist", "--data-dir", a.data_dir]
    result = {"model": a.model, "torch": torch.__version__, "train_seconds": round(train_s, 1),
              "torch_test_accuracy": torch_acc, "files": {}}
    failures = []
    for kind, path in (("onnx", onnx_path), ("safetensors", st_path)):
        r = {"eval": aegis(a.aegis, "eval", "--model", path, *data)}
        tsv = os.path.join(a.out, f"certify_{kind}.tsv")
        r["certify"] = aegis(a.aegis, "certify", "--model", path, *data, "--sigma", "0.25", "--n0", "100", "--n",
                             str(a.n), "--max", str(a.certify_max), "--seed", "7", "--out", tsv, "--force")
        r["attack_suite"] = aegis(a.aegis, "attack", "--model", path, *data, "--attack", "suite", "--eps", "0.05",
                                  "--max", str(a.attack_max), "--seed", "1")
        r["verify"] = aegis(a.aegis, "verify", "--model", path, *data, "--eps", "0.005", "--max", "200")
        result["files"][kind] = r
    on, st = result["files"]["onnx"], result["files"]["safetensors"]
    acc = on["eval"]["test_accuracy"]
    if abs(acc - torch_acc) > 1e-4:
        failures.append(f"aegis eval accuracy {acc} differs from PyTorch's {torch_acc}")
    same_rows = rows_without_time(os.path.join(a.out, "certify_onnx.tsv")) == rows_without_time(
        os.path.join(a.out, "certify_safetensors.tsv"))
    result["certify_rows_identical"] = same_rows
    if not same_rows:
        failures.append("certification rows differ between the ONNX file and the safetensors file")
    for key in ("eval", "attack_suite", "verify"):
        if key in on:
            same = comparable(on[key]) == comparable(st[key])
            result[key + "_identical"] = same
            if not same:
                failures.append(f"{key} results differ between the ONNX file and the safetensors file")
    result["failures"] = failures
    print(json.dumps(result, indent=1))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
