#!/usr/bin/env bash
# The structure of PixelDP's MNIST experiment (Lecuyer et al. 2019, §IV) on Fashion-MNIST: a
# cnn-fmnist network (ReLU) with its noise layer at position 0 (input), 1 (after the first
# convolution) or 2 (after the second), trained for L ∈ {0.1, 0.3, 0.5, 1.0} with ε = 1,
# δ = 0.05 (Gaussian noise, L2 attacks); then, on the first test examples, conventional accuracy
# of the expected scores, certified accuracy at thresholds T, and accuracy under CW-L2 attacks
# on the expected scores. Prints a Markdown table; the JSON of every run stays in OUT_DIR.
#
#   tools/pixeldp_experiment.sh [OUT_DIR]     (default $TMPDIR/aegis_pixeldp_experiment)
# Environment: AEGIS (the CLI; default build/aegis), DATA (default fashion-mnist), EPOCHS (3),
# TRAIN_EXAMPLES (0: the whole training set), EXAMPLES (certified test examples, 500), DRAWS (300), ATTACK_EXAMPLES (100), POSITIONS
# ("0 1 2"), LS ("0.1 0.3 0.5 1.0"), THRESHOLDS ("0.05,0.1,0.2,0.3,0.5,1"), OMP_NUM_THREADS (1:
# on a small shared machine one thread per process is the fastest for these small networks).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${TMPDIR:-/tmp}/aegis_pixeldp_experiment}
aegis=${AEGIS:-build/aegis}
data=${DATA:-fashion-mnist}
epochs=${EPOCHS:-3}
train_examples=${TRAIN_EXAMPLES:-0}
examples=${EXAMPLES:-500}
draws=${DRAWS:-300}
attack_examples=${ATTACK_EXAMPLES:-100}
positions=${POSITIONS:-"0 1 2"}
ls=${LS:-"0.1 0.3 0.5 1.0"}
thresholds=${THRESHOLDS:-"0.05,0.1,0.2,0.3,0.5,1"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -x "$aegis" ] || { echo "pixeldp_experiment: $aegis is not built (set AEGIS)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "pixeldp_experiment: python3 is needed for the table" >&2; exit 2; }
mkdir -p "$out"
start=$(date +%s)
for position in $positions; do
  for L in $ls; do
    run="$out/pos${position}_L${L}"
    echo "pixeldp_experiment: position $position, L $L" >&2
    "$aegis" pixeldp train --data "$data" --model cnn-fmnist --activation relu --position "$position" --L "$L" \
      --eps 1 --delta 0.05 --epochs "$epochs" --max-train "$train_examples" --device cpu --quiet --json --out "$run.safetensors" >"$run.train.json"
    "$aegis" pixeldp certify --data "$data" --model "$run.safetensors" --max "$examples" --draws "$draws" \
      --thresholds "$thresholds" --attack cw-l2 --attack-max "$attack_examples" --device cpu --quiet --json \
      >"$run.certify.json"
  done
done
echo "pixeldp_experiment: $(($(date +%s) - start)) s" >&2

python3 - "$out" "$thresholds" <<'EOF'
import glob, json, os, sys
out, thresholds = sys.argv[1], sys.argv[2].split(",")
def key(t):  # the CLI writes thresholds with C++'s default formatting ("1", "0.5")
    return ("%g" % float(t))
rows = []
for path in sorted(glob.glob(os.path.join(out, "*.certify.json"))):
    c = json.load(open(path))
    t = json.load(open(path.replace(".certify.json", ".train.json")))
    rows.append((c["position"], c["L"], t, c))
rows.sort(key=lambda r: (r[0], r[1]))
a0 = rows[0][3]["attack"] if rows else {}
print("Fashion-MNIST, cnn-fmnist (ReLU), eps 1, delta 0.05, %s epochs; %s test examples x %s draws (Hoeffding, eta %s);"
      % (rows[0][2]["epochs"], rows[0][3]["examples"], rows[0][3]["draws"], rows[0][3]["confidence"]) if rows else "")
print("CW-L2 on the expected scores of the first %s examples (%s fixed draws, %s steps x %s searches, kappa %s)."
      % (a0.get("examples"), a0.get("draws_per_step"), a0.get("steps"), a0.get("binary_search_steps"),
         a0.get("confidence")))
print()
head = ["pos", "L", "sigma", "Delta", "acc"] + ["cert@%s" % key(t) for t in thresholds] \
       + ["cw@%s" % key(t) for t in thresholds] + ["cw(inf)", "cw median L2", "train s"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for pos, L, t, c in rows:
    a = c["attack"]
    cells = [str(pos), "%g" % L, "%.3f" % c["sigma"], "%.3f" % c["sensitivity"], "%.3f" % c["conventional_accuracy"]]
    cells += ["%.3f" % c["certified_accuracy"][key(x)] for x in thresholds]
    cells += ["%.2f" % a["accuracy_at"][key(x)] for x in thresholds]
    cells += ["%.2f" % a["accuracy_unbounded"], "%.2f" % a["median_norm"], "%.0f" % t["train_seconds"]]
    print("| " + " | ".join(cells) + " |")
EOF
