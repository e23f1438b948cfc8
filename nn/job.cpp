#include "nn/job.h"

#include "core/error.h"

namespace aegis::nn {

void check_data_fits(const Dataset& data, const ModelSpec& spec, const std::string& model_file,
                     const std::string& data_spec) {
  const Shape& s = data.images.shape();
  const Shape example{s[1], s[2], s[3]};
  AEGIS_CHECK(example == spec.input_shape, "model " << model_file << " takes inputs " << shape_str(spec.input_shape)
                                                    << " but dataset '" << data_spec << "' has " << shape_str(example));
  AEGIS_CHECK(data.num_classes == spec.num_classes, "model " << model_file << " has " << spec.num_classes
                                                             << " classes but dataset '" << data_spec << "' has "
                                                             << data.num_classes);
}

Dataset first_examples(const Dataset& data, std::int64_t max) {
  return max > 0 && max < data.size() ? take(data, 0, max) : data;
}

}  // namespace aegis::nn
