#!/usr/bin/env python3
"""Checks a model written by aegis' ONNX export (tests/test_onnx_train.cpp).

Usage: check_export.py MODEL.onnx INPUT.bin N,C,H,W OUTPUT.bin
Runs onnx.checker (full check, with shape inference) on MODEL.onnx, then onnxruntime on the
float32 little-endian input of the given shape, and writes its first output to OUTPUT.bin as
float32 little-endian. Exits non-zero, with the reason on stderr, when either step fails.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_path, input_path, shape, output_path = sys.argv[1:]
    onnx.checker.check_model(onnx.load(model_path), full_check=True)
    x = np.fromfile(input_path, dtype="<f4").reshape([int(d) for d in shape.split(",")])
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    y = session.run(None, {name: x})[0].astype("<f4")
    y.tofile(output_path)


if __name__ == "__main__":
    main()
