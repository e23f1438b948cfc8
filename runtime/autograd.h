// The autograd tape: a minimal reverse-mode graph built only for aegis' workloads.
//
// A Var holds a value Tensor, its gradient, whether it requires one, and (when an op made it
// from inputs that require gradients) the Node that made it. A Node keeps its inputs and a
// backward closure; backward(root) orders the graph topologically and runs the closures in
// reverse. Three properties matter here:
//  - no tape at all when nothing requires a gradient (inference, certification): ops then
//    record no Node and keep no saved tensors;
//  - parameters and inputs are excluded independently: an attack sets requires_grad on the
//    input only, and the closures skip every weight-gradient product;
//  - layers with parameters may capture (input activation, output gradient) pairs during
//    backward, which is what per-example gradient norms are computed from.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace aegis::autograd {

struct Node;

struct VarState {
  Tensor value;
  Tensor grad;  // undefined until a backward pass reaches this Var
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves and for results of untracked ops
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);

  bool defined() const { return m_state != nullptr; }
  const Tensor& value() const;
  Tensor& mutable_value();  // for in-place parameter updates and device moves
  const Tensor& grad() const;
  bool has_grad() const { return defined() && m_state->grad.defined(); }
  void zero_grad();  // drops the gradient buffer
  bool requires_grad() const { return defined() && m_state->requires_grad; }
  void set_requires_grad(bool on);
  const std::shared_ptr<Node>& grad_fn() const;
  const Shape& shape() const { return value().shape(); }
  Device device() const { return value().device(); }

  // Adds g to this Var's gradient (allocating it on first use). Used by backward closures.
  void accumulate_grad(const Tensor& g) const;
  // Takes ownership of g as (part of) the gradient without copying when none exists yet.
  void accumulate_grad_owned(Tensor g) const;

  VarState* state() const { return m_state.get(); }

 private:
  std::shared_ptr<VarState> m_state;
};

struct Node {
  const char* name = "";
  std::vector<Var> inputs;
  // Receives the gradient of the loss w.r.t. this node's output and accumulates into inputs.
  std::function<void(const Tensor& grad_output)> backward;
};

// True when any of the inputs requires a gradient: only then does an op record a Node.
bool any_requires_grad(const std::vector<Var>& inputs);

// Wraps an op's result. If any input requires a gradient, records a Node with the backward
// closure and marks the result as requiring a gradient; otherwise returns an untracked Var and
// drops the closure (and everything it captured) immediately.
Var make_result(Tensor value, std::vector<Var> inputs, const char* name,
                std::function<void(const Tensor& grad_output)> backward);

// Runs reverse mode from `root`. With no seed, root must hold one element and the seed is 1.
// Gradients accumulate into every Var that requires one (leaves keep theirs; intermediate
// gradients are released as soon as their node has run).
void backward(const Var& root, const Tensor& seed = Tensor());

}  // namespace aegis::autograd
