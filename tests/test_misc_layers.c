/* test_misc_layers.c — dropout and softmax.
 * dropout: fraction of zeros near p on a large tensor, every output is 0 or x/(1-p), the input gradient
 *   follows the same mask, eval is the identity, the mask is a function of the seed (same seed -> same
 *   mask, other seed -> other mask, 1 and 2 threads -> the same mask), p=0 is the identity, bad keys.
 * softmax: th_check (forward against float64, dx by central differences) over (c,1,1) and (c,h,w) inputs,
 *   large logits stay finite and sum to 1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref/ref_dense.h"

/* ---------------- dropout ---------------- */

typedef struct dnet {
    cnn_ctx *ctx;
    cnn_net *net;
} dnet;

static dnet dropout_net(const char *model, size_t batch, size_t threads) {
    dnet d = {0};
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&d.ctx, &o), CNN_OK);
    assert_int_equal(cnn_net_parse(d.ctx, model, strlen(model), "t.cnn", &d.net), CNN_OK);
    assert_int_equal(cnn_net_compile(d.net, batch, CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD), CNN_OK);
    return d;
}

static void dnet_free(dnet *d) {
    cnn_net_free(d->net);
    cnn_ctx_free(d->ctx);
}

/* Inputs bounded away from zero so a zero output means "dropped". */
static void fill_nonzero(float *x, size_t n, uint64_t seed) {
    th_fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = x[i] < 0 ? x[i] - 0.25f : x[i] + 0.25f;
}

#define DN 16
#define DC 8
#define DH 16
#define DW 16
#define DTOTAL (DN * DC * DH * DW)

static void test_dropout_mask(void **state) {
    (void)state;
    const double p = 0.3;
    dnet d = dropout_net("input c=8 h=16 w=16\ndropout p=0.3\n", DN, 1);
    float *x = malloc(DTOTAL * sizeof(float)), *y = malloc(DTOTAL * sizeof(float)),
          *dy = malloc(DTOTAL * sizeof(float)), *dx1 = malloc(DTOTAL * sizeof(float));
    fill_nonzero(x, DTOTAL, 1);
    th_fill_uniform(dy, DTOTAL, 2, -1.0f, 1.0f);
    cnn_net_set_seed(d.net, 42);
    assert_int_equal(cnn_net_forward(d.net, x, DN, 1), CNN_OK);
    size_t n = 0;
    const float *out = cnn_net_output(d.net, &n);
    assert_int_equal(n, DN);
    memcpy(y, out, DTOTAL * sizeof(float));
    size_t zeros = 0;
    for (size_t i = 0; i < DTOTAL; i++) {
        if (y[i] == 0.0f) {
            zeros++;
            continue;
        }
        double want = x[i] / (1.0 - p);
        assert_true(fabs(y[i] - want) <= 1e-6 * fabs(want));
    }
    /* binomial: sd = sqrt(p(1-p)/N) ~ 0.0025 for N = 32768; allow 6 sd */
    double frac = (double)zeros / DTOTAL;
    assert_true(fabs(frac - p) < 0.015);
    /* the input gradient uses the same mask and scale */
    assert_int_equal(cnn_net_backward(d.net, dy), CNN_OK);
    const float *dx = cnn_net_input_grad(d.net);
    assert_non_null(dx);
    for (size_t i = 0; i < DTOTAL; i++) {
        double want = y[i] == 0.0f ? 0.0 : dy[i] / (1.0 - p);
        assert_true(fabs(dx[i] - want) <= 1e-6 * fabs(want));
    }
    memcpy(dx1, dx, DTOTAL * sizeof(float));
    /* same seed: the same mask; the next step (seed advanced): another mask */
    cnn_net_set_seed(d.net, 42);
    assert_int_equal(cnn_net_forward(d.net, x, DN, 1), CNN_OK);
    assert_memory_equal(cnn_net_output(d.net, NULL), y, DTOTAL * sizeof(float));
    assert_int_equal(cnn_net_forward(d.net, x, DN, 1), CNN_OK);
    out = cnn_net_output(d.net, NULL);
    size_t differ = 0;
    for (size_t i = 0; i < DTOTAL; i++) differ += (out[i] == 0.0f) != (y[i] == 0.0f);
    assert_true(differ > DTOTAL / 10);
    cnn_net_set_seed(d.net, 43);
    assert_int_equal(cnn_net_forward(d.net, x, DN, 1), CNN_OK);
    out = cnn_net_output(d.net, NULL);
    differ = 0;
    for (size_t i = 0; i < DTOTAL; i++) differ += (out[i] == 0.0f) != (y[i] == 0.0f);
    assert_true(differ > DTOTAL / 10);
    /* eval: identity */
    assert_int_equal(cnn_net_forward(d.net, x, DN, 0), CNN_OK);
    assert_memory_equal(cnn_net_output(d.net, NULL), x, DTOTAL * sizeof(float));
    /* a smaller batch gets the prefix of the same mask (element indices are batch-global) */
    cnn_net_set_seed(d.net, 42);
    assert_int_equal(cnn_net_forward(d.net, x, 3, 1), CNN_OK);
    assert_memory_equal(cnn_net_output(d.net, NULL), y, 3 * DC * DH * DW * sizeof(float));

    /* 2 threads: bit-identical mask and output */
    dnet d2 = dropout_net("input c=8 h=16 w=16\ndropout p=0.3\n", DN, 2);
    cnn_net_set_seed(d2.net, 42);
    assert_int_equal(cnn_net_forward(d2.net, x, DN, 1), CNN_OK);
    assert_memory_equal(cnn_net_output(d2.net, NULL), y, DTOTAL * sizeof(float));
    assert_int_equal(cnn_net_backward(d2.net, dy), CNN_OK);
    assert_memory_equal(cnn_net_input_grad(d2.net), dx1, DTOTAL * sizeof(float));
    dnet_free(&d2);
    free(x), free(y), free(dy), free(dx1);
    dnet_free(&d);
}

static void test_dropout_two_threads_grad(void **state) {
    (void)state;
    enum { N = 5, K = 3 * 7 * 11 };
    float x[N * K], dy[N * K], dx1[N * K];
    fill_nonzero(x, N * K, 7);
    th_fill_uniform(dy, N * K, 8, -1.0f, 1.0f);
    for (size_t threads = 1; threads <= 2; threads++) {
        dnet d = dropout_net("input c=3 h=7 w=11\ndropout p=0.6\n", N, threads);
        cnn_net_set_seed(d.net, 9);
        assert_int_equal(cnn_net_forward(d.net, x, N, 1), CNN_OK);
        assert_int_equal(cnn_net_backward(d.net, dy), CNN_OK);
        if (threads == 1)
            memcpy(dx1, cnn_net_input_grad(d.net), sizeof dx1);
        else
            assert_memory_equal(cnn_net_input_grad(d.net), dx1, sizeof dx1);
        dnet_free(&d);
    }
}

static void test_dropout_p0_identity(void **state) {
    (void)state;
    enum { N = 3, K = 2 * 5 * 3 };
    float x[N * K], dy[N * K];
    fill_nonzero(x, N * K, 11);
    th_fill_uniform(dy, N * K, 12, -1.0f, 1.0f);
    dnet d = dropout_net("input c=2 h=5 w=3\ndropout p=0\n", N, 1);
    assert_int_equal(cnn_net_forward(d.net, x, N, 1), CNN_OK);
    assert_memory_equal(cnn_net_output(d.net, NULL), x, sizeof x);
    assert_int_equal(cnn_net_backward(d.net, dy), CNN_OK);
    assert_memory_equal(cnn_net_input_grad(d.net), dy, sizeof dy);
    dnet_free(&d);
}

static void test_dropout_bad_params(void **state) {
    (void)state;
    th_expect_error("input c=4 h=1 w=1\ndropout p=1\n", CNN_ERR_FORMAT, "p");
    th_expect_error("input c=4 h=1 w=1\ndropout p=1.5\n", CNN_ERR_FORMAT, "p");
    th_expect_error("input c=4 h=1 w=1\ndropout p=-0.1\n", CNN_ERR_FORMAT, "p");
    th_expect_error("input c=4 h=1 w=1\ndropout p=x\n", CNN_ERR_FORMAT, "p");
    th_expect_error("input c=4 h=1 w=1\ndropout rate=0.2\n", CNN_ERR_FORMAT, "rate");
}

/* ---------------- softmax ---------------- */

typedef struct sm_case {
    size_t c, hw;
} sm_case;

static void ref_sm(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params;
    (void)training;
    const sm_case *s = user;
    ref_softmax(n, s->c, s->hw, x, y);
}

static const th_tolerance SM_TOL = {.forward = 1e-6, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 0};

static void test_softmax_check(void **state) {
    (void)state;
    static const struct {
        const char *model;
        size_t n, threads;
        sm_case c;
    } cases[] = {
        {"input c=7 h=1 w=1\nsoftmax\n", 5, 1, {7, 1}},
        {"input c=5 h=3 w=2\nsoftmax\n", 3, 1, {5, 6}},
        {"input c=13 h=1 w=1\nsoftmax\n", 9, 2, {13, 1}},
        {"input c=3 h=2 w=5\nsoftmax\n", 4, 2, {3, 10}},
        {"input c=1 h=1 w=1\nsoftmax\n", 2, 1, {1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_net t;
        th_build(&t, cases[i].model, cases[i].n, 500 + i, cases[i].threads);
        /* spread the logits so the rows are far from uniform */
        for (size_t k = 0; k < t.n * t.in_count; k++) t.x[k] *= 4.0f;
        th_check(&t, ref_sm, (void *)&cases[i].c, 1, SM_TOL);
        th_check(&t, ref_sm, (void *)&cases[i].c, 0, SM_TOL);
        th_free(&t);
    }
}

static void test_softmax_large_logits(void **state) {
    (void)state;
    enum { N = 4, C = 9 };
    float x[N * C];
    double xd[N * C], yd[N * C];
    th_fill_uniform(x, N * C, 3, -1000.0f, 1000.0f);
    x[0] = 1000.0f, x[1] = 1000.0f; /* a tie at the top */
    for (size_t i = 0; i < C; i++) x[C + i] = -1000.0f + (float)i; /* all very negative */
    for (size_t i = 0; i < N * C; i++) xd[i] = x[i];
    ref_softmax(N, C, 1, xd, yd);
    dnet d = dropout_net("input c=9 h=1 w=1\nsoftmax\n", N, 1);
    assert_int_equal(cnn_net_forward(d.net, x, N, 0), CNN_OK);
    const float *y = cnn_net_output(d.net, NULL);
    for (size_t i = 0; i < N; i++) {
        double s = 0;
        for (size_t k = 0; k < C; k++) {
            assert_true(isfinite(y[i * C + k]));
            assert_true(fabs(y[i * C + k] - yd[i * C + k]) <= 1e-6);
            s += y[i * C + k];
        }
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    assert_true(fabs(y[0] - 0.5) < 1e-6);
    dnet_free(&d);
}

/* NaN in a weight reaches the outputs: through dense, dropout (dropped or not), batchnorm and softmax. */
static void test_nan_propagates(void **state) {
    (void)state;
    enum { N = 6 };
    float x[N * 4];
    fill_nonzero(x, N * 4, 77);
    dnet d = dropout_net("input c=4 h=1 w=1\ndense name=fc out=3\ndropout p=0.5\nbatchnorm name=bn\n", N, 1);
    cnn_param w;
    assert_int_equal(cnn_net_param_find(d.net, "fc.weight", &w), CNN_OK);
    w.data[0] = NAN; /* output feature 0 */
    assert_int_equal(cnn_net_forward(d.net, x, N, 1), CNN_OK);
    const float *y = cnn_net_output(d.net, NULL);
    for (size_t i = 0; i < N; i++) {
        assert_true(isnan(y[i * 3 + 0]));
        assert_false(isnan(y[i * 3 + 1]));
    }
    assert_int_equal(cnn_net_forward(d.net, x, N, 0), CNN_OK);
    y = cnn_net_output(d.net, NULL);
    for (size_t i = 0; i < N; i++) assert_true(isnan(y[i * 3 + 0]));
    dnet_free(&d);

    dnet s = dropout_net("input c=4 h=1 w=1\ndense name=fc out=3\nsoftmax\n", N, 1);
    assert_int_equal(cnn_net_param_find(s.net, "fc.weight", &w), CNN_OK);
    w.data[5] = NAN; /* output feature 1: every softmax row becomes NaN */
    assert_int_equal(cnn_net_forward(s.net, x, N, 0), CNN_OK);
    y = cnn_net_output(s.net, NULL);
    for (size_t i = 0; i < N * 3; i++) assert_true(isnan(y[i]));
    dnet_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_dropout_two_threads_grad),
        cmocka_unit_test(test_dropout_p0_identity),
        cmocka_unit_test(test_dropout_bad_params),
        cmocka_unit_test(test_softmax_check),
        cmocka_unit_test(test_softmax_large_logits),
        cmocka_unit_test(test_nan_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
