/* f32_pool2d/scalar.c — 2x2 stride-2 max pooling, plain C (contract: pool2d_kernels.h). */
#include "pool2d_kernels.h"

#include <math.h>

void cnn_f32_maxpool2x2_fwd_scalar(const float *x, size_t w, size_t ow, size_t rows, int relu, float *y,
                                   int32_t *arg) {
    for (size_t r = 0; r < rows; r++) {
        const float *x0 = x + 2 * r * w, *x1 = x0 + w;
        for (size_t j = 0; j < ow; j++) {
            const float v[4] = {x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]};
            float m = v[0];
            int code = 0;
            for (int t = 1; t < 4; t++)
                if (v[t] > m || v[t] != v[t]) {
                    m = v[t];
                    code = t;
                }
            if (relu) m = (m > 0.0f || m != m) ? m : 0.0f;
            y[r * ow + j] = m;
            if (arg) arg[r * ow + j] = (int32_t)((2 * r + (size_t)(code >> 1)) * w + 2 * j + (size_t)(code & 1));
        }
    }
}

void cnn_f32_maxpool2x2_bwd_scalar(const float *dy, const int32_t *arg, const float *y, size_t w, size_t ow,
                                   size_t rows, int relu, int acc, float *dx) {
    for (size_t r = 0; r < rows; r++) {
        float *d0 = dx + 2 * r * w, *d1 = d0 + w;
        for (size_t j = 0; j < ow; j++) {
            const size_t o = r * ow + j;
            const float g = relu && !(y[o] > 0.0f) ? 0.0f : dy[o];
            const size_t base = 2 * r * w + 2 * j, at = (size_t)arg[o];
            float *p[4] = {d0 + 2 * j, d0 + 2 * j + 1, d1 + 2 * j, d1 + 2 * j + 1};
            const size_t pos[4] = {base, base + 1, base + w, base + w + 1};
            for (int t = 0; t < 4; t++) {
                const float v = at == pos[t] ? g : 0.0f;
                *p[t] = acc ? *p[t] + v : 0.0f + v;
            }
        }
    }
}

/* one output of a 3x3 stride-2 window, the taps inside the plane in row-major order */
static inline float mp3_one(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oy, size_t ox) {
    float m = -INFINITY;
    for (ptrdiff_t i = 0; i < 3; i++) {
        const ptrdiff_t q = 2 * (ptrdiff_t)oy - pt + i;
        if (q < 0 || q >= (ptrdiff_t)h) continue;
        for (ptrdiff_t j = 0; j < 3; j++) {
            const ptrdiff_t c = 2 * (ptrdiff_t)ox - pl + j;
            if (c < 0 || c >= (ptrdiff_t)w) continue;
            const float v = x[(size_t)q * w + (size_t)c];
            if (v > m || v != v) m = v;
        }
    }
    return m;
}

void cnn_f32_maxpool3x3s2_infer_scalar(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oh,
                                       size_t ow, int relu, float *y) {
    for (size_t oy = 0; oy < oh; oy++)
        for (size_t ox = 0; ox < ow; ox++) {
            const float m = mp3_one(x, h, w, pt, pl, oy, ox);
            y[oy * ow + ox] = !relu || m > 0.0f || m != m ? m : 0.0f;
        }
}
