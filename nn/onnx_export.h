// ONNX export of an imported model after training (`aegis train --init net.onnx --out tuned.onnx`):
// the source file's graph, unchanged but for the trained parameters. Every Conv, Gemm and MatMul
// that became a Conv2d or Linear (nn/graph_module.h, OnnxOrigin) gets new initializers holding
// its weights in the node's own layout (Gemm with transB = 1 keeps [out, in]; MatMul and Gemm with
// transB = 0 take [in, out]; Gemm's alpha and beta become 1, being in the weights now). Where the
// import folded a BatchNormalization or a constant Add/Sub into the layer, the folded weights and
// bias are the layer's (a Conv or Gemm without a bias gets one, a MatMul becomes a Gemm with the
// bias as C) and the absorbed node becomes an Identity, so the file computes the function the
// GraphModule computes. Initializers no node reads any more are dropped; external data is copied
// into the file. Everything else — fixed affine steps, grouped convolutions, the final Softmax,
// node names — is the source's. The model's metadata_props keep the source's entries except its
// "aegis.*" ones, which `metadata` replaces (the privacy ledger after DP-SGD, the dataset, ...).
// The file is written atomically (core/atomic_file.h) and reads back (nn/onnx_import.h) into a
// GraphModule with the same parameter names and values.
//
// Errors: Unsupported in a build without ONNX support; InvalidArgument for a model that was not
// read from an ONNX file; IoError when the source file cannot be read or no longer matches the
// model (changed since it was loaded), or the target cannot be written.
#pragma once

#include <map>
#include <string>

#include "nn/graph_module.h"

namespace aegis::nn {

void save_onnx(const GraphModule& model, const std::string& path,
               const std::map<std::string, std::string>& metadata = {});

}  // namespace aegis::nn
