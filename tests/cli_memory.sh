#!/usr/bin/env bash
# cnn train reports the memory the run holds before it starts, and --max-memory refuses a run (or a batch)
# that would need more, with a message naming the limit, instead of starting and failing later.
set -u
CNN=${1:?usage: cli_memory.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
M="$SRC/models/fmnist-small.cnn"
D="$SRC/tests/data/fmnist-sample"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-memory.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$CNN" train "$M" --data "$D" --steps 2 --threads 1 --max-memory 200M >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "a run within the limit failed (exit $rc)"
grep -q -E '^train: memory [0-9.]+ MiB allocated .*\(limit 200.0 MiB\)' "$TMP/err" && ok || bad "no memory line: $(cat "$TMP/err")"

"$CNN" train "$M" --data "$D" --steps 2 --threads 1 --max-memory 20M >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && ok || bad "a run over the limit: exit $rc, want 1"
grep -q 'memory limit of 20971520 bytes' "$TMP/err" && ok || bad "the message does not name the limit: $(tail -1 "$TMP/err")"
[ -s "$TMP/out" ] && bad "a refused run printed epoch lines" || ok

"$CNN" train "$M" --data "$D" --steps 1 --threads 1 --batch 2000 --max-memory 64M >"$TMP/out" 2>"$TMP/err"
[ $? -eq 1 ] && grep -q 'activations' "$TMP/err" && ok || bad "a batch that cannot fit was not refused: $(tail -1 "$TMP/err")"

for v in 0 12Q -5M 100 ""; do
  "$CNN" train "$M" --data "$D" --steps 1 --max-memory "$v" >/dev/null 2>"$TMP/err"
  [ $? -eq 2 ] && grep -q '^cnn: ' "$TMP/err" && ok || bad "--max-memory '$v' not a usage error"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
