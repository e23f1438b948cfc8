#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/mpi.h"
#include "kernels/blas.h"
#include "kernels/rank_sum.h"
#include "nn/onnx_import.h"

namespace aegis::app {

Runner add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "version, compiled backends, devices and library versions");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "print JSON");
  return [json]() {
    nlohmann::json j;
    j["version"] = AEGIS_VERSION;
    j["backends"] = cuda_compiled() ? nlohmann::json{"cpu", "cuda"} : nlohmann::json{"cpu"};
    j["blas"] = kernels::cpu::blas_description();
    j["cuda"] = cuda_compiled() ? cuda_version_string() : "not compiled in";
    j["onnx"] = nn::onnx_supported() ? "import (.onnx models)" : "not compiled in";
    // Starts MPI when mpirun or srun started this process (core/mpi.h).
    const mpi::World& world = mpi::world();
    j["mpi"] = {{"compiled", mpi::compiled()},
                {"library", mpi::library_version()},
                {"launched", mpi::launched_by_launcher()},
                {"world_size", world.size},
                {"rank", world.rank}};
    // The rank's place on its node and the device that --device cuda (or auto) gives it there.
    const int local_rank = mpi::local_rank(), gpus = cuda_device_count();
    const std::string rank_device = gpus > 0 ? Device::cuda(mpi::gpu_for_local_rank(local_rank, gpus)).str() : "cpu";
    j["mpi"]["local_rank"] = local_rank;
    j["mpi"]["device"] = rank_device;
    j["nccl"] = kernels::nccl_compiled() ? "compiled in (device sums over ranks)" : "not compiled in";
    std::string mpi_line = "not compiled in";
    if (mpi::compiled())
      mpi_line = mpi::library_version() + ", world size " + std::to_string(world.size) + ", rank " +
                 std::to_string(world.rank) + ", local rank " + std::to_string(local_rank) + " on " + rank_device;
    else if (mpi::launched_by_launcher())
      mpi_line += " (started by a launcher: every process runs alone)";
    nlohmann::json devices = nlohmann::json::array();
    devices.push_back({{"device", "cpu"}, {"description", "host"}});
    for (int i = 0; i < cuda_device_count(); ++i)
      devices.push_back({{"device", Device::cuda(i).str()}, {"description", cuda_device_description(i)}});
    j["devices"] = devices;
    if (*json) {
      std::cout << j.dump() << "\n";
      return 0;
    }
    std::cout << "aegis " << AEGIS_VERSION << "\n"
              << "backends: cpu" << (cuda_compiled() ? ", cuda" : "") << "\n"
              << "blas:     " << kernels::cpu::blas_description() << "\n"
              << "cuda:     " << j["cuda"].get<std::string>() << "\n"
              << "onnx:     " << j["onnx"].get<std::string>() << "\n"
              << "mpi:      " << mpi_line << "\n"
              << "nccl:     " << j["nccl"].get<std::string>() << "\n"
              << "devices:\n";
    for (const auto& d : devices)
      std::cout << "  " << d["device"].get<std::string>() << "  " << d["description"].get<std::string>() << "\n";
    if (cuda_compiled() && cuda_device_count() == 0) std::cout << "  (no usable CUDA device: runs use the CPU)\n";
    return 0;
  };
}

}  // namespace aegis::app
