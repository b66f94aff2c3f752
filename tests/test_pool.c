/* test_pool.c — maxpool2d, avgpool2d, global_avgpool, global_maxpool against the float64 references in
 * tests/ref/ref_pool.c (forward in training and inference, backward against central differences),
 * PyTorch's output sizes, the worked example, NaN propagation, thread-count independence, accumulation of
 * input gradients, model-text round trips and bad parameters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "harness.h"
#include "ref/ref_pool.h"
#include "core/net_internal.h"
#include "kernels/f32_pool2d/pool2d_kernels.h"

enum { K_MAX, K_AVG, K_GAVG, K_GMAX, K_MAX_PLUS_AVG, K_GMAX_PLUS_GAVG };

typedef struct pcase {
    int kind;
    size_t c, h, w;
    const char *keys;      /* layer keys in model text */
    ref_pool2d p;          /* the same geometry for the reference */
    long oh, ow;           /* expected output size (PyTorch), checked against the net and the reference */
} pcase;

/* geometry helpers for the table below */
#define G(kh_, kw_, sh_, sw_, pt_, pb_, pl_, pr_, dh_, dw_, ceil_, cip_)                                    \
    { kh_, kw_, sh_, sw_, pt_, pb_, pl_, pr_, dh_, dw_, ceil_, cip_ }

static const pcase max_cases[] = {
    /* size 3 stride 2 pad 1 on 17x23, floor and ceil (ceil drops nothing here) */
    {K_MAX, 3, 17, 23, "size=3 stride=2 pad=1", G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 1), 9, 12},
    {K_MAX, 3, 17, 23, "size=3 stride=2 pad=1 ceil=1", G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 9, 12},
    /* ceil adds a window overhanging the input: 18 -> 9 rows (floor 8), 23 -> 11 cols (both) */
    {K_MAX, 2, 18, 23, "size=3 stride=2 ceil=1", G(3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), 9, 11},
    {K_MAX, 2, 18, 23, "size=3 stride=2", G(3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1), 8, 11},
    /* ceil whose extra window would start in the bottom padding: dropped (h 5 -> 2) */
    {K_MAX, 2, 5, 8, "size=2 stride=3 pad=1 ceil=1", G(2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 2, 3},
    /* default stride = size, rectangular windows and strides */
    {K_MAX, 2, 9, 14, "kh=2 kw=3", G(2, 3, 2, 3, 0, 0, 0, 0, 1, 1, 0, 1), 4, 4},
    {K_MAX, 2, 9, 14, "kh=2 kw=3 stride_h=1 stride_w=2", G(2, 3, 1, 2, 0, 0, 0, 0, 1, 1, 0, 1), 8, 6},
    /* asymmetric (ONNX / TF "same") pads */
    {K_MAX, 3, 7, 9, "size=2 pad_bottom=1 pad_right=1", G(2, 2, 2, 2, 0, 1, 0, 1, 1, 1, 0, 1), 4, 5},
    {K_MAX, 1, 8, 11, "kh=3 kw=4 stride=2 pad_top=2 pad_bottom=0 pad_left=0 pad_right=3",
     G(3, 4, 2, 2, 2, 0, 0, 3, 1, 1, 0, 1), 4, 6},
    /* dilation */
    {K_MAX, 2, 11, 10, "size=3 stride=1 pad=2 dilation=2", G(3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 0, 1), 11, 10},
    {K_MAX, 2, 12, 13, "kh=2 kw=3 stride=2 dilation_h=3 pad_left=1 pad_right=1 ceil=1",
     G(2, 3, 2, 2, 0, 0, 1, 1, 3, 1, 1, 1), 5, 7},
    /* wide rows: full blocks of the row kernel for stride 1, a dilated and a generic stride */
    {K_MAX, 2, 13, 29, "size=3 stride=1 pad=1", G(3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1), 13, 29},
    {K_MAX, 2, 13, 29, "kh=2 kw=3 stride=1 dilation_w=2 pad_left=2 pad_right=2",
     G(2, 3, 1, 1, 0, 0, 2, 2, 1, 2, 0, 1), 12, 29},
    {K_MAX, 2, 13, 40, "size=3 stride=3 ceil=1", G(3, 3, 3, 3, 0, 0, 0, 0, 1, 1, 1, 1), 5, 14},
    /* window as large as the input, and 1x1 */
    {K_MAX, 4, 5, 6, "kh=5 kw=6", G(5, 6, 5, 6, 0, 0, 0, 0, 1, 1, 0, 1), 1, 1},
    {K_MAX, 2, 3, 5, "size=1", G(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1), 3, 5},
    /* ceil mode lets a window exceed the padded input (as PyTorch): 2x2 input, window 3 */
    {K_MAX, 2, 2, 2, "size=3 stride=2 ceil=1", G(3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), 1, 1},
    /* 2x2 stride 2: the f32_pool2d kernels; odd sizes leave a last row / column unread, ow = 17 and 9
     * give full 8-wide vectors plus tails, ow = 1 a tail only */
    {K_MAX, 3, 9, 11, "size=2", G(2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1), 4, 5},
    {K_MAX, 2, 6, 34, "size=2 stride=2", G(2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1), 3, 17},
    {K_MAX, 2, 5, 19, "size=2", G(2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1), 2, 9},
    {K_MAX, 5, 2, 3, "size=2", G(2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1), 1, 1},
};

static const pcase avg_cases[] = {
    {K_AVG, 3, 17, 23, "size=3 stride=2 pad=1", G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 1), 9, 12},
    {K_AVG, 3, 17, 23, "size=3 stride=2 pad=1 count_include_pad=0", G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0), 9, 12},
    /* ceil overhang beyond the padded input is not counted, with and without count_include_pad */
    {K_AVG, 2, 18, 20, "size=3 stride=2 pad=1 ceil=1", G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 10, 11},
    {K_AVG, 2, 18, 20, "size=3 stride=2 pad=1 ceil=1 count_include_pad=0",
     G(3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0), 10, 11},
    {K_AVG, 2, 18, 23, "size=3 stride=2 ceil=1", G(3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), 9, 11},
    {K_AVG, 2, 5, 8, "size=2 stride=3 pad=1 ceil=1", G(2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 2, 3},
    /* rectangular, asymmetric pads */
    {K_AVG, 2, 9, 14, "kh=3 kw=2 stride_h=2 stride_w=1 pad_top=0 pad_bottom=2 pad_left=1 pad_right=0",
     G(3, 2, 2, 1, 0, 2, 1, 0, 1, 1, 0, 1), 5, 14},
    {K_AVG, 2, 9, 14,
     "kh=3 kw=2 stride_h=2 stride_w=1 pad_top=0 pad_bottom=2 pad_left=1 pad_right=0 count_include_pad=0",
     G(3, 2, 2, 1, 0, 2, 1, 0, 1, 1, 0, 0), 5, 14},
    {K_AVG, 2, 13, 29, "size=3 stride=1 pad=1", G(3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1), 13, 29},
    {K_AVG, 2, 13, 29, "size=3 stride=1 pad=1 count_include_pad=0", G(3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0), 13, 29},
    {K_AVG, 2, 13, 40, "size=3 stride=3 ceil=1 count_include_pad=0", G(3, 3, 3, 3, 0, 0, 0, 0, 1, 1, 1, 0), 5, 14},
    {K_AVG, 1, 7, 9, "size=2 ceil=1", G(2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), 4, 5},
    {K_AVG, 4, 5, 6, "kh=5 kw=6", G(5, 6, 5, 6, 0, 0, 0, 0, 1, 1, 0, 1), 1, 1},
};

static const pcase global_cases[] = {
    {K_GAVG, 5, 7, 9, "", G(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1},
    {K_GMAX, 5, 7, 9, "", G(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1},
    {K_GAVG, 3, 1, 1, "", G(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1},
    {K_GMAX, 3, 1, 13, "", G(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1},
};

static const char *kind_name(int kind) {
    switch (kind) {
    case K_MAX: return "maxpool2d";
    case K_AVG: return "avgpool2d";
    case K_GAVG: return "global_avgpool";
    default: return "global_maxpool";
    }
}

static void case_model(const pcase *k, char *buf, size_t len) {
    snprintf(buf, len, "input c=%zu h=%zu w=%zu\n%s %s\n", k->c, k->h, k->w, kind_name(k->kind), k->keys);
}

static void ref_case(void *user, size_t n, const double *x, const double *const *params, double *y,
                     int training) {
    const pcase *k = user;
    (void)params;
    (void)training;
    switch (k->kind) {
    case K_MAX: ref_maxpool2d(&k->p, n, k->c, k->h, k->w, x, y); break;
    case K_AVG: ref_avgpool2d(&k->p, n, k->c, k->h, k->w, x, y); break;
    case K_GAVG: ref_global_avgpool(n, k->c, k->h, k->w, x, y); break;
    case K_GMAX: ref_global_maxpool(n, k->c, k->h, k->w, x, y); break;
    case K_MAX_PLUS_AVG:
    case K_GMAX_PLUS_GAVG: {
        size_t m = n * k->c * (size_t)(k->oh * k->ow);
        double *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b);
        assert_non_null(a);
        assert_non_null(b);
        if (k->kind == K_MAX_PLUS_AVG) {
            ref_pool2d avg = k->p;
            avg.dh = avg.dw = 1;
            avg.count_include_pad = 0;
            ref_maxpool2d(&k->p, n, k->c, k->h, k->w, x, a);
            ref_avgpool2d(&avg, n, k->c, k->h, k->w, x, b);
        } else {
            ref_global_maxpool(n, k->c, k->h, k->w, x, a);
            ref_global_avgpool(n, k->c, k->h, k->w, x, b);
        }
        for (size_t i = 0; i < m; i++)
            y[i] = a[i] + b[i];
        free(a);
        free(b);
        break;
    }
    }
}

/* x := a random permutation of evenly spaced values in (-1, 1): no ties and no near-ties (spacing
 * >= 2 / count), so central differences of max are valid. */
static void fill_distinct(float *x, size_t count, uint64_t seed) {
    for (size_t i = 0; i < count; i++)
        x[i] = (float)(-1.0 + 2.0 * ((double)i + 0.5) / (double)count);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = count; i > 1; i--) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        size_t j = (size_t)((s * 0x2545F4914F6CDD1Dull) >> 11) % i;
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

static void check_shape(const th_net *t, const pcase *k) {
    assert_int_equal(t->out.c, k->c);
    assert_int_equal(t->out.h, (size_t)k->oh);
    assert_int_equal(t->out.w, (size_t)k->ow);
    if (k->kind == K_MAX || k->kind == K_AVG) {
        /* the table's expected sizes agree with the reference's PyTorch formula */
        assert_int_equal(ref_pool_out_len((long)k->h, k->p.kh, k->p.sh, k->p.pt, k->p.pb, k->p.dh, k->p.ceil),
                         k->oh);
        assert_int_equal(ref_pool_out_len((long)k->w, k->p.kw, k->p.sw, k->p.pl, k->p.pr, k->p.dw, k->p.ceil),
                         k->ow);
    }
}

static void run_cases(const pcase *cases, size_t count) {
    const th_tolerance tol = {.forward = 2e-6, .grad = 2e-5, .fd_step = 0, .fd_points = 0};
    char model[512];
    for (size_t i = 0; i < count; i++) {
        const pcase *k = &cases[i];
        case_model(k, model, sizeof model);
        for (int training = 1; training >= 0; training--) {
            th_net t;
            th_build(&t, model, 3, 100 + i, 0);
            check_shape(&t, k);
            fill_distinct(t.x, t.n * t.in_count, 7 + i);
            th_check(&t, ref_case, (void *)k, training, tol);
            th_free(&t);
        }
    }
}

static void test_maxpool_vs_ref(void **state) {
    (void)state;
    run_cases(max_cases, sizeof max_cases / sizeof max_cases[0]);
}

static void test_avgpool_vs_ref(void **state) {
    (void)state;
    run_cases(avg_cases, sizeof avg_cases / sizeof avg_cases[0]);
}

static void test_global_vs_ref(void **state) {
    (void)state;
    run_cases(global_cases, sizeof global_cases / sizeof global_cases[0]);
}

/* Uniform random (not permuted) inputs for average pooling: harness data as is. */
static void test_avgpool_uniform_inputs(void **state) {
    (void)state;
    const th_tolerance tol = {.forward = 2e-6, .grad = 2e-5};
    char model[512];
    for (size_t i = 0; i < sizeof avg_cases / sizeof avg_cases[0]; i += 3) {
        case_model(&avg_cases[i], model, sizeof model);
        th_net t;
        th_build(&t, model, 2, 900 + i, 0);
        th_check(&t, ref_case, (void *)&avg_cases[i], 1, tol);
        th_free(&t);
    }
}

/* A tensor read by two pooling layers: in backward the later layer stores dx, the earlier one adds into it
 * (dx_accumulate); both orders, so every layer type takes both paths. */
static void test_accumulate(void **state) {
    (void)state;
    const th_tolerance tol = {.forward = 2e-6, .grad = 2e-5};
    const pcase both = {K_MAX_PLUS_AVG, 2, 9, 11, "", G(3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0), 9, 11};
    const pcase gboth = {K_GMAX_PLUS_GAVG, 4, 5, 7, "", G(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1};
    static const char *const models[4] = {
        "input name=src c=2 h=9 w=11\n"
        "maxpool2d name=a from=src size=3 stride=1 pad=1\n"
        "avgpool2d name=b from=src size=3 stride=1 pad=1 count_include_pad=0\n"
        "add from=a,b\n",
        "input name=src c=2 h=9 w=11\n"
        "avgpool2d name=b from=src size=3 stride=1 pad=1 count_include_pad=0\n"
        "maxpool2d name=a from=src size=3 stride=1 pad=1\n"
        "add from=a,b\n",
        "input name=src c=4 h=5 w=7\n"
        "global_maxpool name=a from=src\n"
        "global_avgpool name=b from=src\n"
        "add from=a,b\n",
        "input name=src c=4 h=5 w=7\n"
        "global_avgpool name=b from=src\n"
        "global_maxpool name=a from=src\n"
        "add from=a,b\n",
    };
    for (size_t m = 0; m < 4; m++) {
        th_net t;
        th_build(&t, models[m], 3, 5 + m, 0);
        fill_distinct(t.x, t.n * t.in_count, 11 + m);
        th_check(&t, ref_case, (void *)(m < 2 ? &both : &gboth), 1, tol);
        th_free(&t);
    }
}

/* The worked example: 4x4 input 1..16 row-major, size 2 stride 2. */
static void test_worked_example(void **state) {
    (void)state;
    static const float want_max[4] = {6, 8, 14, 16};
    static const float want_avg[4] = {3.5f, 5.5f, 11.5f, 13.5f};
    const float ones[4] = {1, 1, 1, 1};
    for (int avg = 0; avg < 2; avg++) {
        th_net t;
        th_build(&t, avg ? "input c=1 h=4 w=4\navgpool2d size=2 stride=2\n" : "input c=1 h=4 w=4\nmaxpool2d size=2\n",
                 1, 1, 1);
        for (int i = 0; i < 16; i++)
            t.x[i] = (float)(i + 1);
        for (int training = 0; training < 2; training++) {
            assert_int_equal(cnn_net_forward(t.net, t.x, 1, training), CNN_OK);
            size_t n = 0;
            const float *y = cnn_net_output(t.net, &n);
            assert_int_equal(n, 1);
            for (int i = 0; i < 4; i++)
                assert_true(y[i] == (avg ? want_avg : want_max)[i]);
        }
        assert_int_equal(cnn_net_backward(t.net, ones), CNN_OK);
        const float *dx = cnn_net_input_grad(t.net);
        assert_non_null(dx);
        for (int i = 0; i < 16; i++) {
            float want = avg ? 0.25f : (i == 5 || i == 7 || i == 13 || i == 15) ? 1.0f : 0.0f;
            assert_true(dx[i] == want);
        }
        th_free(&t);
    }
}

/* Ties: the first maximum in row-major window order takes the gradient (PyTorch). */
static void test_maxpool_ties(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=1 h=2 w=4\nmaxpool2d size=2\n", 1, 1, 1);
    const float x[8] = {1, 3, 2, 2, 3, 3, 2, 2};
    memcpy(t.x, x, sizeof x);
    assert_int_equal(cnn_net_forward(t.net, t.x, 1, 1), CNN_OK);
    const float *y = cnn_net_output(t.net, NULL);
    assert_true(y[0] == 3 && y[1] == 2);
    const float dy[2] = {1, 10};
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    const float *dx = cnn_net_input_grad(t.net);
    const float want[8] = {0, 1, 10, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        assert_true(dx[i] == want[i]);
    th_free(&t);

    th_build(&t, "input c=2 h=2 w=2\nglobal_maxpool\n", 1, 1, 1);
    const float xg[8] = {1, 3, 3, 2, -1, -1, -2, -1};
    memcpy(t.x, xg, sizeof xg);
    assert_int_equal(cnn_net_forward(t.net, t.x, 1, 1), CNN_OK);
    y = cnn_net_output(t.net, NULL);
    assert_true(y[0] == 3 && y[1] == -1);
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    dx = cnn_net_input_grad(t.net);
    const float wantg[8] = {0, 1, 0, 0, 10, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        assert_true(dx[i] == wantg[i]);
    th_free(&t);

    /* long planes (the lane-parallel path): ties in different lanes and in the tail */
    th_build(&t, "input c=3 h=4 w=5\nglobal_maxpool\n", 1, 1, 1);
    for (int i = 0; i < 60; i++)
        t.x[i] = (float)(i % 7) * 0.01f;
    t.x[13] = t.x[6] = 5.0f;           /* channel 0: lanes 5 and 6 -> 6 */
    t.x[20 + 17] = t.x[20 + 9] = 4.0f; /* channel 1: tail and lane 1 -> 9 */
    t.x[40 + 2] = t.x[40 + 11] = 3.0f; /* channel 2: lanes 2 and 3 -> 2 */
    assert_int_equal(cnn_net_forward(t.net, t.x, 1, 1), CNN_OK);
    y = cnn_net_output(t.net, NULL);
    assert_true(y[0] == 5.0f && y[1] == 4.0f && y[2] == 3.0f);
    const float dy3[3] = {1, 10, 100};
    assert_int_equal(cnn_net_backward(t.net, dy3), CNN_OK);
    dx = cnn_net_input_grad(t.net);
    for (int i = 0; i < 60; i++)
        assert_true(dx[i] == (i == 6 ? 1.0f : i == 29 ? 10.0f : i == 42 ? 100.0f : 0.0f));
    th_free(&t);
}

/* Layer 1 of a harness net run directly, outside cnn_net_forward (which rejects non-finite input), on
 * caller buffers. */
static float *direct_ws(const th_net *t, size_t *stride) {
    *stride = (t->net->layers[1].sizes.ws_per_thread + 15) / 16 * 16;
    float *ws = malloc((*stride * cnn_ctx_threads(t->ctx) + 1) * sizeof *ws);
    assert_non_null(ws);
    return ws;
}

static void direct_forward(const th_net *t, const float *x, float *y, int32_t *saved, int training) {
    cnn_layer_run r;
    memset(&r, 0, sizeof r);
    r.ws = direct_ws(t, &r.ws_stride);
    r.L = &t->net->layers[1];
    r.ctx = t->ctx;
    r.n = t->n;
    r.training = training;
    r.x[0] = x;
    r.y = y;
    r.saved = training ? saved : NULL;
    r.L->ops->forward(&r);
    free(r.ws);
}

static void direct_backward(const th_net *t, const float *dy, float *dx, int32_t *saved, int accumulate) {
    cnn_layer_run r;
    memset(&r, 0, sizeof r);
    r.ws = direct_ws(t, &r.ws_stride);
    r.L = &t->net->layers[1];
    r.ctx = t->ctx;
    r.n = t->n;
    r.training = 1;
    r.dy = dy;
    r.dx[0] = dx;
    r.dx_accumulate[0] = accumulate;
    r.saved = saved;
    r.L->ops->backward_data(&r);
    free(r.ws);
}

/* NaN in a window makes that output NaN (and takes its gradient); other outputs are unaffected. An all
 * -inf window gives -inf with the gradient at its first input element. */
static void test_nan_propagation(void **state) {
    (void)state;
    /* maxpool 7x9, size 3 stride 2 pad 1, batch 2: x[1][3][4] is in outputs (1,2) and (2,2) of sample 1 */
    pcase mk = max_cases[0];
    mk.c = 1;
    mk.h = 7;
    mk.w = 9;
    mk.oh = 4;
    mk.ow = 5;
    char model[256];
    case_model(&mk, model, sizeof model);
    th_net t;
    th_build(&t, model, 2, 3, 2);
    check_shape(&t, &mk);
    float x[2 * 63], y[2 * 20], dy[2 * 20], dx[2 * 63];
    int32_t saved[2 * 20];
    fill_distinct(x, 2 * 63, 5);
    const size_t nan_at = 63 + 3 * 9 + 4;
    x[nan_at] = NAN;
    double xd[2 * 63], yd[2 * 20];
    for (size_t i = 0; i < 2 * 63; i++)
        xd[i] = x[i];
    ref_maxpool2d(&mk.p, 2, 1, 7, 9, xd, yd);
    for (int training = 0; training < 2; training++) {
        for (size_t i = 0; i < 40; i++)
            y[i] = 12345.0f;
        direct_forward(&t, x, y, saved, training);
        size_t nan_outputs = 0;
        for (size_t i = 0; i < 40; i++) {
            int in_window = i >= 20 && (i - 20) / 5 >= 1 && (i - 20) / 5 <= 2 && (i - 20) % 5 == 2;
            assert_int_equal(isnan(y[i]) != 0, in_window);
            assert_int_equal(isnan(yd[i]) != 0, in_window);
            if (in_window)
                nan_outputs++;
            else
                assert_true(y[i] == (float)yd[i]);
        }
        assert_int_equal(nan_outputs, 2);
    }
    for (int i = 0; i < 40; i++)
        dy[i] = 1.0f;
    direct_backward(&t, dy, dx, saved, 0);
    assert_true(dx[nan_at] == 2.0f); /* both NaN windows route to the NaN */
    double total = 0;
    for (size_t i = 0; i < 2 * 63; i++)
        total += dx[i];
    assert_true(total == 40.0); /* every output routes exactly one gradient */
    /* two NaNs in one window: PyTorch's rule keeps the last one as the argmax. (3,5) is in windows (1,2),
     * (2,2) (shared with (3,4)) and (1,3), (2,3). */
    x[nan_at + 1] = NAN;
    direct_forward(&t, x, y, saved, 1);
    direct_backward(&t, dy, dx, saved, 0);
    assert_true(dx[nan_at] == 0.0f && dx[nan_at + 1] == 4.0f);
    th_free(&t);

    /* avgpool and the global pools propagate NaN too: one NaN output in channel 1 */
    static const char *const models[] = {
        "input c=2 h=5 w=5\navgpool2d size=3 stride=2 pad=1\n",
        "input c=2 h=5 w=5\nglobal_maxpool\n",
        "input c=2 h=5 w=5\nglobal_avgpool\n",
    };
    for (size_t m = 0; m < 3; m++) {
        th_build(&t, models[m], 1, 4, 1);
        float x2[50], y2[18];
        int32_t saved2[18];
        memcpy(x2, t.x, sizeof x2);
        x2[25 + 12] = NAN; /* channel 1, centre */
        for (int training = 0; training < 2; training++) {
            direct_forward(&t, x2, y2, saved2, training);
            size_t per = t.out_count / 2, nans = 0;
            for (size_t i = 0; i < per; i++)
                assert_false(isnan(y2[i]));
            for (size_t i = per; i < 2 * per; i++)
                nans += isnan(y2[i]) != 0;
            assert_int_equal(nans, 1);
        }
        th_free(&t);
    }

    /* all -inf: the output is -inf and each window's first element takes its gradient */
    th_build(&t, "input c=1 h=3 w=3\nmaxpool2d size=2 stride=1\n", 1, 4, 1);
    float xi[9], yi[4], dxi[9];
    int32_t si[4];
    for (int i = 0; i < 9; i++)
        xi[i] = -INFINITY;
    direct_forward(&t, xi, yi, si, 1);
    for (int i = 0; i < 4; i++)
        assert_true(isinf(yi[i]) && yi[i] < 0);
    const float dy4[4] = {1, 2, 4, 8};
    direct_backward(&t, dy4, dxi, si, 0);
    const float want[9] = {1, 2, 0, 4, 8, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        assert_true(dxi[i] == want[i]);
    th_free(&t);
}

/* backward_data: dx_accumulate adds to what dx holds, otherwise dx is overwritten; dx NULL is skipped. */
static void test_direct_accumulate(void **state) {
    (void)state;
    static const char *const models[] = {
        "input c=3 h=6 w=7\nmaxpool2d size=3 stride=2 pad=1 ceil=1\n",
        "input c=3 h=6 w=7\navgpool2d size=3 stride=2 pad=1 count_include_pad=0\n",
        "input c=3 h=6 w=7\nglobal_maxpool\n",
        "input c=3 h=6 w=7\nglobal_avgpool\n",
    };
    for (size_t m = 0; m < 4; m++) {
        th_net t;
        th_build(&t, models[m], 2, 77, 2);
        size_t nx = t.n * t.in_count, ny = t.n * t.out_count;
        float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
        float *dx0 = malloc(nx * sizeof *dx0), *dx1 = malloc(nx * sizeof *dx1), *base = malloc(nx * sizeof *base);
        int32_t *saved = malloc(ny * sizeof *saved);
        assert_true(y && dy && dx0 && dx1 && base && saved);
        th_fill_uniform(dy, ny, 78, -1, 1);
        th_fill_uniform(base, nx, 79, -1, 1);
        direct_forward(&t, t.x, y, saved, 1);
        for (size_t i = 0; i < nx; i++)
            dx0[i] = 1e30f; /* overwritten */
        direct_backward(&t, dy, dx0, saved, 0);
        memcpy(dx1, base, nx * sizeof *dx1);
        direct_backward(&t, dy, dx1, saved, 1);
        size_t nonzero = 0;
        for (size_t i = 0; i < nx; i++) {
            assert_true(fabsf(dx0[i]) < 10.0f);
            /* the same sum up to rounding: accumulation adds each contribution in turn */
            assert_true(fabsf(dx1[i] - (base[i] + dx0[i])) <= 1e-6f * (fabsf(base[i]) + fabsf(dx0[i]) + 1.0f));
            nonzero += dx0[i] != 0.0f;
        }
        assert_true(nonzero * 4 >= ny); /* an input element takes at most 4 of these windows */
        direct_backward(&t, dy, NULL, saved, 0); /* must not crash */
        free(y);
        free(dy);
        free(dx0);
        free(dx1);
        free(base);
        free(saved);
        th_free(&t);
    }
}

/* 1, 2 and 3 threads give bit-identical outputs and input gradients. */
static void test_threads_bit_identical(void **state) {
    (void)state;
    static const char *const models[] = {
        "input c=5 h=17 w=23\nmaxpool2d size=3 stride=2 pad=1 ceil=1\n",
        "input c=5 h=17 w=23\navgpool2d size=3 stride=2 pad=1 ceil=1 count_include_pad=0\n",
        "input c=5 h=17 w=23\navgpool2d kh=2 kw=3 stride=1\n",
        "input c=5 h=17 w=23\nmaxpool2d kh=3 kw=2 stride=1 dilation=2 pad=1\n",
        "input c=5 h=17 w=23\nglobal_avgpool\n",
        "input c=5 h=17 w=23\nglobal_maxpool\n",
    };
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        th_net ref;
        th_build(&ref, models[m], 3, 42, 1);
        float *dy = malloc(ref.n * ref.out_count * sizeof *dy);
        float *y1 = malloc(ref.n * ref.out_count * sizeof *y1);
        float *dx1 = malloc(ref.n * ref.in_count * sizeof *dx1);
        assert_non_null(dy);
        assert_non_null(y1);
        assert_non_null(dx1);
        th_fill_uniform(dy, ref.n * ref.out_count, 43, -1, 1);
        assert_int_equal(cnn_net_forward(ref.net, ref.x, ref.n, 1), CNN_OK);
        memcpy(y1, cnn_net_output(ref.net, NULL), ref.n * ref.out_count * sizeof *y1);
        assert_int_equal(cnn_net_backward(ref.net, dy), CNN_OK);
        memcpy(dx1, cnn_net_input_grad(ref.net), ref.n * ref.in_count * sizeof *dx1);
        for (size_t threads = 2; threads <= 3; threads++) {
            th_net t;
            th_build(&t, models[m], 3, 42, threads);
            assert_int_equal(cnn_ctx_threads(t.ctx), threads);
            assert_memory_equal(t.x, ref.x, t.n * t.in_count * sizeof(float));
            assert_int_equal(cnn_net_forward(t.net, t.x, t.n, 1), CNN_OK);
            assert_memory_equal(cnn_net_output(t.net, NULL), y1, t.n * t.out_count * sizeof(float));
            assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
            assert_memory_equal(cnn_net_input_grad(t.net), dx1, t.n * t.in_count * sizeof(float));
            th_free(&t);
        }
        free(dy);
        free(y1);
        free(dx1);
        th_free(&ref);
    }
}

/* Model text round trip, FLOPs and output shapes through cnn_net_layer_info. */
static void test_text_and_info(void **state) {
    (void)state;
    static const char *const models[] = {
        "input c=3 h=17 w=23\nmaxpool2d name=p size=3 stride=2 pad=1\n",
        "input c=3 h=17 w=23\nmaxpool2d kh=2 kw=3 stride_h=1 stride_w=2 pad_top=0 pad_bottom=1 pad_left=1 "
        "pad_right=0 dilation_h=2 dilation_w=1 ceil=1\n",
        "input c=3 h=17 w=23\navgpool2d size=3 stride=2 pad=1 ceil=true count_include_pad=0\n",
        "input c=3 h=17 w=23\navgpool2d kh=3 kw=2\n",
        "input c=3 h=17 w=23\nglobal_avgpool\n",
        "input c=3 h=17 w=23\nglobal_maxpool\n",
        "input c=3 h=17 w=23\nmaxpool2d size=3 kh=2 stride_w=1\n",
    };
    static const uint64_t flops[] = {3 * 9 * 12 * 9, 0,           3 * 9 * 12 * 9, 3 * 5 * 11 * 6,
                                     3 * 17 * 23,    3 * 17 * 23, 3 * 8 * 21 * 6};
    assert_int_equal(sizeof flops / sizeof flops[0], sizeof models / sizeof models[0]);
    cnn_ctx *ctx;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        cnn_net *a, *b;
        char *ta, *tb;
        assert_int_equal(cnn_net_parse(ctx, models[m], strlen(models[m]), "t.cnn", &a), CNN_OK);
        assert_int_equal(cnn_net_to_text(a, &ta), CNN_OK);
        assert_int_equal(cnn_net_parse(ctx, ta, strlen(ta), "t.cnn", &b), CNN_OK);
        assert_int_equal(cnn_net_to_text(b, &tb), CNN_OK);
        assert_string_equal(ta, tb);
        cnn_layer_info ia, ib;
        assert_int_equal(cnn_net_layer_info(a, 1, &ia), CNN_OK);
        assert_int_equal(cnn_net_layer_info(b, 1, &ib), CNN_OK);
        assert_int_equal(ia.out.c, ib.out.c);
        assert_int_equal(ia.out.h, ib.out.h);
        assert_int_equal(ia.out.w, ib.out.w);
        assert_int_equal(ia.flops, ib.flops);
        assert_int_equal(ia.params, 0);
        if (flops[m])
            assert_int_equal(ia.flops, flops[m]);
        if (m == 1) {
            /* h: 17+0+1, keff 3, s 1 -> 16; w: 23+1+0, keff 3, s 2, ceil -> 12 */
            assert_int_equal(ia.out.h, 16);
            assert_int_equal(ia.out.w, 12);
            assert_int_equal(ia.flops, 3 * 16 * 12 * 6);
            assert_non_null(strstr(ta, "pad_bottom=1"));
            assert_non_null(strstr(ta, "dilation_h=2"));
        }
        if (m == 2)
            assert_non_null(strstr(ta, "count_include_pad=0"));
        if (m == 6) /* kh overrides size; stride_h stays the default (kh) */
            assert_non_null(strstr(ta, "kh=2 kw=3 stride_h=2 stride_w=1"));
        cnn_free(ctx, ta);
        cnn_free(ctx, tb);
        cnn_net_free(a);
        cnn_net_free(b);
    }
    cnn_ctx_free(ctx);
}

static void test_bad_parameters(void **state) {
    (void)state;
    const char *in = "input c=2 h=4 w=4\n";
    static const struct {
        const char *layer;
        cnn_status st;
        const char *needle;
    } bad[] = {
        {"maxpool2d stride=2", CNN_ERR_FORMAT, "missing window size"},
        {"avgpool2d pad=1", CNN_ERR_FORMAT, "missing window size"},
        {"maxpool2d kh=3", CNN_ERR_FORMAT, "kw"},
        {"maxpool2d size=0", CNN_ERR_FORMAT, "size"},
        {"maxpool2d size=-1", CNN_ERR_FORMAT, "size"},
        {"maxpool2d size=2 stride=0", CNN_ERR_FORMAT, "stride"},
        {"maxpool2d size=5", CNN_ERR_SHAPE, "larger than the padded input"},
        {"avgpool2d kh=2 kw=7 pad=1", CNN_ERR_SHAPE, "larger than the padded input"},
        {"maxpool2d size=7 stride=2 ceil=1", CNN_ERR_SHAPE, "larger than the padded input"},
        {"maxpool2d size=2 pad=2", CNN_ERR_SHAPE, "more than half"},
        {"avgpool2d size=3 pad=2", CNN_ERR_SHAPE, "more than half"},
        {"maxpool2d size=3 pad_top=3", CNN_ERR_SHAPE, "asymmetric"},
        {"maxpool2d size=2 foo=1", CNN_ERR_FORMAT, "foo"},
        {"avgpool2d size=2 dilation=2", CNN_ERR_FORMAT, "dilation"},
        {"maxpool2d size=2 count_include_pad=0", CNN_ERR_FORMAT, "count_include_pad"},
        {"maxpool2d size=2 ceil=maybe", CNN_ERR_FORMAT, "ceil"},
        {"global_avgpool size=2", CNN_ERR_FORMAT, "size"},
        {"global_maxpool stride=1", CNN_ERR_FORMAT, "stride"},
    };
    char model[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(model, sizeof model, "%s%s\n", in, bad[i].layer);
        th_expect_error(model, bad[i].st, bad[i].needle);
    }
    /* a dilated window that covers only padding (1x1 input, window taps at -2 and +1) */
    th_expect_error("input c=1 h=1 w=1\nmaxpool2d size=2 dilation=3 pad=2\n", CNN_ERR_SHAPE, "only padding");
    /* errors name the line */
    th_expect_error("input c=1 h=4 w=4\n\nmaxpool2d size=9\n", CNN_ERR_SHAPE, ":3: maxpool2d");
}

/* ---- the 2x2 stride-2 kernels (src/kernels/f32_pool2d) against a naive rule, every ISA the CPU has ---- */

/* Naive: the sequential window rule, relu after, argmax as a plane index. */
static void naive_2x2(const float *x, size_t w, size_t ow, size_t rows, int relu, float *y, int32_t *arg) {
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < ow; j++) {
            float m = -INFINITY;
            size_t best = 2 * r * w + 2 * j;
            for (size_t di = 0; di < 2; di++)
                for (size_t dj = 0; dj < 2; dj++) {
                    size_t at = (2 * r + di) * w + 2 * j + dj;
                    if (x[at] > m || x[at] != x[at]) {
                        m = x[at];
                        best = at;
                    }
                }
            if (relu && !(m > 0.0f || m != m)) m = 0.0f;
            y[r * ow + j] = m;
            arg[r * ow + j] = (int32_t)best;
        }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The 3x3 stride-2 inference kernels (pool2d_kernels.h) against the sequential rule written here, on every
 * ISA the CPU has, bitwise: random planes (heights 1..20, widths 1..70: vector and scalar columns), pads
 * 0..2 (every window keeps an input element), with ties, NaN (two payloads: the last one must win) and
 * infinities, with and without the fused relu; guard floats around the output catch over-writes. */
static float mp3_ref(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oy, size_t ox) {
    float m = -INFINITY;
    for (ptrdiff_t i = 0; i < 3; i++)
        for (ptrdiff_t j = 0; j < 3; j++) {
            const ptrdiff_t q = 2 * (ptrdiff_t)oy - pt + i, c = 2 * (ptrdiff_t)ox - pl + j;
            if (q < 0 || c < 0 || q >= (ptrdiff_t)h || c >= (ptrdiff_t)w) continue;
            const float v = x[(size_t)q * w + (size_t)c];
            if (v > m || v != v) m = v;
        }
    return m;
}

static void test_kernel_3x3s2(void **state) {
    (void)state;
    cnn_f32_maxpool3x3s2_infer_fn fn[2] = {cnn_f32_maxpool3x3s2_infer_scalar, cnn_f32_maxpool3x3s2_infer_avx2};
    const int n_isa = cnn_cpu_isa() >= CNN_ISA_AVX2 ? 2 : 1;
    uint32_t seed = 12345;
    for (int it = 0; it < 400; it++) {
        seed = seed * 1664525u + 1013904223u;
        const size_t h = 1 + (seed >> 8) % 20, w = 1 + (seed >> 16) % 70;
        const size_t pt = (seed >> 4) % 3, pl = (seed >> 24) % 3;
        if (h + 2 * pt < 3 || w + 2 * pl < 3 || pt > 1 + (h - 1) || pl > 1 + (w - 1)) continue;
        const size_t oh = (h + 2 * pt - 3) / 2 + 1, ow = (w + 2 * pl - 3) / 2 + 1;
        /* every window must hold an input element: pads below the window (2 < 3) guarantee it when
         * the last window starts inside; skip the geometries where it does not */
        if (2 * (oh - 1) >= h + pt || 2 * (ow - 1) >= w + pl) continue;
        float *x = malloc(h * w * sizeof(float)), *y = malloc((oh * ow + 32) * sizeof(float));
        assert_true(x && y);
        for (size_t i = 0; i < h * w; i++) {
            seed = seed * 1664525u + 1013904223u;
            const uint32_t k = seed >> 24;
            x[i] = k < 6 ? NAN : k < 10 ? -NAN : k < 13 ? INFINITY : k < 16 ? -INFINITY : (float)((int)(k % 7) - 3);
        }
        for (int v = 0; v < n_isa; v++) {
            for (size_t i = 0; i < oh * ow + 32; i++) y[i] = 99.0f;
            const int relu = it % 2;
            fn[v](x, h, w, (ptrdiff_t)pt, (ptrdiff_t)pl, oh, ow, relu, y + 16);
            for (size_t i = 0; i < 16; i++) {
                assert_true(y[i] == 99.0f);
                assert_true(y[16 + oh * ow + i] == 99.0f);
            }
            for (size_t oy = 0; oy < oh; oy++)
                for (size_t ox = 0; ox < ow; ox++) {
                    float want = mp3_ref(x, h, w, (ptrdiff_t)pt, (ptrdiff_t)pl, oy, ox);
                    if (relu && !(want > 0.0f || want != want)) want = 0.0f;
                    if (memcmp(&y[16 + oy * ow + ox], &want, sizeof want))
                        fail_msg("isa %d %zux%zu pad %zu,%zu: y[%zu][%zu] = %g, want %g", v, h, w, pt, pl, oy, ox,
                                 y[16 + oy * ow + ox], want);
                }
        }
        free(x), free(y);
    }
}

static void test_kernel_2x2(void **state) {
    (void)state;
    const size_t shapes[][3] = {{1, 1, 1}, {2, 1, 3}, {16, 8, 2}, {17, 8, 3}, {14, 7, 4}, {28, 14, 2},
                                {30, 15, 3}, {34, 17, 2}, {5, 2, 1}, {40, 19, 2}};
    cnn_f32_maxpool2x2_fwd_fn fwd[2] = {cnn_f32_maxpool2x2_fwd_scalar, cnn_f32_maxpool2x2_fwd_avx2};
    cnn_f32_maxpool2x2_bwd_fn bwd[2] = {cnn_f32_maxpool2x2_bwd_scalar, cnn_f32_maxpool2x2_bwd_avx2};
    const int n_isa = cnn_cpu_isa() >= CNN_ISA_AVX2 ? 2 : 1;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const size_t w = shapes[si][0], ow = shapes[si][1], rows = shapes[si][2];
        const size_t nin = 2 * rows * w, nout = rows * ow;
        /* guard floats around every buffer catch over-reads (NaN there would show) and over-writes */
        float *xb = malloc((nin + 32) * sizeof *xb), *x = xb + 16;
        float y0[64 * 8], y1[64 * 8], dyv[64 * 8];
        int32_t a0[64 * 8], a1[64 * 8];
        float *dx0 = malloc((nin + 32) * sizeof *dx0), *dx1 = malloc((nin + 32) * sizeof *dx1);
        assert_non_null(xb);
        assert_non_null(dx0);
        assert_non_null(dx1);
        for (size_t i = 0; i < nin + 32; i++) xb[i] = NAN;
        for (int trial = 0; trial < 4; trial++) {
            th_fill_uniform(x, nin, 100 + si * 7 + (size_t)trial, -1.0f, 1.0f);
            for (size_t i = 0; i < nin; i++) {
                uint64_t h = (i * 0x9E3779B97F4A7C15ull + (uint64_t)trial) >> 58;
                if (trial >= 1 && h == 1) x[i] = NAN;
                if (trial >= 1 && h == 2) x[i] = INFINITY;
                if (trial >= 1 && h == 3) x[i] = -INFINITY;
                if (trial >= 2 && h >= 4 && h < 12) x[i] = 0.25f; /* ties */
                if (trial == 3 && h >= 12 && h < 16) x[i] = -0.0f;
            }
            th_fill_uniform(dyv, nout, 300 + si, -1.0f, 1.0f);
            for (int relu = 0; relu < 2; relu++) {
                naive_2x2(x, w, ow, rows, relu, y0, a0);
                for (int isa = 0; isa < n_isa; isa++) {
                    for (size_t i = 0; i < nout + 8; i++) {
                        y1[i] = 7.0f;
                        a1[i] = -7;
                    }
                    fwd[isa](x, w, ow, rows, relu, y1, a1);
                    for (size_t i = 0; i < nout; i++) {
                        if (!same_bits(y0[i], y1[i]) || a0[i] != a1[i])
                            fail_msg("fwd isa %d w %zu ow %zu rows %zu relu %d trial %d: out %zu: %g@%d vs %g@%d",
                                     isa, w, ow, rows, relu, trial, i, (double)y1[i], a1[i], (double)y0[i], a0[i]);
                    }
                    assert_true(y1[nout] == 7.0f && a1[nout] == -7);
                    for (int acc = 0; acc < 2; acc++) {
                        /* naive backward: start from the same dx, scatter */
                        for (size_t i = 0; i < nin + 32; i++) dx0[i] = dx1[i] = (float)(i % 5) - 2.0f;
                        float *d0 = dx0 + 16, *d1 = dx1 + 16;
                        for (size_t r = 0; r < 2 * rows; r++)
                            for (size_t c = 0; c < 2 * ow; c++)
                                if (!acc) d0[r * w + c] = 0.0f;
                        for (size_t o = 0; o < nout; o++) {
                            float g = relu && !(y0[o] > 0.0f) ? 0.0f : dyv[o];
                            d0[a0[o]] += g;
                        }
                        bwd[isa](dyv, a1, relu ? y1 : NULL, w, ow, rows, relu, acc, d1);
                        for (size_t i = 0; i < nin + 32; i++) {
                            /* without acc, columns >= 2 * ow inside the rows are scratch (the driver clears) */
                            if (!acc && i >= 16 && i < nin + 16 && (i - 16) % w >= 2 * ow) continue;
                            if (!same_bits(dx0[i], dx1[i]) && !(dx0[i] == 0.0f && dx1[i] == 0.0f))
                                fail_msg("bwd isa %d w %zu ow %zu rows %zu relu %d acc %d trial %d: at %zd: %g vs %g",
                                         isa, w, ow, rows, relu, acc, trial, (ptrdiff_t)i - 16, (double)dx1[i],
                                         (double)dx0[i]);
                        }
                    }
                }
            }
        }
        free(xb);
        free(dx0);
        free(dx1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_kernel_2x2),
        cmocka_unit_test(test_kernel_3x3s2),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_maxpool_vs_ref),
        cmocka_unit_test(test_avgpool_vs_ref),
        cmocka_unit_test(test_avgpool_uniform_inputs),
        cmocka_unit_test(test_global_vs_ref),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_nan_propagation),
        cmocka_unit_test(test_direct_accumulate),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_text_and_info),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
