#!/usr/bin/env bash
# Times scikit-learn's MLPClassifier per epoch on the fixed MNIST-10k split (first 8000 images
# train, last 2000 test), so that npdec's time per epoch on the same split can be set beside it.
#
# Usage: bench/sklearn_compare.sh [--hidden N] [--epochs N] [--batch N]
# The options go to bench/sklearn_mlp.py. scikit-learn and numpy are installed from PyPI into a
# virtual environment outside the repository, NPDEC_BENCH_VENV (default
# ~/.cache/npdec-bench-venv), on the first run. Compare times only within one run: speed on a
# shared machine drifts between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${NPDEC_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/npdec-bench-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating the Python environment in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "scikit-learn>=1.5" "numpy>=1.26"
fi

sklearn_json="$("$venv/bin/python" bench/sklearn_mlp.py "$@")"
echo "$sklearn_json"
sklearn_seconds="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["median_epoch_seconds"])' "$sklearn_json")"
sklearn_accuracy="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["test_accuracy"])' "$sklearn_json")"
printf 'scikit-learn MLPClassifier: %.3f s per epoch (median), test accuracy %.4f\n' \
    "$sklearn_seconds" "$sklearn_accuracy"

# npdec on the same split: examples/mnist_mlp.npde with one Euler step instead of four, so that
# the network has one hidden layer of 784 like the MLPClassifier above (plus the skip connection
# of the residual step), the same batch size and 5 epochs.
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p npdec
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e 's/euler(steps = 4) until 4/euler(steps = 1) until 1/' \
    -e 's/epochs [0-9]* batch [0-9]*/epochs 5 batch 128/' \
    -e 's#"data/#"'"$PWD"'/examples/data/#g' \
    examples/mnist_mlp.npde >"$work/mnist_mlp_one_step.npde"
"$target/release/npdec" run "$work/mnist_mlp_one_step.npde" --out "$work/out" --quiet
npdec_seconds="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["metrics"]["epoch_seconds"])' "$work/out/summary.json")"
npdec_accuracy="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["metrics"]["test_accuracy"])' "$work/out/summary.json")"
printf 'npdec (one residual layer of 784): %.3f s per epoch (mean), test accuracy %.4f\n' \
    "$npdec_seconds" "$npdec_accuracy"
printf 'npdec / scikit-learn time per epoch: %.2f (target <= 0.5)\n' \
    "$(python3 -c "print($npdec_seconds / $sklearn_seconds)")"
