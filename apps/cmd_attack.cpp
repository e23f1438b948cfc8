// aegis attack: runs one attack, the suite of attacks/suite.h, or AutoAttack (attacks/autoattack.h)
// on the first N test examples of a dataset against a saved model, and reports clean and robust
// accuracy, the attack success rate among the examples the model got right, and the size of
// successful perturbations; optionally the per-example TSV and the adversarial examples.
#include <cstdio>

#include "attacks/attack_job.h"
#include "certify/pixeldp.h"
#include "commands.h"
#include "nn/model_file.h"
#include "nn/quantize.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct AttackArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist";
  attacks::AttackJob job;
  bool no_abort = false;
  int input_bits = 0;
  bool pixeldp = false;
  std::int64_t max = 0;
};

}  // namespace

Runner add_attack(CLI::App& app) {
  auto a = std::make_shared<AttackArgs>();
  auto* cmd = app.add_subcommand("attack", "attack a saved model on test examples and report robust accuracy");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train")->capture_default_str();
  cmd->add_option("--attack", a->job.attack, attacks::kAttackJobNames)->required();
  cmd->add_option("--eps", a->job.eps,
                  "perturbation radius in the attack's norm (inputs are in [0, 1]); required except for cw-l2, "
                  "where it only bounds what counts as a success")
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--norm", a->job.norm,
                  "linf | l2, for apgd-ce, apgd-dlr, apgd-t, square, suite, autoattack "
                  "(default linf; the other attacks name their norm)")
      ->check(one_of({"linf", "l2"}));
  cmd->add_option("--steps", a->job.steps,
                  "iterations: 100 for the APGD family, cw-l2 (Adam iterations per binary-search step, "
                  "torchattacks' `steps`), suite and autoattack; 10 for bim, pgd and mifgsm; fgsm takes one")
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--step-size", a->job.step_size, "step size > 0 (default: the attack's own, from eps and steps)")
      ->check(positive(FLT_MAX));
  cmd->add_option("--restarts", a->job.restarts,
                  "random restarts of pgd-linf, pgd-l2, apgd-ce and apgd-dlr, per target class for apgd-t and "
                  "fab-t, and of PGD in the suite; the other attacks (and autoattack) run once")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_flag("--targeted", a->job.targeted, "targeted attack with target (label + 1) mod K");
  cmd->add_option("--queries", a->job.queries, "square (and autoattack's square): model queries per example")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--square-proposals", a->job.square_proposals,
                  "square (and autoattack's square): shared (one window per iteration for the batch, as the "
                  "official code; default) | per-example")
      ->check(one_of({"shared", "per-example"}));
  cmd->add_option("--target-classes", a->job.target_classes,
                  "apgd-t, fab-t (and autoattack): target classes per example")
      ->capture_default_str()
      ->check(integer_in(1, 1000));
  cmd->add_option("--final-search", a->job.final_search,
                  "fab-t: steps of the final search from the closest point found towards the input (default 3; "
                  "0: none)")
      ->check(integer_in(0, 1000));
  cmd->add_option("--version", a->job.version, "autoattack: standard | rand (APGD-CE and APGD-DLR with EOT)")
      ->capture_default_str()
      ->check(one_of({"standard", "rand"}));
  cmd->add_option("--eot", a->job.eot,
                  "EOT draws per gradient for fgsm, bim, pgd, mifgsm and the APGD family (default 1; autoattack "
                  "--version rand: 20)")
      ->check(integer_in(1, 100000));
  cmd->add_option("--vote", a->job.vote,
                  "single attacks on a randomized model (--pixeldp): clean and adversarial predictions are the "
                  "majority class over K forward passes, not one")
      ->capture_default_str()
      ->check(integer_in(1, 100000));
  cmd->add_option("--c", a->job.method.cw_initial_const, "cw-l2: initial constant c of the binary search")
      ->capture_default_str()
      ->check(positive(FLT_MAX));
  cmd->add_option("--kappa", a->job.method.cw_confidence, "cw-l2: confidence κ")
      ->capture_default_str()
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--lr", a->job.method.cw_lr, "cw-l2: Adam learning rate")
      ->capture_default_str()
      ->check(positive(FLT_MAX));
  cmd->add_option("--binary-search-steps", a->job.method.cw_binary_search_steps,
                  "cw-l2: binary-search steps over c (torchattacks' CW: 1, with --c 1)")
      ->capture_default_str()
      ->check(integer_in(1, 1000));
  cmd->add_flag("--no-abort", a->no_abort, "cw-l2: run every Adam iteration (no early abort when the loss stalls)");
  cmd->add_option("--max", a->max, "attack only the first N test examples (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--seed", a->job.seed, "seed of random starts")->capture_default_str()->check(seed_value());
  cmd->add_option("--batch", a->job.batch, "examples per attack batch")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--save-adv", a->job.save_adv,
                  "write the adversarial examples and labels here (safetensors); suite and autoattack: the point "
                  "of the attack that broke each input, the clean input when none did");
  cmd->add_option("--per-example", a->job.per_example,
                  "write a TSV here: idx, label, clean_predict, adv_predict, broken_by, perturbation_norm");
  cmd->add_option("--input-bits", a->input_bits,
                  "attack the model behind a bit-depth reduction of its input to B bits (a quantization defense)")
      ->check(integer_in(1, 16));
  cmd->add_flag("--pixeldp", a->pixeldp,
                "the model file is a PixelDP network (`aegis pixeldp train`): its noise layer draws afresh at "
                "every forward pass, so attack it with --eot");
  cmd->add_flag("--bpda", a->job.bpda,
                "BPDA: gradients pass straight through non-differentiable layers (e.g. --input-bits)");
  add_common_options(*cmd, a->common);
  return [a]() {
    a->job.method.cw_abort_early = !a->no_abort;
    attacks::check_attack_job(a->job);
    const Device device = resolve_device(a->common);
    nn::LoadedClassifier loaded;
    if (a->pixeldp) {
      certify::LoadedPixelDp p = certify::load_pixeldp(a->model);
      loaded.model = p.net;
      loaded.spec = p.spec;
    } else {
      loaded = nn::load_classifier(a->model);
    }
    const nn::DatasetSplit split = nn::load_dataset(a->data, data_dir_hint(a->common));
    check_data_fits(split.test, loaded.spec, a->model, a->data);
    const nn::Dataset test = first_examples(split.test, a->max);
    loaded.model->to(device);
    const std::shared_ptr<nn::Module> model =
        a->input_bits > 0 ? nn::with_input_quantization(loaded.model, a->input_bits) : loaded.model;
    CliProgress progress(!a->common.quiet);
    nlohmann::json j = attacks::to_json(attacks::run_attack_job(*model, loaded.spec, test, device, a->job, &progress));
    if (a->input_bits > 0) j["input_bits"] = a->input_bits;
    j["pixeldp"] = a->pixeldp;
    j["command"] = "attack";
    j["model_file"] = a->model;
    j["dataset"] = a->data;
    return print_result(j, a->common.json, [&](const nlohmann::json& r) {
      std::printf(
          "%s on %s, %s eps %g (%lld examples): clean accuracy %.4f, robust accuracy %.4f, attack success "
          "rate %.4f, %.1f s\n",
          a->job.attack.c_str(), a->data.c_str(), a->model.c_str(), static_cast<double>(a->job.eps),
          static_cast<long long>(test.size()), r["clean_accuracy"].get<double>(), r["robust_accuracy"].get<double>(),
          r["attack_success_rate"].get<double>(), r["seconds"].get<double>());
      for (const char* key : {"per_attack", "robust_after"})
        if (r.contains(key))
          for (const auto& [name, acc] : r[key].items())
            std::printf("  %-8s robust accuracy %.4f\n", name.c_str(), acc.get<double>());
    });
  };
}

}  // namespace aegis::app
