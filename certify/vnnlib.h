// VNN-LIB properties (the SMT-LIB subset of the VNN-COMP benchmarks, vnnlib.org): a reader that
// turns a property file into input boxes and linear constraints on the outputs.
//
// A file declares the inputs X_0 … X_{n−1} (the model's input flattened in its element order) and
// the outputs Y_0 … Y_{m−1} with `(declare-const X_0 Real)`, and asserts formulas whose
// conjunction describes a counterexample — the negation of the property that must hold:
//   formula := (and formula…) | (or formula…) | (<= t t) | (>= t t) | (< t t) | (> t t)
//   term    := number | X_i | Y_j | (+ term…) | (- term) | (- term term…) | (* number term…)
// Products must have at most one non-constant factor (linear terms only). Every atom reads either
// only inputs — then it must bound one input, `(<= X_0 0.5)` — or only outputs (linear in them);
// an atom mixing both is refused. The conjunction is expanded into disjunctive normal form: a
// list of disjuncts, each an input box (every X bounded above and below) with a conjunction of
// output constraints, so that both the common form — an input box plus `(or (and …) …)` over
// the outputs — and disjunctions over input boxes are read. Comments start with ';'.
// Malformed text gives IoError "file:line:column: what was expected"; unknown or undeclared
// variables and non-linear terms are named the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aegis::certify {

// coef·Y + constant ≤ 0 (< 0 when strict).
struct OutputConstraint {
  std::vector<double> coef;  // [num_outputs]
  double constant = 0.0;
  bool strict = false;
};

struct VnnDisjunct {
  std::vector<double> lower, upper;           // [num_inputs]: the input box, lower ≤ upper
  std::vector<OutputConstraint> constraints;  // all must hold (none: any input of the box)
};

struct VnnProperty {
  std::int64_t num_inputs = 0, num_outputs = 0;
  std::vector<VnnDisjunct> disjuncts;  // the counterexample region is their union; empty: none
  std::string source;                  // the file name, for messages
};

// Largest number of disjuncts the expansion may produce before the file is refused.
constexpr std::size_t kMaxVnnDisjuncts = 100000;

// Parses `text` (named `source` in messages).
VnnProperty parse_vnnlib(const std::string& text, const std::string& source);
// Reads and parses a file, gunzipped when it is gzip-compressed (.vnnlib.gz); IoError when it
// cannot be read.
VnnProperty load_vnnlib(const std::string& path);

}  // namespace aegis::certify
