// The privacy ledger's digest (privacy/ledger_digest.h) and what reads it: describe_model_file
// (privacy/model_report.h), `aegis eval`, `aegis report` and `aegis train --dp --resume`.
// Files are tampered with through the safetensors reader and writer, the way an edit outside
// aegis would change them: metadata text or tensor bytes, nothing else.
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "nn/model_file.h"
#include "nn/serialize.h"
#include "privacy/ledger_digest.h"
#include "privacy/model_report.h"
#include "support/testing.h"

namespace aegis {
namespace {

using privacy::LedgerStatus;
using testing::CliRun;
using testing::run_cli;

std::string temp_path(const std::string& name) {
  static const std::string dir = testing::make_temp_dir("aegis_ledger");
  return (std::filesystem::path(dir) / name).string();
}

privacy::PrivacyLedger two_phase_ledger() {
  privacy::PrivacyLedger l;
  l.phases = {{1.1, 0.1, 30}, {2.0, 0.05, 40}};
  l.max_grad_norm = 1.0;
  l.delta = 1e-4;
  l.epsilon = 2.5;
  l.accountant = privacy::Accountant::Rdp;
  l.clipping = privacy::Clipping::Flat;
  return l;
}

const nn::ModelSpec kSpec{"mlp", {1, 8, 8}, 10, "", 3};

// A DP model file as `aegis train --dp` writes one: the sealed ledger plus other metadata.
std::string write_dp_model(const std::string& name) {
  const std::string path = temp_path(name);
  auto model = nn::build_model(kSpec);
  std::map<std::string, std::string> meta = privacy::sealed_ledger_metadata(two_phase_ledger(), *model);
  meta["aegis.dataset"] = "digits";
  nn::save_classifier(path, *model, kSpec, meta);
  return path;
}

// Rewrites `path` with its tensors in file order and metadata passed through `edit`.
void edit_file(const std::string& path, const std::function<void(nn::SafetensorsFile&)>& edit) {
  nn::SafetensorsFile f = nn::load_safetensors(path);
  edit(f);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : f.order) tensors.emplace_back(name, f.tensors.at(name));
  nn::save_safetensors(path, tensors, f.metadata);
}

LedgerStatus status_of(const std::string& path) {
  return privacy::describe_model_file(path).ledger_check.status;
}

TEST(LedgerDigest, MatchesAnIndependentBlake2bOfTheDocumentedLayout) {
  // Python: hashlib.blake2b(serialization, digest_size=32) over the v1 layout of
  // privacy/ledger_digest.cpp, written out by hand for these two tensors and one ledger entry.
  const std::map<std::string, std::string> meta{{"aegis.dp.epsilon", "1.5"}, {"aegis.dataset", "x"}};
  const Tensor a = Tensor::from_vector<float>({0.5f}, {1});
  const Tensor b = Tensor::from_vector<std::int32_t>({1, -2}, {1, 2});
  const std::string expected = "blake2b-256:v1:0277844f5a622eedfa85236ee9693aa211a6447efcb20a1a0e6288795185187e";
  EXPECT_EQ(privacy::ledger_digest(meta, {{"b", b}, {"a", a}}), expected);
  // Tensor order does not matter; metadata outside "aegis.dp." is not covered.
  EXPECT_EQ(privacy::ledger_digest({{"aegis.dp.epsilon", "1.5"}}, {{"a", a}, {"b", b}}), expected);
  EXPECT_NE(privacy::ledger_digest({{"aegis.dp.epsilon", "1.50"}}, {{"a", a}, {"b", b}}), expected);
  // A name, a shape or a dtype is covered as well as the bytes.
  EXPECT_NE(privacy::ledger_digest(meta, {{"a", a}, {"c", b}}), expected);
  EXPECT_NE(privacy::ledger_digest(meta, {{"a", a}, {"b", Tensor::from_vector<std::int32_t>({1, -2}, {2})}}), expected);
  EXPECT_NE(privacy::ledger_digest(meta, {{"a", a}, {"b", Tensor::from_vector<float>({1.0f, -2.0f}, {1, 2})}}),
            expected);
  EXPECT_THROW(privacy::ledger_digest(meta, {{"a", a}, {"a", b}}), InvalidArgument);
}

TEST(LedgerDigest, UntouchedDpModelVerifiesAndReportsItsLedger) {
  const std::string path = write_dp_model("untouched.safetensors");
  const privacy::ModelReport r = privacy::describe_model_file(path);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::Verified) << r.ledger_check.detail;
  ASSERT_TRUE(r.ledger.has_value()) << r.ledger_error;
  EXPECT_EQ(r.ledger->phases.size(), 2u);
  EXPECT_EQ(r.ledger->steps(), 70);
  EXPECT_DOUBLE_EQ(r.ledger->epsilon, 2.5);
  EXPECT_EQ(r.spec.name, "mlp");
  EXPECT_EQ(r.spec.input_shape, (Shape{1, 8, 8}));
  EXPECT_EQ(r.format, "classifier-1");
  EXPECT_EQ(r.parameters, 64 * 256 + 256 + 256 * 10 + 10);
  EXPECT_EQ(r.tensors, 4);
  // Training metadata is reported; the ledger, the digest and the architecture keys are not repeated there.
  EXPECT_EQ(r.training, (std::map<std::string, std::string>{{"aegis.dataset", "digits"}}));
  // Metadata outside the ledger may change without breaking it.
  edit_file(path, [](nn::SafetensorsFile& f) { f.metadata["aegis.dataset"] = "renamed"; });
  EXPECT_EQ(status_of(path), LedgerStatus::Verified);
}

TEST(LedgerDigest, EditedEpsilonDoesNotVerify) {
  const std::string path = write_dp_model("epsilon.safetensors");
  edit_file(path, [](nn::SafetensorsFile& f) { f.metadata["aegis.dp.epsilon"] = "0.5"; });
  const privacy::ModelReport r = privacy::describe_model_file(path);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::Mismatch);
  EXPECT_NE(r.ledger_check.detail.find("ledger does not match this model"), std::string::npos);
  ASSERT_TRUE(r.ledger.has_value());  // still shown, for what it claims
  EXPECT_DOUBLE_EQ(r.ledger->epsilon, 0.5);
}

TEST(LedgerDigest, OneChangedWeightBitDoesNotVerify) {
  const std::string path = write_dp_model("weight.safetensors");
  edit_file(path, [](nn::SafetensorsFile& f) {
    Tensor& w = f.tensors.at(f.order.back());
    static_cast<unsigned char*>(w.raw_data())[w.nbytes() - 1] ^= 0x01;  // the last float's lowest bit
  });
  EXPECT_EQ(status_of(path), LedgerStatus::Mismatch);
}

TEST(LedgerDigest, RemovedPhaseDoesNotVerify) {
  const std::string path = write_dp_model("phase.safetensors");
  edit_file(path, [](nn::SafetensorsFile& f) {
    nlohmann::json phases = nlohmann::json::parse(f.metadata.at("aegis.dp.phases"));
    phases.erase(phases.begin());
    f.metadata["aegis.dp.phases"] = phases.dump();
    f.metadata["aegis.dp.steps"] = "40";  // a consistent edit, as someone hiding a phase would make
  });
  const privacy::ModelReport r = privacy::describe_model_file(path);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::Mismatch);
  ASSERT_TRUE(r.ledger.has_value());
  EXPECT_EQ(r.ledger->phases.size(), 1u);
}

TEST(LedgerDigest, DroppedOrAddedLedgerEntryDoesNotVerify) {
  const std::string dropped = write_dp_model("dropped.safetensors");
  edit_file(dropped, [](nn::SafetensorsFile& f) { f.metadata.erase("aegis.dp.secure"); });
  const privacy::ModelReport r = privacy::describe_model_file(dropped);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::Mismatch);
  EXPECT_FALSE(r.ledger.has_value());  // the ledger no longer parses: reported, not thrown
  EXPECT_NE(r.ledger_error.find("malformed privacy ledger"), std::string::npos) << r.ledger_error;

  const std::string added = write_dp_model("added.safetensors");
  edit_file(added, [](nn::SafetensorsFile& f) { f.metadata["aegis.dp.note"] = "x"; });
  EXPECT_EQ(status_of(added), LedgerStatus::Mismatch);

  // The whole ledger removed while the digest stays: a mismatch, not a non-DP model.
  const std::string removed = write_dp_model("removed.safetensors");
  edit_file(removed, [](nn::SafetensorsFile& f) {
    for (auto it = f.metadata.begin(); it != f.metadata.end();)
      it = it->first.rfind("aegis.dp.", 0) == 0 ? f.metadata.erase(it) : std::next(it);
  });
  EXPECT_EQ(status_of(removed), LedgerStatus::Mismatch);
}

TEST(LedgerDigest, MissingOrForeignDigestIsUnverifiable) {
  const std::string path = write_dp_model("nodigest.safetensors");
  edit_file(path, [](nn::SafetensorsFile& f) { f.metadata.erase(privacy::kLedgerDigestKey); });
  const privacy::ModelReport r = privacy::describe_model_file(path);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::NoDigest);
  EXPECT_NE(r.ledger_check.detail.find("ledger not verifiable (no digest)"), std::string::npos);
  EXPECT_TRUE(r.ledger.has_value());

  edit_file(path, [](nn::SafetensorsFile& f) { f.metadata[privacy::kLedgerDigestKey] = "sha3-256:v9:00"; });
  EXPECT_EQ(status_of(path), LedgerStatus::UnknownForm);
  // A digest of the known form but damaged is a mismatch.
  edit_file(path, [](nn::SafetensorsFile& f) { f.metadata[privacy::kLedgerDigestKey] = "blake2b-256:v1:00"; });
  EXPECT_EQ(status_of(path), LedgerStatus::Mismatch);
}

TEST(LedgerDigest, NonDpModelHasNoLedger) {
  const std::string path = temp_path("plain.safetensors");
  nn::save_classifier(path, *nn::build_model(kSpec), kSpec, {{"aegis.dataset", "digits"}});
  const privacy::ModelReport r = privacy::describe_model_file(path);
  EXPECT_EQ(r.ledger_check.status, LedgerStatus::None);
  EXPECT_FALSE(r.ledger.has_value());
  EXPECT_TRUE(r.ledger_error.empty());
}

// ---- the command line ----------------------------------------------------------------------

constexpr const char* kDpTrain =
    "train --data digits --model mlp --dp --noise-multiplier 1.0 --delta 1e-4 "
    "--batch-size 150 --epochs 1 --optimizer sgd --lr 2 --device cpu --quiet";

std::string resume_command(const std::string& from, const std::string& out) {
  return "train --data digits --dp --resume " + from +
         " --noise-multiplier 2.0 --delta 1e-4 --batch-size 150 "
         "--epochs 1 --optimizer sgd --lr 2 --device cpu --json --quiet --out " +
         out;
}

TEST(LedgerCli, EvalAndReportShowVerificationAndResumeRefusesAMismatch) {
  const std::string model = temp_path("cli_dp.safetensors");
  const CliRun t = run_cli(std::string(kDpTrain) + " --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;

  const CliRun e = run_cli("eval --model " + model + " --data digits --device cpu --json --quiet");
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["ledger_status"], "verified");
  const CliRun et = run_cli("eval --model " + model + " --data digits --device cpu --quiet");
  ASSERT_EQ(et.status, 0) << et.err;
  EXPECT_NE(et.out.find("privacy ledger: ledger verified"), std::string::npos) << et.out;

  const CliRun r = run_cli("report " + model + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ledger_status"], "verified");
  EXPECT_EQ(j["model"], "mlp");
  EXPECT_EQ(j["input_shape"], nlohmann::json::array({1, 8, 8}));
  EXPECT_EQ(j["training"]["aegis.dataset"], "digits");
  EXPECT_EQ(j["ledger"]["steps"], 10);  // one epoch at q = 150/1500
  EXPECT_EQ(j["ledger"]["phases"].size(), 1u);
  EXPECT_EQ(j["ledger"]["accountant"], "rdp");
  const CliRun rt = run_cli("report " + model);
  ASSERT_EQ(rt.status, 0) << rt.err;
  EXPECT_NE(rt.out.find("verification  ledger verified"), std::string::npos) << rt.out;
  EXPECT_NE(rt.out.find("phase 1: noise multiplier 1, sampling rate 0.1, 10 steps"), std::string::npos) << rt.out;

  // A resumed run verifies too: its new ledger is sealed over its new weights.
  const std::string resumed = temp_path("cli_dp_resumed.safetensors");
  const CliRun ok = run_cli(resume_command(model, resumed));
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(status_of(resumed), LedgerStatus::Verified);

  // ε lowered by hand: eval and report say so (and still succeed); resume refuses.
  edit_file(model, [](nn::SafetensorsFile& f) { f.metadata["aegis.dp.epsilon"] = "0.01"; });
  const CliRun e2 = run_cli("eval --model " + model + " --data digits --device cpu --json --quiet");
  ASSERT_EQ(e2.status, 0) << e2.err;
  EXPECT_EQ(nlohmann::json::parse(e2.out)["ledger_status"], "mismatch");
  const CliRun r2 = run_cli("report " + model);
  ASSERT_EQ(r2.status, 0) << r2.err;
  EXPECT_NE(r2.out.find("NOT verified"), std::string::npos) << r2.out;
  EXPECT_NE(r2.out.find("verification  ledger does not match this model"), std::string::npos) << r2.out;
  const std::string refused = temp_path("cli_never_written.safetensors");
  const CliRun bad = run_cli(resume_command(model, refused));
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err, "aegis: error: " + model +
                         ": ledger does not match this model: the ledger or the weights changed after the DP run "
                         "wrote them\n");
  EXPECT_FALSE(std::filesystem::exists(refused));
}

TEST(LedgerCli, ResumeFromALedgerWithoutDigestNeedsTrust) {
  const std::string model = temp_path("cli_old.safetensors");
  const CliRun t = run_cli(std::string(kDpTrain) + " --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  edit_file(model, [](nn::SafetensorsFile& f) { f.metadata.erase(privacy::kLedgerDigestKey); });
  const CliRun r = run_cli("report " + model + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ledger_status"], "no-digest");

  const std::string out = temp_path("cli_old_resumed.safetensors");
  const CliRun refused = run_cli(resume_command(model, out));
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("aegis: error: " + model + ": ledger not verifiable (no digest)"), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("--trust-unverified-ledger"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(out));

  const CliRun trusted = run_cli(resume_command(model, out) + " --trust-unverified-ledger");
  ASSERT_EQ(trusted.status, 0) << trusted.err;
  EXPECT_EQ(nlohmann::json::parse(trusted.out)["total_steps"], 20);
  EXPECT_EQ(status_of(out), LedgerStatus::Verified);

  // Trust does not stretch to a ledger without phases: there is nothing to compose.
  edit_file(model, [](nn::SafetensorsFile& f) { f.metadata.erase("aegis.dp.phases"); });
  const std::string never = temp_path("cli_old_never_written.safetensors");
  const CliRun empty = run_cli(resume_command(model, never) + " --trust-unverified-ledger");
  EXPECT_EQ(empty.status, 1);
  EXPECT_EQ(empty.err, "aegis: error: " + model + ": the privacy ledger has no phases\n");
  EXPECT_FALSE(std::filesystem::exists(never));

  const CliRun stray = run_cli(std::string(kDpTrain) + " --trust-unverified-ledger --out " + out);
  EXPECT_EQ(stray.status, 1);
  EXPECT_EQ(stray.err, "aegis: error: --trust-unverified-ledger needs --resume\n");
}

TEST(LedgerCli, NonDpModelAndBadInput) {
  const std::string model = temp_path("cli_plain.safetensors");
  const CliRun t = run_cli("train --data digits --model mlp --epochs 1 --device cpu --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const CliRun r = run_cli("report " + model + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ledger_status"], "none");
  EXPECT_TRUE(j["ledger"].is_null());
  const CliRun e = run_cli("eval --model " + model + " --data digits --device cpu --json --quiet");
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["ledger_status"], "none");
  const CliRun resume = run_cli(resume_command(model, temp_path("cli_plain_resumed.safetensors")));
  EXPECT_EQ(resume.status, 1);
  EXPECT_EQ(resume.err, "aegis: error: " + model + " carries no privacy ledger: it was not trained with --dp\n");

  const std::string missing = temp_path("nosuch.safetensors");
  const CliRun m = run_cli("report " + missing);
  EXPECT_EQ(m.status, 1);
  EXPECT_EQ(m.err.rfind("aegis: error: " + missing + ": cannot open", 0), 0u) << m.err;
  EXPECT_EQ(m.err.find('\n'), m.err.size() - 1) << "one line: " << m.err;
  const CliRun none = run_cli("report");
  EXPECT_EQ(none.status, 1);
  EXPECT_EQ(none.err.rfind("aegis: error: ", 0), 0u) << none.err;
}

}  // namespace
}  // namespace aegis
