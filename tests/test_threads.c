/* test_threads.c — the library is thread-safe for separate networks.
 *
 * Two different networks (different models, seeds, optimizers and thread counts), each in its own context,
 * trained at the same time in two pthreads, end with weights bit-identical to the same runs done alone, one
 * after the other; so do two copies of the same run. Each run also goes through the other per-thread
 * paths: parse, compile, a weights save and load next to the other thread's file (the atomic writer's
 * temporary names), model text out, and an evaluation.
 *
 * Two networks of ONE context are not to be used from two threads at once (cnn.h: "a context and the
 * objects made from it are used by one thread at a time": they share the context's SGEMM workspace, its
 * memory counters and its error message). What one context does allow is checked too: two nets of one
 * context trained interleaved step by step from one thread give the same weights as each trained alone
 * in a context of its own (no state leaks from one net to another through the context). */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Odd shapes on purpose: 3x13x11 input, 5-sample batches of random data. */
static const char *MODEL_A = "input c=3 h=13 w=11\n"
                             "conv2d name=c1 k=6 kh=3 kw=3 pad=1\n"
                             "batchnorm\n"
                             "relu name=r1\n"
                             "conv2d name=c2 k=6 kh=3 kw=3 pad=1\n"
                             "add from=r1,c2\n"
                             "maxpool2d size=2 stride=2\n"
                             "dropout p=0.2\n"
                             "flatten\n"
                             "dense name=fc out=7\n"
                             "softmax_ce\n";
static const char *MODEL_B = "input c=3 h=13 w=11\n"
                             "conv2d name=s k=5 kh=5 kw=3 stride=2\n"
                             "gelu\n"
                             "avgpool2d size=2 stride=1\n"
                             "flatten\n"
                             "dense name=h out=9\n"
                             "tanh\n"
                             "dense name=o out=7\n"
                             "softmax_ce\n";

#define BATCH 5
#define STEPS 6
#define IN_COUNT (3 * 13 * 11)

typedef struct job {
    const char *model;
    uint64_t seed;
    size_t threads;
    cnn_optimizer_kind optimizer;
    char path[256];  /* weights file of this job */
    /* results */
    float *params;   /* trainable parameters at the end (copy) */
    size_t n_params;
    double accuracy; /* of the final evaluation */
    char error[1100];
} job;

static void data_for(uint64_t seed, float *x, int32_t *labels, size_t n) {
    th_fill_uniform(x, n * IN_COUNT, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) labels[i] = (int32_t)((seed * 31 + i * 7) % 7);
}

#define JOB_TRY(expr)                                                                                          \
    do {                                                                                                       \
        cnn_status s_ = (expr);                                                                                \
        if (s_ != CNN_OK) {                                                                                    \
            snprintf(j->error, sizeof j->error, "%s: %s", #expr, ctx ? cnn_ctx_last_error(ctx) : "no context"); \
            goto done;                                                                                         \
        }                                                                                                      \
    } while (0)

/* One training step of net on batch `step` of the job's data. */
static cnn_status train_step(cnn_net *net, cnn_optimizer *opt, uint64_t seed, size_t step) {
    float x[BATCH * IN_COUNT];
    int32_t labels[BATCH];
    data_for(seed * 1000 + step, x, labels, BATCH);
    cnn_status st = cnn_net_forward(net, x, BATCH, 1);
    cnn_loss_stats ls;
    if (st == CNN_OK) st = cnn_net_loss(net, labels, NULL, &ls);
    if (st == CNN_OK) st = cnn_net_backward(net, NULL);
    if (st == CNN_OK) st = cnn_optimizer_step(opt, 0.02f);
    return st;
}

static cnn_status setup(cnn_ctx *ctx, const job *j, cnn_net **net, cnn_optimizer **opt) {
    cnn_status st = cnn_net_parse(ctx, j->model, strlen(j->model), "threads.cnn", net);
    if (st == CNN_OK) st = cnn_net_compile(*net, BATCH, CNN_COMPILE_TRAIN);
    if (st == CNN_OK) st = cnn_net_init_params(*net, j->seed, CNN_INIT_DEFAULT);
    if (st == CNN_OK) cnn_net_set_seed(*net, j->seed);
    cnn_optimizer_options oo = cnn_optimizer_options_default(j->optimizer);
    if (st == CNN_OK) st = cnn_optimizer_create(*net, &oo, opt);
    return st;
}

static void copy_params(job *j, cnn_net *net) {
    cnn_param p;
    size_t total = cnn_net_param_count(net), at = 0;
    j->params = malloc(total * sizeof(float));
    j->n_params = total;
    for (size_t i = 0; i < cnn_net_num_params(net) && j->params; i++) {
        if (cnn_net_param_at(net, i, &p) != CNN_OK || !p.trainable) continue;
        memcpy(j->params + at, p.data, p.count * sizeof(float));
        at += p.count;
    }
}

static void *run_job(void *arg) {
    job *j = arg;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL, *back = NULL;
    cnn_optimizer *opt = NULL;
    cnn_dataset *ds = NULL;
    char *text = NULL;
    cnn_eval_result er = {0};
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = j->threads;
    j->error[0] = '\0';
    JOB_TRY(cnn_ctx_create(&ctx, &o));
    JOB_TRY(setup(ctx, j, &net, &opt));
    for (size_t s = 0; s < STEPS; s++) JOB_TRY(train_step(net, opt, j->seed, s));
    JOB_TRY(cnn_net_save_weights(net, j->path));
    JOB_TRY(cnn_net_to_text(net, &text));
    JOB_TRY(cnn_net_parse(ctx, text, strlen(text), "round-trip.cnn", &back));
    JOB_TRY(cnn_net_load_weights(back, j->path));
    JOB_TRY(cnn_net_compile(back, BATCH, 0));
    {
        float x[3 * BATCH * IN_COUNT];
        int32_t labels[3 * BATCH];
        data_for(j->seed + 77, x, labels, 3 * BATCH);
        cnn_shape shape = {3, 13, 11};
        JOB_TRY(cnn_dataset_from_memory(ctx, x, labels, 3 * BATCH, shape, 7, &ds));
    }
    JOB_TRY(cnn_net_evaluate(back, ds, BATCH, &er));
    j->accuracy = er.accuracy;
    copy_params(j, back);
done:
    if (er.confusion) cnn_free(ctx, er.confusion);
    if (text) cnn_free(ctx, text);
    cnn_dataset_free(ds);
    cnn_optimizer_free(opt);
    cnn_net_free(back);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    return NULL;
}

static void job_init(job *j, const char *model, uint64_t seed, size_t threads, cnn_optimizer_kind k, const char *tag) {
    memset(j, 0, sizeof *j);
    j->model = model;
    j->seed = seed;
    j->threads = threads;
    j->optimizer = k;
    snprintf(j->path, sizeof j->path, "%s/cnn-threads-%d-%s.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), tag);
}

static void expect_same(const job *alone, const job *together, const char *what) {
    if (alone->error[0]) fail_msg("%s alone: %s", what, alone->error);
    if (together->error[0]) fail_msg("%s in a thread: %s", what, together->error);
    assert_non_null(alone->params);
    assert_non_null(together->params);
    assert_int_equal(alone->n_params, together->n_params);
    for (size_t i = 0; i < alone->n_params; i++)
        if (memcmp(&alone->params[i], &together->params[i], sizeof(float)) != 0)
            fail_msg("%s: parameter %zu differs: %.9g alone, %.9g with another thread training", what, i,
                     (double)alone->params[i], (double)together->params[i]);
    assert_true(alone->accuracy == together->accuracy);
}

static void job_free(job *j) {
    free(j->params);
    unlink(j->path);
}

/* The runs really trained: the weights moved away from their initial values. */
static void expect_trained(const job *j) {
    job init = *j;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_optimizer *opt = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    assert_int_equal(setup(ctx, &init, &net, &opt), CNN_OK);
    init.params = NULL;
    copy_params(&init, net);
    size_t moved = 0;
    for (size_t i = 0; i < j->n_params; i++) moved += init.params[i] != j->params[i];
    assert_true(moved > j->n_params / 2);
    free(init.params);
    cnn_optimizer_free(opt);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void run_pair(job *a, job *b) {
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, run_job, a), 0);
    assert_int_equal(pthread_create(&tb, NULL, run_job, b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
}

/* Different models, seeds, optimizers and thread counts: alone, then both at once (three rounds). */
static void test_two_nets_two_threads(void **state) {
    (void)state;
    job a0, b0;
    job_init(&a0, MODEL_A, 3, 2, CNN_OPT_ADAM, "a0");
    job_init(&b0, MODEL_B, 11, 1, CNN_OPT_SGD, "b0");
    run_job(&a0);
    run_job(&b0);
    if (a0.error[0] || b0.error[0]) fail_msg("alone: %s%s", a0.error, b0.error);
    expect_trained(&a0);
    expect_trained(&b0);
    for (int round = 0; round < 3; round++) {
        job a, b;
        job_init(&a, MODEL_A, 3, 2, CNN_OPT_ADAM, "a");
        job_init(&b, MODEL_B, 11, 1, CNN_OPT_SGD, "b");
        if (round == 2) b.threads = 2; /* two OpenMP teams at once */
        run_pair(&a, &b);
        expect_same(&a0, &a, "model A");
        expect_same(&b0, &b, "model B");
        job_free(&a);
        job_free(&b);
    }
    job_free(&a0);
    job_free(&b0);
}

/* The same run twice at once (same model, seed and weights path prefix): both equal the run alone. */
static void test_same_run_two_threads(void **state) {
    (void)state;
    job r0, r1, r2;
    job_init(&r0, MODEL_A, 21, 2, CNN_OPT_SGD, "r0");
    run_job(&r0);
    job_init(&r1, MODEL_A, 21, 2, CNN_OPT_SGD, "r1");
    job_init(&r2, MODEL_A, 21, 2, CNN_OPT_SGD, "r2");
    run_pair(&r1, &r2);
    expect_same(&r0, &r1, "first copy");
    expect_same(&r0, &r2, "second copy");
    job_free(&r0);
    job_free(&r1);
    job_free(&r2);
}

/* One thread, one context, two nets trained interleaved step by step: each equals its run alone. */
static void test_two_nets_one_context(void **state) {
    (void)state;
    job a0, b0;
    job_init(&a0, MODEL_A, 5, 2, CNN_OPT_ADAM, "ia");
    job_init(&b0, MODEL_B, 6, 2, CNN_OPT_ADAMW, "ib");
    run_job(&a0);
    run_job(&b0);
    if (a0.error[0] || b0.error[0]) fail_msg("alone: %s%s", a0.error, b0.error);

    cnn_ctx *ctx = NULL;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = 2;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    cnn_net *na = NULL, *nb = NULL, *ba = NULL, *bb = NULL;
    cnn_optimizer *oa = NULL, *ob = NULL;
    job a = a0, b = b0;
    a.params = b.params = NULL;
    assert_int_equal(setup(ctx, &a, &na, &oa), CNN_OK);
    assert_int_equal(setup(ctx, &b, &nb, &ob), CNN_OK);
    for (size_t s = 0; s < STEPS; s++) {
        assert_int_equal(train_step(na, oa, a.seed, s), CNN_OK);
        assert_int_equal(train_step(nb, ob, b.seed, s), CNN_OK);
    }
    /* the same round trip as run_job, so the copies compare like for like */
    job *pairs[2] = {&a, &b};
    cnn_net *nets[2] = {na, nb}, **backs[2] = {&ba, &bb};
    for (int k = 0; k < 2; k++) {
        char *text = NULL;
        assert_int_equal(cnn_net_save_weights(nets[k], pairs[k]->path), CNN_OK);
        assert_int_equal(cnn_net_to_text(nets[k], &text), CNN_OK);
        assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "rt.cnn", backs[k]), CNN_OK);
        cnn_free(ctx, text);
        assert_int_equal(cnn_net_load_weights(*backs[k], pairs[k]->path), CNN_OK);
        copy_params(pairs[k], *backs[k]);
        pairs[k]->accuracy = pairs[k] == &a ? a0.accuracy : b0.accuracy; /* not evaluated here */
    }
    expect_same(&a0, &a, "model A beside model B in one context");
    expect_same(&b0, &b, "model B beside model A in one context");
    cnn_net_free(ba);
    cnn_net_free(bb);
    cnn_optimizer_free(oa);
    cnn_optimizer_free(ob);
    cnn_net_free(na);
    cnn_net_free(nb);
    cnn_ctx_free(ctx);
    free(a.params);
    free(b.params);
    job_free(&a0);
    job_free(&b0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_nets_two_threads),
                                       cmocka_unit_test(test_same_run_two_threads),
                                       cmocka_unit_test(test_two_nets_one_context)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
