// Residual: y = x + body(x) (He et al. 2016, identity shortcut), with `body` a Sequential whose
// output has the input's shape. Parameters are named "body.<i>.<name>", so a Residual at
// position 1 of a Sequential holds "1.body.0.weight" — the state_dict names of the PyTorch module
//   class Residual(nn.Module):
//       def __init__(self, body): super().__init__(); self.body = body
//       def forward(self, x): return x + self.body(x)
// Shortcuts that change the shape (strided or 1×1-conv shortcuts) are not this module: a model
// needing them is written as its own Module.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace aegis::nn {

class Residual : public Module {
 public:
  explicit Residual(std::shared_ptr<Sequential> body) {
    AEGIS_CHECK(body != nullptr, "Residual given a null body");
    m_body = register_module("body", std::move(body));
  }
  explicit Residual(std::vector<ModulePtr> layers) : Residual(std::make_shared<Sequential>(std::move(layers))) {}

  Var forward(const Var& x) override { return F::add(x, m_body->forward(x)); }
  std::string kind() const override { return "Residual"; }
  Sequential& body() const { return *m_body; }

 private:
  std::shared_ptr<Sequential> m_body;
};

}  // namespace aegis::nn
