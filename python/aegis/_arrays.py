"""Arrays in and out: the compiled core reads any DLPack array (NumPy, PyTorch) and returns array
objects with ``__dlpack__``; these helpers hand results back as the caller's own array type."""

import numpy as np


def _is_torch(x):
    mod = type(x).__module__
    return mod.startswith("torch")


def prepare(x):
    """What the core reads: a torch tensor detached from autograd (DLPack refuses tensors that
    require grad; no data is copied), anything else as it is."""
    if _is_torch(x):
        if x.requires_grad:
            x = x.detach()
        if x.is_cuda:
            # The core runs on its own CUDA stream: finish the caller's work on x first.
            import torch

            torch.cuda.current_stream(x.device).synchronize()
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    return x


def like(result, reference):
    """`result` (a core array) as the type of `reference`: a torch tensor for torch input, a NumPy
    array otherwise. No copy is made either way."""
    if result is None:
        return None
    if reference is not None and _is_torch(reference):
        import torch

        return torch.from_dlpack(result)
    return numpy(result)


def numpy(result):
    """A core array (host memory) as a NumPy array, without a copy."""
    return np.from_dlpack(result)
