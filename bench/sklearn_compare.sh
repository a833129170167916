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

# TODO: run `npdec run examples/mnist_mlp.npde` here with the same width, read
# `metrics.epoch_seconds` from its summary.json and print npdec / scikit-learn (target ≤ 0.5).
