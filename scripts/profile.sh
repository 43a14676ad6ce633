#!/usr/bin/env bash
# Where a training run's time goes: samples `mlp train` with perf's cpu-clock timer (a software event,
# so it works in VMs that expose no hardware counters) and prints, for each kind of work, the seconds
# per epoch on the main thread and on the helper thread of `--threads 2`. A thread is sampled only
# while it runs, so the helper's spinning between jobs shows as "waiting"; once it parks, nothing.
#
# Usage: scripts/profile.sh [--net mlp1|mlp2] [--epochs N] [--threads N] [--top N]
#   --net       MLP1_ReLU_CE (784-256-10, default) or MLP2_ReLU_CE (784-500-256-10), report settings
#   --epochs N  epochs to train (default 3); loading the data is counted once, not per epoch
#   --threads N as mlp train's --threads (default: the number of cores)
#   --top N     also list the N busiest functions (default 12)
# Needs: perf (Debian: linux-perf), cargo (builds target/release/mlp) or MLP=/path/to/mlp.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
net=mlp1
epochs=3
threads=$(nproc 2>/dev/null || echo 1)
top=12
rate=999
while [ $# -gt 0 ]; do
    case "$1" in
        --net) net="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --top) top="$2"; shift 2 ;;
        *) echo "profile.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done
case "$net" in
    mlp1) spec="linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01" ;;
    mlp2) spec="linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2; linear,fc3,256,10,0.01" ;;
    *) echo "profile.sh: --net takes mlp1 or mlp2, not '$net'" >&2; exit 2 ;;
esac
if ! command -v perf >/dev/null; then
    echo "profile.sh: perf is not installed (Debian: apt-get install linux-perf)" >&2
    exit 1
fi
if [ -z "${MLP:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    MLP="$root/target/release/mlp"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
perf record -q -F "$rate" -e cpu-clock -o "$work/perf.data" -- \
    "$MLP" train -q --layer "$spec" --max-epoch "$epochs" --threads "$threads" --out "$work/run" \
    >/dev/null 2>"$work/record.err" || { cat "$work/record.err" >&2; exit 1; }
perf report -i "$work/perf.data" --no-children --sort comm,sym --stdio -g none -n 2>/dev/null \
    | grep -E '^ +[0-9.]+%' >"$work/report.txt"

echo "$net, $threads thread(s), $epochs epochs: cpu-clock samples at $rate Hz, in seconds per epoch"
echo "(the last two lines in seconds for the whole run: mostly start-up, loading and first-touch page faults)"
awk -v rate="$rate" -v epochs="$epochs" -v top="$top" '
    # One line per (thread, function): "pct samples comm [.] symbol".
    {
        samples = $2; comm = $3; sym = $0
        sub(/^.*\] /, "", sym); sub(/ +$/, "", sym)
        thread = (comm == "mlp-helper") ? "helper" : "main"
        kind = classify(sym, $4)
        secs[kind, thread] += samples / rate
        if (!(kind in seen) && !once(kind)) { seen[kind] = 1; order[++kinds] = kind }
        if (n_fun < top) { fun[++n_fun] = sprintf("%8.3f  %-6s %s", samples / rate / epochs, thread, sym) }
    }
    function once(kind) { return kind == "loading the data" || kind ~ /^kernel/ }
    function classify(sym, where) {
        if (sym ~ /wait_for_helper/) return "waiting for the helper (main)"
        if (sym ~ /wait_for_job/) return "waiting for a job (helper)"
        if (sym ~ /miniz|inflate|crc32|idx::|data::/) return "loading the data"
        if (where == "[k]") return "kernel: page faults, syscalls"
        if (sym ~ /gather|scatter/) return "first layer, sparse (S W, St D)"
        if (sym ~ /gemm::|matrixmultiply|linalg::|transpose_16x16/) return "dense products"
        if (sym ~ /optim::|Sgd/) return "SGD update"
        if (sym ~ /sparse::|batch::|Sparse/) return "building batches"
        if (sym ~ /activation/) return "activations"
        if (sym ~ /loss::|expf|logf/) return "loss"
        if (sym ~ /linear::/) return "bias gradient, column sums"
        if (sym ~ /memmove|memcpy|memset/) return "memcpy, memset"
        if (sym ~ /ndarray::/) return "ndarray element loops"
        return "other"
    }
    END {
        printf "%-34s %9s %9s %9s\n", "work", "main", "helper", "both"
        for (i = 1; i <= kinds; i++) {
            k = order[i]; m = secs[k, "main"] / epochs; h = secs[k, "helper"] / epochs
            printf "%-34s %9.3f %9.3f %9.3f\n", k, m, h, m + h
            sm += m; sh += h
        }
        printf "%-34s %9.3f %9.3f %9.3f\n", "all of an epoch", sm, sh, sm + sh
        split("loading the data|kernel: page faults, syscalls", last, "|")
        for (i = 1; i <= 2; i++) {
            k = last[i]; m = secs[k, "main"]; h = secs[k, "helper"]
            printf "%-34s %9.3f %9.3f %9.3f\n", k " (run)", m, h, m + h
        }
        if (n_fun) printf "\nbusiest functions, seconds per epoch (all samples / epochs)\n"
        for (i = 1; i <= n_fun; i++) print fun[i]
    }
' "$work/report.txt"
