/* test_dense.c — the dense layer against the float64 reference (ref_dense.c): forward, dX, dW and db
 * (central differences through th_check), flattening of a (c,h,w) input, no-bias, both thread-splitting
 * strategies (batch and columns), parameter names/layouts and bad keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "ref/ref_dense.h"

typedef struct dense_case {
    size_t in, out;
    int bias;
} dense_case;

/* params: weight [out, in], then bias [out] when present. */
static void ref_dense(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const dense_case *c = user;
    ref_dense_forward(n, c->in, c->out, x, params[0], c->bias ? params[1] : NULL, y);
}

static const th_tolerance TOL = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 0};

static void run_case(const char *model, size_t n, size_t threads, dense_case dc) {
    th_net t;
    th_build(&t, model, n, 1234 + n + threads, threads);
    assert_int_equal(t.in_count, dc.in);
    assert_int_equal(t.out_count, dc.out);
    assert_int_equal(t.out.c, dc.out);
    assert_int_equal(t.out.h, 1);
    assert_int_equal(t.out.w, 1);
    th_check(&t, ref_dense, &dc, 1, TOL);
    th_check(&t, ref_dense, &dc, 0, TOL);
    th_free(&t);
}

static void test_dense_37_13(void **state) {
    (void)state;
    run_case("input c=37 h=1 w=1\ndense out=13\n", 5, 1, (dense_case){37, 13, 1});
}

static void test_dense_flatten_input(void **state) {
    (void)state;
    /* (3,5,7) is flattened in NCHW order: in = 105 */
    run_case("input c=3 h=5 w=7\ndense out=13\n", 5, 1, (dense_case){105, 13, 1});
}

static void test_dense_no_bias(void **state) {
    (void)state;
    run_case("input c=3 h=5 w=7\ndense out=13 bias=0\n", 5, 1, (dense_case){105, 13, 0});
}

static void test_dense_two_threads(void **state) {
    (void)state;
    /* batch 3 < 4*threads: forward splits output columns (out >= 32), backward_data splits input columns,
     * dW splits its rows (out >= 16) ... */
    run_case("input c=41 h=1 w=1\ndense out=37\n", 3, 2, (dense_case){41, 37, 1});
    /* ... and with out = 13 < 16 dW splits its columns; batch 11 >= 4*threads splits the batch. */
    run_case("input c=3 h=5 w=7\ndense out=13\n", 11, 2, (dense_case){105, 13, 1});
    run_case("input c=3 h=5 w=7\ndense out=40 bias=0\n", 2, 2, (dense_case){105, 40, 0});
    run_case("input c=1 h=1 w=1\ndense out=1\n", 1, 2, (dense_case){1, 1, 1});
}

static void test_dense_params_and_info(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    const char *model = "input c=3 h=5 w=7\ndense name=fc out=13\ndense name=fc2 out=4 bias=0\n";
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "t.cnn", &net), CNN_OK);
    cnn_param p;
    assert_int_equal(cnn_net_param_find(net, "fc.weight", &p), CNN_OK);
    assert_int_equal(p.ndim, 2);
    assert_int_equal(p.dims[0], 13);
    assert_int_equal(p.dims[1], 105);
    assert_true(p.trainable);
    assert_int_equal(cnn_net_param_find(net, "fc.bias", &p), CNN_OK);
    assert_int_equal(p.ndim, 1);
    assert_int_equal(p.dims[0], 13);
    assert_int_not_equal(cnn_net_param_find(net, "fc2.bias", &p), CNN_OK);
    assert_int_equal(cnn_net_param_count(net), 13 * 105 + 13 + 4 * 13);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_int_equal(info.flops, 2 * 105 * 13);
    assert_int_equal(info.params, 13 * 105 + 13);
    /* printing and parsing back gives the same layers */
    char *text = NULL;
    assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
    assert_non_null(strstr(text, "out=13"));
    assert_non_null(strstr(text, "bias=0"));
    cnn_net *net2 = NULL;
    assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "printed", &net2), CNN_OK);
    assert_int_equal(cnn_net_param_count(net2), cnn_net_param_count(net));
    cnn_free(ctx, text);
    cnn_net_free(net2);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_dense_one_vs_two_threads(void **state) {
    (void)state;
    /* Same weights and input on 1 and 2 threads: outputs and gradients agree closely. */
    const char *model = "input c=3 h=5 w=7\ndense out=37\n";
    th_net a, b;
    th_build(&a, model, 3, 99, 1);
    th_build(&b, model, 3, 99, 2);
    assert_int_equal(cnn_net_forward(a.net, a.x, a.n, 1), CNN_OK);
    assert_int_equal(cnn_net_forward(b.net, b.x, b.n, 1), CNN_OK);
    size_t na, nb;
    const float *ya = cnn_net_output(a.net, &na), *yb = cnn_net_output(b.net, &nb);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na * a.out_count; i++) assert_float_equal(ya[i], yb[i], 1e-5);
    float dy[3 * 37];
    th_fill_uniform(dy, 3 * 37, 5, -1, 1);
    assert_int_equal(cnn_net_backward(a.net, dy), CNN_OK);
    assert_int_equal(cnn_net_backward(b.net, dy), CNN_OK);
    cnn_param pa, pb;
    assert_int_equal(cnn_net_param_find(a.net, "dense1.weight", &pa), CNN_OK);
    assert_int_equal(cnn_net_param_find(b.net, "dense1.weight", &pb), CNN_OK);
    for (size_t i = 0; i < pa.count; i++) assert_float_equal(pa.grad[i], pb.grad[i], 1e-5);
    const float *ga = cnn_net_input_grad(a.net), *gb = cnn_net_input_grad(b.net);
    for (size_t i = 0; i < 3 * a.in_count; i++) assert_float_equal(ga[i], gb[i], 1e-5);
    th_free(&a);
    th_free(&b);
}

static void test_dense_bad_params(void **state) {
    (void)state;
    th_expect_error("input c=4 h=1 w=1\ndense\n", CNN_ERR_FORMAT, "out");
    th_expect_error("input c=4 h=1 w=1\ndense out=0\n", CNN_ERR_FORMAT, "out");
    th_expect_error("input c=4 h=1 w=1\ndense out=-3\n", CNN_ERR_FORMAT, "out");
    th_expect_error("input c=4 h=1 w=1\ndense out=abc\n", CNN_ERR_FORMAT, "out");
    th_expect_error("input c=4 h=1 w=1\ndense out=3 bias=7\n", CNN_ERR_FORMAT, "bias");
    th_expect_error("input c=4 h=1 w=1\ndense out=3 outs=4\n", CNN_ERR_FORMAT, "outs");
    /* weight [out, in] whose element count overflows */
    th_expect_error("input c=4 h=1 w=1\ndense out=9223372036854775807\n", CNN_ERR_SHAPE, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_37_13),
        cmocka_unit_test(test_dense_flatten_input),
        cmocka_unit_test(test_dense_no_bias),
        cmocka_unit_test(test_dense_two_threads),
        cmocka_unit_test(test_dense_params_and_info),
        cmocka_unit_test(test_dense_one_vs_two_threads),
        cmocka_unit_test(test_dense_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
