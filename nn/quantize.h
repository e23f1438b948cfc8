// Input quantization as a preprocessing defense, and BPDA to attack through it.
// BitDepthReduction (Xu, Evans, Qi 2018, "Feature Squeezing", §3.1) maps x ∈ [0, 1] to
//   y = round(x·(2^b − 1)) / (2^b − 1),
// a step function: its true derivative is 0 almost everywhere, so a gradient attack through it
// sees no signal (gradient masking; Athalye, Carlini, Wagner 2018 list it among the broken
// defenses). In straight-through mode the backward pass is instead the identity — BPDA with
// g(x) = x, the differentiable approximation y ≈ x (Athalye et al. 2018, §4.1) — while the
// forward pass stays the quantization. Shapes [N, ...], any device (the rounding is elementwise
// on the host: the layer sits at the input, once per forward).
#pragma once

#include <memory>
#include <vector>

#include "nn/module.h"

namespace aegis::nn {

// A layer whose forward pass is not usefully differentiable and that offers a BPDA backward.
class NonDifferentiable : public Module {
 public:
  void set_straight_through(bool on) { m_straight_through = on; }
  bool straight_through() const { return m_straight_through; }

 private:
  bool m_straight_through = false;
};

class BitDepthReduction : public NonDifferentiable {
 public:
  explicit BitDepthReduction(int bits);  // 1 ≤ bits ≤ 16
  Var forward(const Var& x) override;
  std::string kind() const override { return "BitDepthReduction"; }
  std::string describe() const override;
  int bits() const { return m_bits; }

 private:
  int m_bits;
};

// `model` behind a bit-depth reduction of its input: Sequential{BitDepthReduction(bits), model}.
std::shared_ptr<Module> with_input_quantization(std::shared_ptr<Module> model, int bits);

// Switches every NonDifferentiable layer of `model` (at any depth) to straight-through (BPDA)
// backward for the scope's lifetime when `enable`; restores each layer's mode afterwards.
class BpdaScope {
 public:
  BpdaScope(Module& model, bool enable);
  ~BpdaScope();
  BpdaScope(const BpdaScope&) = delete;
  BpdaScope& operator=(const BpdaScope&) = delete;

 private:
  std::vector<std::pair<NonDifferentiable*, bool>> m_saved;
};

}  // namespace aegis::nn
