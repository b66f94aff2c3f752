/* f32_im2col/avx2.c — im2col and col2im (contract: im2col.h) with AVX2 (compiled with -mavx2 -mfma; call
 * only when the CPU has both). Same loops as scalar.c (per column-matrix row the valid output ranges
 * are computed once; zero fill, copy, zero fill), but the short row segments (ow floats, often 7..56)
 * are moved with 8-wide unaligned loads and stores instead of memcpy/memset calls: segments of n >= 8
 * floats in 8-float steps plus one final, overlapping 8-float step ending at n; shorter ones element by
 * element. stride_w == 2 rows de-interleave pairs of loads (copy_n_stride2) in im2col and interleave with
 * masked loads and stores of the even lanes in col2im (add_n_stride2); larger strides are scalar.
 * Reads only inside x / col, writes only inside col / x. col2im adds the rows in the same order as
 * scalar.c and each element once per row, so its results are identical to the scalar kernel's. */
#include "im2col.h"

#include <immintrin.h>
#include <string.h>

static inline void copy_n(float *restrict d, const float *restrict s, size_t n) {
    if (n < 8) {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
        return;
    }
    size_t i = 0;
    for (; i + 8 < n; i += 8) _mm256_storeu_ps(d + i, _mm256_loadu_ps(s + i));
    _mm256_storeu_ps(d + n - 8, _mm256_loadu_ps(s + n - 8));
}

/* d[i] = s[2*i], i < n: even elements of pairs of loads; for n >= 9 every load stays inside
 * s[0 .. 2n-2] (the main steps read s[2i .. 2i+15] with i + 8 < n; the last, overlapping step takes the
 * odd elements of s[2n-17 .. 2n-2]). */
static inline __m256 even8(__m256 a, __m256 b) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}
static inline __m256 odd8(__m256 a, __m256 b) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
static inline void copy_n_stride2(float *restrict d, const float *restrict s, size_t n) {
    if (n < 9) {
        for (size_t i = 0; i < n; i++) d[i] = s[2 * i];
        return;
    }
    size_t i = 0;
    for (; i + 8 < n; i += 8)
        _mm256_storeu_ps(d + i, even8(_mm256_loadu_ps(s + 2 * i), _mm256_loadu_ps(s + 2 * i + 8)));
    const float *t = s + 2 * (n - 8) - 1;
    _mm256_storeu_ps(d + n - 8, odd8(_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8)));
}

static inline void zero_n(float *d, size_t n) {
    if (n < 8) {
        for (size_t i = 0; i < n; i++) d[i] = 0.0f;
        return;
    }
    const __m256 z = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 < n; i += 8) _mm256_storeu_ps(d + i, z);
    _mm256_storeu_ps(d + n - 8, z);
}

void cnn_f32_im2col_avx2(const cnn_conv_geom *g, const float *x, size_t row_begin, size_t row_end, float *col) {
    const size_t khw = g->kh * g->kw, ohw = g->oh * g->ow, sw = g->stride_w, ow = g->ow;
    for (size_t r = row_begin; r < row_end; r++) {
        const size_t ci = r / khw, i = (r % khw) / g->kw, j = r % g->kw;
        const ptrdiff_t offy =
            (ptrdiff_t)(i * g->dil_h) - (ptrdiff_t)g->pad_top + (ptrdiff_t)(g->oy0 * g->stride_h);
        const ptrdiff_t offx = (ptrdiff_t)(j * g->dil_w) - (ptrdiff_t)g->pad_left;
        size_t oy_lo, oy_hi, ox_lo, ox_hi;
        cnn_im2col_valid_range(g->oh, g->h, g->stride_h, offy, &oy_lo, &oy_hi);
        cnn_im2col_valid_range(ow, g->w, sw, offx, &ox_lo, &ox_hi);
        const float *xc = x + ci * g->h * g->w;
        float *out = col + (r - row_begin) * ohw;
        zero_n(out, oy_lo * ow);
        for (size_t oy = oy_lo; oy < oy_hi; oy++) {
            float *o = out + oy * ow;
            const float *xr = xc + (size_t)((ptrdiff_t)(oy * g->stride_h) + offy) * g->w;
            for (size_t ox = 0; ox < ox_lo; ox++) o[ox] = 0.0f;
            if (ox_hi > ox_lo) {
                const float *src = xr + (size_t)((ptrdiff_t)(ox_lo * sw) + offx);
                if (sw == 1)
                    copy_n(o + ox_lo, src, ox_hi - ox_lo);
                else if (sw == 2)
                    copy_n_stride2(o + ox_lo, src, ox_hi - ox_lo);
                else
                    for (size_t ox = ox_lo; ox < ox_hi; ox++) o[ox] = src[(ox - ox_lo) * sw];
            }
            for (size_t ox = ox_hi > ox_lo ? ox_hi : ox_lo; ox < ow; ox++) o[ox] = 0.0f;
        }
        zero_n(out + oy_hi * ow, (g->oh - oy_hi) * ow);
    }
}

/* d[2i] += s[i], i < n, touching no other element of d (masked loads and stores of the even lanes, so
 * the odd ones, which may belong to another thread, are neither read nor written); one add per element,
 * as the scalar loop. */
static inline void add_n_stride2(float *d, const float *s, size_t n) {
    const __m256i even = _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 z = _mm256_setzero_ps();
    size_t k = 0;
    /* Steps before the last: d[2k .. 2k+15] lie inside the row segment (2k+15 < 2(n-1)), so they are
     * loaded whole, the even lanes added and the odd lanes blended back from the load (their bits
     * unchanged; the rows of one col2im call are added in order by the one thread that owns the plane):
     * vmaskmovps stores are slow on AMD (CNN_ISA=avx2 on the Zen 4, c5 backward-data on one thread, 5
     * alternating runs, 2026-12-02: 56-68 -> 60-73 GFLOP/s). The last step keeps the masked moves. */
    for (; k + 8 < n; k += 8) {
        const __m256 v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_loadu_ps(s + k)), 0xD8));
        float *o = d + 2 * k;
        const __m256 d0 = _mm256_loadu_ps(o), d1 = _mm256_loadu_ps(o + 8);
        _mm256_storeu_ps(o, _mm256_blend_ps(d0, _mm256_add_ps(d0, _mm256_unpacklo_ps(v, z)), 0x55));
        _mm256_storeu_ps(o + 8, _mm256_blend_ps(d1, _mm256_add_ps(d1, _mm256_unpackhi_ps(v, z)), 0x55));
    }
    for (; k < n; k += 8) {
        const size_t m = n - k < 8 ? n - k : 8;
        const __m256i sm = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), lane);                /* s lanes < m */
        const __m256i m0 = _mm256_and_si256(even, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(2 * m)), lane));
        const __m256i m1 = _mm256_and_si256(even, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(2 * m) - 8), lane));
        /* v = s0 s1 s4 s5 | s2 s3 s6 s7; lo = s0 0 s1 0 s2 0 s3 0, hi = s4 0 s5 0 s6 0 s7 0 */
        const __m256 v = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_maskload_ps(s + k, sm)), 0xD8));
        float *o = d + 2 * k;
        _mm256_maskstore_ps(o, m0, _mm256_add_ps(_mm256_maskload_ps(o, m0), _mm256_unpacklo_ps(v, z)));
        if (m > 4)
            _mm256_maskstore_ps(o + 8, m1, _mm256_add_ps(_mm256_maskload_ps(o + 8, m1), _mm256_unpackhi_ps(v, z)));
    }
}

void cnn_f32_col2im_avx2(const cnn_conv_geom *g, const float *col, float *x) {
    const size_t khw = g->kh * g->kw, ohw = g->oh * g->ow, sw = g->stride_w;
    const size_t rows = g->c * khw;
    for (size_t r = 0; r < rows; r++) {
        const size_t ci = r / khw, i = (r % khw) / g->kw, j = r % g->kw;
        const ptrdiff_t offy =
            (ptrdiff_t)(i * g->dil_h) - (ptrdiff_t)g->pad_top + (ptrdiff_t)(g->oy0 * g->stride_h);
        const ptrdiff_t offx = (ptrdiff_t)(j * g->dil_w) - (ptrdiff_t)g->pad_left;
        size_t oy_lo, oy_hi, ox_lo, ox_hi;
        cnn_im2col_valid_range(g->oh, g->h, g->stride_h, offy, &oy_lo, &oy_hi);
        cnn_im2col_valid_range(g->ow, g->w, sw, offx, &ox_lo, &ox_hi);
        if (ox_hi <= ox_lo) continue;
        const size_t n = ox_hi - ox_lo;
        float *xc = x + ci * g->h * g->w;
        const float *in = col + r * ohw;
        for (size_t oy = oy_lo; oy < oy_hi; oy++) {
            const float *c = in + oy * g->ow + ox_lo;
            float *dst = xc + (size_t)((ptrdiff_t)(oy * g->stride_h) + offy) * g->w +
                         (size_t)((ptrdiff_t)(ox_lo * sw) + offx);
            if (sw == 1) {
                size_t k = 0;
                for (; k + 8 <= n; k += 8)
                    _mm256_storeu_ps(dst + k, _mm256_add_ps(_mm256_loadu_ps(dst + k), _mm256_loadu_ps(c + k)));
                for (; k < n; k++) dst[k] += c[k];
            } else if (sw == 2) {
                add_n_stride2(dst, c, n);
            } else {
                for (size_t k = 0; k < n; k++) dst[k * sw] += c[k];
            }
        }
    }
}
