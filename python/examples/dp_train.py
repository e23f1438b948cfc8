"""Train a classifier with DP-SGD from Python and report the privacy spent.

    python dp_train.py                                   # the bundled digits, epsilon 3
    python dp_train.py --data fashion-mnist --model cnn-fmnist --epsilon 2.93 --epochs 20 --out dp.safetensors

Then `aegis report dp.safetensors` shows the ledger (verified against the weights) and
`aegis certify`/`aegis attack` take the file like any other.
"""

import argparse

import numpy as np

import aegis


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--model", default="mlp")
    p.add_argument("--epsilon", type=float, default=3.0)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--out", default="")
    a = p.parse_args()

    x_train, y_train, x_test, y_test = aegis.load_data(a.data)
    model = aegis.zoo(a.model, x_train.shape[1:], seed=0)
    ledger = aegis.privacy.train(model, x_train, y_train, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                                 target_epsilon=a.epsilon, delta=a.delta, max_grad_norm=a.max_grad_norm)
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    print(f"DP-SGD on {a.data}: noise multiplier {ledger['noise_multiplier']:.4f}, sampling rate "
          f"{ledger['sampling_rate']:.5f}, {ledger['steps']} steps")
    print(f"epsilon {ledger['epsilon']:.4f} at delta {ledger['delta']:g} ({ledger['accountant']}); "
          f"test accuracy {accuracy:.4f}")
    # The same epsilon from the accountant alone:
    check = aegis.privacy.epsilon(ledger["noise_multiplier"], ledger["sampling_rate"], ledger["steps"], a.delta)
    print(f"accountant check: epsilon {check['epsilon']:.4f}")
    if a.out:
        model.save(a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
