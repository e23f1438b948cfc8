#!/usr/bin/env python3
"""Writes the ONNX parity fixtures of tests/test_onnx_import.cpp.

Each fixture is a folder <out>/<name>/ with
  model.onnx            a small classifier built with the onnx package's helpers, fixed random weights
  input.bin, output.bin float32 little-endian: random inputs and onnxruntime's outputs for them
  meta.json             {"input_shape": [...], "output_shape": [...], "producer": ...}
The models cover what the importer supports: an MLP with MatMul+Add, Gemm (transB 0 and 1, alpha,
beta) and a final Softmax; a LeNet-style CNN with torch's Shape/Gather/Unsqueeze/Concat/Reshape
plumbing and a symbolic batch; a ResNet-style block with BatchNorm and a strided 1x1 shortcut,
stored with external data; a CIFAR-style CNN with a Sub/Div normalization in front, Clip (ReLU6),
an unfolded BatchNorm and a fixed batch of 2; a network with Concat, AveragePool with padding,
Dropout, a Constant-node reshape target and a BatchNorm that must not fold (its convolution's
output is read twice); a MobileNet-style block with depthwise and grouped
convolutions; Softplus and Pad nodes (folded or not), asymmetric pads, ceil_mode pooling and
count_include_pad 0/1; dilated convolutions; a digits-shaped CNN with a bias-less convolution,
BatchNorm and MatMul+Add (for the ONNX export); an MLP whose two layers read one weight; aegis' zoo
mlp and cnn-res under their state_dict names (for the comparison with the zoo's own models). bad/
holds well-formed models the importer must refuse.

Usage: make_fixtures.py OUT_DIR   (needs numpy, onnx, onnxruntime)
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


class Graph:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        scale = scale or 1.0 / np.sqrt(fan_in)
        return self.const(name, (self.rng.uniform(-scale, scale, size=shape) * np.sqrt(3)).astype(np.float32))

    def node(self, op, inputs, name=None, outputs=1, **attrs):
        self.count += 1
        name = name or f"{op.lower()}_{self.count}"
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def bn(self, x, channels, prefix):
        r = self.rng
        return self.node("BatchNormalization", [
            x,
            self.const(f"{prefix}.weight", r.uniform(0.5, 1.5, channels).astype(np.float32)),
            self.const(f"{prefix}.bias", r.uniform(-0.3, 0.3, channels).astype(np.float32)),
            self.const(f"{prefix}.running_mean", r.uniform(-0.2, 0.2, channels).astype(np.float32)),
            self.const(f"{prefix}.running_var", r.uniform(0.5, 2.0, channels).astype(np.float32)),
        ], name=prefix, epsilon=1e-5)

    def model(self, x_shape, out, out_classes, batch="N", opset=OPSET):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch] + list(x_shape))
        outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, out_classes])
        g = helper.make_graph(self.nodes, "fixture", [inp], [outp], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="aegis-fixtures")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


def torch_flatten(g, x):
    # What torch.onnx.export writes for x.view(x.size(0), -1).
    shape = g.node("Shape", [x])
    batch = g.node("Gather", [shape, g.const(f"idx{g.count}", np.array(0, dtype=np.int64))], axis=0)
    batch1 = g.node("Unsqueeze", [batch, g.const(f"axes{g.count}", np.array([0], dtype=np.int64))])
    target = g.node("Concat", [batch1, g.const(f"minus1_{g.count}", np.array([-1], dtype=np.int64))], axis=0)
    return g.node("Reshape", [x, target])


def torch_pad(g, x, pads):
    # What torch.onnx.export (opset 11-17) writes for F.pad(x, pads): torch's pads (last dimension
    # first, begin/end pairs) turned into ONNX's order by constant arithmetic before the Pad.
    c = g.count
    zeros = g.node("ConstantOfShape", [g.const(f"pad_rank{c}", np.array([8 - len(pads)], dtype=np.int64))],
                   value=numpy_helper.from_array(np.array([0], dtype=np.int64)))
    flat = g.node("Concat", [g.const(f"torch_pads{c}", np.array(pads, dtype=np.int64)), zeros], axis=0)
    pairs = g.node("Reshape", [flat, g.const(f"pairs{c}", np.array([-1, 2], dtype=np.int64))])
    rows = g.node("Slice", [pairs, g.const(f"start{c}", np.array([-1], dtype=np.int64)),
                            g.const(f"end{c}", np.array([-9223372036854775807], dtype=np.int64)),
                            g.const(f"axis{c}", np.array([0], dtype=np.int64)),
                            g.const(f"step{c}", np.array([-1], dtype=np.int64))])
    cols = g.node("Transpose", [rows], perm=[1, 0])
    onnx_pads = g.node("Cast", [g.node("Reshape", [cols, g.const(f"flat{c}", np.array([-1], dtype=np.int64))])],
                       to=TensorProto.INT64)
    return g.node("Pad", [x, onnx_pads, ""], mode="constant")


def mlp():
    g = Graph(1)
    h = g.node("MatMul", ["input", g.weight("fc1.weight_t", [20, 16])])
    h = g.node("Add", [h, g.weight("fc1.bias", [16], 0.2)])
    h = g.node("Relu", [h])
    h = g.node("Gemm", [h, g.weight("fc2.weight", [12, 16]), g.weight("fc2.bias", [12], 0.2)], name="fc2",
               transB=1, alpha=0.5, beta=2.0)
    h = g.node("Tanh", [h])
    h = g.node("Gemm", [h, g.weight("fc3.weight_t", [12, 5]), g.weight("fc3.bias", [5], 0.2)], name="fc3")
    out = g.node("Softmax", [h], axis=-1)
    return g.model([20], out, 5), (7, 20)


def lenet():
    g = Graph(2)
    h = g.node("Conv", ["input", g.weight("conv1.weight", [4, 1, 3, 3]), g.weight("conv1.bias", [4], 0.2)],
               name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    h = g.node("Relu", [h])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Conv", [h, g.weight("conv2.weight", [6, 4, 3, 3]), g.weight("conv2.bias", [6], 0.2)], name="conv2")
    h = g.node("Sigmoid", [h])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[1, 1])
    h = torch_flatten(g, h)
    h = g.node("Gemm", [h, g.weight("fc1.weight", [10, 54]), g.weight("fc1.bias", [10], 0.2)], name="fc1", transB=1)
    h = g.node("LeakyRelu", [h], alpha=0.1)
    h = g.node("Gemm", [h, g.weight("fc2.weight", [4, 10]), g.weight("fc2.bias", [4], 0.2)], name="fc2", transB=1)
    return g.model([1, 12, 12], h, 4), (5, 1, 12, 12)


def resnet_bn():
    g = Graph(3)
    h = g.node("Conv", ["input", g.weight("conv1.weight", [8, 3, 3, 3])], name="conv1", pads=[1, 1, 1, 1])
    h = g.node("Relu", [g.bn(h, 8, "bn1")])
    y = g.node("Conv", [h, g.weight("layer1.0.conv1.weight", [16, 8, 3, 3])], name="l1c1", pads=[1, 1, 1, 1],
               strides=[2, 2])
    y = g.node("Relu", [g.bn(y, 16, "layer1.0.bn1")])
    y = g.node("Conv", [y, g.weight("layer1.0.conv2.weight", [16, 16, 3, 3])], name="l1c2", pads=[1, 1, 1, 1])
    y = g.bn(y, 16, "layer1.0.bn2")
    s = g.node("Conv", [h, g.weight("layer1.0.shortcut.0.weight", [16, 8, 1, 1])], name="short", strides=[2, 2])
    s = g.bn(s, 16, "layer1.0.shortcut.1")
    h = g.node("Relu", [g.node("Add", [y, s])])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h], axis=1)
    h = g.node("Gemm", [h, g.weight("fc.weight", [6, 16]), g.weight("fc.bias", [6], 0.2)], name="fc", transB=1)
    return g.model([3, 8, 8], h, 6), (4, 3, 8, 8)


def normalized_cnn():
    g = Graph(4)
    mean = g.const("mean", np.array([0.49, 0.48, 0.45], dtype=np.float32).reshape(1, 3, 1, 1))
    std = g.const("std", np.array([0.25, 0.24, 0.26], dtype=np.float32).reshape(1, 3, 1, 1))
    h = g.node("Div", [g.node("Sub", ["input", mean]), std])
    h = g.node("Conv", [h, g.weight("conv1.weight", [6, 3, 3, 3]), g.weight("conv1.bias", [6], 0.2)], name="conv1",
               pads=[1, 1, 1, 1])
    h = g.node("Clip", [h, g.const("zero", np.array(0, dtype=np.float32)), g.const("six", np.array(6, dtype=np.float32))])
    h = g.node("Conv", [h, g.weight("conv2.weight", [8, 6, 3, 3]), g.weight("conv2.bias", [8], 0.2)], name="conv2",
               strides=[2, 2])
    h = g.node("Relu", [h])
    h = g.bn(h, 8, "bn2")  # after the ReLU: nothing to fold into, an affine step
    h = g.node("Mul", [h, g.const("half", np.array(0.5, dtype=np.float32))])
    h = g.node("AveragePool", [h], kernel_shape=[3, 3], strides=[3, 3])
    h = g.node("Reshape", [h, g.const("flat", np.array([2, -1], dtype=np.int64))], allowzero=1)  # as torch's dynamo writes
    h = g.node("Gemm", [h, g.weight("fc.weight", [10, 8]), g.weight("fc.bias", [10], 0.2)], name="fc", transB=1)
    out = g.node("LogSoftmax", [h], axis=1)
    return g.model([3, 10, 10], out, 10, batch=2), (2, 3, 10, 10)


def pool_concat():
    g = Graph(5)
    a = g.node("Conv", ["input", g.weight("a.weight", [3, 2, 3, 3]), g.weight("a.bias", [3], 0.2)], name="a",
               pads=[1, 1, 1, 1])
    b = g.node("Conv", ["input", g.weight("b.weight", [2, 2, 1, 1]), g.weight("b.bias", [2], 0.2)], name="b")
    # b is read twice, once through an Identity: the BatchNorm must not fold into b's weights.
    b = g.node("Add", [g.node("Relu", [b]), g.bn(g.node("Identity", [b]), 2, "bn_b")])
    h = g.node("Concat", [g.node("Tanh", [a]), b], axis=1)
    h = g.node("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    h = g.node("Dropout", [h])
    h = g.node("MaxPool", [h], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    target = g.node("Constant", [], value=numpy_helper.from_array(np.array([0, -1], dtype=np.int64)))
    h = g.node("Reshape", [h, target])
    h = g.node("Gemm", [h, g.weight("fc.weight", [3, 125]), g.weight("fc.bias", [3], 0.2)], name="fc", transB=1)
    return g.model([2, 9, 9], h, 3), (6, 2, 9, 9)


def depthwise():
    # A MobileNet-style block: 1x1 expansion, BatchNorm, ReLU6, a strided depthwise 3x3 convolution,
    # BatchNorm, ReLU6, a grouped (2 groups) 1x1 projection; then a spatial ReduceMean (opset 18's axes input).
    g = Graph(13)
    h = g.node("Conv", ["input", g.weight("expand.weight", [8, 3, 1, 1])], name="expand")
    six = g.const("six", np.array(6, dtype=np.float32))
    zero = g.const("zero", np.array(0, dtype=np.float32))
    h = g.node("Clip", [g.bn(h, 8, "bn1"), zero, six])
    h = g.node("Conv", [h, g.weight("dw.weight", [8, 1, 3, 3])], name="dw", group=8, pads=[1, 1, 1, 1], strides=[2, 2])
    h = g.node("Clip", [g.bn(h, 8, "bn2"), zero, six])
    h = g.node("Conv", [h, g.weight("project.weight", [6, 4, 1, 1]), g.weight("project.bias", [6], 0.2)],
               name="project", group=2)
    h = g.node("ReduceMean", [h, g.const("spatial", np.array([-1, 2], dtype=np.int64))], keepdims=0)
    h = g.node("Gemm", [h, g.weight("fc.weight", [5, 6]), g.weight("fc.bias", [5], 0.2)], name="fc", transB=1)
    return g.model([3, 9, 9], h, 5, opset=18), (3, 3, 9, 9)  # ReduceMean's axes are an input from 18


def zoo_mlp():
    # aegis' zoo "mlp" for the digits (1x8x8, 10 classes) under its state_dict names, as torch
    # exports nn.Sequential(Flatten, Linear, ReLU, Linear): the graph module must equal the zoo model.
    g = Graph(17)
    h = g.node("Flatten", ["input"], axis=1)
    h = g.node("Gemm", [h, g.weight("1.weight", [256, 64]), g.weight("1.bias", [256], 0.1)], transB=1)
    h = g.node("Relu", [h])
    h = g.node("Gemm", [h, g.weight("3.weight", [10, 256]), g.weight("3.bias", [10], 0.1)], transB=1)
    return g.model([1, 8, 8], h, 10), (4, 1, 8, 8)


def zoo_cnn_res():
    # aegis' zoo "cnn-res" (nn/zoo.h) for 1x2x2 inputs and 3 classes, under its state_dict names.
    g = Graph(18)

    def conv(x, name, cin):
        return g.node("Conv", [x, g.weight(name + ".weight", [16, cin, 3, 3]), g.weight(name + ".bias", [16], 0.1)],
                      pads=[1, 1, 1, 1])

    def block(x, prefix):
        y = conv(g.node("Relu", [conv(x, prefix + ".body.0", 16)]), prefix + ".body.2", 16)
        return g.node("Add", [x, y])

    h = g.node("Relu", [conv("input", "0", 1)])
    h = g.node("Relu", [block(h, "2")])
    h = g.node("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Relu", [block(h, "5")])
    h = g.node("Flatten", [h], axis=1)
    h = g.node("Gemm", [h, g.weight("8.weight", [100, 16]), g.weight("8.bias", [100], 0.1)], transB=1)
    h = g.node("Relu", [h])
    h = g.node("Gemm", [h, g.weight("10.weight", [3, 100]), g.weight("10.bias", [3], 0.1)], transB=1)
    return g.model([1, 2, 2], h, 3), (5, 1, 2, 2)


def probe_shape(g, out, x_shape, opset=OPSET):
    """The shape onnxruntime gives the value `out` of the graph built so far for inputs x_shape."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x_shape))
    outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    m = helper.make_model(helper.make_graph(g.nodes, "probe", [inp], [outp], g.inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.zeros(x_shape, dtype=np.float32)})[0].shape


def softplus_pads():
    # Softplus, Pad nodes (two written as torch's exporter writes F.pad) folded into a Conv, into a MaxPool
    # (after a ReLU: inputs >= 0) and into an AveragePool with count_include_pad = 0 (its zeros then
    # count in the divisor), asymmetric Conv pads, and Pads that stay steps (before a Tanh, and before
    # a MaxPool of signed values).
    g = Graph(19)
    h = g.node("Conv", ["input", g.weight("c1.weight", [4, 2, 3, 3]), g.weight("c1.bias", [4], 0.2)], name="c1",
               pads=[0, 0, 1, 1])
    h = g.node("Softplus", [h])
    h = torch_pad(g, h, [1, 1, 1, 1])
    h = g.node("Conv", [h, g.weight("c2.weight", [6, 4, 3, 3]), g.weight("c2.bias", [6], 0.2)], name="c2")
    h = g.node("Relu", [h])
    h = g.node("Pad", [h, g.const("p2", np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64))])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0])
    h = g.node("Pad", [h, g.const("p3", np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64)),
                       g.const("pad_zero", np.array(0, dtype=np.float32))])
    h = g.node("Tanh", [g.node("Sub", [h, g.const("shift", np.array(0.6, dtype=np.float32))])])
    # Signed inputs: zeros are not −∞ padding, so this Pad must stay a step in front of the MaxPool.
    h = g.node("Pad", [h, g.const("p_signed", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))])
    h = g.node("MaxPool", [h], kernel_shape=[3, 3], strides=[1, 1])
    h = torch_pad(g, h, [0, 1, 1, 0])  # F.pad's order: left 0, right 1, top 1, bottom 0
    h = g.node("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], count_include_pad=0)
    h = g.node("Flatten", [h], axis=1)
    features = int(np.prod(probe_shape(g, h, (1, 2, 9, 9))[1:]))
    h = g.node("Gemm", [h, g.weight("fc.weight", [5, features]), g.weight("fc.bias", [5], 0.2)], name="fc", transB=1)
    return g.model([2, 9, 9], h, 5), (4, 2, 9, 9)


def ceil_pools():
    # ceil_mode = 1 max and average pooling (a last window overhanging the padded input), average
    # pooling with count_include_pad 0 and 1 and padding, a MaxPool with asymmetric pads over signed
    # inputs (a −∞ Pad step) and an opset-18 Pad with an axes input that cannot fold (ceil_mode).
    g = Graph(20)
    h = g.node("Conv", ["input", g.weight("c1.weight", [4, 3, 3, 3]), g.weight("c1.bias", [4], 0.2)], name="c1",
               pads=[1, 1, 1, 1])
    h = g.node("Tanh", [h])
    h = g.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    h = g.node("Pad", [h, g.const("p1", np.array([1, 0, 0, 1], dtype=np.int64)),
                       g.const("p1_value", np.array(0, dtype=np.float32)), g.const("p1_axes", np.array([2, -1], dtype=np.int64))])
    h = g.node("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
               count_include_pad=1)
    h = g.node("AveragePool", [h], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)
    h = g.node("AveragePool", [h], kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1)
    h = g.node("Flatten", [h], axis=1)
    features = int(np.prod(probe_shape(g, h, (1, 3, 12, 11), opset=18)[1:]))
    h = g.node("Gemm", [h, g.weight("fc.weight", [3, features]), g.weight("fc.bias", [3], 0.2)], name="fc", transB=1)
    return g.model([3, 12, 11], h, 3, opset=18), (3, 3, 12, 11)


def dilated():
    # Dilated convolutions: a "same"-padded d = 2 layer, a strided d = 3 layer with asymmetric pads,
    # and a grouped d = 2 layer (a dense convolution with fixed weights).
    g = Graph(24)
    h = g.node("Conv", ["input", g.weight("c1.weight", [4, 2, 3, 3]), g.weight("c1.bias", [4], 0.2)], name="c1",
               pads=[2, 2, 2, 2], dilations=[2, 2])
    h = g.node("Relu", [h])
    h = g.node("Conv", [h, g.weight("c2.weight", [6, 4, 3, 3]), g.weight("c2.bias", [6], 0.2)], name="c2",
               pads=[1, 0, 2, 1], strides=[2, 2], dilations=[3, 3])
    h = g.node("Tanh", [h])
    h = g.node("Conv", [h, g.weight("c3.weight", [4, 3, 2, 2])], name="c3", group=2, dilations=[2, 2])
    h = g.node("Flatten", [h], axis=1)
    features = int(np.prod(probe_shape(g, h, (1, 2, 11, 10))[1:]))
    h = g.node("Gemm", [h, g.weight("fc.weight", [4, features]), g.weight("fc.bias", [4], 0.2)], name="fc", transB=1)
    return g.model([2, 11, 10], h, 4), (3, 2, 11, 10)


def digits_cnn():
    # The bundled digits' shape (1x8x8, 10 classes), so that the command-line tests run on it.
    g = Graph(6)
    h = g.node("Conv", ["input", g.weight("conv1.weight", [4, 1, 3, 3]), g.weight("conv1.bias", [4], 0.2)],
               name="conv1", pads=[1, 1, 1, 1])
    h = g.node("Relu", [h])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Flatten", [h], axis=1)
    h = g.node("Gemm", [h, g.weight("fc.weight", [10, 64]), g.weight("fc.bias", [10], 0.2)], name="fc", transB=1)
    return g.model([1, 8, 8], h, 10), (3, 1, 8, 8)


def digits_bn():
    # The digits' shape with the layouts the ONNX export must write back (tests/test_onnx_train.cpp):
    # a convolution without a bias followed by a BatchNorm (folded into it: the export adds a
    # bias), and a MatMul with a bias Add (folded: the export writes a Gemm with C).
    g = Graph(19)
    h = g.node("Conv", ["input", g.weight("conv1.weight", [4, 1, 3, 3])], name="conv1", pads=[1, 1, 1, 1])
    h = g.node("Relu", [g.bn(h, 4, "bn1")])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Flatten", [h], axis=1)
    h = g.node("MatMul", [h, g.weight("fc.weight_t", [64, 10])], name="fc")
    h = g.node("Add", [h, g.weight("fc.bias", [10], 0.2)])
    return g.model([1, 8, 8], h, 10), (3, 1, 8, 8)


def tied_mlp():
    # One weight read by two Gemm nodes (tied layers): aegis trains them as two layers, and the
    # export writes each its own initializer under its layer's name.
    g = Graph(21)
    w = g.weight("shared.weight", [8, 8])
    h = g.node("Relu", [g.node("Gemm", ["input", w, g.weight("b1", [8], 0.2)], name="first", transB=1)])
    h = g.node("Relu", [g.node("Gemm", [h, w, g.weight("b2", [8], 0.2)], name="second", transB=1)])
    h = g.node("Gemm", [h, g.weight("fc.weight", [3, 8]), g.weight("fc.bias", [3], 0.2)], name="fc", transB=1)
    return g.model([8], h, 3), (4, 8)


def bad_models():
    """Well-formed models that the importer must refuse, each with the error it must name."""
    out = {}
    g = Graph(7)
    h = g.node("Erf", ["input"], name="my_erf")
    out["unsupported_op"] = g.model([4], h, 4)
    g = Graph(8)
    a = g.node("Relu", ["input"])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in (a, "input")]
    m = helper.make_model(helper.make_graph(g.nodes, "two", [inp], outs), opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    out["two_outputs"] = m
    g = Graph(9)
    h = g.node("Pad", ["input", g.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))], name="mirror",
               mode="reflect")
    out["reflect_pad"] = g.model([2, 3, 3], g.node("Flatten", [h]), 50)
    g = Graph(21)
    h = g.node("Pad", ["input", g.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)),
                       g.const("value", np.array(1.5, dtype=np.float32))], name="ones")
    out["pad_value"] = g.model([2, 3, 3], g.node("Flatten", [h]), 50)
    # Malformed pad arithmetic: a Slice step of 0, and a ConstantOfShape of 2^30 values.
    g = Graph(25)
    pads = g.node("Slice", [g.const("d", np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64)),
                            g.const("s", np.array([0], dtype=np.int64)), g.const("e", np.array([8], dtype=np.int64)),
                            g.const("a", np.array([0], dtype=np.int64)), g.const("st", np.array([0], dtype=np.int64))],
                  name="step0")
    out["slice_step0"] = g.model([2, 3, 3], g.node("Flatten", [g.node("Pad", ["input", pads])]), 32)
    g = Graph(26)
    pads = g.node("ConstantOfShape", [g.const("huge", np.array([1 << 30], dtype=np.int64))], name="huge")
    out["constant_too_large"] = g.model([2, 3, 3], g.node("Flatten", [g.node("Pad", ["input", pads])]), 18)
    g = Graph(22)
    h = g.node("MaxPool", ["input"], name="ceil_asym", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
               ceil_mode=1)
    out["ceil_asymmetric"] = g.model([1, 6, 6], g.node("Flatten", [h]), 9)
    g = Graph(23)
    h = g.node("AveragePool", ["input"], name="avg_asym", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    out["exclude_pad_asymmetric"] = g.model([1, 6, 6], g.node("Flatten", [h]), 9)
    g = Graph(10)
    h = g.node("Flatten", [g.node("Relu", ["input"])])
    m = g.model([1, 4, 4], h, 16)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    out["dynamic_height"] = m
    g = Graph(11)
    h = g.node("Relu", ["input"])
    m = g.model([4], h, 4)
    m.opset_import[0].version = 9
    out["old_opset"] = m
    g = Graph(12)
    h = g.node("MaxPool", ["input"], name="dilated", kernel_shape=[2, 2], dilations=[2, 2])
    out["dilated_pool"] = g.model([1, 7, 7], g.node("Flatten", [h]), 25)
    g = Graph(14)
    h = g.node("Relu", ["input"])
    inp = helper.make_tensor_value_info("input", TensorProto.INT64, ["N", 4])
    outp = helper.make_tensor_value_info(h, TensorProto.INT64, ["N", 4])
    m = helper.make_model(helper.make_graph(g.nodes, "ints", [inp], [outp]), opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    out["int_input"] = m
    g = Graph(15)
    out["rank3_input"] = g.model([4, 4], g.node("Relu", ["input"]), 4)
    # A reshape target computed from the batch size (2N rows): not resolvable at load.
    g = Graph(16)
    shape = g.node("Shape", ["input"])
    batch = g.node("Gather", [shape, g.const("i0", np.array([0], dtype=np.int64))], axis=0)
    rows = g.node("Mul", [batch, g.const("two", np.array([2], dtype=np.int64))])
    target = g.node("Concat", [rows, g.const("m1", np.array([-1], dtype=np.int64))], axis=0)
    out["batch_arithmetic"] = g.model([8], g.node("Reshape", ["input", target], name="reshape_2n"), 4)
    # allowzero = 1 with a 0 in the target: an empty dimension, not a copy of the input's.
    g = Graph(20)
    out["allowzero_zero"] = g.model([8], g.node("Reshape", ["input", g.const("t", np.array([0, -1], dtype=np.int64))],
                                                 name="reshape_zero", allowzero=1), 8)
    # A BatchNorm in training mode (batch statistics): it mixes the examples of a batch.
    g = Graph(22)
    h = g.node("Conv", ["input", g.weight("c.weight", [2, 1, 3, 3])], name="c")
    h = g.node("BatchNormalization", [h, g.const("s", np.ones(2, np.float32)), g.const("b", np.zeros(2, np.float32)),
                                      g.const("m", np.zeros(2, np.float32)), g.const("v", np.ones(2, np.float32))],
               name="bn_train", training_mode=1)
    out["bn_training_mode"] = g.model([1, 5, 5], g.node("Flatten", [h]), 18)
    return out


FIXTURES = {"mlp": mlp, "digits_cnn": digits_cnn, "digits_bn": digits_bn, "lenet": lenet, "resnet_bn": resnet_bn,
            "normalized_cnn": normalized_cnn, "pool_concat": pool_concat, "depthwise": depthwise,
            "softplus_pads": softplus_pads, "ceil_pools": ceil_pools, "dilated": dilated,
            "zoo_mlp": zoo_mlp, "zoo_cnn_res": zoo_cnn_res, "tied_mlp": tied_mlp}
EXTERNAL_DATA = {"resnet_bn"}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    for name, build in FIXTURES.items():
        model, x_shape = build()
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "model.onnx")
        if name in EXTERNAL_DATA:
            data = os.path.join(folder, "model.onnx.data")
            if os.path.exists(data):
                os.remove(data)  # onnx appends to an existing external data file
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="model.onnx.data", size_threshold=0)
        else:
            onnx.save_model(model, path)
        x = np.random.default_rng(100 + len(name)).uniform(0, 1, size=x_shape).astype(np.float32)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y = session.run(None, {"input": x})[0].astype(np.float32)
        x.tofile(os.path.join(folder, "input.bin"))
        y.tofile(os.path.join(folder, "output.bin"))
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump({"input_shape": list(x.shape), "output_shape": list(y.shape),
                       "onnxruntime": ort.__version__, "onnx": onnx.__version__}, f)
        print(f"{name}: {list(x.shape)} -> {list(y.shape)}")
    os.makedirs(os.path.join(root, "bad"), exist_ok=True)
    for name, model in bad_models().items():
        onnx.save_model(model, os.path.join(root, "bad", name + ".onnx"))


if __name__ == "__main__":
    main()
