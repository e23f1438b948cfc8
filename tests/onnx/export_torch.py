#!/usr/bin/env python3
"""Writes tests/onnx/torch_export/: a small CNN exported by torch.onnx.export itself (not built with
the onnx helpers), with the operators and attributes as torch writes them: F.pad (its pads computed
by ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast), Softplus, dilated convolutions, MaxPool
with ceil_mode, AveragePool with count_include_pad=False and with ceil_mode. input.bin/output.bin
hold random inputs and onnxruntime's outputs (float32), meta.json the shapes and versions.

Needs torch, onnx and onnxruntime; tools/bootstrap.sh does not run it (its environment has no
torch), so the fixture is committed and read from the source tree.

Usage: export_torch.py OUT_DIR
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=2, dilation=2)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2, dilation=2)
        self.sp = nn.Softplus()
        self.mp = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.ap = nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)
        self.ap2 = nn.AvgPool2d(2, 2, ceil_mode=True)
        self.fc = nn.Linear(8 * 3 * 3, 5)

    def forward(self, x):
        x = self.sp(self.c1(x))
        x = F.pad(x, (0, 1, 0, 1))  # right and bottom: asymmetric, folded into c2
        x = torch.relu(self.c2(x))
        x = F.pad(x, (1, 1, 1, 1))  # after a ReLU: folded into the max pool
        x = self.mp(x)
        x = self.ap(torch.tanh(x - 0.5))
        return self.fc(self.ap2(x).flatten(1))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = Net().eval()
    path = os.path.join(out, "model.onnx")
    torch.onnx.export(model, torch.rand(1, 3, 16, 15), path, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    x = np.random.default_rng(5).uniform(0, 1, size=(4, 3, 16, 15)).astype(np.float32)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        assert np.abs(model(torch.from_numpy(x)).numpy() - y).max() < 1e-5  # torch and onnxruntime agree
    x.tofile(os.path.join(out, "input.bin"))
    y.astype(np.float32).tofile(os.path.join(out, "output.bin"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"input_shape": list(x.shape), "output_shape": list(y.shape), "torch": torch.__version__,
                   "onnxruntime": ort.__version__}, f)


if __name__ == "__main__":
    main()
