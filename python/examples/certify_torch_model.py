"""Certify a PyTorch model with aegis: train a small CNN in PyTorch, export it to ONNX in memory,
load it with aegis.load, and certify test images by randomized smoothing (Cohen et al. 2019).

    python certify_torch_model.py                    # the bundled digits, 100 test images
    python certify_torch_model.py --data fashion-mnist --images 500 --n 100000
"""

import argparse
import io
import warnings

import numpy as np
import torch
import torch.nn as nn

import aegis


def small_cnn(channels, side, classes):
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * (side // 2) ** 2, 64), nn.ReLU(), nn.Linear(64, classes))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    x_train, y_train, x_test, y_test = aegis.load_data(a.data)
    torch.manual_seed(a.seed)
    net = small_cnn(x_train.shape[1], x_train.shape[2], 10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    for _ in range(a.epochs):
        for idx in torch.randperm(len(xs)).split(128):
            # Gaussian augmentation at the smoothing sigma (Cohen et al. 2019, Sec. 4)
            batch = xs[idx] + a.sigma * torch.randn_like(xs[idx])
            opt.zero_grad()
            nn.functional.cross_entropy(net(batch), ys[idx]).backward()
            opt.step()
    net.eval()

    buffer = io.BytesIO()
    # The TorchScript-based exporter writes into memory without extra packages (the torch.export
    # one needs onnxscript); aegis reads what either writes.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.onnx.export(net, torch.zeros(1, *x_train.shape[1:]), buffer, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    model = aegis.load(buffer.getvalue())

    x = torch.from_numpy(x_test[: a.images])
    with torch.no_grad():
        gap = (model(x) - net(x)).abs().max().item()
    print(f"imported {model!r}: max |aegis - torch| logit difference {gap:.2e}")

    ids = np.arange(len(x))
    cert = aegis.certify.certify(model, x, sigma=a.sigma, n0=a.n0, n=a.n, ids=ids, seed=a.seed)
    correct = (cert["prediction"] == torch.from_numpy(y_test[: a.images])).numpy()
    radius = cert["radius"].numpy()
    print(f"certified {len(x)} images at sigma {a.sigma}: clean accuracy of the smoothed model "
          f"{correct.mean():.3f}, abstained {(cert['prediction'] == -1).float().mean().item():.3f}")
    for r in (0.0, 0.25, 0.5, 0.75, 1.0):
        print(f"  certified accuracy at radius {r:.2f}: {np.mean(correct & (radius >= r)):.3f}")


if __name__ == "__main__":
    main()
