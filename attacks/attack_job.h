// `aegis attack` as one library call (the Python package makes the same): one attack named as the
// command-line tool names it (a method with its norm: pgd-linf, pgd-l2, ...), the suite of
// attacks/suite.h, or AutoAttack (attacks/autoattack.h), on the examples of a dataset against a
// loaded model, with the optional per-example TSV and adversarial examples written as files. The
// report's to_json is the command's JSON object.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "attacks/autoattack.h"
#include "attacks/evaluate.h"
#include "attacks/suite.h"
#include "core/progress.h"
#include "nn/data/dataset.h"
#include "nn/zoo.h"

namespace aegis::attacks {

// The names an attack job takes, for help texts:
// "fgsm | bim | pgd-linf | pgd-l2 | mifgsm | cw-l2 | apgd-ce | apgd-dlr | apgd-t | fab-t | square | suite |
// autoattack".
extern const char* const kAttackJobNames;

struct AttackJob {
  std::string attack;  // one of kAttackJobNames
  std::string norm;    // "linf" | "l2" for the APGD family, square, suite, autoattack; "": the attack's own
  std::string version = "standard";  // autoattack: standard | rand
  std::string square_proposals;      // square, autoattack: shared | per-example; "": shared
  float eps = -1.0f;                 // < 0: not given (C&W only: then every perturbation found counts)
  float step_size = 0.0f;            // 0: the attack's own
  int steps = 0;                     // 0: the attack's default (check_attack_job fills it)
  int restarts = 1, queries = 5000, target_classes = 9;
  int eot = 0;  // EOT draws per gradient; 0: the attack's default
  int final_search = -1;  // fab-t: steps of its final search; < 0: the default, 3
  int vote = 1;  // single attacks: predictions by majority over this many forward passes
  bool targeted = false;
  std::int64_t batch = 256;
  std::uint64_t seed = 0;
  MethodOptions method;  // C&W's c, κ, learning rate, binary-search steps, abort
  bool bpda = false;
  std::string save_adv, per_example;  // files to write ("" : none)
};

// Refuses the options that do not apply to job.attack (InvalidArgument naming them) and fills
// job.steps with the attack's default when it is 0: 100 for the APGD family, fab-t, cw-l2, the
// suite and autoattack, 10 for bim, pgd and mifgsm, 1 for fgsm; for fab-t also job.final_search
// (3) when it is < 0.
void check_attack_job(AttackJob& job);

struct AttackReport {
  AttackJob job;      // as run (steps filled)
  std::string model;  // the model's zoo name
  std::string device;
  std::int64_t examples = 0;
  // Exactly one is set: one attack, the suite, or AutoAttack.
  std::optional<Evaluation> single;
  std::optional<SuiteResult> suite;
  std::optional<AutoAttackResult> autoattack;
  Norm norm = Norm::Linf;  // the norm the attack ran in
};
nlohmann::json to_json(const AttackReport& report);

// Runs the checked job on every example of `test` (images on the CPU; `model` already on
// `device`; `spec` gives the classes). Writes job.per_example and job.save_adv when set. Warnings
// of the suite go to progress->warning.
AttackReport run_attack_job(nn::Module& model, const nn::ModelSpec& spec, const nn::Dataset& test, Device device,
                            const AttackJob& job, ProgressSink* progress = nullptr);

}  // namespace aegis::attacks
