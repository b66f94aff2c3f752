/* f32_conv_wgrad/avx512.c — the blocked weight gradient's sums with AVX-512 (compiled with -mavx512f
 * -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them). Contract: wgrad.h.
 * One zmm per channel block: kb x ntap <= 27 accumulators, kb dy loads and ntap broadcasts of x per pixel
 * (4 x 6: 10 loads per 24 FMAs, 3 x 9: 12 per 27, so the FMA ports bound it). Each sum is one FMA chain over the pixels in
 * order, as in scalar and AVX2: the same bits. Packing dy runs the AVX2 kernel. */
#include "wgrad.h"

#include <immintrin.h>

/* acc[l] = (first ? 0 : acc[l]) + (double)s[l], l < 16 */
static inline __attribute__((always_inline)) void wg_add(double *acc, __m512 s, int first) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(s));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    if (first) {
        _mm512_storeu_pd(acc, lo);
        _mm512_storeu_pd(acc + 8, hi);
    } else {
        _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), lo));
        _mm512_storeu_pd(acc + 8, _mm512_add_pd(_mm512_loadu_pd(acc + 8), hi));
    }
}

/* One function per (kb, ntap), its accumulator array sized exactly: with the largest size and unused
 * entries GCC kept the array on the stack (a load and a store per FMA). */
#define WG_FN(KB, NT)                                                                                      \
    static void wg_##KB##_##NT(const cnn_wgrad_args *a, double *out, int first) {                          \
        __m512 acc[KB][NT];                                                                                \
        ptrdiff_t off[NT];                                                                                 \
        _Pragma("GCC unroll 9") for (int t = 0; t < NT; t++) off[t] = a->off[t];                          \
        _Pragma("GCC unroll 4") for (int b = 0; b < KB; b++)                                              \
            _Pragma("GCC unroll 9") for (int t = 0; t < NT; t++) acc[b][t] = _mm512_setzero_ps();         \
        const size_t ow = a->ow, sw = a->sw, bs = a->oh * a->ow * 16;                                     \
        const float *d = a->dyT;                                                                           \
        for (size_t oy = 0; oy < a->oh; oy++) {                                                            \
            const float *xb = a->xp + oy * a->sh * a->ldp;                                                 \
            for (size_t ox = 0; ox < ow; ox++, d += 16, xb += sw) {                                        \
                __m512 dv[KB];                                                                             \
                _Pragma("GCC unroll 4") for (int b = 0; b < KB; b++) dv[b] = _mm512_loadu_ps(d + (size_t)b * bs); \
                _Pragma("GCC unroll 9") for (int t = 0; t < NT; t++) {                                    \
                    const __m512 xv = _mm512_set1_ps(xb[off[t]]);                                          \
                    _Pragma("GCC unroll 4") for (int b = 0; b < KB; b++)                                  \
                        acc[b][t] = _mm512_fmadd_ps(dv[b], xv, acc[b][t]);                                 \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        _Pragma("GCC unroll 4") for (int b = 0; b < KB; b++)                                              \
            _Pragma("GCC unroll 9") for (int t = 0; t < NT; t++)                                          \
                wg_add(out + (b * NT + t) * 16, acc[b][t], first);                                         \
    }
#define WG_FNS6(KB) WG_FN(KB, 1) WG_FN(KB, 2) WG_FN(KB, 3) WG_FN(KB, 4) WG_FN(KB, 5) WG_FN(KB, 6)
#define WG_FNS9(KB) WG_FNS6(KB) WG_FN(KB, 7) WG_FN(KB, 8) WG_FN(KB, 9)
WG_FNS9(1)
WG_FNS9(2)
WG_FNS9(3)
WG_FNS6(4)

#define WG_CASE(kb, nt)                                                                                    \
    case (kb) * 16 + (nt): wg_##kb##_##nt(a, out, first); break;
#define WG_ROW6(kb) WG_CASE(kb, 1) WG_CASE(kb, 2) WG_CASE(kb, 3) WG_CASE(kb, 4) WG_CASE(kb, 5) WG_CASE(kb, 6)
#define WG_ROW(kb) WG_ROW6(kb) WG_CASE(kb, 7) WG_CASE(kb, 8) WG_CASE(kb, 9)

void cnn_f32_wgrad_sums_avx512(const cnn_wgrad_args *a, double *out, int first) {
    switch (a->kb * 16 + a->ntap) {
        WG_ROW(1)
        WG_ROW(2)
        WG_ROW(3)
        WG_ROW6(4)
    default: break; /* kb, ntap out of range: the driver never asks */
    }
}
