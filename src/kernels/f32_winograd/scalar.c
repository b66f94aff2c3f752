/* f32_winograd/scalar.c — the F(2x2, 3x3) transforms (winograd.h) in plain C, one tile at a time: input
 * 16 loads + 32 additions + 16 stores per tile and channel, output 16 loads + 24 additions + 4 stores
 * per tile and output channel. The weight transform is winograd_impl.h. */
#define WINO_SUFFIX(name) name##_scalar
#include "winograd_impl.h"

void cnn_f32_winograd_f23_input_scalar(const float *xp, size_t cin, size_t plane_stride, size_t ldp, size_t tw,
                                       size_t nty, float *V, size_t ldv) {
    for (size_t c = 0; c < cin; c++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx++) {
                const float *s = xp + c * plane_stride + 2 * ty * ldp + 2 * tx;
                float d[4][4], t[4][4];
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) d[a][b] = s[(size_t)a * ldp + (size_t)b];
                for (int b = 0; b < 4; b++) {
                    t[0][b] = d[0][b] - d[2][b];
                    t[1][b] = d[1][b] + d[2][b];
                    t[2][b] = d[2][b] - d[1][b];
                    t[3][b] = d[1][b] - d[3][b];
                }
                float *v = V + c * 16 * ldv + ty * tw + tx;
                for (int i = 0; i < 4; i++) {
                    v[(size_t)(4 * i + 0) * ldv] = t[i][0] - t[i][2];
                    v[(size_t)(4 * i + 1) * ldv] = t[i][1] + t[i][2];
                    v[(size_t)(4 * i + 2) * ldv] = t[i][2] - t[i][1];
                    v[(size_t)(4 * i + 3) * ldv] = t[i][1] - t[i][3];
                }
            }
}

void cnn_f32_winograd_f23_output_scalar(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, float *Y,
                                        size_t plane_stride, size_t ldo) {
    for (size_t k = 0; k < kout; k++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx++) {
                const float *mk = M + k * 16 * ldm + ty * tw + tx;
                float m[16], s[2][4];
                for (int e = 0; e < 16; e++) m[e] = mk[(size_t)e * ldm];
                for (int q = 0; q < 4; q++) {
                    s[0][q] = m[q] + m[4 + q] + m[8 + q];
                    s[1][q] = m[4 + q] - m[8 + q] - m[12 + q];
                }
                float *y = Y + k * plane_stride + 2 * ty * ldo + 2 * tx;
                for (int r = 0; r < 2; r++) {
                    y[(size_t)r * ldo + 0] = s[r][0] + s[r][1] + s[r][2];
                    y[(size_t)r * ldo + 1] = s[r][1] - s[r][2] - s[r][3];
                }
            }
}

void cnn_f32_winograd_f23_dyin_scalar(const float *qp, size_t kout, size_t plane_stride, size_t ldq, size_t tw,
                                      size_t nty, float *D, size_t ldd) {
    for (size_t k = 0; k < kout; k++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx++) {
                const float *q = qp + k * plane_stride + 2 * ty * ldq + 2 * tx;
                float t[4][2];
                for (int c = 0; c < 2; c++) { /* A dy */
                    t[0][c] = q[c];
                    t[1][c] = q[c] + q[ldq + (size_t)c];
                    t[2][c] = q[c] - q[ldq + (size_t)c];
                    t[3][c] = -q[ldq + (size_t)c];
                }
                float *d = D + k * 16 * ldd + ty * tw + tx;
                for (int i = 0; i < 4; i++) { /* (A dy) A^T */
                    d[(size_t)(4 * i + 0) * ldd] = t[i][0];
                    d[(size_t)(4 * i + 1) * ldd] = t[i][0] + t[i][1];
                    d[(size_t)(4 * i + 2) * ldd] = t[i][0] - t[i][1];
                    d[(size_t)(4 * i + 3) * ldd] = -t[i][1];
                }
            }
}

#include "f43_scalar.inc"
