"""Attack a model with aegis's suite and AutoAttack from Python: robust accuracy per attack and
the examples each attack broke.

    python attack_suite.py                                    # trains a small model on the digits
    python attack_suite.py --model model.safetensors --data fashion-mnist --eps 0.1 --images 1000
"""

import argparse

import numpy as np

import aegis


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="a model file (.safetensors or .onnx); default: train one")
    p.add_argument("--data", default="digits")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--autoattack", action="store_true", help="also run AutoAttack (standard version)")
    a = p.parse_args()

    x_train, y_train, x_test, y_test = aegis.load_data(a.data)
    if a.model:
        model = aegis.load(a.model)
    else:
        model = aegis.zoo("mlp", x_train.shape[1:], seed=0)
        aegis.privacy.train(model, x_train, y_train, epochs=5, batch_size=64, lr=0.5, noise_multiplier=0.5)
    x, y = x_test[: a.images], y_test[: a.images]

    r = aegis.attacks.suite(model, x, y, eps=a.eps, steps=a.steps)
    print(f"L-inf eps {a.eps} on {len(x)} images: clean accuracy {r['clean_accuracy']:.4f}, "
          f"robust accuracy (worst case) {r['robust_accuracy']:.4f}")
    for name, acc in r["per_attack"].items():
        print(f"  {name:10s} {acc:.4f}")
    broken_by = np.array(r["per_example"]["broken_by"])
    names, counts = np.unique(broken_by[broken_by != "-"], return_counts=True)
    print("first attack to break each example:", dict(zip(names.tolist(), counts.tolist())))
    if a.autoattack:
        aa = aegis.attacks.autoattack(model, x, y, eps=a.eps, steps=a.steps)
        print("AutoAttack:", ", ".join(f"{n} {v:.4f}" for n, v in aa["robust_after"]))


if __name__ == "__main__":
    main()
