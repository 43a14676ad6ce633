#!/usr/bin/env bash
# Trains every network of a grid file (default: the report's Table 3, scripts/grid.tsv) with the report's
# hyperparameters (lr 1e-2, weight decay 5e-4, momentum 0.9, batch 100, 50 epochs), one run folder per
# network: runs/<NAME>/ (or runs/epochs-N/<NAME>/ with --epochs N), gradient norms included.
#
# Completed runs (status completed in their summary.csv) are skipped, so a grid stopped at any moment
# (Ctrl-C, kill, power cut) resumes where it stopped; an unfinished, interrupted or diverged run is
# started again from scratch. The commands are also written to
# <out>/grid-commands.txt, one per line, largest network first, for GNU parallel or a cluster's job array.
#
# Usage: scripts/grid.sh [--epochs N] [-j JOBS] [--grid FILE] [--out DIR] [--list] [-- MLP TRAIN FLAGS...]
#   --epochs N   epochs per network (default 50, the report's); `--epochs 1` is a smoke test of a few minutes
#   -j JOBS      trainings at once (default: the number of cores); each gets cores/JOBS threads.
#                Measured here (2 cores, --epochs 1): -j 2 with one thread each took 11 s, -j 1 with
#                two threads 19 s, so one single-threaded run per core is the default (again 10 s
#                against 16 s with the two-thread helper of src/parallel/).
#   --grid FILE  tab-separated name, loss, spec (default scripts/grid.tsv)
#   --out DIR    parent folder of the run folders
#   --list       only write and print the commands
# Needs: cargo (builds target/release/mlp), or MLP=/path/to/mlp.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
epochs=50
jobs=$(nproc 2>/dev/null || echo 1)
grid="$here/grid.tsv"
out=""
list_only=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs="$2"; shift 2 ;;
    -j) jobs="$2"; shift 2 ;;
    -j*) jobs="${1#-j}"; shift ;;
    --grid) grid="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --list) list_only=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "grid.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$epochs$jobs" in *[!0-9]*) echo "grid.sh: --epochs and -j take whole numbers" >&2; exit 2 ;; esac
[ -f "$grid" ] || { echo "grid.sh: no grid file $grid" >&2; exit 2; }
if [ -z "$out" ]; then
  if [ "$epochs" = 50 ]; then out="runs"; else out="runs/epochs-$epochs"; fi
fi

if [ -z "${MLP:-}" ]; then
  (cd "$root" && cargo build --release --quiet)
  MLP="$root/target/release/mlp"
fi
cores=$(nproc 2>/dev/null || echo 1)
threads=$(( cores / jobs )); [ "$threads" -ge 1 ] || threads=1

mkdir -p "$out"
commands="$out/grid-commands.txt"
unsorted="$commands.unsorted"
: > "$unsorted"
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
while IFS=$'\t' read -r name loss spec; do
  case "$name" in ''|'#'*) continue ;; esac
  # The second column of summary.csv's row is the run's status; only a completed run is skipped.
  if [ -f "$out/$name/summary.csv" ] && [ "$(awk -F, 'NR == 2 { print $2 }' "$out/$name/summary.csv")" = completed ]; then
    echo "skip $name: finished ($out/$name/summary.csv)" >&2
    continue
  fi
  cmd="$(quote "$MLP") train --quiet --overwrite --grad-norms --name $(quote "$name") --loss $loss --layer $(quote "$spec")"
  cmd="$cmd --max-epoch $epochs --threads $threads --out $(quote "$out/$name")"
  for arg in "${extra[@]+"${extra[@]}"}"; do cmd="$cmd $(quote "$arg")"; done
  # The run's cost, for the order below: its weights, the sum of IN x OUT over its linear layers.
  cost=$(printf '%s' "$spec" | awk -F';' '{ for (i = 1; i <= NF; i++) { split($i, f, ","); gsub(/[ \t]/, "", f[1]); if (f[1] == "linear") c += f[3] * f[4] } } END { print c + 0 }')
  printf '%s\t%s\n' "$cost" "$cmd" >> "$unsorted"
done < "$grid"
# Largest networks first, so that the last runs to finish are short ones and no core waits idle on one
# long run at the end. Measured: the 50-epoch grid took 313 s and 343 s in this order (two runs), 335 s
# in the grid file's order (one run, ending on the seven MLP2 networks): the machine's noise is as large
# as the difference, the idle tail it removes is one MLP2 run (about 60 s of one core).
sort -t "$(printf '\t')" -k1,1nr -s "$unsorted" | cut -f2- > "$commands"
rm -f "$unsorted"

if [ "$list_only" = 1 ]; then cat "$commands"; exit 0; fi
count=$(wc -l < "$commands")
echo "grid: $count runs, $jobs at a time, $threads thread(s) each, into $out/ (commands: $commands)" >&2
start=$(date +%s)
# Each line is one complete shell command; xargs runs JOBS of them at once and fails if any fails.
tr '\n' '\0' < "$commands" | xargs -0 -r -P "$jobs" -I{} sh -c '{}'
echo "grid: done in $(( $(date +%s) - start )) s" >&2
