#!/usr/bin/env python3
"""Writes ONNX classifiers with random weights for bench_onnx_load:

  make_onnx_model.py OUT.onnx             a ResNet-18-sized CNN for 3x32x32 inputs (BatchNorm after
                                          every convolution, 1x1 strided shortcuts): 11.2M
                                          parameters, about 45 MB
  make_onnx_model.py OUT.onnx cnn-res     aegis' zoo cnn-res for 1x28x28 inputs and 10 classes under
                                          its state_dict names, to time against the zoo's own model

Needs numpy and onnx.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def cnn_res(path):
    rng = np.random.default_rng(1)
    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
        return name

    def conv(x, name, cin):
        w = const(name + ".weight", rng.uniform(-1, 1, (16, cin, 3, 3)) / np.sqrt(cin * 9))
        b = const(name + ".bias", rng.uniform(-0.1, 0.1, 16))
        nodes.append(helper.make_node("Conv", [x, w, b], [name + "_out"], pads=[1, 1, 1, 1]))
        return name + "_out"

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [x + "_relu"]))
        return x + "_relu"

    def block(x, p):
        y = conv(relu(conv(x, p + ".body.0", 16)), p + ".body.2", 16)
        nodes.append(helper.make_node("Add", [x, y], [p + "_sum"]))
        return p + "_sum"

    h = relu(block(relu(conv("input", "0", 1)), "2"))
    nodes.append(helper.make_node("AveragePool", [h], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
    h = relu(block("pooled", "5"))
    nodes.append(helper.make_node("Flatten", [h], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", const("8.weight", rng.uniform(-1, 1, (100, 16 * 14 * 14)) * 0.02),
                                           const("8.bias", np.zeros(100))], ["hidden"], transB=1))
    nodes.append(helper.make_node("Gemm", [relu("hidden"), const("10.weight", rng.uniform(-1, 1, (10, 100)) * 0.1),
                                           const("10.bias", np.zeros(10))], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "cnn_res", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, path)


def main():
    if len(sys.argv) == 3 and sys.argv[2] == "cnn-res":
        return cnn_res(sys.argv[1])
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
