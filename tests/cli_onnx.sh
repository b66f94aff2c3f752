#!/usr/bin/env bash
# cli_onnx.sh — the ONNX commands of the cnn tool.
#   conformance: `cnn onnx-test` over Debian's libonnx-testdata (node/ and pytorch-converted/): no folder may
#     FAIL (unsupported ones SKIP); the pass/skip counts are printed. Skipped with a message when the package
#     is absent.
#   run: `cnn run` on a conformance model writes an output TensorProto that `cnn onnx-test` style dims match;
#     an unsupported model gives one error line naming the node and op; usage errors exit 2.
#   export: train a tiny model for a few steps, `cnn export` it, check the file with onnx.checker (when
#     /usr/bin/python3 has onnx) and run it back with `cnn run`.
#
# usage: bash tests/cli_onnx.sh /path/to/cnn   (CTest sets CNN_SOURCE_DIR; CNN_ONNX_TESTDATA overrides the
#        suite folder, /usr/share/libonnx-testdata/data by default)
set -u
CNN=${1:?usage: cli_onnx.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
SUITE=${CNN_ONNX_TESTDATA:-/usr/share/libonnx-testdata/data}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-onnx.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}

if [ "${CNN_HAVE_ONNX:-1}" = 0 ]; then
    echo "cli_onnx: skipped: the build has no ONNX support (install protobuf-c-compiler libprotobuf-c-dev libonnx-dev)"
    exit 0
fi

# ---- conformance ----
if [ -d "$SUITE/node" ]; then
    dirs="$SUITE/node"
    [ -d "$SUITE/pytorch-converted" ] && dirs="$dirs $SUITE/pytorch-converted"
    "$CNN" onnx-test $dirs --threads 2 >"$TMP/conf.txt" 2>&1
    rc=$?
    summary=$(tail -n 1 "$TMP/conf.txt")
    echo "conformance ($dirs): $summary"
    grep '^FAIL' "$TMP/conf.txt"
    if [ $rc -ne 0 ] || grep -q '^FAIL' "$TMP/conf.txt"; then bad "onnx-test reported failures (exit $rc)"; else ok; fi
    case "$summary" in *" passed, 0 failed, "*" skipped") ok ;; *) bad "unexpected summary line: $summary" ;; esac
    npass=${summary%% passed*}
    [ "${npass:-0}" -ge 100 ] && ok || bad "only $npass folders passed (expected at least 100)"
    grep -q '^PASS test_relu$' "$TMP/conf.txt" && ok || bad "test_relu did not pass"
    grep -q '^SKIP test_gru_defaults: .*GRU' "$TMP/conf.txt" && ok || bad "test_gru_defaults not skipped naming GRU"
else
    echo "cli_onnx: conformance skipped: $SUITE/node is missing (apt-get install libonnx-testdata)"
fi

# ---- cnn run ----
CONV="$SUITE/pytorch-converted/test_Conv2d"
if [ -f "$CONV/model.onnx" ]; then
    "$CNN" run "$CONV/model.onnx" --input "$CONV/test_data_set_0/input_0.pb" --output "$TMP/y.pb" 2>"$TMP/run.err"
    [ $? -eq 0 ] && [ -s "$TMP/y.pb" ] && ok || bad "cnn run --output failed: $(cat "$TMP/run.err")"
    "$CNN" run "$CONV/model.onnx" --input "$CONV/test_data_set_0/input_0.pb" >"$TMP/run.out" 2>&1
    head -n 1 "$TMP/run.out" | grep -q '\[2, 4, 5, 4\]$' && ok || bad "cnn run printed: $(head -n 1 "$TMP/run.out")"
    # the written output, fed back as the expected output of a copied test folder, passes
    mkdir -p "$TMP/t/test_data_set_0" && cp "$CONV/model.onnx" "$TMP/t/" &&
        cp "$CONV/test_data_set_0/input_0.pb" "$TMP/t/test_data_set_0/" && cp "$TMP/y.pb" "$TMP/t/test_data_set_0/output_0.pb"
    "$CNN" onnx-test "$TMP/t" | grep -q '^PASS t$' && ok || bad "cnn run output does not match its own onnx-test"
    GRU="$SUITE/node/test_exp"
    if [ -f "$GRU/model.onnx" ]; then
        "$CNN" run "$GRU/model.onnx" --input "$GRU/test_data_set_0/input_0.pb" >/dev/null 2>"$TMP/gru.err"
        rc=$?
        [ $rc -eq 1 ] && [ "$(wc -l <"$TMP/gru.err")" -eq 1 ] && grep -q "(Exp): unsupported op 'Exp'" "$TMP/gru.err" && ok ||
            bad "unsupported op: exit $rc, stderr: $(cat "$TMP/gru.err")"
    fi
fi
"$CNN" run >/dev/null 2>&1
[ $? -eq 2 ] && ok || bad "cnn run without arguments should be a usage error"
"$CNN" run "$TMP/missing.onnx" --input x.pb >/dev/null 2>&1
[ $? -eq 1 ] && ok || bad "cnn run on a missing file should fail with 1"
printf 'garbage' >"$TMP/bad.onnx"
printf 'x' >"$TMP/x.pb"
"$CNN" run "$TMP/bad.onnx" --input "$TMP/x.pb" >/dev/null 2>"$TMP/bad.err"
[ $? -eq 1 ] && ok || bad "cnn run on garbage should fail with 1: $(cat "$TMP/bad.err")"

# ---- cnn export ----
cat >"$TMP/tiny.cnn" <<'M'
input c=1 h=28 w=28
conv2d name=conv1 k=4 size=3 stride=2 pad=1
batchnorm name=bn1
relu
maxpool2d size=2
flatten
dense name=fc out=10
softmax_ce
M
if "$CNN" train "$TMP/tiny.cnn" --data "$SRC/tests/data/fmnist-sample" --steps 5 --batch 16 --threads 2 --quiet \
    --out "$TMP/tiny.safetensors" >/dev/null 2>"$TMP/train.err"; then
    ok
    "$CNN" export "$TMP/tiny.safetensors" --model "$TMP/tiny.cnn" -o "$TMP/tiny.onnx" 2>"$TMP/export.err"
    [ $? -eq 0 ] && [ -s "$TMP/tiny.onnx" ] && ok || bad "cnn export failed: $(cat "$TMP/export.err")"
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
        /usr/bin/python3 -c "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)" \
            "$TMP/tiny.onnx" && ok || bad "onnx.checker rejected the exported model"
    else
        echo "cli_onnx: onnx.checker skipped (/usr/bin/python3 without onnx: apt-get install python3-onnx)"
    fi
    if [ -f "$CONV/model.onnx" ]; then :; fi
    "$CNN" export "$TMP/tiny.safetensors" -o "$TMP/x.onnx" >/dev/null 2>&1
    [ $? -eq 2 ] && ok || bad "cnn export without --model should be a usage error"
else
    bad "cnn train for the export test failed: $(cat "$TMP/train.err")"
fi

echo "cli_onnx: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
