// Model inversion: what does a classifier reveal about the typical member of each class? MI-Face
// of Fredrikson, Jha & Ristenpart 2015 ("Model inversion attacks that exploit confidence
// information and basic countermeasures", CCS, §5.2, Algorithm 1): gradient descent on the input
// of the cost
//   c(x) = 1 − softmax_y(f(x)) + λ_TV·TV(x),
// from a zero (or seeded random, or mid-grey) image, each step projected back to [0, 1]:
//   x_i = Π_[0,1](x_{i−1} − η·∇c(x_{i−1})).
// The paper's Process step is here the projection plus the total-variation prior (Rudin, Osher &
// Fatemi 1992), the smoothness term that later inversions used in place of its denoising filter:
//   TV(x) = (1/(C·H·W)) Σ_{c,i,j} sqrt((x_{c,i+1,j} − x_{c,i,j})² + (x_{c,i,j+1} − x_{c,i,j})² + ε²) − ε,
// with ε = 1e-3 (the Charbonnier smoothing that makes it differentiable at 0; the last row and
// column take zero differences). Stopping rules of Algorithm 1: after `steps` iterations, when the
// cost has not improved on its best for `patience` (β) iterations, or when it is ≤ `min_cost` (γ);
// the result is the iterate of least cost. ∇(1 − p_y) comes from the ordinary backward pass of
// the cross-entropy ℓ = −ln p_y through the model (autograd, input gradient only):
// ∇(1 − p_y) = p_y·∇ℓ.
//
// The reconstructions are compared with the class means of the training data, the picture a
// model that generalizes well is expected to hold of a class:
//   pearson  the Pearson correlation over all pixels of reconstruction and its class mean;
//   mse      the mean squared pixel difference (pixels in [0, 1]);
//   nearest  the class whose mean the reconstruction correlates best with; "identified" when it
//            is the inverted class (the identification rate is Fredrikson et al.'s measure of
//            success, with class means standing in for their human judges).
// With `plot_out` set, a PNG/SVG/PDF grid is drawn: the reconstructions in the top row, the class
// means below (gnuplot, core/gnuplot.h). Reproducible from the seed (only the random start draws).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/progress.h"
#include "nn/data/dataset.h"
#include "nn/module.h"

namespace aegis::privacy {

enum class InversionStart { Zero, Grey, Random };
const char* inversion_start_name(InversionStart start);
// "zero", "grey", "random"; InvalidArgument naming the others otherwise.
InversionStart parse_inversion_start(const std::string& name);

struct InversionOptions {
  std::vector<std::int64_t> classes;  // the classes to invert; empty = all of them
  std::int64_t steps = 1000;          // α: the most gradient steps
  double lr = 0.1;                    // η: the step size
  double tv = 0.0;                    // λ_TV: the weight of the total-variation prior
  std::int64_t patience = 100;        // β: stop after this many steps without a better cost
  double min_cost = 0.0;              // γ: stop once the cost is at most this
  InversionStart start = InversionStart::Zero;
  std::uint64_t seed = 0;   // the random start
  bool keep_costs = false;  // record the cost after every step (InvertedClass::costs)
};

struct InvertedClass {
  std::int64_t label = 0;
  std::vector<float> image;   // C·H·W in [0, 1]: the iterate of least cost
  double cost = 0.0;          // its cost c(x)
  double confidence = 0.0;    // its softmax_y
  double tv = 0.0;            // its TV(x)
  std::int64_t steps = 0;     // steps taken before a stopping rule
  std::string stopped;        // "steps", "patience" or "min-cost"
  std::vector<double> costs;  // c after each step (with keep_costs); costs[0] is the start's
  // Against the training data's class means:
  double pearson = 0.0, mse = 0.0;  // with the mean of `label`
  std::int64_t nearest = -1;        // the class mean of highest Pearson correlation
};

struct InversionReport {
  std::string model, dataset;
  std::vector<std::int64_t> input_shape;  // C, H, W
  InversionOptions options;
  std::vector<InvertedClass> classes;
  double mean_pearson = 0.0, mean_mse = 0.0, mean_confidence = 0.0;
  double identification_rate = 0.0;  // fraction of classes whose nearest class mean is their own
  double seconds = 0.0;
  std::string plot_out;
};
nlohmann::json to_json(const InversionReport& report);

// Pearson correlation of two equally long vectors (0 when either is constant) and their mean
// squared difference; InvalidArgument for different or zero lengths.
double pearson_correlation(const std::vector<float>& a, const std::vector<float>& b);
double mean_squared_error(const std::vector<float>& a, const std::vector<float>& b);
// TV(x) of the header comment for one C×H×W image, and its gradient added into `grad` (scaled by
// `weight`) when grad is non-null.
double total_variation(const std::vector<float>& x, std::int64_t channels, std::int64_t height, std::int64_t width,
                       std::vector<float>* grad = nullptr, double weight = 1.0);

// Inverts the requested classes of `model` (inputs C×H×W, `num_classes` outputs) on `device`.
// The model runs in evaluation mode and its parameters get no gradients (both restored after). InvalidArgument for an
// input shape that is not C×H×W, steps or patience < 1, lr ≤ 0 or not finite, tv < 0, min_cost
// outside [0, 1), a class outside [0, num_classes) or named twice.
std::vector<InvertedClass> invert_classes(nn::Module& model, const std::vector<std::int64_t>& input_shape,
                                          std::int64_t num_classes, Device device, const InversionOptions& options,
                                          ProgressSink* progress = nullptr);

// The per-class mean images of a dataset (num_classes × C·H·W; a class without examples stays 0).
std::vector<std::vector<float>> class_means(const nn::Dataset& data, std::int64_t num_classes);

struct InversionJob {
  std::string model_path;  // any classifier file aegis loads (zoo safetensors, ONNX) with image inputs
  std::string dataset;     // its label in the report
  InversionOptions options;
  std::string plot_out;  // .png, .svg or .pdf; "" = no plot
  Device device = Device::cpu();
};
// Loads the model, inverts, compares with the class means of `train` (whose images must have the
// model's input shape, and labels its classes) and draws the grid. InvalidArgument for a model
// whose input is not an image, or data of another shape; IoError as load_classifier and the plot.
InversionReport run_inversion(const InversionJob& job, const nn::Dataset& train, ProgressSink* progress = nullptr);

// The grid of the header comment (reconstructions over class means, each column titled by its
// class and Pearson correlation); IoError as draw_with_gnuplot.
void plot_inversion(const InversionReport& report, const std::vector<std::vector<float>>& means,
                    const std::string& path);

}  // namespace aegis::privacy
