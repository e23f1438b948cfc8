// What the membership audit asks of a model (privacy/audit_mia.cpp): its logits on a set of
// examples, the per-example statistics read from them, and the augmented queries of LiRA.
// Internal to the privacy audits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "nn/data/dataset.h"
#include "nn/module.h"

namespace aegis::privacy::audit_detail {

// The examples of `data` at `indices`, in that order.
nn::Dataset subset(const nn::Dataset& data, const std::vector<std::int64_t>& indices, const std::string& name);

// Logits of `model` on every example of `data`, row-major [N, classes], in evaluation mode.
std::vector<float> logits_of(nn::Module& model, const nn::Dataset& data, Device device);

// Per example: φ = z_y − logsumexp_{j≠y} z_j (LiRA's logit-scaled confidence), the cross-entropy
// loss logsumexp_j z_j − z_y (so Pr(y|x) = e^−loss) and whether the argmax is y.
void phi_and_loss(const std::vector<float>& logits, const std::vector<std::int32_t>& labels, std::int64_t classes,
                  std::vector<double>& phi, std::vector<double>& loss, std::vector<bool>& correct);

// The query-time augmentations of LiRA (Carlini et al. 2022, §VI-A "augmentations"): view a is
// the image shifted by the (a mod 9)-th offset of (0,0), (1,0), (−1,0), (0,1), (0,−1), (1,1),
// (−1,−1), (1,−1), (−1,1) pixels (right/down positive; the border pixels repeat into the space a
// shift opens), and mirrored left-right as well when a ≥ 9. View 0 is the image itself. Shifts
// come first because aegis trains without augmentation, so a one-pixel shift stays closer to what
// the models saw than a mirror image (which, for digits, is another glyph).
constexpr std::int64_t kMaxQueries = 18;
nn::Dataset augmented_view(const nn::Dataset& data, std::int64_t view);

}  // namespace aegis::privacy::audit_detail
