// ONNX import: reads a classifier exported to ONNX (torch.onnx.export, or any framework's
// exporter) into a GraphModule (nn/graph_module.h) that every workload runs like a zoo model.
//
// Accepted: IR versions up to 10, default-domain opsets 11–21; initializers inline or as
// external data in files beside the model; constants as initializers or Constant nodes; one
// float input [N, C, H, W] (or [N, D]) whose batch dimension is fixed or symbolic and whose
// other dimensions are fixed; one output [N, K]. The shape arithmetic exporters emit around a
// Reshape (Shape, Gather, Unsqueeze, Concat, ... of constants) is evaluated at load.
// BatchNormalization (inference form) is folded into the convolution or Gemm before it, else it
// becomes a fixed per-channel affine step; a final Softmax/LogSoftmax is skipped, so callers see
// logits. supported_onnx_operators() lists the operators.
//
// Errors: IoError for a file that cannot be read or is not a well-formed ONNX model (truncated,
// not ONNX, inconsistent tensors); Unsupported for a well-formed model that uses an operator,
// attribute value or dynamic shape outside the supported set — each names the node.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "nn/graph_module.h"

namespace aegis::nn {

struct OnnxModel {
  std::shared_ptr<GraphModule> model;
  std::map<std::string, std::string> metadata;  // the model's metadata_props, plus "onnx.*" facts
};

// Whether this build reads ONNX files (libonnx-dev was found when it was configured).
bool onnx_supported();
// True when `path` names an ONNX file by its extension (".onnx", any case).
bool is_onnx_path(const std::string& path);
OnnxModel load_onnx(const std::string& path);
// Reads a model from bytes; `base_dir` is where external data files are looked up ("" refuses
// external data). `name` is used in messages.
OnnxModel load_onnx_bytes(const std::string& bytes, const std::string& name, const std::string& base_dir);
// "Add, AveragePool, BatchNormalization, ..." — the operators load_onnx accepts.
std::string supported_onnx_operators();

}  // namespace aegis::nn
