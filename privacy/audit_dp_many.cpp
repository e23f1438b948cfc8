// The many-run audit of privacy/audit_dp.h: 2R DP-SGD runs, one gradient or input canary, a
// threshold chosen on half of the runs and the Clopper–Pearson ε bound on the other half; with a
// runs directory, resumable from its run records.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mpi.h"
#include "core/philox.h"
#include "core/work_farm.h"
#include "privacy/audit_canary.h"
#include "privacy/audit_dp.h"
#include "privacy/audit_farm.h"
#include "privacy/audit_stats.h"

namespace aegis::privacy {

namespace {

struct Run {
  bool canary = false;     // trained with the canary
  bool selection = false;  // in the half that chooses the threshold
  std::uint64_t seed = 0;  // its training seed
  double score = 0.0;
};

struct Counts {
  std::int64_t false_positives = 0, false_negatives = 0, negatives = 0, positives = 0;
};

Counts count(const std::vector<Run>& runs, bool selection, double threshold) {
  Counts c;
  for (const Run& r : runs) {
    if (r.selection != selection) continue;
    const bool guess_in = r.score >= threshold;
    if (r.canary) {
      ++c.positives;
      c.false_negatives += guess_in ? 0 : 1;
    } else {
      ++c.negatives;
      c.false_positives += guess_in ? 1 : 0;
    }
  }
  return c;
}

double bound(const Counts& c, double delta, double confidence) {
  return many_run_epsilon(c.false_positives, c.negatives, c.false_negatives, c.positives, delta, confidence);
}

// τ of the highest bound on the selection half, among the midpoints between consecutive distinct
// selection scores and ±∞ (the midpoint leaves equal room on both sides for the evaluation runs);
// ties go to the most right guesses, then to the lowest τ. The evaluation half is never looked at.
double choose_threshold(const std::vector<Run>& runs, double delta, double confidence) {
  std::vector<double> scores;
  for (const Run& r : runs)
    if (r.selection) scores.push_back(r.score);
  std::sort(scores.begin(), scores.end());
  std::vector<double> candidates = {-INFINITY};
  for (std::size_t i = 0; i + 1 < scores.size(); ++i)
    if (scores[i] < scores[i + 1]) candidates.push_back(0.5 * (scores[i] + scores[i + 1]));
  candidates.push_back(INFINITY);
  double best_tau = INFINITY, best_eps = -1.0;
  std::int64_t best_right = -1;
  for (double tau : candidates) {
    const Counts c = count(runs, true, tau);
    const double eps = bound(c, delta, confidence);
    const std::int64_t right = c.negatives + c.positives - c.false_positives - c.false_negatives;
    if (eps > best_eps || (eps == best_eps && right > best_right)) best_tau = tau, best_eps = eps, best_right = right;
  }
  return best_tau;
}

// Everything that decides the runs (their scores), so that a record is reused only for the same
// audit. The confidence is left out: it only reads the scores.
std::string settings(const DpAuditJob& j) {
  const nn::TrainJob& t = j.training.job;
  const nn::TrainOptions& o = t.train;
  const DpTrainOptions& d = j.training.dp;
  std::ostringstream os;
  os.precision(17);
  os << "v1 model=" << t.model << " activation=" << t.activation << " init=" << t.init << " dataset=" << t.dataset
     << " epochs=" << o.epochs << " batch=" << o.batch_size << " lr=" << o.lr
     << " optimizer=" << nn::optimizer_name(o.optimizer) << " momentum=" << o.momentum
     << " schedule=" << nn::schedule_name(o.schedule) << " train_seed=" << o.seed
     << " sigma=" << d.noise.noise_multiplier << " C=" << d.noise.max_grad_norm << " eps=" << d.target_epsilon
     << " delta=" << d.delta << " q=" << (d.sampling_rate ? *d.sampling_rate : 0.0)
     << " accountant=" << accountant_name(d.accountant) << " canary=" << canary_kind_name(j.audit.canary)
     << " audit_seed=" << j.audit.seed << " runs=" << j.audit.runs << " noise_scale=" << j.audit.noise_scale;
  return os.str();
}

void write_runs(const std::string& path, const std::vector<Run>& runs) {
  std::ostringstream os;
  os << "run\tcanary\thalf\tseed\tscore\n";
  char score[32];
  for (std::size_t i = 0; i < runs.size(); ++i) {
    std::snprintf(score, sizeof score, "%.9g", runs[i].score);
    os << i << '\t' << (runs[i].canary ? 1 : 0) << '\t' << (runs[i].selection ? "selection" : "evaluation") << '\t'
       << runs[i].seed << '\t' << score << '\n';
  }
  const std::string text = os.str();
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace

nlohmann::json to_json(const ManyRunAuditReport& r) {
  return {{"command", "audit dp"},
          {"method", "many-run, " + r.canary + " canary"},
          {"canary", r.canary},
          {"runs_trained", r.runs_trained},
          {"runs_reused", r.runs_reused},
          {"runs_dir", r.runs_dir},
          {"runs", r.runs},
          {"threshold", r.threshold},
          {"selection_false_positives", r.selection_false_positives},
          {"selection_false_negatives", r.selection_false_negatives},
          {"negatives", r.negatives},
          {"positives", r.positives},
          {"false_positives", r.false_positives},
          {"false_negatives", r.false_negatives},
          {"fpr_upper", r.fpr_upper},
          {"fnr_upper", r.fnr_upper},
          {"confidence", r.confidence},
          {"epsilon_lower", r.epsilon_lower},
          {"epsilon_ceiling", r.epsilon_ceiling},
          {"epsilon_accounted", r.epsilon_accounted},
          {"delta", r.delta},
          {"failed", r.failed},
          {"seconds_per_run", r.seconds_per_run},
          {"scores_out", r.scores_out},
          {"training", to_json(r.training)}};
}

ManyRunAuditReport run_many_run_dp_audit(const DpAuditJob& job, const nn::DatasetSplit& split, ProgressSink* progress) {
  const DpAuditOptions& a = job.audit;
  const std::int64_t per_kind = a.runs;
  AEGIS_CHECK(per_kind >= 4 && per_kind % 2 == 0 && per_kind <= (std::int64_t{1} << 20),
              "--runs " << per_kind << " must be even and lie in [4, 2^20] (R runs with the canary and R without)");
  AEGIS_CHECK(a.confidence > 0.0 && a.confidence < 1.0, "--confidence " << a.confidence << " must lie in (0, 1)");
  AEGIS_CHECK(a.noise_scale > 0.0 && a.noise_scale <= 1.0, "noise_scale " << a.noise_scale << " must lie in (0, 1]");
  const bool gradient = a.canary == CanaryKind::Gradient;
  audit_detail::check_training(job.training, gradient);
  const std::int64_t parameters = nn::start_model(job.training.job, split.train).model->num_parameters();
  // Under mpirun the runs are farmed over the ranks (privacy/audit_farm.h), which hand them back
  // through their records.
  AEGIS_CHECK(!audit_detail::several_ranks() || !job.runs_dir.empty(),
              "under mpirun the many-run audit needs --out-dir: the ranks hand back their runs as records there");
  if (!job.runs_dir.empty() && audit_detail::is_rank0()) {
    std::error_code ec;
    std::filesystem::create_directories(job.runs_dir, ec);
    AEGIS_CHECK_AS(IoError, !ec && std::filesystem::is_directory(job.runs_dir),
                   "cannot create the audit directory " << job.runs_dir << (ec ? ": " + ec.message() : std::string()));
  }

  // One canary, the same in every run: the quietest coordinate with a seeded sign (gradient), or
  // the first test example with a seeded wrong label (input).
  audit_detail::Canary canary;
  nn::Dataset input_canary;
  if (gradient) {
    canary.coordinate = audit_detail::quiet_coordinates(job.training, split.train, 1, a.seed)[0];
    canary.sign = (philox::bits({a.seed, philox::kPurposeAuditSetup, audit_detail::kSigns}, 0) & 1u) ? 1.0f : -1.0f;
  } else {
    input_canary = audit_detail::input_canaries(split, 1, a.seed);
  }

  // Runs 0..R−1 (R = per_kind) with the canary, R..2R−1 without; the first R/2 of each kind select.
  std::vector<Run> runs(static_cast<std::size_t>(2 * per_kind));
  for (std::int64_t i = 0; i < 2 * per_kind; ++i) {
    Run& r = runs[static_cast<std::size_t>(i)];
    r.canary = i < per_kind;
    r.selection = i % per_kind < per_kind / 2;
    r.seed = job.training.job.train.seed + static_cast<std::uint64_t>(i);
  }
  ManyRunAuditReport report;
  report.canary = canary_kind_name(a.canary);
  report.runs_dir = job.runs_dir;
  const std::string tag = settings(job);
  ProgressSink& p = progress_or_silent(progress);
  p.info("many-run audit: " + std::to_string(per_kind) + " DP-SGD runs with the " + report.canary + " canary and " +
         std::to_string(per_kind) + " without");
  double seconds = 0.0;
  const auto record_path = [&](std::size_t i) {
    return job.runs_dir.empty()
               ? std::string()
               : (std::filesystem::path(job.runs_dir) / ("run-" + std::to_string(i) + ".json")).string();
  };
  const auto read_record = [&](std::size_t i) {
    const audit_detail::RunRecord record = audit_detail::read_run_record(record_path(i));
    AEGIS_CHECK(
        record.settings == tag && record.run == static_cast<std::int64_t>(i) && record.canary == runs[i].canary &&
            record.seed == runs[i].seed,
        record_path(i) << " was written by an audit with other settings (recipe, seeds, canary kind or --runs); "
                       << "use a fresh directory, or the settings of that audit");
    return record;
  };
  // Trains run i, writing its model to `model_out` (the job's own file in one process), and its
  // record when there is a runs directory.
  const auto train_run = [&](std::size_t i, const std::string& model_out) {
    audit_detail::RunRecord record;
    DpJob training = job.training;
    training.job.train.seed = runs[i].seed;
    training.job.out = model_out;
    std::vector<audit_detail::Canary> one = {canary};
    one[0].included = runs[i].canary;
    const auto t0 = std::chrono::steady_clock::now();
    // Gradient canary: each run's sampling draws get their own key, step_key(seed, …, (i + 1)·2^32 + step).
    record.training =
        gradient ? audit_detail::train_with_canaries(training, split, one, parameters, a.seed,
                                                     (static_cast<std::uint64_t>(i) + 1) << 32, a.noise_scale, nullptr)
                 : audit_detail::train_with_input_canaries(training, split, input_canary, one, a.noise_scale, nullptr);
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    record.training.training.out = job.training.job.out;  // the record names the audit's model file
    record.settings = tag;
    record.run = static_cast<std::int64_t>(i);
    record.canary = runs[i].canary;
    record.seed = runs[i].seed;
    record.score = one[0].score;
    if (!job.runs_dir.empty()) audit_detail::write_run_record(record_path(i), record);
    return record;
  };
  audit_detail::FarmOutcome farmed;
  farmed.trained.assign(runs.size(), false);
  if (audit_detail::several_ranks()) {
    // Every run but the highest one trained goes to a scratch model file of its rank; the highest
    // writes the job's, which then holds what one process leaves there: the last run trained.
    const std::string scratch =
        (std::filesystem::path(job.runs_dir) / ("scratch-rank" + std::to_string(mpi::world().rank) + ".safetensors"))
            .string();
    farmed = audit_detail::farm_models(
        static_cast<std::int64_t>(runs.size()),
        [&](std::int64_t i) {
          if (!std::filesystem::exists(record_path(static_cast<std::size_t>(i)))) return false;
          read_record(static_cast<std::size_t>(i));  // a record of another audit is refused before any training
          return true;
        },
        [&](std::int64_t i, bool last) {
          return train_run(static_cast<std::size_t>(i), last ? job.training.job.out : scratch).seconds;
        },
        job.runs_dir, p, "audit runs");
    std::error_code ignored;  // a scratch file that is not there (this rank trained none) is fine
    std::filesystem::remove(scratch, ignored);
    // Rank 0 also clears the scratch files that ranks of a killed run left behind.
    if (audit_detail::is_rank0())
      for (const auto& entry : std::filesystem::directory_iterator(job.runs_dir, ignored))
        if (entry.path().filename().string().rfind("scratch-rank", 0) == 0)
          std::filesystem::remove(entry.path(), ignored);
    if (!audit_detail::is_rank0()) {
      mpi::idle_barrier();  // rank 0 computes the bound from the records; this rank's result is rank 0's
      return {};
    }
    seconds = farmed.seconds;
  }
  p.begin("audit runs", 2 * per_kind, "runs");
  for (std::size_t i = 0; i < runs.size(); ++i) {
    AEGIS_CHECK_AS(IoError, !audit_detail::several_ranks() || std::filesystem::exists(record_path(i)),
                   "rank 0 does not see " << record_path(i) << " after the ranks trained the runs: under mpirun "
                                          << "--out-dir must be a directory every rank shares");
    if (!record_path(i).empty() && std::filesystem::exists(record_path(i))) {
      const audit_detail::RunRecord record = read_record(i);
      runs[i].score = record.score;
      report.training = record.training;  // the report's run is the last one, reused or trained
      report.epsilon_accounted = std::max(report.epsilon_accounted, record.training.epsilon);
      ++(farmed.trained[i] ? report.runs_trained : report.runs_reused);
      p.update(static_cast<std::int64_t>(i) + 1,
               report.runs_reused ? std::to_string(report.runs_reused) + " reused" : "");
      continue;
    }
    const audit_detail::RunRecord record = train_run(i, job.training.job.out);
    seconds += record.seconds;
    runs[i].score = record.score;
    report.training = record.training;
    // With an input canary the runs with it train on one more record: the larger of the ledgers' ε
    // is the claim to test.
    report.epsilon_accounted = std::max(report.epsilon_accounted, report.training.epsilon);
    ++report.runs_trained;
    p.update(static_cast<std::int64_t>(i) + 1,
             report.runs_reused ? std::to_string(report.runs_reused) + " reused" : "");
  }
  p.end("");
  report.seconds_per_run = report.runs_trained ? seconds / static_cast<double>(report.runs_trained) : 0.0;

  report.runs = per_kind;
  report.confidence = a.confidence;
  report.delta = report.training.delta;
  report.threshold = choose_threshold(runs, report.delta, a.confidence);
  const Counts sel = count(runs, true, report.threshold), eval = count(runs, false, report.threshold);
  report.selection_false_positives = sel.false_positives;
  report.selection_false_negatives = sel.false_negatives;
  report.negatives = eval.negatives;
  report.positives = eval.positives;
  report.false_positives = eval.false_positives;
  report.false_negatives = eval.false_negatives;
  report.fpr_upper = clopper_pearson(eval.false_positives, eval.negatives, a.confidence).upper;
  report.fnr_upper = clopper_pearson(eval.false_negatives, eval.positives, a.confidence).upper;
  report.epsilon_lower = bound(eval, report.delta, a.confidence);
  report.epsilon_ceiling = many_run_epsilon_ceiling(eval.negatives, eval.positives, report.delta, a.confidence);
  report.failed = report.epsilon_lower > report.epsilon_accounted;
  if (!job.scores_out.empty()) {
    write_runs(job.scores_out, runs);
    report.scores_out = job.scores_out;
  }
  if (report.failed) {
    std::ostringstream os;
    os << "AUDIT FAILED: the run leaks more than it accounts for: epsilon >= " << report.epsilon_lower << " with "
       << 100.0 * a.confidence << "% confidence (" << 2 * per_kind
       << " runs), but the ledger says epsilon = " << report.epsilon_accounted;
    p.warning(os.str());
  }
  mpi::idle_barrier();
  return report;
}

}  // namespace aegis::privacy
