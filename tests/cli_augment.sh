#!/usr/bin/env bash
# cli_augment.sh — augmentation and prefetch through `cnn train`, TTA through `cnn eval`, on the shipped
# sample (tests/data/fmnist-sample, 2000 train images: 40 batches of 50):
#   - the background prefetch gives bit-identical weights to --no-prefetch (augmentation with random erasing
#     and normalisation on), at 1 and at 2 threads;
#   - the augmentation changes the training (weights differ from a run without it; and with another spec);
#   - resume with augmentation: a run stopped mid-epoch (--steps 13) and at an epoch end, then --resume, gives
#     the weights of the uninterrupted run;
#   - bad --augment specs are usage errors naming the item and column; the start line shows the spec;
#   - eval --tta: runs, says so (text and JSON), and its loss differs from the plain evaluation.
# The weights are compared on the data area of the safetensors files.
#
# usage: bash tests/cli_augment.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_augment.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-augment.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    echo "cli_augment: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
check() { # check DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then ok; else bad "$d"; fi
}

if [ ! -d "$DATA" ]; then
    bad "sample data folder '$DATA' is missing"
    finish
fi

data_of() {
    local hl
    hl=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +$((hl + 9)) "$1"
}
same_weights() { cmp -s <(data_of "$1") <(data_of "$2"); }
differ() { ! same_weights "$1" "$2"; }

TINY=$TMP/tiny.cnn
cat >"$TINY" <<'M'
input c=1 h=28 w=28
conv2d name=c1 k=4 kh=3 kw=3 stride=2
relu
maxpool2d size=2 stride=2
flatten
dense name=fc out=10
softmax_ce
M
AUG="crop=2,flip,erase=0.5,erase-fill=random"
COMMON=(--data "$DATA" --batch 50 --seed 3 --normalize 0.29,0.35 --quiet)
run() { # run NAME ARGS... : train, weights to $TMP/NAME
    local name=$1
    shift
    "$CNN" train "$@" --out "$TMP/$name" >"$TMP/$name.out" 2>&1 || bad "run $name failed: $(tail -3 "$TMP/$name.out")"
}

# ---- prefetch vs synchronous
for t in 1 2; do
    run pf$t "$TINY" "${COMMON[@]}" --threads $t --augment "$AUG" --steps 25
    run sync$t "$TINY" "${COMMON[@]}" --threads $t --augment "$AUG" --steps 25 --no-prefetch
    check "threads $t: prefetch and --no-prefetch give different weights" same_weights "$TMP/pf$t" "$TMP/sync$t"
done
run plain "$TINY" "${COMMON[@]}" --threads 1 --steps 25
run flip "$TINY" "${COMMON[@]}" --threads 1 --steps 25 --augment flip
check "--augment changes nothing" differ "$TMP/plain" "$TMP/pf1"
check "--augment flip and $AUG agree" differ "$TMP/flip" "$TMP/pf1"
run none "$TINY" "${COMMON[@]}" --threads 1 --steps 25 --augment none
check "--augment none differs from no --augment" same_weights "$TMP/plain" "$TMP/none"

# ---- resume with augmentation (2 epochs = 80 steps)
R=("$TINY" "${COMMON[@]}" --threads 1 --augment "$AUG" --optimizer sgd --momentum 0.9 --epochs 2)
run full "${R[@]}"
"$CNN" train "${R[@]}" --steps 13 --checkpoint "$TMP/ck13" >"$TMP/ck13.out" 2>&1 || bad "--steps 13 run failed"
"$CNN" train --resume "$TMP/ck13" --steps 1000000 --out "$TMP/res13" >"$TMP/res13.out" 2>&1 ||
    bad "resume at step 13 failed: $(tail -3 "$TMP/res13.out")"
check "resume mid-epoch (step 13) with augmentation: weights differ from the uninterrupted run" \
    same_weights "$TMP/full" "$TMP/res13"
"$CNN" train "${R[@]}" --steps 40 --checkpoint "$TMP/ck40" >/dev/null 2>&1 || bad "--steps 40 run failed"
"$CNN" train --resume "$TMP/ck40" --steps 1000000 --no-prefetch --out "$TMP/res40" >/dev/null 2>&1 || bad "resume at 40 failed"
check "resume at the epoch end (synchronous after): weights differ" same_weights "$TMP/full" "$TMP/res40"

# ---- the start line and bad specs
"$CNN" train "$TINY" --data "$DATA" --batch 50 --threads 1 --steps 1 --augment "flip,crop=3" >"$TMP/start.out" 2>&1
check "start line shows the spec" grep -q "train: augmentation crop=3,flip (prepared on a background thread)" "$TMP/start.out"
expect_usage() { # expect_usage SPEC NEEDLE
    "$CNN" train "$TINY" --data "$DATA" --threads 1 --steps 1 --augment "$1" >"$TMP/err.out" 2>&1
    local rc=$?
    check "--augment '$1': exit $rc, expected 2" test $rc -eq 2
    check "--augment '$1': message lacks '$2': $(cat "$TMP/err.out")" grep -qF -- "$2" "$TMP/err.out"
}
expect_usage "crop=x" "cnn: train: --augment: augmentation 'crop=x': column 1: 'crop=x': expected crop=P"
expect_usage "flip,blur=2" "column 6: unknown item 'blur=2'"
expect_usage "flip,,erase" "column 6: empty item"
expect_usage "erase=2" "probability Q from 0 to 1"
check "help mentions --augment" bash -c "'$CNN' train --help | grep -q -- '--augment SPEC'"

# ---- eval --tta
"$CNN" eval "$TMP/full" --data "$DATA" --threads 1 --normalize 0.29,0.35 --tta >"$TMP/tta.out" 2>"$TMP/tta.err" ||
    bad "eval --tta failed: $(cat "$TMP/tta.err")"
check "eval --tta: text line" grep -q "^test loss .* accuracy .*images, flip TTA)" "$TMP/tta.out"
check "eval --tta: start line" grep -q "test-time augmentation" "$TMP/tta.err"
j1=$("$CNN" eval "$TMP/full" --data "$DATA" --threads 1 --normalize 0.29,0.35 --tta --json 2>/dev/null)
j0=$("$CNN" eval "$TMP/full" --data "$DATA" --threads 1 --normalize 0.29,0.35 --json 2>/dev/null)
check "eval --tta --json: \"tta\":true ($j1)" bash -c "grep -q '\"tta\":true' <<<'$j1'"
l1=$(grep -o '"loss":[0-9.e+-]*' <<<"$j1")
l0=$(grep -o '"loss":[0-9.e+-]*' <<<"$j0")
check "eval --tta: loss ($l1) differs from plain ($l0)" test -n "$l1" -a -n "$l0" -a "$l1" != "$l0"
finish
