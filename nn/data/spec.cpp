// Dataset specs as the command line spells them ("digits", "mnist:DIR", ...) and subsets.
#include <cstdlib>

#include "nn/data/dataset.h"

namespace aegis::nn {
namespace {

const char* const kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";
const char* const kAcceptedSpecs = "digits, fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR";

std::string after_prefix(const std::string& spec, const std::string& prefix) {
  const std::string dir = spec.substr(prefix.size());
  AEGIS_CHECK(!dir.empty(), "dataset spec '" << spec << "' names no directory after '" << prefix
                                             << "'; accepted forms: " << kAcceptedSpecs);
  return dir;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

DatasetSplit load_dataset(const std::string& spec, const std::string& data_dir_hint) {
  if (spec == "digits") return load_digits(find_bundled_data_dir(data_dir_hint));
  if (spec == "fashion-mnist") {
    const char* env = std::getenv("AEGIS_FASHION_MNIST_DIR");
    const bool from_env = env && *env;
    const std::string dir = from_env ? env : kDefaultFashionMnistDir;
    if (!detail::directory_exists(dir)) {
      if (from_env)
        AEGIS_THROW(IoError, dir << ": Fashion-MNIST directory (from AEGIS_FASHION_MNIST_DIR) does not exist");
      AEGIS_THROW(IoError, dir << ": Fashion-MNIST is not installed; run `apt-get install dataset-fashion-mnist`, "
                               << "or set AEGIS_FASHION_MNIST_DIR, or use --dataset fashion-mnist:DIR");
    }
    return load_mnist_dir(dir, "fashion-mnist");
  }
  if (starts_with(spec, "fashion-mnist:")) return load_mnist_dir(after_prefix(spec, "fashion-mnist:"), "fashion-mnist");
  if (starts_with(spec, "mnist:")) return load_mnist_dir(after_prefix(spec, "mnist:"), "mnist");
  if (starts_with(spec, "cifar10:")) return load_cifar10_dir(after_prefix(spec, "cifar10:"));
  AEGIS_THROW(InvalidArgument, "unknown dataset '" << spec << "'; accepted forms: " << kAcceptedSpecs);
}

Dataset take(const Dataset& dataset, std::int64_t begin, std::int64_t count) {
  const std::int64_t n = dataset.size();
  AEGIS_CHECK(begin >= 0 && count >= 0 && begin <= n && count <= n - begin,
              "take(begin=" << begin << ", count=" << count << ") leaves dataset '" << dataset.name << "' of " << n
                            << " examples");
  Dataset out;
  out.name = dataset.name;
  out.num_classes = dataset.num_classes;
  out.images = dataset.images.rows(begin, begin + count).clone();
  out.labels = dataset.labels.rows(begin, begin + count).clone();
  return out;
}

}  // namespace aegis::nn
