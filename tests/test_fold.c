/* test_fold.c — batchnorm folded into the conv before it at inference compile (src/core/net.c "Batchnorm
 * folding", src/layers/fold.h): for every conv algorithm (im2col+gemm, winograd with its pre-transformed
 * weights, direct, gemm-1x1), with and without a conv bias and batchnorm affine, the folded inference output
 * equals a float64 reference of conv-then-batchnorm and the unfolded output within 1e-5 relative; it does
 * not depend on the thread count; weights changed after compile (through parameter pointers, init,
 * loading) are picked up; the trained parameters are never modified; folding is not applied where it must
 * not be (training, a conv output with two readers, CNN_COMPILE_KEEP_ACTIVATIONS, no_fold, CNN_FOLD=0). */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "core/net_internal.h"
#include "ref/ref_conv.h"
#include "ref/ref_dense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fold_case {
    const char *model;   /* input, conv2d, batchnorm */
    ref_conv2d conv;
    int bias, affine;
    double eps;
    const char *algorithm; /* what conv2d must have chosen */
} fold_case;

static const fold_case CASES[] = {
    {"input c=3 h=11 w=9\nconv2d k=5 size=3 stride=2 pad=1\nbatchnorm\nflatten\n",
     {.c = 3, .h = 11, .w = 9, .k = 5, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .pt = 1, .pb = 1, .pl = 1, .pr = 1,
      .dh = 1, .dw = 1, .groups = 1},
     1, 1, 1e-5, "im2col+gemm"},
    {"input c=17 h=9 w=7\nconv2d k=19 size=3 pad=1 bias=0\nbatchnorm eps=0.001\nflatten\n",
     {.c = 17, .h = 9, .w = 7, .k = 19, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .pt = 1, .pb = 1, .pl = 1, .pr = 1,
      .dh = 1, .dw = 1, .groups = 1},
     0, 1, 1e-3, "winograd-f2x2"},
    {"input c=16 h=5 w=6\nconv2d k=21 size=3 pad=0\nbatchnorm affine=0\nflatten\n",
     {.c = 16, .h = 5, .w = 6, .k = 21, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1},
     1, 0, 1e-5, "winograd-f2x2"},
    {"input c=6 h=10 w=7\nconv2d k=6 size=5 pad=2 groups=6 bias=0\nbatchnorm affine=0\nflatten\n",
     {.c = 6, .h = 10, .w = 7, .k = 6, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .pt = 2, .pb = 2, .pl = 2, .pr = 2,
      .dh = 1, .dw = 1, .groups = 6},
     0, 0, 1e-5, "depthwise"},
    {"input c=20 h=5 w=3\nconv2d k=13 size=1\nbatchnorm\nflatten\n",
     {.c = 20, .h = 5, .w = 3, .k = 13, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1}, 1, 1,
     1e-5, "gemm-1x1"},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* (the trailing flatten keeps the batchnorm from being the last layer, which is never an alias) */
/* params (cnn_net_param_at order): conv weight, [conv bias], [bn weight, bn bias], running_mean, running_var */
static void ref_conv_bn(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    const fold_case *fc = user;
    const ref_conv2d *p = &fc->conv;
    size_t k = 0;
    const double *w = params[k++], *b = fc->bias ? params[k++] : NULL;
    const double *g = fc->affine ? params[k++] : NULL, *be = fc->affine ? params[k++] : NULL;
    const double *rm = params[k++], *rv = params[k++];
    const size_t oh = ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh);
    const size_t ow = ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw);
    double *t = malloc(n * p->k * oh * ow * sizeof *t);
    if (!t) fail_msg("out of memory");
    ref_conv2d_forward(p, n, x, w, b, t);
    ref_batchnorm_forward(n, p->k, oh * ow, t, g, be, rm, rv, fc->eps, training, y);
    free(t);
}

static const th_tolerance TOL = {.forward = 1e-5};

/* th_build (training compile, perturbed tensors), then an inference compile for batch n. */
static void build_inference(th_net *t, const fold_case *fc, size_t n, size_t threads, uint64_t seed) {
    th_build(t, fc->model, n, seed, threads);
    assert_int_equal(cnn_net_compile(t->net, n, 0), CNN_OK);
}

static void expect_folded(const cnn_net *net, int folded) {
    assert_int_equal(net->rt[2].skip, folded);
    assert_int_equal(net->rt[1].fold_bn, folded ? 2 : SIZE_MAX);
    cnn_layer_info li;
    assert_int_equal(cnn_net_layer_info(net, 2, &li), CNN_OK);
    assert_string_equal(li.algorithm, folded ? "folded into the conv" : "");
}

static void test_fold_matches_reference(void **state) {
    (void)state;
    for (size_t c = 0; c < N_CASES; c++)
        for (size_t n = 1; n <= 3; n += 2) {
            th_net t;
            build_inference(&t, &CASES[c], n, 2, 100 + c);
            cnn_layer_info li;
            assert_int_equal(cnn_net_layer_info(t.net, 1, &li), CNN_OK);
            assert_string_equal(li.algorithm, CASES[c].algorithm);
            expect_folded(t.net, 1);
            th_check(&t, ref_conv_bn, (void *)&CASES[c], 0, TOL);
            th_free(&t);
        }
}

/* Output of an inference forward with folding on or off, on `threads` threads. */
static void run_out(const fold_case *fc, size_t n, size_t threads, int no_fold, float *out) {
    th_net t;
    th_build(&t, fc->model, n, 7, threads);
    t.net->no_fold = no_fold;
    assert_int_equal(cnn_net_compile(t.net, n, 0), CNN_OK);
    expect_folded(t.net, !no_fold);
    assert_int_equal(cnn_net_forward(t.net, t.x, n, 0), CNN_OK);
    memcpy(out, cnn_net_output(t.net, NULL), n * t.out_count * sizeof *out);
    th_free(&t);
}

static double max_rel(const float *a, const float *b, size_t count) {
    double m = 1.0, e = 0.0;
    for (size_t i = 0; i < count; i++)
        if (fabs(b[i]) > m) m = fabs(b[i]);
    for (size_t i = 0; i < count; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= e)) e = d; /* NaN counts as the worst */
    }
    return e / m;
}

static void test_fold_matches_unfolded_and_threads(void **state) {
    (void)state;
    static float plain[4096], f1[4096], f2[4096];
    const size_t n = 3;
    for (size_t c = 0; c < N_CASES; c++) {
        const ref_conv2d *p = &CASES[c].conv;
        const size_t count = n * p->k * ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh) *
                             ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw);
        assert_true(count <= 4096);
        run_out(&CASES[c], n, 1, 1, plain);
        run_out(&CASES[c], n, 1, 0, f1);
        run_out(&CASES[c], n, 2, 0, f2);
        const double e = max_rel(f1, plain, count);
        if (e > 1e-5) fail_msg("case %zu: folded vs unfolded relative error %.3g", c, e);
        assert_memory_equal(f1, f2, count * sizeof *f1); /* identical for 1 and 2 threads */
    }
}

/* Parameters changed after compile are picked up by the next forward; the trained values are never
 * written by folding. */
static void test_fold_refold(void **state) {
    (void)state;
    const fold_case *fc = &CASES[1]; /* winograd: the packed transform must follow too */
    th_net t;
    build_inference(&t, fc, 2, 2, 5);
    th_check(&t, ref_conv_bn, (void *)fc, 0, TOL);
    /* the trained values are what they were before compile and forward */
    cnn_param w, rv, g;
    assert_int_equal(cnn_net_param_find(t.net, "conv2d1.weight", &w), CNN_OK);
    float *saved = malloc(w.count * sizeof *saved);
    assert_non_null(saved);
    memcpy(saved, w.data, w.count * sizeof *saved);
    assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
    assert_memory_equal(saved, w.data, w.count * sizeof *saved);
    /* writes through freshly fetched pointers */
    assert_int_equal(cnn_net_param_find(t.net, "conv2d1.weight", &w), CNN_OK);
    for (size_t i = 0; i < w.count; i++) w.data[i] = -0.5f * w.data[i] + 0.01f * (float)(i % 7);
    assert_int_equal(cnn_net_param_find(t.net, "batchnorm1.running_var", &rv), CNN_OK);
    for (size_t i = 0; i < rv.count; i++) rv.data[i] = 0.25f + 0.1f * (float)i;
    assert_int_equal(cnn_net_param_find(t.net, "batchnorm1.weight", &g), CNN_OK);
    g.data[3] = -2.0f;
    th_check(&t, ref_conv_bn, (void *)fc, 0, TOL);
    /* re-initialisation */
    assert_int_equal(cnn_net_init_params(t.net, 99, CNN_INIT_KAIMING_NORMAL), CNN_OK);
    th_check(&t, ref_conv_bn, (void *)fc, 0, TOL);
    /* a weights file saved after the inference compile holds the trained values; loading it back into a
     * net compiled with other values gives the saved net's output */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cnn_test_fold_%d.safetensors", (int)getpid());
    assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
    float want[2 * 19 * 9 * 7];
    memcpy(want, cnn_net_output(t.net, NULL), sizeof want);
    assert_int_equal(cnn_net_save_weights(t.net, path), CNN_OK);
    assert_int_equal(cnn_net_init_params(t.net, 3, CNN_INIT_DEFAULT), CNN_OK);
    assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
    assert_true(memcmp(want, cnn_net_output(t.net, NULL), sizeof want) != 0);
    assert_int_equal(cnn_net_load_weights(t.net, path), CNN_OK);
    assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
    assert_memory_equal(want, cnn_net_output(t.net, NULL), sizeof want);
    remove(path);
    free(saved);
    th_free(&t);
}

static void test_fold_not_applied(void **state) {
    (void)state;
    const fold_case *fc = &CASES[0];
    th_net t;
    /* training compile: nothing folded, batch statistics */
    th_build(&t, fc->model, 2, 1, 1);
    expect_folded(t.net, 0);
    assert_null(t.net->rt[1].wblock);
    /* keep activations: the conv's own output must survive */
    assert_int_equal(cnn_net_compile(t.net, 2, CNN_COMPILE_KEEP_ACTIVATIONS), CNN_OK);
    expect_folded(t.net, 0);
    th_check(&t, ref_conv_bn, (void *)fc, 0, TOL);
    cnn_shape s;
    assert_non_null(cnn_net_layer_output(t.net, 1, &s));
    /* CNN_FOLD=0 */
    setenv("CNN_FOLD", "0", 1);
    assert_int_equal(cnn_net_compile(t.net, 2, 0), CNN_OK);
    expect_folded(t.net, 0);
    unsetenv("CNN_FOLD");
    assert_int_equal(cnn_net_compile(t.net, 2, 0), CNN_OK);
    expect_folded(t.net, 1);
    /* back to training after an inference compile: the conv reads its parameters again */
    assert_int_equal(cnn_net_compile(t.net, 2, CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD), CNN_OK);
    expect_folded(t.net, 0);
    th_check(&t, ref_conv_bn, (void *)fc, 0, TOL);
    th_free(&t);
    /* a conv output with two readers is not folded */
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    static const char two[] = "input c=2 h=6 w=5\n"
                              "conv2d name=c k=4 size=3 pad=1\n"
                              "batchnorm name=bn\n"
                              "add from=bn,c\n"
                              "conv2d name=c2 k=3 size=3 pad=1 bias=0\n"
                              "batchnorm name=bn2\n"
                              "relu\n";
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, two, sizeof two - 1, "two", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 1, 0), CNN_OK);
    assert_false(net->rt[2].skip);
    assert_true(net->rt[5].skip);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

/* A residual net (identity and projection shortcuts, stride 2, winograd and 1x1 convs): folded inference
 * equals the unfolded one. */
static void test_fold_residual_net(void **state) {
    (void)state;
    static const char model[] = "input c=3 h=12 w=10\n"
                                "conv2d name=stem k=16 size=3 pad=1 bias=0\n"
                                "batchnorm name=stem_bn\n"
                                "relu name=stem_relu\n"
                                "conv2d name=a1 k=16 size=3 pad=1 bias=0\n"
                                "batchnorm name=a1_bn\n"
                                "relu\n"
                                "conv2d name=a2 k=16 size=3 pad=1 bias=0\n"
                                "batchnorm name=a2_bn\n"
                                "add name=a_add from=a2_bn,stem_relu\n"
                                "relu name=a_out\n"
                                "conv2d name=b1 k=32 size=3 stride=2 pad=1 bias=0\n"
                                "batchnorm name=b1_bn\n"
                                "relu\n"
                                "conv2d name=b2 k=32 size=3 pad=1 bias=0\n"
                                "batchnorm name=b2_bn\n"
                                "conv2d name=bp from=a_out k=32 size=1 stride=2 bias=0\n"
                                "batchnorm name=bp_bn\n"
                                "add from=b2_bn,bp_bn\n"
                                "relu\n"
                                "global_avgpool\n"
                                "flatten\n"
                                "dense out=7\n"
                                "softmax_ce\n";
    static float out[2][5 * 7];
    for (int no_fold = 0; no_fold < 2; no_fold++) {
        th_net t;
        th_build(&t, model, 5, 31, 2);
        t.net->no_fold = no_fold;
        assert_int_equal(cnn_net_compile(t.net, 5, 0), CNN_OK);
        size_t folded = 0;
        for (size_t i = 0; i < t.net->n_layers; i++) folded += t.net->rt[i].fold_bn != SIZE_MAX;
        assert_int_equal(folded, no_fold ? 0 : 6);
        assert_int_equal(cnn_net_forward(t.net, t.x, 5, 0), CNN_OK);
        memcpy(out[no_fold], cnn_net_output(t.net, NULL), sizeof out[0]);
        th_free(&t);
    }
    const double e = max_rel(out[0], out[1], 5 * 7);
    if (e > 1e-5) fail_msg("residual net: folded vs unfolded relative error %.3g", e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_matches_reference),
        cmocka_unit_test(test_fold_matches_unfolded_and_threads),
        cmocka_unit_test(test_fold_refold),
        cmocka_unit_test(test_fold_not_applied),
        cmocka_unit_test(test_fold_residual_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
