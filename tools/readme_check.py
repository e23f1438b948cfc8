#!/usr/bin/env python3
"""Runs every README command block marked runnable, top to bottom, in one fresh directory, so that a
README command that breaks fails the tests.

A block is runnable when the line before its opening fence is `<!-- runnable -->` (invisible on a
rendered page). Its lines run with bash, `aegis` on PATH (the build's binary), in a temporary
directory shared by all blocks (so a model written by one block is there for the next).
Continuation lines (ending in a backslash) are joined; `#` comments are dropped. To keep the run
short, the check shrinks the work the commands ask for, and says so when it does:

  --epochs N, --dp-epochs N  ->  1        --n N           ->  min(N, 300)
  --n0 N                     ->  min(N, 30)   --max N     ->  min(N, 20)   (--max 0 -> 20)
  --steps N (attack, train)  ->  min(N, 5)    --samples N ->  min(N, 200)

Without Fashion-MNIST (Debian's dataset-fashion-mnist) the blocks that need it are skipped and
reported. Exit status 0 when every block ran and exited 0.

usage: readme_check.py --aegis BUILD/aegis [--readme README.md] [--keep]
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

SHRINK = {"--epochs": lambda v: 1, "--dp-epochs": lambda v: 1, "--n": lambda v: min(v, 300),
          "--n0": lambda v: min(v, 30), "--max": lambda v: 20 if v == 0 else min(v, 20),
          "--samples": lambda v: min(v, 200)}
STEP_COMMANDS = ("attack", "train", "demo")


def blocks(text):
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "<!-- runnable -->" and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            start = i + 2
            j = start
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append((start + 1, lines[start:j]))
            i = j
        i += 1
    return out


def commands(block_lines):
    cmds, cur = [], ""
    for line in block_lines:
        stripped = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not stripped and not cur:
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
            continue
        cur += stripped
        if cur.strip():
            cmds.append(cur.strip())
        cur = ""
    if cur.strip():
        cmds.append(cur.strip())
    return cmds


def shrink(cmd):
    words = shlex.split(cmd)
    changed = []
    is_aegis = words and words[0] == "aegis"
    sub = words[1] if is_aegis and len(words) > 1 else ""
    for k in range(len(words) - 1):
        opt, val = words[k], words[k + 1]
        rule = SHRINK.get(opt)
        if opt == "--steps" and sub in STEP_COMMANDS:
            rule = lambda v: min(v, 5)
        if rule and is_aegis and re.fullmatch(r"\d+", val):
            new = str(rule(int(val)))
            if new != val:
                words[k + 1] = new
                changed.append(f"{opt} {val}->{new}")
    return " ".join(shlex.quote(w) for w in words), changed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aegis", required=True)
    ap.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "..", "README.md"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    aegis = os.path.abspath(a.aegis)
    if not os.access(aegis, os.X_OK):
        sys.exit(f"readme_check: {aegis} is not an executable")
    have_fmnist = os.path.isdir("/usr/share/datasets/fashion-mnist") or "AEGIS_FASHION_MNIST_DIR" in os.environ
    work = tempfile.mkdtemp(prefix="aegis-readme-")
    bindir = os.path.join(work, ".bin")
    os.makedirs(bindir)
    os.symlink(aegis, os.path.join(bindir, "aegis"))
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    ran = failed = skipped = 0
    found = blocks(open(a.readme, encoding="utf-8").read())
    if not found:
        sys.exit("readme_check: no runnable blocks found")
    for line_no, body in found:
        for cmd in commands(body):
            if "fashion-mnist" in cmd and not have_fmnist:
                print(f"SKIP README:{line_no}: {cmd}  (no Fashion-MNIST on this machine)")
                skipped += 1
                continue
            run_cmd, changed = shrink(cmd)
            t0 = time.time()
            r = subprocess.run(["bash", "-c", "set -o pipefail; " + run_cmd], cwd=work, env=env,
                               capture_output=True, text=True, timeout=900)
            dt = time.time() - t0
            note = f"  (shrunk: {', '.join(changed)})" if changed else ""
            ran += 1
            if r.returncode != 0:
                failed += 1
                print(f"FAIL README:{line_no}: {cmd}{note}\n  exit {r.returncode} after {dt:.1f}s; stderr:")
                print("    " + "\n    ".join(r.stderr.strip().splitlines()[-8:]))
            else:
                print(f"ok   README:{line_no}: {cmd}{note}  [{dt:.1f}s]")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{ran - failed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
