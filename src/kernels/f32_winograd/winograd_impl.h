/* winograd_impl.h — the F(2x2, 3x3) filter-sized transforms of winograd.h (weights -> U, and the
 * weight gradient's G^T M G) in plain C, included by scalar.c and avx2.c (compiled for each ISA; they run
 * once per pass, K*C filters, about 50 FLOPs each). The includer defines WINO_SUFFIX(name). */
#include "winograd.h"

#include <stdint.h>

void WINO_SUFFIX(cnn_f32_winograd_f23_weights)(const float *w, size_t kout, size_t cin, int flip_transpose,
                                               size_t k0, size_t k1, float *U) {
    const size_t kc = kout * cin;
    for (size_t k = k0; k < k1; k++)
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


void WINO_SUFFIX(cnn_f32_winograd_f23_wgrad)(const float *Macc, size_t kout, size_t cin, size_t ldm, float *dw) {
    const size_t kc = ldm;
    for (size_t k = 0; k < kout; k++)
        for (size_t c = 0; c < cin; c++) {
            float m[4][4], t[3][4];
            for (int e = 0; e < 16; e++) m[e / 4][e % 4] = Macc[(size_t)e * kc + k * cin + c];
            for (int j = 0; j < 4; j++) { /* G^T m */
                t[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
                t[1][j] = 0.5f * (m[1][j] - m[2][j]);
                t[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
            }
            float *o = dw + (k * cin + c) * 9;
            for (int a = 0; a < 3; a++) { /* (G^T m) G */
                o[3 * a + 0] = t[a][0] + 0.5f * (t[a][1] + t[a][2]);
                o[3 * a + 1] = 0.5f * (t[a][1] - t[a][2]);
                o[3 * a + 2] = 0.5f * (t[a][1] + t[a][2]) + t[a][3];
            }
        }
}

#include "f43_weights.inc"
