/* f32_im2col/scalar.c — im2col and col2im for any kernel size, stride, padding and dilation (see
 * im2col.h for the layout).
 *
 * Algorithm: per column-matrix row (ci, i, j) the valid output range is computed once,
 *   oy in [oy_lo, oy_hi) reads input row iy = oy*stride_h + i*dil_h - pad_top inside [0, h),
 *   ox in [ox_lo, ox_hi) reads input column ix = ox*stride_w + j*dil_w - pad_left inside [0, w),
 * so the inner loops have no bounds tests: zero fill, a strided (or, at stride 1, contiguous) copy, zero
 * fill. col2im runs the same loops adding col back into x; rows are visited in a fixed order, so the
 * result is deterministic. Memory traffic: c*kh*kw*oh*ow floats written (im2col) or read (col2im); no
 * FLOPs beyond col2im's additions. Pure, single-threaded, no allocation.
 */
#include "im2col.h"

#include <string.h>

void cnn_f32_im2col_scalar(const cnn_conv_geom *g, const float *x, size_t row_begin, size_t row_end,
                           float *col) {
    const size_t khw = g->kh * g->kw, ohw = g->oh * g->ow, sw = g->stride_w;
    for (size_t r = row_begin; r < row_end; r++) {
        const size_t ci = r / khw, i = (r % khw) / g->kw, j = r % g->kw;
        const ptrdiff_t offy =
            (ptrdiff_t)(i * g->dil_h) - (ptrdiff_t)g->pad_top + (ptrdiff_t)(g->oy0 * g->stride_h);
        const ptrdiff_t offx = (ptrdiff_t)(j * g->dil_w) - (ptrdiff_t)g->pad_left;
        size_t oy_lo, oy_hi, ox_lo, ox_hi;
        cnn_im2col_valid_range(g->oh, g->h, g->stride_h, offy, &oy_lo, &oy_hi);
        cnn_im2col_valid_range(g->ow, g->w, sw, offx, &ox_lo, &ox_hi);
        const float *xc = x + ci * g->h * g->w;
        float *out = col + (r - row_begin) * ohw;
        memset(out, 0, oy_lo * g->ow * sizeof(float));
        for (size_t oy = oy_lo; oy < oy_hi; oy++) {
            float *o = out + oy * g->ow;
            /* ix = ox*sw + offx >= 0 for ox >= ox_lo */
            const float *xr = xc + (size_t)((ptrdiff_t)(oy * g->stride_h) + offy) * g->w;
            memset(o, 0, ox_lo * sizeof(float));
            if (ox_hi > ox_lo) {
                const float *src = xr + (size_t)((ptrdiff_t)(ox_lo * sw) + offx);
                if (sw == 1)
                    memcpy(o + ox_lo, src, (ox_hi - ox_lo) * sizeof(float));
                else
                    for (size_t ox = ox_lo; ox < ox_hi; ox++) o[ox] = src[(ox - ox_lo) * sw];
            }
            memset(o + ox_hi, 0, (g->ow - ox_hi) * sizeof(float));
        }
        memset(out + oy_hi * g->ow, 0, (g->oh - oy_hi) * g->ow * sizeof(float));
    }
}

void cnn_f32_col2im_scalar(const cnn_conv_geom *g, const float *col, float *x) {
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
        float *xc = x + ci * g->h * g->w;
        const float *in = col + r * ohw;
        for (size_t oy = oy_lo; oy < oy_hi; oy++) {
            const float *c = in + oy * g->ow;
            float *dst = xc + (size_t)((ptrdiff_t)(oy * g->stride_h) + offy) * g->w +
                         (size_t)((ptrdiff_t)(ox_lo * sw) + offx);
            if (sw == 1)
                for (size_t ox = ox_lo; ox < ox_hi; ox++) dst[ox - ox_lo] += c[ox];
            else
                for (size_t ox = ox_lo; ox < ox_hi; ox++) dst[(ox - ox_lo) * sw] += c[ox];
        }
    }
}
