"""torch.distributed's all_reduce (gloo, CPU) of the sizes bench_mpi_reduce sums: the step of
Opacus' DPDDP and of DistributedDataParallel that aegis's mpi::sum_over_ranks replaces.

    python -m torch.distributed.run --nproc_per_node 2 bench/torch_allreduce.py [--reps 20]
        [--max-values 10000000] [--dtype float32|float64]

Rank 0 prints one JSON object per line:
    {"bench": "torch_allreduce", "ranks": K, "values": n, "bytes": ..., "dtype": ..., "median_s": t, "min_s": t0}
"""
import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max-values", type=int, default=10_000_000)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    dtype = getattr(torch, args.dtype)
    n = 1000
    while n <= args.max_values:
        reps = args.reps if n <= 100_000 else max(3, args.reps * 100_000 // n)
        x = torch.full((n,), 1.0 + rank, dtype=dtype)
        times = []
        for r in range(reps + 1):
            y = x.clone()
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(y)
            dt = time.perf_counter() - t0
            if r > 0:
                times.append(dt)
        if rank == 0:
            print(json.dumps({"bench": "torch_allreduce", "ranks": size, "values": n,
                              "bytes": n * x.element_size(), "dtype": args.dtype,
                              "median_s": statistics.median(times), "min_s": min(times)}), flush=True)
        n *= 10
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
