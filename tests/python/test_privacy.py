"""Accounting and DP-SGD from Python."""

import json

import numpy as np
import pytest

import aegis
from conftest import accuracy, run_cli


def test_epsilon_matches_the_command_line():
    for accountant in ("rdp", "prv"):
        ours = aegis.privacy.epsilon(1.1, 256 / 60000, 2340, delta=1e-5, accountant=accountant)
        status, out, err = run_cli("account", "--noise-multiplier", 1.1, "--sampling-rate", 256 / 60000, "--steps",
                                   2340, "--delta", 1e-5, "--accountant", accountant, "--json")
        assert status == 0, err
        assert ours["epsilon"] == pytest.approx(json.loads(out)["epsilon"], rel=1e-12)


def test_opacus_reference_values():
    # Opacus' own accountant tests: sigma 1.5, q 0.04, delta 1e-5 -> RDP 7.3291 (2250 steps), PRV
    # upper bound 6.7774 (2249 steps), both published to 4 decimals.
    assert aegis.privacy.epsilon(1.5, 0.04, 2250)["epsilon"] == pytest.approx(7.3291, abs=5e-5)
    assert aegis.privacy.epsilon(1.5, 0.04, 2249, accountant="prv")["epsilon"] == pytest.approx(6.7774, abs=5e-5)


def test_noise_multiplier_for_inverts_epsilon():
    sigma = aegis.privacy.noise_multiplier_for(3.0, 0.01, 2000, delta=1e-5)
    assert aegis.privacy.epsilon(sigma, 0.01, 2000)["epsilon"] <= 3.0
    assert aegis.privacy.epsilon(sigma * 0.99, 0.01, 2000)["epsilon"] > 3.0


def test_train_reaches_its_target_and_the_file_keeps_the_ledger(tmp_path, digits):
    x, y, xt, yt = digits
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    ledger = aegis.privacy.train(m, x, y, epochs=3, batch_size=64, lr=0.5, target_epsilon=2.0, progress=False)
    assert ledger["epsilon"] <= 2.0 and ledger["steps"] == 3 * round(1500 / 64)
    assert accuracy(m, xt, yt) > 0.5
    path = tmp_path / "dp.safetensors"
    m.save(path)
    status, out, err = run_cli("report", path, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["ledger_status"] == "verified"
    assert report["ledger"]["epsilon"] == pytest.approx(ledger["epsilon"])


def test_private_smoothed_training_with_the_consistency_regularizer(tmp_path, digits):
    x, y, xt, yt = digits
    kwargs = dict(epochs=3, batch_size=150, lr=2.0, noise_multiplier=1.0, delta=1e-4, augmult=2, noise_sigma=0.25,
                  progress=False)
    plain = aegis.privacy.train(aegis.zoo("mlp", (1, 8, 8), seed=0), x, y, **kwargs)
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    ledger = aegis.privacy.train(m, x, y, consistency=1.0, consistency_entropy=0.25, **kwargs)
    # The regularizer leaves the accounting alone, and the model still learns.
    assert ledger["epsilon"] == plain["epsilon"] and ledger["phases"] == plain["phases"]
    assert ledger["epochs"][-1]["train_loss"] < ledger["epochs"][0]["train_loss"]
    assert accuracy(m, xt, yt) > 0.5
    assert m.metadata["aegis.consistency.lambda"] == "1.0" and m.metadata["aegis.consistency.eta"] == "0.25"
    assert float(m.metadata["aegis.noise_sigma"]) == 0.25 and m.metadata["aegis.augmult"] == "2"
    with pytest.raises(aegis.InvalidArgument, match="K >= 2"):
        aegis.privacy.train(aegis.zoo("mlp", (1, 8, 8)), x, y, epochs=1, noise_multiplier=1.0, noise_sigma=0.25,
                            consistency=1.0, progress=False)
    with pytest.raises(aegis.InvalidArgument, match="lambda"):
        aegis.privacy.train(aegis.zoo("mlp", (1, 8, 8)), x, y, epochs=1, noise_multiplier=1.0, noise_sigma=0.25,
                            augmult=2, consistency=-1.0, progress=False)


def test_private_training_with_crops_of_every_copy(digits):
    x, y, xt, yt = digits
    kwargs = dict(epochs=2, batch_size=150, lr=2.0, noise_multiplier=1.0, delta=1e-4, augmult=2, progress=False)
    plain = aegis.privacy.train(aegis.zoo("mlp", (1, 8, 8), seed=0), x, y, **kwargs)
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    ledger = aegis.privacy.train(m, x, y, augment="crop:1", **kwargs)
    # The same accounting, different inputs (the crops), and the file records the transform.
    assert ledger["epsilon"] == plain["epsilon"] and ledger["phases"] == plain["phases"]
    assert ledger["epochs"][-1]["train_loss"] != plain["epochs"][-1]["train_loss"]
    assert m.metadata["aegis.augment"] == "crop:1" and m.metadata["aegis.augmult"] == "2"
    assert accuracy(m, xt, yt) > 0.3
    with pytest.raises(aegis.InvalidArgument, match="augment"):
        aegis.privacy.train(aegis.zoo("mlp", (1, 8, 8)), x, y, epochs=1, noise_multiplier=1.0, augment="rotate",
                            progress=False)


def test_training_continues_the_files_ledger(tmp_path, model_file, digits):
    x, y, _, _ = digits
    m = aegis.load(model_file)
    before = float(m.metadata["aegis.dp.epsilon"])
    ledger = aegis.privacy.train(m, x, y, epochs=1, batch_size=64, lr=0.5, noise_multiplier=1.0, progress=False)
    assert len(ledger["phases"]) == 2 and ledger["epsilon"] > before


def test_step_level_object(tmp_path, digits):
    x, y, xt, yt = digits
    n, q = len(x), 64 / len(x)

    def run(seed):
        m = aegis.zoo("mlp", (1, 8, 8), seed=0)
        opt = aegis.privacy.DPSGD(m, noise_multiplier=1.0, max_grad_norm=1.0, sampling_rate=q, dataset_size=n,
                                  lr=0.5, seed=seed)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(60):
            mask = rng.random(n) < q
            losses.append(opt.step(x[mask], y[mask])["loss"])
        return m, opt, losses

    m, opt, losses = run(seed=5)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert opt.steps == 60
    assert opt.epsilon == pytest.approx(aegis.privacy.epsilon(1.0, q, 60)["epsilon"], rel=1e-12)
    # Same seed and batches: the same parameters; another noise seed: others.
    again, _, _ = run(seed=5)
    other, _, _ = run(seed=6)
    assert np.array_equal(m(xt), again(xt)) and not np.array_equal(m(xt), other(xt))
    # An empty Poisson sample is a step too (noise only).
    assert opt.step(x[:0], y[:0])["batch_size"] == 0 and opt.steps == 61
    ledger = opt.seal()
    path = tmp_path / "stepped.safetensors"
    m.save(path)
    status, out, err = run_cli("report", path, "--json")
    assert status == 0, err
    assert json.loads(out)["ledger_status"] == "verified" and ledger["steps"] == 61


def test_bad_privacy_arguments(digits):
    x, y, _, _ = digits
    m = aegis.zoo("mlp", (1, 8, 8))
    with pytest.raises(aegis.InvalidArgument, match="noise_multiplier"):
        aegis.privacy.train(m, x, y, progress=False)
    with pytest.raises(aegis.InvalidArgument, match="sampling rate"):
        aegis.privacy.DPSGD(m, 1.0, 1.0, sampling_rate=1.5, dataset_size=10)
    with pytest.raises(aegis.InvalidArgument, match="accountant"):
        aegis.privacy.epsilon(1.0, 0.01, 10, accountant="gdp")


def test_scatter_linear_trains_privately_and_attacks_through_the_transform(digits):
    # Tramèr & Boneh's ScatterNet + linear: only the last layer learns; the scattering transform
    # is computed once per training example and differentiated through by the attack.
    x, y, xt, yt = digits
    m = aegis.zoo("scatter-linear", (1, 8, 8), seed=0)
    assert m.num_parameters == 81 * 2 * 2 * 10 + 10  # 81 x 2 x 2 features of an 8 x 8 image
    ledger = aegis.privacy.train(m, x, y, epochs=6, batch_size=256, lr=4.0, momentum=0.9, noise_multiplier=1.0,
                                 max_grad_norm=0.1, delta=1e-4, progress=False)
    assert ledger["steps"] == 6 * round(1500 / 256)
    clean = accuracy(m, xt, yt)
    assert clean > 0.7
    r = aegis.attacks.pgd(m, xt[:50], yt[:50], eps=0.1, steps=5)
    assert accuracy(m, r["adversarial"], yt[:50]) < accuracy(m, xt[:50], yt[:50])
