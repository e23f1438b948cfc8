#!/usr/bin/env python3
"""aegis's apgd-t, square and autoattack beside torchattacks' APGDT, Square and AutoAttack on the
same model weights and the same images, with every returned example checked to lie in the
eps-ball and in [0, 1].

The reference lives in a virtual environment of its own (torch for the CPU and torchattacks, not
dependencies of aegis); `--setup` creates it under /tmp and re-runs this script inside it:

  python3 bench/autoattack_compare.py --setup --aegis build/aegis --model digits.safetensors \
      --data digits --eps 0.1 --max 200

The model is an aegis `mlp` or `cnn-res` file (ReLU); its tensors load into the matching torch
module by their state_dict names (bench/torch_interop.py). --data digits uses the bundled digits
test split; --data fashion-mnist:DIR reads DIR/t10k-images-idx3-ubyte.gz and the labels file.
Prints one JSON object: robust accuracy per attack for both, Square's success rate, seconds.
--attacks picks the comparisons (apgd-t, square, autoattack); --square-seeds K runs Square with
seeds 0..K-1 on both sides (torchattacks' Square and, where installed, the official code's
SquareAttack with the same rescaled schedule) and reports each seed's success rate and the mean;
--square-proposals passes aegis's proposal mode to its square and autoattack runs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

VENV = "/tmp/aegis-autoattack-venv"


def setup_and_reexec():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        # torch for the CPU from PyTorch's index; where that index is unreachable, PyPI's default build.
        if subprocess.call([python, "-m", "pip", "install", "--quiet", "--index-url",
                            "https://download.pytorch.org/whl/cpu", "torch"]) != 0:
            subprocess.check_call([python, "-m", "pip", "install", "--quiet", "torch"])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "torchattacks", "numpy"])
        # The official AutoAttack code (not on PyPI); without it torchattacks' AutoAttack stands in,
        # whose APGD runs torchattacks' default of 10 steps, not the reference's 100.
        subprocess.call([python, "-m", "pip", "install", "--quiet", "git+https://github.com/fra31/auto-attack"])
    args = [a for a in sys.argv[1:] if a != "--setup"]
    os.execv(python, [python, os.path.abspath(__file__)] + args)


def load_images(spec, source_dir, limit):
    import numpy as np
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if spec == "digits":
        from lirpa_verify import digits_test
        x, y = digits_test(source_dir)
    else:
        from torch_interop import read_idx
        folder = spec.split(":", 1)[1]
        x = torch.from_numpy(read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0)
        x = x.reshape(-1, 1, 28, 28)
        y = torch.from_numpy(read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    return x[:limit], y[:limit]


def load_model(path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lirpa_verify import cnn_res, mlp
    from torch_interop import read_safetensors
    tensors, meta = read_safetensors(path)
    c, h, w = (int(v) for v in meta["aegis.input_shape"].strip("[]").replace(" ", "").split(",")[-3:])
    k = int(meta["aegis.num_classes"])
    model = {"mlp": mlp, "cnn-res": cnn_res}[meta["aegis.model"]](c, h, w, k)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def in_ball(adv, x, eps, norm):
    d = (adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool((dist <= eps + 1e-5).all() and (adv >= 0).all() and (adv <= 1).all())


def run_aegis(args, attack, extra):
    with tempfile.TemporaryDirectory() as tmp:
        adv_path = os.path.join(tmp, "adv.safetensors")
        cmd = [args.aegis, "attack", "--model", args.model, "--data", args.aegis_data, "--attack", attack, "--eps", str(args.eps), "--norm", args.norm, "--max", str(args.max),
               "--json", "--quiet", "--save-adv", adv_path, "--device", "cpu"] + extra
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        seconds = time.perf_counter() - t0
        from torch_interop import read_safetensors
        tensors, _ = read_safetensors(adv_path)
        return json.loads(out), tensors["adversarial"], seconds


def compare_square(args, model, x, y, clean, norm, extra):
    """Square's success rate among the clean-correct examples, per seed and side."""
    import torch
    import torchattacks
    references = {"torchattacks": lambda seed: torchattacks.Square(
        model, norm=norm, eps=args.eps, n_queries=args.queries, n_restarts=1, seed=seed)}
    try:
        from autoattack.square import SquareAttack
        references["official"] = lambda seed: SquareAttack(
            model, norm=norm, eps=args.eps, n_queries=args.queries, n_restarts=1, seed=seed, p_init=0.8,
            resc_schedule=True, device="cpu").perturb
    except ImportError:
        pass
    out = {"seeds": args.square_seeds, "aegis_square_proposals": args.square_proposals}
    for side, make in references.items():
        rates, seconds, in_ball_all = [], 0.0, True
        for seed in range(args.square_seeds):
            t0 = time.perf_counter()
            adv = make(seed)(x, y)
            seconds += time.perf_counter() - t0
            with torch.no_grad():
                robust = (model(adv).argmax(1) == y).float().mean().item()
            rates.append(1.0 - robust / clean if clean > 0 else 0.0)
            in_ball_all = in_ball_all and in_ball(adv, x, args.eps, args.norm)
        out[side] = {"success_rates": rates, "mean_success_rate": sum(rates) / len(rates), "seconds": seconds,
                     "in_ball": in_ball_all}
    rates, seconds, in_ball_all, torch_agrees = [], 0.0, True, True
    for seed in range(args.square_seeds):
        ours, our_adv, s = run_aegis(args, "square", extra + ["--seed", str(seed)])
        seconds += s
        rates.append(ours["attack_success_rate"])
        in_ball_all = in_ball_all and in_ball(our_adv, x, args.eps, args.norm)
        with torch.no_grad():
            torch_robust = (model(our_adv).argmax(1) == y).float().mean().item()
        torch_agrees = torch_agrees and abs(torch_robust - ours["robust_accuracy"]) < 1e-6
    out["aegis"] = {"success_rates": rates, "mean_success_rate": sum(rates) / len(rates), "seconds": seconds,
                    "in_ball": in_ball_all, "points_agree_in_torch": torch_agrees}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--setup", action="store_true", help="create the venv under /tmp and run inside it")
    p.add_argument("--aegis", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="digits", help="digits | fashion-mnist:DIR (the images the reference reads)")
    p.add_argument("--aegis-data", default="digits", help="the same images as aegis's --data spec")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", default="linf", choices=["linf", "l2"])
    p.add_argument("--max", type=int, default=200)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--attacks", default="apgd-t,square,autoattack", help="comma-separated: apgd-t, square, autoattack")
    p.add_argument("--square-seeds", type=int, default=1, help="Square runs per side, seeds 0..K-1")
    p.add_argument("--square-proposals", default="shared", choices=["shared", "per-example"])
    p.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = p.parse_args()
    if args.setup and sys.prefix != VENV:
        setup_and_reexec()
    import torch
    import torchattacks
    x, y = load_images(args.data, args.source_dir, args.max)
    model = load_model(args.model)
    norm = "Linf" if args.norm == "linf" else "L2"
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    result = {"torch": torch.__version__, "torchattacks": torchattacks.__version__, "examples": len(y),
              "eps": args.eps, "norm": args.norm, "threads": torch.get_num_threads(), "clean_accuracy": clean}
    reference = {
        "apgd-t": torchattacks.APGDT(model, norm=norm, eps=args.eps, steps=100, n_restarts=1, n_classes=10),
        "square": torchattacks.Square(model, norm=norm, eps=args.eps, n_queries=args.queries, n_restarts=1),
        "autoattack": torchattacks.AutoAttack(model, norm=norm, eps=args.eps, version="standard", n_classes=10),
    }
    proposals = ["--square-proposals", args.square_proposals]
    extra = {"apgd-t": [], "square": ["--queries", str(args.queries)] + proposals,
             "autoattack": ["--queries", str(args.queries)] + proposals}
    wanted = args.attacks.split(",")
    unknown = [a for a in wanted if a not in reference]
    if unknown:
        sys.exit("unknown --attacks entries: %s" % ", ".join(unknown))
    try:
        from autoattack import AutoAttack as OfficialAutoAttack
        official = OfficialAutoAttack(model, norm=norm, eps=args.eps, version="standard", verbose=False, device="cpu")
        official.square.n_queries = args.queries
        reference["autoattack"] = lambda xs, ys: official.run_standard_evaluation(xs, ys, bs=256)
        result["autoattack_reference"] = "official auto-attack"
    except ImportError:
        result["autoattack_reference"] = "torchattacks.AutoAttack (APGD at 10 steps)"
    for name, attack in reference.items():
        if name not in wanted:
            continue
        if name == "square":
            result[name] = compare_square(args, model, x, y, clean, norm, extra[name])
            continue
        t0 = time.perf_counter()
        adv = attack(x, y)
        ref_seconds = time.perf_counter() - t0
        with torch.no_grad():
            ref_robust = (model(adv).argmax(1) == y).float().mean().item()
        ours, our_adv, our_seconds = run_aegis(args, name, extra[name])
        with torch.no_grad():
            our_robust_torch = (model(our_adv).argmax(1) == y).float().mean().item()
        result[name] = {"reference_robust_accuracy": ref_robust, "aegis_robust_accuracy": ours["robust_accuracy"],
                        "aegis_points_in_torch": our_robust_torch, "reference_seconds": ref_seconds,
                        "aegis_seconds": our_seconds, "reference_in_ball": in_ball(adv, x, args.eps, args.norm),
                        "aegis_in_ball": in_ball(our_adv, x, args.eps, args.norm)}
        if name == "square":
            result[name]["reference_success_rate"] = 1.0 - ref_robust / clean if clean > 0 else 0.0
            result[name]["aegis_success_rate"] = ours["attack_success_rate"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
