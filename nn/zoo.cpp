#include "nn/zoo.h"

#include <algorithm>

#include "nn/layers.h"
#include "nn/residual.h"

namespace aegis::nn {

namespace {

std::int64_t conv_out(std::int64_t size, std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  return (size + 2 * padding - kernel) / stride + 1;
}

ModulePtr act(ActivationKind kind) {
  return std::make_shared<ActivationLayer>(kind);
}

void check_spatial(const ModelSpec& spec, std::int64_t h, std::int64_t w, const char* where) {
  AEGIS_CHECK(h >= 1 && w >= 1, "model '" << spec.name << "': input " << shape_str(spec.input_shape)
                                          << " is too small (spatial size vanishes " << where << ")");
}

std::shared_ptr<Module> build_mlp(const ModelSpec& s, InitRng& rng) {
  const std::int64_t in = shape_numel(s.input_shape);
  const ActivationKind a = parse_activation(s.activation);
  return std::make_shared<Sequential>(std::vector<ModulePtr>{std::make_shared<Flatten>(),
                                                             std::make_shared<Linear>(in, 256, rng), act(a),
                                                             std::make_shared<Linear>(256, s.num_classes, rng)});
}

std::shared_ptr<Module> build_cnn_fmnist(const ModelSpec& s, InitRng& rng) {
  const std::int64_t c = s.input_shape[0];
  std::int64_t h = s.input_shape[1], w = s.input_shape[2];
  const ActivationKind a = parse_activation(s.activation);
  h = conv_out(h, 8, 2, 2), w = conv_out(w, 8, 2, 2);
  check_spatial(s, h, w, "after the first convolution");
  h = conv_out(h, 2, 1, 0), w = conv_out(w, 2, 1, 0);
  h = conv_out(h, 4, 2, 0), w = conv_out(w, 4, 2, 0);
  check_spatial(s, h, w, "after the second convolution");
  h = conv_out(h, 2, 1, 0), w = conv_out(w, 2, 1, 0);
  check_spatial(s, h, w, "after the second pooling");
  return std::make_shared<Sequential>(std::vector<ModulePtr>{
      std::make_shared<Conv2d>(c, 16, 8, rng, Conv2dOptions{2, 2}), act(a),
      std::make_shared<MaxPool2d>(Pool2dOptions{2, 1, 0}),
      std::make_shared<Conv2d>(16, 32, 4, rng, Conv2dOptions{2, 0}), act(a),
      std::make_shared<MaxPool2d>(Pool2dOptions{2, 1, 0}), std::make_shared<Flatten>(),
      std::make_shared<Linear>(32 * h * w, 32, rng), act(a), std::make_shared<Linear>(32, s.num_classes, rng)});
}

std::shared_ptr<Module> build_lenet(const ModelSpec& s, InitRng& rng) {
  const std::int64_t c = s.input_shape[0];
  std::int64_t h = s.input_shape[1] / 2 / 2, w = s.input_shape[2] / 2 / 2;
  check_spatial(s, h, w, "after two 2x2 poolings");
  const ActivationKind a = parse_activation(s.activation);
  return std::make_shared<Sequential>(std::vector<ModulePtr>{
      std::make_shared<Conv2d>(c, 32, 5, rng, Conv2dOptions{1, 2}), act(a),
      std::make_shared<MaxPool2d>(Pool2dOptions{2, 2, 0}),
      std::make_shared<Conv2d>(32, 64, 5, rng, Conv2dOptions{1, 2}), act(a),
      std::make_shared<MaxPool2d>(Pool2dOptions{2, 2, 0}), std::make_shared<Flatten>(),
      std::make_shared<Linear>(64 * h * w, 1024, rng), act(a), std::make_shared<Linear>(1024, s.num_classes, rng)});
}

// A small residual CNN without normalization or max pooling, so that bound propagation
// (certify/bounds.h) covers every layer: conv 16@3x3 p1, act, two identity-shortcut blocks
// x + conv(act(conv(x))) each followed by act, with a 2x2 average pooling between them, then
// fc 100, act, fc K.
std::shared_ptr<Module> build_cnn_res(const ModelSpec& s, InitRng& rng) {
  const std::int64_t c = s.input_shape[0];
  const std::int64_t h = s.input_shape[1] / 2, w = s.input_shape[2] / 2;
  check_spatial(s, h, w, "after the 2x2 average pooling");
  const ActivationKind a = parse_activation(s.activation);
  const auto block = [&] {
    return std::make_shared<Residual>(
        std::vector<ModulePtr>{std::make_shared<Conv2d>(16, 16, 3, rng, Conv2dOptions{1, 1}), act(a),
                               std::make_shared<Conv2d>(16, 16, 3, rng, Conv2dOptions{1, 1})});
  };
  std::vector<ModulePtr> layers{std::make_shared<Conv2d>(c, 16, 3, rng, Conv2dOptions{1, 1}), act(a)};
  layers.push_back(block());
  layers.push_back(act(a));
  layers.push_back(std::make_shared<AvgPool2d>(Pool2dOptions{2, 2, 0}));
  layers.push_back(block());
  layers.push_back(act(a));
  layers.push_back(std::make_shared<Flatten>());
  layers.push_back(std::make_shared<Linear>(16 * h * w, 100, rng));
  layers.push_back(act(a));
  layers.push_back(std::make_shared<Linear>(100, s.num_classes, rng));
  return std::make_shared<Sequential>(std::move(layers));
}

// Tramèr & Boneh 2021's ScatterNet + linear: the scattering transform (J = 2, L = 8) of each
// channel, GroupNorm(27, 81·C) without affine parameters, a linear classifier on top.
std::shared_ptr<Module> build_scatter_linear(const ModelSpec& s, InitRng& rng) {
  const Shape features = F::scattering2d_shape({1, s.input_shape[0], s.input_shape[1], s.input_shape[2]}, 2, 8);
  return std::make_shared<Sequential>(
      std::vector<ModulePtr>{std::make_shared<Scattering2d>(2, 8),
                             std::make_shared<GroupNorm>(27, features[1], 1e-5f, false), std::make_shared<Flatten>(),
                             std::make_shared<Linear>(features[1] * features[2] * features[3], s.num_classes, rng)});
}

// Basic residual block: conv3x3(s) → GN → act → conv3x3 → GN, plus the shortcut, then act.
class BasicBlock : public Module {
 public:
  BasicBlock(std::int64_t in, std::int64_t out, std::int64_t stride, ActivationKind a, InitRng& rng) : m_act(a) {
    m_conv1 = register_module("conv1", std::make_shared<Conv2d>(in, out, 3, rng, Conv2dOptions{stride, 1}, false));
    m_bn1 = register_module("bn1", std::make_shared<GroupNorm>(std::min<std::int64_t>(16, out), out));
    m_conv2 = register_module("conv2", std::make_shared<Conv2d>(out, out, 3, rng, Conv2dOptions{1, 1}, false));
    m_bn2 = register_module("bn2", std::make_shared<GroupNorm>(std::min<std::int64_t>(16, out), out));
    if (stride != 1 || in != out) {
      auto sc = std::make_shared<Sequential>();
      sc->push_back(std::make_shared<Conv2d>(in, out, 1, rng, Conv2dOptions{stride, 0}, false));
      sc->push_back(std::make_shared<GroupNorm>(std::min<std::int64_t>(16, out), out));
      m_shortcut = register_module("shortcut", sc);
    }
  }
  Var forward(const Var& x) override {
    Var h = activate(m_bn1->forward(m_conv1->forward(x)));
    h = m_bn2->forward(m_conv2->forward(h));
    return activate(F::add(h, m_shortcut ? m_shortcut->forward(x) : x));
  }
  std::string kind() const override { return "BasicBlock"; }

 private:
  Var activate(const Var& x) const {
    return m_act == ActivationKind::ReLU ? F::relu(x) : m_act == ActivationKind::Tanh ? F::tanh(x) : F::sigmoid(x);
  }
  ActivationKind m_act;
  std::shared_ptr<Module> m_conv1, m_bn1, m_conv2, m_bn2, m_shortcut;
};

class ResNet20 : public Module {
 public:
  ResNet20(const ModelSpec& s, InitRng& rng) : m_act(parse_activation(s.activation)) {
    const std::int64_t c = s.input_shape[0];
    m_final = s.input_shape[1] / 4;
    m_final_w = s.input_shape[2] / 4;
    AEGIS_CHECK(m_final >= 1 && m_final_w >= 1,
                "model 'resnet20': input " << shape_str(s.input_shape) << " is too small (needs at least 4x4)");
    m_conv1 = register_module("conv1", std::make_shared<Conv2d>(c, 16, 3, rng, Conv2dOptions{1, 1}, false));
    m_bn1 = register_module("bn1", std::make_shared<GroupNorm>(16, 16));
    std::int64_t in = 16;
    const std::int64_t widths[3] = {16, 32, 64};
    for (int stage = 0; stage < 3; ++stage) {
      auto layer = std::make_shared<Sequential>();
      for (int b = 0; b < 3; ++b) {
        const std::int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
        layer->push_back(std::make_shared<BasicBlock>(in, widths[stage], stride, m_act, rng));
        in = widths[stage];
      }
      m_layers.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    }
    m_linear = register_module("linear", std::make_shared<Linear>(64, s.num_classes, rng));
  }
  Var forward(const Var& x) override {
    Var h = m_bn1->forward(m_conv1->forward(x));
    h = m_act == ActivationKind::ReLU ? F::relu(h) : m_act == ActivationKind::Tanh ? F::tanh(h) : F::sigmoid(h);
    for (auto& layer : m_layers) h = layer->forward(h);
    // Global average pooling over whatever spatial size the input produced.
    const std::int64_t hh = h.value().size(2), ww = h.value().size(3);
    AEGIS_CHECK_AS(ShapeError, hh == ww,
                   "resnet20: global pooling needs a square feature map, got " << h.value().describe());
    h = F::avg_pool2d(h, Pool2dOptions{hh, hh, 0});
    return m_linear->forward(F::flatten(h));
  }
  std::string kind() const override { return "ResNet20"; }

 private:
  ActivationKind m_act;
  std::int64_t m_final, m_final_w;
  std::shared_ptr<Module> m_conv1, m_bn1, m_linear;
  std::vector<std::shared_ptr<Module>> m_layers;
};

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names{"mlp",      "cnn-fmnist", "lenet-2conv",
                                              "resnet20", "cnn-res",    "scatter-linear"};
  return names;
}

std::string default_activation(const std::string& model_name) {
  return model_name == "cnn-fmnist" ? "tanh" : "relu";
}

std::shared_ptr<Module> build_model(const ModelSpec& spec_in) {
  ModelSpec s = spec_in;
  AEGIS_CHECK(
      s.input_shape.size() == 3 && s.input_shape[0] > 0 && s.input_shape[1] > 0 && s.input_shape[2] > 0,
      "model '" << s.name << "': input shape must be {C, H, W} with positive sizes, got " << shape_str(s.input_shape));
  AEGIS_CHECK(s.num_classes >= 2, "model '" << s.name << "': num_classes " << s.num_classes << " must be at least 2");
  if (s.activation.empty()) s.activation = default_activation(s.name);
  InitRng rng(s.seed);
  if (s.name == "mlp") return build_mlp(s, rng);
  if (s.name == "cnn-fmnist") return build_cnn_fmnist(s, rng);
  if (s.name == "lenet-2conv") return build_lenet(s, rng);
  if (s.name == "resnet20") return std::make_shared<ResNet20>(s, rng);
  if (s.name == "cnn-res") return build_cnn_res(s, rng);
  if (s.name == "scatter-linear") return build_scatter_linear(s, rng);
  AEGIS_THROW(InvalidArgument, "unknown model '"
                                   << s.name
                                   << "' (expected mlp, cnn-fmnist, lenet-2conv, resnet20, cnn-res or scatter-linear)");
}

}  // namespace aegis::nn
