#!/usr/bin/env bash
# cli_train.sh — end to end through the cnn tool: train models/fmnist-small.cnn on the shipped sample
# (tests/data/fmnist-sample: the first 2000 train / 500 test Fashion-MNIST images) for 30 steps at batch 32,
# check the epoch line and the JSON (test_acc > 0.3 after 30 steps: chance is 0.1), check that the same seed and
# threads give the same numbers twice and another seed other numbers, and that `--out` then `cnn eval
# --weights` gives the same test accuracy.
#
# usage: bash tests/cli_train.sh /path/to/cnn      (CTest sets CNN_SOURCE_DIR to the repository;
#        CNN_CLI_DATA overrides the data folder)
set -u
CNN=${1:?usage: cli_train.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
MODEL="$SRC/models/fmnist-small.cnn"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-train.XXXXXX") || exit 1
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
finish() {
    echo "cli_train: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

if [ ! -d "$DATA" ]; then
    bad "sample data folder '$DATA' is missing"
    finish
fi

# run NAME OUTFILE ARGS...: cnn train with the common arguments; stdout to OUTFILE.
run() {
    local name=$1 out=$2
    shift 2
    "$CNN" train "$MODEL" --data "$DATA" --steps 30 --batch 32 --threads 2 --json "$@" >"$out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$name: exit status $rc"
        sed 's/^/    /' "$TMP/err" | head -n 20
        return 1
    fi
    ok
}

# The output without what depends on the clock (seconds, img/s).
untimed() {
    sed -E -e 's/  [0-9.]+ s  [0-9.]+ img\/s$//' -e 's/,"seconds":[^,}]*//' -e 's/,"images_per_second":[^,}]*//' "$1"
}

# json_get FILE KEY: a number from the last line (the JSON object).
json_get() {
    if [ -n "$PY" ]; then
        tail -n 1 "$1" | "$PY" -c 'import json, sys; print(repr(json.loads(sys.stdin.read())[sys.argv[1]]))' "$2"
    else
        tail -n 1 "$1" | grep -Eo "\"$2\":[^,}]*" | head -n 1 | cut -d: -f2
    fi
}

if run "train seed 1" "$TMP/run1" --seed 1 --out "$TMP/w.safetensors"; then
    grep -q '^train: model .*2000 train / 500 test, 1x28x28, 10 classes' "$TMP/err" && ok ||
        bad "start line on stderr: $(head -n 1 "$TMP/err")"
    # 2000 / 32 = 63 steps per epoch, so --steps 30 ends inside epoch 1: one line, then the JSON.
    [ "$(wc -l <"$TMP/run1")" -eq 2 ] && ok || bad "want one epoch line and one JSON line: $(cat "$TMP/run1")"
    grep -Eq '^epoch 1/1  loss [0-9]+\.[0-9]{4}  train_acc [01]\.[0-9]{4}  test_acc [01]\.[0-9]{4}  [0-9]+\.[0-9] s  [0-9]+ img/s$' \
        "$TMP/run1" && ok || bad "epoch line: $(head -n 1 "$TMP/run1")"
    if [ -n "$PY" ]; then
        tail -n 1 "$TMP/run1" | "$PY" -c '
import json, math, sys
d = json.loads(sys.stdin.read())
keys = ["epochs", "steps", "loss", "train_acc", "test_acc", "seconds", "images_per_second"]
for k in keys:
    assert k in d, "missing " + k
    assert isinstance(d[k], (int, float)) and math.isfinite(d[k]), (k, d[k])
assert d["epochs"] == 1 and d["steps"] == 30, d
assert 0 < d["loss"] < 2.3, d["loss"]          # below chance level log(10) = 2.30
assert 0.3 < d["train_acc"] <= 1, d["train_acc"]
assert 0.3 < d["test_acc"] <= 1, d["test_acc"]
assert d["seconds"] > 0 and d["images_per_second"] > 0
' && ok || bad "JSON: $(tail -n 1 "$TMP/run1")"
    else
        for k in epochs steps loss train_acc test_acc seconds images_per_second; do
            grep -q "\"$k\":" "$TMP/run1" && ok || bad "JSON has no $k"
        done
        acc=$(json_get "$TMP/run1" test_acc)
        awk -v a="$acc" 'BEGIN { exit !(a > 0.3 && a <= 1) }' && ok || bad "test_acc $acc, want > 0.3"
    fi
    [ -s "$TMP/w.safetensors" ] && ok || bad "--out wrote no weights"
fi

# Same seed and threads: the same numbers. Another seed: other numbers (so the check above can fail).
if run "train seed 1 again" "$TMP/run2" --seed 1; then
    if [ "$(untimed "$TMP/run1")" == "$(untimed "$TMP/run2")" ]; then ok; else
        bad "two runs with the same seed differ:"
        diff <(untimed "$TMP/run1") <(untimed "$TMP/run2") | head -n 10
    fi
fi
if run "train seed 2" "$TMP/run3" --seed 2; then
    [ "$(untimed "$TMP/run1")" != "$(untimed "$TMP/run3")" ] && ok || bad "seeds 1 and 2 gave identical output"
fi

# The saved weights evaluate to the same test accuracy (same batch and threads as the training's evaluation).
if [ -s "$TMP/w.safetensors" ]; then
    if "$CNN" eval "$MODEL" --weights "$TMP/w.safetensors" --data "$DATA" --batch 32 --threads 2 --json \
        >"$TMP/eval" 2>"$TMP/err"; then
        ok
        a=$(json_get "$TMP/run1" test_acc)
        b=$(json_get "$TMP/eval" accuracy)
        [ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "train test_acc $a, eval accuracy $b"
        if [ -n "$PY" ]; then
            "$PY" -c '
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])
e = json.load(open(sys.argv[2]))
assert e["n"] == 500, e["n"]
c = e["confusion"]
assert len(c) == 10 and all(len(r) == 10 for r in c), c
assert sum(map(sum, c)) == 500
assert sum(c[i][i] for i in range(10)) / 500 == e["accuracy"], (c, e["accuracy"])
assert abs(e["loss"] - t["test_loss"]) <= 1e-6 * max(1, abs(t["test_loss"])), (e["loss"], t["test_loss"])
' "$TMP/run1" "$TMP/eval" && ok || bad "eval JSON: $(cat "$TMP/eval")"
        fi
    else
        bad "eval: exit status $?"
        sed 's/^/    /' "$TMP/err" | head -n 20
    fi
    # The text form: loss and accuracy line, then the matrix with the Fashion-MNIST names as row labels.
    if "$CNN" eval "$MODEL" --weights "$TMP/w.safetensors" --data "$DATA" --batch 100 --threads 1 \
        >"$TMP/evaltext" 2>"$TMP/err"; then
        grep -Eq '^test loss [0-9.]+  accuracy [01]\.[0-9]{4}  \(500 images\)$' "$TMP/evaltext" && ok ||
            bad "eval text: $(head -n 1 "$TMP/evaltext")"
        grep -Eq '^0 T-shirt/top( +[0-9]+){10}$' "$TMP/evaltext" && grep -Eq '^9 Ankle boot( +[0-9]+){10}$' \
            "$TMP/evaltext" && ok || bad "eval text: no named confusion rows: $(cat "$TMP/evaltext")"
    else
        bad "eval (text): failed"
        sed 's/^/    /' "$TMP/err" | head -n 20
    fi
fi
finish
