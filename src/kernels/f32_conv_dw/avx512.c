/* f32_conv_dw/avx512.c — the depthwise 3x3 stride-1 forward and backward-data with AVX-512 (compiled with
 * -mavx512f -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them). Contract: conv_dw.h.
 * Other kernel sizes and strides, and the weight gradient, run the AVX2 kernels.
 *
 * fwd: output tiles of R = 8 rows (then 4, 2, 1) x 16 columns; a tile walks its input rows u = 0 .. R + 1
 *   once (rows outside the plane skipped), per row the 3 tap vectors (shifted loads), each FMA'd into the
 *   accumulators of the output rows that use it: 30 loads + 72 FMAs per 8 x 16 outputs, 8 accumulators
 *   and 9 weights in registers (the AVX2 kernel's 16 ymm spilled some weights). Every load goes through a
 *   k-mask of the lanes inside the row (all ones inside; AVX-512 masked loads neither fault nor cost
 *   more, where the AVX2 edges use vmaskmovps), and the store is masked past ow. Each output sums its taps
 *   in the order i, j ascending from bias (or y), one FMA each, with the out-of-row columns multiplied as
 *   zeros and the out-of-plane rows skipped, as the AVX2 kernel: the results are bit-identical to it.
 *   While a block of rows runs, the input rows the next block adds and its output rows are prefetched,
 *   spread over the block's vectors (as AVX2).
 * bwd (stride 1): fwd on dy with the flipped filter and offsets (2 - pad_top, 2 - pad_left). */
#include "conv_dw.h"
#include "../mask16.h"

#include <immintrin.h>
#include <stdint.h>

/* lanes l with 0 <= c + l < n */
static inline __mmask16 dw_mask16(ptrdiff_t c, ptrdiff_t n) { return cnn_mask16(-c, n - c); }

typedef struct dwa {
    const float *x;
    float *y;
    ptrdiff_t ih, iw, ow, pt, pl;
    float bias;
    int accumulate;
} dwa;

static inline __attribute__((always_inline)) void dw_tile(const dwa *a, const float *w, size_t oy, ptrdiff_t c0,
                                                          const int R) {
    /* broadcast here, not kept in an array: GCC left a __m512 array on the stack (one extra 64-byte load
     * per FMA, 102 loads per 72 FMAs: half the in-cache speed of the AVX2 kernel) */
    __m512 wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(w[t]);
    const __mmask16 m0 = dw_mask16(c0 - a->pl, a->iw), m1 = dw_mask16(c0 + 1 - a->pl, a->iw);
    const __mmask16 m2 = dw_mask16(c0 + 2 - a->pl, a->iw), sm = dw_mask16(c0, a->ow);
    float *yt = a->y + oy * (size_t)a->ow + (size_t)c0;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        acc[r] = a->accumulate ? _mm512_maskz_loadu_ps(sm, yt + (size_t)r * (size_t)a->ow) : _mm512_set1_ps(a->bias);
    const ptrdiff_t b = (ptrdiff_t)oy - a->pt;
#pragma GCC unroll 10
    for (int u = 0; u < R + 2; u++) {
        const ptrdiff_t q = b + u;
        if (q < 0 || q >= a->ih) continue;
        const float *row = a->x + q * a->iw + c0 - a->pl;
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, row), v1 = _mm512_maskz_loadu_ps(m1, row + 1);
        const __m512 v2 = _mm512_maskz_loadu_ps(m2, row + 2);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const int i = u - r;
            if (i >= 0 && i < 3) {
                acc[r] = _mm512_fmadd_ps(wv[3 * i], v0, acc[r]);
                acc[r] = _mm512_fmadd_ps(wv[3 * i + 1], v1, acc[r]);
                acc[r] = _mm512_fmadd_ps(wv[3 * i + 2], v2, acc[r]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(yt + (size_t)r * (size_t)a->ow, sm, acc[r]);
}

static inline __attribute__((always_inline)) void dw_rows(const dwa *a, const float *w, size_t oy, const int R,
                                                          size_t nv) {
    /* the next block's new input rows and its output rows, spread over this block's vectors */
    const ptrdiff_t q1 = (ptrdiff_t)oy + R + 2 - a->pt;
    const char *px = (const char *)(a->x + (q1 > 0 ? q1 : 0) * a->iw);
    const char *py = (const char *)(a->y + (oy + (size_t)R) * (size_t)a->ow);
    const size_t lx = ((size_t)R * (size_t)a->iw * 4 + 63) / 64, ly = ((size_t)R * (size_t)a->ow * 4 + 63) / 64;
    for (size_t v = 0; v < nv; v++) {
        dw_tile(a, w, oy, 16 * (ptrdiff_t)v, R);
        for (size_t l = lx * v / nv; l < lx * (v + 1) / nv; l++) __builtin_prefetch(px + 64 * l, 0, 3);
        for (size_t l = ly * v / nv; l < ly * (v + 1) / nv; l++) __builtin_prefetch(py + 64 * l, 1, 3);
    }
}

static void dw_fwd_3x3_s1(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate, float *y) {
    const dwa a = {.x = x, .y = y, .ih = (ptrdiff_t)g->ih, .iw = (ptrdiff_t)g->iw, .ow = (ptrdiff_t)g->ow,
                   .pt = g->pad_top, .pl = g->pad_left, .bias = bias, .accumulate = accumulate};
    const size_t nv = (g->ow + 15) / 16;
    size_t oy = 0;
    for (; oy + 8 <= g->oh; oy += 8) dw_rows(&a, w, oy, 8, nv);
    for (; oy + 4 <= g->oh; oy += 4) dw_rows(&a, w, oy, 4, nv);
    if (oy + 2 <= g->oh) {
        dw_rows(&a, w, oy, 2, nv);
        oy += 2;
    }
    if (oy < g->oh) dw_rows(&a, w, oy, 1, nv);
}

static int dw_512_ok(const cnn_dw_geom *g) {
    return g->stride == 1 && g->kh == 3 && g->kw == 3 && g->iw < ((size_t)1 << 30) && g->ow < ((size_t)1 << 30);
}

void cnn_f32_conv_dw_fwd_avx512(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                                float *y) {
    if (dw_512_ok(g)) dw_fwd_3x3_s1(g, x, w, bias, accumulate, y);
    else cnn_f32_conv_dw_fwd_avx2(g, x, w, bias, accumulate, y);
}

void cnn_f32_conv_dw_bwd_avx512(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx) {
    if (!dw_512_ok(g)) {
        cnn_f32_conv_dw_bwd_avx2(g, dy, w, accumulate, dx);
        return;
    }
    float wf[9];
    for (int t = 0; t < 9; t++) wf[t] = w[8 - t];
    const cnn_dw_geom f = {.ih = g->oh, .iw = g->ow, .oh = g->ih, .ow = g->iw, .kh = 3, .kw = 3, .stride = 1,
                           .pad_top = 2 - g->pad_top, .pad_left = 2 - g->pad_left};
    dw_fwd_3x3_s1(&f, dy, wf, 0.0f, accumulate, dx);
}
