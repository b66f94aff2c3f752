#!/usr/bin/env bash
# cli_signal.sh — SIGINT/SIGTERM during `cnn train`, on the shipped sample (tests/data/fmnist-sample):
#   - the first signal stops the run after the current batch: the checkpoint is written, a line says how to
#     resume, exit status 130; the checkpoint loads, and `--resume` continues at the position the stop line
#     names (the bit-identical resume after SIGINT is tests/cli_checkpoint.sh's);
#   - a second signal exits at once: status 3, a line saying so; the checkpoint on disk is whole (the one
#     before, or the new one when the save had finished) and loads, and the run resumes from it;
#   - rounds with the second signal at random moments: the checkpoint always loads;
#   - a second signal sent while the save writes its temporary file: exit 3, the checkpoint before is
#     unchanged, and the killed save's temporary file is removed by the next save;
#   - a temporary file ".tmp.<pid>.<n>" of a dead process is removed by the next save, one of a live process
#     is not.
#
# usage: bash tests/cli_signal.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_signal.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-signal.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); printf 'FAIL: %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then ok; else bad "$d"; fi
}
finish() {
    echo "cli_signal: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
[ -d "$DATA" ] || { bad "sample data folder '$DATA' is missing"; finish; }

M=$SRC/models/lenet5.cnn
COMMON=(--data "$DATA" --batch 50 --threads 1 --seed 3)
# wait (up to 20 s) until file $1 exists and is not empty
wait_for() { for _ in $(seq 400); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
no_temps() { ! ls "$1".tmp.* >/dev/null 2>&1; }
has_temps() { compgen -G "$1.tmp.*" >/dev/null; }
# wait (up to 60 s) until the run writing stderr to $1 prints a progress line: its handlers are installed by
# then (before that, a background job of a script ignores SIGINT and dies of SIGTERM). Each run writes a file
# of its own name: the shell opens (and empties) a background job's redirection in the child, so a reused name
# can still hold the last run's progress line when the poll starts.
wait_training() { for _ in $(seq 1200); do grep -q '^train: epoch' "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# "E B NB S" from the stop line in stderr file $1 ("stopped at epoch E/.., batch B of NB (optimizer step S)")
stop_position() {
    grep -o 'stopped at epoch [0-9]*/[0-9]*, batch [0-9]* of [0-9]* (optimizer step [0-9]*)' "$1" |
        sed -E 's/stopped at epoch ([0-9]+)\/[0-9]+, batch ([0-9]+) of ([0-9]+) \(optimizer step ([0-9]+)\)/\1 \2 \3 \4/'
}

# ---- first signal: stop after the batch, checkpoint, say how to resume, 130 (SIGINT and SIGTERM)
for sig in INT TERM; do
    CK=$TMP/ck-$sig
    E=$TMP/err-$sig
    "$CNN" train "$M" "${COMMON[@]}" --epochs 100000 --checkpoint "$CK" >"$TMP/out" 2>"$E" &
    pid=$!
    wait_for "$CK" || bad "$sig: no first checkpoint within 20 s"
    sleep 0.3
    kill -"$sig" "$pid"
    wait "$pid"
    rc=$?
    check "$sig: exit status $rc, want 130" test $rc -eq 130
    if [ $sig = INT ]; then want='interrupt: stopping after the current batch'; else want='SIGTERM: stopping after the current batch'; fi
    check "$sig: no notice that the run is stopping: $(cat "$E")" grep -q "$want" "$E"
    check "$sig: the stop line does not say how to resume: $(tail -n 1 "$E")" \
        grep -q "checkpoint saved to $CK; to continue: cnn train --resume $CK" "$E"
    check "$sig: temporary files left" no_temps "$CK"
    check "$sig: the checkpoint does not load" "$CNN" info "$CK" >/dev/null 2>&1
    # the position in the stop line is where the resumed run starts
    pos=$(stop_position "$E")
    read -r e b nb s <<<"$pos"
    if [ -z "${s:-}" ]; then
        bad "$sig: no position in the stop line: $(tail -n 1 "$E")"
        continue
    fi
    check "$sig: stopped mid-run (step $s)" test "$s" -gt 0
    "$CNN" train --resume "$CK" --epochs $((e + 1)) >"$TMP/rout" 2>"$TMP/rerr"
    rc=$?
    check "$sig: resume failed ($rc): $(tail -n 2 "$TMP/rerr")" test $rc -eq 0
    check "$sig: the resumed run does not start where the run stopped ($pos): $(grep resuming "$TMP/rerr")" \
        grep -q "resuming $CK at epoch $e/$((e + 1)), batch $b of $nb (optimizer step $s)" "$TMP/rerr"
    check "$sig: the resumed run does not finish epoch $((e + 1))" grep -q "^epoch $((e + 1))/$((e + 1)) " "$TMP/rout"
done

# ---- one batch per epoch (--batch 2000 on the 2000-image sample): the signal lands in an epoch's last batch,
# its evaluation or its save, and the stop line still names the position the checkpoint resumes at (it once
# said the epoch before)
for round in 1 2 3; do
    CK=$TMP/ck-one-$round
    E=$TMP/err-one-$round
    "$CNN" train "$M" --data "$DATA" --batch 2000 --threads 1 --seed 3 --epochs 100000 --checkpoint "$CK" \
        >/dev/null 2>"$E" &
    pid=$!
    wait_for "$CK" || bad "one batch per epoch, round $round: no first checkpoint within 20 s"
    sleep "0.$((RANDOM % 10))"
    kill -INT "$pid"
    wait "$pid"
    rc=$?
    check "one batch per epoch, round $round: exit status $rc, want 130" test $rc -eq 130
    pos=$(stop_position "$E")
    read -r e b nb s <<<"$pos"
    if [ -z "${s:-}" ]; then
        bad "one batch per epoch, round $round: no position in the stop line: $(tail -n 1 "$E")"
        continue
    fi
    "$CNN" train --resume "$CK" --epochs $((e + 1)) --steps $((s + 1)) >/dev/null 2>"$TMP/rerr"
    check "one batch per epoch, round $round: the stop line says ($pos), the resumed run: $(grep resuming "$TMP/rerr")" \
        grep -q "resuming $CK at epoch $e/$((e + 1)), batch $b of $nb (optimizer step $s)" "$TMP/rerr"
done

# ---- a second signal exits at once with status 3; the checkpoint on disk is whole
CK=$TMP/ck2
"$CNN" train "$M" "${COMMON[@]}" --epochs 1 --checkpoint "$CK" >/dev/null 2>&1 || bad "first epoch failed"
cp "$CK" "$TMP/ck2.before"
"$CNN" train --resume "$CK" --epochs 100000 >"$TMP/out" 2>"$TMP/err2" &
pid=$!
wait_training "$TMP/err2" || bad "second signal: no progress line within 60 s"
# two different signals: two of the same kind sent before the process runs would merge into one
kill -INT "$pid"
kill -TERM "$pid"
wait "$pid"
rc=$?
check "second signal: exit status $rc, want 3" test $rc -eq 3
check "second signal: no line saying so: $(cat "$TMP/err2")" grep -q "^cnn: second signal: exiting at once" "$TMP/err2"
check "second signal: the stop line of a clean stop was printed" bash -c "! grep -q 'to continue' '$TMP/err2'"
check "second signal: the checkpoint does not load" "$CNN" info "$CK" >/dev/null 2>&1
if ! cmp -s "$CK" "$TMP/ck2.before"; then # it may have finished one epoch's save in between
    check "second signal: the checkpoint changed but does not evaluate" \
        "$CNN" eval "$CK" --data "$DATA" --threads 1 >/dev/null 2>&1
fi
"$CNN" train --resume "$CK" --steps 45 --quiet >/dev/null 2>"$TMP/rerr"
check "second signal: resume failed: $(tail -n 1 "$TMP/rerr")" test $? -eq 0
check "second signal: temporary files left after the next save" no_temps "$CK"

# ---- second signal at random moments, some during the save (a larger net, 38 MB with Adam: the save takes longer)
BIG=$TMP/big.cnn
cat >"$BIG" <<'EOF'
input c=1 h=28 w=28
flatten
dense name=h1 out=4096
relu
dense name=o out=10
softmax_ce
EOF
CK=$TMP/ck3
"$CNN" train "$BIG" "${COMMON[@]}" --optimizer adam --steps 2 --checkpoint "$CK" >/dev/null 2>&1 ||
    bad "big net: first checkpoint failed"
for round in 1 2 3; do
    "$CNN" train --resume "$CK" --epochs 100000 --steps 1000000000 >/dev/null 2>"$TMP/err-round$round" &
    pid=$!
    wait_training "$TMP/err-round$round" || bad "round $round: no progress line within 60 s"
    sleep "0.$((RANDOM % 5))"
    kill -INT "$pid" 2>/dev/null
    sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    check "round $round: exit status $rc, want 3 or 130: $(tail -n 1 "$TMP/err-round$round")" test $rc -eq 3 -o $rc -eq 130
    check "round $round: the checkpoint does not load" "$CNN" info "$CK" >/dev/null 2>&1
done

# ---- the second signal while the save writes its temporary file, sent as soon as the file appears (writing
# 38 MB and the fsync take far longer than one poll): exit 3, the checkpoint before is unchanged, the killed
# save's temporary file stays, and the next save removes it
cp "$CK" "$TMP/ck3.before"
"$CNN" train --resume "$CK" --epochs 100000 --steps 1000000000 >/dev/null 2>"$TMP/err-save" &
pid=$!
wait_training "$TMP/err-save" || bad "during the save: no progress line within 60 s"
kill -INT "$pid"
seen_tmp=0
# (a counted loop: expanding $(seq) of that size alone takes longer than the save)
for ((i = 1; i <= 4000000; i++)); do
    if has_temps "$CK"; then
        kill -TERM "$pid"
        seen_tmp=1
        break
    fi
    if ((i % 1000 == 0)) && ! kill -0 "$pid" 2>/dev/null; then break; fi
done
wait "$pid"
rc=$?
check "during the save: no temporary file seen" test $seen_tmp -eq 1
check "during the save: exit status $rc, want 3: $(tail -n 1 "$TMP/err-save")" test $rc -eq 3
check "during the save: the checkpoint changed" cmp -s "$CK" "$TMP/ck3.before"
check "during the save: the killed save left no temporary file" has_temps "$CK"
# (the next run resumes and is stopped by one signal, so it saves: a --steps limit below the checkpoint's
# step would end it without a save, and how many steps the runs above made depends on the machine's speed)
"$CNN" train --resume "$CK" --epochs 100000 --steps 1000000000 >/dev/null 2>"$TMP/rerr" &
pid=$!
wait_training "$TMP/rerr" || bad "during the save: the resumed run made no progress line within 60 s"
kill -INT "$pid"
wait "$pid"
rc=$?
check "during the save: the resumed run gave exit status $rc, want 130: $(tail -n 1 "$TMP/rerr")" test $rc -eq 130
check "during the save: the next save left the dead writer's temporary file" no_temps "$CK"

# ---- temporary files: a dead writer's are removed by the next save, a live writer's are kept
sh -c 'exit 0' &
dead=$!
wait "$dead"
while kill -0 "$dead" 2>/dev/null; do dead=$((dead + 100000)); done # (in case the pid was reused at once)
CK=$TMP/ck4
head -c 1000 /dev/urandom >"$CK.tmp.$dead.0"
head -c 1000 /dev/urandom >"$CK.tmp.$$.7"
"$CNN" train "$M" "${COMMON[@]}" --steps 1 --checkpoint "$CK" --quiet >/dev/null 2>"$TMP/rerr" ||
    bad "a one-step run with a checkpoint failed: $(tail -n 1 "$TMP/rerr")"
check "the dead writer's temporary file was not removed by the next save" test ! -e "$CK.tmp.$dead.0"
check "a live writer's temporary file was removed" test -e "$CK.tmp.$$.7"
rm -f "$CK.tmp.$$.7"
check "the checkpoint does not load after the cleanup" "$CNN" info "$CK" >/dev/null 2>&1
finish
