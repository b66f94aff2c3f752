#!/usr/bin/env bash
# cli_faults.sh — a full disk, a file size limit and unwritable places while `cnn train` writes its outputs:
#   - checkpoint write fails (disk full: a small tmpfs where the new checkpoint's temporary file does not fit
#     beside the old one; a read-only mount; an immutable folder): the run stops with exit 1 and a message
#     naming the file and the reason, the previous checkpoint is byte-identical and still loads, no temporary
#     file is left;
#   - --report DIR write fails (file size limit, disk full): the error is reported and training goes on to
#     the end: every epoch line, the checkpoint and --out weights are written, the --json line is printed;
#     exit 1 (an output asked for is missing);
#   - --log FILE write fails (/dev/full): a warning, training continues without the log, later epochs and
#     the checkpoint happen; exit 1;
#   - `ulimit -f` without the shell ignoring SIGXFSZ: the run reports EFBIG instead of being killed by it.
# (A resumed run saves to the --checkpoint it was started with unless one is given: the tests give it.)
# A checkpoint save cut by `ulimit -f`, kill -9 during a save and a missing folder are tests/cli_checkpoint.sh's.
# As root permissions are not enforced, so the unwritable places are a read-only tmpfs mount and a folder
# with the immutable attribute (chattr +i); each is skipped, with a note, where the machine does not allow it.
#
# usage: bash tests/cli_faults.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_faults.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-faults.XXXXXX") || exit 1
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
    [ -d "$TMP/immutable" ] && chattr -i "$TMP/immutable" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
pass=0 fail=0 skipped=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); printf 'FAIL: %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP: %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then ok; else bad "$d"; fi
}
finish() {
    echo "cli_faults: $pass passed, $fail failed, $skipped skipped"
    [ "$fail" -eq 0 ]
    exit
}
[ -d "$DATA" ] || { bad "sample data folder '$DATA' is missing"; finish; }
no_temps() { ! ls "$1".tmp.* >/dev/null 2>&1; }
# a tmpfs of $2 bytes at $1 (returns 1 where mounting is not allowed)
mount_tmpfs() {
    mkdir -p "$1" && mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null || return 1
    MOUNTS+=("$1")
}

TINY=$TMP/tiny.cnn
cat >"$TINY" <<'EOF'
input c=1 h=28 w=28
conv2d name=c1 k=4 kh=3 kw=3 stride=2
relu
maxpool2d size=2 stride=2
flatten
dense name=fc out=10
softmax_ce
EOF
COMMON=(--data "$DATA" --batch 50 --threads 1 --seed 4)
"$CNN" train "$TINY" "${COMMON[@]}" --optimizer adam --epochs 1 --checkpoint "$TMP/ck" --quiet >/dev/null 2>&1 ||
    { bad "the first checkpoint failed"; finish; }
size=$(stat -c %s "$TMP/ck")

# a stopped run: exit 1, a message naming the file and the reason, the old checkpoint kept and loadable
expect_kept() { # expect_kept WHAT CHECKPOINT ORIGINAL RC REASON_REGEX
    local what=$1 ck=$2 orig=$3 rc=$4 reason=$5
    check "$what: exit status $rc, want 1" test "$rc" -eq 1
    check "$what: message: $(tail -n 1 "$TMP/err")" grep -q -E "^cnn: .*$(basename "$ck").*($reason)" "$TMP/err"
    check "$what: the previous checkpoint changed" cmp -s "$ck" "$orig"
    check "$what: the previous checkpoint does not load" "$CNN" info "$ck" >/dev/null 2>&1
    check "$what: temporary file left" no_temps "$ck"
}

# ---- disk full during a checkpoint save: the temporary file does not fit beside the old checkpoint
pages=$(((size + 4095) / 4096))
if mount_tmpfs "$TMP/full" $(((pages + pages / 2 + 1) * 4096)); then
    cp "$TMP/ck" "$TMP/full/ck"
    "$CNN" train --resume "$TMP/full/ck" --checkpoint "$TMP/full/ck" --epochs 2 >"$TMP/out" 2>"$TMP/err"
    rc=$?
    expect_kept "disk full" "$TMP/full/ck" "$TMP/ck" $rc "No space left on device"
    check "disk full: the epoch before the save did not run" grep -q '^epoch 2/2 ' "$TMP/out"
    check "disk full: the kept checkpoint resumes elsewhere" \
        "$CNN" train --resume "$TMP/full/ck" --epochs 2 --checkpoint "$TMP/ck-moved" --quiet >/dev/null 2>&1
else
    skip "disk full: cannot mount a tmpfs here"
fi

# ---- read-only folder: a tmpfs remounted read-only
if mount_tmpfs "$TMP/ro" 1m; then
    cp "$TMP/ck" "$TMP/ro/ck"
    if mount -o remount,ro "$TMP/ro" 2>/dev/null; then
        "$CNN" train --resume "$TMP/ro/ck" --checkpoint "$TMP/ro/ck" --epochs 2 >"$TMP/out" 2>"$TMP/err"
        expect_kept "read-only mount" "$TMP/ro/ck" "$TMP/ck" $? "Read-only file system"
    else
        skip "read-only mount: cannot remount read-only here"
    fi
else
    skip "read-only mount: cannot mount a tmpfs here"
fi

# ---- immutable folder (chattr +i: not even root may create a file in it)
mkdir "$TMP/immutable" && cp "$TMP/ck" "$TMP/immutable/ck"
if chattr +i "$TMP/immutable" 2>/dev/null; then
    "$CNN" train --resume "$TMP/immutable/ck" --checkpoint "$TMP/immutable/ck" --epochs 2 >"$TMP/out" 2>"$TMP/err"
    expect_kept "immutable folder" "$TMP/immutable/ck" "$TMP/ck" $? "Operation not permitted|Permission denied"
    chattr -i "$TMP/immutable"
else
    skip "immutable folder: chattr +i not supported on this file system"
fi

# ---- a file where the checkpoint's folder should be: refused before training
: >"$TMP/plainfile"
"$CNN" train "$TINY" "${COMMON[@]}" --checkpoint "$TMP/plainfile/ck" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "file as folder: exit $rc, want 1" test $rc -eq 1
check "file as folder: message: $(tail -n 1 "$TMP/err")" grep -q "^cnn: --checkpoint .*plainfile.*not a directory" "$TMP/err"
check "file as folder: trained anyway" test ! -s "$TMP/out"

# ---- the report cannot be written: the error is reported, training goes to its end
expect_report_failed() { # WHAT RC
    local what=$1 rc=$2
    check "$what: exit status $rc, want 1" test "$rc" -eq 1
    check "$what: no report error: $(cat "$TMP/err")" grep -q "^cnn: --report .*the report is incomplete; training itself finished" "$TMP/err"
    check "$what: not every epoch ran" grep -q '^epoch 2/2 ' "$TMP/out"
    check "$what: no --json line after the failed report" grep -q '^{"epochs":2,' "$TMP/out"
    check "$what: the weights were not saved" "$CNN" info "$TMP/rep-w" >/dev/null 2>&1
    check "$what: the checkpoint is not of the whole run" \
        bash -c "'$CNN' train --resume '$TMP/rep-ck' --epochs 2 2>&1 | grep -q 'nothing to train'"
}
rm -f "$TMP/rep-w" "$TMP/rep-ck"
# the report's pictures pass 40 KiB; the checkpoint (about $size bytes) and weights do not
out=$(trap - XFSZ; ulimit -f 40; "$CNN" train "$TINY" "${COMMON[@]}" --epochs 2 --checkpoint "$TMP/rep-ck" \
    --out "$TMP/rep-w" --report "$TMP/report" --json >"$TMP/out" 2>"$TMP/err"; echo $?)
check "report past ulimit -f: the checkpoint is larger than the limit" test "$size" -lt 40960
expect_report_failed "report past ulimit -f" "$out"
check "report past ulimit -f: the failed file is not named: $(grep 'report:' "$TMP/err")" \
    grep -q -E "^cnn: report: .*report/.*(File too large|failed)" "$TMP/err"
if mount_tmpfs "$TMP/smallfs" 32k; then
    rm -f "$TMP/rep-w" "$TMP/rep-ck"
    "$CNN" train "$TINY" "${COMMON[@]}" --epochs 2 --checkpoint "$TMP/rep-ck" --out "$TMP/rep-w" \
        --report "$TMP/smallfs/report" --json >"$TMP/out" 2>"$TMP/err"
    rc=$?
    expect_report_failed "report on a full disk" $rc
    check "report on a full disk: no reason given: $(grep 'report:' "$TMP/err")" grep -q -E "^cnn: report: .*smallfs/report.*(No space left on device|failed)" "$TMP/err"
else
    skip "report on a full disk: cannot mount a tmpfs here"
fi

# ---- the log cannot be written: a warning, training continues
if [ -w /dev/full ]; then
    "$CNN" train "$TINY" "${COMMON[@]}" --epochs 2 --checkpoint "$TMP/log-ck" --log /dev/full >"$TMP/out" 2>"$TMP/err"
    rc=$?
    check "log on /dev/full: exit $rc, want 1" test $rc -eq 1
    check "log on /dev/full: no warning: $(cat "$TMP/err")" \
        grep -q "^cnn: --log '/dev/full': write failed: No space left on device; training continues without the log" "$TMP/err"
    check "log on /dev/full: one warning, not one per epoch" test "$(grep -c -- '--log' "$TMP/err")" -eq 1
    check "log on /dev/full: training stopped" grep -q '^epoch 2/2 ' "$TMP/out"
    check "log on /dev/full: no checkpoint of epoch 2" \
        bash -c "'$CNN' train --resume '$TMP/log-ck' --epochs 2 --log '$TMP/log2' 2>&1 | grep -q 'nothing to train'"
else
    skip "log on /dev/full: no /dev/full"
fi

# ---- ulimit -f without `trap '' XFSZ`: the run reports the error instead of dying of SIGXFSZ
cp "$TMP/ck" "$TMP/xfsz-ck"
rc=$(trap - XFSZ; ulimit -f 2; "$CNN" train --resume "$TMP/xfsz-ck" --checkpoint "$TMP/xfsz-ck" --epochs 2 >"$TMP/out" 2>"$TMP/err"; echo $?)
expect_kept "ulimit -f, SIGXFSZ not ignored by the shell" "$TMP/xfsz-ck" "$TMP/ck" "$rc" "File too large"
finish
