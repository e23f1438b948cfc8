"""Bound propagation from Python against the command line."""

import numpy as np
import pytest

import aegis
from conftest import run_cli


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_margins_equal_the_command_lines(tmp_path, model_file, digits, method):
    _, _, xt, yt = digits
    model = aegis.load(model_file)
    r = aegis.verify(model, xt[:50], yt[:50], eps=0.02, method=method, progress=False)
    out = tmp_path / "v.tsv"
    status, _, err = run_cli("verify", "--model", model_file, "--data", "digits", "--eps", 0.02, "--method", method,
                             "--max", 50, "--per-example", out, "--quiet", "--device", "cpu")
    assert status == 0, err
    lines = out.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    margins = np.array([float(row[header.index("margin_lower")]) for row in rows])
    verified = np.array([int(row[header.index("verified")]) for row in rows])
    np.testing.assert_allclose(r["margin_lower"], margins, rtol=1e-5, atol=1e-6)
    assert np.array_equal(r["verified"], verified)


def test_crown_is_tighter_and_bounds_hold(model, digits):
    _, _, xt, yt = digits
    x, y = xt[:40], yt[:40]
    ibp = aegis.verify(model, x, y, eps=0.01, method="ibp", progress=False)
    crown = aegis.verify(model, x, y, eps=0.01, method="crown", progress=False)
    assert np.all(crown["margin_lower"] >= ibp["margin_lower"] - 1e-5)
    assert crown["verified_accuracy"] >= ibp["verified_accuracy"]
    # Sound: no point of the ball found by an attack has a smaller margin than the bound.
    adv = aegis.attacks.pgd(model, x, y, eps=0.01, steps=20)["adversarial"]
    logits = np.asarray(model(adv))
    true = logits[np.arange(40), y]
    logits[np.arange(40), y] = -np.inf
    assert np.all(true - logits.max(1) >= crown["margin_lower"] - 1e-4)


def test_verify_refuses_bad_arguments(model, digits):
    _, _, xt, yt = digits
    with pytest.raises(aegis.InvalidArgument, match="deeppoly|ibp"):
        aegis.verify(model, xt[:2], yt[:2], eps=0.01, method="deeppoly")
    with pytest.raises(aegis.InvalidArgument):
        aegis.verify(model, xt[:2], yt[:2], eps=-1.0)


def test_trust_report_equals_the_command_lines(model_file):
    import json

    from conftest import run_cli

    ours = aegis.report(aegis.load(model_file), "digits", max=60, sigma=0.25, n0=20, n=200, suite_steps=5,
                        seed=2, progress=False)
    status, out, err = run_cli("report", model_file, "--data", "digits", "--max", 60, "--sigma", 0.25, "--n0", 20,
                               "--n", 200, "--suite-steps", 5, "--seed", 2, "--device", "cpu", "--quiet", "--json")
    assert status == 0, err
    theirs = json.loads(out)
    for key in ("accuracy", "epsilon", "certified_accuracy", "acr", "pgd_robust_accuracy", "suite_robust_accuracy",
                "mia_auc", "ledger_status"):
        assert ours[key] == theirs[key], key
    with pytest.raises(ValueError, match="save the model first"):
        aegis.report(aegis.zoo("mlp", (1, 8, 8)), "digits")
