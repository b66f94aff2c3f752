/* f32_conv_stem/scalar.c — portable stem kernels (contract: conv_stem.h). fwd accumulates each output row
 * in y itself, tap by tap (bias first, then the taps ascending: mul + add, no FMA on the baseline ISA);
 * wgrad keeps one float sum per (k, tap) over the call, r and ox ascending. */
#include "conv_stem.h"

void cnn_f32_conv_stem_fwd_scalar(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                  size_t kb, const float *bias, float *y, size_t ldy_k) {
    const size_t ow = g->ow, taps = g->c * g->kh * g->kw;
    for (size_t k = 0; k < kb; k++)
        for (size_t r = 0; r < nrows; r++) {
            float *yr = y + k * ldy_k + r * ow;
            const float b = bias ? bias[k] : 0.0f;
            for (size_t ox = 0; ox < ow; ox++) yr[ox] = b;
            const float *xr = xp + r * g->sh * g->ldp;
            size_t tap = 0;
            for (size_t ci = 0; ci < g->c; ci++)
                for (size_t i = 0; i < g->kh; i++)
                    for (size_t j = 0; j < g->kw; j++, tap++) {
                        const float w = wp[(k / CNN_STEM_KB * taps + tap) * CNN_STEM_KB + k % CNN_STEM_KB];
                        const float *xs = xr + cnn_stem_plane_offset(g, ci, i, j);
                        for (size_t ox = 0; ox < ow; ox++) yr[ox] += w * xs[ox];
                    }
        }
}

void cnn_f32_conv_stem_wgrad_scalar(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                    size_t ldy_k, size_t kb, double *acc, double *bsum) {
    const size_t ow = g->ow, taps = g->c * g->kh * g->kw;
    for (size_t k = 0; k < kb; k++) {
        if (bsum) {
            float s = 0.0f;
            for (size_t r = 0; r < nrows; r++)
                for (size_t ox = 0; ox < ow; ox++) s += dy[k * ldy_k + r * ow + ox];
            bsum[k] += (double)s;
        }
        size_t tap = 0;
        for (size_t ci = 0; ci < g->c; ci++)
            for (size_t i = 0; i < g->kh; i++)
                for (size_t j = 0; j < g->kw; j++, tap++) {
                    const size_t off = cnn_stem_plane_offset(g, ci, i, j);
                    float s = 0.0f;
                    for (size_t r = 0; r < nrows; r++) {
                        const float *d = dy + k * ldy_k + r * ow, *xs = xp + r * g->sh * g->ldp + off;
                        for (size_t ox = 0; ox < ow; ox++) s += d[ox] * xs[ox];
                    }
                    acc[k * taps + tap] += (double)s;
                }
    }
}
