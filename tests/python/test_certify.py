"""Randomized smoothing from Python against the command line on the same model and seed."""

import os

import numpy as np
import pytest

import aegis
from conftest import run_cli, tsv_rows


def test_sweep_writes_the_command_lines_rows(tmp_path, model_file):
    model = aegis.load(model_file)
    ours = tmp_path / "py.tsv"
    summary = aegis.certify.Sweep(model, ours, sigma=0.25, n0=50, n=500, batch=400, seed=7, data="digits",
                                  max=60).run(progress=False)
    assert summary["sweeps"][0]["written"] == 60
    theirs = tmp_path / "cli.tsv"
    status, _, err = run_cli("certify", "--model", model_file, "--data", "digits", "--sigma", 0.25, "--n0", 50,
                             "--n", 500, "--batch", 400, "--seed", 7, "--max", 60, "--out", theirs, "--quiet",
                             "--device", "cpu")
    assert status == 0, err
    assert tsv_rows(ours) == tsv_rows(theirs) and len(tsv_rows(ours)) == 60


def test_certify_on_arrays_equals_the_sweep_rows(tmp_path, model_file, digits):
    _, _, xt, yt = digits
    model = aegis.load(model_file)
    idx = np.arange(0, 40, 3)
    out = tmp_path / "s.tsv"
    aegis.certify.Sweep(model, out, sigma=0.5, n0=30, n=300, seed=3, data="digits", max=40, skip=3).run(progress=False)
    rows = aegis.certify.read_tsv(out)
    # The noise of an input is keyed by its id: ids = test-set indices reproduce the sweep.
    c = aegis.certify.certify(model, xt[idx], sigma=0.5, n0=30, n=300, seed=3, ids=idx, progress=False)
    assert np.array_equal(rows["idx"], idx)
    assert np.array_equal(c["prediction"], rows["predict"])
    np.testing.assert_allclose(c["radius"], rows["radius"], atol=5e-7)
    # Another seed draws other noise.
    other = aegis.certify.certify(model, xt[idx], sigma=0.5, n0=30, n=300, seed=4, ids=idx, progress=False)
    assert not np.array_equal(other["count"], c["count"])


def test_certify_results(model, digits):
    _, _, xt, yt = digits
    c = aegis.certify.certify(model, xt[:30], sigma=0.25, n0=100, n=2000, progress=False)
    assert c["prediction"].shape == (30,) and c["prediction"].dtype == np.int64
    abstain = c["prediction"] == -1
    assert np.all(c["radius"][abstain] == 0) and np.all(c["radius"][~abstain] > 0)
    # R = sigma * Phi^-1(p_lower) (Cohen et al. 2019, Thm 1)
    from statistics import NormalDist

    expected = [0.25 * NormalDist().inv_cdf(p) for p in c["p_lower"][~abstain]]
    np.testing.assert_allclose(c["radius"][~abstain], expected, rtol=1e-9)
    assert np.mean(c["prediction"] == yt[:30]) > 0.5


def test_bad_ids(model, digits):
    _, _, xt, _ = digits
    with pytest.raises(ValueError, match=r"ids\[1\] = -3 is negative"):
        aegis.certify.certify(model, xt[:2], sigma=0.25, n=10, ids=np.array([0, -3]))
    with pytest.raises(ValueError, match=r"ids has shape \(3,\); expected \(2,\)"):
        aegis.certify.certify(model, xt[:2], sigma=0.25, n=10, ids=np.arange(3))


def test_predict(model, digits):
    _, _, xt, yt = digits
    p = aegis.certify.predict(model, xt[:20], sigma=0.1, n=500, alpha=0.01, progress=False)
    assert np.mean(p["prediction"] == yt[:20]) > 0.5
    decided = p["prediction"] >= 0
    assert np.all(p["p_value"][decided] <= 0.01)


def test_sweep_on_arrays_resumes_and_refuses_other_arrays(tmp_path, model_file, digits):
    _, _, xt, yt = digits
    model = aegis.load(model_file)
    out = tmp_path / "a.tsv"
    sweep = aegis.certify.Sweep(model, out, sigma=0.25, n0=20, n=200, x=xt[:25], y=yt[:25])
    first = sweep.run(progress=False)
    assert first["sweeps"][0]["written"] == 25
    again = sweep.run(progress=False)
    assert again["sweeps"][0]["written"] == 0 and again["sweeps"][0]["resumed"] == 25
    other = aegis.certify.Sweep(model, out, sigma=0.25, n0=20, n=200, x=xt[25:50], y=yt[25:50])
    with pytest.raises(aegis.InvalidArgument, match="arrays:"):
        other.run(progress=False)
    with pytest.raises(aegis.InvalidArgument, match="already exists"):
        sweep.run(resume=False, progress=False)


def test_sweep_needs_a_model_file(tmp_path, digits):
    _, _, xt, yt = digits
    with pytest.raises(ValueError, match="save the model first"):
        aegis.certify.Sweep(aegis.zoo("mlp", (1, 8, 8)), tmp_path / "x.tsv", sigma=0.25, x=xt[:2], y=yt[:2]).run()


class _InterruptAfter:
    """A progress sink that delivers Ctrl-C (SIGINT, as the terminal would) at the k-th report."""

    def __init__(self, k):
        self.k = k
        self.calls = 0

    def begin(self, label, total, unit):
        pass

    def update(self, done, extra):
        self.calls += 1
        if self.calls == self.k:
            import signal

            signal.raise_signal(signal.SIGINT)

    def end(self, extra):
        pass

    def info(self, message):
        pass

    def warning(self, message):
        pass


def test_ctrl_c_stops_a_sweep_that_then_resumes(tmp_path, model_file):
    model = aegis.load(model_file)
    kwargs = dict(sigma=0.25, n0=20, n=100, batch=100, seed=1, data="digits", max=120)
    out = tmp_path / "interrupted.tsv"
    sweep = aegis.certify.Sweep(model, out, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(progress=_InterruptAfter(30))
    done = tsv_rows(out)
    assert 0 < len(done) < 120
    summary = sweep.run(progress=False)
    assert summary["sweeps"][0]["resumed"] == len(done)
    whole = tmp_path / "whole.tsv"
    aegis.certify.Sweep(model, whole, **kwargs).run(progress=False)
    assert tsv_rows(out) == tsv_rows(whole)


def test_analyze_and_several_sigmas(tmp_path, model_file):
    model = aegis.load(model_file)
    sweep = aegis.certify.Sweep(model, tmp_path / "m.tsv", sigma=[0.12, 0.5], n0=20, n=200, data="digits", max=30)
    sweep.run(progress=False)
    files = sweep.files()
    assert [os.path.basename(f) for f in files] == ["m_sigma0.12.tsv", "m_sigma0.5.tsv"]
    a = aegis.certify.analyze(files, radii=[0.0, 0.25])
    status, out, err = run_cli("analyze", *files, "--radii", "0,0.25", "--json")
    assert status == 0, err
    import json

    cli = json.loads(out)
    assert cli.pop("command") == "analyze"
    assert a == cli


def test_progress_is_drawn_on_request(model, digits, capsys):
    _, _, xt, _ = digits
    aegis.certify.certify(model, xt[:5], sigma=0.25, n0=10, n=400, batch=100, progress=True)
    err = capsys.readouterr().err
    assert "certify" in err and "2050" in err  # 5 inputs x (10 + 400) samples
