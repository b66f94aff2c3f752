#!/usr/bin/env bash
# cli_info_nan.sh — NaN and infinite weights (issue 4): a weights file holding them loads, and `cnn info`
# names each such tensor on stderr with its counts, while still printing the table (exit 0). A clean file
# gives no warning. The weights come from a 2-step `cnn train --out` on the shipped Fashion-MNIST sample;
# values are then overwritten in place in the data area of the safetensors file (offsets from its header).
#
# usage: bash tests/cli_info_nan.sh /path/to/cnn      (CTest sets CNN_SOURCE_DIR to the repository)
set -u
CNN=${1:?usage: cli_info_nan.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-info-nan.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}

cat >"$TMP/m.cnn" <<'EOF'
input c=1 h=28 w=28
conv2d name=c1 k=3 kh=5 kw=5 stride=3
relu
flatten
dense name=fc out=10
softmax_ce
EOF
W="$TMP/w.safetensors"
if ! "$CNN" train "$TMP/m.cnn" --data "$SRC/tests/data/fmnist-sample" --steps 2 --batch 8 --threads 1 --out "$W" \
    >"$TMP/train.out" 2>&1; then
    bad "train --out failed: $(tail -n 3 "$TMP/train.out")"
    echo "cli_info_nan: $pass passed, $fail failed"
    exit 1
fi

# A clean file: no warning.
"$CNN" info "$W" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] && ok || bad "clean info: exit $rc: $(cat "$TMP/err")"
[ -s "$TMP/err" ] && bad "clean info: unexpected stderr: $(cat "$TMP/err")" || ok

# data_start = 8 + header length; a tensor's begin offset from its header entry.
hlen=$(od -An -tu8 -N8 "$W" | tr -d ' ')
data_start=$((8 + hlen))
header=$(head -c "$data_start" "$W" | tail -c "$hlen")
begin_of() { # begin offset of tensor $1 in the data area
    grep -o "\"$1\":{[^}]*}" <<<"$header" | grep -o '"data_offsets":\[[0-9]*' | grep -o '[0-9]*$'
}
poke() { # poke FLOAT_INDEX_IN_TENSOR TENSOR HEXBYTES(little-endian, \x form)
    local b
    b=$(begin_of "$2")
    [ -n "$b" ] || { bad "no tensor $2 in the header"; return; }
    printf "$3" | dd of="$W" bs=1 seek=$((data_start + b + 4 * $1)) conv=notrunc status=none
}
# c1.weight (75 floats): two NaN, one +Inf; fc.bias (10 floats): one -Inf.
poke 0 c1.weight '\x00\x00\xc0\x7f'
poke 7 c1.weight '\x01\x00\xc0\xff'
poke 74 c1.weight '\x00\x00\x80\x7f'
poke 9 fc.bias '\x00\x00\x80\xff'

"$CNN" info "$W" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] && ok || bad "NaN info: exit $rc (want 0: the file loads): $(cat "$TMP/err")"
grep -q "^total parameters" "$TMP/out" && ok || bad "NaN info: no table: $(head -n 3 "$TMP/out")"
grep -Eq "^cnn: warning: .*w\.safetensors: tensor 'c1\.weight' has 3 non-finite values of 75 \(2 NaN, 1 infinite\)$" \
    "$TMP/err" && ok || bad "NaN info: no warning for c1.weight: $(cat "$TMP/err")"
grep -Eq "^cnn: warning: .*tensor 'fc\.bias' has 1 non-finite value of 10 \(0 NaN, 1 infinite\)$" "$TMP/err" && ok ||
    bad "NaN info: no warning for fc.bias: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/err")" -eq 2 ] && ok || bad "NaN info: want 2 warnings, got: $(cat "$TMP/err")"
grep -q "c1.bias\|fc.weight" "$TMP/err" && bad "NaN info: a clean tensor was named: $(cat "$TMP/err")" || ok
# --json and --print warn too; stdout stays what it was.
"$CNN" info "$W" --json >"$TMP/json" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q '"params":' "$TMP/json" && ok || bad "NaN info --json: exit $rc: $(head -c 200 "$TMP/json")"
[ "$(grep -c 'warning' "$TMP/err")" -eq 2 ] && ok || bad "NaN info --json: want 2 warnings: $(cat "$TMP/err")"
"$CNN" info "$W" --print >"$TMP/print" 2>"$TMP/err"
grep -q "^conv2d" "$TMP/print" && ok || bad "NaN info --print: $(head -n 3 "$TMP/print")"
[ "$(grep -c 'warning' "$TMP/err")" -eq 2 ] && ok || bad "NaN info --print: want 2 warnings: $(cat "$TMP/err")"
# The model text alone has no weights to check: no warning.
"$CNN" info "$TMP/m.cnn" >/dev/null 2>"$TMP/err" && [ ! -s "$TMP/err" ] && ok || bad "model text info: $(cat "$TMP/err")"

echo "cli_info_nan: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
