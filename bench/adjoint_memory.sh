#!/usr/bin/env bash
# Measures the peak memory of one adjoint gradient through 1000 explicit Euler steps on a
# 512 × 512 grid, with binomial checkpointing (the default number of snapshots) and with every
# step stored, using the maximum resident set size that `/usr/bin/time -v` reports.
#
# Usage: bench/adjoint_memory.sh [POINTS] [STEPS]   (defaults 512 and 1000)
# Storing every step of the default size needs about 2.2 GB of memory.
set -euo pipefail
cd "$(dirname "$0")/.."
points="${1:-512}"
steps="${2:-1000}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p npdec-runtime --example adjoint_memory
binary="$target/release/examples/adjoint_memory"

peak_kb() {
    local log
    log="$(mktemp)"
    /usr/bin/time -v "$binary" "$1" "$points" "$steps" 2>"$log" >&2
    sed -n 's/.*Maximum resident set size (kbytes): //p' "$log"
    rm -f "$log"
}

checkpointed="$(peak_kb default)"
stored="$(peak_kb all)"
printf 'peak memory with checkpointing: %d MB, storing every step: %d MB, ratio %.3f\n' \
    "$((checkpointed / 1024))" "$((stored / 1024))" \
    "$(python3 -c "print($checkpointed / $stored)")"
