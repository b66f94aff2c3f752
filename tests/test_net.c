/* test_net.c — the network core: model text parsing (good and bad), names, printing round trip, memory
 * planning, API misuse, initialisation statistics. */
#include "harness.h"
#include "core/net_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cnn_ctx *ctx_new(void) {
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    return ctx;
}

static cnn_net *parse_ok(cnn_ctx *ctx, const char *text) {
    cnn_net *net = NULL;
    cnn_status st = cnn_net_parse(ctx, text, strlen(text), "m.cnn", &net);
    if (st != CNN_OK) fail_msg("parse failed: %s", cnn_ctx_last_error(ctx));
    return net;
}

static const char *MLP = "# a small net\n"
                         "input c=3 h=4 w=5   # 60 features\n"
                         "\n"
                         "dense name=fc1 out=7\n"
                         "relu\n"
                         "dense out=5 init=xavier_uniform\n"
                         "sigmoid name=s from=fc1\n"
                         "dense name=fc3 from=s out=5\n"
                         "add from=dense2,fc3\n"
                         "relu\n";

static void test_parse_names_and_shapes(void **state) {
    (void)state;
    cnn_ctx *ctx = ctx_new();
    cnn_net *net = parse_ok(ctx, MLP);
    assert_int_equal(cnn_net_num_layers(net), 8);
    const char *names[] = {"input", "fc1", "relu1", "dense2", "s", "fc3", "add1", "relu2"};
    for (size_t i = 0; i < 8; i++) {
        cnn_layer_info li;
        assert_int_equal(cnn_net_layer_info(net, i, &li), CNN_OK);
        assert_string_equal(li.name, names[i]);
    }
    cnn_layer_info li;
    cnn_net_layer_info(net, 6, &li);
    assert_string_equal(li.type, "add");
    assert_int_equal(li.n_inputs, 2);
    assert_string_equal(li.inputs[0], "dense2");
    assert_string_equal(li.inputs[1], "fc3");
    cnn_net_layer_info(net, 1, &li);
    assert_int_equal(li.params, 60 * 7 + 7);
    assert_int_equal(li.flops, 2 * 60 * 7);
    cnn_shape o = cnn_net_output_shape(net);
    assert_int_equal(o.c, 5);
    assert_int_equal(o.h, 1);
    cnn_param p;
    assert_int_equal(cnn_net_param_find(net, "fc1.weight", &p), CNN_OK);
    assert_int_equal(p.ndim, 2);
    assert_int_equal(p.dims[0], 7);
    assert_int_equal(p.dims[1], 60);
    assert_int_equal(cnn_net_param_find(net, "nope.weight", &p), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_param_count(net), (60 * 7 + 7) + (7 * 5 + 5) + (7 * 5 + 5));
    assert_false(cnn_net_has_loss(net));
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_print_round_trip(void **state) {
    (void)state;
    cnn_ctx *ctx = ctx_new();
    cnn_net *a = parse_ok(ctx, MLP);
    char *t1 = NULL, *t2 = NULL;
    assert_int_equal(cnn_net_to_text(a, &t1), CNN_OK);
    cnn_net *b = parse_ok(ctx, t1);
    assert_int_equal(cnn_net_to_text(b, &t2), CNN_OK);
    assert_string_equal(t1, t2);
    assert_non_null(strstr(t1, "init=xavier_uniform"));
    assert_int_equal(cnn_net_num_layers(a), cnn_net_num_layers(b));
    for (size_t i = 0; i < cnn_net_num_layers(a); i++) {
        cnn_layer_info x, y;
        cnn_net_layer_info(a, i, &x);
        cnn_net_layer_info(b, i, &y);
        assert_string_equal(x.name, y.name);
        assert_string_equal(x.type, y.type);
        assert_int_equal(x.n_inputs, y.n_inputs);
        assert_int_equal(x.params, y.params);
        assert_int_equal(x.out.c, y.out.c);
    }
    cnn_free(ctx, t1);
    cnn_free(ctx, t2);
    cnn_net_free(a);
    cnn_net_free(b);
    cnn_ctx_free(ctx);
}

static void test_bad_models(void **state) {
    (void)state;
    th_expect_error("", CNN_ERR_FORMAT, "no layers");
    th_expect_error("# only a comment\n", CNN_ERR_FORMAT, "no layers");
    th_expect_error("relu\n", CNN_ERR_FORMAT, "first layer must be 'input'");
    th_expect_error("input c=1 h=2\n", CNN_ERR_FORMAT, "test.cnn:1:1: input: needs c=, h= and w=");
    th_expect_error("input c=1 h=2 w=2\nfrobnicate x=1\n", CNN_ERR_FORMAT, "test.cnn:2:1: unknown layer type 'frobnicate'");
    th_expect_error("input c=1 h=2 w=2\nrelu  colour=blue\n", CNN_ERR_FORMAT, "test.cnn:2:7: relu: unknown key 'colour'");
    th_expect_error("input c=1 h=2 w=2\nrelu name=a name=b\n", CNN_ERR_FORMAT, "given twice");
    th_expect_error("input c=1 h=2 w=2\nrelu name=a\nrelu name=a\n", CNN_ERR_FORMAT, "already used on line 2");
    th_expect_error("input c=1 h=2 w=2\nrelu from=ghost\n", CNN_ERR_FORMAT, "test.cnn:2:11:");
    th_expect_error("input c=1 h=2 w=2\nrelu from=later\nrelu name=later\n", CNN_ERR_FORMAT, "defined before");
    th_expect_error("input c=1 h=2 w=2\ninput c=1 h=2 w=2\n", CNN_ERR_FORMAT, "only one 'input'");
    th_expect_error("input c=1 h=2 w=2\nrelu oops\n", CNN_ERR_FORMAT, "expected key=value");
    th_expect_error("input c=x h=2 w=2\n", CNN_ERR_FORMAT, "test.cnn:1:9: input: c: expected an integer");
    th_expect_error("input c=-3 h=2 w=2\n", CNN_ERR_FORMAT, "out of range");
    th_expect_error("input c=99999999999999999999 h=2 w=2\n", CNN_ERR_FORMAT, "expected an integer");
    th_expect_error("input c=1 h=2 w=2\nrelu init=magic\n", CNN_ERR_FORMAT, "expected one of");
    th_expect_error("input c=1 h=2 w=2\nrelu name=9lives\n", CNN_ERR_FORMAT, "invalid layer name");
    th_expect_error("input c=1 h=2 w=2\nrelu name=a\nrelu from=a,a,a,a,a,a,a,a,a\n", CNN_ERR_FORMAT, "at most 8");
    /* a per-sample activation too large to address */
    th_expect_error("input c=1048576 h=1048576 w=1048576\n", CNN_ERR_SHAPE, "too large");
}

static void test_misuse(void **state) {
    (void)state;
    cnn_ctx *ctx = ctx_new();
    cnn_net *net = parse_ok(ctx, "input c=2 h=3 w=3\nrelu\n");
    float x[2 * 18] = {0};
    assert_int_equal(cnn_net_forward(net, x, 1, 0), CNN_ERR_MISUSE); /* not compiled */
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "not compiled"));
    assert_int_equal(cnn_net_compile(net, 0, 0), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_INPUT_GRAD), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_compile(net, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, 3, 0), CNN_ERR_SHAPE);
    assert_int_equal(cnn_net_forward(net, NULL, 1, 0), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_forward(net, x, 1, 1), CNN_ERR_MISUSE); /* training on an inference plan */
    x[5] = NAN;
    assert_int_equal(cnn_net_forward(net, x, 2, 0), CNN_ERR_NUMERIC);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "element 5 is NaN"));
    x[5] = INFINITY;
    assert_int_equal(cnn_net_forward(net, x, 2, 0), CNN_ERR_NUMERIC);
    x[5] = 1;
    assert_int_equal(cnn_net_forward(net, x, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_backward(net, x), CNN_ERR_MISUSE); /* inference plan */
    cnn_loss_stats ls;
    assert_int_equal(cnn_net_loss(net, NULL, NULL, &ls), CNN_ERR_MISUSE); /* no loss layer */
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_backward(net, x), CNN_ERR_MISUSE); /* no forward yet */
    assert_int_equal(cnn_net_forward(net, x, 2, 1), CNN_OK);
    assert_int_equal(cnn_net_backward(net, NULL), CNN_ERR_INVALID_ARG); /* no loss: needs dy */
    assert_int_equal(cnn_net_backward(net, x), CNN_OK);
    assert_null(cnn_net_input_grad(net)); /* not requested */
    cnn_net_free(net);
    cnn_net_free(NULL);
    cnn_ctx_free(ctx);
    cnn_ctx_free(NULL);
}

static void test_inference_plan_reuses_memory(void **state) {
    (void)state;
    cnn_ctx *ctx = ctx_new();
    cnn_net *net = parse_ok(ctx, "input c=8 h=16 w=16\nrelu\nsigmoid\ntanh\nrelu\nsigmoid\ntanh\nrelu\n");
    size_t train = 0, infer = 0;
    assert_int_equal(cnn_net_activation_bytes(net, 4, CNN_COMPILE_TRAIN, &train), CNN_OK);
    assert_int_equal(cnn_net_activation_bytes(net, 4, 0, &infer), CNN_OK);
    size_t one = 4 * 8 * 16 * 16 * sizeof(float);
    assert_true(train >= 2 * 7 * one); /* activations and gradients of every layer but the input's gradient */
    assert_true(infer <= 2 * one);     /* a chain needs two buffers in ping-pong */
    /* outputs agree between the two plans */
    size_t count = 4 * 8 * 16 * 16;
    float *x = malloc(count * sizeof *x), *y1 = malloc(count * sizeof *y1);
    th_fill_uniform(x, count, 3, -2, 2);
    assert_int_equal(cnn_net_compile(net, 4, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, 4, 0), CNN_OK);
    memcpy(y1, cnn_net_output(net, NULL), count * sizeof *y1);
    assert_int_equal(cnn_net_compile(net, 4, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, 4, 1), CNN_OK);
    assert_memory_equal(y1, cnn_net_output(net, NULL), count * sizeof *y1);
    free(x);
    free(y1);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

/* A DAG with branches through the inference planner: the residual input must stay alive. */
static void test_inference_plan_dag(void **state) {
    (void)state;
    const char *m = "input c=3 h=5 w=5\nrelu name=a\nsigmoid\ntanh\nrelu\nadd from=a,relu2\ntanh\n";
    cnn_ctx *ctx = ctx_new();
    cnn_net *net = parse_ok(ctx, m);
    size_t count = 2 * 75;
    float *x = malloc(count * sizeof *x);
    th_fill_uniform(x, count, 5, -2, 2);
    assert_int_equal(cnn_net_compile(net, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, 2, 0), CNN_OK);
    const float *y = cnn_net_output(net, NULL);
    for (size_t i = 0; i < count; i++) {
        double a = x[i] > 0 ? x[i] : 0;
        double r = tanh(1.0 / (1.0 + exp(-a)));
        double want = tanh(a + (r > 0 ? r : 0));
        assert_float_equal(y[i], want, 1e-6);
    }
    free(x);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_init_statistics(void **state) {
    (void)state;
    cnn_ctx *ctx = ctx_new();
    cnn_net *net = parse_ok(ctx, "input c=400 h=1 w=1\ndense name=a out=300\ndense name=b out=200 init=kaiming_normal\n");
    cnn_param w, b, w2, b2;
    cnn_net_param_find(net, "a.weight", &w);
    cnn_net_param_find(net, "a.bias", &b);
    cnn_net_param_find(net, "b.weight", &w2);
    cnn_net_param_find(net, "b.bias", &b2);
    assert_int_equal(cnn_net_init_params(net, 7, CNN_INIT_DEFAULT), CNN_OK);
    /* PyTorch default: U(-1/sqrt(400), 1/sqrt(400)) for weight and bias */
    double bound = 1.0 / 20.0, mx = 0, s2 = 0;
    for (size_t i = 0; i < w.count; i++) {
        if (fabs(w.data[i]) > mx) mx = fabs(w.data[i]);
        s2 += (double)w.data[i] * w.data[i];
    }
    assert_true(mx <= bound && mx > 0.99 * bound);
    assert_float_equal(sqrt(s2 / (double)w.count), bound / sqrt(3.0), 0.01 * bound);
    for (size_t i = 0; i < b.count; i++) assert_true(fabs(b.data[i]) <= bound);
    /* kaiming normal: std sqrt(2/fan_in), bias zero */
    s2 = 0;
    for (size_t i = 0; i < w2.count; i++) s2 += (double)w2.data[i] * w2.data[i];
    assert_float_equal(sqrt(s2 / (double)w2.count), sqrt(2.0 / 300.0), 0.02 * sqrt(2.0 / 300.0));
    for (size_t i = 0; i < b2.count; i++) assert_true(b2.data[i] == 0.0f);
    /* same seed -> same values; other seed -> different */
    float first = w.data[17];
    cnn_net_init_params(net, 7, CNN_INIT_DEFAULT);
    assert_true(w.data[17] == first);
    cnn_net_init_params(net, 8, CNN_INIT_DEFAULT);
    assert_true(w.data[17] != first);
    /* a global method applies where the layer names none */
    cnn_net_init_params(net, 7, CNN_INIT_XAVIER_UNIFORM);
    mx = 0;
    for (size_t i = 0; i < w.count; i++)
        if (fabs(w.data[i]) > mx) mx = fabs(w.data[i]);
    assert_true(mx <= sqrt(6.0 / 700.0) && mx > 0.99 * sqrt(6.0 / 700.0));
    assert_int_equal(cnn_net_init_params(net, 7, (cnn_init)99), CNN_ERR_INVALID_ARG);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

/* Re-running one layer's pass reproduces what the full pass wrote (the benchmark hook). */
static void test_run_layer(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=3 h=4 w=4\ndense name=fc out=6\ntanh\ndense out=4\n", 5, 3, 2);
    size_t ycount = 5 * 4;
    float dy[20];
    th_fill_uniform(dy, ycount, 9, -1, 1);
    assert_int_equal(cnn_net_run_layer(t.net, 1, CNN_PASS_FORWARD), CNN_ERR_MISUSE); /* no forward yet */
    assert_int_equal(cnn_net_forward(t.net, t.x, 5, 1), CNN_OK);
    assert_int_equal(cnn_net_run_layer(t.net, 1, CNN_PASS_BACKWARD_WEIGHTS), CNN_ERR_MISUSE); /* no backward yet */
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    cnn_param w;
    assert_int_equal(cnn_net_param_find(t.net, "fc.weight", &w), CNN_OK);
    float *g = malloc(w.count * sizeof *g), *dx = malloc(5 * 48 * sizeof *dx), *y = malloc(ycount * sizeof *y);
    memcpy(g, w.grad, w.count * sizeof *g);
    memcpy(dx, cnn_net_input_grad(t.net), 5 * 48 * sizeof *dx);
    memcpy(y, cnn_net_output(t.net, NULL), ycount * sizeof *y);
    memset(w.grad, 0, w.count * sizeof *g);
    assert_int_equal(cnn_net_run_layer(t.net, 1, CNN_PASS_BACKWARD_WEIGHTS), CNN_OK);
    assert_memory_equal(g, w.grad, w.count * sizeof *g);
    assert_int_equal(cnn_net_run_layer(t.net, 1, CNN_PASS_BACKWARD_DATA), CNN_OK);
    assert_memory_equal(dx, cnn_net_input_grad(t.net), 5 * 48 * sizeof *dx);
    assert_int_equal(cnn_net_run_layer(t.net, 3, CNN_PASS_FORWARD), CNN_OK);
    assert_memory_equal(y, cnn_net_output(t.net, NULL), ycount * sizeof *y);
    assert_int_equal(cnn_net_run_layer(t.net, 9, CNN_PASS_FORWARD), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_run_layer(t.net, 1, (cnn_pass)7), CNN_ERR_INVALID_ARG);
    free(g);
    free(dx);
    free(y);
    th_free(&t);
}

static void test_status_strings(void **state) {
    (void)state;
    assert_string_equal(cnn_status_string(CNN_OK), "ok");
    assert_string_equal(cnn_status_string(CNN_ERR_FORMAT), "malformed input");
    assert_string_equal(cnn_status_string((cnn_status)999), "unknown status");
}

/* Aliases and fusion (net.c): flatten as a view and relu fused into a 2x2 maxpool give bit-identical
 * outputs, loss, parameter and input gradients to the plain plan, in training and in inference; the
 * plan is smaller. Odd sizes, a relu whose input has two readers (not fused), a maxpool that is not 2x2. */
static const char *FUSE_NET = "input c=2 h=11 w=13\n"
                              "conv2d name=c1 k=5 kh=3 kw=3 pad=1\n"
                              "relu\n"
                              "maxpool2d size=2\n"
                              "conv2d name=c2 k=6 kh=3 kw=3 pad=1\n"
                              "relu name=r2\n"
                              "maxpool2d size=2\n"
                              "relu name=r3 from=c2\n"
                              "maxpool2d size=3 stride=2\n"
                              "flatten\n"
                              "dense name=fa out=4\n"
                              "flatten name=f2 from=maxpool2d2\n"
                              "dense name=fb out=4\n"
                              "add from=fa,fb\n"
                              "relu\n"
                              "dense out=3\n"
                              "softmax_ce\n";

static void fuse_run(int no_fuse, unsigned flags, size_t threads, float *out, float *grads, float *dx, double *loss,
                     size_t *act_bytes) {
    cnn_ctx *ctx = NULL;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    cnn_net *net = parse_ok(ctx, FUSE_NET);
    net->no_fuse = no_fuse;
    const size_t n = 3, in = 2 * 11 * 13;
    assert_int_equal(cnn_net_compile(net, n, flags), CNN_OK);
    assert_int_equal(cnn_net_activation_bytes(net, n, flags, act_bytes), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 11, CNN_INIT_DEFAULT), CNN_OK);
    float x[3 * 2 * 11 * 13];
    th_fill_uniform(x, n * in, 5, -1.0f, 1.0f);
    int32_t labels[3] = {0, 2, 1};
    int train = (flags & CNN_COMPILE_TRAIN) != 0;
    assert_int_equal(cnn_net_forward(net, x, n, train), CNN_OK);
    size_t got = 0;
    const float *y = cnn_net_output(net, &got);
    memcpy(out, y, n * 3 * sizeof *out);
    cnn_loss_stats ls;
    assert_int_equal(cnn_net_loss(net, labels, NULL, &ls), CNN_OK);
    *loss = ls.loss;
    if (train) {
        assert_int_equal(cnn_net_backward(net, NULL), CNN_OK);
        float *p, *g;
        size_t count;
        assert_int_equal(cnn_net_arenas(net, &p, &g, &count), CNN_OK);
        memcpy(grads, g, count * sizeof *g);
        memcpy(dx, cnn_net_input_grad(net), n * in * sizeof *dx);
    }
    /* which layers were fused: the relu of c1 (not r2, r3: their input c2 has two readers), both flattens */
    if (!no_fuse) {
        assert_true(net->rt[2].skip && !net->rt[5].skip && !net->rt[7].skip && net->rt[9].skip && net->rt[11].skip);
        cnn_layer_info li;
        assert_int_equal(cnn_net_layer_info(net, 3, &li), CNN_OK);
        assert_string_equal(li.algorithm, "relu+maxpool");
    }
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

/* A relu before a 3x3 stride-2 maxpool (ResNet's stem) is fused in an inference compile only (the
 * generic training backward has no fused rule): the inference outputs fused and unfused are bitwise
 * equal, and a training compile keeps the relu. */
static void test_fusion_3x3_inference(void **state) {
    (void)state;
    static const char *NET = "input c=3 h=17 w=19\n"
                             "conv2d name=c1 k=4 kh=3 kw=3 pad=1\n"
                             "relu\n"
                             "maxpool2d size=3 stride=2 pad=1\n"
                             "flatten\n"
                             "dense out=3\n"
                             "softmax_ce\n";
    const size_t n = 2, in = 3 * 17 * 19;
    static float x[2 * 3 * 17 * 19], y[2][6];
    th_fill_uniform(x, n * in, 21, -1.0f, 1.0f);
    for (size_t threads = 1; threads <= 2; threads++)
        for (int no_fuse = 0; no_fuse < 2; no_fuse++) {
            cnn_ctx *ctx = NULL;
            cnn_ctx_options o = cnn_ctx_options_default();
            o.threads = threads;
            assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
            cnn_net *net = parse_ok(ctx, NET);
            net->no_fuse = no_fuse;
            assert_int_equal(cnn_net_compile(net, n, CNN_COMPILE_TRAIN), CNN_OK);
            assert_false(net->rt[2].skip); /* training: the relu runs */
            assert_int_equal(cnn_net_init_params(net, 13, CNN_INIT_DEFAULT), CNN_OK);
            assert_int_equal(cnn_net_compile(net, n, 0), CNN_OK);
            assert_int_equal(net->rt[2].skip, !no_fuse);
            if (!no_fuse) {
                cnn_layer_info li;
                assert_int_equal(cnn_net_layer_info(net, 3, &li), CNN_OK);
                assert_string_equal(li.algorithm, "relu+maxpool");
            }
            assert_int_equal(cnn_net_forward(net, x, n, 0), CNN_OK);
            size_t got = 0;
            const float *out = cnn_net_output(net, &got);
            assert_int_equal(got, n);
            memcpy(y[no_fuse], out, n * 3 * sizeof(float));
            cnn_net_free(net);
            cnn_ctx_free(ctx);
        }
    assert_memory_equal(y[0], y[1], sizeof y[0]);
}

static void test_fusion_bit_identical(void **state) {
    (void)state;
    static float out0[9], out1[9], g0[4096], g1[4096], dx0[858], dx1[858];
    for (size_t threads = 1; threads <= 2; threads++)
        for (int mode = 0; mode < 2; mode++) {
            unsigned flags = mode ? CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD : 0;
            double l0, l1;
            size_t b0, b1;
            memset(g0, 0, sizeof g0);
            memset(g1, 0, sizeof g1);
            fuse_run(1, flags, threads, out0, g0, dx0, &l0, &b0);
            fuse_run(0, flags, threads, out1, g1, dx1, &l1, &b1);
            assert_memory_equal(out0, out1, sizeof out0);
            assert_true(l0 == l1);
            assert_true(b1 < b0);
            if (mode) {
                assert_memory_equal(g0, g1, sizeof g0);
                assert_memory_equal(dx0, dx1, sizeof dx0);
            }
        }
}


/* Relu fused into a batchnorm (batchnorm.c, net.c): bit-identical outputs, loss, parameter and input
 * gradients to the plain plan, training and inference (without folding), 1 and 2 threads. Fused: bn1's
 * relu (its reader is a conv), the relu of the batchnorm after the add and of the dense batchnorm; bn2's relu goes into the maxpool instead; a relu whose batchnorm has a second
 * reader (ra) is not fused. Planes of 7x9 and 3x4 reach the kernels' vector tails. */
static const char *BNFUSE_NET = "input c=3 h=7 w=9\n"
                                "conv2d name=c1 k=5 size=3 pad=1\n"
                                "batchnorm name=bn1\n"
                                "relu name=r1\n"
                                "conv2d name=c2 k=6 size=3 pad=1\n"
                                "batchnorm name=bn2\n"
                                "relu name=r2\n"
                                "maxpool2d size=2\n"
                                "batchnorm name=bn3\n"
                                "relu name=r3\n"
                                "relu name=ra from=bn3\n"
                                "add from=r3,ra\n"
                                "batchnorm name=bn4\n"
                                "relu name=r4\n"
                                "flatten\n"
                                "dense name=d1 out=7\n"
                                "batchnorm name=bn5\n"
                                "relu name=r5\n"
                                "dense out=3\n"
                                "softmax_ce\n";

static void bnfuse_run(int no_fuse, unsigned flags, size_t threads, float *out, float *grads, size_t *n_grads,
                       float *dx, double *loss) {
    cnn_ctx *ctx = NULL;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    cnn_net *net = parse_ok(ctx, BNFUSE_NET);
    net->no_fuse = no_fuse;
    net->no_fold = 1; /* (folding batchnorm into the conv changes the rounding; tests/test_fold.c checks it) */
    const size_t n = 5, in = 3 * 7 * 9;
    assert_int_equal(cnn_net_compile(net, n, flags), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 13, CNN_INIT_DEFAULT), CNN_OK);
    float x[5 * 3 * 7 * 9];
    th_fill_uniform(x, n * in, 9, -1.0f, 1.0f);
    int32_t labels[5] = {0, 2, 1, 1, 0};
    int train = (flags & CNN_COMPILE_TRAIN) != 0;
    for (int pass = 0; pass < 2; pass++) { /* twice: the cached backward sums are taken afresh */
        assert_int_equal(cnn_net_forward(net, x, n, train), CNN_OK);
        size_t got = 0;
        memcpy(out, cnn_net_output(net, &got), n * 3 * sizeof *out);
        cnn_loss_stats ls;
        assert_int_equal(cnn_net_loss(net, labels, NULL, &ls), CNN_OK);
        *loss = ls.loss;
        if (train) {
            assert_int_equal(cnn_net_backward(net, NULL), CNN_OK);
            float *p, *g;
            assert_int_equal(cnn_net_arenas(net, &p, &g, n_grads), CNN_OK);
            memcpy(grads, g, *n_grads * sizeof *g);
            memcpy(dx, cnn_net_input_grad(net), n * in * sizeof *dx);
        }
    }
    if (!no_fuse) {
        cnn_layer_info li;
        assert_int_equal(cnn_net_layer_info(net, 3, &li), CNN_OK); /* r1 */
        assert_string_equal(li.algorithm, "fused into the batchnorm");
        assert_int_equal(cnn_net_layer_info(net, 2, &li), CNN_OK); /* bn1 */
        assert_string_equal(li.algorithm, "batchnorm+relu");
        assert_int_equal(cnn_net_layer_info(net, 7, &li), CNN_OK); /* the maxpool takes r2 */
        assert_string_equal(li.algorithm, "relu+maxpool");
        assert_int_equal(cnn_net_layer_info(net, 8, &li), CNN_OK); /* bn3 has two readers */
        assert_true(strcmp(li.algorithm, "batchnorm+relu") != 0);
        assert_int_equal(cnn_net_layer_info(net, 12, &li), CNN_OK); /* bn4 */
        assert_string_equal(li.algorithm, "batchnorm+relu");
        assert_int_equal(cnn_net_layer_info(net, 16, &li), CNN_OK); /* bn5, after a dense */
        assert_string_equal(li.algorithm, "batchnorm+relu");
    }
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_bn_relu_fusion_bit_identical(void **state) {
    (void)state;
    static float out0[15], out1[15], g0[8192], g1[8192], dx0[945], dx1[945];
    for (size_t threads = 1; threads <= 2; threads++)
        for (int mode = 0; mode < 2; mode++) {
            unsigned flags = mode ? CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD : 0;
            double l0, l1;
            size_t n0 = 0, n1 = 0;
            bnfuse_run(1, flags, threads, out0, g0, &n0, dx0, &l0);
            bnfuse_run(0, flags, threads, out1, g1, &n1, dx1, &l1);
            assert_memory_equal(out0, out1, sizeof out0);
            assert_true(l0 == l1);
            if (mode) {
                assert_true(n0 == n1 && n0 > 0 && n0 <= 8192);
                assert_memory_equal(g0, g1, n0 * sizeof *g0);
                assert_memory_equal(dx0, dx1, sizeof dx0);
            }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names_and_shapes), cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_bad_models),             cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_inference_plan_reuses_memory), cmocka_unit_test(test_inference_plan_dag),
        cmocka_unit_test(test_init_statistics),        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_run_layer),
        cmocka_unit_test(test_fusion_bit_identical), cmocka_unit_test(test_fusion_3x3_inference),
        cmocka_unit_test(test_bn_relu_fusion_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
