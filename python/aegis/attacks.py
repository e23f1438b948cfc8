"""Evasion attacks on a model, batched: each returns a dict with 'adversarial' (x's shape and
type), 'success' (int32 [N], 1 when the kept iterate fools the model), 'norm' (the perturbation's
norm in the attack's norm), 'loss' and 'gradient_evaluations'. Images are in [0, 1]; eps and
step sizes are in the same pixel units. norm: 'linf' or 'l2'.

The defaults follow the reference implementations: torchattacks for FGSM/BIM/PGD/MI-FGSM/CW, the
official AutoAttack code for APGD, APGD-T, FAB-T and Square (100 iterations, 9 target classes,
5000 queries)."""

from . import _aegis
from ._arrays import like as _like
from ._arrays import prepare as _prepare
from ._progress import sink as _sink

_core = _aegis.attacks


def _run(method, model, x, y, eps, norm="linf", steps=10, step_size=None, restarts=1, random_start=True,
         targets=None, seed=0, eot=1, bpda=False, **extra):
    x = _prepare(x)
    a = _core.AttackArgs()
    a.method = method
    a.eps = float(eps)
    a.norm = norm
    a.steps = int(steps)
    if step_size is not None:
        a.step_size = float(step_size)
    a.restarts = int(restarts)
    a.random_start = bool(random_start)
    if targets is not None:
        a.targets = _prepare(targets)
    a.seed = int(seed)
    a.eot = int(eot)
    a.bpda = bool(bpda)
    for k, v in extra.items():
        setattr(a, k, v)
    r = _core.attack(model._core, x, _prepare(y), a)
    for k in ("adversarial", "success", "norm", "loss", "queries"):
        if k in r:
            r[k] = _like(r[k], x)
    return r


def fgsm(model, x, y, eps, norm="linf", targets=None, eot=1, bpda=False):
    """FGSM (Goodfellow et al. 2015): one step of size eps along the gradient's sign (L2: the
    fast gradient method, along the normalized gradient)."""
    return _run("fgsm", model, x, y, eps, norm, steps=1, random_start=False, targets=targets, eot=eot, bpda=bpda)


def bim(model, x, y, eps, norm="linf", steps=10, step_size=None, targets=None, eot=1, bpda=False):
    """BIM (Kurakin et al. 2017): `steps` projected steps of eps/steps from x."""
    return _run("bim", model, x, y, eps, norm, steps, step_size, random_start=False, targets=targets, eot=eot,
                bpda=bpda)


def pgd(model, x, y, eps, norm="linf", steps=10, step_size=None, restarts=1, random_start=True, targets=None, seed=0,
        eot=1, bpda=False):
    """PGD (Madry et al. 2018) from a random start in the ball; step_size defaults to
    2.5 * eps / steps. restarts keep the best of several random starts per example. eot > 1
    averages each gradient over that many passes of a randomized model (EOT); bpda passes
    gradients straight through non-differentiable layers (BPDA)."""
    return _run("pgd", model, x, y, eps, norm, steps, step_size, restarts, random_start, targets, seed, eot, bpda)


def mifgsm(model, x, y, eps, norm="linf", steps=10, step_size=None, momentum=1.0, targets=None, eot=1, bpda=False):
    """MI-FGSM (Dong et al. 2018) with momentum decay mu."""
    return _run("mifgsm", model, x, y, eps, norm, steps, step_size, random_start=False, targets=targets, eot=eot,
                bpda=bpda, momentum=float(momentum))


def cw_l2(model, x, y, eps=0.0, c=1e-3, kappa=0.0, lr=1e-2, steps=100, binary_search_steps=9, abort_early=True,
          targets=None):
    """Carlini-Wagner L2 (2017): Adam on the tanh-space variable, `steps` iterations per binary
    search step over c (as torchattacks' steps). With eps > 0 an example counts as broken only
    when its perturbation fits in the L2 ball of radius eps; eps=0 returns the minimal-norm
    result unjudged."""
    return _run("cw-l2", model, x, y, eps, "l2", steps, None, random_start=False, targets=targets,
                unbounded=eps == 0.0, cw_c=float(c), cw_kappa=float(kappa), cw_lr=float(lr),
                cw_binary_search_steps=int(binary_search_steps), cw_abort_early=bool(abort_early))


def apgd(model, x, y, eps, norm="linf", loss="ce", steps=100, rho=0.75, seed=0, eot=1, bpda=False):
    """APGD (Croce & Hein 2020) with the cross-entropy ('ce') or DLR ('dlr') loss and its
    step-size schedule (checkpoints, rho)."""
    if loss not in ("ce", "dlr"):
        raise ValueError(f"loss {loss!r} is not 'ce' or 'dlr'")
    return _run("apgd-" + loss, model, x, y, eps, norm, steps, None, seed=seed, eot=eot, bpda=bpda, rho=float(rho))


def apgd_t(model, x, y, eps, norm="linf", steps=100, target_classes=9, seed=0, eot=1, bpda=False):
    """APGD-T (Croce & Hein 2020): targeted DLR loss against each of the top target_classes
    other classes in turn, restarting only the unbroken examples."""
    return _run("apgd-t", model, x, y, eps, norm, steps, None, seed=seed, eot=eot, bpda=bpda,
                target_classes=int(target_classes))


def fab_t(model, x, y, eps, norm="linf", steps=100, target_classes=9, seed=0):
    """FAB-T (Croce & Hein 2020): the targeted minimal-norm attack; broken when the norm is <= eps."""
    return _run("fab-t", model, x, y, eps, norm, steps, None, seed=seed, target_classes=int(target_classes))


def square(model, x, y, eps, norm="linf", queries=5000, p_init=0.8, seed=0):
    """Square attack (Andriushchenko et al. 2020): score-based black-box search with its schedule
    of square sizes; 'queries' holds the forward passes each example used."""
    return _run("square", model, x, y, eps, norm, seed=seed, queries=int(queries), p_init=float(p_init))


def suite(model, x, y, eps, norm="linf", attacks=(), steps=100, restarts=1, seed=0, batch=256, bpda=False,
          keep_adversarial=False, progress=None):
    """Several attacks and the per-example worst case (`aegis attack --attack suite`).

    attacks: names ('fgsm', 'bim', 'pgd', 'mifgsm', 'cw-l2', 'apgd-ce', 'apgd-dlr', 'apgd-t',
    'fab-t', 'square'); empty: the default suite. Returns clean and robust accuracy, each attack's
    own robust accuracy ('per_attack'), 'robust' (int32 [N]), 'per_example' (index, label, clean
    and adversarial prediction, broken_by, norm) and, with keep_adversarial, the worst-case
    'adversarial' examples (x's type)."""
    x = _prepare(x)
    r = _core.suite(model._core, x, _prepare(y), float(eps), norm, list(attacks), int(steps), int(restarts),
                    int(seed), int(batch), bool(bpda), bool(keep_adversarial), _sink(progress))
    r["robust"] = _like(r["robust"], x)
    r["adversarial"] = _like(r["adversarial"], x)
    return r


def autoattack(model, x, y, eps, norm="linf", version="standard", steps=100, target_classes=9, queries=5000, eot=20,
               seed=0, batch=256, bpda=False, keep_adversarial=False, progress=None):
    """AutoAttack (Croce & Hein 2020): version 'standard' (APGD-CE, APGD-T, FAB-T, Square, in the
    reference's order and budgets) or 'rand' (APGD-CE and APGD-DLR with eot draws per gradient,
    for randomized models). Returns clean and robust accuracy, robust accuracy after each attack
    ('robust_after'), 'per_example' and, with keep_adversarial, 'adversarial'."""
    x = _prepare(x)
    r = _core.autoattack(model._core, x, _prepare(y), float(eps), norm, version, int(steps), int(target_classes),
                         int(queries), int(eot), int(seed), int(batch), bool(bpda), bool(keep_adversarial),
                         _sink(progress))
    r["adversarial"] = _like(r["adversarial"], x)
    return r


__all__ = ["fgsm", "bim", "pgd", "mifgsm", "cw_l2", "apgd", "apgd_t", "fab_t", "square", "suite", "autoattack"]
