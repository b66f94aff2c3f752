/* test_activations.c — relu, leaky_relu, sigmoid, tanh, gelu (exact and tanh form) against the float64
 * reference (ref/ref_elem.c): forward in both modes, input gradients against central differences (th_check),
 * odd shapes with batch 3, gradients stored and accumulated, a tensor of several chunks on 1 and 2 threads (bit-identical), NaN propagation
 * through every forward, FLOP counts, parse errors and the printed model text. */
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

/* forward: float32 vs float64 (one rounding, expf/tanhf within a few ulps); grad: analytic float32 vs
 * central differences of the float64 reference (step 1e-6). */
static const th_tolerance TOL = {.forward = 2e-6, .grad = 1e-5, .fd_step = 1e-6, .fd_points = 0};

typedef struct act_case {
    ref_act f;
    double slope;
    size_t count; /* per sample */
} act_case;

static void ref_act_net(void *user, size_t n, const double *x, const double *const *params, double *y,
                        int training) {
    (void)params;
    (void)training;
    const act_case *c = user;
    ref_activation(c->f, c->slope, n * c->count, x, y);
}

/* Keep inputs at least 1e-2 away from the kinks of relu / leaky_relu so central differences are exact. */
static void nudge_from_zero(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 1e-2f) x[i] = x[i] < 0 ? x[i] - 2e-2f : x[i] + 2e-2f;
}

static void scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void run_act(const char *layer_line, ref_act f, double slope, size_t c, size_t h, size_t w, size_t n,
                    size_t threads, size_t fd_points) {
    char model[256];
    snprintf(model, sizeof model, "input c=%zu h=%zu w=%zu\n%s\n", c, h, w, layer_line);
    th_net t;
    th_build(&t, model, n, 77 + c + h + w + threads, threads);
    assert_int_equal(t.out.c, c);
    assert_int_equal(t.out.h, h);
    assert_int_equal(t.out.w, w);
    size_t total = n * t.in_count;
    scale(t.x, total, 4.0f); /* [-4, 4]: covers the saturating parts of sigmoid / tanh / gelu */
    if (f == REF_RELU || f == REF_LEAKY) nudge_from_zero(t.x, total);
    act_case ac = {f, slope, t.in_count};
    th_tolerance tol = TOL;
    tol.fd_points = fd_points;
    th_check(&t, ref_act_net, &ac, 1, tol);
    th_check(&t, ref_act_net, &ac, 0, tol);
    th_free(&t);
}

typedef struct act_def {
    const char *line;
    ref_act f;
    double slope;
} act_def;

static const act_def ACTS[] = {
    {"relu", REF_RELU, 0},
    {"leaky_relu", REF_LEAKY, 0.01},
    {"leaky_relu slope=0.2", REF_LEAKY, 0.2},
    {"leaky_relu slope=-0.3", REF_LEAKY, -0.3},
    {"leaky_relu slope=1.5", REF_LEAKY, 1.5},
    {"sigmoid", REF_SIGMOID, 0},
    {"tanh", REF_TANH, 0},
    {"gelu", REF_GELU, 0},
    {"gelu approximate=none", REF_GELU, 0},
    {"gelu approximate=tanh", REF_GELU_TANH, 0},
};
#define N_ACTS (sizeof ACTS / sizeof ACTS[0])

static void test_small_odd_shapes(void **state) {
    (void)state;
    for (size_t i = 0; i < N_ACTS; i++) {
        run_act(ACTS[i].line, ACTS[i].f, ACTS[i].slope, 3, 5, 7, 3, 1, 0);
        run_act(ACTS[i].line, ACTS[i].f, ACTS[i].slope, 1, 1, 13, 3, 1, 0);
        run_act(ACTS[i].line, ACTS[i].f, ACTS[i].slope, 2, 3, 1, 1, 2, 0);
    }
}

/* 3 x 5x61x67 = 61305 elements: four chunks (the last one partial), checked on 2 threads. */
static void test_many_chunks_two_threads(void **state) {
    (void)state;
    for (size_t i = 0; i < N_ACTS; i++) run_act(ACTS[i].line, ACTS[i].f, ACTS[i].slope, 5, 61, 67, 3, 2, 60);
}

/* f(x) + f(x) through two layers: each activation's backward once stores into and once adds onto the
 * input gradient. */
static void ref_twice(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params;
    (void)training;
    const act_case *c = user;
    ref_activation(c->f, c->slope, n * c->count, x, y);
    for (size_t i = 0; i < n * c->count; i++) y[i] *= 2;
}

static void test_accumulate(void **state) {
    (void)state;
    for (size_t i = 0; i < N_ACTS; i++) {
        char model[256];
        snprintf(model, sizeof model, "input c=2 h=3 w=5\n%s name=a\n%s name=b from=input\nadd from=a,b\n", ACTS[i].line,
                 ACTS[i].line);
        th_net t;
        th_build(&t, model, 3, 21, 1);
        scale(t.x, 3 * t.in_count, 3.0f);
        nudge_from_zero(t.x, 3 * t.in_count);
        act_case ac = {ACTS[i].f, ACTS[i].slope, t.in_count};
        th_check(&t, ref_twice, &ac, 1, TOL);
        th_free(&t);
    }
}

/* Forward output and input gradient are bit-identical on 1 and 2 threads (elementwise work). */
static void test_threads_bit_identical(void **state) {
    (void)state;
    const char *lines[] = {"relu", "leaky_relu slope=0.1", "sigmoid", "tanh", "gelu", "gelu approximate=tanh"};
    for (size_t k = 0; k < sizeof lines / sizeof lines[0]; k++) {
        char model[128];
        snprintf(model, sizeof model, "input c=3 h=101 w=67\n%s\n", lines[k]);
        th_net a, b;
        th_build(&a, model, 3, 5, 1);
        th_build(&b, model, 3, 5, 2);
        size_t total = 3 * a.in_count, on = 0;
        float *dy = malloc(total * sizeof *dy);
        assert_non_null(dy);
        th_fill_uniform(dy, total, 8, -1.0f, 1.0f);
        assert_int_equal(cnn_net_forward(a.net, a.x, 3, 1), CNN_OK);
        assert_int_equal(cnn_net_forward(b.net, b.x, 3, 1), CNN_OK);
        const float *ya = cnn_net_output(a.net, &on), *yb = cnn_net_output(b.net, &on);
        assert_memory_equal(ya, yb, total * sizeof(float));
        assert_int_equal(cnn_net_backward(a.net, dy), CNN_OK);
        assert_int_equal(cnn_net_backward(b.net, dy), CNN_OK);
        assert_memory_equal(cnn_net_input_grad(a.net), cnn_net_input_grad(b.net), total * sizeof(float));
        free(dy);
        th_free(&a);
        th_free(&b);
    }
}

/* The network rejects non-finite inputs, so the NaN is made inside the net: a = 2x overflows to -inf for
 * x = -3e38, b = leaky_relu(a, slope=-1) = +inf, c = a + b = NaN. Every activation must keep it NaN (relu
 * in particular must not turn it into 0), and leave the other elements finite. */
static void test_nan_propagates(void **state) {
    (void)state;
    for (size_t i = 0; i < N_ACTS; i++) {
        char model[512];
        snprintf(model, sizeof model,
                 "input c=2 h=3 w=5\nadd name=a from=input,input\nleaky_relu name=b from=a slope=-1\n"
                 "add name=c from=a,b\n%s from=c\n",
                 ACTS[i].line);
        th_net t;
        th_build(&t, model, 2, 3, 1);
        const size_t bad[] = {0, 7, 29, 59};
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) t.x[bad[k]] = -3e38f;
        for (int training = 0; training <= 1; training++) {
            assert_int_equal(cnn_net_forward(t.net, t.x, 2, training), CNN_OK);
            size_t on = 0;
            const float *y = cnn_net_output(t.net, &on);
            assert_non_null(y);
            for (size_t j = 0, k = 0; j < 2 * t.out_count; j++) {
                int want_nan = k < sizeof bad / sizeof bad[0] && bad[k] == j;
                if (want_nan) k++;
                if (want_nan != (y[j] != y[j]))
                    fail_msg("%s: element %zu is %g, expected %s", ACTS[i].line, j, (double)y[j],
                             want_nan ? "NaN" : "a number");
                if (!want_nan && !isfinite(y[j])) fail_msg("%s: element %zu is %g", ACTS[i].line, j, (double)y[j]);
            }
        }
        th_free(&t);
    }
}

static void test_values_and_flops(void **state) {
    (void)state;
    /* spot values against literal numbers (from Python's math module, independent of ref_elem.c) */
    const char *model = "input c=1 h=1 w=6\nrelu name=r\nleaky_relu name=l from=input slope=0.5\n"
                        "sigmoid name=s from=input\ntanh name=t from=input\ngelu name=g from=input\n"
                        "gelu name=gt from=input approximate=tanh\nconcat from=r,l,s,t,g,gt\n";
    th_net t;
    th_build(&t, model, 1, 1, 1);
    const float x[6] = {-2.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
    memcpy(t.x, x, sizeof x);
    assert_int_equal(cnn_net_forward(t.net, t.x, 1, 0), CNN_OK);
    size_t on;
    const float *y = cnn_net_output(t.net, &on);
    const double want[6][6] = {
        {0, 0, 0, 0.5, 1, 3},
        {-1, -0.25, 0, 0.5, 1, 3},
        {0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.7310585786300049, 0.9525741268224334},
        {-0.9640275800758169, -0.46211715726000974, 0, 0.46211715726000974, 0.7615941559557649, 0.9950547536867305},
        {-0.04550026389635842, -0.15426876936299344, 0, 0.34573123063700656, 0.8413447460685429, 2.99595030590511},
        {-0.04540230591222494, -0.15428599017485606, 0, 0.34571400982514394, 0.8411919906082768, 2.996362607918227},
    };
    for (size_t a = 0; a < 6; a++)
        for (size_t j = 0; j < 6; j++)
            if (fabs(y[a * 6 + j] - want[a][j]) > 2e-6 * fmax(1.0, fabs(want[a][j])))
                fail_msg("activation %zu at x=%g: got %.9g, want %.9g", a, (double)x[j], (double)y[a * 6 + j],
                         want[a][j]);
    /* FLOPs per sample: relu 1, leaky_relu 2, the rest 4 per element */
    const uint64_t per[6] = {1, 2, 4, 4, 4, 4};
    for (size_t a = 0; a < 6; a++) {
        cnn_layer_info info;
        assert_int_equal(cnn_net_layer_info(t.net, a + 1, &info), CNN_OK);
        assert_int_equal(info.flops, 6 * per[a]);
        assert_int_equal(info.params, 0);
        assert_int_equal(info.out.c, 1);
        assert_int_equal(info.out.w, 6);
    }
    th_free(&t);
}

static void test_parse_errors(void **state) {
    (void)state;
    th_expect_error("input c=1 h=2 w=2\nleaky_relu slope=abc\n", CNN_ERR_FORMAT, "slope");
    th_expect_error("input c=1 h=2 w=2\nleaky_relu slope=inf\n", CNN_ERR_FORMAT, "slope");
    th_expect_error("input c=1 h=2 w=2\ngelu approximate=erf\n", CNN_ERR_FORMAT, "approximate");
    th_expect_error("input c=1 h=2 w=2\nrelu slope=0.1\n", CNN_ERR_FORMAT, "slope");
    th_expect_error("input c=1 h=2 w=2\nsigmoid approximate=tanh\n", CNN_ERR_FORMAT, "approximate");
    th_expect_error("input c=1 h=2 w=2\ntanh from=input,input\n", CNN_ERR_FORMAT, "inputs");
}

static void test_print_round_trip(void **state) {
    (void)state;
    const char *model = "input c=2 h=3 w=4\nleaky_relu slope=0.25\ngelu approximate=tanh\nleaky_relu\ngelu\n"
                        "relu\nsigmoid\ntanh\nleaky_relu slope=-2\n";
    cnn_ctx *ctx = NULL;
    cnn_net *a = NULL, *b = NULL;
    char *text = NULL, *text2 = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "a.cnn", &a), CNN_OK);
    assert_int_equal(cnn_net_to_text(a, &text), CNN_OK);
    assert_non_null(strstr(text, "slope=0.25"));
    assert_non_null(strstr(text, "slope=-2"));
    assert_non_null(strstr(text, "approximate=tanh"));
    assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "b.cnn", &b), CNN_OK);
    assert_int_equal(cnn_net_to_text(b, &text2), CNN_OK);
    /* equal apart from the first line, a comment naming the origin */
    assert_non_null(strchr(text, '\n'));
    assert_non_null(strchr(text2, '\n'));
    assert_string_equal(strchr(text, '\n'), strchr(text2, '\n'));
    /* same function: equal outputs on the same input */
    assert_int_equal(cnn_net_compile(a, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_compile(b, 2, 0), CNN_OK);
    float x[48];
    th_fill_uniform(x, 48, 3, -3.0f, 3.0f);
    assert_int_equal(cnn_net_forward(a, x, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(b, x, 2, 0), CNN_OK);
    size_t on;
    assert_memory_equal(cnn_net_output(a, &on), cnn_net_output(b, &on), 48 * sizeof(float));
    cnn_free(ctx, text);
    cnn_free(ctx, text2);
    cnn_net_free(a);
    cnn_net_free(b);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_odd_shapes),
        cmocka_unit_test(test_many_chunks_two_threads),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_values_and_flops),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_print_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
