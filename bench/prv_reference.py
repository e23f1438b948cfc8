#!/usr/bin/env python3
"""aegis's accountants beside Google's dp_accounting on long DP-SGD runs.

For each setting (q, sigma, T, delta) prints the epsilon and wall time of
  aegis account --accountant prv   (Gopi et al. 2021; the reported epsilon is the upper bound)
  aegis account --accountant rdp
  dp_accounting PLDAccountant      (Poisson-subsampled Gaussian, pessimistic PLD,
                                    value_discretization_interval 1e-4, its default)
  dp_accounting RdpAccountant      (its default orders)
Times are the fastest of --repeat wall-clock runs of one call; the aegis ones include starting
the process (about 0.01 s).

usage: prv_reference.py [--aegis build/aegis] [--repeat 3]
Needs `pip install dp-accounting`.
"""
import argparse
import importlib.metadata
import json
import subprocess
import time

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

SETTINGS = [  # (q, sigma, steps, delta)
    (0.04, 1.5, 2249, 1e-5),
    (0.01, 1.0, 100000, 1e-8),
    (0.04, 1.5, 100000, 1e-5),
    (0.001, 1.0, 1000000, 1e-8),
    (0.01, 1.0, 1000000, 1e-8),
]


def fastest(run, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = run()
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
    return value, best


def aegis(binary, accountant, q, sigma, steps, delta, repeat):
    cmd = [binary, "account", "--sampling-rate", str(q), "--noise-multiplier", str(sigma), "--steps",
           str(steps), "--delta", str(delta), "--accountant", accountant, "--json"]
    return fastest(lambda: json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout),
                   repeat)


def dp_accounting_epsilon(make_accountant, q, sigma, steps, delta, repeat):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)

    def run():
        accountant = make_accountant()
        accountant.compose(event)
        return accountant.get_epsilon(delta)

    return fastest(run, repeat)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--aegis", default="build/aegis")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"dp_accounting {importlib.metadata.version('dp-accounting')}")
    header = ("q", "sigma", "T", "delta", "aegis prv [lower, upper]", "s", "aegis rdp", "s", "dp_acc pld", "s",
              "dp_acc rdp", "s")
    print(" | ".join(header))
    for q, sigma, steps, delta in SETTINGS:
        prv, t_prv = aegis(args.aegis, "prv", q, sigma, steps, delta, args.repeat)
        rdp, t_rdp = aegis(args.aegis, "rdp", q, sigma, steps, delta, args.repeat)
        pld, t_pld = dp_accounting_epsilon(pld_privacy_accountant.PLDAccountant, q, sigma, steps, delta, args.repeat)
        rdp_ref, t_rdp_ref = dp_accounting_epsilon(rdp_privacy_accountant.RdpAccountant, q, sigma, steps, delta,
                                                   args.repeat)
        print(f"{q:g} | {sigma:g} | {steps} | {delta:g} | {prv['epsilon_estimate']:.4f} "
              f"[{prv['epsilon_lower']:.4f}, {prv['epsilon_upper']:.4f}] | {t_prv:.2f} | {rdp['epsilon']:.4f} | "
              f"{t_rdp:.2f} | {pld:.4f} | {t_pld:.2f} | {rdp_ref:.4f} | {t_rdp_ref:.2f}", flush=True)


if __name__ == "__main__":
    main()
