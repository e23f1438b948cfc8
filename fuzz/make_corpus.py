#!/usr/bin/env python3
"""Writes the seed corpora of the file-reader fuzz harnesses (fuzz/corpus/<harness>/): a few small
valid files per reader, in the input layout each harness expects (see fuzz/fuzz_support.h:
split_two puts a 2-byte little-endian length before the first of two files). Deterministic (gzip
with mtime 0), so rerunning it rewrites the same bytes. The safetensors seeds are not made here.

usage: fuzz/make_corpus.py [CORPUS_DIR]   (default: fuzz/corpus beside this script)
"""
import gzip
import json
import os
import struct
import sys


def two(first, second):
    return struct.pack("<H", len(first)) + first + second


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def idx_labels(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def idx_images(n, h, w):
    return struct.pack(">IIII", 0x00000803, n, h, w) + bytes((i * 37) % 256 for i in range(n * h * w))


def cifar_record(label, seed):
    return bytes([label]) + bytes((i * seed) % 256 for i in range(3 * 32 * 32))


HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def settings(**changes):
    s = {"format": "aegis-certify-sweep", "version": 1, "sigma": 0.25, "n0": 100, "n": 1000, "alpha": 0.001,
         "seed": 0, "model": "smooth.safetensors", "model_fingerprint": "fnv1a64:0123456789abcdef",
         "data": "digits", "skip": 1, "max": 0, "shard": "0/1", "precision": "fp32", "batch": 256,
         "device": "cpu"}
    s.update(changes)
    for k in [k for k, v in s.items() if v is None]:
        del s[k]
    return (json.dumps(s, indent=2) + "\n").encode()


def vnnlib(inputs, outputs, tail, box=True):
    text = "; seed property\n"
    text += "".join(f"(declare-const X_{i} Real)\n" for i in range(inputs))
    text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(outputs))
    if box:
        text += "".join(f"(assert (>= X_{i} -0.{i + 1}))\n(assert (<= X_{i} 0.{i + 5}))\n" for i in range(inputs))
    return (text + tail).encode()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    rows = (HEADER + "0\t3\t3\t0.512\t1\t0:00:00.012000\n" + "1\t7\t-1\t0\t0\t0:00:00.011000\n" +
            "2\t1\t4\t0\t0\t1 day, 0:00:01\n" + "4\t2\t2\t1.25e-05\t1\t0:00:01\n")
    seeds = {
        "idx": {
            "raw": two(idx_labels([3, 7]), idx_images(2, 3, 3)),
            "gzip": two(gz(idx_labels([0, 9, 5])), gz(idx_images(3, 2, 4))),
            "mixed": two(idx_labels([1]), gz(idx_images(1, 28, 28))),
        },
        "cifar10": {
            "gzip": two(gz(cifar_record(3, 7)), gz(cifar_record(9, 11) + cifar_record(0, 13))),
            "raw_train": two(cifar_record(1, 5), gz(cifar_record(2, 3))),
        },
        "sweep_tsv": {
            "rows": rows.encode(),
            "header_only": HEADER.encode(),
            "partial_tail": (HEADER + "0\t3\t3\t0.512\t1\t0:00:00.012000\n1\t7\t7\t0.2").encode(),
            "crlf": rows.replace("\n", "\r\n").encode(),
        },
        "sweep_settings": {
            "current": settings(),
            "tensor_cores": settings(precision=None, batch=None, device=None, tensor_cores=True),
            "shard": settings(shard="2/3", skip=10, max=500, sigma=0.5, seed=18446744073709551615),
        },
        "vnnlib": {
            "robustness": vnnlib(3, 2, "(assert (or (and (>= Y_1 Y_0)) (and (<= (- Y_0 (* 2 Y_1)) -0.5))))\n"),
            "input_boxes": vnnlib(2, 2, "", box=False) + (
                b"(assert (or (and (>= X_0 0) (<= X_0 0.5) (>= X_1 -1) (<= X_1 1e-3) (< Y_0 Y_1))\n"
                b"            (and (>= X_0 0.5) (<= X_0 1) (>= X_1 0) (<= X_1 1) (> (+ Y_0 1) Y_1))))\n"),
        },
        "analyze": {
            "with_settings": two(settings(), rows.encode()),
            "without_settings": two(b"", rows.encode()),
            "shard": two(settings(shard="1/2", sigma=1.0), (HEADER + "1\t0\t0\t2.5\t1\t0:00:00.5\n").encode()),
        },
    }
    for harness, files in seeds.items():
        os.makedirs(os.path.join(root, harness), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(root, harness, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
