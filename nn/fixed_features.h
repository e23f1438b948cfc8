// Training on top of a fixed front end (Tramèr & Boneh 2021 train their ScatterNet models this
// way): the leading layers of a Sequential that are fixed features (Module::fixed_feature(): no
// parameters, no randomness, the same in training and evaluation) give every example the same
// output in every epoch, so a trainer computes them once for the whole training set and trains
// the rest of the model on those outputs. The result is the same model as training end to end,
// in a fraction of the time when the front end dominates the cost.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/data/dataset.h"
#include "nn/module.h"

namespace aegis::nn {

struct FixedSplit {
  std::vector<ModulePtr> prefix;  // the fixed layers, in order
  ModulePtr rest;                 // the other layers, sharing the model's parameters and names
};

// The split of a Sequential whose first children are fixed features, with at least one layer
// after them; for any other model an empty prefix (and no rest): nothing to compute once.
FixedSplit split_fixed_prefix(Module& model);

// `data` with each image replaced by the prefix's output (in chunks of `chunk` images, without a
// tape, on `device`; the result lives on the CPU like any Dataset). The labels are shared.
Dataset fixed_features(const std::vector<ModulePtr>& prefix, const Dataset& data, Device device,
                       std::int64_t chunk = 512);

}  // namespace aegis::nn
