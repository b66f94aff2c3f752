#!/usr/bin/env bash
# The library must not depend on large thread stacks: SGEMM packing buffers live in the context's heap
# workspace. Train M1 a few steps and run the Winograd/im2col convolution rows and ResNet-18 inference with
# 64 KiB OpenMP worker stacks (a crash here was a stack overflow in the SGEMM kernel's frame).
# Skipped under sanitizers, whose instrumented frames are far larger.
set -u
CNN=${1:?usage: cli_stack.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
if [ -n "${CNN_SANITIZED:-}" ]; then echo "skipped under sanitizers"; exit 0; fi
fail=0
run() {
  local name=$1; shift
  OMP_STACKSIZE=64K "$@" >/dev/null 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL: $name (exit $rc)"; fail=1; else echo "ok: $name"; fi
}
run "train M1 on 64K stacks" "$CNN" train "$SRC/models/fmnist-small.cnn" --data "$SRC/tests/data/fmnist-sample" --steps 4 --batch 32 --threads 2
run "conv c1..c7 on 64K stacks" "$CNN" bench conv --shape all --reps 1 --peak 100 --threads 2
run "resnet18 inference on 64K stacks" "$CNN" bench infer "$SRC/models/resnet18.cnn" --batch 1 --reps 1 --threads 2
exit $fail
