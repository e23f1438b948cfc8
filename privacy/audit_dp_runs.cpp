// The run records of the resumable many-run audit (privacy/audit_canary.h): one small JSON file
// per run, written atomically, with the score in hexadecimal so that it reads back bit for bit.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "privacy/audit_canary.h"

namespace aegis::privacy::audit_detail {

namespace {

constexpr const char* kFormat = "aegis audit dp run v1";

std::string exact(double x) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", x);
  return text;
}

double from_exact(const std::string& text, const std::string& path) {
  char* end = nullptr;
  const double x = std::strtod(text.c_str(), &end);
  AEGIS_CHECK_AS(IoError, end != text.c_str() && *end == '\0', path << ": score " << text << " is not a number");
  return x;
}

DpReport dp_report_from_json(const nlohmann::json& j) {
  DpReport r;
  nn::TrainReport& t = r.training;
  t.model = j.at("model").get<std::string>();
  t.activation = j.at("activation").get<std::string>();
  t.parameters = j.at("parameters").get<std::int64_t>();
  t.dataset = j.at("dataset").get<std::string>();
  t.device = j.at("device").get<std::string>();
  t.epochs = j.at("epochs").get<std::int64_t>();
  t.batch_size = j.at("batch_size").get<std::int64_t>();
  t.optimizer = j.at("optimizer").get<std::string>();
  t.momentum = j.at("momentum").get<float>();
  t.schedule = j.at("schedule").get<std::string>();
  t.lr = j.at("lr").get<float>();
  t.seed = j.at("seed").get<std::uint64_t>();
  t.noise_sigma = j.at("noise_sigma").get<float>();
  t.steps = j.at("steps").get<std::int64_t>();
  t.train_loss = j.at("train_loss").get<double>();
  t.train_accuracy = j.at("train_accuracy").get<double>();
  t.train_seconds = j.at("train_seconds").get<double>();
  t.test_loss = j.at("test_loss").get<double>();
  t.test_accuracy = j.at("test_accuracy").get<double>();
  t.seconds_per_epoch = j.at("seconds_per_epoch").get<double>();
  t.out = j.at("out").get<std::string>();
  r.epsilon = j.at("epsilon").get<double>();
  r.delta = j.at("delta").get<double>();
  r.noise_multiplier = j.at("noise_multiplier").get<double>();
  r.sampling_rate = j.at("sampling_rate").get<double>();
  r.max_grad_norm = j.at("max_grad_norm").get<double>();
  r.accountant = j.at("accountant").get<std::string>();
  r.clipping = j.at("clipping").get<std::string>();
  r.sampling = j.at("sampling").get<std::string>();
  r.total_steps = j.at("total_steps").get<std::int64_t>();
  return r;
}

}  // namespace

void write_run_record(const std::string& path, const RunRecord& r) {
  const nlohmann::json j = {
      {"format", kFormat}, {"settings", r.settings},  {"run", r.run},         {"canary", r.canary},
      {"seed", r.seed},    {"score", exact(r.score)}, {"seconds", r.seconds}, {"training", to_json(r.training)}};
  const std::string text = j.dump(1) + "\n";
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

RunRecord read_run_record(const std::string& path) {
  std::ifstream in(path);
  AEGIS_CHECK_AS(IoError, in.good(), "cannot read the audit run record " << path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    const nlohmann::json j = nlohmann::json::parse(text.str());
    AEGIS_CHECK_AS(IoError, j.value("format", std::string()) == kFormat, path << " is not an audit run record");
    RunRecord r;
    r.settings = j.at("settings").get<std::string>();
    r.run = j.at("run").get<std::int64_t>();
    r.canary = j.at("canary").get<bool>();
    r.seed = j.at("seed").get<std::uint64_t>();
    r.score = from_exact(j.at("score").get<std::string>(), path);
    r.seconds = j.at("seconds").get<double>();
    r.training = dp_report_from_json(j.at("training"));
    return r;
  } catch (const nlohmann::json::exception& e) {
    AEGIS_THROW(IoError, path << " is not a readable audit run record: " << e.what());
  }
}

}  // namespace aegis::privacy::audit_detail
