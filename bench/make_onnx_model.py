#!/usr/bin/env python3
"""Writes a ResNet-18-sized ONNX classifier for bench_onnx_load (random weights, BatchNorm after
every convolution, 1x1 strided shortcuts): 11.2M parameters, about 45 MB.

Usage: make_onnx_model.py OUT.onnx   (needs numpy and onnx)
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
        return name

    def conv_bn(x, cin, cout, k, stride, name):
        w = const(name + ".weight", rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k)))
        y = name + "_conv"
        nodes.append(helper.make_node("Conv", [x, w], [y], name=name, pads=[k // 2] * 4, strides=[stride] * 2))
        bn = name.replace("conv", "bn")
        args = [const(bn + s, v) for s, v in ((".weight", np.ones(cout)), (".bias", np.zeros(cout)),
                                              (".running_mean", rng.standard_normal(cout) * 0.1),
                                              (".running_var", rng.uniform(0.5, 1.5, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [y] + args, [bn + "_out"], name=bn))
        return bn + "_out"

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [x + "_relu"]))
        return x + "_relu"

    h = relu(conv_bn("input", 3, 64, 3, 1, "conv1"))
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"layer{stage + 1}.{block}."
            y = relu(conv_bn(h, cin, cout, 3, stride, p + "conv1"))
            y = conv_bn(y, cout, cout, 3, 1, p + "conv2")
            s = conv_bn(h, cin, cout, 1, stride, p + "shortcut.conv") if stride != 1 or cin != cout else h
            nodes.append(helper.make_node("Add", [y, s], [p + "sum"]))
            h, cin = relu(p + "sum"), cout
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", const("fc.weight", rng.standard_normal((10, 512)) * 0.04),
                                           const("fc.bias", np.zeros(10))], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "resnet18", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, sys.argv[1])


if __name__ == "__main__":
    main()
