// Input canaries for the DP audits (privacy/audit_canary.h): mislabelled held-out examples that
// join the training set as records, scored by the trained model's loss on them (the black-box
// input-space canaries of Jagielski, Ullman & Oprea 2020, §3 "poisoning", and of Steinke, Nasr &
// Jagielski 2023, §7 "black-box").
#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "nn/model_file.h"
#include "privacy/audit_canary.h"
#include "privacy/audit_mia_query.h"

namespace aegis::privacy::audit_detail {

nn::Dataset input_canaries(const nn::DatasetSplit& split, std::int64_t m, std::uint64_t seed) {
  AEGIS_CHECK(m >= 1 && m <= split.test.size(),
              "input canaries come from the test split: " << m << " must lie in [1, " << split.test.size() << "]");
  AEGIS_CHECK(split.test.num_classes >= 2, "input canaries need at least 2 classes to mislabel");
  nn::Dataset d = nn::take(split.test, 0, m);
  std::vector<std::int32_t> labels = d.labels.to_vector<std::int32_t>();
  const philox::Key key{seed, philox::kPurposeAuditSetup, kWrongLabels};
  const auto classes = static_cast<std::uint32_t>(d.num_classes);
  // A wrong label uniform over the other classes: y + 1 + (u mod (C − 1)), modulo C.
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::uint32_t offset = 1 + philox::bits(key, i) % (classes - 1);
    labels[i] = static_cast<std::int32_t>((static_cast<std::uint32_t>(labels[i]) + offset) % classes);
  }
  d.labels = Tensor::from_vector(labels, {m});
  d.name = split.test.name + " input canaries";
  return d;
}

DpReport train_with_input_canaries(const DpJob& training, const nn::DatasetSplit& split, const nn::Dataset& examples,
                                   std::vector<Canary>& canaries, double noise_scale, ProgressSink* progress) {
  AEGIS_CHECK(static_cast<std::int64_t>(canaries.size()) == examples.size(),
              "input canaries: " << canaries.size() << " flags for " << examples.size() << " examples");
  // The training set: every real example, then the included canaries (the sampling draws are
  // keyed by position, so the real examples keep theirs).
  std::vector<std::int64_t> included;
  for (std::size_t i = 0; i < canaries.size(); ++i)
    if (canaries[i].included) included.push_back(static_cast<std::int64_t>(i));
  nn::DatasetSplit with = split;
  if (!included.empty()) {
    const nn::Dataset extra = subset(examples, included, examples.name);
    const Shape& s = split.train.images.shape();
    std::vector<float> images = split.train.images.to_vector<float>();
    std::vector<std::int32_t> labels = split.train.labels.to_vector<std::int32_t>();
    const std::vector<float> extra_images = extra.images.to_vector<float>();
    const std::vector<std::int32_t> extra_labels = extra.labels.to_vector<std::int32_t>();
    images.insert(images.end(), extra_images.begin(), extra_images.end());
    labels.insert(labels.end(), extra_labels.begin(), extra_labels.end());
    const std::int64_t n = split.train.size() + extra.size();
    with.train.images = Tensor::from_vector(images, {n, s[1], s[2], s[3]});
    with.train.labels = Tensor::from_vector(labels, {n});
  }
  DpJob j = training;
  if (noise_scale != 1.0) {
    const double max_grad_norm = training.dp.noise.max_grad_norm;
    j.dp.before_update = [noise_scale, max_grad_norm](DpOptimizer& optimizer, std::int64_t step) {
      if (step == 0) optimizer.set_noise(optimizer.noise_options().noise_multiplier * noise_scale, max_grad_norm);
    };
  }
  const DpReport report = run_dp_training(j, with, progress);

  // The black-box score: −loss of the released model on each canary (with its wrong label).
  const nn::LoadedClassifier model = nn::load_classifier(j.job.out);
  std::vector<double> phi, loss;
  std::vector<bool> correct;
  phi_and_loss(logits_of(*model.model, examples, j.job.train.device), examples.labels.to_vector<std::int32_t>(),
               examples.num_classes, phi, loss, correct);
  for (std::size_t i = 0; i < canaries.size(); ++i) canaries[i].score = -loss[i];
  return report;
}

}  // namespace aegis::privacy::audit_detail
