#!/usr/bin/env bash
# Seconds per training epoch of mlp against its peers on the same workload (the report's
# hyperparameters, batch 100, f32), MLP1 and MLP2, every program run in turn, round after round, so
# that a machine that drifts in speed treats all alike. Prints each one's median and the ratio
# peer / mlp. The peers, each where it can run:
#   torch              scripts/bench_torch.py, in a virtual environment under target/bench-venv that
#                      this script makes and fills (pip install torch numpy) the first time; PYTHON=...
#                      uses another interpreter that has them
#   ndarray            scripts/peer_ndarray: ndarray written plainly, its products through
#                      matrixmultiply with the `threading` feature and the AVX-512 kernel (cargo only)
#   ndarray+openblas   the same over the system's OpenBLAS (`--features openblas`), where it builds
#                      (Debian: libopenblas-dev); OPENBLAS_CORETYPE=SkylakeX on a CPU with AVX-512,
#                      unless set, since OpenBLAS 0.3.21 does not know newer Xeons and falls back to a
#                      generic kernel (2.8 s an MLP1 epoch against 0.74 forced, one thread, measured)
#
# Usage: scripts/bench_peers.sh [-n RUNS] [--epochs N] [--threads N] [--kernels K] [--busy]
#   -n RUNS      rounds per network (default 5)
#   --epochs N   epochs per run (default 3)
#   --threads N  threads for every program (default: the number of cores)
#   --kernels K  mlp's backend (auto, portable, avx2, avx512; default auto). For PyTorch capped at AVX2
#                as well, set ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 in the environment
#   --busy       keep one core busy (`yes >/dev/null`) for the whole benchmark, as a browser tab or a
#                compile would. mlp is then timed as users run it, `mlp train` with its default threads
#                (training seconds from summary.csv), beside `mlp train --threads 1` and `--threads 2`
#                as peers, so the default can be compared with the best choice
# Needs: cargo (builds target/release/mlp and the Rust peers), or MLP=/path/to/mlp.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs=5
epochs=3
threads=$(nproc 2>/dev/null || echo 1)
busy=0
while [ $# -gt 0 ]; do
    case "$1" in
        -n) runs="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --kernels) export MLP_KERNELS="$2"; shift 2 ;;
        --busy) busy=1; shift ;;
        *) echo "bench_peers.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done

if [ -z "${MLP:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    MLP="${CARGO_TARGET_DIR:-$root/target}/release/mlp"
fi
if [ "$busy" = 1 ]; then
    yes >/dev/null &
    busy_pid=$!
    trap 'kill "$busy_pid" 2>/dev/null' EXIT
    echo "bench_peers.sh: one core kept busy (yes, pid $busy_pid)" >&2
fi

# The peers that can run here, by name.
peer_dir="$here/peer_ndarray"
peers=()
venv="${CARGO_TARGET_DIR:-$root/target}/bench-venv"
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$venv/bin/python"
    if ! "$PYTHON" -c "import torch, numpy" 2>/dev/null; then
        echo "bench_peers.sh: installing torch and numpy into $venv (once; about 3 GB)" >&2
        python3 -m venv "$venv" && "$venv/bin/pip" install --quiet torch numpy || true
    fi
fi
if "$PYTHON" -c "import torch, numpy" 2>/dev/null; then
    peers+=(torch)
else
    echo "bench_peers.sh: $PYTHON cannot import torch and numpy; PyTorch left out" >&2
fi
cargo build --release --quiet --manifest-path "$peer_dir/Cargo.toml"
peers+=(ndarray)
if cargo build --release --quiet --features openblas --manifest-path "$peer_dir/Cargo.toml" \
    --target-dir "$peer_dir/target/openblas" 2>/dev/null; then
    peers+=(ndarray+openblas)
else
    echo "bench_peers.sh: the OpenBLAS peer did not build (no system OpenBLAS?); left out" >&2
fi
if [ "$busy" = 1 ]; then
    peers+=(mlp-threads-1 mlp-threads-2)
fi
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then
    coretype="${OPENBLAS_CORETYPE:-SkylakeX}"
else
    coretype="${OPENBLAS_CORETYPE:-}"
fi
# Runs peer $1 on network $2; prints its seconds per training epoch.
run_peer() {
    case "$1" in
        torch) "$PYTHON" "$here/bench_torch.py" "$2" "$epochs" "$threads" "$root/data" ;;
        ndarray) RMM_NUM_THREADS="$threads" "$peer_dir/target/release/peer_ndarray" "$2" "$epochs" "$root/data" ;;
        ndarray+openblas) OPENBLAS_CORETYPE="$coretype" OPENBLAS_NUM_THREADS="$threads" \
            "$peer_dir/target/openblas/release/peer_ndarray" "$2" "$epochs" "$root/data" ;;
        mlp-threads-*) train_mlp "$2" --threads "${1#mlp-threads-}" ;;
    esac | cut -d' ' -f1
}
# `mlp train` on network $1 with flags $2..., as a user runs it; prints its training seconds an epoch.
train_mlp() {
    local spec="${specs[$1]}" out
    shift
    out="$(mktemp -d)"
    "$MLP" train -q --layer "$spec" --max-epoch "$epochs" --data "$root/data" --out "$out" --overwrite "$@" >/dev/null
    # Counted from the end: the quoted layer spec before it holds commas.
    awk -F, -v e="$epochs" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_time_s") back = NF - i }
        NR == 2 { print $(NF - back) / e }' "$out/summary.csv"
    rm -rf "$out"
}

declare -A specs=(
    [mlp1]="linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01"
    [mlp2]="linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2; linear,fc3,256,10,0.01"
)

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [ "$busy" = 1 ]; then
    echo "one core busy; mlp: \`mlp train\` with its default threads; $threads thread(s) for the other peers"
fi
echo "$threads thread(s), $epochs epoch(s) a run, $runs rounds; median seconds per training epoch, and peer / mlp"
printf '%-8s %10s' network mlp
for peer in "${peers[@]}"; do printf ' %26s' "$peer"; done
echo
for net in mlp1 mlp2; do
    declare -A times=()
    for _ in $(seq "$runs"); do
        for peer in "${peers[@]}"; do
            times[$peer]+="$(run_peer "$peer" "$net") "
        done
        if [ "$busy" = 1 ]; then
            times[mlp]+="$(train_mlp "$net") "
        else
            times[mlp]+="$("$MLP" bench --layer "${specs[$net]}" --epochs "$epochs" --threads "$threads" |
                awk '/^training \(all stages\)/ { print $4 }') "
        fi
    done
    m=$(printf '%s\n' ${times[mlp]} | median)
    printf '%-8s %10.4f' "$net" "$m"
    for peer in "${peers[@]}"; do
        t=$(printf '%s\n' ${times[$peer]} | median)
        printf ' %17.4f (%5.2fx)' "$t" "$(awk -v t="$t" -v m="$m" 'BEGIN { print t / m }')"
    done
    echo
    unset times
done
