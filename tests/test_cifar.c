/* test_cifar.c — CIFAR-10 binary batches: the reader on generated files (random pixels, known labels, batches
 * of unequal sizes), gather() against the file bytes (exact x/255 of the right channel/row/column, and with
 * per-channel normalisation), the cifar-10-batches-bin/ subfolder, load_dir's recognition of the folder kind
 * (cnn_dataset_kind), every broken case (a byte short, a byte over, label 10, empty, missing batches, a folder
 * in place of a file) with its status and a message naming the file, and `cnn train` on a tiny generated
 * folder (2 steps; the header line says "cifar10"). No CIFAR-10 copy is needed: everything is generated. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn.h"

#define REC 3073u
#define PIX 3072u

static char g_dir[4096];

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

/* A fresh empty folder g_dir/<name>; returns its path (static buffer ring). */
static const char *fresh(const char *name) {
    static char buf[4][4400];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 4400, "%s/%s", g_dir, name);
    remove_tree(p);
    assert_int_equal(mkdir(p, 0755), 0);
    return p;
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* n records with random pixels; label of record i is (i * 7 + salt) % 10. */
static unsigned char *make_records(size_t n, unsigned salt, uint64_t seed) {
    unsigned char *b = malloc(n * REC + 1);
    assert_non_null(b);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        b[i * REC] = (unsigned char)((i * 7 + salt) % 10);
        for (size_t j = 1; j < REC; j++) b[i * REC + j] = (unsigned char)(rnd(&s) >> 56);
    }
    return b;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static const size_t train_sizes[5] = {3, 2, 4, 1, 5};
static const size_t test_size = 7;

/* Write the five train batches (sizes above) and test_batch.bin into dir; *train / *test get the bytes
 * of all train records concatenated and of the test records (free them). */
static void write_cifar(const char *dir, unsigned char **train, unsigned char **test) {
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += train_sizes[i];
    unsigned char *all = malloc(total * REC);
    assert_non_null(all);
    size_t at = 0;
    for (int i = 0; i < 5; i++) {
        unsigned char *b = make_records(train_sizes[i], (unsigned)i, (uint64_t)i + 11);
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        write_file(dir, name, b, train_sizes[i] * REC);
        memcpy(all + at * REC, b, train_sizes[i] * REC);
        at += train_sizes[i];
        free(b);
    }
    unsigned char *t = make_records(test_size, 3, 99);
    write_file(dir, "test_batch.bin", t, test_size * REC);
    if (train) *train = all; else free(all);
    if (test) *test = t; else free(t);
}

/* Every sample of ds against the record bytes: label, and x[c][r][col] = (p / 255 - mean[c]) / std[c]. */
static void check_against(const cnn_dataset *ds, const unsigned char *recs, size_t n, const float *mean,
                          const float *std) {
    assert_int_equal(cnn_dataset_size(ds), n);
    cnn_shape sh = cnn_dataset_shape(ds);
    assert_int_equal(sh.c, 3);
    assert_int_equal(sh.h, 32);
    assert_int_equal(sh.w, 32);
    assert_int_equal(cnn_dataset_classes(ds), 10);
    assert_string_equal(cnn_dataset_kind(ds), "cifar10");
    size_t *idx = malloc(n * sizeof *idx);
    float *x = malloc(n * PIX * sizeof *x);
    int32_t *lab = malloc(n * sizeof *lab);
    assert_true(idx && x && lab);
    for (size_t i = 0; i < n; i++) idx[i] = n - 1 - i; /* reversed: gather follows idx */
    assert_int_equal(cnn_dataset_gather(ds, idx, n, x, lab), CNN_OK);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *r = recs + idx[i] * REC;
        assert_int_equal(lab[i], r[0]);
        for (size_t c = 0; c < 3; c++)
            for (size_t row = 0; row < 32; row++)
                for (size_t col = 0; col < 32; col++) {
                    float v = (float)r[1 + c * 1024 + row * 32 + col] / 255.0f;
                    if (mean) v = (v - mean[c]) / std[c];
                    float got = x[i * PIX + c * 1024 + row * 32 + col];
                    if (memcmp(&got, &v, sizeof v) != 0)
                        fail_msg("sample %zu c %zu row %zu col %zu: got %.9g, expected %.9g", i, c, row, col,
                                 (double)got, (double)v);
                }
    }
    free(idx);
    free(x);
    free(lab);
}

static cnn_ctx *new_ctx(void) {
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    return ctx;
}

static void test_load_and_gather(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    const char *dir = fresh("good");
    unsigned char *train, *test;
    write_cifar(dir, &train, &test);
    cnn_dataset *ds = NULL;
    if (cnn_dataset_load_dir(ctx, dir, "train", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_against(ds, train, 15, NULL, NULL);
    const float mean[3] = {0.49f, 0.48f, 0.45f}, sd[3] = {0.25f, 0.24f, 0.26f};
    assert_int_equal(cnn_dataset_set_normalization(ds, mean, sd, 3), CNN_OK);
    check_against(ds, train, 15, mean, sd);
    cnn_dataset_free(ds);
    if (cnn_dataset_load_dir(ctx, dir, "test", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_against(ds, test, test_size, NULL, NULL);
    cnn_dataset_free(ds);
    /* "t10k" is the test split too. */
    if (cnn_dataset_load_dir(ctx, dir, "t10k", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    assert_int_equal(cnn_dataset_size(ds), test_size);
    cnn_dataset_free(ds);

    /* The archive's layout: DIR/cifar-10-batches-bin/. */
    const char *top = fresh("archive");
    char sub[4500];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", top);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_cifar(sub, NULL, NULL);
    if (cnn_dataset_load_dir(ctx, top, "train", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_against(ds, train, 15, NULL, NULL);
    cnn_dataset_free(ds);
    free(train);
    free(test);
    cnn_ctx_free(ctx);
}

/* load_dir on dir/split must fail with want, a message naming `file` and containing `needle`. */
static void expect_fail(cnn_ctx *ctx, const char *dir, const char *split, cnn_status want, const char *file,
                        const char *needle) {
    cnn_dataset *ds = (cnn_dataset *)&ds;
    cnn_status st = cnn_dataset_load_dir(ctx, dir, split, &ds);
    const char *m = cnn_ctx_last_error(ctx);
    if (st != want) fail_msg("%s/%s: status %d, expected %d (%s)", dir, split, (int)st, (int)want, m);
    assert_null(ds);
    if (file && !strstr(m, file)) fail_msg("message does not name %s: %s", file, m);
    if (needle && !strstr(m, needle)) fail_msg("message lacks '%s': %s", needle, m);
}

static void test_broken(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    unsigned char *b = make_records(3, 0, 5);
    const char *dir;
    char path[4500];

    /* One byte short: 2 records and 3072 bytes left over. */
    dir = fresh("short");
    write_cifar(dir, NULL, NULL);
    write_file(dir, "data_batch_2.bin", b, 3 * REC - 1);
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    expect_fail(ctx, dir, "train", CNN_ERR_FORMAT, path, "size 9218 bytes");
    expect_fail(ctx, dir, "train", CNN_ERR_FORMAT, path, "2 records and 3072 bytes left over");
    /* The test split is still fine. */
    cnn_dataset *ds = NULL;
    if (cnn_dataset_load_dir(ctx, dir, "test", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    cnn_dataset_free(ds);

    /* One byte over. */
    dir = fresh("long");
    write_cifar(dir, NULL, NULL);
    write_file(dir, "test_batch.bin", b, 2 * REC + 1);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    expect_fail(ctx, dir, "test", CNN_ERR_FORMAT, path, "2 records and 1 bytes left over");

    /* Label 10 in record 1 of data_batch_4.bin. */
    dir = fresh("label");
    write_cifar(dir, NULL, NULL);
    b[REC] = 10;
    write_file(dir, "data_batch_4.bin", b, 3 * REC);
    b[REC] = 1;
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    expect_fail(ctx, dir, "train", CNN_ERR_FORMAT, path, "record 1 (byte offset 3073) has label 10");
    /* Label 255 in the last record. */
    b[2 * REC] = 255;
    write_file(dir, "data_batch_4.bin", b, 3 * REC);
    b[2 * REC] = 2;
    expect_fail(ctx, dir, "train", CNN_ERR_FORMAT, path, "record 2 (byte offset 6146) has label 255");

    /* Empty. */
    dir = fresh("empty");
    write_cifar(dir, NULL, NULL);
    write_file(dir, "data_batch_1.bin", b, 0);
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    expect_fail(ctx, dir, "train", CNN_ERR_FORMAT, path, "empty");

    /* Missing test_batch.bin: train loads, test names the file. */
    dir = fresh("notest");
    write_cifar(dir, NULL, NULL);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    assert_int_equal(unlink(path), 0);
    if (cnn_dataset_load_dir(ctx, dir, "train", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    assert_int_equal(cnn_dataset_size(ds), 15);
    cnn_dataset_free(ds);
    expect_fail(ctx, dir, "test", CNN_ERR_IO, dir, "missing test_batch.bin");

    /* Missing train batches: all listed by name. */
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/data_batch_5.bin", dir);
    assert_int_equal(unlink(path), 0);
    expect_fail(ctx, dir, "train", CNN_ERR_IO, dir, "missing data_batch_3.bin, data_batch_5.bin (2 of 5");

    /* A folder in place of a batch file. */
    dir = fresh("isdir");
    write_cifar(dir, NULL, NULL);
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_fail(ctx, dir, "train", CNN_ERR_IO, path, "is a directory");

    /* Neither IDX nor CIFAR-10: both are named in the message. */
    dir = fresh("nothing");
    write_file(dir, "readme.txt", "hi", 2);
    expect_fail(ctx, dir, "train", CNN_ERR_IO, dir, "train-images-idx3-ubyte");
    expect_fail(ctx, dir, "train", CNN_ERR_IO, dir, "data_batch_1.bin");
    free(b);
    cnn_ctx_free(ctx);
}

static void test_kinds(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    float x[2 * 4] = {0};
    int32_t lab[2] = {0, 1};
    cnn_shape sh = {1, 2, 2};
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, 2, sh, 2, &ds), CNN_OK);
    assert_string_equal(cnn_dataset_kind(ds), "memory");
    cnn_dataset_free(ds);
    assert_string_equal(cnn_dataset_kind(NULL), "");
    char sample[4400];
    snprintf(sample, sizeof sample, "%s/tests/data/fmnist-sample", CNN_TEST_SOURCE_DIR);
    if (cnn_dataset_load_dir(ctx, sample, "test", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    assert_string_equal(cnn_dataset_kind(ds), "idx");
    cnn_dataset_free(ds);
    cnn_ctx_free(ctx);
}

/* `cnn train` on a tiny generated folder: 2 steps, and the header line says cifar10. */
static void test_cli_train(void **state) {
    (void)state;
    const char *tool = getenv("CNN_TOOL");
    if (!tool || !*tool) {
        print_message("CNN_TOOL not set (run through ctest): skipped\n");
        skip();
    }
    const char *dir = fresh("cli");
    write_cifar(dir, NULL, NULL);
    char model[4500], err[4500], cmd[16000];
    snprintf(model, sizeof model, "%s/tiny.cnn", dir);
    FILE *f = fopen(model, "w");
    assert_non_null(f);
    fputs("input c=3 h=32 w=32\nconv2d k=4 kh=3 kw=3 pad=1\nrelu\nmaxpool2d size=4 stride=4\nflatten\n"
          "dense out=10\nsoftmax_ce\n", f);
    assert_int_equal(fclose(f), 0);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' train '%s' --data '%s' --steps 2 --batch 4 --threads 1 >/dev/null 2>'%s'", tool,
             model, dir, err);
    int rc = system(cmd);
    char text[8192] = {0};
    f = fopen(err, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    if (rc != 0) fail_msg("cnn train exited with %d:\n%s", rc, text);
    if (!strstr(text, "(cifar10): 15 train / 7 test, 3x32x32, 10 classes"))
        fail_msg("no cifar10 header line in:\n%s", text);
}

int main(void) {
    const char *base = getenv("CNN_BINARY_DIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_cifar.XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_gather),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_cli_train),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    remove_tree(g_dir);
    return r;
}
