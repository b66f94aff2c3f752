/* test_loss.c — softmax_ce and mse through the public API: cnn_net_loss (loss, correct, n) against the
 * float64 references, the output (probabilities / copy), the input gradient after cnn_net_backward(NULL)
 * against central differences of the float64 loss, label smoothing, large logits (1000) that must not
 * overflow, ties, eval-mode loss, and bad parameters / shapes. */
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

typedef struct lnet {
    cnn_ctx *ctx;
    cnn_net *net;
} lnet;

static lnet loss_net(const char *model, size_t batch, size_t threads) {
    lnet d = {0};
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&d.ctx, &o), CNN_OK);
    assert_int_equal(cnn_net_parse(d.ctx, model, strlen(model), "t.cnn", &d.net), CNN_OK);
    assert_int_equal(cnn_net_has_loss(d.net), 1);
    assert_int_equal(cnn_net_compile(d.net, batch, CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD), CNN_OK);
    return d;
}

static void lnet_free(lnet *d) {
    cnn_net_free(d->net);
    cnn_ctx_free(d->ctx);
}

static int32_t *random_labels(size_t n, size_t classes, uint64_t seed) {
    float *u = malloc(n * sizeof(float));
    int32_t *l = malloc(n * sizeof(int32_t));
    th_fill_uniform(u, n, seed, 0.0f, (float)classes);
    for (size_t i = 0; i < n; i++) {
        l[i] = (int32_t)u[i];
        if (l[i] >= (int32_t)classes) l[i] = (int32_t)classes - 1;
    }
    free(u);
    return l;
}

/* max_i |got_i - want_i| / max(max_i |want_i|, floor) */
static double rel_err_d(const float *got, const double *want, size_t n, double floor) {
    double m = floor, e = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(got[i] - want[i]));
    return e / m;
}

/* ---------------- softmax_ce ---------------- */

static void check_softmax_ce(const char *model, size_t n, size_t c, double smoothing, float scale, size_t threads,
                             uint64_t seed) {
    lnet d = loss_net(model, n, threads);
    float *x = malloc(n * c * sizeof(float));
    double *xd = malloc(n * c * sizeof(double)), *pd = malloc(n * c * sizeof(double)),
           *fd = malloc(n * c * sizeof(double));
    th_fill_uniform(x, n * c, seed, -scale, scale);
    int32_t *labels = random_labels(n, c, seed + 1);
    for (size_t i = 0; i < n * c; i++) xd[i] = x[i];
    size_t want_correct = 0;
    double want = ref_softmax_ce(n, c, xd, labels, smoothing, &want_correct);
    ref_softmax(n, c, 1, xd, pd);

    assert_int_equal(cnn_net_forward(d.net, x, n, 1), CNN_OK);
    size_t got_n = 0;
    const float *y = cnn_net_output(d.net, &got_n);
    assert_int_equal(got_n, n);
    double e = rel_err_d(y, pd, n * c, 1.0);
    if (e > 1e-6) fail_msg("softmax_ce probabilities: rel err %g", e);
    cnn_loss_stats st;
    assert_int_equal(cnn_net_loss(d.net, labels, NULL, &st), CNN_OK);
    assert_int_equal(st.n, n);
    assert_int_equal(st.correct, want_correct);
    assert_true(isfinite(st.loss));
    if (fabs(st.loss - want) > 1e-6 * fmax(1.0, fabs(want)))
        fail_msg("softmax_ce loss %.12g, want %.12g", st.loss, want);

    /* input gradient vs central differences of the float64 loss */
    assert_int_equal(cnn_net_backward(d.net, NULL), CNN_OK);
    const float *dx = cnn_net_input_grad(d.net);
    assert_non_null(dx);
    const double h = 1e-6 * fmax(1.0, scale);
    for (size_t i = 0; i < n * c; i++) {
        double keep = xd[i];
        xd[i] = keep + h;
        double lp = ref_softmax_ce(n, c, xd, labels, smoothing, NULL);
        xd[i] = keep - h;
        double lm = ref_softmax_ce(n, c, xd, labels, smoothing, NULL);
        xd[i] = keep;
        fd[i] = (lp - lm) / (2 * h);
    }
    e = rel_err_d(dx, fd, n * c, 1e-2);
    if (e > 1e-5) fail_msg("softmax_ce dx vs central differences: rel err %g", e);

    /* eval mode: the same loss from the same logits */
    assert_int_equal(cnn_net_forward(d.net, x, n, 0), CNN_OK);
    cnn_loss_stats st2;
    assert_int_equal(cnn_net_loss(d.net, labels, NULL, &st2), CNN_OK);
    assert_true(fabs(st2.loss - st.loss) <= 1e-12 * fmax(1.0, fabs(st.loss)));
    assert_int_equal(st2.correct, st.correct);

    free(x), free(xd), free(pd), free(fd), free(labels);
    lnet_free(&d);
}

static void test_softmax_ce(void **state) {
    (void)state;
    check_softmax_ce("input c=7 h=1 w=1\nsoftmax_ce\n", 9, 7, 0.0, 3.0f, 1, 10);
    check_softmax_ce("input c=7 h=1 w=1\nsoftmax_ce\n", 13, 7, 0.0, 3.0f, 2, 11);
    check_softmax_ce("input c=2 h=1 w=1\nsoftmax_ce\n", 4, 2, 0.0, 2.0f, 1, 12);
}

static void test_softmax_ce_label_smoothing(void **state) {
    (void)state;
    check_softmax_ce("input c=7 h=1 w=1\nsoftmax_ce label_smoothing=0.1\n", 9, 7, 0.1, 3.0f, 1, 20);
    check_softmax_ce("input c=11 h=1 w=1\nsoftmax_ce label_smoothing=0.35\n", 6, 11, 0.35, 2.0f, 2, 21);
}

static void test_softmax_ce_large_logits(void **state) {
    (void)state;
    /* logits in [-1000, 1000]: exp would overflow without the max shift */
    check_softmax_ce("input c=7 h=1 w=1\nsoftmax_ce\n", 8, 7, 0.0, 1000.0f, 1, 30);
    check_softmax_ce("input c=7 h=1 w=1\nsoftmax_ce label_smoothing=0.1\n", 8, 7, 0.1, 1000.0f, 1, 31);

    /* hand-made: a sure wrong answer costs exactly the logit gap; a tie counts the first maximum */
    lnet d = loss_net("input c=3 h=1 w=1\nsoftmax_ce\n", 2, 1);
    float x[6] = {1000.0f, -1000.0f, 0.0f, 1000.0f, 1000.0f, 1000.0f};
    int32_t labels[2] = {1, 0};
    assert_int_equal(cnn_net_forward(d.net, x, 2, 1), CNN_OK);
    cnn_loss_stats st;
    assert_int_equal(cnn_net_loss(d.net, labels, NULL, &st), CNN_OK);
    /* sample 0: lse = 1000 + log(1 + e^-2000 + e^-1000) = 1000, loss = 2000; sample 1: log 3 */
    double want = (2000.0 + log(3.0)) / 2;
    assert_true(fabs(st.loss - want) < 1e-9 * want);
    assert_int_equal(st.correct, 1); /* sample 1: tie, first maximum is class 0 == label */
    assert_int_equal(cnn_net_backward(d.net, NULL), CNN_OK);
    const float *dx = cnn_net_input_grad(d.net);
    const double wdx[6] = {0.5, -0.5, 0, (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6};
    for (size_t i = 0; i < 6; i++) {
        assert_true(isfinite(dx[i]));
        assert_true(fabs(dx[i] - wdx[i]) < 1e-6);
    }
    lnet_free(&d);
}

/* softmax_ce after a dense layer: the loss gradient reaches the network input through dense. */
static void test_softmax_ce_after_dense(void **state) {
    (void)state;
    enum { N = 6, IN = 10, C = 5 };
    lnet d = loss_net("input c=10 h=1 w=1\ndense name=fc out=5\nsoftmax_ce label_smoothing=0.2\n", N, 1);
    cnn_param pw, pb;
    assert_int_equal(cnn_net_param_find(d.net, "fc.weight", &pw), CNN_OK);
    assert_int_equal(cnn_net_param_find(d.net, "fc.bias", &pb), CNN_OK);
    float x[N * IN];
    th_fill_uniform(x, N * IN, 40, -1, 1);
    th_fill_uniform(pb.data, C, 41, -0.5f, 0.5f);
    int32_t *labels = random_labels(N, C, 42);
    double w[C * IN], b[C], xd[N * IN], z[N * C];
    for (size_t i = 0; i < C * IN; i++) w[i] = pw.data[i];
    for (size_t i = 0; i < C; i++) b[i] = pb.data[i];
    for (size_t i = 0; i < N * IN; i++) xd[i] = x[i];
    assert_int_equal(cnn_net_forward(d.net, x, N, 1), CNN_OK);
    cnn_loss_stats st;
    assert_int_equal(cnn_net_loss(d.net, labels, NULL, &st), CNN_OK);
    ref_dense_forward(N, IN, C, xd, w, b, z);
    double want = ref_softmax_ce(N, C, z, labels, 0.2, NULL);
    assert_true(fabs(st.loss - want) < 1e-5 * fmax(1, want));
    assert_int_equal(cnn_net_backward(d.net, NULL), CNN_OK);
    /* d loss / d bias by central differences */
    double fd[C];
    for (size_t k = 0; k < C; k++) {
        double keep = b[k], lp, lm;
        b[k] = keep + 1e-6;
        ref_dense_forward(N, IN, C, xd, w, b, z);
        lp = ref_softmax_ce(N, C, z, labels, 0.2, NULL);
        b[k] = keep - 1e-6;
        ref_dense_forward(N, IN, C, xd, w, b, z);
        lm = ref_softmax_ce(N, C, z, labels, 0.2, NULL);
        b[k] = keep;
        fd[k] = (lp - lm) / 2e-6;
    }
    double e = rel_err_d(pb.grad, fd, C, 1e-2);
    if (e > 1e-4) fail_msg("dense bias grad through softmax_ce: rel err %g", e);
    free(labels);
    lnet_free(&d);
}

/* ---------------- mse ---------------- */

static void check_mse(const char *model, size_t n, size_t k, size_t threads, uint64_t seed) {
    lnet d = loss_net(model, n, threads);
    float *x = malloc(n * k * sizeof(float)), *t = malloc(n * k * sizeof(float));
    double *xd = malloc(n * k * sizeof(double)), *td = malloc(n * k * sizeof(double)),
           *fd = malloc(n * k * sizeof(double));
    th_fill_uniform(x, n * k, seed, -2, 2);
    th_fill_uniform(t, n * k, seed + 1, -2, 2);
    for (size_t i = 0; i < n * k; i++) xd[i] = x[i], td[i] = t[i];
    size_t want_correct = 0;
    double want = ref_mse(n, k, xd, td, &want_correct);

    assert_int_equal(cnn_net_forward(d.net, x, n, 1), CNN_OK);
    assert_memory_equal(cnn_net_output(d.net, NULL), x, n * k * sizeof(float));
    cnn_loss_stats st;
    assert_int_equal(cnn_net_loss(d.net, NULL, t, &st), CNN_OK);
    assert_int_equal(st.n, n);
    assert_int_equal(st.correct, want_correct);
    if (fabs(st.loss - want) > 1e-9 * fmax(1.0, want)) fail_msg("mse loss %.12g, want %.12g", st.loss, want);
    assert_int_equal(cnn_net_backward(d.net, NULL), CNN_OK);
    const float *dx = cnn_net_input_grad(d.net);
    assert_non_null(dx);
    for (size_t i = 0; i < n * k; i++) {
        double keep = xd[i];
        xd[i] = keep + 1e-6;
        double lp = ref_mse(n, k, xd, td, NULL);
        xd[i] = keep - 1e-6;
        double lm = ref_mse(n, k, xd, td, NULL);
        xd[i] = keep;
        fd[i] = (lp - lm) / 2e-6;
    }
    double e = rel_err_d(dx, fd, n * k, 1e-3);
    if (e > 1e-5) fail_msg("mse dx vs central differences: rel err %g", e);
    free(x), free(t), free(xd), free(td), free(fd);
    lnet_free(&d);
}

static void test_mse(void **state) {
    (void)state;
    check_mse("input c=4 h=2 w=3\nmse\n", 5, 24, 1, 50);
    check_mse("input c=10 h=1 w=1\nmse\n", 7, 10, 2, 51);
    check_mse("input c=1 h=1 w=1\nmse\n", 3, 1, 1, 52); /* correct stays 0 with one output */
}

static void test_mse_correct(void **state) {
    (void)state;
    /* correct counts argmax(y) == argmax(t) */
    lnet d = loss_net("input c=3 h=1 w=1\nmse\n", 3, 1);
    float x[9] = {0.1f, 0.9f, 0.2f, 0.5f, 0.4f, 0.3f, 0.2f, 0.2f, 0.1f};
    float t[9] = {0, 1, 0, 0, 0, 1, 1, 0, 0};
    assert_int_equal(cnn_net_forward(d.net, x, 3, 1), CNN_OK);
    cnn_loss_stats st;
    assert_int_equal(cnn_net_loss(d.net, NULL, t, &st), CNN_OK);
    assert_int_equal(st.correct, 2);
    lnet_free(&d);
}

/* ---------------- errors ---------------- */

static void test_loss_bad_params(void **state) {
    (void)state;
    th_expect_error("input c=4 h=1 w=1\nsoftmax_ce label_smoothing=1\n", CNN_ERR_FORMAT, "label_smoothing");
    th_expect_error("input c=4 h=1 w=1\nsoftmax_ce label_smoothing=-0.1\n", CNN_ERR_FORMAT, "label_smoothing");
    th_expect_error("input c=4 h=1 w=1\nsoftmax_ce smoothing=0.1\n", CNN_ERR_FORMAT, "smoothing");
    th_expect_error("input c=3 h=2 w=2\nsoftmax_ce\n", CNN_ERR_SHAPE, "classes");
    th_expect_error("input c=4 h=1 w=1\nmse p=1\n", CNN_ERR_FORMAT, "p");
}

static void test_loss_labels_checked(void **state) {
    (void)state;
    lnet d = loss_net("input c=4 h=1 w=1\nsoftmax_ce\n", 2, 1);
    float x[8] = {1, 2, 3, 4, 4, 3, 2, 1};
    int32_t bad[2] = {0, 4};
    assert_int_equal(cnn_net_forward(d.net, x, 2, 1), CNN_OK);
    cnn_loss_stats st;
    assert_int_not_equal(cnn_net_loss(d.net, bad, NULL, &st), CNN_OK);
    lnet_free(&d);
}

/* Printed model text keeps the keys (and parses back). */
static void test_print_keys(void **state) {
    (void)state;
    static const struct {
        const char *model, *want[3];
    } cases[] = {
        {"input c=4 h=1 w=1\nsoftmax_ce label_smoothing=0.1\n", {"softmax_ce", "label_smoothing=0.1", NULL}},
        {"input c=4 h=2 w=2\ndropout p=0.25\nmse\n", {"dropout", "p=0.25", "mse"}},
        {"input c=4 h=2 w=2\nbatchnorm eps=0.001 momentum=0.3\nsoftmax\n", {"eps=0.001", "momentum=0.3", "softmax"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cnn_ctx *ctx = NULL;
        cnn_net *net = NULL, *net2 = NULL;
        char *text = NULL, *text2 = NULL;
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        assert_int_equal(cnn_net_parse(ctx, cases[i].model, strlen(cases[i].model), "t.cnn", &net), CNN_OK);
        assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
        for (size_t k = 0; k < 3 && cases[i].want[k]; k++)
            if (!strstr(text, cases[i].want[k])) fail_msg("'%s' not in printed text:\n%s", cases[i].want[k], text);
        assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "printed", &net2), CNN_OK);
        assert_int_equal(cnn_net_to_text(net2, &text2), CNN_OK);
        /* the same layers; the first line is a comment naming the origin */
        assert_string_equal(strchr(text, '\n'), strchr(text2, '\n'));
        cnn_free(ctx, text);
        cnn_free(ctx, text2);
        cnn_net_free(net);
        cnn_net_free(net2);
        cnn_ctx_free(ctx);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_ce),
        cmocka_unit_test(test_softmax_ce_label_smoothing),
        cmocka_unit_test(test_softmax_ce_large_logits),
        cmocka_unit_test(test_softmax_ce_after_dense),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_mse_correct),
        cmocka_unit_test(test_loss_bad_params),
        cmocka_unit_test(test_loss_labels_checked),
        cmocka_unit_test(test_print_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
