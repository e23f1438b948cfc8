#include "runtime/autograd.h"

#include "core/math_precision.h"

#include <unordered_set>

#include "runtime/ops.h"

namespace aegis::autograd {

Var::Var(Tensor value, bool requires_grad) : m_state(std::make_shared<VarState>()) {
  m_state->value = std::move(value);
  m_state->requires_grad = requires_grad;
}

const Tensor& Var::value() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "value() of an undefined Var");
  return m_state->value;
}
Tensor& Var::mutable_value() {
  AEGIS_CHECK_AS(ShapeError, defined(), "mutable_value() of an undefined Var");
  return m_state->value;
}
const Tensor& Var::grad() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "grad() of an undefined Var");
  return m_state->grad;
}
void Var::zero_grad() {
  if (defined()) m_state->grad = Tensor();
}
void Var::set_requires_grad(bool on) {
  AEGIS_CHECK_AS(ShapeError, defined(), "set_requires_grad on an undefined Var");
  m_state->requires_grad = on;
}
const std::shared_ptr<Node>& Var::grad_fn() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "grad_fn() of an undefined Var");
  return m_state->grad_fn;
}

void Var::accumulate_grad(const Tensor& g) const {
  VarState& s = *m_state;
  check_shape(g, s.value.shape(), "gradient");
  if (!s.grad.defined()) {
    s.grad = g.clone();
  } else {
    ops::add_inplace(s.grad, g);
  }
}

void Var::accumulate_grad_owned(Tensor g) const {
  VarState& s = *m_state;
  check_shape(g, s.value.shape(), "gradient");
  if (!s.grad.defined()) {
    s.grad = std::move(g);
  } else {
    ops::add_inplace(s.grad, g);
  }
}

bool any_requires_grad(const std::vector<Var>& inputs) {
  for (const Var& v : inputs)
    if (v.requires_grad()) return true;
  return false;
}

Var make_result(Tensor value, std::vector<Var> inputs, const char* name,
                std::function<void(const Tensor& grad_output)> backward_fn) {
  if (!any_requires_grad(inputs)) return Var(std::move(value), false);
  Var out(std::move(value), true);
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward_fn);
  out.state()->grad_fn = std::move(node);
  return out;
}

void backward(const Var& root, const Tensor& seed) {
  // Gradients are always float32, also when called inside a reduced-precision forward scope.
  MathPrecisionScope fp32(MathPrecision::Fp32);
  AEGIS_CHECK(root.defined(), "backward() from an undefined Var");
  AEGIS_CHECK(root.requires_grad(), "backward() from a Var that does not require a gradient "
                                    "(no input or parameter of the computation requires one)");
  Tensor g0 = seed;
  if (!g0.defined()) {
    AEGIS_CHECK_AS(ShapeError, root.value().numel() == 1,
                   "backward() without a seed needs a one-element root, got " << root.value().describe());
    g0 = Tensor::full(root.shape(), 1.0, root.value().dtype(), root.device());
  }
  // Iterative post-order DFS: `order` ends with the root; every Var appears after its inputs.
  std::vector<Var> order;
  std::unordered_set<const VarState*> seen;
  std::vector<std::pair<Var, std::size_t>> stack;
  stack.emplace_back(root, 0);
  seen.insert(root.state());
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    const auto& fn = v.state()->grad_fn;
    if (fn && next < fn->inputs.size()) {
      const Var child = fn->inputs[next++];
      if (child.requires_grad() && seen.insert(child.state()).second) stack.emplace_back(child, 0);
    } else {
      order.push_back(v);
      stack.pop_back();
    }
  }
  root.accumulate_grad(g0);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VarState* s = it->state();
    if (!s->grad_fn || !s->grad.defined()) continue;
    s->grad_fn->backward(s->grad);
    // Intermediate results do not keep gradients: the memory goes back before the next node.
    s->grad = Tensor();
  }
}

}  // namespace aegis::autograd
