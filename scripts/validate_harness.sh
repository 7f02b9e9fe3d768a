#!/usr/bin/env bash
# Checks the evaluation harness against published numbers with classical baselines (no weights needed):
# BM3D (gray) / CBM3D (colour) through `.venv/bin/adfnet-test --model bm3d`, then writes docs/HARNESS.md.
#
#   scripts/validate_harness.sh [DATA_ROOT]
#
# DATA_ROOT holds the test sets as DATA_ROOT/<set>, DATA_ROOT/gray/<set> or DATA_ROOT/rgb/<set>
# (default datasets/testsets: only Set12 and McMaster are bundled; BSD68, CBSD68, Kodak24 are downloads).
# Environment:
#   CASES="1:BSD68:25 3:CBSD68:50"  n_colors:set:sigma[,sigma...] to run (default: the measured cases)
#   SEEDS=1     noise seeds per case (the official seed, +1, ...): the spread of the set mean
#   SEED=       first noise seed (default: the official one, 1 gray / 20 colour)
#   LIMIT=      only the first N images of each set (a subset for the seed spread)
#   PARTS=1     split each set into N interleaved parts run in parallel (N processes; the report merges
#               the parts' means weighted by their image counts into the set mean)
#   OUT=results/harness   runs go to OUT/<set>_c<n_colors>_s<seeds>[_l<limit>]/ (kept: the report reads all)
#   DOC=docs/HARNESS.md   the report, written from every run under OUT
#   REPORT_ONLY=1         only rewrite DOC from the runs already under OUT
# BM3D takes ~10 s of CPU per 481x321 gray image, CBM3D ~16-30 s per colour one.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${1:-datasets/testsets}
PY=${PYTHON:-.venv/bin/python}
CASES=${CASES:-"1:BSD68:25 3:CBSD68:50"}
SEEDS=${SEEDS:-1}
OUT=${OUT:-results/harness}
DOC=${DOC:-docs/HARNESS.md}
mkdir -p "$OUT"

if [ -z "${REPORT_ONLY:-}" ]; then
    for case in $CASES; do
        IFS=: read -r n_colors set sigmas <<<"$case"
        dir=""
        for candidate in "$ROOT/$set" "$ROOT/gray/$set" "$ROOT/rgb/$set"; do
            if [ -d "$candidate" ]; then dir=$candidate; break; fi
        done
        if [ -z "$dir" ]; then
            echo "error: test set $set not found under $ROOT (as $set, gray/$set or rgb/$set)" >&2
            exit 1
        fi
        tag="${set}_c${n_colors}_s${SEEDS}${SEED:+_from$SEED}${LIMIT:+_l$LIMIT}"
        parts=${PARTS:-1}
        echo "== $set (n_colors $n_colors) sigma ${sigmas//,/ }: $SEEDS seed(s)${LIMIT:+, first $LIMIT images}," \
            "$parts part(s) -> $OUT/$tag*"
        pids=()
        for ((k = 1; k <= parts; k++)); do
            run=$tag input=$dir
            if [ "$parts" -gt 1 ]; then
                # part k: images k, k+N, ... of the sorted folder, as symlinks in a folder of the set's name
                run="${tag}_p${k}of${parts}" input="$OUT/${tag}_p${k}of${parts}.in/$set"
                rm -rf "$input" && mkdir -p "$input"
                find -L "$dir" -maxdepth 1 -type f | grep -iE '\.(png|jpe?g|tiff?|bmp)$' | sort |
                    awk -v k="$k" -v n="$parts" '(NR - k) % n == 0' |
                    while read -r f; do ln -s "$(realpath "$f")" "$input/"; done
            fi
            # shellcheck disable=SC2086  # the sigma list is split on purpose
            "$PY" -m adfnet.cli.test --model bm3d --n_colors "$n_colors" --input_dir "$input" \
                --test_noiseL ${sigmas//,/ } --seeds "$SEEDS" ${SEED:+--seed "$SEED"} ${LIMIT:+--limit "$LIMIT"} \
                --result_dir "$OUT/$run" >"$OUT/$run.log" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
        cat "$OUT/$tag"*.log
    done
fi
"$PY" -m experiments.harness "$OUT" --data_root "$ROOT" --output "$DOC"
