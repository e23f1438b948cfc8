#!/usr/bin/env python3
"""Writes the torch-exported ONNX parity fixtures of tests/test_onnx_import.cpp (committed under
tests/onnx/torch_fixtures: CI has no torch, so they are not remade there).

Each fixture is a folder <out>/<name>/ laid out as make_fixtures.py's (model.onnx, perhaps
model.onnx.data, input.bin, output.bin, meta.json), with onnxruntime's outputs as the reference.
The models are ordinary torch modules in eval mode, exported with torch.onnx.export:
  torch_cnn_fmnist    aegis' zoo cnn-fmnist in torch (tanh, max pooling), current exporter
                      (torch.export based; external data, allowzero Reshape)
  torch_resnet_cifar  a CIFAR ResNet in the style of Cohen et al.'s: a normalization layer (Sub/Div)
                      in front, BatchNorm after every convolution, strided 1x1 shortcuts, global
                      average pooling; current exporter
  torch_mobile        depthwise and pointwise convolutions, average pooling, a channel concat and
                      x.view(x.size(0), -1); the TorchScript exporter (Shape/Gather plumbing)
Weights are random (fixed seeds) and BatchNorm statistics are set to non-trivial values.
For the models without BatchNorm (whose initializers are torch's parameters, not folded ones),
param_grads.json holds torch's float64 gradients of sum(logits * W) with respect to three entries
(first, middle, last) of every parameter, W = weights.bin [batch, classes]: a reference for the
parameter gradients where max pooling's kinks make central differences unreliable.

Usage: make_torch_fixtures.py OUT_DIR   (needs torch, onnx, onnxruntime, numpy)
"""
import copy
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

# The zoo's cnn-fmnist in torch, shared with the benchmarks (bench/torch_train_step.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_train_step import cnn_fmnist  # noqa: E402


class Normalize(nn.Module):
    """(x - mean) / std per channel, the first layer of Cohen et al.'s smoothed classifiers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self):
        super().__init__()
        self.normalize = Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.layer3 = BasicBlock(16, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Mobile(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.pointwise = nn.Conv2d(8, 12, 1)
        self.side = nn.Conv2d(8, 4, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        a = F.relu(self.pointwise(F.relu(self.depthwise(x))))
        b = torch.sigmoid(self.side(x))
        x = self.pool(torch.cat([a, b], dim=1))
        return self.fc(x.view(x.size(0), -1))


def randomize_batchnorm(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.rand(c, generator=gen) * 0.6 - 0.3
            m.running_mean = torch.rand(c, generator=gen) * 0.4 - 0.2
            m.running_var = torch.rand(c, generator=gen) + 0.5


# name -> (builder, one example's shape, batch, current exporter?)
FIXTURES = {
    "torch_cnn_fmnist": (cnn_fmnist, (1, 28, 28), 3, True),
    "torch_resnet_cifar": (ResNetCifar, (3, 16, 16), 2, True),
    "torch_mobile": (Mobile, (3, 16, 16), 2, False),
}


def write_param_grads(model, x, y_shape, folder):
    w = np.random.default_rng(11).uniform(-1, 1, y_shape).astype(np.float32)
    w.tofile(os.path.join(folder, "weights.bin"))
    twin = copy.deepcopy(model).double()
    (twin(x.double()) * torch.from_numpy(w).double()).sum().backward()
    grads = {}
    for name, p in twin.named_parameters():
        n = p.numel()
        at = sorted({0, n // 2, n - 1})
        grads[name] = {"index": at, "grad": [p.grad.reshape(-1)[i].item() for i in at]}
    with open(os.path.join(folder, "param_grads.json"), "w") as f:
        json.dump(grads, f, indent=1)


def export(name, builder, example, batch, dynamo, root):
    torch.manual_seed(len(name))
    model = builder()
    randomize_batchnorm(model, torch.Generator().manual_seed(7))
    model.eval()
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    for stale in ("model.onnx", "model.onnx.data"):
        if os.path.exists(os.path.join(folder, stale)):
            os.remove(os.path.join(folder, stale))
    path = os.path.join(folder, "model.onnx")
    x = torch.from_numpy(np.random.default_rng(100 + len(name)).uniform(0, 1, (batch,) + example).astype(np.float32))
    kwargs = dict(input_names=["input"], output_names=["logits"], dynamo=dynamo)
    if dynamo:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    else:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}}
    torch.onnx.export(model, (x,), path, **kwargs)
    onnx.checker.check_model(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": x.numpy()})[0].astype(np.float32)
    with torch.no_grad():
        y_torch = model(x).numpy()
    # onnxruntime is the reference; torch must agree with it, or the export itself changed the model.
    assert np.allclose(y, y_torch, rtol=1e-4, atol=1e-5), f"{name}: onnxruntime and torch disagree"
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        write_param_grads(model, x, y.shape, folder)
    x.numpy().tofile(os.path.join(folder, "input.bin"))
    y.tofile(os.path.join(folder, "output.bin"))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"input_shape": list(x.shape), "output_shape": list(y.shape), "torch": torch.__version__,
                   "exporter": "torch.export" if dynamo else "torchscript", "onnxruntime": ort.__version__,
                   "onnx": onnx.__version__}, f)
    print(f"{name}: {list(x.shape)} -> {list(y.shape)} ({'torch.export' if dynamo else 'torchscript'})")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, (builder, example, batch, dynamo) in FIXTURES.items():
        export(name, builder, example, batch, dynamo, sys.argv[1])


if __name__ == "__main__":
    main()
