// Per-example attack results as a TSV file: one row per input with its index, label, the clean
// and the adversarial prediction, the attack that broke it, and the norm of its perturbation.
// `broken_by` is the name of the first attack whose point is misclassified, "clean" when the
// clean input already is, and "-" when no attack broke it. Written atomically (core/atomic_file.h):
// a reader sees the old file or the complete new one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/norm.h"
#include "runtime/tensor.h"

namespace aegis::attacks {

struct PerExampleRow {
  std::int64_t index = 0;
  std::int32_t label = 0;
  std::int32_t clean_prediction = 0;
  std::int32_t adversarial_prediction = 0;
  std::string broken_by = "-";
  double perturbation_norm = 0.0;  // of the returned point, in the attack's norm
};

// Appends the rows of one batch of m examples whose first test index is `first`: adversarial
// points `adv` and clean inputs `x` ([m, d] f32, on one device), with their norm ‖adv − x‖ in
// `norm` computed there, and the labels, predictions and `broken_by` names of the batch.
void append_batch_rows(std::vector<PerExampleRow>& rows, std::int64_t first, Norm norm, const Tensor& adv,
                       const Tensor& x, const std::vector<std::int32_t>& label,
                       const std::vector<std::int32_t>& clean_prediction,
                       const std::vector<std::int32_t>& adversarial_prediction,
                       const std::vector<std::string>& broken_by);

// Header: idx, label, clean_predict, adv_predict, broken_by, perturbation_norm.
void write_per_example_tsv(const std::string& path, const std::vector<PerExampleRow>& rows);

}  // namespace aegis::attacks
