"""Shared fixtures of the Python tests. They run against the installed package (the wheel the
test command builds), never the source tree, and write only to pytest's temporary directories."""

import os
import pathlib
import subprocess

import numpy as np
import pytest

import aegis

REPO = pathlib.Path(__file__).resolve().parents[2]


def cli_path():
    """The command-line tool of the same build (AEGIS_CLI, else build/aegis in the repository)."""
    path = os.environ.get("AEGIS_CLI") or str(REPO / "build" / "aegis")
    if not os.path.exists(path):
        pytest.skip("the aegis command-line tool is not built here (set AEGIS_CLI)")
    return path


def run_cli(*args):
    """Runs the command-line tool; returns (exit status, stdout, stderr)."""
    p = subprocess.run([cli_path(), *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    return p.returncode, p.stdout, p.stderr


def tsv_rows(path):
    """The rows of a certify TSV file without the elapsed-time column."""
    with open(path) as f:
        lines = f.read().splitlines()
    return [tuple(line.split("\t")[:5]) for line in lines[1:]]


@pytest.fixture(scope="session")
def digits():
    return aegis.load_data("digits")


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, digits):
    """An mlp trained on the digits with DP-SGD through the Python API, saved to a file."""
    x, y, _, _ = digits
    m = aegis.zoo("mlp", (1, 8, 8), seed=1)
    aegis.privacy.train(m, x, y, epochs=4, batch_size=64, lr=0.5, noise_multiplier=1.0, seed=3, progress=False)
    path = tmp_path_factory.mktemp("model") / "mlp.safetensors"
    m.save(path)
    return path


@pytest.fixture
def model(model_file):
    return aegis.load(model_file)


def accuracy(model, x, y):
    return float(np.mean(np.asarray(model.predict(x)) == np.asarray(y)))
