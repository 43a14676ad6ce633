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
#   --epochs N   epochs per network (default 50, the report's); `--epochs 1` is a smoke test (about 15 s)
#   -j JOBS      trainings at once (default: the number of cores); each gets cores/JOBS threads
#   --grid FILE  tab-separated name, loss, spec (default scripts/grid.tsv)
#   --out DIR    parent folder of the run folders
#   --list       only write and print the commands
# Rows are checked before anything runs; each failed run is reported by its line and name, and the
# script exits non-zero if any run failed.
# Needs: cargo (builds target/release/mlp, or under CARGO_TARGET_DIR), or MLP=/path/to/mlp.
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
  MLP="${CARGO_TARGET_DIR:-$root/target}/release/mlp"
fi
cores=$(nproc 2>/dev/null || echo 1)
threads=$(( cores / jobs )); [ "$threads" -ge 1 ] || threads=1

# Every row is checked before any run starts: three tab-separated fields, a known loss, a non-empty
# spec, and a name that is one path component. Fields are passed to mlp as arguments, never to a shell.
valid_name() {
  local n="$1"
  [ -n "$n" ] && [ "${#n}" -le 200 ] || return 1
  case "$n" in */*|.*|-*|*..*) return 1 ;; esac
  case "$n" in *[![:print:]]*) return 1 ;; esac
  return 0
}
names=(); losses=(); specs=(); lines=(); costs=()
problems=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  case "$line" in ''|'#'*) continue ;; esac
  fields=$(printf '%s\n' "$line" | awk -F'\t' '{ print NF }')
  name="${line%%$'\t'*}"
  if [ "$fields" != 3 ]; then
    echo "grid.sh: $grid:$lineno ($name): expected 3 tab-separated fields (name, loss, spec), got $fields" >&2
    problems=$((problems + 1)); continue
  fi
  rest="${line#*$'\t'}"; loss="${rest%%$'\t'*}"; spec="${rest#*$'\t'}"
  if ! valid_name "$name"; then
    echo "grid.sh: $grid:$lineno: the name '$name' must be one folder name: printable, at most 200 bytes, no '/', no '..', not starting with '.' or '-'" >&2
    problems=$((problems + 1)); continue
  fi
  case "$loss" in
    ce|mse) ;;
    *) echo "grid.sh: $grid:$lineno ($name): unknown loss '$loss' (expected ce or mse)" >&2
       problems=$((problems + 1)); continue ;;
  esac
  if [ -z "$(printf '%s' "$spec" | tr -d ' \t;')" ]; then
    echo "grid.sh: $grid:$lineno ($name): the layer spec is empty" >&2
    problems=$((problems + 1)); continue
  fi
  # The run's cost, for the order below: its weights, the sum of IN x OUT over its linear layers.
  cost=$(printf '%s' "$spec" | awk -F';' '{ for (i = 1; i <= NF; i++) { split($i, f, ","); gsub(/[ \t]/, "", f[1]); if (f[1] == "linear") c += f[3] * f[4] } } END { print c + 0 }')
  names+=("$name"); losses+=("$loss"); specs+=("$spec"); lines+=("$lineno"); costs+=("$cost")
done < "$grid"
if [ "$problems" -gt 0 ]; then
  echo "grid.sh: $problems bad row(s) in $grid; nothing was run" >&2
  exit 2
fi

mkdir -p "$out"
commands="$out/grid-commands.txt"
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
args_of() {  # the arguments of run $1, in the array `args`
  local i="$1"
  args=(train --quiet --overwrite --grad-norms --name "${names[$i]}" --loss "${losses[$i]}"
        --layer "${specs[$i]}" --max-epoch "$epochs" --threads "$threads" --out "$out/${names[$i]}"
        "${extra[@]+"${extra[@]}"}")
}
# Largest networks first, so that the last runs to finish are short ones and no core waits idle on one
# long run at the end.
order=()
while IFS=$'\t' read -r _ i; do order+=("$i"); done < <(
  for i in "${!names[@]}"; do printf '%s\t%s\n' "${costs[$i]}" "$i"; done | sort -t "$(printf '\t')" -k1,1nr -s)
todo=()
: > "$commands"
for i in "${order[@]+"${order[@]}"}"; do
  name="${names[$i]}"
  # The second column of summary.csv's row is the run's status; only a completed run is skipped.
  if [ -f "$out/$name/summary.csv" ] && [ "$(awk -F, 'NR == 2 { print $2 }' "$out/$name/summary.csv")" = completed ]; then
    echo "skip $name: finished ($out/$name/summary.csv)" >&2
    continue
  fi
  todo+=("$i")
  args_of "$i"
  line="$(quote "$MLP")"
  for a in "${args[@]}"; do line="$line $(quote "$a")"; done
  printf '%s\n' "$line" >> "$commands"
done

if [ "$list_only" = 1 ]; then cat "$commands"; exit 0; fi
echo "grid: ${#todo[@]} runs, $jobs at a time, $threads thread(s) each, into $out/ (commands: $commands)" >&2
start=$(date +%s)
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
running=0
for i in "${todo[@]+"${todo[@]}"}"; do
  while [ "$running" -ge "$jobs" ]; do wait -n || true; running=$((running - 1)); done
  args_of "$i"
  ( rc=0; "$MLP" "${args[@]}" || rc=$?; printf '%s\t%s\n' "$i" "$rc" >> "$results" ) &
  running=$((running + 1))
done
wait
failed=0
while IFS=$'\t' read -r i rc; do
  if [ "$rc" != 0 ]; then
    echo "grid: $grid:${lines[$i]} (${names[$i]}) failed with exit status $rc" >&2
    failed=$((failed + 1))
  fi
done < "$results"
echo "grid: done in $(( $(date +%s) - start )) s, $failed of ${#todo[@]} run(s) failed" >&2
[ "$failed" = 0 ]
