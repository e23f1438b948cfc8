"""The example scripts of python/examples run on small data and print what they promise."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLES = REPO / "python" / "examples"


def run(script, *args):
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=os.getcwd())
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_certify_torch_model():
    pytest.importorskip("torch")
    out = run("certify_torch_model.py", "--images", 30, "--n", 1000, "--epochs", 2)
    gap = float(out.split("logit difference ")[1].split()[0])
    assert gap < 1e-4
    assert "certified accuracy at radius 0.25" in out


def test_dp_train(tmp_path):
    out = run("dp_train.py", "--epochs", 2, "--epsilon", 2.0, "--out", tmp_path / "dp.safetensors")
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("epsilon", "accountant")))
    eps = float(lines["epsilon"].split()[0])
    assert eps <= 2.0 and f"{eps:.4f}" in lines["accountant"]
    assert (tmp_path / "dp.safetensors").exists()


def test_attack_suite():
    out = run("attack_suite.py", "--images", 30, "--steps", 10)
    assert "robust accuracy (worst case)" in out and "apgd-ce" in out
