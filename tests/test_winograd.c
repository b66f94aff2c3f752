/* test_winograd.c — Winograd F(4x4,3x3) ("winograd-f4x4": kernels src/kernels/f32_winograd/f43_*.inc, the
 * winograd driver of src/layers/conv2d.c) against float64 references that share no code with src/:
 *   kernels  the AVX2 and AVX-512 input/output transforms bitwise equal to the scalar ones (tails: 1..17 tiles per
 *            row, 1..3 tile rows); the weight transform against G g G^T in double; input -> products ->
 *            output against direct correlation in double, on every ISA the CPU has; the weight
 *            gradient's dy transform (A q A^T) and final transform (G^T M G) against double, bitwise
 *            equal across ISAs;
 *   layer    forward (training and inference, which reads the pre-transformed U), input gradient (F(4x4)
 *            on dy with the flipped filter) and weight/bias gradients (F(4x4), forced) through th_check (central
 *            differences in double), at odd shapes: H, W not multiples of 4, C and K not multiples of 8,
 *            padding 0, 1, 2 and asymmetric, no bias, N = 1..3, 1 and 2 threads, avx2 and scalar;
 *   large    shapes whose chunks span samples or split them: forward and input gradient against a naive
 *            float64 forward / backward-data, 1 vs 2 threads bit-identical, and a context lowered to 1
 *            thread after compile (U no longer fits the workspace tails: per-chunk transforms) bitwise
 *            equal to a 1-thread build;
 *   accuracy random N(0,1) inputs and weights, C = 256: the measured error of F(4x4), F(2x2) and im2col;
 *   choice   auto picks F(4x4) for C, K >= 32 with at least 16 4x4 tiles per sample, else F(2x2);
 *            algo=winograd (F(2x2)), algo=winograd-f2x2|winograd-f4x4 force one;
 *            print/parse round trip; errors.
 * Tolerance of F(4x4) (its transforms multiply by up to 5 and 8 and add 6 terms, so it loses about one
 * decimal digit against direct summation): WINO4_FWD = 1e-4 relative to max(max|y|, 1) (th_check, and the
 * large shapes), and for N(0,1) data with C = 256 WINO4_NORMAL = 3e-5 relative to max|y|. Measured there
 * (test_f4_accuracy prints it): F(4x4) 9.9e-6 forward, 3.0e-6 input gradient, 2.2e-6 weight gradient;
 * F(2x2) 6.5e-7 / 2.1e-7 / 3.9e-7; im2col 3.4e-7 / 1.4e-7 / 5.9e-7. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref/ref_conv.h"
#include "kernels/kernels.h"

#define WINO4_FWD 1e-4
#define WINO4_GRAD 1e-4
#define WINO4_NORMAL 3e-5

/* ---- kernels ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double nrand(void) { /* Box-Muller */
    double u = urand(), v = urand();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const double GM[6][3] = {{0.25, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

typedef struct f43_fns {
    const char *isa;
    cnn_winograd_weights_e_fn weights;
    cnn_winograd_input_fn input;
    cnn_winograd_output_fn output;
    cnn_winograd_dyin_fn dyin;
    cnn_winograd_wgrad_fn wgrad;
} f43_fns;

static size_t isa_list(f43_fns *out) {
    size_t n = 0;
    out[n++] = (f43_fns){"scalar", cnn_f32_winograd_f43_weights_scalar, cnn_f32_winograd_f43_input_scalar,
                         cnn_f32_winograd_f43_output_scalar, cnn_f32_winograd_f43_dyin_scalar,
                         cnn_f32_winograd_f43_wgrad_scalar};
    if (cnn_cpu_isa() >= CNN_ISA_AVX2)
        out[n++] = (f43_fns){"avx2", cnn_f32_winograd_f43_weights_avx2, cnn_f32_winograd_f43_input_avx2,
                             cnn_f32_winograd_f43_output_avx2, cnn_f32_winograd_f43_dyin_avx2,
                             cnn_f32_winograd_f43_wgrad_avx2};
    if (cnn_cpu_isa() >= CNN_ISA_AVX512) /* the AVX-512 input and output transforms, the rest AVX2's */
        out[n++] = (f43_fns){"avx512", cnn_f32_winograd_f43_weights_avx2, cnn_f32_winograd_f43_input_avx512,
                             cnn_f32_winograd_f43_output_avx512, cnn_f32_winograd_f43_dyin_avx2,
                             cnn_f32_winograd_f43_wgrad_avx2};
    return n;
}

/* U against G g G^T in double (also flipped and transposed) */
static void test_f4_weights(void **state) {
    (void)state;
    f43_fns f[3];
    const size_t nf = isa_list(f), K = 5, C = 3;
    float w[5 * 3 * 9], U[36][15], *Ue[36];
    for (size_t i = 0; i < K * C * 9; i++) w[i] = (float)nrand();
    for (int e = 0; e < 36; e++) Ue[e] = U[e];
    for (size_t i = 0; i < nf; i++)
        for (int flip = 0; flip < 2; flip++) {
            memset(U, 0, sizeof U);
            /* in two calls: k in [0, 2) and [2, 5), e in [0, 36) then a second pass over e in [7, 20) */
            f[i].weights(w, K, C, flip, 0, 2, 0, 36, Ue);
            f[i].weights(w, K, C, flip, 2, 5, 0, 36, Ue);
            f[i].weights(w, K, C, flip, 0, 5, 7, 20, Ue);
            for (size_t k = 0; k < K; k++)
                for (size_t c = 0; c < C; c++) {
                    double g[3][3];
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                            g[a][b] = flip ? w[(c * K + k) * 9 + 8 - (3 * a + b)] : w[(k * C + c) * 9 + 3 * a + b];
                    for (int e = 0; e < 36; e++) {
                        double u = 0;
                        for (int a = 0; a < 3; a++)
                            for (int b = 0; b < 3; b++) u += GM[e / 6][a] * g[a][b] * GM[e % 6][b];
                        const double got = U[e][k * C + c];
                        if (fabs(got - u) > 1e-7 * (1 + fabs(u)))
                            fail_msg("%s flip %d: U[%d][%zu][%zu] = %.9g, want %.9g", f[i].isa, flip, e, k, c, got, u);
                    }
                }
        }
}

/* input and output transforms: AVX2 bitwise equal to scalar; the chain input -> U .* V (double) ->
 * output against direct correlation */
static void test_f4_transforms(void **state) {
    (void)state;
    f43_fns f[3];
    const size_t nf = isa_list(f), C = 3, K = 2;
    for (size_t tw = 1; tw <= 17; tw++)
        for (size_t nty = 1; nty <= 3; nty++) {
            /* the tightest rows the contract allows (winograd.h): a read or write past them fails */
            const size_t ldp = 4 * tw + 4, rows = 4 * nty + 2, ps = rows * ldp;
            const size_t ld = nty * tw + 8, ldo = 4 * tw, ys = 4 * nty * ldo;
            float *xp = calloc(C * ps, sizeof(float)), *V[3], *M = calloc(K * 36 * ld, sizeof(float)), *Y[3];
            float w[2 * 3 * 9], U[36][6], *Ue[36];
            assert_non_null(xp);
            assert_non_null(M);
            for (size_t c = 0; c < C; c++)
                for (size_t r = 0; r < rows; r++)
                    for (size_t q = 0; q < 4 * tw + 2; q++) xp[c * ps + r * ldp + q] = (float)nrand();
            for (size_t i = 0; i < K * C * 9; i++) w[i] = (float)nrand();
            for (int e = 0; e < 36; e++) Ue[e] = U[e];
            for (size_t i = 0; i < nf; i++) {
                V[i] = calloc(C * 36 * ld, sizeof(float));
                Y[i] = calloc(K * ys, sizeof(float));
                assert_non_null(V[i]);
                assert_non_null(Y[i]);
                f[i].weights(w, K, C, 0, 0, K, 0, 36, Ue);
                f[i].input(xp, C, ps, ldp, tw, nty, V[i], ld);
                for (size_t k = 0; k < K; k++)
                    for (int e = 0; e < 36; e++)
                        for (size_t j = 0; j < nty * tw + 7; j++) {
                            double s = 0;
                            for (size_t c = 0; c < C; c++) s += (double)U[e][k * C + c] * V[i][(c * 36 + e) * ld + j];
                            M[(k * 36 + e) * ld + j] = (float)s;
                        }
                f[i].output(M, K, ld, tw, nty, Y[i], ys, ldo);
                double err = 0, big = 0;
                for (size_t k = 0; k < K; k++)
                    for (size_t oy = 0; oy < 4 * nty; oy++)
                        for (size_t ox = 0; ox < 4 * tw; ox++) {
                            double s = 0;
                            for (size_t c = 0; c < C; c++)
                                for (int a = 0; a < 3; a++)
                                    for (int b = 0; b < 3; b++)
                                        s += (double)w[(k * C + c) * 9 + 3 * a + b] * xp[c * ps + (oy + a) * ldp + ox + b];
                            const double d = fabs(s - Y[i][k * ys + oy * ldo + ox]);
                            if (d > err) err = d;
                            if (fabs(s) > big) big = fabs(s);
                        }
                if (err > 1e-5 * (big > 1 ? big : 1))
                    fail_msg("%s tw %zu nty %zu: error %.3g (max |y| %.3g)", f[i].isa, tw, nty, err, big);
            }
            for (size_t i = 1; i < nf; i++) { /* the valid columns and rows of V and Y, bitwise */
                for (size_t c = 0; c < C * 36; c++)
                    assert_memory_equal(V[0] + c * ld, V[i] + c * ld, nty * tw * sizeof(float));
                for (size_t k = 0; k < K; k++)
                    for (size_t oy = 0; oy < 4 * nty; oy++)
                        assert_memory_equal(Y[0] + k * ys + oy * ldo, Y[i] + k * ys + oy * ldo, 4 * tw * sizeof(float));
            }
            for (size_t i = 0; i < nf; i++) {
                free(V[i]);
                free(Y[i]);
            }
            free(xp);
            free(M);
        }
}

/* The weight gradient's kernels: dyin D = A q A^T against double (exact: every multiplier is a power of
 * two, so only the additions round) and AVX2 bitwise equal to scalar on the valid columns (tails 1..17
 * tiles per row, 1..3 tile rows); wgrad dw = G^T M G against double at 1e-6 relative, with a tile-element
 * stride ldm larger than K*C, both ISAs bitwise equal. */
static const double AM[6][4] = {{1, 0, 0, 0}, {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 2, 4, 8}, {1, -2, 4, -8}, {0, 0, 0, 1}};

static void test_f4_wgrad_kernels(void **state) {
    (void)state;
    f43_fns f[3];
    const size_t nf = isa_list(f), K = 3;
    for (size_t tw = 1; tw <= 17; tw++)
        for (size_t nty = 1; nty <= 3; nty++) {
            const size_t ldq = 4 * tw, ps = 4 * nty * ldq, ld = nty * tw + 8;
            float *q = calloc(K * ps, sizeof(float)), *D[3];
            assert_non_null(q);
            for (size_t i = 0; i < K * ps; i++) q[i] = (float)nrand();
            for (size_t i = 0; i < nf; i++) {
                D[i] = calloc(K * 36 * ld, sizeof(float));
                assert_non_null(D[i]);
                f[i].dyin(q, K, ps, ldq, tw, nty, D[i], ld);
                for (size_t k = 0; k < K; k++)
                    for (size_t ty = 0; ty < nty; ty++)
                        for (size_t tx = 0; tx < tw; tx++)
                            for (int e = 0; e < 36; e++) {
                                double want = 0;
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        want += AM[e / 6][a] * q[k * ps + (4 * ty + a) * ldq + 4 * tx + b] * AM[e % 6][b];
                                const double got = D[i][(k * 36 + e) * ld + ty * tw + tx];
                                if (fabs(got - want) > 1e-5 * (1 + fabs(want)))
                                    fail_msg("%s dyin tw %zu nty %zu: D[%d] = %.9g, want %.9g", f[i].isa, tw, nty, e, got, want);
                            }
            }
            for (size_t i = 1; i < nf; i++)
                for (size_t r = 0; r < K * 36; r++) assert_memory_equal(D[0] + r * ld, D[i] + r * ld, nty * tw * sizeof(float));
            for (size_t i = 0; i < nf; i++) free(D[i]);
            free(q);
        }
    const size_t KK = 5, C = 7, ldm = KK * C + 3;
    float *M = malloc(36 * ldm * sizeof(float)), dw[3][5 * 7 * 9];
    assert_non_null(M);
    for (size_t i = 0; i < 36 * ldm; i++) M[i] = (float)nrand();
    for (size_t i = 0; i < nf; i++) {
        f[i].wgrad(M, KK, C, ldm, dw[i]);
        for (size_t k = 0; k < KK; k++)
            for (size_t c = 0; c < C; c++)
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++) {
                        double want = 0;
                        for (int e = 0; e < 36; e++) want += GM[e / 6][a] * M[e * ldm + k * C + c] * GM[e % 6][b];
                        const double got = dw[i][(k * C + c) * 9 + 3 * a + b];
                        if (fabs(got - want) > 1e-6 * (1 + fabs(want)))
                            fail_msg("%s wgrad: dw[%zu][%zu][%d][%d] = %.9g, want %.9g", f[i].isa, k, c, a, b, got, want);
                    }
    }
    for (size_t i = 1; i < nf; i++) assert_memory_equal(dw[0], dw[i], sizeof dw[0]);
    free(M);
}

/* ---- the layer against the float64 reference ---- */

typedef struct conv_case {
    ref_conv2d p;
    int bias;
} conv_case;

static void ref_conv(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const conv_case *c = user;
    ref_conv2d_forward(&c->p, n, x, params[0], c->bias ? params[1] : NULL, y);
}

typedef struct wcase {
    size_t c, h, w, k, pt, pb, pl, pr;
    int bias;
    size_t n;
} wcase;

static const wcase CASES[] = {
    {5, 11, 19, 7, 1, 1, 1, 1, 1, 3},  /* 5x5 tiles per row: the AVX2 8-tile groups spill into the next row */
    {3, 6, 5, 4, 0, 0, 0, 0, 1, 2},    /* no padding: backward-data pads by 2 */
    {4, 7, 9, 5, 3, 0, 0, 2, 0, 2},    /* padding 3 on one side: backward-data "pads" by -1; no bias */
    {2, 1, 1, 3, 1, 1, 1, 1, 1, 2},    /* a single pixel */
    {9, 13, 10, 13, 2, 2, 2, 2, 1, 1}, /* padding 2 (output 15x12), batch 1 */
    {17, 23, 9, 11, 1, 1, 1, 1, 1, 2}, /* 6 tile rows of 3 tiles */
    {33, 10, 14, 35, 1, 1, 1, 1, 1, 1}, /* above the automatic threshold */
};

static const char *case_model(char *buf, size_t len, const wcase *c, const char *algo) {
    int n = snprintf(buf, len,
                     "input c=%zu h=%zu w=%zu\nconv2d k=%zu size=3 pad_top=%zu pad_bottom=%zu pad_left=%zu "
                     "pad_right=%zu bias=%d%s%s\n",
                     c->c, c->h, c->w, c->k, c->pt, c->pb, c->pl, c->pr, c->bias, algo ? " algo=" : "",
                     algo ? algo : "");
    assert_true(n > 0 && (size_t)n < len);
    return buf;
}

static conv_case case_ref(const wcase *c) {
    conv_case cc = {{c->c, c->h, c->w, c->k, 3, 3, 1, 1, c->pt, c->pb, c->pl, c->pr, 1, 1, 1}, c->bias};
    return cc;
}

static void expect_algo(const cnn_net *net, const char *want) {
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, want);
}

static void run_cases(void) {
    const th_tolerance tol = {.forward = WINO4_FWD, .grad = WINO4_GRAD, .fd_step = 1e-6, .fd_points = 40};
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        for (size_t threads = 1; threads <= 2; threads++) {
            char buf[512];
            const wcase *c = &CASES[i];
            conv_case cc = case_ref(c);
            th_net t;
            th_build(&t, case_model(buf, sizeof buf, c, "winograd-f4x4"), c->n, 300 + i * 7 + threads, threads);
            expect_algo(t.net, "winograd-f4x4");
            th_check(&t, ref_conv, &cc, 1, tol);
            th_check(&t, ref_conv, &cc, 0, tol);
            /* inference compile: the forward reads U pre-transformed in the inference weight block */
            assert_int_equal(cnn_net_compile(t.net, c->n, 0), CNN_OK);
            th_check(&t, ref_conv, &cc, 0, tol);
            th_free(&t);
        }
}

static void test_f4_layer(void **state) {
    (void)state;
    run_cases();
}

/* the same on the scalar kernels (CNN_ISA is read when th_build creates its context) */
static void test_f4_layer_scalar(void **state) {
    (void)state;
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CNN_ISA", "scalar", 1);
    run_cases();
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}

/* ---- large shapes, threads, accuracy ---- */

/* dx[s][c][iy][ix] = sum_{k,i,j} w[k][c][i][j] * dy[s][k][iy + pt - i][ix + pl - j] (inside dy), in double */
static void ref_backward_data(const conv_case *cc, size_t n, const float *w, const float *dy, double *dx) {
    const ref_conv2d *p = &cc->p;
    const size_t oh = ref_conv_out_len(p->h, 3, 1, p->pt, p->pb, 1), ow = ref_conv_out_len(p->w, 3, 1, p->pl, p->pr, 1);
    for (size_t s = 0; s < n; s++)
        for (size_t c = 0; c < p->c; c++)
            for (size_t iy = 0; iy < p->h; iy++)
                for (size_t ix = 0; ix < p->w; ix++) {
                    double sum = 0;
                    for (size_t k = 0; k < p->k; k++)
                        for (size_t i = 0; i < 3; i++)
                            for (size_t j = 0; j < 3; j++) {
                                const ptrdiff_t oy = (ptrdiff_t)(iy + p->pt) - (ptrdiff_t)i;
                                const ptrdiff_t ox = (ptrdiff_t)(ix + p->pl) - (ptrdiff_t)j;
                                if (oy < 0 || ox < 0 || oy >= (ptrdiff_t)oh || ox >= (ptrdiff_t)ow) continue;
                                sum += (double)w[((k * p->c + c) * 3 + i) * 3 + j] *
                                       dy[((s * p->k + k) * oh + (size_t)oy) * ow + (size_t)ox];
                            }
                    dx[((s * p->c + c) * p->h + iy) * p->w + ix] = sum;
                }
}

/* dW[k][c][i][j] = sum over samples and outputs of dy * x (zero padding), in double */
static void ref_backward_weights(const conv_case *cc, size_t n, const double *x, const float *dy, double *dw) {
    const ref_conv2d *p = &cc->p;
    const size_t oh = ref_conv_out_len(p->h, 3, 1, p->pt, p->pb, 1), ow = ref_conv_out_len(p->w, 3, 1, p->pl, p->pr, 1);
    for (size_t k = 0; k < p->k; k++)
        for (size_t c = 0; c < p->c; c++)
            for (size_t i = 0; i < 3; i++)
                for (size_t j = 0; j < 3; j++) {
                    double sum = 0;
                    for (size_t s = 0; s < n; s++)
                        for (size_t oy = 0; oy < oh; oy++)
                            for (size_t ox = 0; ox < ow; ox++) {
                                const ptrdiff_t iy = (ptrdiff_t)(oy + i) - (ptrdiff_t)p->pt;
                                const ptrdiff_t ix = (ptrdiff_t)(ox + j) - (ptrdiff_t)p->pl;
                                if (iy < 0 || ix < 0 || iy >= (ptrdiff_t)p->h || ix >= (ptrdiff_t)p->w) continue;
                                sum += (double)dy[((s * p->k + k) * oh + oy) * ow + ox] *
                                       x[((s * p->c + c) * p->h + (size_t)iy) * p->w + (size_t)ix];
                            }
                    dw[((k * p->c + c) * 3 + i) * 3 + j] = sum;
                }
}

/* max |got - want| / max|want| */
static double rel_max(const float *got, const double *want, size_t count) {
    double e = 0, m = 0;
    for (size_t i = 0; i < count; i++) {
        const double d = fabs(got[i] - want[i]);
        if (!(d <= e)) e = d;
        if (fabs(want[i]) > m) m = fabs(want[i]);
    }
    return m > 0 ? e / m : e;
}

typedef struct run_out {
    float *y, *dx, *dw;
    size_t ycount, xcount, wcount;
} run_out;

/* Build `model` (N(0,1) inputs and weights when normal, else th_build's), run forward and backward with dy,
 * copy y, dx and the weight gradient. lower_to_1: compile on 2 threads, then run on 1. */
static void run_net(const char *model, size_t n, size_t threads, int lower_to_1, int normal, const float *dy_in,
                    run_out *o, float **w_out, size_t *ycount, size_t *xcount) {
    th_net t;
    th_build(&t, model, n, 4242, threads);
    cnn_param pw;
    assert_int_equal(cnn_net_param_at(t.net, 0, &pw), CNN_OK);
    if (normal) {
        rng_state = 77;
        for (size_t i = 0; i < n * t.in_count; i++) t.x[i] = (float)nrand();
        for (size_t i = 0; i < pw.count; i++) pw.data[i] = (float)nrand();
    }
    if (lower_to_1) assert_int_equal(cnn_ctx_set_threads(t.ctx, 1), CNN_OK);
    o->ycount = n * t.out_count;
    o->xcount = n * t.in_count;
    o->wcount = pw.count;
    if (ycount) *ycount = o->ycount;
    if (xcount) *xcount = o->xcount;
    if (w_out) {
        *w_out = malloc(pw.count * sizeof(float));
        assert_non_null(*w_out);
        memcpy(*w_out, pw.data, pw.count * sizeof(float));
    }
    o->y = malloc(o->ycount * sizeof(float));
    o->dx = malloc(o->xcount * sizeof(float));
    o->dw = malloc(o->wcount * sizeof(float));
    assert_true(o->y && o->dx && o->dw);
    assert_int_equal(cnn_net_forward(t.net, t.x, n, 1), CNN_OK);
    memcpy(o->y, cnn_net_output(t.net, NULL), o->ycount * sizeof(float));
    if (dy_in) {
        assert_int_equal(cnn_net_backward(t.net, dy_in), CNN_OK);
        memcpy(o->dx, cnn_net_input_grad(t.net), o->xcount * sizeof(float));
        memcpy(o->dw, pw.grad, o->wcount * sizeof(float));
    }
    th_free(&t);
}

static void free_out(run_out *o) {
    free(o->y);
    free(o->dx);
    free(o->dw);
}

/* x of th_build for the same model and seed (needed by the reference) */
static float *net_input(const char *model, size_t n, size_t *count) {
    th_net t;
    th_build(&t, model, n, 4242, 1);
    *count = n * t.in_count;
    float *x = malloc(*count * sizeof(float));
    assert_non_null(x);
    memcpy(x, t.x, *count * sizeof(float));
    th_free(&t);
    return x;
}

static void check_large(const wcase *c) {
    char buf[512];
    const char *model = case_model(buf, sizeof buf, c, "winograd-f4x4");
    const conv_case cc = case_ref(c);
    size_t ycount = 0, xcount = 0;
    float *w = NULL;
    run_out o1, o2, ol;
    /* dy: sized from a first forward-only run */
    run_net(model, c->n, 1, 0, 0, NULL, &o1, NULL, &ycount, &xcount);
    free_out(&o1);
    float *dy = malloc(ycount * sizeof(float));
    assert_non_null(dy);
    th_fill_uniform(dy, ycount, 99, -1, 1);
    run_net(model, c->n, 1, 0, 0, dy, &o1, &w, NULL, NULL);
    run_net(model, c->n, 2, 0, 0, dy, &o2, NULL, NULL, NULL);
    run_net(model, c->n, 2, 1, 0, dy, &ol, NULL, NULL, NULL);
    assert_memory_equal(o1.y, o2.y, ycount * sizeof(float));
    assert_memory_equal(o1.dx, o2.dx, xcount * sizeof(float));
    assert_memory_equal(o1.dw, o2.dw, o1.wcount * sizeof(float));
    assert_memory_equal(o1.y, ol.y, ycount * sizeof(float));
    assert_memory_equal(o1.dx, ol.dx, xcount * sizeof(float));
    /* against float64 */
    size_t xc = 0;
    float *x = net_input(model, c->n, &xc);
    assert_int_equal(xc, xcount);
    double *xd = malloc(xcount * sizeof(double)), *wd = malloc(o1.wcount * sizeof(double));
    double *ref = malloc((ycount > xcount ? ycount : xcount) * sizeof(double));
    assert_true(xd && wd && ref);
    for (size_t i = 0; i < xcount; i++) xd[i] = x[i];
    for (size_t i = 0; i < o1.wcount; i++) wd[i] = w[i];
    th_net tb;
    th_build(&tb, model, c->n, 4242, 1);
    double *bd = NULL;
    if (c->bias) {
        cnn_param pb;
        assert_int_equal(cnn_net_param_at(tb.net, 1, &pb), CNN_OK);
        bd = malloc(pb.count * sizeof(double));
        assert_non_null(bd);
        for (size_t i = 0; i < pb.count; i++) bd[i] = pb.data[i];
    }
    th_free(&tb);
    ref_conv2d_forward(&cc.p, c->n, xd, wd, bd, ref);
    double e = rel_max(o1.y, ref, ycount);
    if (e > WINO4_FWD) fail_msg("forward: error %.3g relative to max|y|", e);
    ref_backward_data(&cc, c->n, w, dy, ref);
    e = rel_max(o1.dx, ref, xcount);
    if (e > WINO4_FWD) fail_msg("input gradient: error %.3g relative to max|dx|", e);
    free(bd);
    free(xd);
    free(wd);
    free(ref);
    free(x);
    free(w);
    free(dy);
    free_out(&o1);
    free_out(&o2);
    free_out(&ol);
}

static void test_f4_large(void **state) {
    (void)state;
    static const wcase L[] = {
        {64, 20, 19, 64, 1, 1, 1, 1, 1, 5},  /* chunks span samples */
        {96, 13, 30, 160, 2, 1, 0, 1, 0, 3}, /* asymmetric padding, no bias */
        {40, 41, 37, 24, 1, 1, 1, 1, 1, 2},  /* chunks split a sample */
    };
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) check_large(&L[i]);
}

/* Random N(0,1) inputs and weights, C = 256: the error of each algorithm against float64 (printed), and
 * F(4x4) within WINO4_NORMAL in both passes it runs. */
static void test_f4_accuracy(void **state) {
    (void)state;
    const wcase c = {256, 14, 14, 24, 1, 1, 1, 1, 0, 1};
    const conv_case cc = case_ref(&c);
    static const char *const algos[] = {"winograd-f4x4", "winograd-f2x2", "im2col"};
    for (int a = 0; a < 3; a++) {
        char buf[512];
        const char *model = case_model(buf, sizeof buf, &c, algos[a]);
        size_t ycount = 0, xcount = 0;
        run_out o;
        float *w = NULL;
        run_net(model, c.n, 2, 0, 1, NULL, &o, NULL, &ycount, &xcount);
        free_out(&o);
        float *dy = malloc(ycount * sizeof(float));
        assert_non_null(dy);
        rng_state = 5;
        for (size_t i = 0; i < ycount; i++) dy[i] = (float)nrand();
        run_net(model, c.n, 2, 0, 1, dy, &o, &w, NULL, NULL);
        /* the inputs run_net drew: rng_state = 77, x then w */
        rng_state = 77;
        double *xd = malloc(xcount * sizeof(double)), *wd = malloc(o.wcount * sizeof(double));
        double *ref = malloc((ycount > xcount ? ycount : xcount) * sizeof(double));
        assert_true(xd && wd && ref);
        for (size_t i = 0; i < xcount; i++) xd[i] = (float)nrand();
        for (size_t i = 0; i < o.wcount; i++) wd[i] = w[i];
        ref_conv2d_forward(&cc.p, c.n, xd, wd, NULL, ref);
        const double ef = rel_max(o.y, ref, ycount);
        ref_backward_data(&cc, c.n, w, dy, ref);
        const double eb = rel_max(o.dx, ref, xcount);
        double *refw = malloc(o.wcount * sizeof(double));
        assert_non_null(refw);
        ref_backward_weights(&cc, c.n, xd, dy, refw);
        const double ew = rel_max(o.dw, refw, c.k * c.c * 9);
        free(refw);
        printf("# N(0,1), C=256 K=24 14x14: %-14s forward error %.2e, input gradient %.2e, weight gradient %.2e "
               "(relative to max)\n", algos[a], ef, eb, ew);
        if (a == 0 && (ef > WINO4_NORMAL || eb > WINO4_NORMAL || ew > WINO4_NORMAL))
            fail_msg("F(4x4) error %.3g / %.3g / %.3g above %.g", ef, eb, ew, WINO4_NORMAL);
        free(xd);
        free(wd);
        free(ref);
        free(w);
        free(dy);
        free_out(&o);
    }
}

/* ---- choice, names, errors ---- */

static void test_f4_choice(void **state) {
    (void)state;
    static const struct {
        const char *model, *want;
    } C[] = {
        {"input c=32 h=13 w=13\nconv2d k=32 size=3 pad=1\n", "winograd-f4x4"},
        {"input c=32 h=12 w=13\nconv2d k=32 size=3 pad=1\n", "winograd-f2x2"}, /* 3x4 tiles of 4x4 */
        {"input c=512 h=7 w=7\nconv2d k=512 size=3 pad=1\n", "winograd-f2x2"},
        {"input c=31 h=9 w=9\nconv2d k=64 size=3 pad=1\n", "winograd-f2x2"},
        {"input c=64 h=9 w=9\nconv2d k=16 size=3 pad=1\n", "winograd-f2x2"},
        {"input c=64 h=9 w=9\nconv2d k=64 size=3 pad=1 algo=winograd\n", "winograd-f2x2"},
        {"input c=64 h=9 w=9\nconv2d k=64 size=3 pad=1 algo=winograd-f2x2\n", "winograd-f2x2"},
        {"input c=3 h=9 w=9\nconv2d k=4 size=3 algo=winograd-f4x4\n", "winograd-f4x4"},
        {"input c=64 h=9 w=9\nconv2d k=64 size=3 stride=2 pad=1\n", "im2col+gemm"},
    };
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        cnn_net *net = NULL, *net2 = NULL;
        assert_int_equal(cnn_net_parse(ctx, C[i].model, strlen(C[i].model), "t.cnn", &net), CNN_OK);
        expect_algo(net, C[i].want);
        /* print / parse round trip keeps the forced tile */
        char *text = NULL;
        assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
        assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "p.cnn", &net2), CNN_OK);
        expect_algo(net2, C[i].want);
        cnn_free(ctx, text);
        cnn_net_free(net);
        cnn_net_free(net2);
    }
    /* once compiled, the batch counts: 16 tiles per sample need 4 samples (64 tiles) for F(4x4); a forced
     * tile ignores the batch; a later compile at another batch chooses again, and the pass runs */
    static const struct {
        const char *model;
        size_t batch;
        const char *want;
    } B[] = {
        {"input c=32 h=14 w=14\nconv2d k=32 size=3 pad=1\n", 1, "winograd-f2x2"},
        {"input c=32 h=14 w=14\nconv2d k=32 size=3 pad=1\n", 3, "winograd-f2x2"},
        {"input c=32 h=14 w=14\nconv2d k=32 size=3 pad=1\n", 4, "winograd-f4x4"},
        {"input c=32 h=28 w=28\nconv2d k=32 size=3 pad=1\n", 1, "winograd-f2x2"}, /* 49 tiles */
        {"input c=32 h=28 w=28\nconv2d k=32 size=3 pad=1\n", 2, "winograd-f4x4"},
        {"input c=32 h=14 w=14\nconv2d k=32 size=3 pad=1 algo=winograd-f4x4\n", 1, "winograd-f4x4"},
    };
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++)
        for (int train = 0; train < 2; train++) {
            cnn_net *net = NULL;
            assert_int_equal(cnn_net_parse(ctx, B[i].model, strlen(B[i].model), "b.cnn", &net), CNN_OK);
            assert_int_equal(cnn_net_compile(net, B[i].batch, train ? CNN_COMPILE_TRAIN : 0), CNN_OK);
            expect_algo(net, B[i].want);
            float *x = calloc(B[i].batch * 32 * 28 * 28, sizeof(float));
            assert_non_null(x);
            for (size_t e = 0; e < B[i].batch * 32 * 14 * 14; e++) x[e] = (float)(e % 7) - 3.0f;
            assert_int_equal(cnn_net_forward(net, x, B[i].batch, train), CNN_OK);
            assert_int_equal(cnn_net_compile(net, 8, train ? CNN_COMPILE_TRAIN : 0), CNN_OK);
            expect_algo(net, "winograd-f4x4");
            assert_int_equal(cnn_net_forward(net, x, B[i].batch, train), CNN_OK);
            free(x);
            cnn_net_free(net);
        }
    cnn_ctx_free(ctx);
    th_expect_error("input c=4 h=5 w=5\nconv2d k=4 size=5 algo=winograd-f4x4\n", CNN_ERR_SHAPE,
                    "algo=winograd-f4x4 needs a 3x3 kernel");
    th_expect_error("input c=4 h=9 w=9\nconv2d k=4 size=3 stride=2 algo=winograd-f2x2\n", CNN_ERR_SHAPE,
                    "algo=winograd-f2x2 needs");
    th_expect_error("input c=4 h=9 w=9\nconv2d k=4 size=3 algo=winograd-f6x6\n", CNN_ERR_FORMAT, "algo");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f4_weights),     cmocka_unit_test(test_f4_transforms),
        cmocka_unit_test(test_f4_wgrad_kernels),
        cmocka_unit_test(test_f4_layer),       cmocka_unit_test(test_f4_layer_scalar),
        cmocka_unit_test(test_f4_large),       cmocka_unit_test(test_f4_accuracy),
        cmocka_unit_test(test_f4_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
