#!/usr/bin/env bash
# ci-fuzz.sh — CI's fuzz step (issue 4, docs/fuzz.md): build the four libFuzzer targets (safetensors, onnx,
# model_text, idx) with clang, ASan + UBSan, in a build folder of their own, and run each for 30 s from its
# seed corpus (fuzz/corpus/<target>/, read only) with `make fuzz-run`. Exits non-zero on any finding (a
# crash, a sanitizer report, a leak, a timeout, running out of memory): `make fuzz-run` stops at the first
# and prints the tail of its log; the input is kept under <build>/findings/<target>/.
#
# usage: bash tools/ci-fuzz.sh [SECONDS]      (default 30; FUZZ_BUILD=folder, default build-fuzz-ci;
#                                              FUZZ_TARGETS="onnx idx" for a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
build=${FUZZ_BUILD:-build-fuzz-ci}
targets=${FUZZ_TARGETS:-safetensors onnx model_text idx}
case $secs in '' | *[!0-9]*) echo "ci-fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac

# clang, its sanitizer and fuzzer runtimes and OpenMP for clang come with the CI package list.
bash tools/install-deps.sh --ci
rm -rf "$build/findings" # only this run's findings count
status=0
make --no-print-directory fuzz-run SECONDS="$secs" FUZZ_BUILD="$build" FUZZ_TARGETS="$targets" || status=$?
# A finding is also any artifact left behind (a target that wrote one and still exited 0).
found=$(find "$build/findings" -type f 2>/dev/null | sort || true)
if [ -n "$found" ]; then
    echo "ci-fuzz: findings:" >&2
    sed 's/^/  /' <<<"$found" >&2
    [ "$status" -ne 0 ] || status=1
fi
if [ "$status" -ne 0 ]; then
    echo "ci-fuzz: FAILED (replay: $build/fuzz_<target> <finding>; docs/fuzz.md)" >&2
    exit "$status"
fi
echo "ci-fuzz: $targets: ${secs} s each, no finding"
