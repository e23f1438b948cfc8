"""The attacks from Python: constraints, agreement with the command line, arguments."""

import numpy as np
import pytest

import aegis
from conftest import run_cli


def _within(adv, x, eps, norm):
    d = (adv - x).reshape(len(x), -1)
    n = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    return bool(np.all(n <= eps * (1 + 1e-5) + 1e-6)) and adv.min() >= 0.0 and adv.max() <= 1.0


@pytest.mark.parametrize("name,norm,eps", [("fgsm", "linf", 0.1), ("pgd", "linf", 0.1), ("pgd", "l2", 1.0),
                                           ("bim", "linf", 0.1), ("mifgsm", "linf", 0.1)])
def test_gradient_attacks_stay_in_the_ball(model, digits, name, norm, eps):
    _, _, xt, yt = digits
    r = getattr(aegis.attacks, name)(model, xt[:64], yt[:64], eps=eps, norm=norm)
    adv = r["adversarial"]
    assert adv.shape == xt[:64].shape and _within(adv, xt[:64], eps, norm)
    fooled = np.asarray(model.predict(adv)) != yt[:64]
    assert np.array_equal(r["success"].astype(bool), fooled)
    assert r["success"].mean() > 0.1


def test_pgd_matches_the_command_line(tmp_path, model_file, digits):
    _, _, xt, yt = digits
    model = aegis.load(model_file)
    r = aegis.attacks.pgd(model, xt, yt, eps=0.15, steps=10, seed=4)
    ours = np.asarray(model.predict(r["adversarial"]))
    per_example = tmp_path / "pgd.tsv"
    status, _, err = run_cli("attack", "--model", model_file, "--data", "digits", "--attack", "pgd-linf", "--eps",
                             0.15, "--steps", 10, "--seed", 4, "--batch", 1000, "--per-example", per_example,
                             "--quiet", "--device", "cpu")
    assert status == 0, err
    rows = [line.split("\t") for line in per_example.read_text().splitlines()[1:]]
    header = per_example.read_text().splitlines()[0].split("\t")
    col = header.index("adv_predict")
    assert [int(row[col]) for row in rows] == ours.tolist()


def test_apgd_and_apgd_t_are_stronger_than_fgsm(model, digits):
    _, _, xt, yt = digits
    x, y = xt[:80], yt[:80]
    f = aegis.attacks.fgsm(model, x, y, eps=0.08)["success"].mean()
    a = aegis.attacks.apgd(model, x, y, eps=0.08, steps=50)
    t = aegis.attacks.apgd_t(model, x, y, eps=0.08, steps=20, target_classes=3)
    assert a["success"].mean() >= f and t["success"].mean() >= f
    assert _within(a["adversarial"], x, 0.08, "linf") and _within(t["adversarial"], x, 0.08, "linf")


def test_cw_l2_minimal_norm_and_bounded(model, digits):
    _, _, xt, yt = digits
    x, y = xt[:16], yt[:16]
    free = aegis.attacks.cw_l2(model, x, y, c=1.0, steps=30, binary_search_steps=3)
    bounded = aegis.attacks.cw_l2(model, x, y, eps=0.5, c=1.0, steps=30, binary_search_steps=3)
    # The bounded result counts only successes whose L2 norm fits in eps.
    fits = free["success"].astype(bool) & (free["norm"] <= 0.5)
    assert np.array_equal(bounded["success"].astype(bool), fits)


def test_square_counts_queries(model, digits):
    _, _, xt, yt = digits
    r = aegis.attacks.square(model, xt[:20], yt[:20], eps=0.1, queries=200, seed=1)
    assert r["queries"].shape == (20,) and r["queries"].max() <= 200
    assert _within(r["adversarial"], xt[:20], 0.1, "linf")


def test_fab_t(model, digits):
    _, _, xt, yt = digits
    r = aegis.attacks.fab_t(model, xt[:10], yt[:10], eps=0.2, steps=20, target_classes=2)
    assert r["adversarial"].shape == xt[:10].shape


def test_suite_and_autoattack(model, digits):
    _, _, xt, yt = digits
    x, y = xt[:40], yt[:40]
    s = aegis.attacks.suite(model, x, y, eps=0.1, attacks=["fgsm", "pgd"], steps=10, keep_adversarial=True,
                            progress=False)
    assert set(s["per_attack"]) == {"fgsm", "pgd"}
    assert s["robust_accuracy"] <= min(s["per_attack"].values()) + 1e-12
    assert s["adversarial"].shape == x.shape and len(s["per_example"]["broken_by"]) == 40
    a = aegis.attacks.autoattack(model, x, y, eps=0.1, steps=10, queries=100, target_classes=2, progress=False)
    assert [name for name, _ in a["robust_after"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert a["robust_accuracy"] <= a["clean_accuracy"]


def test_bad_attack_arguments(model, digits):
    _, _, xt, yt = digits
    with pytest.raises(aegis.InvalidArgument, match="step"):
        aegis.attacks.pgd(model, xt[:2], yt[:2], eps=0.1, step_size=0.0)
    with pytest.raises(aegis.InvalidArgument, match="linf"):
        aegis.attacks.pgd(model, xt[:2], yt[:2], eps=0.1, norm="l3")
    with pytest.raises(ValueError, match="'ce' or 'dlr'"):
        aegis.attacks.apgd(model, xt[:2], yt[:2], eps=0.1, loss="mse")
