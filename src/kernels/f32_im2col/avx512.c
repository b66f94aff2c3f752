/* f32_im2col/avx512.c — col2im (contract: im2col.h) with AVX-512 masked moves (compiled with -mavx512f
 * -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them).
 *
 * The AVX2 col2im's stride-2 rows add into the even lanes of dx with vmaskmovps loads and stores, which
 * are slow on AMD (the masked store is many micro-ops on Zen; col2im was 22% of c5 backward-data on the
 * Zen 4, 2026-12-02). Here a row segment of n columns is added 16 at a time: stride 1 one zmm add with a
 * k-masked tail; stride 2 one zmm of col spread over two zmm of dx (vpermps to lanes 2i) and added under
 * the even-lane k-mask, so the odd lanes are neither read nor written (they belong to the next tap, and
 * at a block's edge to whoever owns them). Larger strides are scalar. Rows are added in the scalar
 * kernel's order and each element once per row: results are identical to cnn_f32_col2im_scalar.
 * im2col stays the AVX2 kernel (plain loads and stores, not limited by masked moves). */
#include "im2col.h"
#include "../mask16.h"

#include <immintrin.h>

static inline __mmask16 lanes16(size_t m) { return cnn_mask16(0, (ptrdiff_t)(m < 16 ? m : 16)); }

/* d[k] += s[k], k < n */
static inline void add_n512(float *d, const float *s, size_t n) {
    size_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(d + k, _mm512_add_ps(_mm512_loadu_ps(d + k), _mm512_loadu_ps(s + k)));
    if (k < n) {
        const __mmask16 m = lanes16(n - k);
        _mm512_mask_storeu_ps(d + k, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + k), _mm512_maskz_loadu_ps(m, s + k)));
    }
}

/* d[2k] += s[k], k < n, touching no other element of d */
static inline void add_n_stride2_512(float *d, const float *s, size_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (size_t k = 0; k < n; k += 16) {
        const size_t m = n - k < 16 ? n - k : 16; /* source elements this step */
        const __m512 v = _mm512_maskz_loadu_ps(lanes16(m), s + k);
        float *o = d + 2 * k;
        /* destination lanes 2i for i < m: the first zmm holds i < 8, the second 8 <= i < 16 */
        const __mmask16 m0 = (__mmask16)(0x5555u & (m >= 8 ? 0xFFFFu : (1u << (2 * m)) - 1));
        _mm512_mask_storeu_ps(o, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), _mm512_permutexvar_ps(lo, v)));
        if (m > 8) {
            const __mmask16 m1 = (__mmask16)(0x5555u & (m >= 16 ? 0xFFFFu : (1u << (2 * (m - 8))) - 1));
            _mm512_mask_storeu_ps(o + 16, m1,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), _mm512_permutexvar_ps(hi, v)));
        }
    }
}

void cnn_f32_col2im_avx512(const cnn_conv_geom *g, const float *col, float *x) {
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
            if (sw == 1) add_n512(dst, c, n);
            else if (sw == 2) add_n_stride2_512(dst, c, n);
            else
                for (size_t k = 0; k < n; k++) dst[k * sw] += c[k];
        }
    }
}
