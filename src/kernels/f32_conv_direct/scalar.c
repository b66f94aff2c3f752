/* f32_conv_direct/scalar.c — plane correlation kernels in portable C (contract: conv_direct.h).
 * fwd: per output row, the taps (i, j) in order, each an axpy over the row (the compiler vectorises
 * the contiguous ox loop); the row is started from bias (or y). Every output element therefore sees
 * bias + w00*x + w01*x + ... in the same order as the AVX2 kernel (which fuses each multiply-add; the
 * scalar build rounds twice, so the two ISAs agree to rounding, not bitwise).
 * wgrad: per tap, a dot product over the plane, summed row by row in float (each row's partial sum
 * added to the tap's total). */
#include "conv_direct.h"

void cnn_f32_conv_direct_fwd_scalar(const cnn_plane_geom *g, const float *xp, const float *w, float bias,
                                    int accumulate, float *y) {
    for (size_t oy = 0; oy < g->oh; oy++) {
        float *restrict yr = y + oy * g->ldy;
        if (!accumulate)
            for (size_t ox = 0; ox < g->ow; ox++) yr[ox] = bias;
        for (size_t i = 0; i < g->kh; i++) {
            const float *xr = xp + (oy + i * g->dh) * g->ldx;
            for (size_t j = 0; j < g->kw; j++) {
                const float wij = w[i * g->kw + j];
                const float *restrict xs = xr + j * g->dw;
                for (size_t ox = 0; ox < g->ow; ox++) yr[ox] += wij * xs[ox];
            }
        }
    }
}

void cnn_f32_conv_direct_wgrad_scalar(const cnn_plane_geom *g, const float *xp, const float *dy, int bias,
                                      float *out) {
    for (size_t i = 0; i < g->kh; i++)
        for (size_t j = 0; j < g->kw; j++) {
            float total = 0.0f;
            for (size_t oy = 0; oy < g->oh; oy++) {
                const float *restrict d = dy + oy * g->ldy;
                const float *restrict xs = xp + (oy + i * g->dh) * g->ldx + j * g->dw;
                float s = 0.0f;
                for (size_t ox = 0; ox < g->ow; ox++) s += d[ox] * xs[ox];
                total += s;
            }
            out[i * g->kw + j] = total;
        }
    if (bias) {
        float total = 0.0f;
        for (size_t oy = 0; oy < g->oh; oy++) {
            float s = 0.0f;
            for (size_t ox = 0; ox < g->ow; ox++) s += dy[oy * g->ldy + ox];
            total += s;
        }
        out[g->kh * g->kw] = total;
    }
}
