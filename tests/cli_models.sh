#!/usr/bin/env bash
# cli_models.sh — every model file shipped in models/ is valid: `cnn info` builds it (shapes, parameters,
# FLOPs), `cnn info --print` prints a text that parses back to the same printed text (round trip; the
# '# model text written by ... from FILE' comment line names the file and is not compared), and every
# model whose input is 1x28x28 trains 3 steps at batch 8 on the shipped Fashion-MNIST sample with a finite loss
# (the JSON line's loss is a number, not NaN).
#
# usage: bash tests/cli_models.sh /path/to/cnn      (CTest sets CNN_SOURCE_DIR to the repository)
set -u
CNN=${1:?usage: cli_models.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=$SRC/tests/data/fmnist-sample
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-models.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}

n=0
for m in "$SRC"/models/*.cnn; do
    n=$((n + 1))
    base=$(basename "$m" .cnn)
    if "$CNN" info "$m" >"$TMP/$base.info" 2>"$TMP/$base.err"; then ok; else bad "$base: cnn info failed: $(cat "$TMP/$base.err")"; continue; fi
    grep -q '^total parameters' "$TMP/$base.info" && ok || bad "$base: no 'total parameters' line"
    if "$CNN" info "$m" --print >"$TMP/$base.p1.cnn" 2>"$TMP/$base.err" &&
        "$CNN" info "$TMP/$base.p1.cnn" --print >"$TMP/$base.p2.cnn" 2>>"$TMP/$base.err"; then
        cmp -s <(grep -v "^#" "$TMP/$base.p1.cnn") <(grep -v "^#" "$TMP/$base.p2.cnn") && ok || bad "$base: --print round trip differs"
    else
        bad "$base: cnn info --print failed: $(cat "$TMP/$base.err")"
    fi
    if grep -Eq '^input +c=1 h=28 w=28' "$m"; then
        if "$CNN" train "$m" --data "$DATA" --steps 3 --batch 8 --threads 1 --seed 1 --json --quiet \
            >"$TMP/$base.json" 2>"$TMP/$base.err"; then
            if grep -Eq '"loss": *[0-9]' "$TMP/$base.json"; then ok; else bad "$base: no finite loss in $(head -c 300 "$TMP/$base.json")"; fi
        else
            bad "$base: 3 training steps failed: $(tail -n 3 "$TMP/$base.err")"
        fi
    fi
done
[ "$n" -ge 6 ] && ok || bad "expected at least 6 model files in models/, found $n"
echo "cli_models: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
