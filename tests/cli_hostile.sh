#!/usr/bin/env bash
# Hostile input for every command of the tool: garbage arguments, missing files, directories in place of
# files, empty files, files of random bytes and huge numbers. Each must end with a clear "cnn: ..." message
# on stderr and a non-zero exit below 128 (never a signal), within a time limit.
set -u
CNN=${1:?usage: cli_hostile.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-hostile.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
: > "$TMP/empty"
head -c 4096 /dev/urandom > "$TMP/random"
mkdir -p "$TMP/dir"
printf 'input c=1 h=28 w=28\nconv2d k=99999999999 size=3\n' > "$TMP/huge.cnn"
M="$SRC/models/fmnist-small.cnn"
D="$SRC/tests/data/fmnist-sample"
pass=0 fail=0
check() { # check ARGS... : expect failure with a cnn: message, no signal
  timeout 60 "$CNN" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 124 ] || ! grep -q '^cnn: ' "$TMP/err" ||
     grep -q -E 'Sanitizer|runtime error' "$TMP/err"; then
    fail=$((fail + 1)); echo "FAIL (exit $rc): cnn $*"; head -3 "$TMP/err"
  else
    pass=$((pass + 1))
  fi
}
for cmd in train eval info bench run onnx-test export predict viz report explain; do
  check $cmd --no-such-option
  check $cmd --threads 99999999999999999999999
done
for f in "$TMP/missing" "$TMP/dir" "$TMP/empty" "$TMP/random" "$TMP/huge.cnn"; do
  check train "$f" --data "$D" --steps 1
  check train "$M" --data "$f" --steps 1
  check eval "$f" --data "$D"
  check eval "$M" --weights "$f" --data "$D"
  check info "$f"
  check run "$f" --input "$TMP/random"
  check onnx-test "$f"
  check export "$f" --model "$M" -o "$TMP/o.onnx"
  check predict "$f" --data "$D" --index 0
  check predict "$f" --model "$M" "$TMP/random"
  check viz "$f" --model "$M" --layer conv1 --filters -o "$TMP/v.png"
  check report "$f" --model "$M" --data "$D" -o "$TMP/rep"
  check train "$M" --data "$D" --steps 1 --resume "$f"
  check bench infer "$f" --batch 1 --reps 1
done
check train "$M" --data "$D" --batch 0
check train "$M" --data "$D" --batch 18446744073709551616
check train "$M" --data "$D" --epochs -1
check train "$M" --data "$D" --lr nan
check train "$M" --data "$D" --lr 1e309
check info "$M" --batch 999999999999999
check bench conv --n 999999999 --c 999999999 --h 99999 --w 99999 --k 9999 --r 3 --s 3 --reps 1
check bench gemm --m 0 --n 1 --k 1
check explain conv --input "1,2;3"
check explain conv --input "a,b;c,d"
check explain pool --size 0
check explain frobnicate
check frobnicate
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
