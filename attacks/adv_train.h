// Adversarial training of classifiers against L∞ perturbations of radius ε, three ways:
//   "pgd"      Madry et al. 2018 (§3, Eq. 2.1): every minibatch is replaced by PGD-K examples
//              (uniform random start in the ε-ball, K sign steps of α, default α = 2.5ε/K) and
//              the weights take one step on their cross-entropy. K + 1 forward/backward passes
//              per step.
//   "fgsm-rs"  Wong, Rice and Kolter 2020 (Alg. 3): δ ~ U(−ε, ε)^d, one FGSM step of α = 1.25ε
//              from x + δ, projected onto the ball and [0, 1]; 2 passes per step. Guarded by
//              the catastrophic-overfitting check below.
//   "free"     Shafahi et al. 2019 (Alg. 1): each minibatch is replayed m = `replays` times; one
//              backward pass per replay gives both the weight gradient (applied at once) and the
//              input gradient, with which the perturbation is updated, δ ← clip[−ε,ε](δ + ε·sign ∇ₓ);
//              δ carries over to the next replay and the next minibatch (reset to 0 when the
//              minibatch size changes). The number of epochs is divided by m (rounded up), so
//              the passes over data match standard training of `epochs` epochs.
// Catastrophic-overfitting check (fgsm-rs with check_overfitting; Wong et al. 2020, §5.3 and
// Rice et al. 2020 use a held-out PGD check the same way): the last min(512, N/10) training
// examples are held out of training. After each epoch the PGD-10 (α = ε/4, one random start)
// robust accuracy on them is measured; when it falls more than `overfit_drop` (20 percentage
// points by default) below the best epoch's, training stops and the weights of the best epoch are
// restored.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nn/train.h"

namespace aegis::attacks {

// PGD adversarial training (Madry et al. 2018), FGSM with a random start (Wong et al. 2020) and
// free adversarial training (Shafahi et al. 2019).
enum class AdvMethod { Pgd, FgsmRs, Free };
const char* adv_method_name(AdvMethod method) noexcept;  // "pgd", "fgsm-rs", "free"
AdvMethod parse_adv_method(const std::string& name);      // InvalidArgument naming the text otherwise

struct AdvTrainOptions {
  AdvMethod method = AdvMethod::Pgd;
  float eps = 0.0f;            // L∞ radius, > 0
  int steps = 7;               // pgd: PGD steps K
  float step_size = 0.0f;      // 0: pgd 2.5ε/K, fgsm-rs 1.25ε (Wong et al. 2020); free always uses ε
  int replays = 4;             // free: minibatch replays m (Shafahi et al. 2019)
  bool check_overfitting = true;  // fgsm-rs only (see above)
  float overfit_drop = 0.20f;     // the check's threshold, a fraction in [0, 1]
};

struct AdvTrainResult : nn::TrainResult {
  std::vector<double> check_robust_accuracy;  // per epoch, when the overfitting check runs
  bool stopped_early = false;                 // the check fired
  std::int64_t best_epoch = 0;                // 1-based; the epoch whose weights the model holds
  std::int64_t held_out = 0;                  // examples kept out of training for the check
};

// What a run will do, for a front end's progress: the epochs actually run (free: ⌈epochs/m⌉),
// the optimizer steps per epoch (free: m per minibatch) and the examples held out for the
// fgsm-rs overfitting check. Checks the options (InvalidArgument naming the bad value).
struct AdvPlan {
  std::int64_t epochs = 0;
  std::int64_t steps_per_epoch = 0;
  std::int64_t held_out = 0;
};
AdvPlan plan_adversarial(std::int64_t dataset_size, const nn::TrainOptions& options, const AdvTrainOptions& adv);

// Trains `model` in place, like nn::train_classifier (same options, callbacks and errors);
// `train.epochs` are the epochs of the equivalent standard run (see "free").
AdvTrainResult train_adversarial(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& options,
                                 const AdvTrainOptions& adv,
                                 const std::function<void(const nn::StepInfo&)>& on_step = {},
                                 const std::function<void(const nn::EpochResult&)>& on_epoch = {});

// Adversarial examples for DP-SGD (`aegis train --dp --adv pgd|fgsm-rs`): a function that turns a
// step's batch into PGD-K or FGSM-RS examples of the current model, with the options' ε, steps and
// step size; privacy::DpTrainOptions::make_input takes it (the signature is privacy::DpInputFn).
// Each adversarial example is made from its own row only: the loss is a sum over rows, so
// ∂loss/∂x_i is example i's own, and the random starts are keyed by (seed, step, element), not by
// data. An example's clipped gradient therefore still depends on that one example, the model and
// data-independent randomness, so DP-SGD's sensitivity C and its accounting are unchanged.
// "free" is refused: its perturbation carries over from other minibatches' examples. The
// catastrophic-overfitting check of fgsm-rs does not run under DP (its held-out check would be
// one more use of the data that the ledger does not count).
// Row r's random start is keyed as row first_row + r of the step (the hook's last argument), so a
// chunk or an MPI rank's slice draws what the whole sample would.
std::function<Tensor(nn::Module& model, const Tensor& images, const Tensor& labels, std::uint64_t step,
                     std::int64_t first_row)>
dp_adversarial_inputs(const AdvTrainOptions& adv, std::uint64_t seed);
// The model-file keys of an adversarially trained model: aegis.adv_method, aegis.adv_eps.
std::map<std::string, std::string> adv_metadata(const AdvTrainOptions& adv);

}  // namespace aegis::attacks
