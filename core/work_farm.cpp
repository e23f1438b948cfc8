// The work farm over MPI ranks (core/work_farm.h).
#include "core/work_farm.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::mpi {

namespace {

constexpr int kTagAssign = 17001;   // rank 0 → rank: {item} or {-1}: stop
constexpr int kTagResult = 17002;   // rank → rank 0: {item, result...}
constexpr int kTagRelease = 17003;  // rank 0 → rank: idle_barrier's release
constexpr int kQueuedPerRank = 2;   // items a rank holds: one at work, one waiting

// A blocking MPI receive polls the network at full speed (Open MPI's default), which takes a
// core from the ranks still working when they share a node. Polling with a sleep that grows from
// 50 µs to 2 ms costs a few thousand probes per second at most and adds at most 2 ms per wait.
Message receive_without_spinning(int source, int tag) {
  auto pause = std::chrono::microseconds(50);
  while (!message_waiting(source, tag)) {
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
  return receive(source, tag);
}

std::vector<double> with_item(std::int64_t item, const std::vector<double>& result) {
  std::vector<double> m;
  m.reserve(result.size() + 1);
  m.push_back(static_cast<double>(item));  // item numbers are below 2^53: exact in a double
  m.insert(m.end(), result.begin(), result.end());
  return m;
}

// One item, as a run of its own (mpi::SoloScope): what the work calls reduces over no ranks.
std::vector<double> work_alone(const FarmWork& work, std::int64_t item) {
  const SoloScope alone;
  return work(item);
}

// A rank other than 0: work on what rank 0 hands out until it says stop.
void work_for_rank0(const FarmWork& work) {
  std::deque<std::int64_t> queue;
  for (;;) {
    // Take what has arrived, but nothing after this farm's stop: what follows it is the next farm's.
    while (queue.empty() || (queue.back() >= 0 && message_waiting(0, kTagAssign))) {
      const Message m = queue.empty() ? receive_without_spinning(0, kTagAssign) : receive(0, kTagAssign);
      AEGIS_CHECK(m.data.size() == 1, "farm: rank 0 sent a malformed assignment");
      queue.push_back(static_cast<std::int64_t>(m.data[0]));
    }
    const std::int64_t item = queue.front();
    queue.pop_front();
    if (item < 0) return;
    send(0, kTagResult, with_item(item, work_alone(work, item)));
  }
}

}  // namespace

void run_farm(const std::vector<std::int64_t>& pending_items, const FarmWork& work, const FarmResult& on_result) {
  const World& w = world();
  if (w.rank == 0)
    for (std::int64_t item : pending_items) AEGIS_CHECK(item >= 0, "farm: item " << item << " must be ≥ 0");
  if (w.size == 1) {
    for (std::int64_t item : pending_items) on_result(item, work_alone(work, item), 0);
    return;
  }
  if (w.rank != 0) {
    work_for_rank0(work);
    return;
  }

  std::deque<std::int64_t> pending(pending_items.begin(), pending_items.end());
  std::vector<bool> stopped(static_cast<std::size_t>(w.size), false);
  std::int64_t in_flight = 0;
  const auto hand_out = [&](int rank) {
    if (!pending.empty()) {
      send(rank, kTagAssign, {static_cast<double>(pending.front())});
      pending.pop_front();
      ++in_flight;
    } else if (!stopped[static_cast<std::size_t>(rank)]) {
      send(rank, kTagAssign, {-1.0});
      stopped[static_cast<std::size_t>(rank)] = true;
    }
  };
  for (int rank = 1; rank < w.size; ++rank)
    for (int k = 0; k < kQueuedPerRank && !stopped[static_cast<std::size_t>(rank)]; ++k) hand_out(rank);

  const auto take_result = [&](const Message& m) {
    AEGIS_CHECK(!m.data.empty() && m.data[0] >= 0.0, "farm: rank " << m.source << " sent a malformed result");
    --in_flight;
    on_result(static_cast<std::int64_t>(m.data[0]), std::vector<double>(m.data.begin() + 1, m.data.end()), m.source);
    hand_out(m.source);
  };
  while (!pending.empty() || in_flight > 0) {
    while (message_waiting(kAnySource, kTagResult)) take_result(receive(kAnySource, kTagResult));
    if (!pending.empty()) {
      const std::int64_t item = pending.front();
      pending.pop_front();
      on_result(item, work_alone(work, item), 0);
    } else if (in_flight > 0) {
      take_result(receive_without_spinning(kAnySource, kTagResult));
    }
  }
  // Ranks that never got past their first hand-out (fewer items than ranks) still wait for stop.
  for (int rank = 1; rank < w.size; ++rank) hand_out(rank);
}

void idle_barrier() {
  const World& w = world();
  if (w.size == 1) return;
  if (w.rank == 0) {
    for (int rank = 1; rank < w.size; ++rank) send(rank, kTagRelease, {});
  } else {
    receive_without_spinning(0, kTagRelease);
  }
}

}  // namespace aegis::mpi
