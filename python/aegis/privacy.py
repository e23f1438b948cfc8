"""Differential privacy: DP-SGD (Abadi et al. 2016) with exact accounting.

Accountants: 'rdp' (Renyi DP of the sampled Gaussian mechanism, Mironov et al. 2019, as
Opacus's RDP accountant) and 'prv' (privacy random variables, Gopi et al. 2021: an estimate with
error bounds, as Opacus's PRV accountant)."""

from . import _aegis
from ._arrays import prepare as _prepare
from ._progress import sink as _sink

_core = _aegis.privacy


def epsilon(noise_multiplier, sampling_rate, steps, delta=1e-5, accountant="rdp", eps_error=0.01):
    """Epsilon of `steps` steps of the sampled Gaussian mechanism with noise multiplier sigma and
    Poisson sampling rate q, at delta. Returns a dict: 'epsilon' and, for 'rdp', 'best_order';
    for 'prv', 'epsilon_estimate', 'epsilon_lower' and 'epsilon_upper' (epsilon is the upper
    bound)."""
    return _core.epsilon(float(noise_multiplier), float(sampling_rate), int(steps), float(delta), accountant,
                         float(eps_error))


def noise_multiplier_for(target_epsilon, sampling_rate, steps, delta=1e-5, accountant="rdp"):
    """The smallest noise multiplier sigma (to 0.1%) whose epsilon after `steps` steps at
    sampling rate q is at most target_epsilon."""
    return _core.noise_multiplier_for(float(target_epsilon), float(sampling_rate), int(steps), float(delta),
                                      accountant)


def train(model, x_train, y_train, epochs=5, batch_size=256, lr=0.1, optimizer="sgd", momentum=0.0,
          schedule="constant", noise_multiplier=None, target_epsilon=None, max_grad_norm=1.0, delta=1e-5,
          accountant="rdp", clipping="flat", sampling="poisson", seed=0, augmult=1, noise_sigma=0.0,
          consistency=None, consistency_entropy=0.5, augment=None, progress=None):
    """Trains `model` in place with DP-SGD: Poisson sampling at q = batch_size / N, per-example
    clipping to max_grad_norm ('flat', 'per-layer' or 'adaptive'), Gaussian noise of
    noise_multiplier * max_grad_norm, the optimizer's update ('sgd', 'adam', 'adamw').

    Give noise_multiplier, or target_epsilon to calibrate it. A model loaded from a file with a
    privacy ledger continues that ledger. The sealed ledger goes into model.metadata, so
    model.save() writes it. Returns the ledger as a dict ('epsilon', 'delta', 'steps', 'phases',
    ...) with 'noise_multiplier', 'sampling_rate' and per-epoch 'epochs'.

    Private and robust training: augmult copies of each sampled example, each with its own
    N(0, noise_sigma^2) input noise, their gradients averaged before clipping (the ledger is that
    of augmult = 1); consistency=LAMBDA adds DP-CERT's consistency regularizer to every example's
    loss (needs augmult >= 2 and noise_sigma > 0), consistency_entropy its entropy weight.
    augment='flip,crop:2' (the command line's --augment) crops and flips every copy before its
    noise, each copy keyed by (seed, step, example, copy). The model file then records
    'aegis.noise_sigma' (which certification reads), 'aegis.augment' and the weights."""
    a = _core.TrainArgs()
    a.epochs = int(epochs)
    a.batch_size = int(batch_size)
    a.lr = float(lr)
    a.optimizer = optimizer
    a.momentum = float(momentum)
    a.schedule = schedule
    a.noise_multiplier = float(noise_multiplier or 0.0)
    a.target_epsilon = float(target_epsilon or 0.0)
    a.max_grad_norm = float(max_grad_norm)
    a.delta = float(delta)
    a.accountant = accountant
    a.clipping = clipping
    a.sampling = sampling
    a.seed = int(seed)
    a.augmult = int(augmult)
    a.noise_sigma = float(noise_sigma)
    a.consistency = None if consistency is None else float(consistency)
    a.consistency_entropy = float(consistency_entropy)
    a.augment = "none" if augment is None else str(augment)
    return _core.train(model._core, _prepare(x_train), _prepare(y_train), a, _sink(progress))


class DPSGD:
    """DP-SGD one step at a time, for your own training loop:

        opt = aegis.privacy.DPSGD(model, noise_multiplier=1.1, max_grad_norm=1.0,
                                  sampling_rate=256 / len(x_train), dataset_size=len(x_train))
        for step in range(steps):
            mask = rng.random(len(x_train)) < opt.sampling_rate     # Poisson sampling
            opt.step(x_train[mask], y_train[mask])
        opt.seal()                      # the ledger into model.metadata; then model.save(...)
        print(opt.epsilon)

    Each step computes per-example gradients of the cross-entropy, clips each to max_grad_norm,
    adds N(0, sigma^2 C^2) noise to their sum, divides by the expected batch size q * N and applies
    the optimizer. The accountant assumes each batch is a Poisson sample with rate
    sampling_rate (each example in independently); batches formed otherwise are not covered by
    the epsilon it reports."""

    def __init__(self, model, noise_multiplier, max_grad_norm, sampling_rate, dataset_size, delta=1e-5,
                 accountant="rdp", optimizer="sgd", lr=0.1, momentum=0.0, seed=0):
        self.model = model
        self.sampling_rate = float(sampling_rate)
        self._core = _core.make_stepper(model._core, float(noise_multiplier), float(max_grad_norm),
                                        self.sampling_rate, int(dataset_size), float(delta), accountant, optimizer,
                                        float(lr), float(momentum), int(seed))

    def step(self, x, y):
        """One step on a batch (may be empty); returns 'step', 'batch_size', 'clipped' and 'loss'
        (the epsilon spent so far is the `epsilon` property)."""
        return self._core.step(_prepare(x), _prepare(y))

    def seal(self):
        """Writes the ledger, sealed over the parameters as they are now, into model.metadata
        (model.save() then records it); returns the ledger."""
        return self._core.seal()

    @property
    def steps(self):
        return self._core.steps

    @property
    def epsilon(self):
        """Epsilon spent so far at this object's delta."""
        return self._core.epsilon


__all__ = ["epsilon", "noise_multiplier_for", "train", "DPSGD"]
