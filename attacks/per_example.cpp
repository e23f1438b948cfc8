// The per-example TSV (attacks/per_example.h).
#include "attacks/per_example.h"

#include <cstdio>
#include <string>

#include "core/atomic_file.h"
#include "core/error.h"
#include "kernels/attack_step.h"
#include "runtime/dispatch.h"

namespace aegis::attacks {

void append_batch_rows(std::vector<PerExampleRow>& rows, std::int64_t first, Norm norm, const Tensor& adv,
                       const Tensor& x, const std::vector<std::int32_t>& label,
                       const std::vector<std::int32_t>& clean_prediction,
                       const std::vector<std::int32_t>& adversarial_prediction,
                       const std::vector<std::string>& broken_by) {
  const std::int64_t m = x.shape()[0];
  if (m == 0) return;
  const std::int64_t d = x.numel() / m;
  AEGIS_CHECK(adv.numel() == x.numel() && label.size() == static_cast<std::size_t>(m) &&
                  clean_prediction.size() == label.size() && adversarial_prediction.size() == label.size() &&
                  broken_by.size() == label.size(),
              "per-example rows: a batch of " << m << " examples with inconsistent sizes");
  const Device device = x.device();
  Tensor norms = Tensor::zeros({m}, DType::F32, device);
  AEGIS_DISPATCH(device, perturbation_norms(norm, adv.data<float>(), x.data<float>(), norms.data<float>(), m, d));
  const std::vector<float> norm_of = norms.to(Device::cpu()).to_vector<float>();
  for (std::int64_t i = 0; i < m; ++i) {
    const auto k = static_cast<std::size_t>(i);
    PerExampleRow row;
    row.index = first + i;
    row.label = label[k];
    row.clean_prediction = clean_prediction[k];
    row.adversarial_prediction = adversarial_prediction[k];
    row.broken_by = broken_by[k];
    row.perturbation_norm = norm_of[k];
    rows.push_back(row);
  }
}

void write_per_example_tsv(const std::string& path, const std::vector<PerExampleRow>& rows) {
  std::string text = "idx\tlabel\tclean_predict\tadv_predict\tbroken_by\tperturbation_norm\n";
  char norm[32];
  for (const PerExampleRow& r : rows) {
    std::snprintf(norm, sizeof norm, "%.9g", r.perturbation_norm);
    text += std::to_string(r.index) + "\t" + std::to_string(r.label) + "\t" + std::to_string(r.clean_prediction) +
            "\t" + std::to_string(r.adversarial_prediction) + "\t" + r.broken_by + "\t" + norm + "\n";
  }
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace aegis::attacks
