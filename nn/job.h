// What the library's jobs share (a model file and a dataset in, a report out: nn/train_job.h,
// certify/pixeldp_job.h, ...): the checks and selections of their inputs.
#pragma once

#include <cstdint>
#include <string>

#include "nn/data/dataset.h"
#include "nn/zoo.h"

namespace aegis::nn {

// InvalidArgument naming both when the model (`spec`, read from `model_file`) does not take the
// dataset's (`data_spec`) input shape or number of classes.
void check_data_fits(const Dataset& data, const ModelSpec& spec, const std::string& model_file,
                     const std::string& data_spec);
// The first `max` examples of `data` (all of them when max is 0 or larger than the set).
Dataset first_examples(const Dataset& data, std::int64_t max);

}  // namespace aegis::nn
