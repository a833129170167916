#!/usr/bin/env bash
# Runs the diffusion cases of `npdec bench` in npdec, Devito and numpy in one run and prints points
# per second with the ratios npdec/Devito and npdec/numpy.
#
# Usage: bench/compare.sh [--steps N] [--numpy-steps N] [--threads "1 2"]
# The problems are the same in all three (see bench/stencil_reference.py): float32, spacing 1,
# zero Dirichlet halo, uniform random initial data, c = 0.1 at order 2 and 0.05 at order 8, 2-D
# 4096² 5-point and 3-D 256³ order 2 and order 8. Devito runs its OpenMP code with
# OMP_NUM_THREADS threads; numpy runs on one thread, with fewer steps by default because it is
# slow (points per second do not depend on the step count). Devito and numpy are installed from
# PyPI into a virtual environment outside the repository, NPDEC_DEVITO_VENV (default
# ~/.cache/npdec-devito-venv), on the first run. Devito compiles its operators with the system C
# compiler (gcc). Compare figures only within one run: speed on a shared machine drifts.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=100
numpy_steps=10
threads="1 2"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --numpy-steps) numpy_steps="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --steps, --numpy-steps or --threads)" >&2; exit 2 ;;
    esac
done

venv="${NPDEC_DEVITO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/npdec-devito-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating the Python environment in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "devito>=4.8" "numpy>=1.26"
fi

target="${CARGO_TARGET_DIR:-target}"
nice cargo build --release --quiet -p npdec
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "load before the run: $(uptime)" >&2
"$target/release/npdec" bench --json --steps "$steps" >"$work/npdec.jsonl"
for t in $threads; do
    OMP_NUM_THREADS="$t" DEVITO_LANGUAGE=openmp DEVITO_LOGGING=WARNING \
        "$venv/bin/python" bench/stencil_reference.py devito --steps "$steps" >>"$work/devito.jsonl"
done
"$venv/bin/python" bench/stencil_reference.py numpy --steps "$numpy_steps" >"$work/numpy.jsonl"
echo "load after the run: $(uptime)" >&2

python3 - "$work" <<'PY'
import json
import sys

work = sys.argv[1]


def records(name):
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


npdec = records("npdec")
devito = {(r["case"], r["threads"]): r["gpts_per_s"] for r in records("devito")}
numpy = {r["case"]: r["gpts_per_s"] for r in records("numpy")}
header = f"{'case':<16} {'threads':>7} {'npdec':>8} {'Devito':>8} {'numpy':>8} {'npdec/Devito':>13} {'npdec/numpy':>12} {'roofline':>9}"
print("points per second in Gpts/s (numpy on one thread)")
print(header)
for r in npdec:
    ours = r["gpts_per_s"]
    theirs = devito.get((r["case"], r["threads"]))
    plain = numpy.get(r["case"])
    ratio = f"{ours / theirs:.2f}" if theirs else "-"
    ratio_numpy = f"{ours / plain:.1f}" if plain else "-"
    theirs_text = f"{theirs:.3f}" if theirs else "-"
    plain_text = f"{plain:.3f}" if plain else "-"
    print(
        f"{r['case']:<16} {r['threads']:>7} {ours:>8.3f} {theirs_text:>8} {plain_text:>8} "
        f"{ratio:>13} {ratio_numpy:>12} {r['roofline_fraction'] * 100:>8.0f}%"
    )
PY
