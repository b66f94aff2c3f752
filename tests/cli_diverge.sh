#!/usr/bin/env bash
# The divergence guard: a loss or gradient that turns NaN/Inf stops training before the optimizer step,
# names the step and the first layer (or tensor) where it appeared, and leaves the last checkpoint as it
# was; --skip-bad-batches K skips up to K such batches with a warning each. (Inputs scaled by 1e20 with
# --normalize 0,1e-20 make the activations overflow.)
set -u
CNN=${1:?usage: cli_diverge.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-diverge.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
M="$SRC/models/lenet5.cnn"
D="$SRC/tests/data/fmnist-sample"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$CNN" train "$M" --data "$D" --epochs 1 --batch 8 --normalize 0,1e-20 --threads 1 >"$TMP/out" 2>"$TMP/err"
rc=$?; last=$(tail -n 1 "$TMP/err")
[ $rc -eq 1 ] && ok || bad "diverging run: exit $rc, want 1"
[[ $last =~ ^cnn:\ non-finite\ (loss|gradients)\ at\ epoch\ 1/1,\ step\ [0-9]+.*(layer\ \'[a-z0-9_]+\'|gradient\ of\ ) ]] \
    && ok || bad "the message does not name the step and the layer: $last"

"$CNN" train "$M" --data "$D" --batch 8 --normalize 0,1e-20 --threads 1 --skip-bad-batches 2 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && ok || bad "skip run: exit $rc, want 1"
n=$(grep -c '^cnn: warning: skipping batch' "$TMP/err")
[ "$n" -eq 2 ] && ok || bad "expected 2 skip warnings, got $n"

# a good epoch with a checkpoint, then a resumed run that diverges: the checkpoint is untouched
"$CNN" train "$M" --data "$D" --epochs 1 --batch 50 --threads 1 --checkpoint "$TMP/ck.safetensors" >/dev/null 2>&1 \
    && ok || bad "the good epoch failed"
before=$(sha256sum "$TMP/ck.safetensors" | cut -d' ' -f1)
"$CNN" train --resume "$TMP/ck.safetensors" --epochs 2 --normalize 0,1e-20 >"$TMP/out" 2>"$TMP/err"
rc=$?; last=$(tail -n 1 "$TMP/err")
[ $rc -eq 1 ] && ok || bad "diverging resume: exit $rc, want 1"
[[ $last == *"the last checkpoint is kept"* ]] && ok || bad "no word on the checkpoint: $last"
after=$(sha256sum "$TMP/ck.safetensors" | cut -d' ' -f1)
[ "$before" = "$after" ] && ok || bad "the checkpoint changed after the diverging run"
"$CNN" eval "$TMP/ck.safetensors" --data "$D" >/dev/null 2>&1 && ok || bad "the kept checkpoint does not evaluate"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
