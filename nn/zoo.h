// The model zoo: architectures the CLI builds by name. Parameter names follow the PyTorch
// state_dict of the same architecture written as nn.Sequential (or, for resnet20, the usual
// CIFAR ResNet module names), so weights exchange with PyTorch without conversion.
//
//   mlp          Flatten, Linear(C·H·W, 256), ReLU, Linear(256, K)
//   cnn-fmnist   Papernot, Thakurta, Song, Chien, Erlingsson 2021 ("Tempered Sigmoid Activations
//                for Deep Learning with Differential Privacy"), Fashion-MNIST/MNIST model:
//                Conv 16@8x8 s2 p2, act, MaxPool 2 s1, Conv 32@4x4 s2, act, MaxPool 2 s1,
//                Flatten, Linear(·, 32), act, Linear(32, K); activation tanh by default.
//   lenet-2conv  the two-convolution baseline of PixelDP's MNIST experiments (Lecuyer et al.
//                2019): Conv 32@5x5 p2, ReLU, MaxPool 2, Conv 64@5x5 p2, ReLU, MaxPool 2,
//                Flatten, Linear(·, 1024), ReLU, Linear(1024, K).
//   resnet20     He et al. 2016 CIFAR ResNet-20 (3 stages × 3 basic blocks, 16/32/64 channels)
//                with GroupNorm(min(16, C), C) in place of BatchNorm so that per-example
//                gradients exist (DP-SGD cannot use batch statistics); 1x1-conv shortcuts
//                where the shape changes; global average pooling; Linear(64, K).
//   cnn-res      a small residual CNN built only from layers bound propagation handles
//                (certify/bounds.h): Conv 16@3x3 p1, act, Residual(Conv 16@3x3 p1, act,
//                Conv 16@3x3 p1), act, AvgPool 2, the same residual block, act, Flatten,
//                Linear(·, 100), act, Linear(100, K). Residual blocks are nn/residual.h
//                ("2.body.0.weight", …).
//   scatter-linear  Tramèr & Boneh 2021 ("Differentially Private Learning Needs Better Features
//                (or Much More Data)"), ScatterNet + linear: the scattering transform of each
//                channel (J = 2, L = 8; nn::Scattering2d, Kymatio's Scattering2D), GroupNorm(27,
//                81·C) without affine parameters, Flatten, Linear(81·C·H'·W', K) — only the last
//                layer learns (H' = 7 for 28 × 28 inputs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace aegis::nn {

struct ModelSpec {
  std::string name;                 // one of model_names()
  Shape input_shape;                // {C, H, W} of one example
  std::int64_t num_classes = 10;
  std::string activation = "";      // "" = the architecture's default
  std::uint64_t seed = 0;           // initialization seed
};

const std::vector<std::string>& model_names();
std::string default_activation(const std::string& model_name);
// Builds the model on the CPU. Unknown names and inputs too small for the architecture give
// InvalidArgument naming the problem.
std::shared_ptr<Module> build_model(const ModelSpec& spec);

}  // namespace aegis::nn
