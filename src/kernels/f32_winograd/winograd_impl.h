/* winograd_impl.h — the F(2x2, 3x3) weight transform of winograd.h in plain C, included by scalar.c and
 * avx2.c (compiled for each ISA; it runs once per pass, K*C filters, about 50 FLOPs each). The includer
 * defines WINO_SUFFIX(name). */
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

