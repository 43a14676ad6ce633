#!/usr/bin/env bash
# Seconds per training epoch of mlp against PyTorch on the same workload (scripts/bench_torch.py: the
# report's hyperparameters, batch 100, f32), MLP1 and MLP2, the two alternated run by run so that a
# machine that drifts in speed treats both alike. Prints each one's median and the ratio torch / mlp.
# Runs only where `import torch` works; otherwise says so and exits 0.
#
# Usage: scripts/bench_peers.sh [-n RUNS] [--epochs N] [--threads N]
#   -n RUNS      alternated pairs per network (default 5)
#   --epochs N   epochs per run (default 3)
#   --threads N  threads for both (default: the number of cores)
# Needs: cargo (builds target/release/mlp), or MLP=/path/to/mlp; python3 with torch and numpy.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs=5
epochs=3
threads=$(nproc 2>/dev/null || echo 1)
while [ $# -gt 0 ]; do
    case "$1" in
        -n) runs="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        *) echo "bench_peers.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done

if ! python3 -c "import torch, numpy" 2>/dev/null; then
    echo "bench_peers.sh: python3 cannot import torch and numpy here; nothing to compare against"
    exit 0
fi
if [ -z "${MLP:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    MLP="$root/target/release/mlp"
fi

declare -A specs=(
    [mlp1]="linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01"
    [mlp2]="linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2; linear,fc3,256,10,0.01"
)

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "$threads thread(s), $epochs epoch(s) a run, $runs alternated pairs; seconds per training epoch"
printf '%-6s %10s %10s %14s\n' network torch mlp torch/mlp
for net in mlp1 mlp2; do
    torch_times=()
    mlp_times=()
    for _ in $(seq "$runs"); do
        torch_times+=("$(python3 "$here/bench_torch.py" "$net" "$epochs" "$threads" "$root/data" | cut -d' ' -f1)")
        mlp_times+=("$("$MLP" bench --layer "${specs[$net]}" --epochs "$epochs" --threads "$threads" |
            awk '/^training \(all stages\)/ { print $4 }')")
    done
    t=$(printf '%s\n' "${torch_times[@]}" | median)
    m=$(printf '%s\n' "${mlp_times[@]}" | median)
    printf '%-6s %10.4f %10.4f %14.2f\n' "$net" "$t" "$m" "$(awk -v t="$t" -v m="$m" 'BEGIN { print t / m }')"
done
