// Shared by the benchmark programs: a zoo model on a device with one fixed batch of uniform
// [0,1) inputs and cycling labels, and a device synchronization for honest timings.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/zoo.h"
#include "core/cuda_backend.h"
#include "runtime/ops.h"

namespace aegis::bench {

struct Workload {
  std::shared_ptr<nn::Module> model;
  Tensor x;       // f32 [batch, C, H, W] on the device
  Tensor labels;  // i32 [batch], i % 10
};

// resnet20 takes CIFAR-shaped inputs (3x32x32); every other model Fashion-MNIST's (1x28x28).
inline Workload make_workload(const std::string& model_name, std::int64_t batch, Device device) {
  nn::ModelSpec spec;
  spec.name = model_name;
  spec.input_shape = model_name == "resnet20" ? Shape{3, 32, 32} : Shape{1, 28, 28};
  Workload w;
  w.model = nn::build_model(spec);
  w.model->to(device);
  Shape xs{batch};
  xs.insert(xs.end(), spec.input_shape.begin(), spec.input_shape.end());
  Tensor x = Tensor::empty(xs);
  ops::fill_uniform(x, philox::Key{1, philox::kPurposeGeneric, 0}, 0.0f, 1.0f);
  w.x = x.to(device);
  std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
  for (std::int64_t i = 0; i < batch; ++i) y[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 10);
  w.labels = Tensor::from_vector(y, {batch}, device);
  return w;
}

inline void synchronize(Device device) {
  if (device.is_cuda()) cuda_backend::synchronize();
}

}  // namespace aegis::bench
