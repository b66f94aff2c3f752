/* ref_conv.c — see ref_conv.h. Plain loops over the definitions, in double, with signed coordinates. */
#include "ref_conv.h"

#include <math.h>

size_t ref_conv_out_len(size_t len, size_t k, size_t stride, size_t p0, size_t p1, size_t dil) {
    long span = (long)len + (long)p0 + (long)p1 - (long)dil * ((long)k - 1) - 1;
    if (span < 0) return 0;
    return (size_t)(span / (long)stride) + 1;
}

void ref_conv_same_pad(size_t len, size_t k, size_t stride, size_t dil, size_t *p0, size_t *p1) {
    long out = ((long)len + (long)stride - 1) / (long)stride;
    long total = (out - 1) * (long)stride + (long)dil * ((long)k - 1) + 1 - (long)len;
    if (total < 0) total = 0;
    *p0 = (size_t)(total / 2);
    *p1 = (size_t)(total - total / 2);
}

void ref_conv2d_forward(const ref_conv2d *p, size_t n, const double *x, const double *w, const double *b,
                        double *y) {
    const size_t oh = ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh);
    const size_t ow = ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw);
    const size_t cg = p->c / p->groups, kg = p->k / p->groups;
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < p->k; o++) {
            const size_t g = o / kg;
            for (size_t oy = 0; oy < oh; oy++)
                for (size_t ox = 0; ox < ow; ox++) {
                    double acc = b ? b[o] : 0.0;
                    for (size_t c = 0; c < cg; c++) {
                        const size_t ci = g * cg + c;
                        for (size_t i = 0; i < p->kh; i++) {
                            long iy = (long)(oy * p->sh) - (long)p->pt + (long)(i * p->dh);
                            if (iy < 0 || iy >= (long)p->h) continue;
                            for (size_t j = 0; j < p->kw; j++) {
                                long ix = (long)(ox * p->sw) - (long)p->pl + (long)(j * p->dw);
                                if (ix < 0 || ix >= (long)p->w) continue;
                                double xv = x[((s * p->c + ci) * p->h + (size_t)iy) * p->w + (size_t)ix];
                                double wv = w[((o * cg + c) * p->kh + i) * p->kw + j];
                                acc += xv * wv;
                            }
                        }
                    }
                    y[((s * p->k + o) * oh + oy) * ow + ox] = acc;
                }
        }
}

void ref_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, double alpha, const float *A, size_t lda,
              const float *B, size_t ldb, double beta, const float *C, size_t ldc, double *out, double *abs_out) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0.0, a = 0.0;
            for (size_t p = 0; p < K; p++) {
                double av = trans_a ? A[p * lda + i] : A[i * lda + p];
                double bv = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                s += av * bv;
                a += fabs(av * bv);
            }
            double v = alpha * s, m = fabs(alpha) * a;
            if (beta != 0.0) {
                v += beta * C[i * ldc + j];
                m += fabs(beta * C[i * ldc + j]);
            }
            out[i * N + j] = v;
            if (abs_out) abs_out[i * N + j] = m;
        }
}
