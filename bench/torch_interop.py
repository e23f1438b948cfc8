#!/usr/bin/env python3
"""Loads a model file written by `aegis train` into the PyTorch definition of the same
architecture and evaluates it on the Fashion-MNIST test set: the accuracy must equal what
`aegis eval` reports, which checks parameter names, layouts and layer semantics end to end.

usage: torch_interop.py MODEL.safetensors [--data-dir /usr/share/datasets/fashion-mnist]
Prints one JSON object.
"""
import argparse
import gzip
import json
import struct

import numpy as np
import torch
import torch.nn as nn

from torch_train_step import cnn_fmnist, mlp


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    dtypes = {"F32": np.float32, "F64": np.float64, "I32": np.int32}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        tensors[name] = torch.from_numpy(
            np.frombuffer(body[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"]).copy())
    return tensors, meta


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    tensors, meta = read_safetensors(a.model)
    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[meta["aegis.activation"]]
    model = cnn_fmnist(act) if meta["aegis.model"] == "cnn-fmnist" else mlp()
    model.load_state_dict(tensors, strict=True)
    x = torch.from_numpy(read_idx(f"{a.data_dir}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(f"{a.data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    with torch.no_grad():
        logits = model(x.unsqueeze(1))
    acc = (logits.argmax(1) == y).float().mean().item()
    loss = nn.functional.cross_entropy(logits, y).item()
    print(json.dumps({"impl": "pytorch " + torch.__version__, "model_file": a.model, "test_accuracy": acc,
                      "test_loss": loss}))


if __name__ == "__main__":
    main()
