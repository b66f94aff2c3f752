/* test_join.c — flatten, add and concat in small nets against float64 references (ref/ref_elem.c): forward in
 * both modes and input gradients by central differences (th_check), including inputs consumed by several
 * layers (the gradient accumulates) and inputs named twice in one from= list, tensors of several chunks on
 * 2 threads (bit-identical to 1 thread), NaN through copies, shapes, FLOPs, and shape / arity errors. */
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
#include "ref/ref_elem.h"

static const th_tolerance TOL = {.forward = 2e-6, .grad = 1e-5, .fd_step = 1e-6, .fd_points = 0};

typedef struct net_case {
    size_t c, h, w; /* input shape */
} net_case;

static double *dalloc(size_t n) {
    double *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) fail_msg("out of memory");
    return p;
}

static void nudge_from_zero(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 1e-2f) x[i] = x[i] < 0 ? x[i] - 2e-2f : x[i] + 2e-2f;
}

static void check_net(const char *model, th_ref_fn ref, net_case *nc, size_t n, size_t threads, size_t fd_points,
                      cnn_shape want_out) {
    th_net t;
    th_build(&t, model, n, 31 + n + threads, threads);
    assert_int_equal(t.in.c, nc->c);
    assert_int_equal(t.in.h, nc->h);
    assert_int_equal(t.in.w, nc->w);
    assert_int_equal(t.out.c, want_out.c);
    assert_int_equal(t.out.h, want_out.h);
    assert_int_equal(t.out.w, want_out.w);
    nudge_from_zero(t.x, n * t.in_count);
    th_tolerance tol = TOL;
    tol.fd_points = fd_points;
    th_check(&t, ref, nc, 1, tol);
    th_check(&t, ref, nc, 0, tol);
    th_free(&t);
}

/* ---- add ---- */

/* relu(x) + sigmoid(x): the input feeds two layers, so its gradient is the sum of two contributions. */
static void ref_relu_plus_sigmoid(void *user, size_t n, const double *x, const double *const *params, double *y,
                                  int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t count = n * c->c * c->h * c->w;
    double *a = dalloc(count), *b = dalloc(count);
    ref_activation(REF_RELU, 0, count, x, a);
    ref_activation(REF_SIGMOID, 0, count, x, b);
    const double *xs[2] = {a, b};
    ref_add(2, count, xs, y);
    free(a);
    free(b);
}

static void test_add_two_branches(void **state) {
    (void)state;
    net_case nc = {3, 5, 7};
    check_net("input c=3 h=5 w=7\nrelu name=a\nsigmoid name=b from=input\nadd from=a,b\n", ref_relu_plus_sigmoid, &nc, 3,
              1, 0, (cnn_shape){3, 5, 7});
}

/* tanh(x) + x + tanh(x) + x: one layer named twice in from=, and the net input read by add directly. */
static void ref_add_dup(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t count = n * c->c * c->h * c->w;
    double *a = dalloc(count);
    ref_activation(REF_TANH, 0, count, x, a);
    const double *xs[4] = {a, x, a, x};
    ref_add(4, count, xs, y);
    free(a);
}

static void test_add_repeated_inputs(void **state) {
    (void)state;
    net_case nc = {2, 3, 5};
    check_net("input c=2 h=3 w=5\ntanh name=a\nadd from=a,input,a,input\n", ref_add_dup, &nc, 3, 1, 0,
              (cnn_shape){2, 3, 5});
    net_case big = {4, 64, 65}; /* 3 * 16640 floats: four chunks, the last partial */
    check_net("input c=4 h=64 w=65\ntanh name=a\nadd from=a,input,a,input\n", ref_add_dup, &big, 3, 2, 60,
              (cnn_shape){4, 64, 65});
}

/* eight inputs, the maximum */
static void ref_add8(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t count = n * c->c * c->h * c->w;
    double *a = dalloc(count), *b = dalloc(count);
    ref_activation(REF_TANH, 0, count, x, a);
    ref_activation(REF_SIGMOID, 0, count, x, b);
    const double *xs[8] = {a, b, x, a, b, x, a, b};
    ref_add(8, count, xs, y);
    free(a);
    free(b);
}

static void test_add_eight(void **state) {
    (void)state;
    net_case nc = {1, 7, 3};
    check_net("input c=1 h=7 w=3\ntanh name=a\nsigmoid name=b from=input\nadd from=a,b,input,a,b,input,a,b\n", ref_add8,
              &nc, 3, 1, 0, (cnn_shape){1, 7, 3});
}

/* ---- concat ---- */

/* c1 = concat(tanh(x), x) (4 channels), out = concat(c1, sigmoid(x)) (4 + 2 channels): different channel
 * counts, and the input feeds three layers. */
static void ref_concat_nested(void *user, size_t n, const double *x, const double *const *params, double *y,
                              int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t hw = c->h * c->w, count = n * c->c * hw;
    double *a = dalloc(count), *b = dalloc(count), *c1 = dalloc(2 * count);
    ref_activation(REF_TANH, 0, count, x, a);
    ref_activation(REF_SIGMOID, 0, count, x, b);
    const double *x1[2] = {a, x};
    size_t ch1[2] = {c->c, c->c};
    ref_concat(n, 2, ch1, c->h, c->w, x1, c1);
    const double *x2[2] = {c1, b};
    size_t ch2[2] = {2 * c->c, c->c};
    ref_concat(n, 2, ch2, c->h, c->w, x2, y);
    free(a);
    free(b);
    free(c1);
}

static void test_concat_different_channels(void **state) {
    (void)state;
    net_case nc = {2, 3, 5};
    check_net("input c=2 h=3 w=5\ntanh name=a\nconcat name=c1 from=a,input\nsigmoid name=b from=input\n"
              "concat from=c1,b\n",
              ref_concat_nested, &nc, 3, 1, 0, (cnn_shape){6, 3, 5});
    net_case big = {3, 41, 43};
    check_net("input c=3 h=41 w=43\ntanh name=a\nconcat name=c1 from=a,input\nsigmoid name=b from=input\n"
              "concat from=c1,b\n",
              ref_concat_nested, &big, 3, 2, 60, (cnn_shape){9, 41, 43});
}

/* concat(x, tanh(x), x): the input named twice, plus a third consumer. */
static void ref_concat_dup(void *user, size_t n, const double *x, const double *const *params, double *y,
                           int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t count = n * c->c * c->h * c->w;
    double *a = dalloc(count);
    ref_activation(REF_TANH, 0, count, x, a);
    const double *xs[3] = {x, a, x};
    size_t ch[3] = {c->c, c->c, c->c};
    ref_concat(n, 3, ch, c->h, c->w, xs, y);
    free(a);
}

static void test_concat_repeated_input(void **state) {
    (void)state;
    net_case nc = {3, 1, 7};
    check_net("input c=3 h=1 w=7\ntanh name=a\nconcat from=input,a,input\n", ref_concat_dup, &nc, 3, 1, 0,
              (cnn_shape){9, 1, 7});
    check_net("input c=3 h=1 w=7\ntanh name=a\nconcat from=input,a,input\n", ref_concat_dup, &nc, 5, 2, 0,
              (cnn_shape){9, 1, 7});
}

/* ---- flatten ---- */

/* flatten(x) + flatten(tanh(x)): flatten's backward stores into, then accumulates onto, the input gradient. */
static void ref_flatten_add(void *user, size_t n, const double *x, const double *const *params, double *y,
                            int training) {
    (void)params;
    (void)training;
    const net_case *c = user;
    size_t count = n * c->c * c->h * c->w;
    double *a = dalloc(count);
    ref_activation(REF_TANH, 0, count, x, a);
    const double *xs[2] = {x, a};
    ref_add(2, count, xs, y); /* flatten keeps the NCHW order */
    free(a);
}

static void test_flatten(void **state) {
    (void)state;
    net_case nc = {3, 5, 7};
    check_net("input c=3 h=5 w=7\nflatten name=f\ntanh name=a from=input\nflatten name=g from=a\nadd from=f,g\n",
              ref_flatten_add, &nc, 3, 1, 0, (cnn_shape){105, 1, 1});
    net_case big = {7, 97, 101}; /* 3 * 68579 floats: several copy chunks */
    check_net("input c=7 h=97 w=101\nflatten name=f\ntanh name=a from=input\nflatten name=g from=a\nadd from=f,g\n",
              ref_flatten_add, &big, 3, 2, 40, (cnn_shape){68579, 1, 1});
}

/* flatten of a flattened tensor is the identity; layer info reports shapes and zero FLOPs / params. */
static void test_shapes_and_info(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=2 h=3 w=4\nflatten\nflatten\ntanh name=a from=input\nconcat name=cc from=input,a,input\n"
                 "add name=s from=a,input,a\n",
             2, 1, 1);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
    assert_string_equal(info.type, "flatten");
    assert_int_equal(info.out.c, 24);
    assert_int_equal(info.out.h, 1);
    assert_int_equal(info.out.w, 1);
    assert_int_equal(info.flops, 0);
    assert_int_equal(cnn_net_layer_info(t.net, 2, &info), CNN_OK);
    assert_int_equal(info.out.c, 24);
    assert_int_equal(cnn_net_layer_info(t.net, 4, &info), CNN_OK);
    assert_string_equal(info.name, "cc");
    assert_int_equal(info.out.c, 6);
    assert_int_equal(info.out.h, 3);
    assert_int_equal(info.out.w, 4);
    assert_int_equal(info.n_inputs, 3);
    assert_int_equal(info.flops, 0);
    assert_int_equal(cnn_net_layer_info(t.net, 5, &info), CNN_OK);
    assert_int_equal(info.out.c, 2);
    assert_int_equal(info.flops, 2 * 24); /* (k - 1) adds per element */
    assert_int_equal(info.params, 0);
    assert_int_equal(cnn_net_param_count(t.net), 0);
    th_free(&t);
}

/* Outputs and input gradients of add / concat / flatten nets are bit-identical on 1 and 2 threads. */
static void test_threads_bit_identical(void **state) {
    (void)state;
    const char *models[] = {
        "input c=4 h=64 w=65\ntanh name=a\nadd from=a,input,a\n",
        "input c=3 h=41 w=43\ntanh name=a\nconcat from=input,a,input\n",
        "input c=7 h=97 w=101\nflatten name=f\ntanh name=a from=input\nflatten name=g from=a\nadd from=f,g\n",
    };
    for (size_t k = 0; k < 3; k++) {
        th_net a, b;
        th_build(&a, models[k], 3, 9, 1);
        th_build(&b, models[k], 3, 9, 2);
        size_t ycount = 3 * a.out_count, xcount = 3 * a.in_count, on;
        float *dy = malloc(ycount * sizeof *dy);
        assert_non_null(dy);
        th_fill_uniform(dy, ycount, 10, -1.0f, 1.0f);
        assert_int_equal(cnn_net_forward(a.net, a.x, 3, 1), CNN_OK);
        assert_int_equal(cnn_net_forward(b.net, b.x, 3, 1), CNN_OK);
        assert_memory_equal(cnn_net_output(a.net, &on), cnn_net_output(b.net, &on), ycount * sizeof(float));
        assert_int_equal(cnn_net_backward(a.net, dy), CNN_OK);
        assert_int_equal(cnn_net_backward(b.net, dy), CNN_OK);
        assert_memory_equal(cnn_net_input_grad(a.net), cnn_net_input_grad(b.net), xcount * sizeof(float));
        free(dy);
        th_free(&a);
        th_free(&b);
    }
}

/* NaN made inside the net (the input must be finite): a = 2x = -inf, b = leaky_relu(a, -1) = +inf,
 * a + b = NaN; it must come out of concat and flatten at the right positions. */
static void test_nan_through_copies(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=2 h=1 w=3\nadd name=a from=input,input\nleaky_relu name=b from=a slope=-1\n"
                 "add name=c from=a,b\nconcat name=cc from=input,c\nflatten\n",
             2, 4, 1);
    t.x[4] = -3e38f; /* sample 0, channel 1, w 1 */
    assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
    size_t on;
    const float *y = cnn_net_output(t.net, &on);
    assert_int_equal(t.out_count, 12);
    for (size_t j = 0; j < 24; j++) {
        int want_nan = j == 6 + 4; /* channels 2..3 of sample 0 hold c; element 4 of c */
        if (want_nan != (y[j] != y[j])) fail_msg("element %zu is %g", j, (double)y[j]);
        if (j == 4) assert_true(y[j] == -3e38f); /* the copied input itself */
    }
    th_free(&t);
}

static void test_errors(void **state) {
    (void)state;
    th_expect_error("input c=3 h=5 w=7\nflatten name=f\nadd from=input,f\n", CNN_ERR_SHAPE, "differ in shape");
    th_expect_error("input c=3 h=5 w=7\ntanh name=a\nconcat name=cc from=a,input\nadd from=a,cc\n", CNN_ERR_SHAPE,
                    "input 1 is 6x5x7");
    th_expect_error("input c=3 h=5 w=7\nflatten name=f\nconcat from=input,f\n", CNN_ERR_SHAPE, "height or width");
    th_expect_error("input c=3 h=5 w=7\nflatten name=f\nconcat from=f,input,f\n", CNN_ERR_SHAPE, "input 1 is 3x5x7");
    /* only w, or only h, differs (average pooling with a 1x2 / 2x1 window, stride 1) */
    th_expect_error("input c=3 h=5 w=7\navgpool2d name=p kh=1 kw=2 stride=1\nadd from=input,p\n", CNN_ERR_SHAPE,
                    "input 1 is 3x5x6");
    th_expect_error("input c=3 h=5 w=7\navgpool2d name=p kh=2 kw=1 stride=1\nadd from=p,input\n", CNN_ERR_SHAPE,
                    "input 1 is 3x5x7, input 0 is 3x4x7");
    th_expect_error("input c=3 h=5 w=7\navgpool2d name=p kh=1 kw=2 stride=1\nconcat from=input,p\n", CNN_ERR_SHAPE,
                    "height or width");
    th_expect_error("input c=3 h=5 w=7\navgpool2d name=p kh=2 kw=1 stride=1\nconcat from=input,input,p\n",
                    CNN_ERR_SHAPE, "input 2 is 3x4x7");
    th_expect_error("input c=3 h=5 w=7\nadd from=input\n", CNN_ERR_FORMAT, "inputs");
    th_expect_error("input c=3 h=5 w=7\nconcat\n", CNN_ERR_FORMAT, "inputs");
    th_expect_error("input c=3 h=5 w=7\nadd from=input,input,input,input,input,input,input,input,input\n",
                    CNN_ERR_FORMAT, NULL);
    th_expect_error("input c=3 h=5 w=7\nflatten dim=1\n", CNN_ERR_FORMAT, "dim");
    th_expect_error("input c=3 h=5 w=7\nadd from=input,input alpha=2\n", CNN_ERR_FORMAT, "alpha");
    th_expect_error("input c=3 h=5 w=7\nconcat from=input,input axis=1\n", CNN_ERR_FORMAT, "axis");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_two_branches),
        cmocka_unit_test(test_add_repeated_inputs),
        cmocka_unit_test(test_add_eight),
        cmocka_unit_test(test_concat_different_channels),
        cmocka_unit_test(test_concat_repeated_input),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_shapes_and_info),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_nan_through_copies),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
