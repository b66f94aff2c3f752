/* f32_bn/avx2.c — batchnorm channel loops with AVX2 (compiled with -mavx2 -mfma; call only when the CPU has
 * AVX2). Contract and the summation order: bn_kernels.h; scalar.c gives the same bits. No FMA: every
 * multiply and add is separate, as in scalar.c. */
#include "bn_kernels.h"

#include <immintrin.h>

#pragma GCC optimize("fp-contract=off")

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4 .. l3+l7 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                         /* (l0+l4)+(l2+l6), .. */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

void cnn_f32_bn_sums_avx2(const float *x, size_t n, size_t stride, size_t hw, float shift, double *s1,
                          double *s2) {
    const __m256 sh = _mm256_set1_ps(shift);
    double t1 = 0.0, t2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, q0 = a0, q1 = a0, q2 = a0, q3 = a0;
        size_t k = 0;
        for (; k + 32 <= hw; k += 32) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(p + k), sh);
            __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(p + k + 8), sh);
            __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(p + k + 16), sh);
            __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(p + k + 24), sh);
            a0 = _mm256_add_ps(a0, d0);
            a1 = _mm256_add_ps(a1, d1);
            a2 = _mm256_add_ps(a2, d2);
            a3 = _mm256_add_ps(a3, d3);
            q0 = _mm256_add_ps(q0, _mm256_mul_ps(d0, d0));
            q1 = _mm256_add_ps(q1, _mm256_mul_ps(d1, d1));
            q2 = _mm256_add_ps(q2, _mm256_mul_ps(d2, d2));
            q3 = _mm256_add_ps(q3, _mm256_mul_ps(d3, d3));
        }
        for (; k + 8 <= hw; k += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(p + k), sh);
            a0 = _mm256_add_ps(a0, d);
            q0 = _mm256_add_ps(q0, _mm256_mul_ps(d, d));
        }
        float ta = 0.0f, tq = 0.0f;
        for (; k < hw; k++) {
            float d = p[k] - shift;
            ta += d;
            tq += d * d;
        }
        __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m256 q = _mm256_add_ps(_mm256_add_ps(q0, q1), _mm256_add_ps(q2, q3));
        t1 += (double)(hsum8(a) + ta);
        t2 += (double)(hsum8(q) + tq);
    }
    *s1 = t1;
    *s2 = t2;
}

/* dy, or 0 where the fused relu's output ym is not > 0 (masked: a compile-time constant after inlining) */
static inline __attribute__((always_inline)) __m256 grad8(const float *d, const float *ym, size_t e, int masked) {
    __m256 g = _mm256_loadu_ps(d + e);
    if (masked) g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_loadu_ps(ym + e), _mm256_setzero_ps(), _CMP_GT_OQ));
    return g;
}

static inline __attribute__((always_inline)) void dsums_body(const float *x, const float *dy, const float *ym,
                                                             size_t n, size_t stride, size_t hw, float mu,
                                                             double *s1, double *s2, int masked) {
    const __m256 m = _mm256_set1_ps(mu);
    double t1 = 0.0, t2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride, *g = dy + i * stride, *y = masked ? ym + i * stride : NULL;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, q0 = a0, q1 = a0, q2 = a0, q3 = a0;
        size_t k = 0;
        for (; k + 32 <= hw; k += 32) {
            __m256 g0 = grad8(g, y, k, masked), g1 = grad8(g, y, k + 8, masked);
            __m256 g2 = grad8(g, y, k + 16, masked), g3 = grad8(g, y, k + 24, masked);
            a0 = _mm256_add_ps(a0, g0);
            a1 = _mm256_add_ps(a1, g1);
            a2 = _mm256_add_ps(a2, g2);
            a3 = _mm256_add_ps(a3, g3);
            q0 = _mm256_add_ps(q0, _mm256_mul_ps(g0, _mm256_sub_ps(_mm256_loadu_ps(p + k), m)));
            q1 = _mm256_add_ps(q1, _mm256_mul_ps(g1, _mm256_sub_ps(_mm256_loadu_ps(p + k + 8), m)));
            q2 = _mm256_add_ps(q2, _mm256_mul_ps(g2, _mm256_sub_ps(_mm256_loadu_ps(p + k + 16), m)));
            q3 = _mm256_add_ps(q3, _mm256_mul_ps(g3, _mm256_sub_ps(_mm256_loadu_ps(p + k + 24), m)));
        }
        for (; k + 8 <= hw; k += 8) {
            __m256 g0 = grad8(g, y, k, masked);
            a0 = _mm256_add_ps(a0, g0);
            q0 = _mm256_add_ps(q0, _mm256_mul_ps(g0, _mm256_sub_ps(_mm256_loadu_ps(p + k), m)));
        }
        float ta = 0.0f, tq = 0.0f;
        for (; k < hw; k++) {
            float gk = masked ? (y[k] > 0.0f ? g[k] : 0.0f) : g[k];
            ta += gk;
            tq += gk * (p[k] - mu);
        }
        __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m256 q = _mm256_add_ps(_mm256_add_ps(q0, q1), _mm256_add_ps(q2, q3));
        t1 += (double)(hsum8(a) + ta);
        t2 += (double)(hsum8(q) + tq);
    }
    *s1 = t1;
    *s2 = t2;
}

void cnn_f32_bn_dsums_avx2(const float *x, const float *dy, const float *ym, size_t n, size_t stride, size_t hw,
                           float mu, double *s1, double *s2) {
    if (ym) dsums_body(x, dy, ym, n, stride, hw, mu, s1, s2, 1);
    else dsums_body(x, dy, NULL, n, stride, hw, mu, s1, s2, 0);
}

/* Lanes i < r set (r in 0..7). */
static inline __m256i lanes_below(size_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* v, or +0 where v is neither > 0 nor NaN (activations.c's relu) */
static inline __m256 relu8(__m256 v) {
    const __m256 z = _mm256_setzero_ps();
    return _mm256_and_ps(v, _mm256_or_ps(_mm256_cmp_ps(v, z, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}

static inline __attribute__((always_inline)) void apply_body(const float *x, float *y, size_t n, size_t stride,
                                                             size_t hw, float mu, float a, float b, int relu) {
    const __m256 m = _mm256_set1_ps(mu), av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
    const __m256i tail = lanes_below(hw % 8);
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride;
        float *o = y + i * stride;
        size_t k = 0;
        for (; k + 8 <= hw; k += 8) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + k), m), av), bv);
            _mm256_storeu_ps(o + k, relu ? relu8(v) : v);
        }
        if (k < hw) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(p + k, tail), m), av), bv);
            _mm256_maskstore_ps(o + k, tail, relu ? relu8(v) : v);
        }
    }
}

void cnn_f32_bn_apply_avx2(const float *x, float *y, size_t n, size_t stride, size_t hw, float mu, float a,
                           float b, int relu) {
    if (relu) apply_body(x, y, n, stride, hw, mu, a, b, 1);
    else apply_body(x, y, n, stride, hw, mu, a, b, 0);
}

/* the masked tail: lanes >= r of dy and ym are not loaded (maskload gives 0, and 0 > 0 is false) */
static inline __attribute__((always_inline)) __m256 grad_tail(const float *d, const float *ym, __m256i tail,
                                                              int masked) {
    __m256 g = _mm256_maskload_ps(d, tail);
    if (masked) g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_maskload_ps(ym, tail), _mm256_setzero_ps(), _CMP_GT_OQ));
    return g;
}

static inline __attribute__((always_inline)) void bwd_body(const float *x, const float *dy, const float *ym,
                                                           float *dx, size_t n, size_t stride, size_t hw,
                                                           float k1, float mdy, float mu, float c, int acc,
                                                           int masked) {
    const __m256 kv = _mm256_set1_ps(k1), md = _mm256_set1_ps(mdy), m = _mm256_set1_ps(mu), cv = _mm256_set1_ps(c);
    const __m256i tail = lanes_below(hw % 8);
#define BN_BWD_V(pv, gv) \
    _mm256_mul_ps(kv, _mm256_sub_ps(_mm256_sub_ps(gv, md), _mm256_mul_ps(_mm256_sub_ps(pv, m), cv)))
    for (size_t i = 0; i < n; i++) {
        const float *p = x + i * stride, *g = dy + i * stride, *y = masked ? ym + i * stride : NULL;
        float *o = dx + i * stride;
        size_t k = 0;
        for (; k + 8 <= hw; k += 8) {
            __m256 v = BN_BWD_V(_mm256_loadu_ps(p + k), grad8(g, y, k, masked));
            _mm256_storeu_ps(o + k, acc ? _mm256_add_ps(_mm256_loadu_ps(o + k), v) : v);
        }
        if (k < hw) {
            __m256 v = BN_BWD_V(_mm256_maskload_ps(p + k, tail), grad_tail(g + k, masked ? y + k : NULL, tail, masked));
            _mm256_maskstore_ps(o + k, tail, acc ? _mm256_add_ps(_mm256_maskload_ps(o + k, tail), v) : v);
        }
    }
#undef BN_BWD_V
}

void cnn_f32_bn_bwd_avx2(const float *x, const float *dy, const float *ym, float *dx, size_t n, size_t stride,
                         size_t hw, float k1, float mdy, float mu, float c, int acc) {
    if (ym) {
        if (acc) bwd_body(x, dy, ym, dx, n, stride, hw, k1, mdy, mu, c, 1, 1);
        else bwd_body(x, dy, ym, dx, n, stride, hw, k1, mdy, mu, c, 0, 1);
    } else {
        if (acc) bwd_body(x, dy, NULL, dx, n, stride, hw, k1, mdy, mu, c, 1, 0);
        else bwd_body(x, dy, NULL, dx, n, stride, hw, k1, mdy, mu, c, 0, 0);
    }
}
