/* f32_peak/scalar.c — cnn_f32_peak_fma_scalar: the roof of portable code built for the baseline
 * (x86-64: SSE2, no FMA). Contract: peak.h.
 * 12 accumulators of 4 floats (GCC/Clang vector extension, which becomes SSE mulps + addps on the
 * baseline and plain float code elsewhere) + 2 constants: 14 of 16 xmm registers. Per iteration 12
 * multiplies and 12 adds of 4 lanes: 96 FLOPs. */
#include "peak.h"

typedef float peak_v4 __attribute__((vector_size(16)));

double cnn_f32_peak_fma_scalar(size_t iters, float *sink) {
    const peak_v4 m = {1.0f - 0x1p-20f, 1.0f - 0x1p-20f, 1.0f - 0x1p-20f, 1.0f - 0x1p-20f};
    const peak_v4 a = {0x1p-24f, 0x1p-24f, 0x1p-24f, 0x1p-24f};
    /* Distinct starting values, so the compiler cannot merge identical chains. */
    peak_v4 c0 = {1.0f, 1.0f, 1.0f, 1.0f}, c1 = c0 + 0.5f, c2 = c1 + 0.5f, c3 = c2 + 0.5f;
    peak_v4 c4 = c3 + 0.5f, c5 = c4 + 0.5f, c6 = c5 + 0.5f, c7 = c6 + 0.5f;
    peak_v4 c8 = c7 + 0.5f, c9 = c8 + 0.5f, c10 = c9 + 0.5f, c11 = c10 + 0.5f;
    for (size_t i = 0; i < iters; i++) {
        c0 = c0 * m + a;
        c1 = c1 * m + a;
        c2 = c2 * m + a;
        c3 = c3 * m + a;
        c4 = c4 * m + a;
        c5 = c5 * m + a;
        c6 = c6 * m + a;
        c7 = c7 * m + a;
        c8 = c8 * m + a;
        c9 = c9 * m + a;
        c10 = c10 * m + a;
        c11 = c11 * m + a;
    }
    peak_v4 s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11));
    *sink = s[0] + s[1] + s[2] + s[3];
    return (double)iters * CNN_F32_PEAK_FLOPS_PER_ITER_SCALAR;
}
