#!/usr/bin/env bash
# tools/ci-valgrind.sh — the fast subset of the test suite under valgrind memcheck (make valgrind; CI).
#
# Builds the tests (RelWithDebInfo, no sanitizers) in $VALGRIND_BUILD (default build-valgrind; not an ASan
# build: valgrind and ASan do not mix) and runs each
# fast test binary, plus a few short runs of the cnn tool, under memcheck: invalid reads and writes, use of
# uninitialised values in a branch or a system call, bad frees and definite leaks all fail the run
# (--error-exitcode). tools/valgrind.supp holds the suppressions (libgomp's thread pool only). OpenMP waits
# passively (under valgrind threads run one at a time, so spinning only burns the time slice) and contexts
# use 2 threads, so the threaded paths run too. Takes a few minutes on 2 cores.
#
# usage: bash tools/ci-valgrind.sh            (from the repository root)
#        VALGRIND_TESTS="test_net test_dense" bash tools/ci-valgrind.sh
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VALGRIND_BUILD:-$ROOT/build-valgrind}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
# the fast tests: each runs in well under a minute under memcheck (the kernel sweeps, the full allocation
# failure sweep, end-to-end training and the ONNX conformance runs are left to make asan)
TESTS=${VALGRIND_TESTS:-"test_net test_net_query test_dense test_loss test_activations test_misc_layers test_join
test_batchnorm test_optim test_safetensors test_idx test_cifar test_threads"}
command -v valgrind >/dev/null || { echo "ci-valgrind: valgrind is not installed (apt-get install valgrind)"; exit 1; }
if [ ! -f "$BUILD/CMakeCache.txt" ]; then # (an existing build folder keeps its settings)
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$JOBS" --target cnn_cli $TESTS >/dev/null || { echo "ci-valgrind: build failed"; exit 1; }

export OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=0
export CNN_SOURCE_DIR=$ROOT CNN_BINARY_DIR=$BUILD CNN_TOOL=$BUILD/cnn
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=no --num-callers=24 --suppressions="$ROOT/tools/valgrind.supp")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-valgrind.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
run() { # run NAME COMMAND...
    local name=$1 t0=$SECONDS
    shift
    if timeout 900 "${VG[@]}" --log-file="$TMP/$name.log" "$@" >"$TMP/$name.out" 2>&1; then
        pass=$((pass + 1))
        echo "ok    $name ($((SECONDS - t0)) s)"
    else
        fail=$((fail + 1))
        echo "FAIL  $name (exit $?, $((SECONDS - t0)) s)"
        grep -E '^==[0-9]+== ' "$TMP/$name.log" | head -n 60
        tail -n 5 "$TMP/$name.out"
    fi
}
for t in $TESTS; do run "$t" "$BUILD/$t"; done
D=$ROOT/tests/data/fmnist-sample
# a small model: train evaluates the 500 test images, which memcheck makes about 50 times slower
cat >"$TMP/small.cnn" <<'MODEL'
input c=1 h=28 w=28
conv2d name=c1 k=4 kh=3 kw=3 stride=2
batchnorm
relu
maxpool2d size=2 stride=2
flatten
dense name=fc out=10
softmax_ce
MODEL
run cli_train "$BUILD/cnn" train "$TMP/small.cnn" --data "$D" --steps 3 --batch 16 --threads 2 --quiet \
    --checkpoint "$TMP/ck" --out "$TMP/w"
run cli_resume "$BUILD/cnn" train --resume "$TMP/ck" --steps 5 --quiet
run cli_eval "$BUILD/cnn" eval "$TMP/ck" --data "$D" --threads 2
run cli_info "$BUILD/cnn" info "$ROOT/models/fmnist-small.cnn"
echo "ci-valgrind: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
