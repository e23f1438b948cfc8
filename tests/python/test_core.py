"""The model handle, arrays in and out (zero-copy through DLPack), files and errors."""

import numpy as np
import pytest

import aegis
from conftest import REPO, accuracy


def test_runs_from_the_installed_package():
    # The test command installs the wheel; the source tree's python/aegis must not be what runs.
    assert not aegis.__file__.startswith(str(REPO / "python")), aegis.__file__
    assert aegis.__version__


def test_zoo_forward_shapes_and_types(digits):
    _, _, xt, _ = digits
    m = aegis.zoo("mlp", (1, 8, 8), num_classes=10, seed=0)
    assert m.input_shape == (1, 8, 8) and m.num_classes == 10 and m.name == "mlp"
    logits = m(xt[:7])
    assert isinstance(logits, np.ndarray) and logits.shape == (7, 10) and logits.dtype == np.float32
    assert "mlp" in repr(m) and m.num_parameters > 0


def test_same_seed_same_initialization(digits):
    _, _, xt, _ = digits
    a = aegis.zoo("cnn-res", (1, 8, 8), seed=5)(xt[:3])
    b = aegis.zoo("cnn-res", (1, 8, 8), seed=5)(xt[:3])
    c = aegis.zoo("cnn-res", (1, 8, 8), seed=6)(xt[:3])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_numpy_input_is_read_without_a_copy(digits):
    _, _, xt, _ = digits
    assert xt.dtype == np.float32 and xt.flags.c_contiguous
    assert aegis._aegis._data_pointer(xt) == xt.ctypes.data
    # A row slice of a contiguous array is contiguous too: still no copy.
    assert aegis._aegis._data_pointer(xt[10:20]) == xt[10:20].ctypes.data


def test_other_layouts_and_dtypes_are_copied_correctly(digits):
    _, _, xt, _ = digits
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    reference = m(xt[:5])
    as_f64 = xt[:5].astype(np.float64)
    assert aegis._aegis._data_pointer(as_f64) != as_f64.ctypes.data
    np.testing.assert_array_equal(m(as_f64), reference)
    fortran = np.asfortranarray(xt[:5])
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(m(fortran), reference)


def test_results_are_arrays_aegis_owns_without_a_copy(digits):
    _, _, xt, _ = digits
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    out = m._core.forward(xt[:4])
    a = np.from_dlpack(out)
    b = np.from_dlpack(out)
    assert a.ctypes.data == b.ctypes.data  # both views of aegis's buffer


def test_wrong_inputs_raise_clear_errors(digits):
    _, _, xt, yt = digits
    m = aegis.zoo("mlp", (1, 8, 8), seed=0)
    with pytest.raises(ValueError, match=r"x has shape \(4, 64\); the model takes \(N, 1, 8, 8\)"):
        m(xt[:4].reshape(4, 64))
    with pytest.raises(TypeError, match="int32"):
        m(xt[:4].astype(np.int32))
    with pytest.raises(ValueError, match=r"y\[1\] = 12 is not a class in \[0, 10\)"):
        aegis.attacks.fgsm(m, xt[:2], np.array([1, 12]), eps=0.1)
    with pytest.raises(ValueError, match=r"y has shape \(3,\); expected \(2,\)"):
        aegis.attacks.fgsm(m, xt[:2], yt[:3], eps=0.1)
    with pytest.raises(TypeError, match="class labels are integers"):
        aegis.attacks.fgsm(m, xt[:2], np.array([1.0, 2.0]), eps=0.1)
    with pytest.raises(aegis.InvalidArgument, match="sigma"):
        aegis.certify.certify(m, xt[:2], sigma=-1.0, n=10)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError
        aegis.privacy.epsilon(noise_multiplier=0.0, sampling_rate=0.01, steps=10)
    with pytest.raises(aegis.InvalidArgument, match="'nonexistent'"):
        aegis.zoo("nonexistent")


def test_missing_and_malformed_files_are_os_errors(tmp_path):
    with pytest.raises(OSError, match="nothing-here.safetensors"):
        aegis.load(tmp_path / "nothing-here.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(aegis.IoError):
        aegis.load(bad)


def test_save_and_load_round_trip(tmp_path, digits):
    _, _, xt, yt = digits
    m = aegis.zoo("cnn-res", (1, 8, 8), seed=2)
    path = tmp_path / "m.safetensors"
    m.save(path, metadata={"note": "kept"})
    assert m.path == str(path)
    back = aegis.load(path)
    np.testing.assert_array_equal(back(xt[:9]), m(xt[:9]))
    assert back.metadata["note"] == "kept" and back.metadata["aegis.model"] == "cnn-res"
    with pytest.raises(aegis.InvalidArgument, match="safetensors"):
        m.save(tmp_path / "m.onnx")


def test_trained_model_file_carries_its_ledger(model, digits):
    _, _, xt, yt = digits
    assert accuracy(model, xt, yt) > 0.6
    assert float(model.metadata["aegis.dp.epsilon"]) > 0


def test_devices():
    m = aegis.zoo("mlp", (1, 8, 8))
    assert m.to("cpu") is m and m.device == "cpu"
    if aegis.cuda_device_count() == 0:
        with pytest.raises(aegis.DeviceError):
            m.to("cuda")
        assert m.to("auto").device == "cpu"


def test_load_data_digits():
    x, y, xt, yt = aegis.load_data("digits")
    assert x.shape == (1500, 1, 8, 8) and xt.shape == (297, 1, 8, 8)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))


def test_round_trip_shares_memory_and_keeps_the_input_alive():
    import gc

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    address = x.ctypes.data
    y = np.from_dlpack(aegis._aegis._round_trip(x))
    del x
    gc.collect()
    assert y.ctypes.data == address
    np.testing.assert_array_equal(y, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
