/* f32_bn/scalar.c — batchnorm channel loops, portable C, the lane order of avx2.c emulated so the results
 * are bit-identical (contract: bn_kernels.h). */
#include "bn_kernels.h"

#pragma GCC optimize("fp-contract=off")

/* (A0 + A1) + (A2 + A3) lane-wise, then the lanes as avx2.c's hsum8 */
static float combine(const float A[4][8]) {
    float v[8];
    for (int l = 0; l < 8; l++) v[l] = (A[0][l] + A[1][l]) + (A[2][l] + A[3][l]);
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

void cnn_f32_bn_sums_scalar(const float *x, size_t n, size_t stride, size_t hw, float shift, double *s1,
                            double *s2) {
    double t1 = 0.0, t2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride;
        float A[4][8] = {{0}}, Q[4][8] = {{0}}, ta = 0.0f, tq = 0.0f;
        size_t k = 0;
        for (; k + 32 <= hw; k += 32)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 8; l++) {
                    float d = p[k + 8 * j + l] - shift;
                    A[j][l] += d;
                    Q[j][l] += d * d;
                }
        for (; k + 8 <= hw; k += 8)
            for (int l = 0; l < 8; l++) {
                float d = p[k + l] - shift;
                A[0][l] += d;
                Q[0][l] += d * d;
            }
        for (; k < hw; k++) {
            float d = p[k] - shift;
            ta += d;
            tq += d * d;
        }
        t1 += (double)(combine(A) + ta);
        t2 += (double)(combine(Q) + tq);
    }
    *s1 = t1;
    *s2 = t2;
}

/* the gradient reaching the batchnorm output: dy, or 0 where the fused relu's output is not > 0 */
#define GRAD(e) (m ? (m[e] > 0.0f ? d[e] : 0.0f) : d[e])

void cnn_f32_bn_dsums_scalar(const float *x, const float *dy, const float *ym, size_t n, size_t stride, size_t hw,
                             float mu, double *s1, double *s2) {
    double t1 = 0.0, t2 = 0.0;
    float gk;
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride, *d = dy + i * stride, *m = ym ? ym + i * stride : NULL;
        float A[4][8] = {{0}}, Q[4][8] = {{0}}, ta = 0.0f, tq = 0.0f;
        size_t k = 0;
        for (; k + 32 <= hw; k += 32)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 8; l++) {
                    size_t e = k + 8 * (size_t)j + (size_t)l;
                    gk = GRAD(e);
                    A[j][l] += gk;
                    Q[j][l] += gk * (p[e] - mu);
                }
        for (; k + 8 <= hw; k += 8)
            for (int l = 0; l < 8; l++) {
                gk = GRAD(k + l);
                A[0][l] += gk;
                Q[0][l] += gk * (p[k + l] - mu);
            }
        for (; k < hw; k++) {
            gk = GRAD(k);
            ta += gk;
            tq += gk * (p[k] - mu);
        }
        t1 += (double)(combine(A) + ta);
        t2 += (double)(combine(Q) + tq);
    }
    *s1 = t1;
    *s2 = t2;
}

void cnn_f32_bn_apply_scalar(const float *x, float *y, size_t n, size_t stride, size_t hw, float mu, float a,
                             float b, int relu) {
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride;
        float *o = y + i * stride;
        if (relu)
            for (size_t k = 0; k < hw; k++) {
                float v = (p[k] - mu) * a + b;
                o[k] = (v > 0.0f || v != v) ? v : 0.0f;
            }
        else
            for (size_t k = 0; k < hw; k++) o[k] = (p[k] - mu) * a + b;
    }
}

void cnn_f32_bn_bwd_scalar(const float *x, const float *dy, const float *ym, float *dx, size_t n, size_t stride,
                           size_t hw, float k1, float mdy, float mu, float c, int acc) {
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride, *d = dy + i * stride, *m = ym ? ym + i * stride : NULL;
        float *o = dx + i * stride;
        if (acc)
            for (size_t k = 0; k < hw; k++) o[k] += k1 * ((GRAD(k) - mdy) - (p[k] - mu) * c);
        else
            for (size_t k = 0; k < hw; k++) o[k] = k1 * ((GRAD(k) - mdy) - (p[k] - mu) * c);
    }
}
