/* winograd_impl.h — the F(2x2, 3x3) transforms of winograd.h in plain C, included by scalar.c and
 * avx2.c (which the build compiles with -mavx2 -mfma, so the compiler vectorises the same code for that
 * ISA). The includer defines WINO_SUFFIX(name).
 * Costs per tile: input 16 loads + 32 additions + 16 stores per channel; output 16 loads + 24 additions
 * + 4 stores per output channel; both are memory-bound next to the 16 GEMMs (which do 32*cin FLOPs per
 * tile and output channel). Interior tiles take an unchecked path, border tiles a bounds-checked one.
 * Each value is computed by the same expression in either path, so results do not depend on which
 * tiles share a call. */
#include "winograd.h"

#include <stdint.h>

void WINO_SUFFIX(cnn_f32_winograd_f23_weights)(const float *w, size_t kout, size_t cin, int flip_transpose,
                                               float *U) {
    const size_t kc = kout * cin;
    for (size_t k = 0; k < kout; k++)
        for (size_t c = 0; c < cin; c++) {
            float g[3][3];
            if (!flip_transpose) {
                const float *s = w + (k * cin + c) * 9;
                for (int i = 0; i < 9; i++) g[i / 3][i % 3] = s[i];
            } else {
                const float *s = w + (c * kout + k) * 9;
                for (int i = 0; i < 9; i++) g[i / 3][i % 3] = s[8 - i];
            }
            float t[4][3]; /* G g */
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            float *u = U + k * cin + c;
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                u[(size_t)(4 * i + 0) * kc] = t[i][0];
                u[(size_t)(4 * i + 1) * kc] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[(size_t)(4 * i + 2) * kc] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[(size_t)(4 * i + 3) * kc] = t[i][2];
            }
        }
}

/* B^T d B of one 4x4 tile into v[e * stride]. */
static inline void wino_in_tile(const float d[4][4], float *v, size_t stride) {
    float t[4][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    for (int i = 0; i < 4; i++) {
        v[(size_t)(4 * i + 0) * stride] = t[i][0] - t[i][2];
        v[(size_t)(4 * i + 1) * stride] = t[i][1] + t[i][2];
        v[(size_t)(4 * i + 2) * stride] = t[i][2] - t[i][1];
        v[(size_t)(4 * i + 3) * stride] = t[i][1] - t[i][3];
    }
}

void WINO_SUFFIX(cnn_f32_winograd_f23_input)(const float *x, size_t cin, size_t ih, size_t iw, ptrdiff_t pad_top,
                                             ptrdiff_t pad_left, size_t tw, size_t t0, size_t nt, float *V,
                                             size_t ldv) {
    const size_t stride = ldv; /* between the 16 elements e */
    for (size_t c = 0; c < cin; c++) {
        const float *xc = x + c * ih * iw;
        float *vc = V + c * 16 * ldv;
        for (size_t j = 0; j < nt; j++) {
            const size_t t = t0 + j, ty = t / tw, tx = t % tw;
            const ptrdiff_t y0 = (ptrdiff_t)(2 * ty) - pad_top, x0 = (ptrdiff_t)(2 * tx) - pad_left;
            float d[4][4];
            if (y0 >= 0 && x0 >= 0 && y0 + 4 <= (ptrdiff_t)ih && x0 + 4 <= (ptrdiff_t)iw) {
                const float *s = xc + (size_t)y0 * iw + (size_t)x0;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) d[a][b] = s[(size_t)a * iw + (size_t)b];
            } else {
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) {
                        const ptrdiff_t yy = y0 + a, xx = x0 + b;
                        d[a][b] = yy >= 0 && xx >= 0 && yy < (ptrdiff_t)ih && xx < (ptrdiff_t)iw
                                      ? xc[(size_t)yy * iw + (size_t)xx]
                                      : 0.0f;
                    }
            }
            wino_in_tile(d, vc + j, stride);
        }
    }
}

void WINO_SUFFIX(cnn_f32_winograd_f23_output)(const float *M, size_t kout, size_t ldm, size_t oh, size_t ow,
                                              size_t tw, size_t t0, size_t nt, const float *bias, int accumulate,
                                              float *y) {
    const size_t stride = ldm;
    for (size_t k = 0; k < kout; k++) {
        const float *mk = M + k * 16 * ldm;
        float *yk = y + k * oh * ow;
        const float b = bias && !accumulate ? bias[k] : 0.0f;
        for (size_t j = 0; j < nt; j++) {
            const size_t t = t0 + j, ty = t / tw, tx = t % tw;
            float m[16];
            for (int e = 0; e < 16; e++) m[e] = mk[(size_t)e * stride + j];
            float s[2][4]; /* A^T m */
            for (int q = 0; q < 4; q++) {
                s[0][q] = m[q] + m[4 + q] + m[8 + q];
                s[1][q] = m[4 + q] - m[8 + q] - m[12 + q];
            }
            float o[2][2]; /* (A^T m) A */
            for (int r = 0; r < 2; r++) {
                o[r][0] = s[r][0] + s[r][1] + s[r][2];
                o[r][1] = s[r][1] - s[r][2] - s[r][3];
            }
            const size_t oy = 2 * ty, ox = 2 * tx;
            for (int r = 0; r < 2; r++)
                for (int q = 0; q < 2; q++) {
                    if (oy + (size_t)r >= oh || ox + (size_t)q >= ow) continue;
                    float *p = yk + (oy + (size_t)r) * ow + ox + (size_t)q;
                    if (accumulate)
                        *p += o[r][q];
                    else
                        *p = o[r][q] + b;
                }
        }
    }
}
