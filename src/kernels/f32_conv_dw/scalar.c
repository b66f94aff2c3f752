/* f32_conv_dw/scalar.c — portable depthwise kernels (contract: conv_dw.h): plain loops over the valid
 * taps of each output (mul + add, no FMA on the baseline ISA). */
#include "conv_dw.h"

/* Taps t < k with 0 <= o*s + t - p < n: [*t0, *t1) (empty when t0 >= t1). */
static void tap_range(size_t o, size_t s, ptrdiff_t p, size_t k, size_t n, size_t *t0, size_t *t1) {
    const ptrdiff_t base = (ptrdiff_t)(o * s) - p; /* input index of tap 0 */
    ptrdiff_t a = base < 0 ? -base : 0, b = (ptrdiff_t)n - base;
    if (b > (ptrdiff_t)k) b = (ptrdiff_t)k;
    if (b < a) b = a;
    *t0 = (size_t)a;
    *t1 = (size_t)b;
}

void cnn_f32_conv_dw_fwd_scalar(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                                float *y) {
    const size_t s = g->stride, kw = g->kw;
    for (size_t oy = 0; oy < g->oh; oy++) {
        size_t i0, i1;
        tap_range(oy, s, g->pad_top, g->kh, g->ih, &i0, &i1);
        float *yr = y + oy * g->ow;
        for (size_t ox = 0; ox < g->ow; ox++) {
            size_t j0, j1;
            tap_range(ox, s, g->pad_left, kw, g->iw, &j0, &j1);
            float acc = accumulate ? yr[ox] : bias;
            for (size_t i = i0; i < i1; i++) {
                /* index of tap (i, 0), modulo 2^N (may be "negative"); tap (i, j >= j0) is inside */
                const size_t xb = (oy * s + i - (size_t)g->pad_top) * g->iw + ox * s - (size_t)g->pad_left;
                for (size_t j = j0; j < j1; j++) acc += w[i * kw + j] * x[xb + j];
            }
            yr[ox] = acc;
        }
    }
}

/* Stride 1: fwd on dy with the flipped filter and offsets (kh-1-pad_top, kw-1-pad_left). */
static void bwd_flip(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx,
                     cnn_conv_dw_fwd_fn fwd) {
    float wf[CNN_DW_MAX_K * CNN_DW_MAX_K];
    const size_t taps = g->kh * g->kw;
    for (size_t t = 0; t < taps; t++) wf[t] = w[taps - 1 - t];
    const cnn_dw_geom f = {.ih = g->oh, .iw = g->ow, .oh = g->ih, .ow = g->iw, .kh = g->kh, .kw = g->kw,
                           .stride = 1, .pad_top = (ptrdiff_t)g->kh - 1 - g->pad_top,
                           .pad_left = (ptrdiff_t)g->kw - 1 - g->pad_left};
    fwd(&f, dy, wf, 0.0f, accumulate, dx);
}

void cnn_f32_conv_dw_bwd_scalar(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx) {
    if (g->stride == 1) {
        bwd_flip(g, dy, w, accumulate, dx, cnn_f32_conv_dw_fwd_scalar);
        return;
    }
    const ptrdiff_t s = (ptrdiff_t)g->stride;
    for (size_t iy = 0; iy < g->ih; iy++) {
        float *dr = dx + iy * g->iw;
        for (size_t ix = 0; ix < g->iw; ix++) {
            float acc = 0.0f;
            for (size_t i = 0; i < g->kh; i++) {
                const ptrdiff_t ny = (ptrdiff_t)iy + g->pad_top - (ptrdiff_t)i; /* oy * s */
                if (ny < 0 || ny % s || ny / s >= (ptrdiff_t)g->oh) continue;
                const float *dyr = dy + (size_t)(ny / s) * g->ow;
                for (size_t j = 0; j < g->kw; j++) {
                    const ptrdiff_t nx = (ptrdiff_t)ix + g->pad_left - (ptrdiff_t)j;
                    if (nx < 0 || nx % s || nx / s >= (ptrdiff_t)g->ow) continue;
                    acc += w[i * g->kw + j] * dyr[nx / s];
                }
            }
            dr[ix] = accumulate ? dr[ix] + acc : acc;
        }
    }
}

void cnn_f32_conv_dw_wgrad_scalar(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out) {
    const size_t s = g->stride, kw = g->kw, taps = g->kh * kw;
    double acc[CNN_DW_MAX_K * CNN_DW_MAX_K + 1] = {0};
    for (size_t oy = 0; oy < g->oh; oy++) {
        size_t i0, i1;
        tap_range(oy, s, g->pad_top, g->kh, g->ih, &i0, &i1);
        const float *dr = dy + oy * g->ow;
        for (size_t ox = 0; ox < g->ow; ox++) {
            size_t j0, j1;
            tap_range(ox, s, g->pad_left, kw, g->iw, &j0, &j1);
            const double d = dr[ox];
            if (bias) acc[taps] += d;
            for (size_t i = i0; i < i1; i++) {
                const size_t xb = (oy * s + i - (size_t)g->pad_top) * g->iw + ox * s - (size_t)g->pad_left;
                for (size_t j = j0; j < j1; j++) acc[i * kw + j] += d * x[xb + j];
            }
        }
    }
    for (size_t t = 0; t < taps; t++) out[t] = (float)acc[t];
    if (bias) out[taps] = (float)acc[taps];
}
