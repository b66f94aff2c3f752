#!/usr/bin/env bash
# cli_mpi.sh — data-parallel training under Open MPI (docs/distributed.md), on the shipped sample
# (tests/data/fmnist-sample, 2000 train images), with `mpirun --allow-run-as-root --oversubscribe -np 2`:
#   - equivalence: the same seed, global batch 64, 2 ranks x 32 against 1 process x 64: weights after 20
#     steps equal within 1e-5 relative (per tensor: max |a - b| / max |a|), for models/fmnist-small.cnn (no
#     batchnorm; 3 gradient buckets of the default 1 MiB, started during backward) and for a model
#     with three batchnorm layers in --sync-bn mode; without --sync-bn that model must differ (per-rank
#     statistics), which shows the comparison can fail;
#   - only rank 0 prints: one epoch line on stdout;
#   - --batch not divisible by the ranks: a clear error, exit 2;
#   - a rank killed (SIGKILL) mid-run: the job ends (mpirun notices) within the test's timeout;
#   - a rank that hangs: the other's collective times out (--dist-timeout 3) naming it, the job ends;
#   - a rank whose weights drift: the checksum after the epoch stops the run naming rank 1;
#   - --resume with another N: 10 steps on 2 ranks (checkpoint mid-epoch), resumed to 20 on 1 process,
#     equal 20 steps on 1 process, and the other way round (same tolerance).
# Skipped (exit 0, a SKIP line) when the build has no MPI (CNN_HAVE_MPI=0) or mpirun is missing.
# Learning rate 0.002: the two runs sum gradients in another order, so they differ by rounding (1e-7 after a
# step); at larger rates the first steps of a fresh model amplify that (at 0.05 about 25x every 5 steps, and
# a maxpool or relu decision that flips on a near-tie adds a jump), which is not what this test is about.
# Every run is deterministic (one thread per rank, a fixed reduction order on 2 ranks).
#
# usage: bash tests/cli_mpi.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_mpi.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CNN_CLI_DATA:-$SRC/tests/data/fmnist-sample}
if [ "${CNN_HAVE_MPI:-1}" != 1 ]; then
    echo "SKIP cli_mpi: the build has no MPI (apt-get install libopenmpi-dev openmpi-bin, reconfigure)"
    exit 0
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP cli_mpi: mpirun not found (apt-get install openmpi-bin)"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP cli_mpi: python3 not found (it compares the weights files)"
    exit 0
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-mpi.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
# Open MPI keeps allocations until exit by design: no leak reports from it under ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np"

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    echo "cli_mpi: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

cat > "$TMP/cmp.py" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = struct.unpack('<%df' % ((e - s) // 4), data[s:e])
    return out
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if sorted(a) != sorted(b) or not a:
    print('different tensors: %s / %s' % (sorted(a), sorted(b)))
    sys.exit(1)
worst, name = 0.0, ''
for k in a:
    scale = max(abs(v) for v in a[k]) or 1.0
    d = max(abs(p - q) for p, q in zip(a[k], b[k])) / scale
    if d > worst:
        worst, name = d, k
print('%.3g %s' % (worst, name))
sys.exit(0 if worst <= tol else 1)
PY
# same FILE_A FILE_B TOL DESCRIPTION: weights within TOL; differ FILE_A FILE_B TOL DESCRIPTION: not
same() {
    local r
    if r=$(python3 "$TMP/cmp.py" "$1" "$2" "$3"); then ok; else bad "$4: max relative difference $r > $3"; fi
}
differ() {
    local r
    if r=$(python3 "$TMP/cmp.py" "$1" "$2" "$3"); then bad "$4: expected a difference, got $r"; else ok; fi
}

if [ ! -d "$DATA" ]; then
    bad "sample data missing: $DATA"
    finish
fi
M1="$SRC/models/fmnist-small.cnn"
cat > "$TMP/bn.cnn" <<'M'
input     c=1 h=28 w=28
conv2d    name=c1 k=8 kh=3 kw=3 pad=1
batchnorm name=bn1
relu
maxpool2d size=2 stride=2
conv2d    name=c2 k=12 kh=3 kw=3 pad=1
batchnorm name=bn2
relu
maxpool2d size=2 stride=2
flatten
dense     name=fc1 out=24
batchnorm name=bn3
relu
dense     name=fc2 out=10
softmax_ce
M
COMMON="--data $DATA --threads 1 --batch 64 --seed 1 --lr 0.002 --quiet"

# ---- equivalence: 2 x 32 against 1 x 64 ----
"$CNN" train "$M1" $COMMON --steps 20 --out "$TMP/m1_1.st" > /dev/null 2> "$TMP/err" || bad "1-process run: $(cat "$TMP/err")"
timeout 120 $MPIRUN 2 "$CNN" train "$M1" $COMMON --steps 20 --out "$TMP/m1_2.st" > "$TMP/out2" 2> "$TMP/err" \
    || bad "2-rank run failed: $(tail -5 "$TMP/err")"
same "$TMP/m1_1.st" "$TMP/m1_2.st" 1e-5 "fmnist-small 2x32 vs 1x64 after 20 steps"
n_lines=$(grep -c '^epoch ' "$TMP/out2")
[ "$n_lines" = 1 ] && ok || bad "expected one epoch line from rank 0 only, got $n_lines"

"$CNN" train "$TMP/bn.cnn" $COMMON --steps 20 --out "$TMP/bn_1.st" > /dev/null 2> "$TMP/err" || bad "1-process bn run: $(cat "$TMP/err")"
timeout 120 $MPIRUN 2 "$CNN" train "$TMP/bn.cnn" $COMMON --steps 20 --sync-bn --out "$TMP/bn_2s.st" > /dev/null 2> "$TMP/err" \
    || bad "2-rank --sync-bn run failed: $(tail -5 "$TMP/err")"
same "$TMP/bn_1.st" "$TMP/bn_2s.st" 1e-5 "batchnorm model --sync-bn 2x32 vs 1x64"
timeout 120 $MPIRUN 2 "$CNN" train "$TMP/bn.cnn" $COMMON --steps 20 --out "$TMP/bn_2p.st" > /dev/null 2> "$TMP/err" \
    || bad "2-rank per-rank-bn run failed: $(tail -5 "$TMP/err")"
differ "$TMP/bn_1.st" "$TMP/bn_2p.st" 1e-4 "batchnorm model, per-rank statistics vs 1x64"

# ---- the global batch must divide by the ranks ----
timeout 60 $MPIRUN 2 "$CNN" train "$M1" $COMMON --batch 63 --steps 2 > /dev/null 2> "$TMP/err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "--batch 63 on 2 ranks: exit $rc"
grep -q "batch 63 is the global batch and must divide evenly by the 2 ranks" "$TMP/err" && ok \
    || bad "--batch 63 on 2 ranks: no clear message: $(head -3 "$TMP/err")"

# ---- a killed rank: the job ends, no hang ----
t0=$(date +%s)
CNN_DIST_TEST_FAULT=die:1:5 timeout 60 $MPIRUN 2 "$CNN" train "$M1" $COMMON --steps 20 > /dev/null 2> "$TMP/err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "killed rank: exit $rc (124: the job hung)"
grep -qi "signal 9\|killed" "$TMP/err" && ok || bad "killed rank: no message naming the kill: $(tail -3 "$TMP/err")"
# ---- a hanging rank: the other's collective times out with a message ----
CNN_DIST_TEST_FAULT=stall:1:5 timeout 60 $MPIRUN 2 "$CNN" train "$M1" $COMMON --steps 20 --dist-timeout 3 > /dev/null 2> "$TMP/err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "hanging rank: exit $rc (124: the job hung)"
grep -q "rank 0 of 2: allreduce of a gradient bucket timed out after 3 s" "$TMP/err" && ok \
    || bad "hanging rank: no timeout message: $(grep cnn: "$TMP/err" | head -3)"
# ---- drifting weights: the checksum after the epoch names the rank ----
CNN_DIST_TEST_FAULT=perturb:1:3 timeout 60 $MPIRUN 2 "$CNN" train "$M1" $COMMON --steps 6 > /dev/null 2> "$TMP/err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "perturbed rank: exit $rc"
grep -q "after epoch 1: the weights differ between ranks: rank 0 has checksum [0-9a-f]*, 1 rank differs: 1 (" "$TMP/err" && ok \
    || bad "perturbed rank: no checksum message: $(grep cnn: "$TMP/err" | head -3)"

# ---- --resume with another number of ranks (mid-epoch: the position counts global batches) ----
timeout 120 $MPIRUN 2 "$CNN" train "$M1" $COMMON --steps 10 --checkpoint "$TMP/ck.st" > /dev/null 2> "$TMP/err" \
    || bad "2-rank 10 steps with --checkpoint failed: $(tail -5 "$TMP/err")"
"$CNN" train --resume "$TMP/ck.st" --steps 20 --quiet --out "$TMP/r_2.st" > /dev/null 2> "$TMP/err" \
    || bad "resume on 1 process failed: $(cat "$TMP/err")"
same "$TMP/m1_1.st" "$TMP/r_2.st" 1e-5 "10 steps on 2 ranks + resumed to 20 on 1 process vs 20 on 1"
"$CNN" train "$M1" $COMMON --steps 10 --checkpoint "$TMP/ck1.st" > /dev/null 2> "$TMP/err" || bad "1-process 10 steps: $(cat "$TMP/err")"
timeout 120 $MPIRUN 2 "$CNN" train --resume "$TMP/ck1.st" --steps 20 --quiet --out "$TMP/r_3.st" > /dev/null 2> "$TMP/err" \
    || bad "resume on 2 ranks failed: $(tail -5 "$TMP/err")"
same "$TMP/m1_1.st" "$TMP/r_3.st" 1e-5 "10 steps on 1 process + resumed to 20 on 2 ranks vs 20 on 1"
finish
