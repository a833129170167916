#!/usr/bin/env bash
# Times one epoch of training in scikit-learn's MLPClassifier and in npdec on the fixed MNIST-10k
# split (first 8000 images train, last 2000 test), one after the other in one run, and prints the
# median seconds per epoch of each and their ratios.
#
# Usage: bench/sklearn_compare.sh [--epochs N] [--batch N] [--threads N] [--precision P]
#   --epochs     epochs timed on each side (default 5); the median is reported
#   --batch      mini-batch size in samples on both sides (default 128)
#   --threads    cores given to each side (default: every core): OpenBLAS and OpenMP threads for
#                scikit-learn, `npdec run --threads` for npdec
#   --precision  f64, f32 or both (default both). f64 times scikit-learn on float64 data and npdec
#                in f64; f32 times scikit-learn on float32 data (its whole fit then runs in float32)
#                and `npdec run --precision f32` (the network's layers and their adjoints in f32;
#                parameters, optimizer and loss in f64). npdec's f32 time is compared with both
#                scikit-learn times.
#
# Both sides do the same work per epoch: one shuffled pass over the 8000 training images,
# 62 mini-batches of 128 and one of 64, each a forward and backward pass through one
# hidden layer of 784 units and a readout of 10 scores, softmax cross-entropy, an L2 term and an
# Adam update with step size 5e-4. What differs: scikit-learn uses relu, npdec the swish of
# examples/mnist_mlp.npde, and npdec's layer is the residual step
# u ← u + D ∇²u + swish(W u + b) (one Euler step of Δt = 1), so it adds a skip connection and a
# 3-point Laplacian to the same 784 × 784 dense layer. The epoch times cover training only (no
# data loading, no test scoring) on both sides.
#
# scikit-learn and numpy are installed from PyPI into a virtual environment outside the
# repository, NPDEC_BENCH_VENV (default ~/.cache/npdec-bench-venv), on the first run. Compare
# times only within one run: speed on a shared machine drifts between runs, so the script prints
# the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=5
batch=128
threads="$(nproc)"
precision=both
while [[ $# -gt 0 ]]; do
    case "$1" in
        --epochs) epochs="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --precision) precision="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --epochs, --batch, --threads or --precision)" >&2; exit 2 ;;
    esac
done
case "$precision" in
    f64) precisions=(f64) ;;
    f32) precisions=(f32) ;;
    both) precisions=(f64 f32) ;;
    *) echo "invalid value '$precision': --precision takes f64, f32 or both" >&2; exit 2 ;;
esac
for value in "$epochs" "$batch" "$threads"; do
    if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
        echo "invalid value '$value': --epochs, --batch and --threads take a positive integer" >&2
        exit 2
    fi
done

venv="${NPDEC_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/npdec-bench-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating the Python environment in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "scikit-learn>=1.5" "numpy>=1.26"
fi

target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p npdec
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npdec's model: examples/mnist_mlp.npde with one Euler step instead of four (one hidden layer)
# and the batch size above; the data paths are made absolute because the copy lives elsewhere.
# `--epochs` shortens the run, so npdec skips the example's accuracy expectation, which holds
# for the full run only.
sed -e 's/euler(steps = 4) until 4/euler(steps = 1) until 1/' \
    -e "s/batch [0-9]*/batch $batch/" \
    -e 's#"data/#"'"$PWD"'/examples/data/#g' \
    examples/mnist_mlp.npde >"$work/mnist_mlp_one_step.npde"
if ! grep -q "euler(steps = 1) until 1" "$work/mnist_mlp_one_step.npde" ||
    ! grep -q "batch $batch" "$work/mnist_mlp_one_step.npde"; then
    echo "examples/mnist_mlp.npde no longer has the train clause this script rewrites" >&2
    exit 1
fi

echo "comparing one epoch of training on $threads thread(s): 8000 MNIST images, batch $batch," \
    "one hidden layer of 784, Adam, ${precisions[*]}; median of $epochs epochs each"
echo "load before the run: $(uptime)"
for p in "${precisions[@]}"; do
    if [[ "$p" == f64 ]]; then dtype=float64; else dtype=float32; fi
    "$venv/bin/python" bench/sklearn_mlp.py --epochs "$epochs" --batch "$batch" \
        --threads "$threads" --dtype "$dtype" >"$work/sklearn-$p.json"
    "$target/release/npdec" run "$work/mnist_mlp_one_step.npde" --out "$work/out-$p" --quiet \
        --epochs "$epochs" --threads "$threads" --precision "$p"
done
echo "load after the run: $(uptime)"

python3 - "$work" "${precisions[@]}" <<'PY'
import json
import os
import statistics
import sys

work, precisions = sys.argv[1], sys.argv[2:]
theirs, ours = {}, {}
for p in precisions:
    with open(os.path.join(work, f"sklearn-{p}.json")) as f:
        theirs[p] = json.load(f)
    with open(os.path.join(work, f"out-{p}", "summary.json")) as f:
        ours[p] = json.load(f)["metrics"]["training"][-1]
for p in precisions:
    run = theirs[p]
    pools = ", ".join(f"{t['internal_api']} {t['num_threads']} threads" for t in run["thread_pools"])
    print(f"scikit-learn {run['version']} MLPClassifier in {run['dtype']} ({pools})")
    print(f"  epochs (s): {', '.join(f'{s:.3f}' for s in run['epoch_seconds'])}")
    print(f"  median {run['median_epoch_seconds']:.3f} s per epoch,"
          f" test accuracy {run['test_accuracy']:.4f}")
for p in precisions:
    run = ours[p]
    products = "f64" if p == "f64" else "f32 layers (--precision f32)"
    print(f"npdec (examples/mnist_mlp.npde with one residual step), {products}")
    print(f"  epochs (s): {', '.join(f'{s:.3f}' for s in run['epoch_seconds'])}")
    print(f"  median {statistics.median(run['epoch_seconds']):.3f} s per epoch,"
          f" test accuracy {run['test_accuracy']:.4f}")
print("time per epoch, npdec / scikit-learn (target <= 0.5 against scikit-learn in float64):")
for mine in precisions:
    for other in precisions:
        if mine == "f64" and other == "f32":
            continue
        ratio = statistics.median(ours[mine]["epoch_seconds"]) / theirs[other]["median_epoch_seconds"]
        dtype = "float64" if other == "f64" else "float32"
        print(f"  npdec {mine} / scikit-learn {dtype}: {ratio:.2f}")
PY
