"""A PyTorch user's path: a CNN trained in PyTorch, exported to ONNX (in memory and to a file),
loaded by aegis, attacked and certified from Python on torch tensors; the results equal the
command line's on the same file and seed."""

import io
import warnings

import numpy as np
import pytest

import aegis
from conftest import run_cli, tsv_rows

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_net(digits):
    x, y, _, _ = digits
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(8 * 16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(3):
        for idx in torch.randperm(len(xs)).split(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx]).backward()
            opt.step()
    return net.eval()


def export(net, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), target, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, dynamo=False)


def test_in_memory_import_matches_torch(torch_net, digits):
    _, _, xt, yt = digits
    buffer = io.BytesIO()
    export(torch_net, buffer)
    model = aegis.load(buffer.getvalue())
    x = torch.from_numpy(xt)
    assert aegis._aegis._data_pointer(x) == x.data_ptr()  # torch CPU tensors are read in place
    ours = model(x)
    assert isinstance(ours, torch.Tensor)
    with torch.no_grad():
        torch.testing.assert_close(ours, torch_net(x), rtol=1e-5, atol=1e-5)
    # A tensor that requires grad is read too (detached, not copied).
    xg = x[:4].clone().requires_grad_(True)
    assert model(xg).shape == (4, 10)


def test_attack_and_certify_torch_tensors(torch_net, digits):
    _, _, xt, yt = digits
    buffer = io.BytesIO()
    export(torch_net, buffer)
    model = aegis.load(buffer.getvalue())
    x, y = torch.from_numpy(xt[:64]), torch.from_numpy(yt[:64]).long()
    r = aegis.attacks.pgd(model, x, y, eps=0.1, steps=10)
    assert isinstance(r["adversarial"], torch.Tensor)
    assert (r["adversarial"] - x).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        fooled = torch_net(r["adversarial"]).argmax(1) != y
    assert torch.equal(fooled.int(), r["success"])
    c = aegis.certify.certify(model, x[:10], sigma=0.25, n0=50, n=500)
    assert isinstance(c["radius"], torch.Tensor) and c["prediction"].shape == (10,)


def test_exported_file_certifies_as_the_command_line_does(tmp_path, torch_net):
    path = tmp_path / "net.onnx"
    export(torch_net, str(path))
    model = aegis.load(path)
    ours = tmp_path / "py.tsv"
    aegis.certify.Sweep(model, ours, sigma=0.25, n0=40, n=400, seed=11, data="digits", max=40).run(progress=False)
    theirs = tmp_path / "cli.tsv"
    status, _, err = run_cli("certify", "--model", path, "--data", "digits", "--sigma", 0.25, "--n0", 40, "--n", 400,
                             "--seed", 11, "--max", 40, "--out", theirs, "--quiet", "--device", "cpu")
    assert status == 0, err
    assert tsv_rows(ours) == tsv_rows(theirs)
    rows = np.array([int(r[2]) for r in tsv_rows(ours)])
    assert np.mean(rows >= 0) > 0.5


@pytest.mark.skipif(aegis.cuda_device_count() == 0 or not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tensors_are_read_in_place(torch_net, digits):
    _, _, xt, yt = digits
    buffer = io.BytesIO()
    export(torch_net, buffer)
    model = aegis.load(buffer.getvalue()).to("cuda")
    x = torch.from_numpy(xt[:32]).cuda()
    assert aegis._aegis._data_pointer(x) == x.data_ptr()
    ours = model(x)
    assert ours.is_cuda
    with torch.no_grad():
        torch.testing.assert_close(ours, torch_net.cuda()(x), rtol=1e-4, atol=1e-4)
    # NumPy in, NumPy out, even with the model on the GPU.
    assert isinstance(model(xt[:4]), np.ndarray)
    c = aegis.certify.certify(model, x[:8], sigma=0.25, n0=50, n=1000)
    cpu = aegis.certify.certify(aegis.load(buffer.getvalue()), xt[:8], sigma=0.25, n0=50, n=1000)
    # The same noise on both backends (kernels/smoothing.h); only float rounding of the forward
    # pass near a decision boundary can move a count.
    assert np.abs(c["count"].cpu().numpy() - cpu["count"]).max() <= 5
