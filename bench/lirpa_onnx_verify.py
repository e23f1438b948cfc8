#!/usr/bin/env python3
"""Runs auto_LiRPA's CROWN (Xu et al. 2020) on an ONNX classifier of the bundled digits (8x8 inputs,
for instance tests/onnx/fixtures/digits_cnn/model.onnx) and compares its margin lower bounds
z_y - z_c with those of `aegis verify --model MODEL.onnx --per-example FILE` on the same examples.

The ONNX graph is run by a small PyTorch interpreter of the operators these fixtures use (Conv,
Relu, Sigmoid, MaxPool, AveragePool, Flatten, Gemm, Add), so that auto_LiRPA traces it like any
torch model. The margins are compared example by example (for every example, correct or not:
the fixtures' weights are random); they should agree to float rounding where both relax alike. On
tests/onnx/fixtures/digits_cnn (with max pooling) at eps 0.01 and 0.05 and zoo_mlp at 0.01, 100
digits each, they agreed within 5e-7 (2026-12-07).

usage: lirpa_onnx_verify.py MODEL.onnx [--eps 0.01] [--max 100] [--batch 16]
                            [--per-example aegis_rows.tsv]
Prints one JSON object. Needs torch, onnx and auto_LiRPA (not dependencies of aegis; auto_LiRPA 0.3
on PyPI needs torch < 1.13, newer torch its source repository).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lirpa_verify import digits_test, margin_spec  # noqa: E402


class OnnxNet(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        g = onnx.load(path).graph
        self.nodes = list(g.node)
        self.inputs = g.input[0].name
        self.output = g.output[0].name
        for i, init in enumerate(g.initializer):
            self.register_buffer(f"c{i}", torch.from_numpy(numpy_helper.to_array(init).copy()))
        self.names = {init.name: f"c{i}" for i, init in enumerate(g.initializer)}

    def forward(self, x):
        v = {self.inputs: x}
        get = lambda name: v[name] if name in v else getattr(self, self.names[name])  # noqa: E731
        for n in self.nodes:
            a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
            ins = [get(i) for i in n.input if i]
            op = n.op_type
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                y = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1])[0], pads[0],
                             1, a.get("group", 1))
            elif op == "Relu":
                y = F.relu(ins[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(ins[0])
            elif op in ("MaxPool", "AveragePool"):
                k, s = a["kernel_shape"][0], a.get("strides", [1, 1])[0]
                p = a.get("pads", [0, 0, 0, 0])[0]
                y = F.max_pool2d(ins[0], k, s, p) if op == "MaxPool" else F.avg_pool2d(ins[0], k, s, p)
            elif op == "Flatten":
                y = torch.flatten(ins[0], 1)
            elif op == "Gemm":
                w = ins[1].t() if a.get("transB", 0) else ins[1]
                y = a.get("alpha", 1.0) * ins[0].matmul(w)
                if len(ins) > 2:
                    y = y + a.get("beta", 1.0) * ins[2]
            elif op == "Add":
                y = ins[0] + ins[1]
            else:
                raise SystemExit(f"operator {op} is not interpreted here")
            v[n.output[0]] = y
        return v[self.output]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--max", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--per-example", default="")
    p.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = p.parse_args()
    torch.set_grad_enabled(False)
    model = OnnxNet(a.model).eval()
    x, y = digits_test(a.source_dir)
    x, y = x[:a.max], y[:a.max]
    k = model(x[:1]).shape[1]
    result = {"impl": "auto_LiRPA", "torch": torch.__version__, "model_file": a.model, "eps": a.eps,
              "examples": len(y), "batch": a.batch, "threads": torch.get_num_threads()}
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm
    bounded = BoundedModule(model, torch.zeros(1, *x.shape[1:]), device="cpu")
    margins, seconds = [], 0.0
    for b in range(0, len(y), a.batch):
        xb, yb = x[b:b + a.batch], y[b:b + a.batch]
        ptb = PerturbationLpNorm(norm=np.inf, eps=a.eps, x_L=(xb - a.eps).clamp(0, 1), x_U=(xb + a.eps).clamp(0, 1))
        t0 = time.perf_counter()
        lower, _ = bounded.compute_bounds(x=(BoundedTensor(xb, ptb),), C=margin_spec(yb, k), method="CROWN",
                                          bound_upper=False)
        seconds += time.perf_counter() - t0
        margins.append(lower.min(dim=1).values)
    margin = torch.cat(margins)
    result.update({"seconds": seconds, "ms_per_example": 1000.0 * seconds / max(1, len(y)),
                   "margin_mean": margin.mean().item()})
    if a.per_example:
        with open(a.per_example) as f:
            header = f.readline().rstrip("\n").split("\t")
            col = header.index("margin_crown")
            aegis = {int(r[0]): float(r[col]) for r in (line.rstrip("\n").split("\t") for line in f)}
        diffs = [aegis[i] - margin[i].item() for i in range(len(y)) if i in aegis]
        result.update({"compared_examples": len(diffs), "aegis_minus_lirpa_min": min(diffs),
                       "aegis_minus_lirpa_max": max(diffs),
                       "aegis_margin_mean": float(np.mean([aegis[i] for i in range(len(y)) if i in aegis]))})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
