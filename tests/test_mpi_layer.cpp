// The communication layer (core/mpi.h) in a process that no launcher started, with or without MPI
// compiled in: rank 0 of 1, collectives that return their input, messages refused with an error,
// the GPU a rank takes, the sums over ranks (kernels/rank_sum.h; on a GPU, through NCCL with a
// one-rank communicator when the build has it), and the sweep, work farm, data-parallel and DP-SGD
// helpers above it reducing to the one-process code (the mpirun runs are tests/test_mpi.cpp and
// tests/test_mpi_farm.cpp, built with MPI only).
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "certify/sweep_ranks.h"
#include "core/error.h"
#include "core/mpi.h"
#include "core/work_farm.h"
#include "kernels/rank_sum.h"
#include "nn/data_parallel.h"
#include "privacy/dp_ranks.h"
#include "runtime/dispatch.h"
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

TEST(MpiLayer, ARankTakesLocalRankModGpuCount) {
  EXPECT_EQ(mpi::gpu_for_local_rank(0, 1), 0);
  EXPECT_EQ(mpi::gpu_for_local_rank(3, 1), 0);  // srun --gpus-per-task: each rank sees one GPU
  EXPECT_EQ(mpi::gpu_for_local_rank(2, 8), 2);
  EXPECT_EQ(mpi::gpu_for_local_rank(5, 4), 1);  // more ranks than GPUs: they wrap around
  EXPECT_EQ(mpi::gpu_for_local_rank(7, 8), 7);
  EXPECT_THROW(mpi::gpu_for_local_rank(0, 0), InvalidArgument);
  EXPECT_THROW(mpi::gpu_for_local_rank(-1, 2), InvalidArgument);
}

TEST(MpiLayer, LocalRankComesFromTheLauncher) {
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  ::unsetenv("SLURM_LOCALID");
  EXPECT_EQ(mpi::local_rank_from_environment(), -1);
  EXPECT_EQ(mpi::local_rank(), 0);  // a plain process
  ::setenv("SLURM_LOCALID", "2", 1);
  EXPECT_EQ(mpi::local_rank_from_environment(), 2);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);  // Open MPI's word first
  EXPECT_EQ(mpi::local_rank_from_environment(), 3);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x1", 1);  // not a number: the next variable
  EXPECT_EQ(mpi::local_rank_from_environment(), 2);
  ::setenv("SLURM_LOCALID", "-4", 1);
  EXPECT_EQ(mpi::local_rank_from_environment(), -1);
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  ::unsetenv("SLURM_LOCALID");
}

TEST(MpiLayer, BytesCollectivesReturnTheirInput) {
  std::vector<unsigned char> bytes{0, 255, 7};
  mpi::broadcast_bytes(bytes, 0);
  EXPECT_EQ(bytes, (std::vector<unsigned char>{0, 255, 7}));
  EXPECT_EQ(mpi::all_gather_bytes(bytes), bytes);
}

TEST(MpiLayer, RanksAreAddedInDoubleInRankOrder) {
  // Three ranks' values; in float32, 1e8 + 1 − 1e8 is 0 (1e8 + 1 rounds back to 1e8), in double 1.
  const std::vector<float> all{1e8f, 0.5f, -3.0f, 1.0f, 0.25f, 2.0f, -1e8f, 0.125f, 1.0f};
  std::vector<float> out(3);
  kernels::cpu::add_in_rank_order(all.data(), 3, 3, 1.0, out.data());
  EXPECT_EQ(out, (std::vector<float>{1.0f, 0.875f, 0.0f}));
  kernels::cpu::add_in_rank_order(all.data(), 3, 3, 0.5, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.5f, 0.4375f, 0.0f}));
  std::vector<float> one{0.1f, -2.5f};  // one process: the values times the scale
  kernels::cpu::sum_over_ranks(one.data(), 2, 4.0);
  EXPECT_EQ(one, (std::vector<float>{static_cast<float>(0.1f * 4.0), -10.0f}));
  EXPECT_THROW(kernels::cpu::add_in_rank_order(all.data(), 0, 3, 1.0, out.data()), InvalidArgument);
}

TEST(MpiLayer, DataParallelHelpersAreTheIdentityInOneProcess) {
  EXPECT_EQ(nn::rank_rows(7), (std::pair<std::int64_t, std::int64_t>{0, 7}));
  EXPECT_EQ(nn::rank_rows(0), (std::pair<std::int64_t, std::int64_t>{0, 0}));
  nn::Var w(Tensor::from_vector(std::vector<float>{1.f, 2.f, 3.f}, {3}), true);
  w.accumulate_grad(Tensor::from_vector(std::vector<float>{0.25f, -0.5f, 3.0f}, {3}));
  const nn::Var unreached(Tensor::from_vector(std::vector<float>{4.f}, {1}), true);
  // The gradient of a mean from a sum: the scale is applied once, to the summed gradient.
  EXPECT_EQ(nn::sum_gradients_over_ranks({w, unreached}, {6.0, 1.0}, 0.25), (std::vector<double>{6.0, 1.0}));
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{0.0625f, -0.125f, 0.75f}));
  EXPECT_FALSE(unreached.has_grad());
}

// A GPU test (skipped without one): the device sum equals the CPU reference bit for bit; in a
// build with NCCL it goes through a one-rank NCCL communicator (all-gather, then the kernel).
TEST(RankSumCuda, DeviceSumEqualsTheCpuReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const Device gpu = Device::cuda(0);
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (const std::int64_t n : {std::int64_t{1}, std::int64_t{257}, std::int64_t{100003}}) {
    std::vector<float> all(static_cast<std::size_t>(3 * n));
    for (float& v : all) v = normal(rng);
    std::vector<float> expected(static_cast<std::size_t>(n));
    kernels::cpu::add_in_rank_order(all.data(), 3, n, 0.3, expected.data());
    const Tensor d_all = Tensor::from_vector(all, {3 * n}).to(gpu);
    Tensor d_out = Tensor::empty({n}, DType::F32, gpu);
    AEGIS_DISPATCH(gpu, add_in_rank_order(d_all.data<float>(), 3, n, 0.3, d_out.data<float>()));
    EXPECT_EQ(d_out.to_vector<float>(), expected) << n << " elements";

    const std::vector<float> mine(all.begin(), all.begin() + n);
    std::vector<float> reference = mine;
    kernels::cpu::sum_over_ranks(reference.data(), n, 0.3);
    Tensor d_mine = Tensor::from_vector(mine, {n}).to(gpu);
    AEGIS_DISPATCH(gpu, sum_over_ranks(d_mine.data<float>(), n, 0.3));
    EXPECT_EQ(d_mine.to_vector<float>(), reference) << n << " elements";
  }
  const std::string route = AEGIS_IF_CUDA_BUILD(kernels::cuda::rank_sum_route(), std::string());
  EXPECT_EQ(route.rfind("nccl ", 0) == 0, kernels::nccl_compiled()) << route;
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
