/* f32_conv_wgrad/scalar.c — the reference kernels of the blocked weight gradient (contract: wgrad.h). */
#include "wgrad.h"

#include <math.h>

void cnn_f32_wgrad_pack_dy_scalar(const float *dy, size_t K, size_t P, size_t ld, size_t b0, size_t b1,
                                  float *dyT, float *bsum) {
    for (size_t b = b0; b < b1; b++) {
        float *o = dyT + (b - b0) * P * 16;
        for (size_t l = 0; l < 16; l++) {
            const size_t k = 16 * b + l;
            float s = 0.0f;
            if (k < K)
                for (size_t p = 0; p < P; p++) s += o[p * 16 + l] = dy[k * ld + p];
            else
                for (size_t p = 0; p < P; p++) o[p * 16 + l] = 0.0f;
            if (bsum) bsum[(b - b0) * 16 + l] = s;
        }
    }
}

void cnn_f32_wgrad_sums_scalar(const cnn_wgrad_args *a, double *out, int first) {
    const size_t P = a->oh * a->ow;
    for (size_t b = 0; b < a->kb; b++)
        for (size_t t = 0; t < a->ntap; t++) {
            float acc[16] = {0};
            const float *d = a->dyT + b * P * 16;
            for (size_t oy = 0; oy < a->oh; oy++) {
                const float *xr = a->xp + oy * a->sh * a->ldp + a->off[t];
                for (size_t ox = 0; ox < a->ow; ox++, d += 16) {
                    const float xv = xr[ox * a->sw];
                    for (int l = 0; l < 16; l++) acc[l] = fmaf(d[l], xv, acc[l]);
                }
            }
            double *o = out + (b * a->ntap + t) * 16;
            for (int l = 0; l < 16; l++) o[l] = (first ? 0.0 : o[l]) + (double)acc[l];
        }
}
