/* test_bn_kernels.c — the batchnorm channel loops (src/kernels/f32_bn/bn_kernels.h) on both ISAs: against a
 * float64 reference on random data with an offset (so squared deviations and sums do not cancel by luck), at
 * plane sizes that reach every path (whole 32-blocks, 8-blocks, the tail) and a sample stride larger than the
 * plane; scalar and avx2 results bit-identical; accumulate mode; nothing outside the planes written. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/f32_bn/bn_kernels.h"

typedef struct bn_isa {
    const char *name;
    cnn_f32_bn_sums_fn sums;
    cnn_f32_bn_dsums_fn dsums;
    cnn_f32_bn_apply_fn apply;
    cnn_f32_bn_bwd_fn bwd;
} bn_isa;

static const bn_isa ISAS[] = {
    {"scalar", cnn_f32_bn_sums_scalar, cnn_f32_bn_dsums_scalar, cnn_f32_bn_apply_scalar, cnn_f32_bn_bwd_scalar},
    {"avx2", cnn_f32_bn_sums_avx2, cnn_f32_bn_dsums_avx2, cnn_f32_bn_apply_avx2, cnn_f32_bn_bwd_avx2},
};

static size_t n_isas(void) { return cnn_cpu_isa() >= CNN_ISA_AVX2 ? 2 : 1; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float *rand_buf(size_t len, double lo, double hi) {
    float *b = malloc(len * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++) b[i] = (float)(lo + (hi - lo) * urand());
    return b;
}

static const size_t HW[] = {1, 5, 8, 13, 32, 45, 64, 77, 196, 784};
static const size_t NS[] = {1, 3, 6};

/* relative error of a against the reference r, with scale s (the magnitude the float sums carry) */
static void near(double a, double r, double s, double tol, const char *what, const char *isa, size_t n, size_t hw) {
    if (!(fabs(a - r) <= tol * s)) fail_msg("%s (%s, n=%zu hw=%zu): %.9g, want %.9g (tolerance %g of %g)", what, isa, n, hw, a, r, tol, s);
}

static void test_sums(void **state) {
    (void)state;
    for (size_t a = 0; a < sizeof NS / sizeof NS[0]; a++)
        for (size_t b = 0; b < sizeof HW / sizeof HW[0]; b++) {
            size_t n = NS[a], hw = HW[b], stride = hw + 3, len = (n - 1) * stride + hw;
            float *x = rand_buf(len, 1.5, 4.0), *dy = rand_buf(len, -1.0, 1.0);
            float shift = 2.5f, mu = 2.75f;
            double r1 = 0, r2 = 0, abs1 = 0, d1 = 0, d2 = 0, dabs1 = 0, dabs2 = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < hw; k++) {
                    double v = (double)x[i * stride + k] - shift, g = dy[i * stride + k];
                    r1 += v;
                    r2 += v * v;
                    abs1 += fabs(v);
                    d1 += g;
                    d2 += g * ((double)x[i * stride + k] - mu);
                    dabs1 += fabs(g);
                    dabs2 += fabs(g * ((double)x[i * stride + k] - mu));
                }
            double s1[2], s2[2], t1[2], t2[2];
            for (size_t s = 0; s < n_isas(); s++) {
                ISAS[s].sums(x, n, stride, hw, shift, &s1[s], &s2[s]);
                ISAS[s].dsums(x, dy, NULL, n, stride, hw, mu, &t1[s], &t2[s]);
                /* float sums of up to 784 terms: a few 1e-7 of the sum of magnitudes per plane */
                near(s1[s], r1, abs1, 1e-6, "sum (x - shift)", ISAS[s].name, n, hw);
                near(s2[s], r2, r2, 1e-6, "sum (x - shift)^2", ISAS[s].name, n, hw);
                near(t1[s], d1, dabs1, 1e-6, "sum dy", ISAS[s].name, n, hw);
                near(t2[s], d2, dabs2, 1e-6, "sum dy (x - mu)", ISAS[s].name, n, hw);
            }
            if (n_isas() == 2) {
                assert_true(s1[0] == s1[1] && s2[0] == s2[1]);
                assert_true(t1[0] == t1[1] && t2[0] == t2[1]);
            }
            free(x);
            free(dy);
        }
}

static void test_apply_bwd(void **state) {
    (void)state;
    for (size_t a = 0; a < sizeof NS / sizeof NS[0]; a++)
        for (size_t b = 0; b < sizeof HW / sizeof HW[0]; b++) {
            size_t n = NS[a], hw = HW[b], stride = hw + 5, len = (n - 1) * stride + hw + 5;
            float *x = rand_buf(len, -2.0, 3.0), *dy = rand_buf(len, -1.0, 1.0), *init = rand_buf(len, -1, 1);
            float *out[2][3];
            const float mu = 0.3f, sa = 1.7f, sb = -0.4f, k1 = 0.9f, mdy = 0.05f, c = 0.6f;
            for (size_t s = 0; s < n_isas(); s++) {
                for (int m = 0; m < 3; m++) {
                    out[s][m] = malloc(len * sizeof(float));
                    memcpy(out[s][m], init, len * sizeof(float));
                }
                ISAS[s].apply(x, out[s][0], n, stride, hw, mu, sa, sb, 0);
                ISAS[s].bwd(x, dy, NULL, out[s][1], n, stride, hw, k1, mdy, mu, c, 0);
                ISAS[s].bwd(x, dy, NULL, out[s][2], n, stride, hw, k1, mdy, mu, c, 1);
                for (size_t e = 0; e < len; e++) {
                    size_t i = e / stride, k = e % stride;
                    int inside = i < n && k < hw;
                    double xv = x[e], g = dy[e];
                    double ya = (xv - mu) * sa + sb, vb = k1 * ((g - mdy) - (xv - mu) * c);
                    if (!inside) { /* untouched */
                        for (int m = 0; m < 3; m++) assert_true(out[s][m][e] == init[e]);
                        continue;
                    }
                    near(out[s][0][e], ya, 1 + fabs(ya), 1e-6, "apply", ISAS[s].name, n, hw);
                    near(out[s][1][e], vb, 1 + fabs(vb), 1e-6, "bwd", ISAS[s].name, n, hw);
                    near(out[s][2][e], init[e] + vb, 1 + fabs(vb), 1e-6, "bwd acc", ISAS[s].name, n, hw);
                }
            }
            if (n_isas() == 2)
                for (int m = 0; m < 3; m++) assert_memory_equal(out[0][m], out[1][m], len * sizeof(float));
            for (size_t s = 0; s < n_isas(); s++)
                for (int m = 0; m < 3; m++) free(out[s][m]);
            free(x);
            free(dy);
            free(init);
        }
}


/* The fused relu: apply with relu (NaN kept, negatives and -0 to +0), dsums and bwd masked by ym > 0 (ym with
 * positive, negative, zero and NaN entries), against the unmasked kernels on dy zeroed by hand. */
static void test_fused_relu(void **state) {
    (void)state;
    for (size_t b = 0; b < sizeof HW / sizeof HW[0]; b++) {
        size_t n = 3, hw = HW[b], stride = hw + 2, len = (n - 1) * stride + hw;
        /* x has one float more: the sums read it from x + 1, misaligned against dy */
        float *x = rand_buf(len + 1, -2.0, 2.0), *dy = rand_buf(len, -1.0, 1.0), *ym = rand_buf(len, -1.0, 1.0);
        float *dz = malloc(len * sizeof(float)), *o1 = malloc(len * sizeof(float)), *o2 = malloc(len * sizeof(float));
        assert_true(dz && o1 && o2);
        for (size_t e = 0; e < len; e++) {
            if (e % 7 == 3) ym[e] = 0.0f;
            if (e % 11 == 5) ym[e] = NAN;
            if (e % 13 == 4) x[e] = NAN;
            dz[e] = ym[e] > 0.0f ? dy[e] : 0.0f;
        }
        float ref_y[2][1024];
        assert_true(len <= 3 * 1024);
        for (size_t s = 0; s < n_isas(); s++) {
            double a1, a2, b1, b2;
            ISAS[s].dsums(x + 1, dy, ym, n, stride, hw, 0.25f, &a1, &a2);
            ISAS[s].dsums(x + 1, dz, NULL, n, stride, hw, 0.25f, &b1, &b2);
            /* x has NaN: compare the sum of dy only where it is defined, and the pattern of NaN */
            assert_true(a1 == b1);
            assert_true((a2 == b2) || (a2 != a2 && b2 != b2));
            for (int acc = 0; acc < 2; acc++) {
                for (size_t e = 0; e < len; e++) o1[e] = o2[e] = (float)e * 0.01f;
                ISAS[s].bwd(dy, dy, ym, o1, n, stride, hw, 1.3f, 0.1f, 0.2f, 0.7f, acc);
                ISAS[s].bwd(dy, dz, NULL, o2, n, stride, hw, 1.3f, 0.1f, 0.2f, 0.7f, acc);
                assert_memory_equal(o1, o2, len * sizeof(float));
            }
            ISAS[s].apply(x, o1, n, stride, hw, 0.1f, 1.5f, -0.2f, 1);
            ISAS[s].apply(x, o2, n, stride, hw, 0.1f, 1.5f, -0.2f, 0);
            for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < hw; k++) {
                    size_t e = i * stride + k;
                    float v = o2[e], want = (v > 0.0f || v != v) ? v : 0.0f;
                    if (want != want) assert_true(o1[e] != o1[e]);
                    else assert_true(o1[e] == want && !signbit(o1[e]));
                    if (i == 0 && k < 1024) ref_y[s][k] = o1[e];
                }
        }
        if (n_isas() == 2) assert_memory_equal(ref_y[0], ref_y[1], (hw < 1024 ? hw : 1024) * sizeof(float));
        free(x);
        free(dy);
        free(ym);
        free(dz);
        free(o1);
        free(o2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_apply_bwd),
        cmocka_unit_test(test_fused_relu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
