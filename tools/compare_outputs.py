#!/usr/bin/env python3
"""Fixed-seed outputs of every command, to show that a change of structure changes no result.

    tools/compare_outputs.py run AEGIS_BINARY DIR    run the command set, write its outputs to DIR
    tools/compare_outputs.py diff DIR_BEFORE DIR_AFTER

`run` executes train/eval/attack/certify/analyze/verify/account/pixeldp on the bundled digits
set, and a shortened demo on Fashion-MNIST, with fixed seeds on the CPU (one OpenMP thread, so that reductions run in one order) and
keeps, for each command, its --json output and the files it wrote (model files, adversarial
examples, sweep TSVs and their settings, per-example verification rows). `diff` compares two such
directories: JSON outputs key by key after dropping wall-clock fields, TSVs after dropping their
`time` column, every other file byte by byte. It prints one line per difference and exits 1 when
there is any, 0 when the outputs are bit-identical.
"""
import json
import os
import subprocess
import sys

# (name, arguments); {d} is the output directory (the commands run in it). The models written by the first commands are
# inputs of the later ones, so the order matters.
COMMANDS = [
    ("train_mlp", "train --data digits --model mlp --epochs 2 --seed 1 --out {d}/mlp.safetensors"),
    ("train_sgd", "train --data digits --model mlp --epochs 1 --optimizer sgd --momentum 0.9 --lr 0.05 "
                  "--schedule step --seed 2 --out {d}/sgd.safetensors"),
    ("train_cnn_res", "train --data digits --model cnn-res --epochs 1 --seed 3 --out {d}/res.safetensors"),
    ("train_noise", "train --data digits --model mlp --epochs 1 --noise-sigma 0.25 --seed 4 "
                    "--out {d}/noisy.safetensors"),
    ("train_dp_flat", "train --data digits --model mlp --epochs 1 --dp --noise-multiplier 1.1 --seed 5 "
                      "--out {d}/dp_flat.safetensors"),
    ("train_dp_layer", "train --data digits --model mlp --epochs 1 --dp --noise-multiplier 1.1 --clipping per-layer "
                       "--accountant prv --optimizer sgd --lr 0.1 --seed 6 --out {d}/dp_layer.safetensors"),
    ("train_dp_adaptive", "train --data digits --model mlp --epochs 1 --dp --target-epsilon 3 --clipping adaptive "
                          "--seed 7 --out {d}/dp_adaptive.safetensors"),
    ("train_dp_shuffle", "train --data digits --model mlp --epochs 1 --dp --noise-multiplier 1 --sampling shuffle "
                         "--optimizer adamw --seed 8 --out {d}/dp_shuffle.safetensors"),
    ("train_dp_resume", "train --data digits --model mlp --epochs 1 --dp --noise-multiplier 1.1 --seed 9 "
                        "--resume {d}/dp_flat.safetensors --out {d}/dp_resumed.safetensors"),
    ("train_adv_pgd", "train --data digits --model mlp --epochs 1 --adv pgd --eps 0.05 --adv-steps 3 --seed 10 "
                      "--out {d}/adv_pgd.safetensors"),
    ("train_adv_fgsm", "train --data digits --model mlp --epochs 1 --adv fgsm-rs --eps 0.05 --seed 11 "
                       "--out {d}/adv_fgsm.safetensors"),
    ("train_adv_free", "train --data digits --model mlp --epochs 1 --adv free --eps 0.05 --adv-replays 2 --seed 12 "
                       "--out {d}/adv_free.safetensors"),
    ("eval", "eval --model {d}/mlp.safetensors --data digits"),
    ("eval_dp", "eval --model {d}/dp_resumed.safetensors --data digits"),
]
for attack in ["fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm", "cw-l2", "apgd-ce", "apgd-dlr"]:
    eps = "0.5" if attack in ("pgd-l2", "cw-l2") else "0.1"
    COMMANDS.append((f"attack_{attack}", f"attack --model {{d}}/mlp.safetensors --data digits --attack {attack} "
                                          f"--eps {eps} --steps 5 --max 60 --batch 25 --seed 13"))
COMMANDS += [
    ("attack_targeted", "attack --model {d}/mlp.safetensors --data digits --attack pgd-linf --eps 0.1 --targeted "
                        "--restarts 2 --max 40 --seed 14 --save-adv {d}/adv.safetensors"),
    ("attack_suite", "attack --model {d}/mlp.safetensors --data digits --attack suite --eps 0.1 --steps 5 --max 30"),
    ("attack_autoattack", "attack --model {d}/mlp.safetensors --data digits --attack autoattack --eps 0.1 --steps 5 "
                          "--queries 100 --max 30 --per-example {d}/autoattack.tsv"),
    ("attack_square", "attack --model {d}/mlp.safetensors --data digits --attack square --norm l2 --eps 0.5 "
                      "--queries 100 --max 30 --per-example {d}/square.tsv"),
    ("certify", "certify --model {d}/noisy.safetensors --data digits --sigma 0.25,0.5 --n0 20 --n 300 --batch 128 "
                "--max 40 --skip 2 --seed 15 --out {d}/cert.tsv"),
    ("certify_shard", "certify --model {d}/noisy.safetensors --data digits --sigma 0.25 --n0 20 --n 200 --max 30 "
                      "--shard 1/3 --seed 16 --radii 0,0.1,0.2 --out {d}/shard.tsv"),
    ("analyze", "analyze {d}/cert_sigma0.25.tsv {d}/cert_sigma0.5.tsv --envelope"),
    ("verify_mlp", "verify --model {d}/mlp.safetensors --data digits --eps 0.01 --method both --max 50"),
    ("verify_res", "verify --model {d}/res.safetensors --data digits --eps 0.005 --norm l2 --method crown --max 20 "
                   "--per-example {d}/verify.tsv"),
    ("account_rdp", "account --sampling-rate 0.04 --noise-multiplier 1.5 --steps 2249 --delta 1e-5"),
    ("account_prv", "account --sampling-rate 0.04 --noise-multiplier 1.5 --steps 2249 --delta 1e-5 --accountant prv"),
    ("account_target", "account --sampling-rate 0.01 --target-epsilon 2 --steps 5000 --delta 1e-5"),
    ("account_epochs", "account --epochs 10 --batch-size 256 --dataset-size 60000 --noise-multiplier 1.1 --delta 1e-5"),
    ("account_phases", "account --phase 0.01,1.0,1000 --phase 0.02,2.0,500 --delta 1e-6 --accountant prv"),
    ("pixeldp_train", "pixeldp train --data digits --model mlp --epochs 1 --seed 17 --out {d}/pixeldp.safetensors"),
    ("pixeldp_certify", "pixeldp certify --model {d}/pixeldp.safetensors --data digits --draws 50 --max 40 "
                        "--seed 18 --attack cw-l2 --attack-max 10 --attack-batch 5 --attack-draws 3 --cw-steps 5 "
                        "--cw-search-steps 2"),
    # The demo on Fashion-MNIST, shortened: standard, DP-SGD and noise training, PGD, CERTIFY.
    ("demo", "demo --epochs 1 --dp-epochs 1 --out-dir {d}/demo"),
]

# JSON keys whose values are wall-clock measurements (compared by presence, not value).
TIMING_WORDS = ("seconds", "elapsed", "per_second", "per_s", "throughput", "wall", "time_s", "duration")


def is_timing(key):
    k = key.lower()
    return any(w in k for w in TIMING_WORDS) or k == "time"


def strip_timing(value):
    if isinstance(value, dict):
        return {k: ("<time>" if is_timing(k) else strip_timing(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def run(binary, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name, args in COMMANDS:
        # Paths relative to the output directory, so that outputs do not name where they were made.
        argv = [binary] + args.format(d=".").split() + ["--json", "--quiet"]
        if not args.startswith(("account", "analyze")):
            argv += ["--device", "cpu"]
        proc = subprocess.run(argv, env=env, cwd=out_dir, capture_output=True, text=True)
        with open(os.path.join(out_dir, name + ".out.json"), "w") as f:
            f.write(proc.stdout)
        if proc.returncode != 0:
            sys.exit(f"compare_outputs: {name} failed (status {proc.returncode}): {proc.stderr.strip()}")
        print(f"ran {name}", flush=True)


def tsv_without_time(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    if rows and "time" in rows[0]:
        col = rows[0].index("time")
        rows = [r[:col] + r[col + 1:] for r in rows]
    return rows


def diff(before, after):
    def files(root):
        return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}

    names = sorted(files(before) | files(after))
    differences = 0
    for name in names:
        a, b = os.path.join(before, name), os.path.join(after, name)
        if not (os.path.exists(a) and os.path.exists(b)):
            print(f"{name}: only in {'before' if os.path.exists(a) else 'after'}")
            differences += 1
            continue
        if name.endswith(".json"):
            try:
                ja, jb = (strip_timing(json.load(open(p))) for p in (a, b))
            except json.JSONDecodeError as e:
                print(f"{name}: not JSON ({e})")
                differences += 1
                continue
            same = ja == jb
        elif name.endswith(".tsv"):
            same = tsv_without_time(a) == tsv_without_time(b)
        else:
            same = open(a, "rb").read() == open(b, "rb").read()
        if not same:
            print(f"{name}: differs")
            differences += 1
    print(f"{len(names)} files compared, {differences} differ")
    return 1 if differences else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        run(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "diff":
        return diff(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
