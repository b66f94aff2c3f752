/* test_alloc_fail.c — every allocation failure path returns an error and frees what it took.
 *
 * Three sources of heap memory are failed in turn, counted as one sequence: the context's allocator, the
 * library's plain heap (src/core/sys_alloc.h: model text parsing, layer parameter structs, string buffers)
 * and jansson's allocator (the safetensors and checkpoint headers). For every N from 1 until the whole
 * scenario succeeds, allocation N fails: context creation, model parse (text and file), training compile,
 * init, an in-memory dataset, optimizer, one training step, model text out, a weights save and load, a
 * checkpoint save, reading its state and model, loading it into a new net with its optimizer and training
 * a step from it, an ONNX export and import with a forward, an inference compile and an evaluation. Each
 * failing run must report an error (never crash), and when everything is freed the context allocator and
 * jansson must have no live blocks. The plain heap's blocks are freed with free() (net.c), so their leaks
 * are LeakSanitizer's to find: make asan, or tools/ci-valgrind.sh. */
#include "harness.h"
#include "core/sys_alloc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct counting {
    long calls, fail_at, live, json_live;
    const char *failed; /* which allocator failed call fail_at */
} counting;

/* The scenario running now (jansson's hooks are process-wide and take no user pointer). */
static counting *current;

static int next_fails(counting *c, const char *source) {
    if (++c->calls != c->fail_at) return 0;
    c->failed = source;
    return 1;
}

static void *c_alloc(void *user, size_t size, size_t alignment) {
    counting *c = user;
    if (next_fails(c, "the context allocator")) return NULL;
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

static int sys_fail(void *user, size_t size) {
    (void)size;
    return next_fails(user, "the plain heap");
}

static void *j_malloc(size_t size) {
    if (current && next_fails(current, "jansson")) return NULL;
    void *p = malloc(size);
    if (p && current) current->json_live++;
    return p;
}

static void j_free(void *p) {
    if (p && current) current->json_live--;
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
    current = c;
    cnn_sys_alloc_set_hook(sys_fail, c);
    cnn_allocator a = {c_alloc, c_free, c};
    cnn_ctx_options o = cnn_ctx_options_default();
    o.allocator = &a;
    o.threads = 1; /* (allocations do not depend on it; 2 spinning OpenMP threads make the runs 10x slower) */
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_dataset *ds = NULL;
    cnn_optimizer *opt = NULL;
    cnn_eval_result er = {0};
    cnn_net *net2 = NULL, *net3 = NULL, *net4 = NULL;
    cnn_optimizer *opt2 = NULL;
    char *text = NULL, *model_back = NULL;
    cnn_train_state rs = {0};
    char ck_path[300], model_path[300], onnx_path[300];
    snprintf(ck_path, sizeof ck_path, "%s.ck", path);
    snprintf(model_path, sizeof model_path, "%s.cnn", path);
    snprintf(onnx_path, sizeof onnx_path, "%s.onnx", path);
    int ok = 0;
    float x[6 * 64];
    int32_t labels[6];
    for (size_t i = 0; i < 6 * 64; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    for (size_t i = 0; i < 6; i++) labels[i] = (int32_t)(i % 3);
    cnn_status st = cnn_ctx_create(&ctx, &o);
    if (st != CNN_OK) {
        assert_null(ctx);
        cnn_sys_alloc_set_hook(NULL, NULL);
        current = NULL;
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
    STEP(cnn_net_to_text(net, &text));
    STEP(cnn_net_save_weights(net, path));
    STEP(cnn_net_load_weights(net, path));
    /* a checkpoint: save, read its state and model, load it with its optimizer, train a step from it */
    {
        const char *args[] = {"--epochs", "3", "--data", "somewhere"};
        cnn_train_state ts = {.epoch = 1, .batch = 2, .step = 7, .seed = 9, .n_args = 4, .args = args};
        STEP(cnn_checkpoint_save(net, opt, &ts, ck_path));
    }
    STEP(cnn_checkpoint_read_state(ctx, ck_path, &rs));
    assert_int_equal(rs.n_args, 4);
    STEP(cnn_checkpoint_read_model(ctx, ck_path, &model_back));
    STEP(cnn_checkpoint_load(ctx, ck_path, &net2));
    STEP(cnn_net_compile(net2, 6, CNN_COMPILE_TRAIN));
    STEP(cnn_optimizer_create(net2, &oo, &opt2));
    STEP(cnn_checkpoint_load_optimizer(opt2, ck_path));
    STEP(cnn_net_forward(net2, x, 6, 1));
    STEP(cnn_net_loss(net2, labels, NULL, &ls));
    STEP(cnn_net_backward(net2, NULL));
    STEP(cnn_optimizer_step(opt2, 0.01f));
    /* model text from a file */
    STEP(cnn_net_load(ctx, model_path, &net3));
#if CNN_HAVE_ONNX
    /* ONNX out and back in, and a forward of the imported net */
    STEP(cnn_net_export_onnx(net, onnx_path));
    STEP(cnn_net_import_onnx(ctx, onnx_path, &net4));
    STEP(cnn_net_forward(net4, x, 1, 0));
#endif
    STEP(cnn_net_compile(net, 4, 0));
    STEP(cnn_net_evaluate(net, ds, 4, &er));
    assert_int_equal(er.n, 6);
    ok = 1;
done:
    if (er.confusion) cnn_free(ctx, er.confusion);
    if (text) cnn_free(ctx, text);
    if (model_back) cnn_free(ctx, model_back);
    if (rs.args) cnn_free(ctx, (void *)rs.args);
    cnn_optimizer_free(opt2);
    cnn_net_free(net4);
    cnn_net_free(net3);
    cnn_net_free(net2);
    cnn_optimizer_free(opt);
    cnn_dataset_free(ds);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    cnn_sys_alloc_set_hook(NULL, NULL);
    current = NULL;
#undef STEP
    return ok;
}

static void test_every_allocation_failure(void **state) {
    (void)state;
    char path[256];
    /* every run saves three files with fsync: on a RAM folder when there is one (a disk makes it minutes) */
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/cnn-alloc-fail-%d.safetensors", dir, (int)getpid());
    char model_path[300], ck_path[300], onnx_path[300];
    snprintf(model_path, sizeof model_path, "%s.cnn", path);
    snprintf(ck_path, sizeof ck_path, "%s.ck", path);
    snprintf(onnx_path, sizeof onnx_path, "%s.onnx", path);
    FILE *mf = fopen(model_path, "w");
    assert_non_null(mf);
    fputs(MODEL, mf);
    assert_int_equal(fclose(mf), 0);
    counting probe = {0, 0, 0, 0, NULL};
    assert_true(scenario(&probe, path)); /* with no failure the whole scenario works */
    assert_int_equal(probe.live, 0);
    assert_int_equal(probe.json_live, 0);
    long total = probe.calls;
    assert_true(total > 10);
    long failed = 0;
    for (long n = 1; n <= total; n++) {
        counting c = {0, n, 0, 0, NULL};
        int ok = scenario(&c, path);
        if (c.live != 0) fail_msg("allocation %ld of %ld failed: %ld blocks still live after freeing everything", n, total, c.live);
        if (c.json_live != 0)
            fail_msg("allocation %ld of %ld failed: %ld jansson blocks still live after freeing everything", n, total,
                     c.json_live);
        if (!ok) failed++;
        else if (n < total && strcmp(c.failed, "jansson") != 0) /* (jansson itself may retry or do without) */
            fail_msg("allocation %ld of %ld (%s) failed, yet every step of the scenario succeeded", n, total, c.failed);
    }
    printf("# %ld allocations in the scenario (context, plain heap and jansson); failing each one in turn: %ld runs "
           "stopped with an error, none leaked\n",
           total, failed);
    assert_true(failed > 0);
    unlink(path);
    unlink(model_path);
    unlink(ck_path);
    unlink(onnx_path);
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
    json_set_alloc_funcs(j_malloc, j_free); /* before any jansson call */
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_allocation_failure),
                                       cmocka_unit_test(test_memory_limit)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
