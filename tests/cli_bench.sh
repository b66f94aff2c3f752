#!/usr/bin/env bash
# cli_bench.sh — smoke test of `cnn bench`: every benchmark with tiny sizes and one repetition runs, exits 0
# and prints valid JSON (one object per line, with the keys docs/bench.md lists); usage errors exit 2.
# Never asserts timings (the numbers only have to be positive).
#
# usage: bash tests/cli_bench.sh /path/to/cnn      (CTest sets CNN_SOURCE_DIR to the repository)
set -u
CNN=${1:?usage: cli_bench.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-bench.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
PY=
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}

# check_json NAME FILE LINES KEY...: FILE has LINES lines, each a JSON object with every KEY; numbers > 0
# for the keys that start with gflops, ms, images or peak.
check_json() {
    local name=$1 file=$2 lines=$3
    shift 3
    local n
    n=$(wc -l <"$file")
    if [ "$n" -ne "$lines" ]; then
        bad "$name: expected $lines JSON lines, got $n"
        sed 's/^/    /' "$file" | head -n 5
        return
    fi
    if [ -n "$PY" ]; then
        if ! "$PY" - "$file" "$@" <<'PYEOF'; then
import json, sys
path, keys = sys.argv[1], sys.argv[2:]
for no, line in enumerate(open(path), 1):
    o = json.loads(line)
    for k in keys:
        if k not in o:
            sys.exit("line %d: no key %r in %s" % (no, k, line.strip()))
        if k.startswith(("gflops", "ms_", "images", "peak")) and not (isinstance(o[k], (int, float)) and o[k] > 0):
            sys.exit("line %d: %s = %r is not a positive number" % (no, k, o[k]))
PYEOF
            bad "$name: invalid JSON"
            sed 's/^/    /' "$file" | head -n 5
            return
        fi
    else
        if grep -qv '^{.*}$' "$file"; then
            bad "$name: a line is not a JSON object"
            return
        fi
    fi
    ok
}

# run NAME LINES KEYS -- ARGS...: cnn bench ARGS --json must exit 0 with LINES JSON lines carrying KEYS.
run() {
    local name=$1 lines=$2 keys=$3
    shift 4
    "$CNN" bench "$@" --json >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$name: exit status $rc"
        sed 's/^/    /' "$TMP/err" | head -n 10
        return
    fi
    # shellcheck disable=SC2086
    check_json "$name" "$TMP/out" "$lines" $keys
}

CONV_KEYS="shape pass gflops_median gflops_min algorithm isa threads pct_peak ms_median"
run "peak" 2 "bench isa threads gflops" -- peak --threads 2 --seconds 0.05
run "peak 1 thread" 1 "bench isa threads gflops" -- peak --threads 1 --seconds 0.05
run "gemm" 1 "bench m n k gflops_median gflops_min pct_peak isa threads" -- \
    gemm --m 33 --n 17 --k 9 --reps 1 --threads 2 --peak 100
run "conv custom" 3 "$CONV_KEYS" -- conv --n 2 --c 5 --h 9 --k 7 --r 3 --pad 1 --reps 1 --threads 2 --peak 100
run "conv custom groups" 1 "$CONV_KEYS" -- \
    conv --n 1 --c 8 --h 7 --w 5 --k 8 --r 3 --s 1 --stride 2 --groups 8 --pass bwd_weights --reps 1 --peak 100
run "conv c4 fwd" 1 "$CONV_KEYS" -- conv --shape c4 --pass fwd --reps 1 --threads 2 --peak 100
run "conv measured peak" 1 "$CONV_KEYS peak_gflops" -- conv --n 1 --c 3 --h 6 --k 4 --r 1 --pass fwd --reps 1
run "infer" 1 "bench model batch threads isa ms_median images_per_second peak_rss_mib" -- \
    infer "$SRC/models/lenet5.cnn" --batch 2 --reps 1 --threads 2
run "train" 1 "bench model batch threads isa ms_median images_per_second peak_rss_mib" -- \
    train "$SRC/models/fmnist-small.cnn" --batch 3 --reps 1 --threads 2

# The table form prints a header and a row.
if "$CNN" bench conv --n 1 --c 2 --h 5 --k 3 --r 3 --pass fwd --reps 1 --peak 10 >"$TMP/out" 2>&1 &&
    [ "$(wc -l <"$TMP/out")" -eq 2 ] && grep -q '^custom  fwd' "$TMP/out"; then ok; else
    bad "conv table: $(head -c 300 "$TMP/out")"
fi
if "$CNN" help bench | grep -q 'cnn bench conv'; then ok; else bad "cnn help bench"; fi
# --algo forces the layer's algorithm (the algorithm column says so); one the shape cannot run is an error
for a in im2col:im2col+gemm direct:direct winograd-f2x2:winograd-f2x2; do
    if "$CNN" bench conv --n 1 --c 4 --h 6 --k 4 --r 3 --pad 1 --pass fwd --algo "${a%%:*}" --reps 1 --peak 10 \
        >"$TMP/out" 2>&1 && grep -q "^custom  fwd  *${a#*:} " "$TMP/out"; then ok; else
        bad "conv --algo ${a%%:*}: $(head -c 300 "$TMP/out")"
    fi
done
if ! "$CNN" bench conv --n 1 --c 4 --h 6 --k 4 --r 3 --groups 2 --algo stem --reps 1 --peak 10 >"$TMP/out" 2>&1 &&
    grep -q 'algo=stem needs groups=1' "$TMP/out"; then ok; else bad "conv --algo stem with groups: $(head -c 300 "$TMP/out")"; fi

# Usage errors: exit status 2, one line on stderr.
usage() {
    local name=$1
    shift
    "$CNN" bench "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^cnn: ' "$TMP/err"; then ok; else
        bad "$name: exit $rc, stderr: $(head -c 200 "$TMP/err")"
    fi
}
usage "no benchmark"
usage "unknown benchmark" nope
usage "unknown shape" conv --shape c9
usage "shape and custom" conv --shape c1 --k 3
usage "bad groups" conv --c 6 --k 4 --groups 4
usage "bad pass" conv --pass sideways
usage "reps 0" gemm --reps 0
usage "infer without model" infer

# bench train --layers: a row per layer that runs, the sum line; in JSON one train_layer object per row
if "$CNN" bench train "$SRC/models/lenet5.cnn" --batch 4 --reps 2 --threads 1 --layers >"$TMP/lay" 2>"$TMP/err" &&
    grep -q 'conv1 *conv2d' "$TMP/lay" && grep -q 'fc3 *dense' "$TMP/lay" && grep -q '^ *sum of the layers' "$TMP/lay"; then ok; else
    bad "bench train --layers: $(head -c 400 "$TMP/lay") $(cat "$TMP/err")"
fi
n_json=$("$CNN" bench train "$SRC/models/lenet5.cnn" --batch 4 --reps 2 --threads 1 --layers --json 2>/dev/null |
    grep -c '"bench":"train_layer"')
# lenet5: conv1, conv2, fc1, fc2, fc3, the two pools (relu fused into them), relu of fc1/fc2, the loss
if [ "$n_json" -ge 8 ]; then ok; else bad "bench train --layers --json: $n_json train_layer rows"; fi
# bench infer --layers: the forward of each layer, the sum against the whole forward; JSON infer_layer rows
if "$CNN" bench infer "$SRC/models/lenet5.cnn" --batch 4 --reps 2 --threads 1 --layers >"$TMP/lay" 2>"$TMP/err" &&
    grep -q 'conv1 *conv2d' "$TMP/lay" && grep -q '^ *sum of the layers .*the whole forward' "$TMP/lay" &&
    ! grep -q 'bwd_d ms' "$TMP/lay"; then ok; else
    bad "bench infer --layers: $(head -c 400 "$TMP/lay") $(cat "$TMP/err")"
fi
n_json=$("$CNN" bench infer "$SRC/models/lenet5.cnn" --batch 4 --reps 2 --threads 1 --layers --json 2>/dev/null |
    grep -c '"bench":"infer_layer".*"fwd_ms"')
if [ "$n_json" -ge 5 ]; then ok; else bad "bench infer --layers --json: $n_json infer_layer rows"; fi
# the conv rows take time (the re-run is not a no-op)
if awk '/conv1 *conv2d/ {exit !($(NF-1) > 0)}' "$TMP/lay"; then ok; else bad "bench infer --layers: conv1 took no time"; fi
"$CNN" bench train "$SRC/models/does-not-exist.cnn" >/dev/null 2>"$TMP/err"
if [ $? -eq 1 ] && grep -q '^cnn: ' "$TMP/err"; then ok; else bad "missing model: $(cat "$TMP/err")"; fi

echo "cli_bench: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
