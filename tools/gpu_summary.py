#!/usr/bin/env python3
"""The closing table of tools/gpu_check.sh: GPU test results per suite, and each benchmark next to
its PyTorch baseline with the ratio and the floor it is held to (issue floors, measured on the
lent card in one run). Reads the run's work folder; prints Markdown.

usage: gpu_summary.py --work DIR [--dry-run 0|1]
"""
import argparse
import glob
import json
import os


def test_rows(work):
    rows = []
    for f in sorted(glob.glob(os.path.join(work, "tests", "*.json")) + glob.glob(os.path.join(work, "cli", "*.json"))):
        name = os.path.relpath(f, work)[:-5]
        try:
            data = json.load(open(f))
        except (OSError, ValueError) as e:
            rows.append((name, 0, 0, 0, f"unreadable: {e}"))
            continue
        passed = failed = skipped = 0
        failures = []
        for suite in data.get("testsuites", []):
            for t in suite.get("testsuite", []):
                if t.get("failures"):
                    failed += 1
                    failures.append(f"{suite['name']}.{t['name']}")
                elif t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                    skipped += 1
                else:
                    passed += 1
        rows.append((name, passed, failed, skipped, ", ".join(failures[:4]) + (" …" if len(failures) > 4 else "")))
    # Suites that wrote no JSON (crashed before the end, or killed by the time limit).
    for log in sorted(glob.glob(os.path.join(work, "tests", "*.log")) + glob.glob(os.path.join(work, "cli", "*.log"))):
        name = os.path.relpath(log, work)[:-4]
        if not os.path.exists(os.path.join(work, name + ".json")):
            rows.append((name, 0, 1, 0, "no result file: crashed or timed out (see its log)"))
    return rows


def load_bench(work):
    out = []
    try:
        for line in open(os.path.join(work, "bench.jsonl")):
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def pick(rows, **want):
    for r in rows:
        if all(str(r.get(k, "")).startswith(str(v)) for k, v in want.items()):
            return r
    return None


def ratio_rows(bench):
    """(what, aegis, baseline, ratio, floor, higher_is_better)"""
    rows = []

    def add(what, a, b, value, floor, unit):
        rows.append((what, a, b, value, floor, unit))

    aegis_train = pick(bench, bench="train_step", impl="aegis")
    torch_train = pick(bench, bench="train_step", impl="pytorch")
    if aegis_train:
        add(f"train step, {aegis_train['model']} b{aegis_train['batch']} (PyTorch ms / aegis ms)", aegis_train["median_ms"],
            torch_train and torch_train["median_ms"],
            torch_train and torch_train["median_ms"] / aegis_train["median_ms"], (">=", 1.0), "ms")
    dp = pick(bench, bench="dp_step", impl="aegis", mode="dp")
    nonpriv = pick(bench, bench="dp_step", impl="aegis", mode="non-private")
    if dp and nonpriv:
        add(f"DP step / aegis non-private step, b{dp['batch']}", dp["median_ms"], nonpriv["median_ms"],
            dp["median_ms"] / nonpriv["median_ms"], ("<=", 1.25), "ms")
    opacus = [r for r in bench if r.get("bench") == "dp_step" and str(r.get("impl", "")).startswith("opacus")
              and r.get("mode") != "non-private"]
    if dp:
        best = min(opacus, key=lambda r: r["median_ms"]) if opacus else None
        add("DP step vs Opacus' fastest mode (Opacus ms / aegis ms)", dp["median_ms"], best and best["median_ms"],
            best and best["median_ms"] / dp["median_ms"], (">=", 3.0), "ms")
    for attack, floor in (("pgd-linf", 1.5), ("cw-l2", None)):
        a = pick(bench, bench="attack", impl="aegis", attack=attack)
        t = pick(bench, bench="attack", impl="pytorch", attack=attack)
        if a:
            add(f"{attack} b{a['batch']} (PyTorch ms / aegis ms)", a["median_ms"], t and t["median_ms"],
                t and t["median_ms"] / a["median_ms"], floor and (">=", floor), "ms")
    torch_smooth = pick(bench, bench="smoothing", impl="pytorch", model="resnet20")
    for r in bench:
        if r.get("bench") == "smoothing" and r.get("impl") == "aegis":
            p = r.get("precision", "fp32")
            graph = "graph" if r.get("cuda_graph") else "no graph" + (
                f": {r['cuda_graph_failure']}" if r.get("cuda_graph_failure") else "")
            add(f"smoothing {r['model']} b{r['batch']} {p}, {graph} (aegis / PyTorch samples/s)", r["samples_per_s"],
                torch_smooth and torch_smooth["samples_per_s"],
                torch_smooth and r["samples_per_s"] / torch_smooth["samples_per_s"],
                (">=", 2.0) if p == "fp32" else None, "samples/s")
    return rows


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--dry-run", default="0")
    a = ap.parse_args()
    dry = a.dry_run == "1"
    print("## GPU check" + (" (dry run on the CPU: nothing is judged)" if dry else ""))
    print()
    print("| tests | passed | failed | skipped | status | failing |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, p, f, s, note in test_rows(a.work):
        status = "FAIL" if f else ("skipped" if p == 0 else "ok")
        print(f"| {name} | {p} | {f} | {s} | {status} | {note} |")
    print()
    print("| benchmark | aegis | baseline | ratio | floor | status |")
    print("| --- | --- | --- | --- | --- | --- |")
    for what, mine, base, ratio, floor, unit in ratio_rows(load_bench(a.work)):
        if floor is None or ratio is None:
            status = "reported"
        elif dry:
            status = "not judged"
        else:
            ok = ratio >= floor[1] if floor[0] == ">=" else ratio <= floor[1]
            status = "PASS" if ok else "FAIL"
        floor_text = f"{floor[0]} {floor[1]}" if floor else "–"
        print(f"| {what} | {fmt(mine)} {unit} | {fmt(base)} | {fmt(ratio)} | {floor_text} | {status} |")


if __name__ == "__main__":
    main()
