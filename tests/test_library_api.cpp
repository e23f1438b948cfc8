// The library entry points the command-line tool (and the Python package) call: one call, one
// result struct. Each is checked against the pieces it is built from, so that a front end that
// calls it gets what the command-line tool reports.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attacks/adv_job.h"
#include "attacks/attack_job.h"
#include "attacks/evaluate.h"
#include "certify/certify_run.h"
#include "certify/pixeldp_job.h"
#include "certify/sweep.h"
#include "certify/verify_run.h"
#include "nn/data/dataset.h"
#include "nn/model_file.h"
#include "nn/train_job.h"
#include "nn/zoo.h"
#include "privacy/dp_job.h"
#include "privacy/dp_train.h"
#include "privacy/ledger_digest.h"
#include "privacy/model_report.h"
#include "support/testing.h"

namespace aegis {
namespace {

// Records what a run reports, to check the phases it announces.
struct RecordingProgress : ProgressSink {
  std::vector<std::string> labels;
  std::vector<std::int64_t> totals, last_done;
  std::vector<std::string> warnings;
  int ended = 0;
  void begin(const std::string& label, std::int64_t total, const std::string&) override {
    labels.push_back(label);
    totals.push_back(total);
    last_done.push_back(0);
  }
  void update(std::int64_t done, const std::string&) override {
    EXPECT_GE(done, last_done.back()) << "progress went backwards";
    last_done.back() = done;
  }
  void end(const std::string&) override { ++ended; }
  void warning(const std::string& message) override { warnings.push_back(message); }
  void info(const std::string& message) override { infos.push_back(message); }
  std::vector<std::string> infos;
};

nn::Dataset first(const nn::Dataset& d, std::int64_t n) {
  return nn::take(d, 0, n);
}

// ---- attacks::evaluate -------------------------------------------------------------------------

TEST(Evaluate, CountsMatchTheAttackAndTheRobustFlags) {
  const auto& t = testing::trained_digits_mlp();
  const nn::Dataset data = first(t.test, 70);
  attacks::EvaluationOptions o;
  o.method = attacks::AttackMethod::Pgd;
  o.attack.eps = Tensor::full({1}, 0.1f);
  o.attack.steps = 5;
  o.batch_size = 32;  // 32 + 32 + 6: a short last batch
  o.keep_adversarial = true;
  RecordingProgress progress;
  const attacks::Evaluation r = attacks::evaluate(*t.model, data, Device::cpu(), 10, o, &progress);
  EXPECT_EQ(r.examples, 70);
  ASSERT_EQ(r.robust.size(), 70u);
  std::int64_t robust = 0;
  for (std::int32_t v : r.robust) robust += v;
  EXPECT_DOUBLE_EQ(r.robust_accuracy, static_cast<double>(robust) / 70.0);
  EXPECT_LE(r.robust_accuracy, r.clean_accuracy);
  EXPECT_GT(r.clean_accuracy, 0.8);
  ASSERT_TRUE(r.adversarial.defined());
  EXPECT_EQ(r.adversarial.shape(), data.images.shape());
  // Every kept iterate lies in the ε-ball around its clean input (and in [0, 1]).
  const std::vector<float> adv = r.adversarial.to_vector<float>(), x = data.images.to_vector<float>();
  for (std::size_t i = 0; i < adv.size(); ++i) {
    EXPECT_LE(std::fabs(adv[i] - x[i]), 0.1f + 1e-6f) << i;
    EXPECT_GE(adv[i], 0.0f);
    EXPECT_LE(adv[i], 1.0f);
  }
  ASSERT_EQ(progress.labels, std::vector<std::string>{"attack pgd"});
  EXPECT_EQ(progress.totals[0], 70);
  EXPECT_EQ(progress.last_done[0], 70);
  EXPECT_EQ(progress.ended, 1);
  // The same attack by hand on the same batches: the same per-example outcome.
  for (std::int64_t b = 0; b < 70; b += 32) {
    const std::int64_t e = std::min<std::int64_t>(70, b + 32);
    const attacks::AttackResult a =
        attacks::pgd(*t.model, data.images.rows(b, e).clone(), data.labels.rows(b, e).clone(), o.attack);
    const std::vector<std::int32_t> success = a.success.to_vector<std::int32_t>();
    for (std::int64_t i = 0; i < e - b; ++i) {
      if (success[static_cast<std::size_t>(i)]) {
        EXPECT_EQ(r.robust[static_cast<std::size_t>(b + i)], 0) << b + i;
      }
    }
  }
}

TEST(Evaluate, ZeroRadiusKeepsCleanAccuracyAndBadOptionsAreRefused) {
  const auto& t = testing::trained_digits_mlp();
  const nn::Dataset data = first(t.test, 40);
  attacks::EvaluationOptions o;
  o.method = attacks::AttackMethod::Fgsm;
  o.attack.eps = Tensor::full({1}, 0.0f);
  const attacks::Evaluation r = attacks::evaluate(*t.model, data, Device::cpu(), 10, o);
  EXPECT_DOUBLE_EQ(r.robust_accuracy, r.clean_accuracy);
  EXPECT_EQ(r.attack_success_rate, 0.0);
  o.batch_size = 0;
  EXPECT_THROW(attacks::evaluate(*t.model, data, Device::cpu(), 10, o), InvalidArgument);
  o.batch_size = 8;
  o.attack.targeted = true;
  EXPECT_THROW(attacks::evaluate(*t.model, data, Device::cpu(), 1, o), InvalidArgument);
  // Targeted: the target is (label + 1) mod K; a success means the prediction is the target.
  o.attack.eps = Tensor::full({1}, 0.3f);
  o.method = attacks::AttackMethod::Pgd;
  o.attack.steps = 10;
  const attacks::Evaluation targeted = attacks::evaluate(*t.model, data, Device::cpu(), 10, o);
  EXPECT_LT(targeted.robust_accuracy, targeted.clean_accuracy);
}

// ---- certify::run_certify ----------------------------------------------------------------------

TEST(CertifyRun, SweepsEverySigmaResumesAndMatchesCertifyExamples) {
  const auto& t = testing::trained_digits_mlp();
  const std::string dir = testing::make_temp_dir("certify_run");
  const std::string model_file = dir + "/m.bin";
  std::ofstream(model_file) << "stands in for the model file (only its fingerprint is recorded)";
  certify::SmoothedClassifier smoothed(*t.model, {1, 8, 8}, 10, Device::cpu());
  certify::CertifyRunOptions o;
  o.sigmas = {0.25, 0.5};
  o.smoothing.n0 = 20;
  o.smoothing.n = 200;
  o.smoothing.batch = 256;
  o.smoothing.seed = 4;
  o.inputs = {3, 30, {}};  // idx 0, 3, ..., 27
  o.out = dir + "/cert.tsv";
  o.model_file = model_file;
  o.data = "digits";
  RecordingProgress progress;
  const certify::CertifyRun r = certify::run_certify(smoothed, t.test, o, &progress);
  ASSERT_EQ(r.sweeps.size(), 2u);
  EXPECT_EQ(progress.labels, (std::vector<std::string>{"certify sigma 0.25", "certify sigma 0.5"}));
  EXPECT_EQ(progress.ended, 2);
  EXPECT_EQ(r.chunk, certify::chunk_size(256, 20, 200));
  for (const certify::SigmaSweep& s : r.sweeps) {
    EXPECT_EQ(s.file, certify::sigma_out_path(o.out, s.sigma));
    EXPECT_EQ(s.summary.inputs, 10);
    EXPECT_EQ(s.summary.written, 10);
    EXPECT_EQ(s.samples, 10 * (20 + 200));
    EXPECT_EQ(s.curve.certified_accuracy.size(), r.radii.size());
    const certify::SweepSettings settings = certify::read_settings(s.file);
    EXPECT_EQ(settings.smoothing.sigma, s.sigma);
    EXPECT_EQ(settings.inputs.skip, 3);
    EXPECT_EQ(settings.model_fingerprint, certify::file_fingerprint(model_file));
  }
  // The rows are CERTIFY's on those images with key indices = test-set indices.
  certify::SmoothingOptions s = o.smoothing;
  s.sigma = 0.25;
  const std::vector<std::int64_t> idx = certify::select_inputs(t.test.size(), o.inputs);
  const std::vector<certify::Certificate> direct = certify::certify_examples(smoothed, t.test, idx, s);
  const certify::SweepTsv tsv = certify::read_sweep_tsv(r.sweeps[0].file, false);
  ASSERT_EQ(tsv.rows.size(), idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    EXPECT_EQ(tsv.rows[i].idx, idx[i]);
    EXPECT_EQ(tsv.rows[i].predict, direct[i].prediction) << idx[i];
  }
  // A second run refuses to overwrite; resuming certifies nothing and reports the same summary.
  EXPECT_THROW(certify::run_certify(smoothed, t.test, o, nullptr), InvalidArgument);
  o.mode = certify::OpenMode::Resume;
  const certify::CertifyRun again = certify::run_certify(smoothed, t.test, o, nullptr);
  for (std::size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(again.sweeps[k].summary.written, 0);
    EXPECT_EQ(again.sweeps[k].summary.resumed, 10);
    EXPECT_EQ(again.sweeps[k].curve.certified_accuracy, r.sweeps[k].curve.certified_accuracy);
  }
  o.sigmas = {0.25, 0.25};
  testing::expect_error<InvalidArgument>([&] { certify::run_certify(smoothed, t.test, o, nullptr); }, "sigma 0.25",
                                         "twice");
}

// ---- privacy::plan_dp --------------------------------------------------------------------------

TEST(PlanDp, GivesTheRunsQStepsAndNoise) {
  nn::TrainOptions o;
  o.epochs = 3;
  o.batch_size = 50;
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.2;
  const privacy::DpPlan p = privacy::plan_dp(1000, o, dp);
  EXPECT_DOUBLE_EQ(p.sampling_rate, 0.05);
  EXPECT_EQ(p.steps_per_epoch, 20);
  EXPECT_EQ(p.steps, 60);
  EXPECT_EQ(p.noise_multiplier, 1.2);
  EXPECT_EQ(p.gradient_noise_multiplier, 1.2);
  EXPECT_DOUBLE_EQ(p.expected_batch_size, 50.0);
  // Calibration: the σ the accountant gives for the target.
  dp.noise.noise_multiplier = 0.0;
  dp.target_epsilon = 2.0;
  dp.accountant = privacy::Accountant::Prv;
  const privacy::DpPlan c = privacy::plan_dp(1000, o, dp);
  EXPECT_EQ(c.noise_multiplier, privacy::calibrate_noise_multiplier(privacy::Accountant::Prv, 2.0, 0.05, 60, 1e-5));
  // Adaptive clipping: σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2) with σ_b = qN/20 by default (Andrew et al. 2021, Thm 1).
  dp.noise.noise_multiplier = 1.0;
  dp.clipping = privacy::Clipping::Adaptive;
  const privacy::DpPlan a = privacy::plan_dp(1000, o, dp);
  EXPECT_DOUBLE_EQ(a.count_noise, 2.5);
  EXPECT_DOUBLE_EQ(a.gradient_noise_multiplier, 1.0 / std::sqrt(1.0 - 1.0 / 25.0));
  dp.adaptive.count_noise = 0.4;  // 2σ_b ≤ σ: the split is impossible
  EXPECT_THROW(privacy::plan_dp(1000, o, dp), InvalidArgument);
  // A resumed ledger: its steps come first, and its δ must be kept.
  privacy::PrivacyLedger previous;
  previous.phases = {{1.0, 0.05, 40}};
  previous.delta = 1e-5;
  previous.max_grad_norm = 1.0;
  dp.clipping = privacy::Clipping::Flat;
  EXPECT_EQ(privacy::plan_dp(1000, o, dp, &previous).steps_before, 40);
  dp.delta = 1e-6;
  EXPECT_THROW(privacy::plan_dp(1000, o, dp, &previous), InvalidArgument);
}

TEST(PlanDp, TrainingFollowsThePlanAndRefusesAnotherOnes) {
  const auto& t = testing::trained_digits_mlp();
  nn::TrainOptions o;
  o.epochs = 1;
  o.batch_size = 100;
  o.lr = 0.1f;
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  nn::Dataset train = first(t.test, 200);
  const privacy::DpPlan plan = privacy::plan_dp(train.size(), o, dp);
  auto model = nn::build_model({"mlp", {1, 8, 8}, 10, "", 5});
  const privacy::DpTrainResult r = privacy::train_dp_classifier(*model, train, o, dp, plan);
  EXPECT_EQ(r.steps, plan.steps);
  EXPECT_EQ(r.sampling_rate, plan.sampling_rate);
  EXPECT_EQ(r.noise_multiplier, plan.noise_multiplier);
  privacy::DpPlan other = plan;
  other.steps += 1;
  EXPECT_THROW(privacy::train_dp_classifier(*model, train, o, dp, other), InvalidArgument);
}

// ---- the jobs: files and a split in, a report out ------------------------------------------

nn::DatasetSplit small_digits() {
  nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  split.train = first(split.train, 300);
  split.test = first(split.test, 60);
  return split;
}

nn::TrainJob small_job(const std::string& out) {
  nn::TrainJob job;
  job.model = "mlp";
  job.train.epochs = 2;
  job.train.batch_size = 50;
  job.train.lr = 0.01f;
  job.train.optimizer = nn::OptimizerKind::Adam;
  job.train.seed = 3;
  job.out = out;
  job.dataset = "digits";
  return job;
}

TEST(TrainJob, ReportsTheLoopTheEvaluationAndTheFile) {
  const nn::DatasetSplit split = small_digits();
  const std::string dir = testing::make_temp_dir("train_job");
  RecordingProgress progress;
  const nn::TrainReport r = nn::run_training(small_job(dir + "/m.safetensors"), split, &progress);
  EXPECT_EQ(r.model, "mlp");
  EXPECT_EQ(r.steps, 12);  // 2 epochs of 300 / 50
  EXPECT_EQ(progress.labels, (std::vector<std::string>{"epoch 1/2", "epoch 2/2", "test"}));
  ASSERT_EQ(progress.infos.size(), 1u);
  EXPECT_NE(progress.infos[0].find("training mlp"), std::string::npos) << progress.infos[0];
  // The file holds the trained weights: evaluating it gives the report's test accuracy.
  nn::LoadedClassifier loaded = nn::load_classifier(r.out);
  EXPECT_EQ(loaded.metadata.at("aegis.dataset"), "digits");
  const nn::EvalResult ev = nn::evaluate(*loaded.model, split.test, Device::cpu());
  EXPECT_DOUBLE_EQ(ev.accuracy, r.test_accuracy);
  const nlohmann::json j = nn::to_json(r);
  EXPECT_EQ(j.at("steps").get<std::int64_t>(), 12);
  EXPECT_DOUBLE_EQ(j.at("test_accuracy").get<double>(), r.test_accuracy);
  EXPECT_EQ(j.at("optimizer").get<std::string>(), "adam");
}

TEST(DpJob, SealsTheLedgerAndResumesOnlyFromAVerifiedOne) {
  const nn::DatasetSplit split = small_digits();
  const std::string dir = testing::make_temp_dir("dp_job");
  privacy::DpJob job;
  job.job = small_job(dir + "/dp.safetensors");
  job.job.train.optimizer = nn::OptimizerKind::Sgd;
  job.job.train.lr = 1.0f;
  job.dp.noise.noise_multiplier = 1.0;
  job.dp.delta = 1e-2;  // not below 1/N = 1/300: warned
  RecordingProgress progress;
  const privacy::DpReport r = privacy::run_dp_training(job, split, &progress);
  EXPECT_GT(r.epsilon, 0.0);
  EXPECT_EQ(r.total_steps, r.training.steps);
  ASSERT_EQ(progress.warnings.size(), 1u);
  EXPECT_NE(progress.warnings[0].find("1/N"), std::string::npos) << progress.warnings[0];
  const nlohmann::json j = privacy::to_json(r);
  EXPECT_DOUBLE_EQ(j.at("epsilon").get<double>(), r.epsilon);
  EXPECT_EQ(j.at("accountant").get<std::string>(), "rdp");

  // Resuming composes the ledger: more steps, more epsilon.
  privacy::DpJob more = job;
  more.resume = r.training.out;
  more.job.out = dir + "/dp2.safetensors";
  const privacy::DpReport r2 = privacy::run_dp_training(more, split);
  EXPECT_EQ(r2.total_steps, 2 * r.total_steps);
  EXPECT_GT(r2.epsilon, r.epsilon);
  // A standard model file carries no ledger to continue.
  const nn::TrainReport plain = nn::run_training(small_job(dir + "/plain.safetensors"), split);
  more.resume = plain.out;
  testing::expect_error<InvalidArgument>([&] { privacy::run_dp_training(more, split); }, plain.out,
                                         "carries no privacy ledger");
  // Gaussian augmentation with copies under DP (DP-CERT): the file carries the same ledger as the
  // plain run beside the augmentation σ, and the digest verifies.
  privacy::DpJob noisy = job;
  noisy.job.train.noise_sigma = 0.25f;
  noisy.dp.augmult = 2;
  noisy.job.out = dir + "/dp_noisy.safetensors";
  const privacy::DpReport rn = privacy::run_dp_training(noisy, split);
  EXPECT_EQ(rn.epsilon, r.epsilon);
  EXPECT_EQ(rn.augmult, 2);
  const nn::LoadedClassifier noisy_file = nn::load_classifier(rn.training.out);
  EXPECT_EQ(std::stod(noisy_file.metadata.at("aegis.noise_sigma")), 0.25);
  EXPECT_EQ(privacy::verify_ledger(noisy_file.metadata, *noisy_file.model).status, privacy::LedgerStatus::Verified);
}

TEST(AdvJob, RecordsMethodAndRadius) {
  const nn::DatasetSplit split = small_digits();
  const std::string dir = testing::make_temp_dir("adv_job");
  attacks::AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::Pgd;
  adv.eps = 0.05f;
  adv.steps = 2;
  const attacks::AdvReport r = attacks::run_adversarial_training(small_job(dir + "/adv.safetensors"), adv, split);
  EXPECT_EQ(r.adv_method, "pgd");
  EXPECT_EQ(r.adv_epochs_run, 2);
  const nn::LoadedClassifier loaded = nn::load_classifier(r.training.out);
  EXPECT_EQ(loaded.metadata.at("aegis.adv_method"), "pgd");
  adv.eps = 0.0f;
  EXPECT_THROW(attacks::run_adversarial_training(small_job(dir + "/bad.safetensors"), adv, split), InvalidArgument);
}

TEST(FileJobs, CertifyAndVerifyAModelFileAsTheInMemoryCallsDo) {
  const nn::DatasetSplit split = small_digits();
  const std::string dir = testing::make_temp_dir("file_jobs");
  const nn::TrainReport trained = nn::run_training(small_job(dir + "/m.safetensors"), split);

  certify::CertifyRunOptions o;
  o.sigmas = {0.25};
  o.smoothing.n0 = 10;
  o.smoothing.n = 100;
  o.smoothing.seed = 2;
  o.inputs = {5, 60, {}};
  o.out = dir + "/cert.tsv";
  o.model_file = trained.out;
  o.data = "digits";
  const certify::CertifyFileReport c = certify::certify_file(o, testing::source_dir() + "/data", Device::cpu());
  EXPECT_EQ(c.model, "mlp");
  ASSERT_EQ(c.run.sweeps.size(), 1u);
  EXPECT_EQ(c.run.sweeps[0].summary.inputs, 12);  // idx 0, 5, ..., 55
  const nlohmann::json cj = certify::to_json(c);
  EXPECT_EQ(cj.at("sweeps").at(0).at("inputs").get<std::int64_t>(), 12);
  EXPECT_EQ(cj.at("shard").get<std::string>(), "0/1");
  // The same rows as the in-memory call on the loaded model.
  nn::LoadedClassifier loaded = nn::load_classifier(trained.out);
  certify::SmoothedClassifier smoothed(*loaded.model, loaded.spec.input_shape, 10, Device::cpu());
  certify::CertifyRunOptions again = o;
  again.out = dir + "/cert2.tsv";
  const certify::CertifyRun direct = certify::run_certify(smoothed, split.test, again);
  EXPECT_EQ(direct.sweeps[0].summary.correct, c.run.sweeps[0].summary.correct);
  EXPECT_EQ(direct.sweeps[0].curve.acr, c.run.sweeps[0].curve.acr);

  certify::VerifyRunOptions v;
  v.methods = certify::parse_bound_methods("both");
  v.bound.eps = 0.01;
  v.inputs = {1, 60, {}};
  RecordingProgress progress;
  const std::string data_dir = testing::source_dir() + "/data";
  const certify::VerifyFileReport vr =
      certify::verify_file(trained.out, "digits", data_dir, v, Device::cpu(), &progress);
  EXPECT_EQ(progress.labels, (std::vector<std::string>{"verify ibp", "verify crown"}));
  EXPECT_EQ(progress.ended, 2);
  ASSERT_EQ(vr.run.results.size(), 2u);
  // CROWN is at least as tight as IBP.
  EXPECT_GE(vr.run.results[1].verified_accuracy, vr.run.results[0].verified_accuracy);
  const nlohmann::json vj = certify::to_json(vr);
  EXPECT_EQ(vj.at("method").get<std::string>(), "both");
  EXPECT_DOUBLE_EQ(vj.at("verified_accuracy_crown").get<double>(), vr.run.results[1].verified_accuracy);
  EXPECT_THROW(certify::parse_bound_methods("all"), InvalidArgument);
  EXPECT_THROW(certify::parse_relu_relaxation("wong"), InvalidArgument);
  // eval: the test accuracy of the file, and its (absent) ledger.
  RecordingProgress eval_progress;
  const privacy::EvalFileReport ev =
      privacy::evaluate_model_file(trained.out, "digits", data_dir, Device::cpu(), &eval_progress);
  EXPECT_EQ(eval_progress.labels, (std::vector<std::string>{"eval"}));
  EXPECT_EQ(ev.eval.total, nn::load_dataset("digits", data_dir).test.size());  // the whole test split
  EXPECT_EQ(ev.ledger.status, privacy::LedgerStatus::None);
  EXPECT_EQ(privacy::to_json(ev).at("ledger_status").get<std::string>(), privacy::ledger_status_name(ev.ledger.status));
  const nlohmann::json rj = privacy::to_json(privacy::describe_model_file(trained.out));
  EXPECT_EQ(rj.at("model").get<std::string>(), "mlp");
  EXPECT_TRUE(rj.at("ledger").is_null());
  // A missing model file is named before the dataset is read.
  testing::expect_error<IoError>(
      [&] { certify::verify_file(dir + "/absent.safetensors", "nosuch", data_dir, v, Device::cpu()); },
      dir + "/absent.safetensors", "");
}

TEST(PixelDpJobs, TrainThenCertifyTheFile) {
  const nn::DatasetSplit split = small_digits();
  const std::string dir = testing::make_temp_dir("pixeldp_jobs");
  certify::PixelDpTrainJob job;
  job.model = "mlp";
  job.params.L = 0.1;
  job.params.eps = 1.0;
  job.params.delta = 0.05;
  job.options.train.epochs = 1;
  job.options.train.batch_size = 50;
  job.options.train.lr = 0.01f;
  job.options.train.optimizer = nn::OptimizerKind::Adam;
  job.out = dir + "/p.safetensors";
  job.dataset = "digits";
  const certify::PixelDpTrainReport t = certify::run_pixeldp_training(job, split);
  EXPECT_EQ(t.norm, "l2");
  EXPECT_EQ(t.steps, 6);
  EXPECT_LE(t.sensitivity, t.sensitivity_bound * (1 + 1e-6));
  certify::PixelDpCertifyJob c;
  c.model_file = t.out;
  c.dataset = "digits";
  c.data_dir = testing::source_dir() + "/data";
  c.options.certify.draws = 50;
  c.max = 20;
  const certify::PixelDpCertifyReport r = certify::run_pixeldp_certify_file(c);
  EXPECT_EQ(r.examples, 20);
  EXPECT_EQ(r.run.certified_accuracy.size(), c.options.thresholds.size());
  ASSERT_TRUE(r.max_robustness_size.has_value());
  const nlohmann::json j = certify::to_json(r);
  EXPECT_EQ(j.at("certified_accuracy").size(), c.options.thresholds.size());
  EXPECT_FALSE(j.contains("attack"));
}

TEST(AttackJob, NamesChecksAndReportsAsEvaluate) {
  const auto& t = testing::trained_digits_mlp();
  const nn::Dataset data = first(t.test, 40);
  nn::ModelSpec spec;
  spec.name = "mlp";
  spec.num_classes = 10;
  attacks::AttackJob job;
  job.attack = "pgd-linf";
  job.eps = 0.1f;
  attacks::check_attack_job(job);
  EXPECT_EQ(job.steps, 10);  // the default filled in
  const attacks::AttackReport r = attacks::run_attack_job(*t.model, spec, data, Device::cpu(), job);
  ASSERT_TRUE(r.single.has_value());
  EXPECT_FALSE(r.suite.has_value());
  // The same numbers as attacks::evaluate with the options the name stands for.
  attacks::EvaluationOptions o;
  o.method = attacks::AttackMethod::Pgd;
  o.attack.eps = Tensor::full({1}, 0.1f);
  o.attack.steps = 10;
  o.batch_size = job.batch;
  const attacks::Evaluation e = attacks::evaluate(*t.model, data, Device::cpu(), 10, o);
  EXPECT_EQ(r.single->robust, e.robust);
  const nlohmann::json j = attacks::to_json(r);
  EXPECT_EQ(j.at("norm").get<std::string>(), "linf");
  EXPECT_EQ(j.at("steps").get<int>(), 10);
  EXPECT_DOUBLE_EQ(j.at("robust_accuracy").get<double>(), e.robust_accuracy);
  // FGSM reports no steps; options that do not apply are refused before any work.
  attacks::AttackJob fgsm = job;
  fgsm.attack = "fgsm";
  fgsm.steps = 0;
  attacks::check_attack_job(fgsm);
  EXPECT_FALSE(attacks::to_json(attacks::run_attack_job(*t.model, spec, data, Device::cpu(), fgsm)).contains("steps"));
  attacks::AttackJob bad = job;
  bad.attack = "pgd-linf";
  bad.norm = "l2";
  EXPECT_THROW(attacks::check_attack_job(bad), InvalidArgument);
  bad = job;
  bad.attack = "suite";
  bad.targeted = true;
  EXPECT_THROW(attacks::check_attack_job(bad), InvalidArgument);
  bad = job;
  bad.attack = "nosuch";
  EXPECT_THROW(attacks::check_attack_job(bad), InvalidArgument);
  bad = job;
  bad.eps = -1.0f;  // only C&W may leave the radius out
  EXPECT_THROW(attacks::check_attack_job(bad), InvalidArgument);
}

}  // namespace
}  // namespace aegis
