/* test_batchnorm.c — batchnorm against the float64 reference (ref_dense.c): training mode (batch
 * statistics; dx, dgamma, dbeta by central differences through the statistics), eval mode (running
 * statistics), the running-statistics update (PyTorch momentum convention, unbiased variance), affine=0,
 * 2-D and dense (BatchNorm1d) inputs, two threads, parameter layout and bad keys. */
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

typedef struct bn_case {
    size_t c, hw;
    int affine;
    double eps;
} bn_case;

/* params (cnn_net_param_at order): [weight, bias,] running_mean, running_var */
static void ref_bn(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    const bn_case *b = user;
    const double *g = b->affine ? params[0] : NULL, *be = b->affine ? params[1] : NULL;
    const double *rm = params[b->affine ? 2 : 0], *rv = params[b->affine ? 3 : 1];
    ref_batchnorm_forward(n, b->c, b->hw, x, g, be, rm, rv, b->eps, training, y);
}

/* Batch statistics make dx a sum of three terms of similar size that nearly cancel: float32 keeps about
 * 1e-5 of the largest; 2e-4 leaves room for that and still catches a missing term (errors ~1e-1). */
static const th_tolerance TOL = {.forward = 2e-5, .grad = 2e-4, .fd_step = 1e-6, .fd_points = 0};

static void run_case(const char *model, size_t n, size_t threads, bn_case bc) {
    th_net t;
    th_build(&t, model, n, 77 + n * 3 + threads, threads);
    assert_int_equal(t.in_count, bc.c * bc.hw);
    assert_int_equal(t.out_count, t.in_count);
    th_check(&t, ref_bn, &bc, 1, TOL); /* training: batch statistics */
    th_check(&t, ref_bn, &bc, 0, TOL); /* eval: running statistics */
    th_free(&t);
}

static void test_bn_2d_training_and_eval(void **state) {
    (void)state;
    run_case("input c=3 h=4 w=5\nbatchnorm\n", 6, 1, (bn_case){3, 20, 1, 1e-5});
}

static void test_bn_1d(void **state) {
    (void)state;
    /* BatchNorm1d over dense features; m = n = 7 values per channel */
    run_case("input c=11 h=1 w=1\nbatchnorm\n", 7, 1, (bn_case){11, 1, 1, 1e-5});
}

static void test_bn_no_affine_eps(void **state) {
    (void)state;
    run_case("input c=5 h=3 w=1\nbatchnorm affine=0 eps=0.01\n", 4, 1, (bn_case){5, 3, 0, 0.01});
}

static void test_bn_two_threads(void **state) {
    (void)state;
    run_case("input c=7 h=3 w=3\nbatchnorm eps=1e-3 momentum=0.25\n", 5, 2, (bn_case){7, 9, 1, 1e-3});
    /* planes of 45: the kernels' 32-blocks, an 8-block and a tail (f32_bn/bn_kernels.h) */
    run_case("input c=3 h=5 w=9\nbatchnorm\n", 3, 2, (bn_case){3, 45, 1, 1e-5});
    run_case("input c=2 h=5 w=9\nbatchnorm affine=0\n", 2, 1, (bn_case){2, 45, 0, 1e-5});
}

/* dense -> batchnorm (BatchNorm1d): the batch-coupled gradient reaches the dense weights. */
static void ref_dense_bn(void *user, size_t n, const double *x, const double *const *params, double *y,
                         int training) {
    (void)user;
    double h[5 * 6];
    assert_true(n <= 5);
    ref_dense_forward(n, 12, 6, x, params[0], params[1], h);
    ref_batchnorm_forward(n, 6, 1, h, params[2], params[3], params[4], params[5], 1e-5, training, y);
}

static void test_bn_after_dense(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=3 h=2 w=2\ndense out=6\nbatchnorm\n", 5, 31, 1);
    th_check(&t, ref_dense_bn, NULL, 1, TOL);
    th_check(&t, ref_dense_bn, NULL, 0, TOL);
    th_free(&t);
}

/* Several consumers of one tensor: the network sets dx_accumulate for the consumer that runs its backward
 * second (the earlier line). Every layer here gets both roles somewhere:
 *   input <- d1 (accumulates), d2 (stores);  s <- sm1 (acc), bn1 (stores);  t <- dr (acc), bn2 (stores);
 *   u <- bn3 (acc), sm2 (stores). dropout p=0 keeps its mask path but is deterministic. */
static const char *MULTI =
    "input c=3 h=2 w=2\n"
    "dense name=d1 out=6\n"
    "dense name=d2 from=input out=6\n"
    "add name=s from=d1,d2\n"
    "softmax name=sm1 from=s\n"
    "batchnorm name=bn1 from=s\n"
    "add name=t from=sm1,bn1\n"
    "dropout name=dr from=t p=0\n"
    "batchnorm name=bn2 from=t\n"
    "add name=u from=dr,bn2\n"
    "batchnorm name=bn3 from=u\n"
    "softmax name=sm2 from=u\n"
    "add name=v from=bn3,sm2\n"
    "dense name=out from=v out=4\n";

#define MN 5
static void ref_multi(void *user, size_t n, const double *x, const double *const *P, double *y, int training) {
    (void)user;
    double d1[MN * 6], d2[MN * 6], s[MN * 6], a[MN * 6], b[MN * 6], t[MN * 6], u[MN * 6], v[MN * 6];
    assert_true(n <= MN);
    ref_dense_forward(n, 12, 6, x, P[0], P[1], d1);
    ref_dense_forward(n, 12, 6, x, P[2], P[3], d2);
    for (size_t i = 0; i < n * 6; i++) s[i] = d1[i] + d2[i];
    ref_softmax(n, 6, 1, s, a);
    ref_batchnorm_forward(n, 6, 1, s, P[4], P[5], P[6], P[7], 1e-5, training, b);
    for (size_t i = 0; i < n * 6; i++) t[i] = a[i] + b[i];
    ref_batchnorm_forward(n, 6, 1, t, P[8], P[9], P[10], P[11], 1e-5, training, b);
    for (size_t i = 0; i < n * 6; i++) u[i] = t[i] + b[i]; /* dropout p=0 is the identity */
    ref_batchnorm_forward(n, 6, 1, u, P[12], P[13], P[14], P[15], 1e-5, training, a);
    ref_softmax(n, 6, 1, u, b);
    for (size_t i = 0; i < n * 6; i++) v[i] = a[i] + b[i];
    ref_dense_forward(n, 6, 4, v, P[16], P[17], y);
}

static void test_accumulate_paths(void **state) {
    (void)state;
    for (size_t threads = 1; threads <= 2; threads++) {
        th_net t;
        th_build(&t, MULTI, MN, 808 + threads, threads);
        assert_int_equal(cnn_net_num_params(t.net), 18);
        th_check(&t, ref_multi, NULL, 1, TOL);
        th_check(&t, ref_multi, NULL, 0, TOL);
        th_free(&t);
    }
}

/* Running statistics after one training forward, from a float64 computation of the batch statistics. */
static void check_running(const char *model, size_t c, size_t hw, size_t n, double momentum, size_t threads) {
    th_net t;
    th_build(&t, model, n, 4242 + threads, threads);
    cnn_param pm, pv;
    assert_int_equal(cnn_net_param_find(t.net, "bn.running_mean", &pm), CNN_OK);
    assert_int_equal(cnn_net_param_find(t.net, "bn.running_var", &pv), CNN_OK);
    assert_false(pm.trainable);
    assert_false(pv.trainable);
    assert_null(pm.grad);
    assert_int_equal(pm.count, c);
    double *old_m = malloc(c * sizeof(double)), *old_v = malloc(c * sizeof(double));
    double *x = malloc(n * c * hw * sizeof(double)), *mean = malloc(c * sizeof(double)),
           *var = malloc(c * sizeof(double)), *bvar = malloc(c * sizeof(double));
    for (size_t i = 0; i < c; i++) {
        old_m[i] = pm.data[i];
        old_v[i] = pv.data[i];
    }
    /* shift channels apart so the mean matters */
    for (size_t i = 0; i < n * c * hw; i++) t.x[i] = t.x[i] * 2.0f + (float)((i / hw) % c) - 1.5f;
    for (size_t i = 0; i < n * c * hw; i++) x[i] = t.x[i];
    ref_batchnorm_stats(n, c, hw, x, mean, bvar, var);
    assert_int_equal(cnn_net_forward(t.net, t.x, n, 1), CNN_OK);
    for (size_t i = 0; i < c; i++) {
        double want_m = (1 - momentum) * old_m[i] + momentum * mean[i];
        double want_v = (1 - momentum) * old_v[i] + momentum * var[i];
        assert_true(fabs(pm.data[i] - want_m) <= 1e-6 * fmax(1.0, fabs(want_m)));
        assert_true(fabs(pv.data[i] - want_v) <= 1e-6 * fmax(1.0, fabs(want_v)));
        /* the unbiased variance differs from the biased one by m/(m-1): make sure that is what we saw */
        double wrong_v = (1 - momentum) * old_v[i] + momentum * bvar[i];
        assert_true(fabs(want_v - wrong_v) > 1e-4);
    }
    /* eval does not touch them */
    float *keep = malloc(c * sizeof(float));
    memcpy(keep, pv.data, c * sizeof(float));
    assert_int_equal(cnn_net_forward(t.net, t.x, n, 0), CNN_OK);
    assert_memory_equal(keep, pv.data, c * sizeof(float));
    /* eval output uses exactly the updated statistics */
    cnn_param pg, pb;
    assert_int_equal(cnn_net_param_find(t.net, "bn.weight", &pg), CNN_OK);
    assert_int_equal(cnn_net_param_find(t.net, "bn.bias", &pb), CNN_OK);
    double *g = malloc(c * sizeof(double)), *b = malloc(c * sizeof(double)), *rm = malloc(c * sizeof(double)),
           *rv = malloc(c * sizeof(double)), *y = malloc(n * c * hw * sizeof(double));
    for (size_t i = 0; i < c; i++) {
        g[i] = pg.data[i];
        b[i] = pb.data[i];
        rm[i] = pm.data[i];
        rv[i] = pv.data[i];
    }
    ref_batchnorm_forward(n, c, hw, x, g, b, rm, rv, 1e-5, 0, y);
    size_t got_n = 0;
    const float *out = cnn_net_output(t.net, &got_n);
    assert_int_equal(got_n, n);
    double err = th_rel_err(out, y, n * c * hw, 1.0, NULL);
    assert_true(err < 1e-5);
    free(keep);
    free(g), free(b), free(rm), free(rv), free(y);
    free(old_m), free(old_v), free(x), free(mean), free(var), free(bvar);
    th_free(&t);
}

static void test_bn_running_stats(void **state) {
    (void)state;
    check_running("input c=3 h=4 w=5\nbatchnorm name=bn\n", 3, 20, 2, 0.1, 1);
    check_running("input c=6 h=1 w=1\nbatchnorm name=bn momentum=0.4\n", 6, 1, 5, 0.4, 2);
}

static void test_bn_params_layout(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    const char *model = "input c=4 h=3 w=3\nbatchnorm name=bn\nbatchnorm name=bn2 affine=0\n";
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "t.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 3, CNN_INIT_DEFAULT), CNN_OK);
    static const char *names[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                  "bn2.running_mean", "bn2.running_var"};
    static const float init[] = {1, 0, 0, 1, 0, 1};
    static const int trainable[] = {1, 1, 0, 0, 0, 0};
    assert_int_equal(cnn_net_num_params(net), 6);
    assert_int_equal(cnn_net_param_count(net), 8);
    for (size_t i = 0; i < 6; i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_find(net, names[i], &p), CNN_OK);
        assert_int_equal(p.ndim, 1);
        assert_int_equal(p.dims[0], 4);
        assert_int_equal(p.trainable, trainable[i]);
        for (size_t k = 0; k < 4; k++) assert_true(p.data[k] == init[i]);
    }
    cnn_param p;
    assert_int_not_equal(cnn_net_param_find(net, "bn2.weight", &p), CNN_OK);
    char *text = NULL;
    assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
    assert_non_null(strstr(text, "affine=0"));
    cnn_free(ctx, text);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_bn_bad_params(void **state) {
    (void)state;
    th_expect_error("input c=4 h=1 w=1\nbatchnorm eps=0\n", CNN_ERR_FORMAT, "eps");
    th_expect_error("input c=4 h=1 w=1\nbatchnorm eps=-1\n", CNN_ERR_FORMAT, "eps");
    th_expect_error("input c=4 h=1 w=1\nbatchnorm momentum=1.5\n", CNN_ERR_FORMAT, "momentum");
    th_expect_error("input c=4 h=1 w=1\nbatchnorm momentum=-0.1\n", CNN_ERR_FORMAT, "momentum");
    th_expect_error("input c=4 h=1 w=1\nbatchnorm affine=2\n", CNN_ERR_FORMAT, "affine");
    th_expect_error("input c=4 h=1 w=1\nbatchnorm k=3\n", CNN_ERR_FORMAT, "k");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_2d_training_and_eval),
        cmocka_unit_test(test_bn_1d),
        cmocka_unit_test(test_bn_no_affine_eps),
        cmocka_unit_test(test_bn_two_threads),
        cmocka_unit_test(test_bn_after_dense),
        cmocka_unit_test(test_accumulate_paths),
        cmocka_unit_test(test_bn_running_stats),
        cmocka_unit_test(test_bn_params_layout),
        cmocka_unit_test(test_bn_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
