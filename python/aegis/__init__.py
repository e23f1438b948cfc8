"""aegis: private and robust deep learning from Python.

    import aegis
    model = aegis.load("model.safetensors")      # or .onnx, or aegis.load(onnx_bytes)
    logits = model(x)                             # x: NumPy array or torch tensor [N, C, H, W] in [0, 1]
    cert = aegis.certify.certify(model, x, sigma=0.25, n0=100, n=10_000)
    adv = aegis.attacks.pgd(model, x, y, eps=0.1)
    ledger = aegis.privacy.train(model, x_train, y_train, target_epsilon=3.0)
    bounds = aegis.verify(model, x, y, eps=0.01)

Arrays go in and out through DLPack: a C-contiguous float32 NumPy array or torch tensor is read
where it lies, without a copy, and results come back as the caller's type (torch in, torch out).
Long calls release the GIL, show progress, and stop on Ctrl-C. aegis's errors are Python
exceptions carrying the library's message: InvalidArgument and ShapeError are ValueErrors,
IoError an OSError, NumericError an ArithmeticError, DeviceError a RuntimeError; a wrong dtype is
a TypeError.
"""

from . import _aegis
from ._aegis import (
    DeviceError,
    Error,
    InvalidArgument,
    IoError,
    NumericError,
    ShapeError,
    Unsupported,
    __version__,
    cuda_compiled,
    cuda_device_count,
    model_names,
    onnx_supported,
)
from ._arrays import like as _like
from ._arrays import prepare as _prepare
from ._progress import sink as _sink


class Model:
    """A classifier: a zoo architecture or an imported ONNX graph. Inputs are float32 images
    [N, C, H, W] with pixel values in [0, 1]; outputs are logits [N, num_classes]."""

    def __init__(self, core):
        self._core = core

    def __call__(self, x):
        """Logits of images x (NumPy array or torch tensor [N, C, H, W] in [0, 1]), as x's type."""
        x = _prepare(x)
        return _like(self._core.forward(x), x)

    def predict(self, x):
        """The predicted class of each image (argmax of the logits), as x's type."""
        return self(x).argmax(1)

    def to(self, device):
        """Moves the parameters to 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when a GPU is usable).
        Returns the model."""
        self._core.to(device)
        return self

    def save(self, path, metadata=None):
        """Writes the model, atomically: .safetensors for zoo models, .onnx for imported ones.
        The privacy ledger of DP training and other metadata are written along."""
        self._core.save(str(path), dict(metadata or {}))

    @property
    def name(self):
        """The zoo architecture's name, or 'onnx' for an imported graph."""
        return self._core.name

    @property
    def input_shape(self):
        """(C, H, W) of one example."""
        return tuple(self._core.input_shape)

    @property
    def num_classes(self):
        return self._core.num_classes

    @property
    def metadata(self):
        """The model file's metadata (str -> str): aegis.* keys, the privacy ledger (aegis.dp.*)."""
        return dict(self._core.metadata)

    @property
    def path(self):
        """The file the model was loaded from or last saved to ('' for a model made in memory)."""
        return self._core.path

    @property
    def device(self):
        return self._core.device

    @property
    def num_parameters(self):
        return self._core.num_parameters

    def summary(self):
        """The layers, one per line, with their parameter counts."""
        return self._core.summary()

    def __repr__(self):
        return (
            f"aegis.Model({self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"device={self.device!r})"
        )


def load(source):
    """A model from a file (.safetensors written by aegis, or .onnx) or from the bytes of an ONNX
    model held in memory (for instance what torch.onnx.export wrote into an io.BytesIO)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Model(_aegis.load_onnx_bytes(bytes(source)))
    return Model(_aegis.load(str(source)))


def zoo(name, input_shape=(1, 28, 28), num_classes=10, activation="", seed=0):
    """A freshly initialized zoo architecture (aegis.model_names() lists them), e.g.
    zoo("cnn-fmnist", (1, 28, 28)). The seed fixes the initialization."""
    return Model(_aegis.zoo(name, list(input_shape), num_classes, activation, seed))


def load_data(spec, data_dir=""):
    """(x_train, y_train, x_test, y_test) as NumPy arrays: images float32 [N, C, H, W] in [0, 1],
    labels int32. spec: 'digits' (bundled), 'fashion-mnist' (Debian's dataset-fashion-mnist),
    'fashion-mnist:DIR', 'mnist:DIR' or 'cifar10:DIR'."""
    from ._arrays import numpy

    return tuple(numpy(a) for a in _aegis.load_data(spec, _data_dir(data_dir)))


def _data_dir(data_dir):
    """Where the bundled digits set is found: the given directory, else the package's copy."""
    import os

    return str(data_dir) if data_dir else os.path.join(os.path.dirname(__file__), "data")


def verify(model, x, y, eps, norm="linf", method="crown", relu="adaptive", batch=256, progress=None):
    """Deterministic robustness bounds over the eps-ball around each example (pixel units).

    method: 'crown' (CROWN-style linear bounds) or 'ibp' (interval bounds); relu: 'adaptive' or
    'wong-kolter' (crown only). Returns a dict: 'margin_lower' (float32 [N], the lower bound of
    min over c != y of z_y - z_c; > 0 means verified), 'verified' (int32 [N], 1 when the example
    is classified correctly and verified), 'clean_accuracy', 'verified_accuracy'. Arrays come back
    as x's type."""
    x = _prepare(x)
    r = _aegis.verify(model._core, x, _prepare(y), float(eps), norm, method, relu, int(batch), _sink(progress))
    r["margin_lower"] = _like(r["margin_lower"], x)
    r["verified"] = _like(r["verified"], x)
    return r


def report(model, data, max=1000, sigma=0.0, n0=100, n=1000, alpha=0.001, batch=1000, radii=(), eps=0.1,
           pgd_steps=20, suite_steps=100, membership=True, seed=0, plot="", device="cpu", data_dir="",
           progress=None):
    """The trust profile of a model file on a dataset's first `max` test examples, as
    `aegis report MODEL --data D --json` prints it: 'accuracy', the ledger's 'epsilon' and
    'delta' (None without DP), 'certified_accuracy' at radii (radius -> fraction) with 'acr' at the
    model's Gaussian-augmentation sigma (or `sigma`; None and 'certification_skipped' when it has
    none), 'pgd_robust_accuracy' and 'suite_robust_accuracy' at L-inf `eps` (suite_steps=0 leaves
    the suite out), and the loss attack's 'mia_auc', 'mia_tpr_at_1_fpr', 'mia_tpr_at_0_1_fpr'.
    model: a Model loaded from or saved to a file, or a path."""
    path = model.path if isinstance(model, Model) else str(model)
    if not path:
        raise ValueError("the report reads the model file: save the model first (model.save(path))")
    return _aegis.report(path, data, _data_dir(data_dir), device, int(max), float(sigma), int(n0), int(n),
                         float(alpha), int(batch), [float(r) for r in radii], float(eps), int(pgd_steps),
                         int(suite_steps), bool(membership), int(seed), str(plot), _sink(progress))


from . import attacks, certify, privacy  # noqa: E402  (they use Model and the helpers above)

__all__ = [
    "Model",
    "load",
    "zoo",
    "load_data",
    "verify",
    "report",
    "certify",
    "attacks",
    "privacy",
    "model_names",
    "cuda_compiled",
    "cuda_device_count",
    "onnx_supported",
    "Error",
    "InvalidArgument",
    "ShapeError",
    "IoError",
    "DeviceError",
    "Unsupported",
    "NumericError",
    "__version__",
]
