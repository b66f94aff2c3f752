/* test_conv_1x1.c — conv2d's "gemm-1x1" algorithm (1x1 kernels without padding, stride 1 or strided;
 * src/layers/conv2d.c pw_run) and the packed-A SGEMM it runs on (kernels.h: sgemm_pack_a / sgemm_pa).
 *
 * Layer cases, each on the widest ISA and again with CNN_ISA=scalar, on 1 and 2 threads: forward
 * (training and inference compiles), input gradient (stored, and accumulated when the input has a second
 * consumer) and weight and bias gradients, all against float64 references written here from the
 * definitions (y = b + W x at the strided positions; dx = W^T dy scattered back, zero elsewhere;
 * dW = sum over samples and positions of dy x^T; db = sum of dy). Shapes: odd C, K and H*W (tails of the
 * 6x16 and 4x8 tiles), depths over one K slice (C = 300 forward, K = 270 backward-data), several column
 * units per image, stride 2, stride 2x3 (rows and columns that no output reads, whose gradient must be
 * zero), batch 1 with M > N*H*W (the row-split mode), bias on and off. 1, 2 and 3 threads bit-identical
 * (both split modes). Batch-1 inference with pre-packed weights (winograd with 16 tiles, strided im2col,
 * strided 1x1) equal to the training forward bitwise on 1, 2 and 3 threads. The packed-A SGEMM: bit-identical to the table's sgemm (alpha 1, beta 0 and 1,
 * both op(A), op(B) transposed or not), with a row bias equal to sgemm followed by the bias add, and row
 * sub-blocks (A packed from a row offset, or the whole packing from a multiple of the tile height
 * sgemm_mr) equal to the same rows of the whole product.
 *
 * Tolerance, per element: |got - want| <= 1e-5 * sqrt(depth) * (sum of |terms|) + 1e-30, where depth
 * is the number of products in the sum (C, K, or N*OH*OW). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "harness.h"
#include "kernels/kernels.h"

typedef struct pw_case {
    const char *model; /* input + one 1x1 conv2d (layer 1) */
    size_t n, c, h, w, k, sh, sw;
    int bias;
} pw_case;

static size_t out_len(size_t len, size_t s) { return (len - 1) / s + 1; }

static void check_close(const char *what, const float *got, const double *want, const double *scale, size_t count,
                        size_t depth) {
    const double tol = 1e-5 * sqrt((double)depth);
    for (size_t i = 0; i < count; i++) {
        const double err = fabs((double)got[i] - want[i]);
        if (!(err <= tol * scale[i] + 1e-30))
            fail_msg("%s[%zu]: got %.9g want %.9g (err %.3g, allowed %.3g)", what, i, got[i], want[i], err,
                     tol * scale[i] + 1e-30);
    }
}

static void get_param(cnn_net *net, const char *name, cnn_param *p) {
    assert_int_equal(cnn_net_param_find(net, name, p), CNN_OK);
}

/* Forward, input gradient and parameter gradients of c->model against the float64 definitions. */
static void run_case(const pw_case *c, size_t threads) {
    th_net t;
    th_build(&t, c->model, c->n, 7000 + c->n * 31 + c->c + threads, threads);
    const size_t oh = out_len(c->h, c->sh), ow = out_len(c->w, c->sw), P = oh * ow, hw = c->h * c->w;
    assert_int_equal(t.out.c, c->k);
    assert_int_equal(t.out.h, oh);
    assert_int_equal(t.out.w, ow);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "gemm-1x1");
    cnn_param pw, pb;
    assert_int_equal(cnn_net_param_at(t.net, 0, &pw), CNN_OK);
    if (c->bias) assert_int_equal(cnn_net_param_at(t.net, 1, &pb), CNN_OK);
    assert_int_equal(pw.count, c->k * c->c);
    const float *W = pw.data, *B = c->bias ? pb.data : NULL, *x = t.x;
    const size_t ny = c->n * c->k * P, nx = c->n * c->c * hw;
    double *y = calloc(ny, sizeof *y), *ys = calloc(ny, sizeof *ys), *dx = calloc(nx, sizeof *dx);
    double *dxs = calloc(nx, sizeof *dxs), *dw = calloc(c->k * c->c, sizeof *dw);
    double *dws = calloc(c->k * c->c, sizeof *dws), *db = calloc(c->k, sizeof *db), *dbs = calloc(c->k, sizeof *dbs);
    float *dy = malloc(ny * sizeof *dy);
    assert_true(y && ys && dx && dxs && dw && dws && db && dbs && dy);
    th_fill_uniform(dy, ny, 99 + c->k, -1, 1);
    for (size_t s = 0; s < c->n; s++)
        for (size_t o = 0; o < c->k; o++)
            for (size_t oy = 0; oy < oh; oy++)
                for (size_t ox = 0; ox < ow; ox++) {
                    const size_t yi = ((s * c->k + o) * oh + oy) * ow + ox;
                    double acc = B ? B[o] : 0.0, sc = B ? fabs(B[o]) : 0.0;
                    const double g = dy[yi];
                    for (size_t ci = 0; ci < c->c; ci++) {
                        const size_t xi = (s * c->c + ci) * hw + oy * c->sh * c->w + ox * c->sw;
                        acc += (double)W[o * c->c + ci] * x[xi];
                        sc += fabs((double)W[o * c->c + ci] * x[xi]);
                        dx[xi] += (double)W[o * c->c + ci] * g;
                        dxs[xi] += fabs((double)W[o * c->c + ci] * g);
                        dw[o * c->c + ci] += g * x[xi];
                        dws[o * c->c + ci] += fabs(g * x[xi]);
                    }
                    y[yi] = acc;
                    ys[yi] = sc;
                    db[o] += g;
                    dbs[o] += fabs(g);
                }
    /* training forward + backward */
    assert_int_equal(cnn_net_forward(t.net, x, c->n, 1), CNN_OK);
    size_t got_n = 0;
    check_close("y", cnn_net_output(t.net, &got_n), y, ys, ny, c->c);
    assert_int_equal(got_n, c->n);
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    check_close("dx", cnn_net_input_grad(t.net), dx, dxs, nx, c->k);
    check_close("dW", pw.grad, dw, dws, c->k * c->c, c->n * P);
    if (c->bias) check_close("db", pb.grad, db, dbs, c->k, c->n * P);
    /* a second backward gives the same (nothing accumulates across calls) */
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    check_close("dx again", cnn_net_input_grad(t.net), dx, dxs, nx, c->k);
    /* inference compile */
    assert_int_equal(cnn_net_compile(t.net, c->n, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(t.net, x, c->n, 0), CNN_OK);
    check_close("y (inference)", cnn_net_output(t.net, &got_n), y, ys, ny, c->c);
    free(y), free(ys), free(dx), free(dxs), free(dw), free(dws), free(db), free(dbs), free(dy);
    th_free(&t);
}

static const pw_case cases[] = {
    {"input c=5 h=7 w=9\nconv2d k=6 size=1\n", 3, 5, 7, 9, 6, 1, 1, 1},
    {"input c=37 h=11 w=13\nconv2d k=29 size=1 bias=0\n", 2, 37, 11, 13, 29, 1, 1, 0},
    /* several column units per image (P = 460), C over one K slice (300 > 256) */
    {"input c=300 h=20 w=23\nconv2d k=20 size=1\n", 2, 300, 20, 23, 20, 1, 1, 1},
    /* backward-data depth K = 270 over one K slice; C = 9 (M = 9 rows in backward-data) */
    {"input c=9 h=5 w=7\nconv2d k=270 size=1\n", 2, 9, 5, 7, 270, 1, 1, 1},
    /* batch 1 with M > N*P: the row split (forward M = 70 > 20; backward-data M = 24 > 20) */
    {"input c=24 h=4 w=5\nconv2d k=70 size=1\n", 1, 24, 4, 5, 70, 1, 1, 1},
    /* strided: ResNet's downsample shortcut shape in small, odd sizes (OH 5, OW 6) */
    {"input c=13 h=9 w=11\nconv2d k=10 size=1 stride=2\n", 3, 13, 9, 11, 10, 2, 2, 1},
    /* stride 2 x 3: row 9 and column 13 are read by no output (their gradient must be 0) */
    {"input c=7 h=10 w=14\nconv2d k=11 size=1 stride_h=2 stride_w=3 bias=0\n", 2, 7, 10, 14, 11, 2, 3, 0},
    /* strided, batch 1, M > N*P (row split), several row blocks (OW 40: 6 output rows per unit) */
    {"input c=20 h=7 w=7\nconv2d k=64 size=1 stride=2\n", 1, 20, 7, 7, 64, 2, 2, 1},
    {"input c=6 h=30 w=80\nconv2d k=17 size=1 stride=2\n", 2, 6, 30, 80, 17, 2, 2, 1},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void all_cases(void) {
    for (size_t i = 0; i < N_CASES; i++)
        for (size_t threads = 1; threads <= 2; threads++) run_case(&cases[i], threads);
}

static void with_scalar(void (*fn)(void)) {
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CNN_ISA", "scalar", 1);
    fn();
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}

static void test_layer(void **state) {
    (void)state;
    all_cases();
}
static void test_layer_scalar(void **state) {
    (void)state;
    with_scalar(all_cases);
}

/* y = conv_a(x) + conv_b(x): the second consumer's input gradient adds to the first one's. */
static void accumulate_cases(void) {
    static const char *const models[] = {
        "input name=in c=11 h=9 w=7\nconv2d name=a k=6 size=1\nconv2d name=b from=in k=6 size=1 bias=0\n"
        "add from=a,b\n",
        "input name=in c=11 h=9 w=7\nconv2d name=a k=6 size=1 stride=2\nconv2d name=b from=in k=6 size=3 "
        "stride=2 pad=1\nadd from=a,b\n",
        "input name=in c=11 h=9 w=7\nconv2d name=b k=6 size=3 stride=2 pad=1\nconv2d name=a from=in k=6 size=1 "
        "stride=2\nadd from=b,a\n",
    };
    for (size_t m = 0; m < 3; m++)
        for (size_t threads = 1; threads <= 2; threads++) {
            th_net t;
            th_build(&t, models[m], 2, 40 + m, threads);
            cnn_param wa, wb;
            get_param(t.net, "a.weight", &wa);
            get_param(t.net, "b.weight", &wb);
            const int strided = m > 0;
            const size_t oh = strided ? 5 : 9, ow = strided ? 4 : 7, hw = 63, ny = 2 * 6 * oh * ow;
            float *dy = malloc(ny * sizeof *dy);
            double *dx = calloc(2 * 11 * hw, sizeof *dx), *sc = calloc(2 * 11 * hw, sizeof *sc);
            assert_true(dy && dx && sc);
            th_fill_uniform(dy, ny, 5 + m, -1, 1);
            for (size_t s = 0; s < 2; s++)
                for (size_t o = 0; o < 6; o++)
                    for (size_t oy = 0; oy < oh; oy++)
                        for (size_t ox = 0; ox < ow; ox++) {
                            const double g = dy[((s * 6 + o) * oh + oy) * ow + ox];
                            for (size_t ci = 0; ci < 11; ci++) {
                                /* conv a: 1x1 at (oy*st, ox*st) */
                                const size_t st = strided ? 2 : 1, xi = (s * 11 + ci) * hw + oy * st * 7 + ox * st;
                                dx[xi] += wa.data[o * 11 + ci] * g;
                                sc[xi] += fabs(wa.data[o * 11 + ci] * g);
                                for (size_t i = 0; i < (strided ? 3u : 1u); i++)
                                    for (size_t j = 0; j < (strided ? 3u : 1u); j++) {
                                        const ptrdiff_t yy = (ptrdiff_t)(oy * st + i) - (strided ? 1 : 0);
                                        const ptrdiff_t xx = (ptrdiff_t)(ox * st + j) - (strided ? 1 : 0);
                                        if (yy < 0 || yy >= 9 || xx < 0 || xx >= 7) continue;
                                        const size_t xj = (s * 11 + ci) * hw + (size_t)yy * 7 + (size_t)xx;
                                        const double wv = strided ? wb.data[((o * 11 + ci) * 3 + i) * 3 + j]
                                                                  : wb.data[o * 11 + ci];
                                        dx[xj] += wv * g;
                                        sc[xj] += fabs(wv * g);
                                    }
                            }
                        }
            assert_int_equal(cnn_net_forward(t.net, t.x, 2, 1), CNN_OK);
            assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
            check_close("dx (two consumers)", cnn_net_input_grad(t.net), dx, sc, 2 * 11 * hw, 6 * 9 * 2);
            free(dy), free(dx), free(sc);
            th_free(&t);
        }
}
static void test_accumulate(void **state) {
    (void)state;
    accumulate_cases();
    with_scalar(accumulate_cases);
}

/* Output, input gradient and parameter gradients bit-identical on 1, 2 and 3 threads. */
static void threads_cases(void) {
    for (size_t i = 0; i < N_CASES; i++) {
        const pw_case *c = &cases[i];
        th_net t[3];
        const float *y[3], *dx[3];
        float *dy = NULL;
        for (size_t k = 0; k < 3; k++) {
            th_build(&t[k], c->model, c->n, 555, k + 1);
            assert_int_equal(cnn_net_forward(t[k].net, t[k].x, c->n, 1), CNN_OK);
            size_t nn;
            y[k] = cnn_net_output(t[k].net, &nn);
            if (!dy) {
                dy = malloc(c->n * t[0].out_count * sizeof *dy);
                assert_non_null(dy);
                th_fill_uniform(dy, c->n * t[0].out_count, 6, -1, 1);
            }
            assert_int_equal(cnn_net_backward(t[k].net, dy), CNN_OK);
            dx[k] = cnn_net_input_grad(t[k].net);
        }
        for (size_t k = 1; k < 3; k++) {
            assert_memory_equal(y[0], y[k], c->n * t[0].out_count * sizeof(float));
            assert_memory_equal(dx[0], dx[k], c->n * t[0].in_count * sizeof(float));
            for (size_t p = 0; p < cnn_net_num_params(t[0].net); p++) {
                cnn_param a, b;
                assert_int_equal(cnn_net_param_at(t[0].net, p, &a), CNN_OK);
                assert_int_equal(cnn_net_param_at(t[k].net, p, &b), CNN_OK);
                if (a.trainable) assert_memory_equal(a.grad, b.grad, a.count * sizeof(float));
            }
        }
        free(dy);
        for (size_t k = 0; k < 3; k++) th_free(&t[k]);
    }
}
static void test_threads_bitwise(void **state) {
    (void)state;
    threads_cases();
    with_scalar(threads_cases);
}

/* Batch-1 inference (pre-packed weights, output channels split over the threads when an image has few
 * columns): a winograd layer with 16 tiles, a strided im2col layer and a strided 1x1, on 1, 2 and 3
 * threads; the inference forward must equal the training forward (which packs per call) bitwise. */
static void infer_cases(void) {
    static const char *const model = "input c=32 h=7 w=7\nconv2d k=48 size=3 pad=1\nrelu\n"
                                     "conv2d k=40 size=3 stride=2 pad=1\nconv2d k=30 size=1 stride=2\n"
                                     "conv2d k=26 size=1\nflatten\n";
    for (size_t threads = 1; threads <= 3; threads++) {
        th_net t;
        th_build(&t, model, 1, 77, threads);
        cnn_layer_info info;
        assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
        assert_string_equal(info.algorithm, "winograd-f2x2");
        assert_int_equal(cnn_net_layer_info(t.net, 3, &info), CNN_OK);
        assert_string_equal(info.algorithm, "im2col+gemm");
        assert_int_equal(cnn_net_forward(t.net, t.x, 1, 1), CNN_OK);
        size_t nn = 0;
        float want[26 * 4];
        assert_int_equal(t.out_count, 26 * 4);
        memcpy(want, cnn_net_output(t.net, &nn), sizeof want);
        assert_int_equal(cnn_net_compile(t.net, 1, 0), CNN_OK);
        assert_int_equal(cnn_net_forward(t.net, t.x, 1, 0), CNN_OK);
        assert_memory_equal(cnn_net_output(t.net, &nn), want, sizeof want);
        th_free(&t);
    }
}
static void test_infer_batch1(void **state) {
    (void)state;
    infer_cases();
    with_scalar(infer_cases);
}

/* The packed-A SGEMM against the table's sgemm, bitwise. */
static void packed_a_kernel(const cnn_kernels *kn) {
    static const size_t shapes[][3] = {{1, 1, 1}, {6, 16, 4}, {7, 17, 5}, {13, 33, 257}, {70, 45, 300}, {145, 20, 31}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++)
                for (int beta1 = 0; beta1 <= 1; beta1++) {
                    const size_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                    const size_t lda = ta ? M + 3 : K + 2, ldb = tb ? K + 1 : N + 5, ldc = N + 2;
                    float *A = malloc((ta ? K : M) * lda * sizeof *A), *Bm = malloc((tb ? N : K) * ldb * sizeof *Bm);
                    float *C0 = malloc(M * ldc * sizeof *C0), *C1 = malloc(M * ldc * sizeof *C1);
                    float *C2 = malloc(M * ldc * sizeof *C2), *bias = malloc(M * sizeof *bias);
                    float *Ap = aligned_alloc(64, cnn_round_up(CNN_F32_GEMM_PA_FLOATS(M, K) * sizeof(float), 64));
                    assert_true(A && Bm && C0 && C1 && C2 && bias && Ap);
                    th_fill_uniform(A, (ta ? K : M) * lda, 1 + si, -1, 1);
                    th_fill_uniform(Bm, (tb ? N : K) * ldb, 2 + si, -1, 1);
                    th_fill_uniform(C0, M * ldc, 3 + si, -1, 1);
                    th_fill_uniform(bias, M, 4 + si, -1, 1);
                    memcpy(C1, C0, M * ldc * sizeof *C0);
                    const float beta = beta1 ? 1.0f : 0.0f;
                    kn->sgemm(ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, beta, C0, ldc);
                    kn->sgemm_pack_a(ta, M, K, A, lda, Ap);
                    kn->sgemm_pa(M, N, K, Ap, tb, Bm, ldb, beta, NULL, C1, ldc, NULL);
                    assert_memory_equal(C0, C1, M * ldc * sizeof *C0);
                    if (beta1) {
                        free(A), free(Bm), free(C0), free(C1), free(C2), free(bias), free(Ap);
                        continue;
                    }
                    /* bias: sgemm then + bias[i] */
                    kn->sgemm_pa(M, N, K, Ap, tb, Bm, ldb, 0.0f, bias, C1, ldc, NULL);
                    for (size_t i = 0; i < M; i++)
                        for (size_t j = 0; j < N; j++) C0[i * ldc + j] += bias[i];
                    assert_memory_equal(C0, C1, M * ldc * sizeof *C0);
                    /* rows [m0, M) packed alone give the same rows */
                    const size_t m0 = M / 3 + (M > 1);
                    if (m0 < M) {
                        memcpy(C2, C1, M * ldc * sizeof *C2);
                        for (size_t i = m0; i < M; i++)
                            for (size_t j = 0; j < N; j++) C2[i * ldc + j] = NAN;
                        kn->sgemm_pack_a(ta, M - m0, K, ta ? A + m0 : A + m0 * lda, lda, Ap);
                        kn->sgemm_pa(M - m0, N, K, Ap, tb, Bm, ldb, 0.0f, bias + m0, C2 + m0 * ldc, ldc, NULL);
                        assert_memory_equal(C1, C2, M * ldc * sizeof *C2);
                    }
                    /* rows from a multiple of the tile height: a sub-pointer of the whole packing */
                    assert_true(kn->sgemm_mr >= 1 && CNN_F32_GEMM_PA_ROW_ALIGN % kn->sgemm_mr == 0);
                    const size_t m1 = kn->sgemm_mr * (M / (2 * kn->sgemm_mr));
                    if (m1 > 0 && m1 < M) {
                        memcpy(C2, C1, M * ldc * sizeof *C2);
                        for (size_t i = m1; i < M; i++)
                            for (size_t j = 0; j < N; j++) C2[i * ldc + j] = NAN;
                        kn->sgemm_pack_a(ta, M, K, A, lda, Ap);
                        kn->sgemm_pa(M - m1, N, K, Ap + m1 * K, tb, Bm, ldb, 0.0f, bias + m1, C2 + m1 * ldc, ldc,
                                     NULL);
                        assert_memory_equal(C1, C2, M * ldc * sizeof *C2);
                    }
                    free(A), free(Bm), free(C0), free(C1), free(C2), free(bias), free(Ap);
                }
}
static void test_packed_a(void **state) {
    (void)state;
    cnn_kernels kn;
    cnn_kernels_select(&kn, CNN_ISA_SCALAR);
    assert_int_equal(kn.isa, CNN_ISA_SCALAR);
    packed_a_kernel(&kn);
    cnn_kernels_select(&kn, CNN_ISA_AVX512);
    if (kn.isa != CNN_ISA_SCALAR) packed_a_kernel(&kn);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_a),
        cmocka_unit_test(test_layer),
        cmocka_unit_test(test_layer_scalar),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_infer_batch1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
