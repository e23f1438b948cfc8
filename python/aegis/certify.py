"""Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): CERTIFY and PREDICT of the smoothed
classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, sigma^2 I), in [0, 1] pixel units.

The noise of sample s of an input is keyed by (seed, the input's id): give ids=test-set indices
and the certificates equal those of `aegis certify` with the same seed. Sweep writes the command
line's TSV files (Cohen et al.'s columns), resumable and shardable."""

import numpy as np

from . import _aegis
from ._arrays import like as _like
from ._arrays import prepare as _prepare
from ._progress import sink as _sink


def _aegis_data_dir(data_dir):
    from . import _data_dir

    return _data_dir(data_dir)

_core = _aegis.certify


def certify(model, x, sigma, n0=100, n=100_000, alpha=0.001, batch=1000, seed=0, ids=None, precision="fp32",
            progress=None):
    """CERTIFY (Cohen et al. 2019, Alg. 2) of every image of x ([N, C, H, W] in [0, 1]).

    n0 selection samples choose the class; n fresh samples bound its probability from below
    (Clopper-Pearson at 1 - alpha); the radius is sigma * Phi^-1(p_lower) in L2. Returns a dict of
    arrays (x's type): 'prediction' (int64, -1 = abstain), 'radius', 'p_lower', 'selected' (the
    class chosen, even when abstaining) and 'count' (its count among the n samples).
    precision: 'fp32', or on a GPU 'tf32', 'bf16', 'fp16'."""
    x = _prepare(x)
    r = _core.certify(model._core, x, None if ids is None else _prepare(ids), float(sigma), int(n0), int(n),
                      float(alpha), int(batch), int(seed), precision, _sink(progress))
    return {k: _like(v, x) for k, v in r.items()}


def predict(model, x, sigma, n=100_000, alpha=0.001, batch=1000, seed=0, ids=None, precision="fp32", progress=None):
    """PREDICT (Cohen et al. 2019, Alg. 1): the smoothed prediction of each image, or -1 when the
    binomial test of the top two counts has p-value > alpha. Returns 'prediction', 'p_value',
    'count_a', 'count_b' (arrays of x's type)."""
    x = _prepare(x)
    r = _core.predict(model._core, x, None if ids is None else _prepare(ids), float(sigma), int(n), float(alpha),
                      int(batch), int(seed), precision, _sink(progress))
    return {k: _like(v, x) for k, v in r.items()}


class Sweep:
    """A certification sweep into TSV files, the same files `aegis certify` writes and reads.

        sweep = aegis.certify.Sweep(model, "cert.tsv", sigma=0.25, n=10_000, data="fashion-mnist", max=500)
        summary = sweep.run()          # interrupted (Ctrl-C, a crash)? sweep.run() again resumes

    The model must be a file (aegis.load or model.save): the sweep's settings record it and its
    fingerprint, and resuming with another model is refused. Data: a dataset spec (`data=`, its
    test split, exactly as the command line) or arrays (`x=`, `y=`; the settings name them by a
    hash of their bytes). Several sigma values write one file each (_sigma<s> before the
    extension). skip/max/shard select test indices as --skip/--max/--shard do."""

    def __init__(self, model, out, sigma, n0=100, n=100_000, alpha=0.001, batch=1000, seed=0, data=None, x=None,
                 y=None, skip=1, max=0, shard="0/1", radii=(), precision="fp32", data_dir=""):
        self.model = model
        self.out = str(out)
        self.sigmas = [float(s) for s in (sigma if isinstance(sigma, (list, tuple)) else [sigma])]
        self.n0, self.n, self.alpha, self.batch, self.seed = int(n0), int(n), float(alpha), int(batch), int(seed)
        self.data, self.x, self.y = data, x, y
        self.skip, self.max, self.shard = int(skip), int(max), str(shard)
        self.radii = [float(r) for r in radii]
        self.precision = precision
        self.data_dir = data_dir

    def run(self, resume=True, overwrite=False, progress=None):
        """Certifies what the files miss; returns the summary `aegis certify --json` prints (one
        entry per sigma under 'sweeps'). resume=False refuses an existing non-empty file;
        overwrite=True starts over."""
        mode = "overwrite" if overwrite else ("resume" if resume else "create")
        x = None if self.x is None else _prepare(self.x)
        y = None if self.y is None else _prepare(self.y)
        return _core.sweep(self.model._core, self.out, self.sigmas, self.n0, self.n, self.alpha, self.batch,
                           self.seed, self.precision, self.skip, self.max, self.shard, mode, self.radii, self.data, x,
                           y, _aegis_data_dir(self.data_dir), _sink(progress))

    def files(self):
        """The TSV file of each sigma."""
        if len(self.sigmas) == 1:
            return [self.out]
        return [_core.sigma_out_path(self.out, s) for s in self.sigmas]

    def analyze(self, radii=()):
        """analyze() of this sweep's files."""
        return analyze(self.files(), radii=radii)


def analyze(files, radii=(), sigma=None, envelope=False):
    """Certified accuracy at radii, ACR and abstention of certify TSV files (shards of one sigma
    are merged), as `aegis analyze --json` prints it."""
    if isinstance(files, str):
        files = [files]
    return _core.analyze([str(f) for f in files], [float(r) for r in radii], sigma, bool(envelope))


def read_tsv(path):
    """The rows of a certify TSV file as a dict of NumPy arrays: idx, label, predict, radius,
    correct (and time, as text)."""
    cols = {"idx": [], "label": [], "predict": [], "radius": [], "correct": [], "time": []}
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.endswith("\n"):
                break  # a partial last row of an interrupted sweep
            for name, value in zip(header, line.rstrip("\n").split("\t")):
                cols[name].append(value)
    out = {
        "idx": np.array(cols["idx"], dtype=np.int64),
        "label": np.array(cols["label"], dtype=np.int64),
        "predict": np.array(cols["predict"], dtype=np.int64),
        "radius": np.array(cols["radius"], dtype=np.float64),
        "correct": np.array(cols["correct"], dtype=np.int64),
        "time": cols["time"],
    }
    return out


__all__ = ["certify", "predict", "Sweep", "analyze", "read_tsv"]
