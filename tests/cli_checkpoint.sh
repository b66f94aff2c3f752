#!/usr/bin/env bash
# cli_checkpoint.sh — checkpoints through the cnn tool, on the shipped sample (tests/data/fmnist-sample, 2000
# train images: 40 batches of 50):
#   - a run stopped after epoch 1 (--epochs 1 --checkpoint) and resumed (--resume CK --epochs 2) gives
#     bit-identical weights to an uninterrupted 2-epoch run with the same seed and threads (SGD momentum, and
#     Adam with a cosine schedule and a dropout layer); so does a run stopped by SIGINT at a random batch;
#   - eval, info, predict and report take the checkpoint alone (no model file);
#   - kill -9 at random moments of a run that checkpoints every epoch: the checkpoint always loads;
#   - a corrupt or truncated checkpoint, a missing folder, a save that fails half-way (ulimit -f) give a clear
#     error and keep the previous checkpoint.
# The weights are compared on the data area of the safetensors files (the header's model text names the
# file it came from, so headers differ).
#
# usage: bash tests/cli_checkpoint.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_checkpoint.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-ckpt.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    echo "cli_checkpoint: $pass passed, $fail failed"
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

# data area of a safetensors file (everything after the 8-byte length and the header)
data_of() {
    local hl
    hl=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +$((hl + 9)) "$1"
}
same_weights() { cmp -s <(data_of "$1") <(data_of "$2"); }

TINY=$TMP/tiny.cnn
cat >"$TINY" <<'EOF'
input c=1 h=28 w=28
conv2d name=c1 k=4 kh=3 kw=3 stride=2
relu
maxpool2d size=2 stride=2
flatten
dropout p=0.2
dense name=fc out=10
softmax_ce
EOF
# --threads 1: libgomp's spinning makes 2 threads on a busy 2-core machine 30x slower at this size (the
# library test covers resuming at 2 threads)
COMMON=(--data "$DATA" --batch 50 --threads 1 --seed 5 --quiet)

# ---- stop after epoch 1, resume for epoch 2
for variant in sgd adam; do
    if [ $variant = sgd ]; then extra=(--optimizer sgd --momentum 0.9); else extra=(--optimizer adam --schedule cosine); fi
    "$CNN" train "$TINY" "${COMMON[@]}" "${extra[@]}" --epochs 2 --out "$TMP/full-$variant" >"$TMP/full.out" 2>&1 ||
        bad "$variant: uninterrupted run failed: $(cat "$TMP/full.out")"
    # the checkpoint of epoch 1 is written with --epochs 2 so the schedule is the same; --steps 40 stops there
    "$CNN" train "$TINY" "${COMMON[@]}" "${extra[@]}" --epochs 2 --steps 40 --checkpoint "$TMP/ck-$variant" \
        >"$TMP/part.out" 2>&1 || bad "$variant: first epoch failed: $(cat "$TMP/part.out")"
    "$CNN" train --resume "$TMP/ck-$variant" --steps 1000000 --out "$TMP/res-$variant" >"$TMP/res.out" 2>&1 ||
        bad "$variant: resume failed: $(cat "$TMP/res.out")"
    check "$variant: resumed weights differ from the uninterrupted run" same_weights "$TMP/full-$variant" "$TMP/res-$variant"
    check "$variant: resumed epoch line" grep -q '^epoch 2/2' "$TMP/res.out"
    a=$(grep '^epoch 2/2' "$TMP/full.out" | awk '{print $1, $2, $3, $4, $5, $6, $7, $8}')
    b=$(grep '^epoch 2/2' "$TMP/res.out" | awk '{print $1, $2, $3, $4, $5, $6, $7, $8}')
    check "$variant: final epoch lines agree ('$a' vs '$b')" test "$a" = "$b"
done
# the issue's form: --epochs 1 then --resume --epochs 2 (constant schedule: the same run)
"$CNN" train "$TINY" "${COMMON[@]}" --epochs 1 --checkpoint "$TMP/ck1" >/dev/null 2>&1 || bad "epochs 1 run failed"
"$CNN" train --resume "$TMP/ck1" --epochs 2 --out "$TMP/res1" >/dev/null 2>&1 || bad "resume --epochs 2 failed"
"$CNN" train "$TINY" "${COMMON[@]}" --epochs 2 --optimizer sgd --out "$TMP/full1" >/dev/null 2>&1
check "--epochs 1, --resume --epochs 2: weights differ" same_weights "$TMP/full1" "$TMP/res1"
# --quiet (and --json) are not kept: the run of ck1 was quiet, its resume without --quiet talks
"$CNN" train --resume "$TMP/ck1" --epochs 2 --out "$TMP/res1b" >/dev/null 2>"$TMP/res1b.err" || bad "loud resume failed"
check "a resume inherited --quiet: $(head -c 300 "$TMP/res1b.err")" grep -q "^train: resuming" "$TMP/res1b.err"

# ---- the other commands take a checkpoint alone
CK=$TMP/ck-sgd
acc=$("$CNN" eval "$CK" --data "$DATA" --threads 1 --json 2>/dev/null | grep -o '"accuracy":[0-9.e-]*')
check "eval CHECKPOINT --json" test -n "$acc"
check "eval MODEL --weights CHECKPOINT (old form)" bash -c "'$CNN' eval '$TINY' --weights '$CK' --data '$DATA' --threads 1 --json | grep -q '$acc'"
check "info CHECKPOINT" bash -c "'$CNN' info '$CK' | grep -q 'total parameters'"
check "info CHECKPOINT --print" bash -c "'$CNN' info '$CK' --print | grep -q 'dropout'"
check "predict CHECKPOINT" bash -c "'$CNN' predict '$CK' --data '$DATA' --index 0 | grep -q '1\\.'"
check "report CHECKPOINT" bash -c "'$CNN' report '$CK' --data '$DATA' -o '$TMP/rep' >/dev/null 2>&1 && test -s '$TMP/rep/index.html'"

# ---- SIGINT at a random batch, then resume: the same weights as an uninterrupted run
LENET=$SRC/models/lenet5.cnn
L=(--data "$DATA" --batch 50 --threads 1 --seed 9 --optimizer sgd --momentum 0.9 --epochs 6)
"$CNN" train "$LENET" "${L[@]}" --quiet --out "$TMP/lenet-full" >/dev/null 2>&1 || bad "lenet uninterrupted run failed"
"$CNN" train "$LENET" "${L[@]}" --checkpoint "$TMP/lenet-ck" >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!
sleep "0.$((RANDOM % 4 + 2))"
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
if [ $rc -eq 130 ]; then
    check "SIGINT: says how to resume" grep -q "cnn train --resume $TMP/lenet-ck" "$TMP/int.err"
else
    check "SIGINT: exit status $rc (expected 130, or 0 when the run ended first)" test $rc -eq 0
fi
"$CNN" train --resume "$TMP/lenet-ck" --quiet --out "$TMP/lenet-res" >/dev/null 2>"$TMP/res.err" ||
    bad "resume after SIGINT failed: $(cat "$TMP/res.err")"
check "SIGINT + resume: weights differ from the uninterrupted run" same_weights "$TMP/lenet-full" "$TMP/lenet-res"

# ---- kill -9 during training that checkpoints every epoch: the checkpoint always loads
K=$TMP/kill-ck
for round in 1 2 3 4 5; do
    "$CNN" train "$TINY" "${COMMON[@]}" --epochs 100000 --checkpoint "$K" >/dev/null 2>&1 &
    pid=$!
    # wait for the first checkpoint, then a random moment
    for _ in $(seq 1000); do [ -s "$K" ] && break; sleep 0.02; done # (up to 20 s)
    sleep "0.$((RANDOM % 30 + 1))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    check "kill -9 round $round: checkpoint does not load" "$CNN" info "$K" >/dev/null 2>"$TMP/kill.err"
    rm -f "$K".tmp.* # what a kill during a save leaves next to it
done
check "resume after kill -9" "$CNN" train --resume "$K" --epochs 1 --quiet >/dev/null 2>&1

# ---- bad checkpoints and failed saves
head -c 1000 "$CK" >"$TMP/trunc"
out=$("$CNN" train --resume "$TMP/trunc" 2>&1)
rc=$?
check "truncated checkpoint: exit 1 (got $rc)" test $rc -eq 1
check "truncated checkpoint: clear message ($out)" grep -q "cnn: .*trunc.*header length" <<<"$out"
out=$("$CNN" eval "$TMP/trunc" --data "$DATA" 2>&1)
check "eval truncated checkpoint: clear message ($out)" grep -q "cnn: .*trunc" <<<"$out"
out=$("$CNN" train --resume "$TMP/full-sgd" 2>&1)
check "resume from a weights file: clear message ($out)" grep -q "not a checkpoint" <<<"$out"
out=$("$CNN" train "$TINY" --resume "$CK" 2>&1)
check "resume with a model file: usage error ($out)" grep -q "drop" <<<"$out"
out=$("$CNN" train "$TINY" "${COMMON[@]}" --checkpoint "$TMP/no/such/dir/ck" 2>&1)
rc=$?
check "missing folder: error before training ($rc: $out)" bash -c "test $rc -ne 0 && ! grep -q '^epoch' <<<'$out'"
cp "$CK" "$TMP/keep"
cp "$CK" "$TMP/keep.orig"
out=$(trap '' XFSZ; ulimit -f 2; "$CNN" train "$TINY" "${COMMON[@]}" --checkpoint "$TMP/keep" 2>&1)
rc=$?
check "save beyond ulimit -f: exit 1 ($rc: $out)" test $rc -eq 1
check "save beyond ulimit -f: clear message ($out)" grep -q "cnn: .*keep.*write failed" <<<"$out"
check "save beyond ulimit -f: previous checkpoint kept" cmp -s "$TMP/keep" "$TMP/keep.orig"
check "save beyond ulimit -f: no temporary file left" bash -c "! ls '$TMP'/keep.tmp.* >/dev/null 2>&1"
if [ "$(id -u)" != 0 ]; then
    mkdir "$TMP/ro" && cp "$CK" "$TMP/ro/ck" && chmod 555 "$TMP/ro"
    out=$("$CNN" train "$TINY" "${COMMON[@]}" --checkpoint "$TMP/ro/ck" 2>&1)
    check "read-only folder: exit 1" test $? -eq 1
    check "read-only folder: previous checkpoint kept" cmp -s "$TMP/ro/ck" "$CK"
    chmod 755 "$TMP/ro"
fi
finish
