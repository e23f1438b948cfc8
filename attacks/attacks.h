// Batched gradient attacks on classifiers: FGSM (Goodfellow, Shlens, Szegedy 2015), BIM/I-FGSM
// (Kurakin, Goodfellow, Bengio 2017), PGD with L∞ or L2 balls and random restarts (Madry et al.
// 2018) and MI-FGSM (Dong et al. 2018). Inputs x are f32 [N, ...] in [0, 1] on the model's device,
// labels i32 [N] (CPU or that device); ε and the step size are per example (f32 [N], or one value
// that broadcasts). Untargeted attacks maximize the cross-entropy of the true label and succeed
// when the prediction differs from it; targeted ones minimize the cross-entropy of targets[i] and
// succeed when the prediction equals it. The gradient is that of the SUM of per-example losses,
// so each example's gradient — and, with per-example ε, step and (MI-FGSM) L1 normalization, its
// whole trajectory — does not depend on the rest of the batch. Only ∂loss/∂x is formed: the
// model's parameters stop requiring gradients for the duration (restored afterwards, also when
// the attack throws) and the model runs in eval mode (restored likewise).
// Bookkeeping: the clean input is evaluated first and every iterate (including the last) is
// evaluated; per example the best iterate so far is kept, ordered by (success, loss): for an
// untargeted attack with early stop that is the first successful iterate, else the one with the
// highest loss. With early_stop, an example that succeeds is frozen (an already misclassified
// example is never stepped) and dropped from the batch; random restarts rerun only the examples
// not broken yet, so more steps or restarts can only break more examples. Random starts are keyed
// by Philox (seed, kPurposeAttackStart, restart) and the element index (start_offset + position in
// the batch)·d+j, so CPU and CUDA start from the same points. The fused step, start and copy kernels live in
// kernels/attack_step.h; this layer only moves indices, ε/α values and per-example flags between
// host and device, once per iteration.
#pragma once

#include <cstdint>
#include <string>

#include "core/norm.h"
#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::attacks {

// The attacks by name ("fgsm", "bim", "pgd", "mifgsm", "cw-l2", "apgd-ce", "apgd-dlr", "apgd-t",
// "fab-t", "square"); the norm is an option of its own (AttackOptions::norm).
enum class AttackMethod { Fgsm, Bim, Pgd, Mifgsm, CwL2, ApgdCe, ApgdDlr, ApgdT, FabT, Square };
const char* attack_method_name(AttackMethod method) noexcept;
// The inverse of attack_method_name; InvalidArgument naming the text and the names otherwise.
AttackMethod parse_attack_method(const std::string& name);
// PGD and APGD (APGD-T and FAB-T: per target class) run random restarts; the others do not.
bool has_restarts(AttackMethod method) noexcept;

struct AttackOptions {
  Norm norm = Norm::Linf;  // FGSM with L2 is the fast gradient method
  Tensor eps;              // f32, 1 value or [N], ≥ 0; required
  // f32, 1 value or [N], > 0. Undefined: FGSM ε; BIM and MI-FGSM ε/steps (α = ε/T, Dong et al.
  // 2018, Alg. 1); PGD 2.5·ε/steps (a path of 2.5ε: room to cross the ball from a random
  // start and then move along its boundary — a common heuristic, not from Madry et al.).
  Tensor step_size;
  int steps = 10;            // ≥ 1; FGSM takes one step
  int restarts = 1;          // ≥ 1; PGD only (the other methods are deterministic)
  bool random_start = true;  // PGD only; FGSM, BIM and MI-FGSM start at x
  bool targeted = false;
  Tensor targets;          // i32 [N] when targeted
  float momentum = 1.0f;   // MI-FGSM decay μ ≥ 0 (Dong et al. use 1.0)
  std::uint64_t seed = 0;  // random starts
  // Row i's random start is keyed as example start_offset + i: a caller attacking a slice of a
  // larger batch (a chunk, an MPI rank's share) draws the starts the whole batch would. ≥ 0, and
  // start_offset + N must stay below 2^31.
  std::int64_t start_offset = 0;
  bool early_stop = true;  // freeze an example at its first success and stop computing its gradient
  // EOT (Athalye, Carlini, Wagner 2018, §4.1): each gradient is the mean over this many
  // forward/backward passes of a randomized model, ∇E_θ[L(x; θ)] ≈ (1/K)Σ_k ∇L(x; θ_k); the
  // success and keep-best decisions read the first pass. 1: a deterministic model. Gradient
  // attacks only (FGSM, BIM, PGD, MI-FGSM, APGD); C&W and Square reject K > 1.
  int eot_draws = 1;
  // BPDA (Athalye et al. 2018, §4.1): non-differentiable layers of the model (nn/quantize.h) pass
  // the gradient straight through on the backward pass (identity) during the attack.
  bool bpda = false;
};

struct AttackResult {
  Tensor adversarial;        // the kept iterate per example: x's shape and device
  Tensor success;            // i32 [N] on the CPU: 1 when the kept iterate fools the model
  Tensor perturbation_norm;  // f32 [N] on the CPU: ‖adversarial − x‖ in the attack's norm
  Tensor final_loss;         // f32 [N] on the CPU: cross-entropy of the kept iterate for the
                             // true label (untargeted) or the target (targeted)
  // Per-example input gradients formed (one backward pass over m examples counts m).
  std::int64_t gradient_evaluations = 0;
  Tensor queries;  // Square only: i32 [N] on the CPU, forward passes per example (the clean one not counted)
};

// One step of size step_size (default ε): sign of the gradient for "linf", the L2-normalized
// gradient for "l2"; projected onto the ball and [0, 1].
AttackResult fgsm(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options);
// `steps` projected steps from x (no random start, one run).
AttackResult bim(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options);
// Madry et al. 2018: uniform random start in the ε-ball (when random_start), `steps` projected
// steps, best of `restarts` runs per example.
AttackResult pgd(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options);
// Dong et al. 2018: momentum over per-example L1-normalized gradients, decay options.momentum,
// sign steps ("linf") or L2-normalized steps ("l2"), starting at x.
AttackResult mifgsm(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options);

// An f32 [n] tensor on the CPU: `value` n times, or `per_example` (1 value, broadcast, or
// exactly n values, from any device). ShapeError naming `what` otherwise.
Tensor broadcast_per_example(float value, std::int64_t n);
Tensor broadcast_per_example(const Tensor& per_example, std::int64_t n, const char* what = "per-example value");

// The random start PGD uses for (seed, restart): clip[0,1](x + δ), δ uniform in the ε-ball of
// `norm` around each example (ε: 1 value or [N]), drawn with example i keyed as first_id + i
// (AttackOptions::start_offset). Same shape and device as x.
Tensor random_start(const Tensor& x, const Tensor& eps, Norm norm, std::uint64_t seed, std::uint32_t restart = 0,
                    std::int64_t first_id = 0);

// Checks what every attack requires of x: f32 [N, ...] (ShapeError), finite (NumericError) and
// inside the box [0, 1] (InvalidArgument naming the first example and element outside it).
void check_attack_input(const Tensor& x, const char* what = "attack input x");

// Fraction of examples that the attack did not break (1 − mean success); 1 for an empty result.
double robust_accuracy(const AttackResult& result);

}  // namespace aegis::attacks

// ---- optimization attacks: CW-L2 (attacks/cw.cpp) and APGD (attacks/apgd.cpp) ------------------
// Both run the model (eval mode, parameters frozen, restored afterwards) on the model's device and
// keep every [N, d] buffer there: Adam on w and the APGD steps and projections are fused kernels
// (kernels/attack_opt.h) that work per example in double. Only per-example values cross to the
// host each iteration — the logits [m, K], from which the losses and their logit gradients are
// formed there, and flags, norms, step sizes and row indices — so an example's trajectory does not
// depend on the rest of the batch (up to the model's own float rounding).
// AttackResult.perturbation_norm is the L2 norm for CW-L2 and the attack norm for APGD;
// final_loss is the attack's own objective for the kept iterate: the CW margin term f(x') for
// CW-L2 and the CE or DLR loss (as maximized, i.e. −CE(target) when targeted) for APGD.
#include <vector>

namespace aegis::attacks {

// C&W reads of `attack`: steps (Adam iterations per binary-search step, default 100), targeted
// and targets; its norm must be L2 (the default here). It is a minimal-norm attack: eps, the
// step size, restarts, the random start, momentum, seed and early_stop do not apply.
struct CwOptions {
  CwOptions() {
    attack.norm = Norm::L2;
    attack.steps = 100;
  }
  AttackOptions attack;
  float confidence = 0.0f;  // κ
  int binary_search_steps = 9;
  float initial_const = 1e-3f;  // c₀
  float lr = 1e-2f;             // Adam step size on w
  bool abort_early = true;
};
// Carlini & Wagner 2017 L2 attack. Returns the best (smallest-L2) successful adversarial per
// example; success=0 rows keep the clean input.
AttackResult cw_l2(nn::Module& model, const Tensor& x, const Tensor& labels, const CwOptions& opt);

enum class ApgdLoss { Ce, Dlr };  // cross-entropy; the difference of logits ratio (Croce & Hein 2020, Eq. 6)

// APGD reads of `attack`: norm, eps (required), steps (default 100), restarts, targeted, targets,
// seed and eot_draws (the gradient and the loss of each iterate averaged over the draws); the step size follows its own
// schedule, and it always starts at a random point.
struct ApgdOptions {
  ApgdOptions() { attack.steps = 100; }
  AttackOptions attack;
  ApgdLoss loss = ApgdLoss::Ce;
  float rho = 0.75f;
  // With targeted: success is argmax ≠ label rather than argmax = target (APGD-T, where the
  // target only steers the loss).
  bool succeed_on_misclassification = false;
};
// Croce & Hein 2020 APGD (Auto-PGD) with its step-size schedule and checkpoints.
AttackResult apgd(nn::Module& model, const Tensor& x, const Tensor& labels, const ApgdOptions& opt);

// APGD-T (Croce & Hein 2020, §4): one APGD run with the targeted DLR loss per target class, the
// targets being each example's `target_classes` highest non-true classes by clean logit (at most
// K − 1), each run only on the examples not broken yet; success = misclassification. Reads of
// `opt`: attack.norm, eps, steps, restarts (per target), seed, attack.eot_draws, rho; loss and targeted
// are set by the method. Needs K ≥ 4 classes (the loss reads z_π4). An unbroken example keeps the
// best point of the first target's run.
AttackResult apgd_targeted(nn::Module& model, const Tensor& x, const Tensor& labels, const ApgdOptions& opt,
                           int target_classes = 9);

// How Square draws its proposals: one window (and L∞ signs) per iteration for the whole batch, as
// the official code does, or one per example (attacks/square.cpp says exactly what is shared).
enum class SquareProposals { Shared, PerExample };
const char* square_proposals_name(SquareProposals proposals) noexcept;  // "shared", "per-example"
SquareProposals parse_square_proposals(const std::string& name);

// Square attack (Andriushchenko et al. 2020), untargeted, L∞ or L2 (attack.norm), score-based:
// reads only logits. Reads of `attack`: norm, eps (required), seed. At most `queries` forward
// passes per example (the first is the initialization); an example stops at its first success.
struct SquareOptions {
  AttackOptions attack;
  int queries = 5000;
  float p_init = 0.8f;  // initial fraction of the image a square covers
  SquareProposals proposals = SquareProposals::Shared;
  // The schedule of p stretched over the query budget (the paper's and torchattacks' default), or
  // read at the raw iteration of a 10,000-iteration run (the official AutoAttack's setting).
  bool rescale_schedule = true;
};
AttackResult square(nn::Module& model, const Tensor& x, const Tensor& labels, const SquareOptions& opt);
// FAB-T (Croce & Hein 2020, fast adaptive boundary attack), targeted, L∞ or L2: minimal-norm.
// `attack.restarts` runs of `attack.steps` iterations (default 100) per target class (the
// example's `target_classes` highest non-true classes by clean logit), each on the examples not
// yet broken; the first run starts at x, the others at a random point at distance
// ½·min(ε, closest so far) (ε: attack.eps, else 0.3 for L∞ and 1 for L2). Then `final_search_steps`
// steps of the final search along the segment from x to the closest point found.
// With attack.eps, success = a misclassified point found within ε (the example then stops) and
// the returned point is that one (the clean input otherwise); without eps, success = any
// misclassified point found, and the closest is returned. final_loss holds the smallest distance
// found (+∞ when none). Reads of `attack`: norm, eps (optional), steps, restarts, seed.
struct FabOptions {
  FabOptions() { attack.steps = 100; }
  AttackOptions attack;
  int target_classes = 9;
  float alpha_max = 0.1f;      // bias towards x_orig
  float eta = 1.05f;           // extrapolation of the projection step
  float beta = 0.9f;           // backward step after a success
  int final_search_steps = 0;  // ≥ 0; 0: none (AutoAttack's FAB-T); the original FAB code uses 3
};
AttackResult fab_targeted(nn::Module& model, const Tensor& x, const Tensor& labels, const FabOptions& opt);

// The fraction p at iteration `iteration` (0-based) of a `budget`-iteration run: p_init halved
// after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations, rescaled.
double square_fraction(int iteration, int budget, double p_init);

// The APGD checkpoints w_j = ⌈p_j·n_iter⌉ for n_iter ≥ 1 (Croce & Hein 2020, §3.2): p_0 = 0,
// p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), while p_j ≤ 1. Increasing.
std::vector<int> apgd_checkpoints(int n_iter);

}  // namespace aegis::attacks
