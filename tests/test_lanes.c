/* test_lanes.c — batch lanes (src/core/lanes.c): a training step split over lanes is the step of the whole
 * batch.
 *
 * Two copies of one network (same model, seed and data), one stepped with cnn_lanes_step and one with the
 * plain forward / loss / backward on a 2-thread context: the loss, the count of correct predictions, every
 * parameter gradient and the batchnorm running statistics agree within float rounding of the reordered
 * sums (relative 2e-4 of the tensor's largest gradient, stated per check), for 2 and 3 lanes and odd
 * batches (uneven shares), through several SGD steps (the lanes read the parameters the optimizer moved).
 * The model has batchnorm (statistics of the whole batch), dropout (the masks of the whole batch: a lane
 * draws its samples' elements) and a residual add. Errors: a NaN input and a bad label name the sample of
 * the whole batch and the pass; samples that overflow in one lane only stop every lane (no lane waits
 * forever at a batchnorm meet) with the layer and the lane's samples named; misuse is refused. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *MODEL = "input c=3 h=9 w=7\n"
                           "conv2d name=c1 k=6 size=3 pad=1 bias=0\n"
                           "batchnorm name=bn1\n"
                           "relu name=r1\n"
                           "conv2d name=c2 k=6 size=3 pad=1 bias=0\n"
                           "batchnorm name=bn2\n"
                           "add from=r1,bn2\n"
                           "relu\n"
                           "maxpool2d size=2 stride=2\n"
                           "dropout p=0.3\n"
                           "flatten\n"
                           "dense name=fc out=5\n"
                           "softmax_ce\n";

#define IN_COUNT (3 * 9 * 7)

typedef struct pair {
    cnn_ctx *ctx;
    cnn_net *net;
    cnn_optimizer *opt;
} pair;

static void make(pair *p, size_t batch, size_t threads) {
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&p->ctx, &o), CNN_OK);
    if (cnn_net_parse(p->ctx, MODEL, strlen(MODEL), "lanes.cnn", &p->net) != CNN_OK ||
        cnn_net_compile(p->net, batch, CNN_COMPILE_TRAIN) != CNN_OK ||
        cnn_net_init_params(p->net, 7, CNN_INIT_DEFAULT) != CNN_OK)
        fail_msg("%s", cnn_ctx_last_error(p->ctx));
    cnn_net_set_seed(p->net, 11);
    cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_SGD);
    oo.momentum = 0.9f;
    assert_int_equal(cnn_optimizer_create(p->net, &oo, &p->opt), CNN_OK);
}

static void drop(pair *p) {
    cnn_optimizer_free(p->opt);
    cnn_net_free(p->net);
    cnn_ctx_free(p->ctx);
}

static void data(uint64_t seed, float *x, int32_t *labels, size_t n) {
    th_fill_uniform(x, n * IN_COUNT, seed, -1.5f, 1.5f);
    for (size_t i = 0; i < n; i++) labels[i] = (int32_t)((seed * 13 + i * 3) % 5);
}

/* Every tensor of a and b (gradients of trainable ones, values of the buffers) within rel * max |a|. */
static void expect_close(cnn_net *a, cnn_net *b, double rel, const char *when) {
    for (size_t i = 0; i < cnn_net_num_params(a); i++) {
        cnn_param pa, pb;
        assert_int_equal(cnn_net_param_at(a, i, &pa), CNN_OK);
        assert_int_equal(cnn_net_param_at(b, i, &pb), CNN_OK);
        const float *va = pa.trainable ? pa.grad : pa.data, *vb = pb.trainable ? pb.grad : pb.data;
        double big = 0, worst = 0;
        size_t at = 0;
        for (size_t k = 0; k < pa.count; k++) big = fmax(big, fabs((double)va[k]));
        for (size_t k = 0; k < pa.count; k++) {
            double d = fabs((double)va[k] - (double)vb[k]);
            if (!(d <= worst)) {
                worst = d;
                at = k;
            }
        }
        if (!(big > 0)) fail_msg("%s: %s is all zero (the check could not fail)", when, pa.name);
        if (!(worst <= rel * big))
            fail_msg("%s: %s %s differs by %g at %zu (plain %g, lanes %g; allowed %g)", when, pa.name,
                     pa.trainable ? "gradient" : "value", worst, at, (double)va[at], (double)vb[at], rel * big);
    }
}

static void lanes_match(size_t lanes, size_t batch) {
    pair plain, split;
    make(&plain, batch, 2);
    make(&split, batch, 2);
    cnn_lanes *l = NULL;
    if (cnn_lanes_create(split.net, lanes, &l) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(split.ctx));
    assert_int_equal(cnn_lanes_count(l), lanes);
    assert_true(cnn_lanes_memory(l) > 0);
    float *x = malloc(batch * IN_COUNT * sizeof *x);
    int32_t *labels = malloc(batch * sizeof *labels);
    assert_non_null(x);
    assert_non_null(labels);
    char when[64];
    for (size_t step = 0; step < 4; step++) {
        data(100 + step, x, labels, batch);
        cnn_loss_stats a, b;
        const char *phase = NULL;
        assert_int_equal(cnn_net_forward(plain.net, x, batch, 1), CNN_OK);
        assert_int_equal(cnn_net_loss(plain.net, labels, NULL, &a), CNN_OK);
        assert_int_equal(cnn_net_backward(plain.net, NULL), CNN_OK);
        if (cnn_lanes_step(l, x, labels, NULL, batch, &b, &phase) != CNN_OK)
            fail_msg("lanes step (%s): %s", phase, cnn_ctx_last_error(split.ctx));
        snprintf(when, sizeof when, "%zu lanes, batch %zu, step %zu", lanes, batch, step);
        if (!(fabs(a.loss - b.loss) <= 1e-5 * fabs(a.loss))) fail_msg("%s: loss %.9g vs %.9g", when, a.loss, b.loss);
        assert_int_equal(b.n, batch);
        assert_int_equal(a.correct, b.correct);
        expect_close(plain.net, split.net, 2e-4, when);
        assert_int_equal(cnn_optimizer_step(plain.opt, 0.05f), CNN_OK);
        assert_int_equal(cnn_optimizer_step(split.opt, 0.05f), CNN_OK);
    }
    /* after the steps the caller's net still evaluates on its own (no hook left on its batchnorm layers) */
    data(7, x, labels, batch);
    assert_int_equal(cnn_net_forward(split.net, x, batch, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(split.net, x, batch, 1), CNN_OK);
    free(x);
    free(labels);
    cnn_lanes_free(l);
    drop(&plain);
    drop(&split);
}

static void test_two_lanes_even(void **state) {
    (void)state;
    lanes_match(2, 8);
}

static void test_two_lanes_odd(void **state) {
    (void)state;
    lanes_match(2, 9);
}

static void test_three_lanes_odd(void **state) {
    (void)state;
    lanes_match(3, 11);
}

/* A batch smaller than the lanes, and the last partial batch of an epoch: fewer lanes run. */
static void test_small_batches(void **state) {
    (void)state;
    pair plain, split;
    make(&plain, 6, 1);
    make(&split, 6, 1);
    cnn_lanes *l = NULL;
    assert_int_equal(cnn_lanes_create(split.net, 3, &l), CNN_OK);
    float x[6 * IN_COUNT];
    int32_t labels[6];
    for (size_t n = 1; n <= 6; n++) {
        data(n, x, labels, n);
        cnn_loss_stats a, b;
        assert_int_equal(cnn_net_forward(plain.net, x, n, 1), CNN_OK);
        assert_int_equal(cnn_net_loss(plain.net, labels, NULL, &a), CNN_OK);
        assert_int_equal(cnn_net_backward(plain.net, NULL), CNN_OK);
        if (cnn_lanes_step(l, x, labels, NULL, n, &b, NULL) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(split.ctx));
        char when[32];
        snprintf(when, sizeof when, "batch %zu of 6", n);
        if (n == 1) /* one sample: batchnorm of a single sample, every gradient but the dense ones may be 0 */
            continue;
        expect_close(plain.net, split.net, 2e-4, when);
    }
    cnn_lanes_free(l);
    drop(&plain);
    drop(&split);
}

static void test_errors(void **state) {
    (void)state;
    pair p;
    make(&p, 8, 2);
    cnn_lanes *l = NULL;
    assert_int_equal(cnn_lanes_create(p.net, 1, &l), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_lanes_create(p.net, 9, &l), CNN_ERR_INVALID_ARG); /* more lanes than samples */
    assert_null(l);
    assert_int_equal(cnn_lanes_create(p.net, 2, &l), CNN_OK);
    float x[8 * IN_COUNT];
    int32_t labels[8];
    const char *phase = NULL;
    cnn_loss_stats ls;
    data(3, x, labels, 8);
    x[6 * IN_COUNT + 5] = NAN; /* sample 6: lane 1's */
    assert_int_equal(cnn_lanes_step(l, x, labels, NULL, 8, &ls, &phase), CNN_ERR_NUMERIC);
    assert_string_equal(phase, "forward");
    assert_non_null(strstr(cnn_ctx_last_error(p.ctx), "input sample 6 element 5"));
    data(3, x, labels, 8);
    labels[7] = 5;
    assert_int_equal(cnn_lanes_step(l, x, labels, NULL, 8, &ls, &phase), CNN_ERR_INVALID_ARG);
    assert_string_equal(phase, "loss");
    assert_non_null(strstr(cnn_ctx_last_error(p.ctx), "label 5 of sample 7"));
    assert_int_equal(cnn_lanes_step(l, x, NULL, NULL, 8, &ls, &phase), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_lanes_step(l, x, labels, NULL, 9, &ls, &phase), CNN_ERR_SHAPE);
    assert_int_equal(cnn_lanes_step(l, x, labels, NULL, 0, &ls, &phase), CNN_ERR_SHAPE);
    /* finite inputs that overflow in lane 1 only: every lane stops after the loss */
    cnn_param w;
    assert_int_equal(cnn_net_param_find(p.net, "c1.weight", &w), CNN_OK);
    for (size_t i = 0; i < w.count; i++) w.data[i] = 0.5f; /* the 27-term sums of lane 1 overflow */
    data(3, x, labels, 8);
    for (size_t i = 4 * IN_COUNT; i < 8 * IN_COUNT; i++) x[i] = 1e38f;
    cnn_status st = cnn_lanes_step(l, x, labels, NULL, 8, &ls, &phase);
    assert_int_equal(st, CNN_ERR_NUMERIC);
    assert_string_equal(phase, "loss");
    const char *msg = cnn_ctx_last_error(p.ctx);
    if (!strstr(msg, "samples 4..7 of the batch, lane 1") || !strstr(msg, "layer 'c1'"))
        fail_msg("message: %s", msg);
    /* and the lanes work again after it */
    data(4, x, labels, 8);
    if (cnn_lanes_step(l, x, labels, NULL, 8, &ls, &phase) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(p.ctx));
    assert_true(isfinite(ls.loss));
    cnn_lanes_free(l);
    /* not compiled for training */
    assert_int_equal(cnn_net_compile(p.net, 8, 0), CNN_OK);
    assert_int_equal(cnn_lanes_create(p.net, 2, &l), CNN_ERR_MISUSE);
    assert_int_equal(cnn_lanes_step(NULL, x, labels, NULL, 8, &ls, &phase), CNN_ERR_INVALID_ARG);
    cnn_lanes_free(NULL);
    drop(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_lanes_even), cmocka_unit_test(test_two_lanes_odd),
        cmocka_unit_test(test_three_lanes_odd), cmocka_unit_test(test_small_batches),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
