// The communication layer (core/mpi.h) in a process that no launcher started, with or without MPI
// compiled in: rank 0 of 1, collectives that return their input, messages refused with an error,
// and the sweep, work farm and DP-SGD helpers above it reducing to the one-process code (the mpirun
// runs are tests/test_mpi.cpp and tests/test_mpi_farm.cpp, built with MPI only).
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "certify/sweep_ranks.h"
#include "core/error.h"
#include "core/mpi.h"
#include "core/work_farm.h"
#include "privacy/dp_ranks.h"
#include "support/testing.h"

namespace aegis {
namespace {

TEST(MpiLayer, APlainProcessIsRankZeroOfOne) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    ASSERT_EQ(std::getenv(name), nullptr) << name << " is set: this suite must run outside mpirun";
  EXPECT_FALSE(mpi::launched_by_launcher());
  const mpi::World& world = mpi::world();
  EXPECT_EQ(world.rank, 0);
  EXPECT_EQ(world.size, 1);
  EXPECT_FALSE(world.initialized);  // no MPI runtime was started
  EXPECT_EQ(mpi::compiled(), AEGIS_HAS_MPI != 0);
  EXPECT_EQ(mpi::library_version().empty(), !mpi::compiled());
}

TEST(MpiLayer, CollectivesReturnTheirInputAndMessagesAreRefused) {
  const std::vector<double> values{1.5, -2.0, 3.25};
  EXPECT_EQ(mpi::sum_over_ranks(values), values);
  std::vector<double> b = values;
  mpi::broadcast(b, 0);
  EXPECT_EQ(b, values);
  mpi::barrier();
  EXPECT_FALSE(mpi::message_waiting(mpi::kAnySource, 1));
  EXPECT_THROW(mpi::send(1, 1, values), DeviceError);
  EXPECT_THROW(mpi::receive(mpi::kAnySource, 1), DeviceError);
  mpi::abort_run(1);  // returns: there is no run of several processes to end
}

TEST(MpiLayer, DpHelpersAreTheIdentityInOneProcess) {
  const std::vector<std::int64_t> sample{3, 5, 8, 13};
  EXPECT_EQ(privacy::rank_slice(sample), sample);
  nn::Var w(Tensor::from_vector(std::vector<float>{1.f, 2.f}, {2}), true);
  w.accumulate_grad(Tensor::from_vector(std::vector<float>{0.25f, -0.5f}, {2}));
  const nn::Var unreached(Tensor::from_vector(std::vector<float>{4.f}, {1}), true);
  const std::vector<double> counts{7.0, 2.0};
  EXPECT_EQ(privacy::sum_gradients_over_ranks({w, unreached}, counts), counts);
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{0.25f, -0.5f}));
  EXPECT_FALSE(unreached.has_grad());
}

TEST(MpiLayer, FarmWorksEachItemInOrderInOneProcess) {
  // Every pending item is worked on once, in the given order, inside a solo scope, and its result
  // reaches on_result from rank 0; the idle barrier returns at once.
  std::vector<std::pair<std::int64_t, double>> seen;
  EXPECT_FALSE(mpi::solo());
  mpi::run_farm(
      {4, 0, 2},
      [](std::int64_t item) {
        EXPECT_TRUE(mpi::solo());
        EXPECT_EQ(mpi::world().size, 1);
        return std::vector<double>{10.0 * static_cast<double>(item), 0.5};
      },
      [&](std::int64_t item, const std::vector<double>& result, int rank) {
        EXPECT_FALSE(mpi::solo());
        EXPECT_EQ(rank, 0);
        ASSERT_EQ(result.size(), 2u);
        seen.emplace_back(item, result[0]);
      });
  EXPECT_EQ(seen, (std::vector<std::pair<std::int64_t, double>>{{4, 40.0}, {0, 0.0}, {2, 20.0}}));
  mpi::run_farm(
      {}, [](std::int64_t) { return std::vector<double>{}; },
      [](std::int64_t, const std::vector<double>&, int) { ADD_FAILURE() << "no item to report"; });
  EXPECT_THROW(mpi::run_farm(
                   {1, -1}, [](std::int64_t) { return std::vector<double>{}; },
                   [](std::int64_t, const std::vector<double>&, int) {}),
               InvalidArgument);
  {
    const mpi::SoloScope outer;
    const mpi::SoloScope inner;  // scopes nest
    EXPECT_TRUE(mpi::solo());
  }
  EXPECT_FALSE(mpi::solo());
  mpi::idle_barrier();
}

TEST(MpiLayer, SweepOverRanksIsRunSweepInOneProcess) {
  const std::string dir = testing::make_temp_dir("mpi_layer");
  certify::SweepSettings s;
  s.smoothing.sigma = 0.5;
  s.smoothing.n0 = 10;
  s.smoothing.n = 100;
  s.smoothing.seed = 1;
  s.model_fingerprint = "fnv1a64:0000000000000002";
  s.data = "digits";
  std::vector<certify::SweepInput> inputs;
  for (std::int64_t i = 0; i < 7; ++i) inputs.push_back({i * 3, i % 4});
  // A deterministic certifier: idx mod 3 abstains, else predicts the label with radius idx/100.
  const certify::ChunkCertifier fake = [&](const std::vector<std::int64_t>& idx) {
    std::vector<certify::Certificate> out;
    for (std::int64_t j : idx) {
      certify::Certificate c;
      if (j % 2 == 0) {
        c.prediction = (j / 3) % 4;
        c.radius = static_cast<double>(j) / 100.0;
      }
      out.push_back(c);
    }
    return out;
  };
  certify::SweepFile a(dir + "/a.tsv", s, certify::OpenMode::Create);
  certify::SweepFile b(dir + "/b.tsv", s, certify::OpenMode::Create);
  const certify::SweepSummary sa = certify::run_sweep(a, inputs, 3, fake);
  const certify::SweepSummary sb = certify::run_sweep_ranks(&b, inputs, 3, fake);
  EXPECT_EQ(sb.written, 7);
  EXPECT_EQ(sb.correct, sa.correct);
  EXPECT_EQ(sb.abstained, sa.abstained);
  ASSERT_EQ(a.rows().size(), b.rows().size());
  for (std::size_t i = 0; i < a.rows().size(); ++i) EXPECT_TRUE(certify::same_result(a.rows()[i], b.rows()[i]));
  // Rank 0 must hold the file.
  EXPECT_THROW(certify::run_sweep_ranks(nullptr, inputs, 3, fake), InvalidArgument);
}

}  // namespace
}  // namespace aegis
