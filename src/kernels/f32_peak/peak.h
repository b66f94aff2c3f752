/* peak.h — the roof: a register-resident multiply-add loop per ISA (the B3 benchmark of BENCH.md).
 *
 * cnn_f32_peak_fma_<isa>(iters, sink) runs `iters` iterations of a loop whose body is nothing but
 * independent multiply-adds on accumulators that stay in registers (no loads, no stores), and returns the
 * FLOPs it did (a multiply-add counts 2). Each accumulator follows acc = acc * m + a with m = 1 - 2^-20
 * and a small, so the values converge to a finite normal number (no overflow, no denormals: the speed does
 * not depend on the data). The accumulators are summed into *sink at the end so the loop is not dead code.
 *
 * Pure, single-threaded, no allocation, no memory traffic in the loop. Threads: the caller runs one copy
 * per thread (src/core/bench.c, through cnn_pool_for).
 *
 *   avx2    12 ymm accumulators x 2 (the body is unrolled twice: 24 FMAs per iteration, 384 FLOPs),
 *           2 ymm constants: 14 of 16 registers. Zen 3 / Haswell-class cores issue 2 FMAs per cycle with a
 *           latency of 4-5 cycles, so >= 10 independent chains are needed to fill both pipes; 12 do.
 *           The disassembly of the loop is 24 x vfmadd132ps ymm, ymm, ymm + a counter add, compare and
 *           branch (checked with objdump -d, see docs/bench.md).
 *   avx512  the same loop on zmm registers (12 accumulators x 2, 768 FLOPs per iteration): Zen 5 and
 *           Skylake-SP-class cores issue 2 512-bit FMAs per cycle.
 *   scalar  code built for the baseline: 12 accumulators of 4 floats (GCC vector extension: SSE mulps +
 *           addps on x86-64, which has no FMA in its baseline), 96 FLOPs per iteration. This is the roof of
 *           what the portable kernels (auto-vectorised to SSE) can reach, not of one-lane scalar code.
 */
#ifndef CNN_F32_PEAK_H
#define CNN_F32_PEAK_H

#include <stddef.h>

/* FLOPs done by one iteration of each variant's loop. */
#define CNN_F32_PEAK_FLOPS_PER_ITER_AVX512 768.0
#define CNN_F32_PEAK_FLOPS_PER_ITER_AVX2 384.0
#define CNN_F32_PEAK_FLOPS_PER_ITER_SCALAR 96.0

double cnn_f32_peak_fma_scalar(size_t iters, float *sink);
double cnn_f32_peak_fma_avx2(size_t iters, float *sink);
double cnn_f32_peak_fma_avx512(size_t iters, float *sink);

#endif
