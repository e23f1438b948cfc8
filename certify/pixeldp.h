// PixelDP (Lecuyer, Atlidakis, Geambasu, Hsu, Jana 2019, "Certified Robustness to Adversarial
// Examples with Differential Privacy", IEEE S&P). A noise layer makes the network's scores a
// randomized function A(x) that is (ε, δ)-differentially private with respect to changes of the
// input of p-norm ≤ L; the expected scores E[A(x)] then cannot move much under such changes.
//
//   Mechanisms (§III-A, from Dwork & Roth 2014, Thm 3.6 and Thm A.1). With Δ the sensitivity of
//   the computation before the noise (the pre-noise layers g):
//     Δ_{p,q} = max_{x ≠ x'} ‖g(x) − g(x')‖_q / ‖x − x'‖_p,
//   L1 attacks: Laplace noise of scale b = Δ_{1,1}·L/ε                  → (ε, 0)-PixelDP;
//   L2 attacks: Gaussian noise σ = sqrt(2·ln(1.25/δ))·Δ_{2,2}·L/ε, ε ≤ 1  → (ε, δ)-PixelDP.
//   For a fixed trained noise scale the same formulas give ε as a function of the attack size:
//     Gaussian ε(L) = sqrt(2·ln(1.25/δ))·Δ·L/σ,   Laplace ε(L) = Δ·L/b.
//   Sensitivity (§III-A, "sensitivity" of the pre-noise layers): a linear layer's Δ is its
//   operator norm (‖W‖_{1,1} = the largest column L1 norm; ‖W‖_{2,2} = the spectral norm);
//   elementwise 1-Lipschitz activations (ReLU, tanh) keep it; sigmoid scales it by ¼; pooling
//   windows that overlap can enlarge it (pooling_lipschitz below); the pre-noise Δ is the product.
//   Training (§III-B) keeps every pre-noise linear layer's norm ≤ 1 by projecting after each
//   optimizer step, so the noise calibrated with the product of the remaining constants holds.
//   Certificates use Δ measured from the weights as they are: exact for L1; for L2 the spectral
//   norm of each conv (as a map on whole images) or linear layer by power iteration run to a
//   relative change of 1e-9. Power iteration approaches the norm from below, so this Δ is an
//   estimate, not a proven upper bound (the paper's Parseval projection, too, keeps the norm near 1
//   only approximately); the tests compare it with the exact norm of explicit dense matrices.
//
//   Robustness condition (§II-C, Lemma 1 "expected output stability" and Proposition 1): if A is
//   (ε, δ)-PixelDP and its scores lie in [0, 1], E[A(x)] ≤ e^ε·E[A(x')] + δ for ‖x − x'‖_p ≤ L, so
//     E[A_k(x)] > e^{2ε}·max_{i≠k} E[A_i(x)] + (1 + e^ε)·δ
//   means that every x' in the ball still predicts k.
//   Certified prediction (§III-C): E[A(x)] is estimated from n noise draws; the condition is
//   checked with a lower bound for k and upper bounds for the others, all holding together with
//   probability ≥ η (Bonferroni over the K classes). Hoeffding (1963, Thm 2) for scores in [0, 1]:
//     Ê ± sqrt(ln(2K/(1 − η)) / (2n))                       (K two-sided intervals at (1 − η)/K each);
//   empirical Bernstein (Maurer & Pontil 2009, Thm 4, one side at level α: Ê + sqrt(2·V·ln(2/α)/n)
//   + 7·ln(2/α)/(3(n − 1)), V the unbiased sample variance), applied to both sides with
//   α = (1 − η)/(2K). Two-sided intervals are needed because k is the argmax of the same draws.
//   The robustness size of an input is the largest L for which the condition holds with the
//   trained noise (the largest ε, mapped back through ε(L)); the Gaussian mechanism's ε ≤ 1
//   caps it at σ/(sqrt(2·ln(1.25/δ))·Δ).
//
// Randomness: the noise layer draws from Philox under (seed, kPurposePixelDp, step). During
// training and attacks every forward pass takes the next step of a counter; certification sets a
// fixed step per phase (kFixedStepBase + phase) and keys draw s of input id at row id·n + s, so
// a certificate depends on (model, x, id, n, seed) only, never on batching, and the CPU and
// CUDA backends draw the same noise.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/train.h"
#include "nn/zoo.h"

namespace aegis::certify {

// ---- mechanisms ------------------------------------------------------------------------------

enum class PixelDpNorm { L1, L2 };  // the attack norm p; L1 → Laplace noise, L2 → Gaussian noise
PixelDpNorm parse_pixeldp_norm(const std::string& name);  // "l1" | "l2"
const char* pixeldp_norm_name(PixelDpNorm norm);
enum class NoiseKind { Gaussian, Laplace };
NoiseKind noise_kind_for(PixelDpNorm norm);
NoiseKind parse_noise_kind(const std::string& name);  // "gaussian" | "laplace"
const char* noise_kind_name(NoiseKind kind);

// What a PixelDP network is built for.
struct PixelDpParams {
  PixelDpNorm norm = PixelDpNorm::L2;
  double eps = 1.0;     // > 0; ≤ 1 for L2 (the Gaussian mechanism's range)
  double delta = 0.05;  // in (0, 1) for L2; L1 (Laplace, δ = 0) ignores it
  double L = 0.1;       // the construction attack bound, > 0
};
// InvalidArgument naming the bad value.
void check_pixeldp_params(const PixelDpParams& params);

double gaussian_sigma(double eps, double delta, double sensitivity, double L);  // sqrt(2 ln(1.25/δ))·Δ·L/ε
double laplace_scale(double eps, double sensitivity, double L);                 // Δ·L/ε
// σ (Gaussian) or b (Laplace) for params and the pre-noise sensitivity Δ > 0.
double noise_scale(const PixelDpParams& params, double sensitivity);

// The noise a trained network carries and the sensitivity Δ in front of it.
struct PixelDpMechanism {
  PixelDpNorm norm = PixelDpNorm::L2;
  double scale = 1.0;        // σ or b, > 0
  double delta = 0.05;       // Gaussian only
  double sensitivity = 1.0;  // Δ > 0

  double epsilon_at(double L) const;     // ε the noise gives against attacks of size L ≥ 0
  double size_at(double epsilon) const;  // the inverse: the L whose ε is `epsilon`
  double max_epsilon() const;            // 1 for the Gaussian mechanism, +∞ for Laplace
  double effective_delta() const;        // δ for Gaussian, 0 for Laplace
};
void check_mechanism(const PixelDpMechanism& mechanism);

// ---- estimation bounds (§III-C) --------------------------------------------------------------

enum class BoundKind { Hoeffding, Bernstein };
BoundKind parse_bound_kind(const std::string& name);  // "hoeffding" | "bernstein"
const char* bound_kind_name(BoundKind kind);

// Half-width of each class's interval: n ≥ 1 draws (≥ 2 for Bernstein), K ≥ 2 classes,
// confidence η ∈ (0, 1), sample variance V ≥ 0 of the class's scores.
double hoeffding_half_width(std::int64_t n, std::int64_t num_classes, double confidence);
double bernstein_half_width(std::int64_t n, std::int64_t num_classes, double confidence, double sample_variance);

struct ScoreEstimate {
  std::vector<double> mean, lower, upper;  // per class; bounds clipped to [0, 1]
  std::int64_t prediction = -1;            // argmax of the mean (first on ties)
};
// From per-class sums of the scores and of their squares over n draws.
ScoreEstimate estimate_scores(const std::vector<double>& sum, const std::vector<double>& sum_sq, std::int64_t n,
                              double confidence, BoundKind bound);

// ---- robustness condition (Proposition 1) and robustness size -------------------------------

// lower_k > e^{2ε}·upper_other + (1 + e^ε)·δ.
bool robustness_condition(double lower_k, double upper_other, double eps, double delta);
// sup{ε ∈ (0, eps_cap] : the condition holds}; 0 when it fails for every ε > 0. The right side
// grows with ε, so the supremum is the root of upper·u² + δ·u − (lower − δ) = 0 in u = e^ε.
double max_robust_epsilon(double lower_k, double upper_other, double delta, double eps_cap);
// The robustness size of an estimate: mechanism.size_at(max ε) for k = prediction against the
// largest upper bound of the other classes; 0 when not robust at any size.
double robustness_size(const ScoreEstimate& estimate, const PixelDpMechanism& mechanism);

// ---- the noise layer ---------------------------------------------------------------------------

// y = x + noise, noise i.i.d. N(0, σ²) or Laplace(0, b) per element, drawn at every forward pass
// (training, evaluation and attacks alike: the noise is part of the PixelDP scoring function).
// Differentiable w.r.t. x (the noise is a constant of each pass). Shapes [N, ...] on any device.
class NoiseLayer : public nn::Module {
 public:
  static constexpr std::uint32_t kFixedStepBase = 0x80000000u;

  NoiseLayer(NoiseKind kind, double scale, std::uint64_t seed);
  nn::Var forward(const nn::Var& x) override;
  std::string kind() const override { return "PixelDpNoise"; }
  std::string describe() const override;

  NoiseKind noise_kind() const { return m_kind; }
  double scale() const { return m_scale; }
  std::uint64_t seed() const { return m_seed; }
  // A new seed restarts the counter.
  void set_seed(std::uint64_t seed);
  // Counter draws so far: forward k (from 0) uses step k, element r·d + j for row r.
  std::uint32_t draws() const { return m_counter; }
  // The next forward only draws element j of row r at index (first_row + r)·d + j under step
  // `step` ≥ kFixedStepBase (d = elements per row); later ones return to the counter.
  void set_next_draw(std::uint32_t step, std::uint64_t first_row);

 private:
  NoiseKind m_kind;
  double m_scale;
  std::uint64_t m_seed;
  std::uint32_t m_counter = 0;
  bool m_fixed = false;
  std::uint32_t m_fixed_step = 0;
  std::uint64_t m_fixed_row = 0;
};

// ---- operator norms ----------------------------------------------------------------------------

using LinearMap = std::function<nn::Var(const nn::Var&)>;

// Power iteration on AᵀA for a linear map A given by its forward (A v) and, through the tape,
// its transpose (AᵀA v is the gradient of ½‖A v‖² w.r.t. v). The vector persists between runs,
// so a few iterations per training step track a slowly changing weight (Miyato et al. 2018,
// "Spectral Normalization for GANs", §2.1). ‖A v‖ for a unit v never exceeds ‖A‖₂ and
// converges to it from below.
class PowerIteration {
 public:
  // input_shape: one example (no batch dimension); the start vector is Gaussian from `seed`.
  PowerIteration(Shape input_shape, std::uint64_t seed);
  // Up to max_iterations steps, stopping once the estimate changes by ≤ rel_tol relatively;
  // returns ‖A v‖ for the final unit v.
  double run(const LinearMap& map, Device device, int max_iterations, double rel_tol = 0.0);

 private:
  Shape m_shape;
  std::uint64_t m_seed;
  Tensor m_v;  // [1, input_shape...], unit norm
};

// Spectral norms of a bias-free conv (as a map on whole [C, H, W] images) and a linear layer
// (weight [out, in]), by PowerIteration from seed 0 to relative change ≤ rel_tol.
double conv2d_spectral_norm(const Tensor& weight, nn::Conv2dOptions opt, const Shape& input_chw,
                            int max_iterations = 2000, double rel_tol = 1e-9);
double linear_spectral_norm(const Tensor& weight, int max_iterations = 2000, double rel_tol = 1e-9);
// The L1 → L1 operator norm (largest column L1 norm) of a conv on images of any size, as the
// bound max over input channel c and stride residues (a, b) of Σ_o Σ_{kh≡a, kw≡b (mod s)} |W[o,c,kh,kw]|:
// an input pixel meets at most one kernel tap per residue class, so its column is bounded by one
// group (and equals it away from the border). A linear layer is the 1×1, stride-1 case.
double conv2d_l1_norm(const Tensor& weight, nn::Conv2dOptions opt);
double linear_l1_norm(const Tensor& weight);
// Divides each group above (each column of a linear weight) by max(1, its L1 norm), in place.
void project_l1_columns(Tensor& weight, nn::Conv2dOptions opt);

// Lipschitz constant of 2-d pooling in the L1 or L2 norm. With c = ceil(k/s)² the most windows
// one input element lies in: max pooling changes by at most the largest change in a window, so
// L1: c, L2: sqrt(c) (1 without overlap); average pooling (divisor k²): L1: c/k², L2: sqrt(c)/k.
double pooling_lipschitz(const nn::Pool2dOptions& opt, bool average, PixelDpNorm norm);

// ---- the PixelDP network -------------------------------------------------------------------------

// A Sequential classifier (the zoo's mlp, cnn-fmnist or lenet-2conv) with a noise layer at
// `position`: 0 = on the input, 1 = right after the first Conv2d/Linear (before its activation),
// 2 = right after the second. The base's layers are registered under their own names ("0",
// "1", ...), so the parameters keep the base model's state_dict names and a PixelDP model file
// also loads as the plain (noise-free) classifier with nn::load_classifier. Layers in front of
// the noise must be Conv2d, Linear, ReLU/Tanh/Sigmoid, MaxPool2d, AvgPool2d or Flatten.
class PixelDpNet : public nn::Module {
 public:
  PixelDpNet(const std::shared_ptr<nn::Module>& base, Shape input_shape, int position, PixelDpNorm norm,
             double noise_scale, std::uint64_t noise_seed);
  nn::Var forward(const nn::Var& x) override;
  std::string kind() const override { return "PixelDpNet"; }

  int position() const { return m_position; }
  PixelDpNorm norm() const { return m_norm; }
  const Shape& input_shape() const { return m_input_shape; }
  NoiseLayer& noise_layer() { return *m_noise; }

  // Δ when every pre-noise linear layer has operator norm ≤ 1: the product of the other
  // layers' constants (1 at position 0).
  double sensitivity_bound() const;
  // Δ of the current weights: the product of the pre-noise layers' operator norms (L2 by
  // converged power iteration from a fixed start, L1 exact) and constants.
  double sensitivity(int max_iterations = 2000, double rel_tol = 1e-9) const;
  // The projection after an optimizer step: L2 divides each pre-noise linear weight by
  // max(1, its spectral norm estimated with up to `power_iterations` steps of its persistent
  // power iteration, stopping at relative change rel_tol); L1 applies project_l1_columns.
  void constrain(int power_iterations, double rel_tol = 0.0);

 private:
  struct PreNoise {
    std::shared_ptr<nn::Module> layer;
    Shape input_shape;      // one example
    double constant = 1.0;  // for non-linear layers
    bool linear = false;
    std::shared_ptr<PowerIteration> power;
  };
  double operator_norm(const PreNoise& p, int max_iterations, double rel_tol) const;

  std::vector<std::shared_ptr<nn::Module>> m_layers;
  std::vector<PreNoise> m_pre_noise;
  std::size_t m_noise_index = 0;  // the noise is applied before m_layers[m_noise_index]
  std::shared_ptr<NoiseLayer> m_noise;
  Shape m_input_shape;
  int m_position;
  PixelDpNorm m_norm;
};

// Builds the zoo model `spec` wrapped with a noise layer calibrated by noise_scale(params,
// sensitivity_bound()) (checks params and position ∈ {0, 1, 2}).
std::shared_ptr<PixelDpNet> build_pixeldp(const nn::ModelSpec& spec, int position, const PixelDpParams& params,
                                          std::uint64_t noise_seed);

// ---- training and model files --------------------------------------------------------------------

struct PixelDpTrainOptions {
  nn::TrainOptions train;    // epochs, batch size, optimizer, schedule, data-order seed, device
  int power_iterations = 2;  // per step, L2 only
};
// nn::train_classifier's loop with the noise layer in place and net.constrain() after the
// initialization and after every optimizer step (§III-B); ends with a converged projection.
nn::TrainResult train_pixeldp(PixelDpNet& net, const nn::Dataset& train, const PixelDpTrainOptions& options,
                              const std::function<void(const nn::StepInfo&)>& on_step = {},
                              const std::function<void(const nn::EpochResult&)>& on_epoch = {});

// nn::save_classifier plus "aegis.pixeldp.{position, norm, kind, sigma (σ or b), L, eps, delta,
// sensitivity (measured), sensitivity_bound, seed}".
void save_pixeldp(const std::string& path, PixelDpNet& net, const nn::ModelSpec& spec, const PixelDpParams& params,
                  std::map<std::string, std::string> metadata = {});
struct LoadedPixelDp {
  std::shared_ptr<PixelDpNet> net;
  nn::ModelSpec spec;
  PixelDpParams params;
  PixelDpMechanism mechanism;  // sensitivity recomputed from the weights, not read from the file
  double stored_sensitivity = 0.0;
  std::map<std::string, std::string> metadata;
};
// IoError naming the file and key for missing or malformed PixelDP metadata.
LoadedPixelDp load_pixeldp(const std::string& path);

// ---- certified prediction (§III-C) and attacks -----------------------------------------------

struct ScoreSums {
  std::int64_t draws = 0, num_classes = 0;
  std::vector<double> sum, sum_sq;  // [m·K]: Σ_s Q_c and Σ_s Q_c² per input and class
};
// Softmax scores of `draws` noisy passes per input of x [m, C, H, W] (any device; the net must
// live on `device`), input i keyed as id first_id + i under step kFixedStepBase + phase,
// in forward batches of ≤ batch rows, without a tape and in evaluation mode.
ScoreSums sample_scores(PixelDpNet& net, const Tensor& x, std::uint64_t first_id, std::int64_t draws,
                        std::uint32_t phase, std::int64_t batch, Device device);

struct PixelDpCertifyOptions {
  std::int64_t draws = 300;  // n ≥ 1 (≥ 2 for Bernstein)
  double confidence = 0.95;  // η
  BoundKind bound = BoundKind::Hoeffding;
  std::int64_t batch = 1000;
  std::uint32_t phase = 0;  // separate noise for separate evaluations of the same ids
};
struct PixelDpCertificate {
  std::int64_t prediction = -1;  // argmax of the expected scores (always given)
  double epsilon = 0.0;          // the largest ε for which the condition holds; 0 if none
  double robustness_size = 0.0;  // mechanism.size_at(epsilon)
  ScoreEstimate scores;
};
std::vector<PixelDpCertificate> certify_pixeldp(PixelDpNet& net, const PixelDpMechanism& mechanism, const Tensor& x,
                                                std::uint64_t first_id, const PixelDpCertifyOptions& options,
                                                Device device);

// The attack target of §IV: the expected scores. Its "logits" for x [m, ...] are
// log((1/D)·Σ_s softmax(net(x + noise_s))) over D draws, so their argmax is the Monte Carlo
// PixelDP prediction and gradients average over the draws. With `fixed_noise` every forward
// pass reuses the same draws (row i·D + s of a pass keyed as row i·D + s under step
// kFixedStepBase + phase): the attack then optimizes one deterministic sample average, whose
// decisions do not flip from pass to pass (an optimizer that stops at the decision boundary,
// such as CW-L2, otherwise keeps iterates that a fresh draw no longer finds adversarial).
// Without it each pass draws fresh noise from the noise layer's counter.
class ExpectedScoresModel : public nn::Module {
 public:
  ExpectedScoresModel(std::shared_ptr<PixelDpNet> net, std::int64_t draws, bool fixed_noise = false,
                      std::uint32_t phase = 2);
  nn::Var forward(const nn::Var& x) override;
  std::string kind() const override { return "ExpectedScores"; }

 private:
  std::shared_ptr<PixelDpNet> m_net;
  std::int64_t m_draws;
  bool m_fixed;
  std::uint32_t m_phase;
};

}  // namespace aegis::certify
