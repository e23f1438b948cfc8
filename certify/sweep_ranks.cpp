// Certification sweeps over MPI ranks (certify/sweep_ranks.h).
#include "certify/sweep_ranks.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::certify {

namespace {

constexpr int kTagAssign = 17001;  // rank 0 → rank: {chunk number} or {-1}: stop
constexpr int kTagResult = 17002;  // rank → rank 0: see encode_result
constexpr int kQueuedPerRank = 2;  // chunks a rank holds: one at work, one waiting

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

// {chunk, seconds per input, then per input: idx, prediction, radius}. Chunk numbers, class
// indices and idx values are integers below 2^53, exact in a double.
constexpr std::size_t kHead = 2, kPerInput = 3;
std::vector<double> encode_result(std::int64_t number, const std::vector<SweepInput>& part,
                                  const std::vector<Certificate>& certs, double per_input) {
  AEGIS_CHECK(certs.size() == part.size(),
              "certifier returned " << certs.size() << " certificates for " << part.size() << " inputs");
  std::vector<double> m{static_cast<double>(number), per_input};
  for (std::size_t i = 0; i < part.size(); ++i) {
    m.push_back(static_cast<double>(part[i].idx));
    m.push_back(static_cast<double>(certs[i].prediction));
    m.push_back(certs[i].radius);
  }
  return m;
}

// A rank other than 0: certify what rank 0 hands out until it says stop.
void work(const std::vector<SweepInput>& inputs, std::int64_t chunk, const ChunkCertifier& certify) {
  std::deque<std::int64_t> queue;
  for (;;) {
    // Take what has arrived, but nothing after this sweep's stop: what follows it is the next
    // sweep's (the next σ), whose work() receives it.
    while (queue.empty() || (queue.back() >= 0 && mpi::message_waiting(0, kTagAssign)))
      queue.push_back(static_cast<std::int64_t>(mpi::receive(0, kTagAssign).data.at(0)));
    const std::int64_t number = queue.front();
    queue.pop_front();
    if (number < 0) return;
    const std::vector<SweepInput> part = chunk_inputs(inputs, chunk, number);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<Certificate> certs = certify(idx_of(part));
    const double per_input = seconds_since(t0) / static_cast<double>(part.size());
    mpi::send(0, kTagResult, encode_result(number, part, certs, per_input));
  }
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

  if (world.rank != 0) {
    work(inputs, chunk, certify);
    return {};
  }

  check_file_rows(*file, inputs);
  const auto start = std::chrono::steady_clock::now();
  SweepSummary s;
  s.resumed = file->resumed_rows();
  std::deque<std::int64_t> pending;  // chunks with a row missing from the file
  const auto chunks = static_cast<std::int64_t>((inputs.size() + static_cast<std::size_t>(chunk) - 1) /
                                                static_cast<std::size_t>(chunk));
  for (std::int64_t number = 0; number < chunks; ++number)
    for (const SweepInput& in : chunk_inputs(inputs, chunk, number))
      if (!file->contains(in.idx)) {
        pending.push_back(number);
        break;
      }

  std::vector<bool> stopped(static_cast<std::size_t>(world.size), false);
  std::int64_t in_flight = 0;
  const auto hand_out = [&](int rank) {
    if (!pending.empty()) {
      mpi::send(rank, kTagAssign, {static_cast<double>(pending.front())});
      pending.pop_front();
      ++in_flight;
    } else if (!stopped[static_cast<std::size_t>(rank)]) {
      mpi::send(rank, kTagAssign, {-1.0});
      stopped[static_cast<std::size_t>(rank)] = true;
    }
  };
  for (int rank = 1; rank < world.size; ++rank)
    for (int k = 0; k < kQueuedPerRank && !stopped[static_cast<std::size_t>(rank)]; ++k) hand_out(rank);

  const auto write = [&](const std::vector<SweepInput>& part, const std::vector<Certificate>& certs, double per_input) {
    s.written += append_chunk(*file, part, certs, per_input);
    if (on_chunk) on_chunk(static_cast<std::int64_t>(file->rows().size()));
  };
  const auto take_result = [&](const mpi::Message& m) {
    --in_flight;
    const std::vector<double>& d = m.data;
    AEGIS_CHECK(d.size() >= kHead && (d.size() - kHead) % kPerInput == 0,
                "sweep: rank " << m.source << " sent a malformed result");
    const auto number = static_cast<std::int64_t>(d[0]);
    const std::vector<SweepInput> part = chunk_inputs(inputs, chunk, number);
    AEGIS_CHECK((d.size() - kHead) / kPerInput == part.size(),
                "sweep: rank " << m.source << " returned " << (d.size() - kHead) / kPerInput
                               << " certificates for chunk " << number << " of " << part.size() << " inputs");
    std::vector<Certificate> certs(part.size());
    for (std::size_t i = 0; i < part.size(); ++i) {
      const double* cert = d.data() + kHead + kPerInput * i;
      const auto idx = static_cast<std::int64_t>(cert[0]);
      AEGIS_CHECK(idx == part[i].idx, "sweep: rank " << m.source << " certified idx " << idx
                                                     << " where rank 0 selected " << part[i].idx
                                                     << " (do all ranks read the same data and selection?)");
      certs[i].prediction = static_cast<std::int64_t>(cert[1]);
      certs[i].radius = cert[2];
    }
    if (on_remote_chunk) on_remote_chunk(static_cast<std::int64_t>(part.size()));
    write(part, certs, d[1]);
    hand_out(m.source);
  };

  while (!pending.empty() || in_flight > 0) {
    while (mpi::message_waiting(mpi::kAnySource, kTagResult)) take_result(mpi::receive(mpi::kAnySource, kTagResult));
    if (!pending.empty()) {
      const std::int64_t number = pending.front();
      pending.pop_front();
      const std::vector<SweepInput> part = chunk_inputs(inputs, chunk, number);
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<Certificate> certs = certify(idx_of(part));
      write(part, certs, seconds_since(t0) / static_cast<double>(part.size()));
    } else if (in_flight > 0) {
      take_result(mpi::receive(mpi::kAnySource, kTagResult));
    }
  }
  // Ranks that never got past their first hand-out (fewer chunks than ranks) still wait for stop.
  for (int rank = 1; rank < world.size; ++rank) hand_out(rank);
  finish_summary(*file, start, s);
  return s;
}

}  // namespace aegis::certify
