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

/* F(4x4) weight gradient: dw = G^T Mk G (G the F(4x4) filter transform, 6x3), in double and rounded once.
 * 24 G^T = [6 -4 -4 1 1 0; 0 -4 4 2 -2 0; 0 -4 -4 4 4 24], so t' = (24 G^T) Mk and o' = t' (24 G) = 576 dw
 * use only multiplications by powers of two (6x is 4x + 2x, 24x is 16x + 8x), which are exact: contracting
 * a product with an addition into an FMA (the AVX2 build) cannot change a result, and both ISAs agree
 * bitwise; the one inexact step is the final division by 576. */
/* o = (24 G^T) m for one 6-vector of each of F43_WCB channels (channel innermost: the compiler vectorises) */
#define F43_WCB 16
static inline void f43_gt6(const double m[6][F43_WCB], double o[3][F43_WCB]) {
    for (size_t ci = 0; ci < F43_WCB; ci++) {
        const double s12 = m[1][ci] + m[2][ci], d12 = m[1][ci] - m[2][ci];
        const double s34 = m[3][ci] + m[4][ci], d34 = m[3][ci] - m[4][ci];
        o[0][ci] = ((4.0 * m[0][ci] + 2.0 * m[0][ci]) - 4.0 * s12) + s34;
        o[1][ci] = 2.0 * d34 - 4.0 * d12;
        o[2][ci] = (4.0 * s34 - 4.0 * s12) + (16.0 * m[5][ci] + 8.0 * m[5][ci]);
    }
}

/* F43_WCB input channels at a time: the 36 runs of Macc read contiguously (one element at a time from 36
 * matrices K*C floats apart was 36% of c3's pass) */
void WINO_SUFFIX(cnn_f32_winograd_f43_wgrad)(const float *Macc, size_t kout, size_t cin, size_t ldm, float *dw) {
    double m[36][F43_WCB], t[18][F43_WCB]; /* t[6*i + j]: row i of 24 G^T Mk, column j */
    for (size_t k = 0; k < kout; k++)
        for (size_t cb = 0; cb < cin; cb += F43_WCB) {
            const size_t nc = cin - cb < F43_WCB ? cin - cb : F43_WCB;
            for (int e = 0; e < 36; e++) {
                const float *src = Macc + (size_t)e * ldm + k * cin + cb;
                __builtin_prefetch(src + 4 * F43_WCB); /* 36 streams: more than the prefetchers follow */
                if (nc == F43_WCB)
                    for (size_t ci = 0; ci < F43_WCB; ci++) m[e][ci] = (double)src[ci];
                else
                    for (size_t ci = 0; ci < F43_WCB; ci++) m[e][ci] = ci < nc ? (double)src[ci] : 0.0;
            }
            for (int j = 0; j < 6; j++) { /* t' = 24 G^T Mk, column j */
                double col[6][F43_WCB], o[3][F43_WCB];
                for (int a = 0; a < 6; a++)
                    for (size_t ci = 0; ci < F43_WCB; ci++) col[a][ci] = m[6 * a + j][ci];
                f43_gt6(col, o);
                for (int i = 0; i < 3; i++)
                    for (size_t ci = 0; ci < F43_WCB; ci++) t[6 * i + j][ci] = o[i][ci];
            }
            float ob[9][F43_WCB];
            for (int i = 0; i < 3; i++) { /* o' = t' 24 G, row i; dw = o' / 576 */
                double o[3][F43_WCB];
                f43_gt6((const double(*)[F43_WCB])t[6 * i], o);
                for (int j = 0; j < 3; j++)
                    for (size_t ci = 0; ci < F43_WCB; ci++) ob[3 * i + j][ci] = (float)(o[j][ci] / 576.0);
            }
            float *out = dw + (k * cin + cb) * 9; /* the block's nc filters are contiguous in dw */
            for (size_t ci = 0; ci < nc; ci++)
                for (int q = 0; q < 9; q++) out[ci * 9 + (size_t)q] = ob[q][ci];
        }
}

#include "f43_weights.inc"
