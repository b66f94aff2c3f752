/* f32_peak/avx512.c — cnn_f32_peak_fma_avx512: the AVX-512 roof loop (compiled with -mavx512f ...; call only
 * when the CPU has AVX-512F). Contract, register budget and FLOP count: peak.h. */
#include "peak.h"

#include <immintrin.h>

double cnn_f32_peak_fma_avx512(size_t iters, float *sink) {
    const __m512 m = _mm512_set1_ps(1.0f - 0x1p-20f);
    const __m512 a = _mm512_set1_ps(0x1p-24f);
    /* Distinct starting values, so the compiler cannot merge identical chains. */
    __m512 c0 = _mm512_set1_ps(1.0f), c1 = _mm512_set1_ps(1.5f), c2 = _mm512_set1_ps(2.0f);
    __m512 c3 = _mm512_set1_ps(2.5f), c4 = _mm512_set1_ps(3.0f), c5 = _mm512_set1_ps(3.5f);
    __m512 c6 = _mm512_set1_ps(4.0f), c7 = _mm512_set1_ps(4.5f), c8 = _mm512_set1_ps(5.0f);
    __m512 c9 = _mm512_set1_ps(5.5f), c10 = _mm512_set1_ps(6.0f), c11 = _mm512_set1_ps(6.5f);
    for (size_t i = 0; i < iters; i++) {
#define PEAK_STEP                                                                                          \
    c0 = _mm512_fmadd_ps(c0, m, a);                                                                        \
    c1 = _mm512_fmadd_ps(c1, m, a);                                                                        \
    c2 = _mm512_fmadd_ps(c2, m, a);                                                                        \
    c3 = _mm512_fmadd_ps(c3, m, a);                                                                        \
    c4 = _mm512_fmadd_ps(c4, m, a);                                                                        \
    c5 = _mm512_fmadd_ps(c5, m, a);                                                                        \
    c6 = _mm512_fmadd_ps(c6, m, a);                                                                        \
    c7 = _mm512_fmadd_ps(c7, m, a);                                                                        \
    c8 = _mm512_fmadd_ps(c8, m, a);                                                                        \
    c9 = _mm512_fmadd_ps(c9, m, a);                                                                        \
    c10 = _mm512_fmadd_ps(c10, m, a);                                                                      \
    c11 = _mm512_fmadd_ps(c11, m, a);
        PEAK_STEP
        PEAK_STEP
#undef PEAK_STEP
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    float v[16];
    _mm512_storeu_ps(v, s);
    float t = 0;
    for (int i = 0; i < 16; i++) t += v[i];
    *sink = t;
    return (double)iters * CNN_F32_PEAK_FLOPS_PER_ITER_AVX512;
}
