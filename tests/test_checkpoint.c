/* test_checkpoint.c — checkpoints (src/io/checkpoint.c): a run stopped after epoch 1 (and in the middle of
 * epoch 2) and resumed from a checkpoint gives bit-identical weights and optimizer state to an uninterrupted
 * run, for SGD with momentum, Nesterov, Adam and AdamW, with dropout in the net (its RNG is restored); the
 * metadata round trips (position, arguments, model text); weights loaders read a checkpoint; malformed
 * checkpoints, a wrong optimizer and a plain weights file give clear errors; a save that fails (missing
 * folder, a file size limit mid-write, a directory in the way) leaves the previous checkpoint intact and
 * loadable and no temporary file behind. */
#define _XOPEN_SOURCE 700 /* mkdtemp, lstat, setrlimit */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn.h"

static const char *MODEL = "input c=2 h=9 w=7\n"
                           "conv2d name=c1 k=5 kh=3 kw=3 pad=1\n"
                           "batchnorm name=bn1\n"
                           "relu\n"
                           "maxpool2d size=2 stride=2\n"
                           "flatten\n"
                           "dropout p=0.3\n"
                           "dense name=fc out=7\n"
                           "relu\n"
                           "dense name=out out=4\n"
                           "softmax_ce\n";

#define N_SAMPLES 53 /* batch 8: six full batches and a partial one */
#define BATCH 8
#define SAMPLE (2 * 9 * 7)

static char g_dir[4096];
static size_t g_threads = 1; /* 2 for one case: OpenMP's spinning makes 2 threads slow on a busy machine */

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("CNN_BINARY_DIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_checkpoint.XXXXXX", base);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(g_dir);
    return 0;
}

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

static size_t count_files(void) {
    DIR *d = opendir(g_dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static cnn_dataset *make_data(cnn_ctx *ctx) {
    static float x[N_SAMPLES * SAMPLE];
    static int32_t y[N_SAMPLES];
    uint64_t s = 12345;
    for (size_t i = 0; i < N_SAMPLES * SAMPLE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) & 0xffff) / 65536.0f;
    }
    for (size_t i = 0; i < N_SAMPLES; i++) y[i] = (int32_t)(i * 7 % 4);
    cnn_dataset *ds = NULL;
    cnn_shape sh = {2, 9, 7};
    assert_int_equal(cnn_dataset_from_memory(ctx, x, y, N_SAMPLES, sh, 4, &ds), CNN_OK);
    return ds;
}

typedef struct run {
    cnn_ctx *ctx;
    cnn_net *net;
    cnn_optimizer *opt;
    cnn_dataset *ds;
} run;

static void run_open(run *r, const cnn_optimizer_options *oo, const char *resume) {
    memset(r, 0, sizeof *r);
    cnn_ctx_options co = cnn_ctx_options_default();
    co.threads = g_threads;
    assert_int_equal(cnn_ctx_create(&r->ctx, &co), CNN_OK);
    if (resume) {
        assert_int_equal(cnn_checkpoint_load(r->ctx, resume, &r->net), CNN_OK);
        assert_int_equal(cnn_net_compile(r->net, BATCH, CNN_COMPILE_TRAIN), CNN_OK);
    } else {
        assert_int_equal(cnn_net_parse(r->ctx, MODEL, strlen(MODEL), "test", &r->net), CNN_OK);
        assert_int_equal(cnn_net_compile(r->net, BATCH, CNN_COMPILE_TRAIN), CNN_OK);
        assert_int_equal(cnn_net_init_params(r->net, 7, CNN_INIT_DEFAULT), CNN_OK);
        cnn_net_set_seed(r->net, 7);
    }
    assert_int_equal(cnn_optimizer_create(r->net, oo, &r->opt), CNN_OK);
    if (resume) assert_int_equal(cnn_checkpoint_load_optimizer(r->opt, resume), CNN_OK);
    r->ds = make_data(r->ctx);
}

static void run_close(run *r) {
    cnn_dataset_free(r->ds);
    cnn_optimizer_free(r->opt);
    cnn_net_free(r->net);
    cnn_ctx_free(r->ctx);
}

/* Train from (epoch, batch) up to (end_epoch, end_batch): the shuffle of an epoch depends on (7, epoch). */
static void train(run *r, size_t e0, size_t b0, size_t e1, size_t b1) {
    size_t idx[N_SAMPLES];
    float x[BATCH * SAMPLE];
    int32_t y[BATCH];
    const size_t nbatches = (N_SAMPLES + BATCH - 1) / BATCH;
    for (size_t e = e0; e <= e1; e++) {
        for (size_t i = 0; i < N_SAMPLES; i++) idx[i] = i;
        cnn_shuffle_indices(idx, N_SAMPLES, 1000 + e);
        size_t bb = e == e0 ? b0 : 0, be = e == e1 ? b1 : nbatches;
        for (size_t b = bb; b < be; b++) {
            size_t n = N_SAMPLES - b * BATCH < BATCH ? N_SAMPLES - b * BATCH : BATCH;
            cnn_loss_stats ls;
            assert_int_equal(cnn_dataset_gather(r->ds, idx + b * BATCH, n, x, y), CNN_OK);
            assert_int_equal(cnn_net_forward(r->net, x, n, 1), CNN_OK);
            assert_int_equal(cnn_net_loss(r->net, y, NULL, &ls), CNN_OK);
            assert_int_equal(cnn_net_backward(r->net, NULL), CNN_OK);
            assert_int_equal(cnn_optimizer_step(r->opt, 0.05f / (float)(1 + cnn_optimizer_steps(r->opt) % 3)), CNN_OK);
        }
    }
}

static void assert_same(run *a, run *b) {
    size_t np = cnn_net_num_params(a->net);
    assert_int_equal(np, cnn_net_num_params(b->net));
    for (size_t i = 0; i < np; i++) {
        cnn_param p, q;
        assert_int_equal(cnn_net_param_at(a->net, i, &p), CNN_OK);
        assert_int_equal(cnn_net_param_at(b->net, i, &q), CNN_OK);
        assert_string_equal(p.name, q.name);
        assert_int_equal(p.count, q.count);
        assert_memory_equal(p.data, q.data, p.count * sizeof(float));
    }
    float *s[2], *t[2];
    size_t n, m;
    cnn_optimizer_state(a->opt, s, &n);
    cnn_optimizer_state(b->opt, t, &m);
    assert_int_equal(n, m);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(s[k] == NULL, t[k] == NULL);
        if (s[k]) assert_memory_equal(s[k], t[k], n * sizeof(float));
    }
    assert_int_equal(cnn_optimizer_steps(a->opt), cnn_optimizer_steps(b->opt));
    uint64_t s1, k1, s2, k2;
    cnn_net_get_rng(a->net, &s1, &k1);
    cnn_net_get_rng(b->net, &s2, &k2);
    assert_int_equal(s1, s2);
    assert_int_equal(k1, k2);
}

static void resume_case(const cnn_optimizer_options *oo, size_t stop_batch) {
    char ck[4200];
    path_in(ck, sizeof ck, "ck.safetensors");
    run full, part, res;
    run_open(&full, oo, NULL);
    train(&full, 0, 0, 1, 7); /* two epochs of 7 batches */

    run_open(&part, oo, NULL);
    /* epoch 0 complete, then stop_batch batches of epoch 1 */
    if (stop_batch == 0) train(&part, 0, 0, 0, 7);
    else train(&part, 0, 0, 1, stop_batch);
    const char *args[] = {"--batch", "8", "--note", "h\xc3\xa9 \"quoted\""};
    cnn_train_state st = {.epoch = 1, .batch = stop_batch, .step = cnn_optimizer_steps(part.opt), .seed = 7,
                          .n_args = 4, .args = args};
    assert_int_equal(cnn_checkpoint_save(part.net, part.opt, &st, ck), CNN_OK);
    run_close(&part);

    cnn_train_state got;
    cnn_ctx *ctx;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    assert_int_equal(cnn_checkpoint_read_state(ctx, ck, &got), CNN_OK);
    assert_int_equal(got.epoch, 1);
    assert_int_equal(got.batch, stop_batch);
    assert_int_equal(got.step, st.step);
    assert_int_equal(got.seed, 7);
    assert_int_equal(got.n_args, 4);
    for (size_t i = 0; i < 4; i++) assert_string_equal(got.args[i], args[i]);
    cnn_free(ctx, (void *)got.args);
    cnn_ctx_free(ctx);

    run_open(&res, oo, ck);
    train(&res, 1, stop_batch, 1, 7);
    assert_same(&full, &res);
    run_close(&res);
    run_close(&full);
}

static void test_resume_bit_identical(void **state) {
    (void)state;
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.momentum = 0.9f;
    g_threads = 2;
    resume_case(&o, 3);
    g_threads = 1;
    resume_case(&o, 0);
    o.nesterov = 1;
    o.weight_decay = 1e-3f;
    resume_case(&o, 5);
    o = cnn_optimizer_options_default(CNN_OPT_SGD); /* no state */
    resume_case(&o, 2);
    o = cnn_optimizer_options_default(CNN_OPT_ADAM);
    resume_case(&o, 0);
    resume_case(&o, 6);
    o = cnn_optimizer_options_default(CNN_OPT_ADAMW);
    resume_case(&o, 1);
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void expect_load_error(cnn_ctx *ctx, const char *path, cnn_status want, const char *needle) {
    cnn_net *net = (cnn_net *)1;
    cnn_status st = cnn_checkpoint_load(ctx, path, &net);
    assert_int_equal(st, want);
    assert_null(net);
    if (needle && !strstr(cnn_ctx_last_error(ctx), needle)) fail_msg("message '%s' lacks '%s'", cnn_ctx_last_error(ctx), needle);
}

static void test_errors(void **state) {
    (void)state;
    char ck[4200], bad[4200], w[4200];
    path_in(ck, sizeof ck, "ck");
    path_in(bad, sizeof bad, "bad");
    path_in(w, sizeof w, "weights");
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_ADAM);
    run r;
    run_open(&r, &o, NULL);
    train(&r, 0, 0, 0, 2);
    assert_int_equal(cnn_checkpoint_save(r.net, r.opt, NULL, ck), CNN_OK);
    assert_int_equal(cnn_net_save_weights(r.net, w), CNN_OK);
    /* weights loaders read a checkpoint (the optim.* tensors are ignored) */
    assert_int_equal(cnn_net_load_weights(r.net, ck), CNN_OK);
    /* a plain weights file: a net, but no training state */
    cnn_net *net = NULL;
    assert_int_equal(cnn_checkpoint_load(r.ctx, w, &net), CNN_OK);
    cnn_net_free(net);
    cnn_train_state ts;
    assert_int_equal(cnn_checkpoint_read_state(r.ctx, w, &ts), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(r.ctx), "not a checkpoint"));
    assert_int_equal(cnn_checkpoint_load_optimizer(r.opt, w), CNN_ERR_FORMAT);
    /* the wrong optimizer */
    cnn_optimizer *sgd;
    cnn_optimizer_options so = cnn_optimizer_options_default(CNN_OPT_SGD);
    so.momentum = 0.5f;
    assert_int_equal(cnn_optimizer_create(r.net, &so, &sgd), CNN_OK);
    assert_int_equal(cnn_checkpoint_load_optimizer(sgd, ck), CNN_ERR_MISUSE);
    assert_non_null(strstr(cnn_ctx_last_error(r.ctx), "adam"));
    cnn_optimizer_free(sgd);
    /* missing file */
    expect_load_error(r.ctx, bad, CNN_ERR_IO, "cannot open");
    /* truncated at many points, every one a clear error */
    size_t len;
    unsigned char *b = read_all(ck, &len);
    for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 97) {
        write_all(bad, b, cut);
        cnn_net *n2 = (cnn_net *)1;
        cnn_status st = cnn_checkpoint_load(r.ctx, bad, &n2);
        assert_int_not_equal(st, CNN_OK);
        assert_null(n2);
        assert_true(strlen(cnn_ctx_last_error(r.ctx)) > 10);
        assert_int_not_equal(cnn_checkpoint_load_optimizer(r.opt, bad), CNN_OK);
    }
    /* bytes flipped in the header: never a crash; an error or (rarely) a loadable file */
    for (size_t i = 8; i < 600 && i < len; i += 7) {
        unsigned char save = b[i];
        b[i] ^= 0x5a;
        write_all(bad, b, len);
        cnn_net *n2 = NULL;
        if (cnn_checkpoint_load(r.ctx, bad, &n2) == CNN_OK) cnn_net_free(n2);
        (void)cnn_checkpoint_load_optimizer(r.opt, bad);
        b[i] = save;
    }
    /* not JSON metadata */
    write_all(bad, "\x10\0\0\0\0\0\0\0{\"a\":1}         ", 24);
    expect_load_error(r.ctx, bad, CNN_ERR_FORMAT, "model text");
    free(b);
    run_close(&r);
}

static void test_failed_save_keeps_previous(void **state) {
    (void)state;
    char ck[4200], missing[4200], dir[4200];
    path_in(ck, sizeof ck, "ck");
    path_in(missing, sizeof missing, "no/such/folder/ck");
    path_in(dir, sizeof dir, "adir");
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.momentum = 0.9f;
    run r;
    run_open(&r, &o, NULL);
    train(&r, 0, 0, 0, 3);
    cnn_train_state st = {.epoch = 1, .step = cnn_optimizer_steps(r.opt), .seed = 7};
    assert_int_equal(cnn_checkpoint_save(r.net, r.opt, &st, ck), CNN_OK);
    size_t len0;
    unsigned char *before = read_all(ck, &len0);
    train(&r, 0, 3, 0, 5);
    st.step = cnn_optimizer_steps(r.opt);

    assert_int_equal(cnn_checkpoint_save(r.net, r.opt, &st, missing), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(r.ctx), "temporary file"));
    /* a directory where the file should go: the rename fails, the temporary file is removed */
    assert_int_equal(mkdir(dir, 0755), 0);
    char inner[4300];
    snprintf(inner, sizeof inner, "%s/x", dir);
    write_all(inner, "x", 1);
    assert_int_equal(cnn_checkpoint_save(r.net, r.opt, &st, dir), CNN_ERR_IO);
    assert_int_equal(count_files(), 2); /* ck, adir */
    /* a write that fails half-way (file size limit): the previous checkpoint is untouched */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = len0 / 2;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cnn_status s2 = cnn_checkpoint_save(r.net, r.opt, &st, ck);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(s2, CNN_ERR_IO);
    assert_int_equal(count_files(), 2);
    size_t len1;
    unsigned char *after = read_all(ck, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    cnn_train_state got;
    assert_int_equal(cnn_checkpoint_read_state(r.ctx, ck, &got), CNN_OK);
    assert_int_equal(got.step, 3);
    assert_int_equal(got.n_args, 0);
    cnn_free(r.ctx, (void *)got.args);
    /* a read-only folder (only meaningful when not root: root writes anyway) */
    if (geteuid() != 0) {
        char ro[4200], rock[4300];
        path_in(ro, sizeof ro, "ro");
        assert_int_equal(mkdir(ro, 0755), 0);
        snprintf(rock, sizeof rock, "%s/ck", ro);
        assert_int_equal(cnn_checkpoint_save(r.net, r.opt, &st, rock), CNN_OK);
        chmod(ro, 0555);
        assert_int_equal(cnn_checkpoint_save(r.net, r.opt, &st, rock), CNN_ERR_IO);
        chmod(ro, 0755);
        assert_int_equal(cnn_checkpoint_read_state(r.ctx, rock, &got), CNN_OK);
    }
    free(before);
    free(after);
    run_close(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_bit_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_save_keeps_previous, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
