#!/usr/bin/env bash
# cli_recipe.sh — part "recipe" (issue 5) through the cnn tool, on a tiny model and the shipped sample
# (tests/data/fmnist-sample, 2000 train / 500 test):
#   - `cnn info` shows the recipe, `cnn info --print` prints it and the printed text reads back the same;
#   - a bad recipe fails with file:line:col (unknown key, bad value, a second recipe line);
#   - `cnn train MODEL --data DIR` alone takes epochs, batch, val_split... from the recipe (start line, steps per
#     epoch, val_acc in the epoch lines); options override it (--batch, --optimizer adam drops momentum=);
#   - --val-split: 200 of 2000 held out; --best written on every strict improvement of val_acc (counted from --log);
#   - resume bit-identical with EMA, clipping, one-cycle, label smoothing, val split: 12 steps + resume to 24
#     gives the same --out tensors and the same checkpoint tensors as 24 steps at once; EMA state in the checkpoint;
#   - tta=1 (and --tta): after the last epoch, test_acc_tta is cnn eval --tta's (and differs from the plain one);
#   - bad option values (--ema 1, --val-split 0, --best without --val-split, --div-factor without onecycle).
# usage: bash tests/cli_recipe.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_recipe.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-recipe.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    echo "cli_recipe: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
[ -d "$DATA" ] || { bad "sample data folder '$DATA' is missing"; finish; }

M="$TMP/tiny.cnn"
cat >"$M" <<'EOF'
# a tiny classifier for the tests
input     c=1 h=28 w=28
conv2d    name=c1 k=4 kh=3 kw=3 stride=2
batchnorm
relu
maxpool2d size=2 stride=2
flatten
dense     name=fc out=10
softmax_ce
recipe optimizer=sgd lr=0.05 momentum=0.9 nesterov=1 weight_decay=0.0005 schedule=onecycle epochs=2 batch=100 label_smoothing=0.1 clip_norm=1.5 ema=0.9 val_split=0.1 seed=3
EOF

# ---- info, --print, round trip
"$CNN" info "$M" >"$TMP/info" 2>&1 && ok || bad "info: $(cat "$TMP/info")"
grep -q '^recipe              optimizer=sgd lr=0.05 momentum=0.9 nesterov=1 .* val_split=0.1 (line 10)$' "$TMP/info" && ok ||
    bad "info recipe line: $(grep recipe "$TMP/info")"
"$CNN" info "$M" --print >"$TMP/p1.cnn" 2>&1 && ok || bad "info --print: $(cat "$TMP/p1.cnn")"
grep -q '^recipe optimizer=sgd lr=0.05 momentum=0.9 nesterov=1 weight_decay=0.0005 schedule=onecycle epochs=2 batch=100 seed=3 label_smoothing=0.1 clip_norm=1.5 ema=0.9 val_split=0.1$' \
    "$TMP/p1.cnn" && ok || bad "--print recipe: $(grep recipe "$TMP/p1.cnn")"
"$CNN" info "$TMP/p1.cnn" --print >"$TMP/p2.cnn" 2>&1 && ok || bad "info --print of the printed text"
diff <(tail -n +2 "$TMP/p1.cnn") <(tail -n +2 "$TMP/p2.cnn") >/dev/null && ok || bad "round trip differs"

# ---- errors with file:line:col
expect_fail() { # NAME NEEDLE FILE
    if "$CNN" info "$3" >"$TMP/out" 2>&1; then
        bad "$1: succeeded"
    elif grep -qF -- "$2" "$TMP/out"; then
        ok
    else
        bad "$1: want '$2', got: $(cat "$TMP/out")"
    fi
}
sed 's/^recipe optimizer=sgd/recipe optimiser=sgd/' "$M" >"$TMP/e1.cnn"
expect_fail "unknown key" "e1.cnn:10:8: recipe: unknown key 'optimiser'" "$TMP/e1.cnn"
sed 's/ema=0.9/ema=2/' "$M" >"$TMP/e2.cnn"
expect_fail "ema out of range" "e2.cnn:10:149: recipe: ema: 2 is out of range (0, 1)" "$TMP/e2.cnn"
{ cat "$M"; echo "recipe epochs=3"; } >"$TMP/e3.cnn"
expect_fail "second recipe" "e3.cnn:11:1: recipe: a second recipe line (the first is line 10)" "$TMP/e3.cnn"

# ---- the recipe alone
LOG="$TMP/log.jsonl"
if "$CNN" train "$M" --data "$DATA" --threads 2 --steps 30 --best "$TMP/best.st" --log "$LOG" >"$TMP/r1" 2>"$TMP/r1.err"; then
    ok
    grep -q '^train: recipe (.*tiny.cnn:10; options given override it): optimizer=sgd' "$TMP/r1.err" && ok ||
        bad "recipe start line: $(cat "$TMP/r1.err")"
    grep -q '1800 train / 500 test.* batch 100, 18 steps/epoch' "$TMP/r1.err" && ok || bad "batch/val split from the recipe: $(head -n 3 "$TMP/r1.err")"
    grep -q '^train: validation: 200 samples held out' "$TMP/r1.err" && ok || bad "val split line"
    [ "$(grep -c '^epoch [12]/2  loss .* train_acc .* val_acc [01]\.[0-9]*  test_acc ' "$TMP/r1")" -eq 2 ] && ok ||
        bad "two epoch lines with val_acc: $(cat "$TMP/r1")"
    [ -s "$TMP/best.st" ] && ok || bad "--best file missing"
    # one "best" line per strict improvement of val_acc over the epochs so far
    want=$(grep -o '"val_acc":[0-9.e-]*' "$LOG" | cut -d: -f2 | awk 'BEGIN{b=-1;n=0} {if ($1 > b) {n++; b=$1}} END{print n}')
    got=$(grep -c '^train: best val_acc' "$TMP/r1.err")
    [ "$want" = "$got" ] && [ "$got" -ge 1 ] && ok || bad "best saves: $got, improvements in the log: $want"
    "$CNN" info "$TMP/best.st" >/dev/null 2>&1 && ok || bad "best file is not a weights file"
else
    bad "train with the recipe: $(cat "$TMP/r1.err")"
fi

# ---- overrides
if "$CNN" train "$M" --data "$DATA" --threads 2 --steps 3 --batch 50 --optimizer adam --val-split 0.25 --quiet >"$TMP/r2" 2>"$TMP/r2.err"; then
    ok
else
    bad "overrides (--optimizer adam with the recipe's momentum): $(cat "$TMP/r2.err")"
fi
"$CNN" train "$M" --data "$DATA" --threads 2 --steps 3 --batch 50 --val-split 0.25 >/dev/null 2>"$TMP/r3.err"
grep -q '1500 train / 500 test.* batch 50, 30 steps/epoch' "$TMP/r3.err" && ok || bad "--batch/--val-split override: $(head -n 2 "$TMP/r3.err")"

# ---- resume bit-identical (EMA, clipping, one-cycle, label smoothing, val split from the recipe)
tensors() { # the data area of a safetensors file (the header holds paths)
    local h
    h=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
    tail -c +$((9 + h)) "$1"
}
A=(--data "$DATA" --threads 2 --epochs 2 --quiet)
"$CNN" train "$M" "${A[@]}" --steps 24 --checkpoint "$TMP/full.ck" --out "$TMP/full.w" >/dev/null 2>"$TMP/f.err" && ok ||
    bad "full run: $(cat "$TMP/f.err")"
"$CNN" train "$M" "${A[@]}" --steps 12 --checkpoint "$TMP/half.ck" >/dev/null 2>"$TMP/h.err" && ok || bad "half run: $(cat "$TMP/h.err")"
"$CNN" train --resume "$TMP/half.ck" --steps 24 --checkpoint "$TMP/half.ck" --out "$TMP/res.w" --quiet >/dev/null 2>"$TMP/rs.err" &&
    ok || bad "resume: $(cat "$TMP/rs.err")"
if [ -s "$TMP/full.w" ] && [ -s "$TMP/res.w" ]; then
    cmp -s <(tensors "$TMP/full.w") <(tensors "$TMP/res.w") && ok || bad "resumed --out (EMA weights) differs"
    cmp -s <(tensors "$TMP/full.ck") <(tensors "$TMP/half.ck") && ok || bad "resumed checkpoint differs"
    grep -q 'optim.ema.params' "$TMP/full.ck" && grep -q 'cnn.ema' "$TMP/full.ck" && ok || bad "no EMA in the checkpoint"
    # the EMA weights differ from the raw weights of the checkpoint
    cmp -s <(tensors "$TMP/full.w") <(tensors "$TMP/full.ck" | head -c "$(tensors "$TMP/full.w" | wc -c)") && bad "EMA == raw" || ok
fi

# ---- tta=1 in the recipe (or --tta): after the last epoch, the test accuracy with flip TTA, cnn eval --tta's
sed 's/^recipe .*/recipe epochs=1 batch=100 tta=1/' "$M" >"$TMP/tta.cnn"
"$CNN" info "$TMP/tta.cnn" --print 2>&1 | grep -q '^recipe epochs=1 batch=100 tta=1$' && ok || bad "tta=1 not printed back"
if "$CNN" train "$TMP/tta.cnn" --data "$DATA" --threads 1 --out "$TMP/tta.w" --json >"$TMP/t1" 2>"$TMP/t1.err"; then
    ok
    got=$(grep -o '"test_acc_tta":[0-9.e-]*' "$TMP/t1" | cut -d: -f2)
    line=$(grep '^test_acc_tta ' "$TMP/t1" | cut -d' ' -f2)
    epoch=$(grep -o '"test_acc":[0-9.e-]*' "$TMP/t1" | cut -d: -f2)
    want=$("$CNN" eval "$TMP/tta.cnn" --weights "$TMP/tta.w" --data "$DATA" --threads 1 --tta --json 2>/dev/null |
        grep -o '"accuracy":[0-9.e-]*' | cut -d: -f2)
    plain=$("$CNN" eval "$TMP/tta.cnn" --weights "$TMP/tta.w" --data "$DATA" --threads 1 --json 2>/dev/null |
        grep -o '"accuracy":[0-9.e-]*' | cut -d: -f2)
    [ -n "$got" ] && [ "$got" = "$want" ] && ok || bad "train test_acc_tta '$got', eval --tta '$want'"
    [ -n "$line" ] && awk -v a="$line" -v b="$want" 'BEGIN { exit !(a - b < 5e-5 && b - a < 5e-5) }' && ok ||
        bad "the test_acc_tta line '$line' is not eval --tta's $want"
    [ "$epoch" = "$plain" ] && ok || bad "the epoch's test_acc $epoch is not the plain eval's $plain"
    [ "$plain" != "$want" ] && ok || bad "TTA accuracy equals the plain one ($plain): the check cannot tell them apart"
else
    bad "train with tta=1: $(cat "$TMP/t1.err")"
fi
grep -v '^recipe' "$M" >"$TMP/plain.cnn"
"$CNN" train "$TMP/plain.cnn" --data "$DATA" --threads 1 --epochs 1 --batch 100 --json >"$TMP/t2" 2>/dev/null
grep -q 'test_acc_tta' "$TMP/t2" && bad "test_acc_tta without --tta: $(cat "$TMP/t2")" || ok
"$CNN" train "$TMP/plain.cnn" --data "$DATA" --threads 1 --epochs 1 --batch 100 --tta --json >"$TMP/t3" 2>/dev/null
[ "$(grep -o '"test_acc_tta":[0-9.e-]*' "$TMP/t3")" = "$(grep -o '"test_acc_tta":[0-9.e-]*' "$TMP/t1")" ] && ok ||
    bad "--tta differs from tta=1: $(tail -n 1 "$TMP/t3")"

# ---- bad option values (a model without a recipe)
grep -v '^recipe' "$M" >"$TMP/plain.cnn"
for args in "--ema 1" "--val-split 0" "--best $TMP/b.st" "--clip-norm 0" "--label-smoothing 1" \
    "--schedule cosine --div-factor 10"; do
    # shellcheck disable=SC2086
    if "$CNN" train "$TMP/plain.cnn" --data "$DATA" --steps 1 $args >/dev/null 2>"$TMP/bad.err"; then
        bad "'$args' accepted"
    else
        grep -q '^cnn: ' "$TMP/bad.err" && ok || bad "'$args': no cnn: message: $(cat "$TMP/bad.err")"
    fi
done
finish
