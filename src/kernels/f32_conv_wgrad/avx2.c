/* f32_conv_wgrad/avx2.c — the blocked weight gradient's kernels with AVX2 + FMA (compiled with -mavx2 -mfma;
 * call only when the CPU has them). Contract: wgrad.h.
 * pack_dy: 8 x 8 in-register transposes (8 pixels of 8 channels), the pixels past a multiple of 8 one
 *   by one. The AVX-512 table uses it too.
 * sums: per channel block (two ymm of 8 lanes) and group of at most 6 taps, 12 accumulators, two dy
 *   loads and one broadcast of x per tap and pixel; the blocks and tap groups run one after the other
 *   (each sum is still one FMA chain over the pixels in order: the bits of every ISA). */
#include "wgrad.h"
#include "../f32_gemm/transpose8.h"

#include <immintrin.h>

void cnn_f32_wgrad_pack_dy_avx2(const float *dy, size_t K, size_t P, size_t ld, size_t b0, size_t b1,
                                float *dyT, float *bsum) {
    for (size_t b = b0; b < b1; b++) {
        float *o = dyT + (b - b0) * P * 16;
        for (size_t h = 0; h < 2; h++) { /* lanes 8h .. 8h + 7 */
            const size_t k0 = 16 * b + 8 * h;
            __m256 s = _mm256_setzero_ps();
            size_t p = 0;
            for (; p + 8 <= P; p += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = k0 + (size_t)i < K ? _mm256_loadu_ps(dy + (k0 + (size_t)i) * ld + p) : _mm256_setzero_ps();
                gemm_transpose8(r);
                for (int q = 0; q < 8; q++) {
                    _mm256_storeu_ps(o + (p + (size_t)q) * 16 + 8 * h, r[q]);
                    s = _mm256_add_ps(s, r[q]); /* pixel by pixel, as scalar */
                }
            }
            for (; p < P; p++) {
                __m256 v;
                float t[8];
                for (size_t i = 0; i < 8; i++) t[i] = k0 + i < K ? dy[(k0 + i) * ld + p] : 0.0f;
                v = _mm256_loadu_ps(t);
                _mm256_storeu_ps(o + p * 16 + 8 * h, v);
                s = _mm256_add_ps(s, v);
            }
            if (bsum) _mm256_storeu_ps(bsum + (b - b0) * 16 + 8 * h, s);
        }
    }
}

/* acc[t*16 + l] = (first ? 0 : acc) + (double)sum */
static inline __attribute__((always_inline)) void wg_add(double *acc, __m256 s, int first) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(s)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1));
    if (first) {
        _mm256_storeu_pd(acc, lo);
        _mm256_storeu_pd(acc + 4, hi);
    } else {
        _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), lo));
        _mm256_storeu_pd(acc + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 4), hi));
    }
}

static inline __attribute__((always_inline)) void wg_block(const cnn_wgrad_args *a, const float *d0,
                                                           const ptrdiff_t *off, double *out, int first,
                                                           const int NT) {
    __m256 acc[2][6];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const size_t ow = a->ow, sw = a->sw;
    const float *d = d0;
    for (size_t oy = 0; oy < a->oh; oy++) {
        const float *xr = a->xp + oy * a->sh * a->ldp;
        for (size_t ox = 0; ox < ow; ox++, d += 16) {
            const __m256 lo = _mm256_loadu_ps(d), hi = _mm256_loadu_ps(d + 8);
            const float *xb = xr + ox * sw;
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) {
                const __m256 xv = _mm256_broadcast_ss(xb + off[t]);
                acc[0][t] = _mm256_fmadd_ps(lo, xv, acc[0][t]);
                acc[1][t] = _mm256_fmadd_ps(hi, xv, acc[1][t]);
            }
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) {
        wg_add(out + t * 16, acc[0][t], first);
        wg_add(out + t * 16 + 8, acc[1][t], first);
    }
}

void cnn_f32_wgrad_sums_avx2(const cnn_wgrad_args *a, double *out, int first) {
    const size_t P = a->oh * a->ow;
    for (size_t b = 0; b < a->kb; b++)
        for (size_t t0 = 0; t0 < a->ntap; t0 += 6) {
            const size_t nt = a->ntap - t0 < 6 ? a->ntap - t0 : 6;
            const float *d0 = a->dyT + b * P * 16;
            double *o = out + (b * a->ntap + t0) * 16;
            switch (nt) {
            case 1: wg_block(a, d0, a->off + t0, o, first, 1); break;
            case 2: wg_block(a, d0, a->off + t0, o, first, 2); break;
            case 3: wg_block(a, d0, a->off + t0, o, first, 3); break;
            case 4: wg_block(a, d0, a->off + t0, o, first, 4); break;
            case 5: wg_block(a, d0, a->off + t0, o, first, 5); break;
            default: wg_block(a, d0, a->off + t0, o, first, 6); break;
            }
        }
}
