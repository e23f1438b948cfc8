// Certification sweeps over MPI ranks (certify/sweep_ranks.h).
#include "certify/sweep_ranks.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/mpi.h"
#include "core/work_farm.h"

namespace aegis::certify {

namespace {

std::vector<SweepInput> chunk_inputs(const std::vector<SweepInput>& inputs, std::int64_t chunk, std::int64_t number) {
  const auto b = static_cast<std::size_t>(number * chunk);
  const std::size_t e = std::min(inputs.size(), b + static_cast<std::size_t>(chunk));
  return {inputs.begin() + static_cast<std::ptrdiff_t>(b), inputs.begin() + static_cast<std::ptrdiff_t>(e)};
}

std::vector<std::int64_t> idx_of(const std::vector<SweepInput>& part) {
  std::vector<std::int64_t> idx;
  for (const SweepInput& in : part) idx.push_back(in.idx);
  return idx;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A chunk's result: {seconds per input, then per input: idx, prediction, radius}. Class indices
// and idx values are integers below 2^53, exact in a double.
constexpr std::size_t kHead = 1, kPerInput = 3;

// Certifies chunk `number` on whichever rank the farm gives it to.
std::vector<double> certify_chunk(const std::vector<SweepInput>& inputs, std::int64_t chunk, std::int64_t number,
                                  const ChunkCertifier& certify) {
  const std::vector<SweepInput> part = chunk_inputs(inputs, chunk, number);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Certificate> certs = certify(idx_of(part));
  AEGIS_CHECK(certs.size() == part.size(),
              "certifier returned " << certs.size() << " certificates for " << part.size() << " inputs");
  std::vector<double> m{seconds_since(t0) / static_cast<double>(part.size())};
  for (std::size_t i = 0; i < part.size(); ++i) {
    m.push_back(static_cast<double>(part[i].idx));
    m.push_back(static_cast<double>(certs[i].prediction));
    m.push_back(certs[i].radius);
  }
  return m;
}

}  // namespace

SweepSummary run_sweep_ranks(SweepFile* file, const std::vector<SweepInput>& inputs, std::int64_t chunk,
                             const ChunkCertifier& certify, const std::function<void(std::int64_t)>& on_chunk,
                             const std::function<void(std::int64_t)>& on_remote_chunk) {
  AEGIS_CHECK(chunk >= 1, "chunk " << chunk << " must be ≥ 1");
  const mpi::World& world = mpi::world();
  AEGIS_CHECK((world.rank == 0) == (file != nullptr), "sweep: rank " << world.rank << " of " << world.size
                                                                     << (file ? " was given" : " was not given")
                                                                     << " the sweep file (rank 0 alone writes it)");
  if (world.size == 1) return run_sweep(*file, inputs, chunk, certify, on_chunk);
  const mpi::FarmWork work = [&](std::int64_t number) { return certify_chunk(inputs, chunk, number, certify); };

  if (world.rank != 0) {
    mpi::run_farm({}, work, {});
    return {};
  }

  check_file_rows(*file, inputs);
  const auto start = std::chrono::steady_clock::now();
  SweepSummary s;
  s.resumed = file->resumed_rows();
  std::vector<std::int64_t> pending;  // chunks with a row missing from the file
  const auto chunks = static_cast<std::int64_t>((inputs.size() + static_cast<std::size_t>(chunk) - 1) /
                                                static_cast<std::size_t>(chunk));
  for (std::int64_t number = 0; number < chunks; ++number)
    for (const SweepInput& in : chunk_inputs(inputs, chunk, number))
      if (!file->contains(in.idx)) {
        pending.push_back(number);
        break;
      }

  // Every result, rank 0's own included, is checked against rank 0's selection (so ranks with
  // different data are caught) and appended durably as it arrives.
  const auto write = [&](std::int64_t number, const std::vector<double>& d, int rank) {
    AEGIS_CHECK(number < chunks && d.size() >= kHead && (d.size() - kHead) % kPerInput == 0,
                "sweep: rank " << rank << " sent a malformed result");
    const std::vector<SweepInput> part = chunk_inputs(inputs, chunk, number);
    AEGIS_CHECK((d.size() - kHead) / kPerInput == part.size(),
                "sweep: rank " << rank << " returned " << (d.size() - kHead) / kPerInput << " certificates for chunk "
                               << number << " of " << part.size() << " inputs");
    std::vector<Certificate> certs(part.size());
    for (std::size_t i = 0; i < part.size(); ++i) {
      const double* cert = d.data() + kHead + kPerInput * i;
      const auto idx = static_cast<std::int64_t>(cert[0]);
      AEGIS_CHECK(idx == part[i].idx, "sweep: rank " << rank << " certified idx " << idx << " where rank 0 selected "
                                                     << part[i].idx
                                                     << " (do all ranks read the same data and selection?)");
      certs[i].prediction = static_cast<std::int64_t>(cert[1]);
      certs[i].radius = cert[2];
    }
    if (rank != 0 && on_remote_chunk) on_remote_chunk(static_cast<std::int64_t>(part.size()));
    s.written += append_chunk(*file, part, certs, d[0]);
    if (on_chunk) on_chunk(static_cast<std::int64_t>(file->rows().size()));
  };
  mpi::run_farm(pending, work, write);
  finish_summary(*file, start, s);
  return s;
}

}  // namespace aegis::certify
