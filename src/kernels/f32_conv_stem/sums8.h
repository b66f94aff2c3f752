/* sums8.h — the fixed 8-lane reduction order of the stem weight gradient, shared by f32_conv_stem/avx2.c
 * and avx512.c (both compiled with AVX2 enabled) so that the two ISAs sum in one order by construction:
 * lane sums in the tree ((0+1)+(2+3)) + ((4+5)+(6+7)), and the bias sums of dy in 8 column lanes. */
#ifndef CNN_F32_CONV_STEM_SUMS8_H
#define CNN_F32_CONV_STEM_SUMS8_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

static inline __m256i stem_tail_mask(size_t n) { /* first n lanes set, 0 < n < 8 */
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

static inline float stem_hsum8(__m256 v) { /* ((0+1)+(2+3)) + ((4+5)+(6+7)) */
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

/* Lane i of the result = the sum of the 8 lanes of v_i, in stem_hsum8's order (a hadd tree). */
static inline __m256 stem_reduce8(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5, __m256 v6,
                                  __m256 v7) {
    const __m256 a0 = _mm256_hadd_ps(v0, v1), a1 = _mm256_hadd_ps(v2, v3);
    const __m256 a2 = _mm256_hadd_ps(v4, v5), a3 = _mm256_hadd_ps(v6, v7);
    const __m256 b0 = _mm256_hadd_ps(a0, a1), b1 = _mm256_hadd_ps(a2, a3);
    return _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
}

/* bsum[k] += sum of the call's dy rows of channel k (8 column lanes, rows and columns ascending, the tail
 * masked; then stem_hsum8) */
static inline void stem_dy_sums(const float *dy, size_t nrows, size_t ow, size_t ldy_k, size_t kb, double *bsum) {
    const size_t ow8 = ow & ~(size_t)7;
    const __m256i m = ow8 < ow ? stem_tail_mask(ow - ow8) : _mm256_setzero_si256();
    for (size_t k = 0; k < kb; k++) {
        __m256 s0 = _mm256_setzero_ps();
        for (size_t r = 0; r < nrows; r++) {
            const float *d = dy + k * ldy_k + r * ow;
            size_t ox = 0;
            for (; ox < ow8; ox += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(d + ox));
            if (ox < ow) s0 = _mm256_add_ps(s0, _mm256_maskload_ps(d + ox, m));
        }
        bsum[k] += (double)stem_hsum8(s0);
    }
}

#endif
