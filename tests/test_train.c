/* test_train.c — end to end through the public API: model M1 (BENCH.md) trained on the Fashion-MNIST
 * sample the repo ships (tests/data/fmnist-sample: 2000 train / 500 test images). The loss must fall and
 * test accuracy beat chance (10%) clearly; repeated runs are bit-identical; 1 and 2 threads agree closely. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *M1 = "input c=1 h=28 w=28\n"
                        "conv2d name=conv1 k=32 kh=3 kw=3 pad=1\n"
                        "relu\n"
                        "maxpool2d size=2 stride=2\n"
                        "conv2d name=conv2 k=64 kh=3 kw=3 pad=1\n"
                        "relu\n"
                        "maxpool2d size=2 stride=2\n"
                        "flatten\n"
                        "dense name=fc1 out=128\n"
                        "relu\n"
                        "dense name=fc2 out=10\n"
                        "softmax_ce\n";

typedef struct run {
    double first_loss, last_loss, test_acc;
    float *params; /* copy of all trainable parameters at the end */
    size_t n_params;
} run;

static void sample_dir(char *buf, size_t n) {
    const char *src = getenv("CNN_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/data/fmnist-sample", src ? src : CNN_TEST_SOURCE_DIR);
}

static void train(size_t threads, size_t steps, size_t batch, int evaluate, run *out) {
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    char dir[1024];
    sample_dir(dir, sizeof dir);
    cnn_dataset *tr = NULL, *te = NULL;
    if (cnn_dataset_load_dir(ctx, dir, "train", &tr) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    if (cnn_dataset_load_dir(ctx, dir, "test", &te) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    assert_int_equal(cnn_dataset_size(tr), 2000);
    assert_int_equal(cnn_dataset_size(te), 500);
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, M1, strlen(M1), "m1.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, batch, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 1, CNN_INIT_DEFAULT), CNN_OK);
    cnn_net_set_seed(net, 1);
    cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_SGD);
    oo.lr = 0.05f;
    oo.momentum = 0.9f;
    cnn_optimizer *opt = NULL;
    if (cnn_optimizer_create(net, &oo, &opt) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    size_t n = cnn_dataset_size(tr);
    size_t *order = malloc(n * sizeof *order);
    float *x = malloc(batch * 784 * sizeof *x);
    int32_t *labels = malloc(batch * sizeof *labels);
    cnn_shuffle_indices(order, n, 1);
    double first = 0, last = 0;
    size_t window = steps / 4 ? steps / 4 : 1;
    for (size_t s = 0, pos = 0; s < steps; s++) {
        if (pos + batch > n) pos = 0;
        assert_int_equal(cnn_dataset_gather(tr, order + pos, batch, x, labels), CNN_OK);
        pos += batch;
        assert_int_equal(cnn_net_forward(net, x, batch, 1), CNN_OK);
        cnn_loss_stats ls;
        if (cnn_net_loss(net, labels, NULL, &ls) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
        assert_int_equal(cnn_net_backward(net, NULL), CNN_OK);
        assert_int_equal(cnn_optimizer_step(opt, 0.05f), CNN_OK);
        if (s < window) first += ls.loss / (double)window;
        if (s >= steps - window) last += ls.loss / (double)window;
    }
    out->first_loss = first;
    out->last_loss = last;
    out->test_acc = -1;
    if (evaluate) {
        cnn_eval_result er;
        assert_int_equal(cnn_net_evaluate(net, te, batch, &er), CNN_OK);
        out->test_acc = er.accuracy;
        size_t sum = 0;
        for (size_t i = 0; i < er.classes * er.classes; i++) sum += er.confusion[i];
        assert_int_equal(sum, 500);
        cnn_free(ctx, er.confusion);
    }
    out->n_params = cnn_net_param_count(net);
    out->params = malloc(out->n_params * sizeof(float));
    size_t k = 0;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param pr;
        cnn_net_param_at(net, i, &pr);
        if (!pr.trainable) continue;
        memcpy(out->params + k, pr.data, pr.count * sizeof(float));
        k += pr.count;
    }
    assert_int_equal(k, out->n_params);
    free(order);
    free(x);
    free(labels);
    cnn_optimizer_free(opt);
    cnn_net_free(net);
    cnn_dataset_free(tr);
    cnn_dataset_free(te);
    cnn_ctx_free(ctx);
}

static void test_m1_learns(void **state) {
    (void)state;
    run r;
    train(0, 60, 32, 1, &r);
    printf("# loss %.4f -> %.4f, test accuracy %.4f\n", r.first_loss, r.last_loss, r.test_acc);
    assert_true(r.last_loss < 0.7 * r.first_loss);
    assert_true(r.test_acc > 0.5);
    free(r.params);
}

static void test_m1_deterministic(void **state) {
    (void)state;
    run a, b, c;
    train(2, 6, 16, 0, &a);
    train(2, 6, 16, 0, &b);
    assert_int_equal(a.n_params, b.n_params);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    /* another thread count: the same math, summed in another order */
    train(1, 6, 16, 0, &c);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        double d = fabs((double)a.params[i] - c.params[i]);
        if (d > worst) worst = d;
        if (fabs(a.params[i]) > scale) scale = fabs(a.params[i]);
    }
    printf("# 1 vs 2 threads: max |diff| %.3g (max |w| %.3g)\n", worst, scale);
    assert_true(worst <= 1e-4 * scale);
    free(a.params);
    free(b.params);
    free(c.params);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_m1_learns),
        cmocka_unit_test(test_m1_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
