// Answering a VNN-LIB property (certify/vnnlib.h) on a model, as the VNN-COMP asks:
//   unsat    the counterexample region is empty: for every disjunct some output constraint
//            c·Y + d ≤ 0 is violated everywhere on its input box, because the lower bound of c·Y
//            over the box (certify::spec_lower_bounds: IBP, then CROWN) plus d is > 0 (≥ 0 for a
//            strict constraint), or the sum of the disjunct's constraints is (the conjunction
//            implies Σ_k c_k·Y + d_k ≤ 0);
//   sat      a counterexample: an input of a disjunct's box whose outputs, from a plain float32
//            forward pass of that input alone, satisfy every constraint of the disjunct exactly
//            (evaluated in double on those outputs). It is searched for at the box centers, then
//            by PGD (Madry et al. 2018) on the box: sign steps of size ∝ the box's width on
//            Σ_k max(0, c_k·Y + d_k), projected onto the box, from the center and random starts;
//   unknown  neither, or the timeout passed (reason "timeout").
// Bounds are float32 without directed rounding (certify/bounds.h): "unsat" is as sound as they are.
//
// Instances file (`aegis verify --instances`): CSV rows "onnx,vnnlib,timeout" (the VNN-COMP
// instances.csv), paths relative to the file's folder; blank lines ignored. A path whose file is
// missing but whose ".gz" exists names the compressed file, as the benchmarks ship them: models
// ending in ".onnx.gz" and gzip-compressed properties are read directly.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "certify/vnnlib.h"
#include "core/device.h"

namespace aegis::certify {

enum class VnnAnswer { Unsat, Sat, Unknown };
const char* vnn_answer_name(VnnAnswer answer) noexcept;  // "unsat" | "sat" | "unknown"

struct VnnOptions {
  double timeout = 0.0;                                                          // seconds, ≥ 0; 0: none
  std::vector<BoundMethod> methods{BoundMethod::Interval, BoundMethod::Linear};  // tried in order
  ReluRelaxation relu = ReluRelaxation::Adaptive;
  int attack_steps = 100;   // PGD steps per start, ≥ 1 (0: no search)
  int attack_restarts = 8;  // starts per disjunct: the center and random points, ≥ 1
  std::uint64_t seed = 0;   // random starts
};

struct VnnResult {
  VnnAnswer answer = VnnAnswer::Unknown;
  std::string reason;       // how it was decided ("crown", "pgd", "center") or why not ("timeout")
  std::vector<float> x, y;  // sat: the counterexample's input [num_inputs] and outputs [num_outputs]
  std::int64_t disjuncts = 0, disjuncts_verified = 0;
  double seconds = 0.0;
};

// Answers `property` on `model`, whose one-example input shape is `input_shape` (num_inputs
// elements, X_i the i-th in row-major order) and whose output has num_outputs elements
// (ShapeError otherwise), on the device of the model's parameters.
VnnResult verify_vnnlib(nn::Module& model, const Shape& input_shape, const VnnProperty& property,
                        const VnnOptions& options);

// The VNN-COMP result text: the answer on one line and, for sat, the assignment
// "((X_0 v)\n (X_1 v)\n …\n (Y_0 v)\n …)" (values %.9g).
std::string vnn_result_text(const VnnResult& result);

// One property file on one model file: loads both (nn::load_classifier, load_vnnlib), checks
// that bound propagation supports the model, runs verify_vnnlib on `device` and, when out_path
// is not empty, writes vnn_result_text there atomically.
struct VnnFileReport {
  std::string model_file, property_file, device;
  VnnOptions options;
  VnnResult result;
  std::string error;  // run_instances: why the instance could not be run ("" when it ran)
};
VnnFileReport verify_vnnlib_file(const std::string& model_file, const std::string& property_file,
                                 const VnnOptions& options, Device device, const std::string& out_path = "");

struct VnnInstance {
  std::string model_file, property_file;  // resolved against the instances file's folder
  double timeout = 0.0;
};
// IoError naming the file and line for a malformed row.
std::vector<VnnInstance> read_instances(const std::string& csv_path);

// Every instance of the file with its own timeout (options.timeout is replaced); on_instance
// after each. An instance that cannot be run (a file that cannot be read, an unsupported model, a
// property that does not fit the model) gets its error message in `error` and answer unknown,
// and the others still run; a malformed instances file throws before any runs.
std::vector<VnnFileReport> run_instances(const std::string& csv_path, const VnnOptions& options, Device device,
                                         const std::function<void(const VnnFileReport&)>& on_instance = {});

nlohmann::json to_json(const VnnFileReport& report);

}  // namespace aegis::certify
