// Builds a model from the installed headers, runs one training step and checks the loss fell.
#include <cstdio>

#include "nn/optim.h"
#include "nn/zoo.h"
#include "runtime/ops.h"

int main() {
  using namespace aegis;
  nn::ModelSpec spec{"mlp", {1, 4, 4}, 3, "", 7};
  auto model = nn::build_model(spec);
  Tensor x = Tensor::empty({8, 1, 4, 4});
  ops::fill_uniform(x, philox::Key{1, 0, 0}, 0.0f, 1.0f);
  const Tensor y = Tensor::from_vector<std::int32_t>({0, 1, 2, 0, 1, 2, 0, 1}, {8});
  auto opt = nn::make_optimizer(nn::parse_optimizer("sgd"), model->parameters(), 0.1f);
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    opt->zero_grad();
    nn::Var loss = nn::F::cross_entropy(model->forward(nn::Var(x, false)), y);
    if (step == 0) first = loss.value().item();
    last = loss.value().item();
    autograd::backward(loss);
    opt->step();
  }
  std::printf("consumer: loss %.4f -> %.4f\n", first, last);
  return last < first ? 0 : 1;
}
