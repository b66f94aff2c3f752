/* test_alloc_fail.c — every allocation failure path returns an error and frees what it took.
 *
 * The context allocator fails its Nth call, for every N from 1 until a whole scenario succeeds: context
 * creation, model parse, training compile, init, an in-memory dataset, optimizer, one training step, a
 * weights save and load, an inference compile and an evaluation. Each failing run must report an error
 * (never crash), and when everything is freed the allocator must have no live blocks. Under ASan/LSan
 * (make asan) the library's plain malloc paths are checked for leaks too. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct counting {
    long calls, fail_at, live;
} counting;

static void *c_alloc(void *user, size_t size, size_t alignment) {
    counting *c = user;
    c->calls++;
    if (c->calls == c->fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : 1) != 0) return NULL;
    c->live++;
    return p;
}

static void c_free(void *user, void *p) {
    counting *c = user;
    if (!p) return;
    c->live--;
    free(p);
}

static const char *MODEL = "input c=1 h=8 w=8\n"
                           "conv2d name=c1 k=4 size=3 pad=1\n"
                           "batchnorm\n"
                           "relu name=r1\n"
                           "conv2d k=4 size=3 pad=1\n"
                           "add from=r1,conv2d2\n"
                           "maxpool2d size=2\n"
                           "dropout p=0.25\n"
                           "flatten\n"
                           "dense name=fc out=3\n"
                           "softmax_ce\n";

/* One scenario; returns 1 when every step succeeded, 0 when a step failed cleanly. */
static int scenario(counting *c, const char *path) {
    cnn_allocator a = {c_alloc, c_free, c};
    cnn_ctx_options o = cnn_ctx_options_default();
    o.allocator = &a;
    o.threads = 2;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_dataset *ds = NULL;
    cnn_optimizer *opt = NULL;
    cnn_eval_result er = {0};
    int ok = 0;
    float x[6 * 64];
    int32_t labels[6];
    for (size_t i = 0; i < 6 * 64; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    for (size_t i = 0; i < 6; i++) labels[i] = (int32_t)(i % 3);
    cnn_status st = cnn_ctx_create(&ctx, &o);
    if (st != CNN_OK) {
        assert_null(ctx);
        return 0;
    }
#define STEP(expr)                                                                                                 \
    do {                                                                                                           \
        cnn_status s_ = (expr);                                                                                    \
        if (s_ != CNN_OK) {                                                                                        \
            assert_true(strlen(cnn_ctx_last_error(ctx)) > 0 || s_ == CNN_ERR_NOMEM);                               \
            goto done;                                                                                             \
        }                                                                                                          \
    } while (0)
    STEP(cnn_net_parse(ctx, MODEL, strlen(MODEL), "alloc.cnn", &net));
    STEP(cnn_net_compile(net, 6, CNN_COMPILE_TRAIN));
    STEP(cnn_net_init_params(net, 1, CNN_INIT_DEFAULT));
    cnn_shape shape = {1, 8, 8};
    STEP(cnn_dataset_from_memory(ctx, x, labels, 6, shape, 3, &ds));
    cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_ADAM);
    STEP(cnn_optimizer_create(net, &oo, &opt));
    STEP(cnn_net_forward(net, x, 6, 1));
    cnn_loss_stats ls;
    STEP(cnn_net_loss(net, labels, NULL, &ls));
    STEP(cnn_net_backward(net, NULL));
    STEP(cnn_optimizer_step(opt, 0.01f));
    STEP(cnn_net_save_weights(net, path));
    STEP(cnn_net_load_weights(net, path));
    STEP(cnn_net_compile(net, 4, 0));
    STEP(cnn_net_evaluate(net, ds, 4, &er));
    assert_int_equal(er.n, 6);
    ok = 1;
done:
    if (er.confusion) cnn_free(ctx, er.confusion);
    cnn_optimizer_free(opt);
    cnn_dataset_free(ds);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
#undef STEP
    return ok;
}

static void test_every_allocation_failure(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/cnn-alloc-fail-%d.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    counting probe = {0, 0, 0};
    assert_true(scenario(&probe, path)); /* with no failure the whole scenario works */
    assert_int_equal(probe.live, 0);
    long total = probe.calls;
    assert_true(total > 10);
    long failed = 0;
    for (long n = 1; n <= total; n++) {
        counting c = {0, n, 0};
        int ok = scenario(&c, path);
        if (c.live != 0) fail_msg("allocation %ld of %ld failed: %ld blocks still live after freeing everything", n, total, c.live);
        if (!ok) failed++;
    }
    printf("# %ld allocations in the scenario; failing each one in turn: %ld runs stopped with an error, none leaked\n",
           total, failed);
    assert_true(failed > 0);
    unlink(path);
}

/* The context's memory limit refuses what would pass it, names the limit, and counts in-use and peak. */
static void test_memory_limit(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    size_t base = cnn_ctx_memory_in_use(ctx);
    assert_int_equal(cnn_ctx_set_memory_limit(ctx, base + ((size_t)8 << 20)), CNN_OK);
    cnn_net *net = NULL;
    const char *big = "input c=1 h=1 w=1\ndense out=100000000\n"; /* 200 M parameters: 800 MB */
    assert_int_equal(cnn_net_parse(ctx, big, strlen(big), "big.cnn", &net), CNN_ERR_NOMEM);
    assert_null(net);
    assert_int_equal(cnn_ctx_memory_in_use(ctx), base);
    assert_int_equal(cnn_net_parse(ctx, MODEL, strlen(MODEL), "m.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 100000, CNN_COMPILE_TRAIN), CNN_ERR_NOMEM);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "memory limit"));
    assert_int_equal(cnn_net_compile(net, 8, CNN_COMPILE_TRAIN), CNN_OK);
    assert_true(cnn_ctx_memory_in_use(ctx) > base);
    assert_true(cnn_ctx_memory_peak(ctx) >= cnn_ctx_memory_in_use(ctx));
    cnn_net_free(net);
    assert_int_equal(cnn_ctx_memory_in_use(ctx), base);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_allocation_failure),
                                       cmocka_unit_test(test_memory_limit)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
