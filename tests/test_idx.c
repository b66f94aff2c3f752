/* test_idx.c — IDX datasets (raw and gzip), the cnn_dataset object, batches, normalisation, shuffling, and
 * every malformed-file case the reader must reject with the right status and a message naming the file.
 * Also loads the shipped Fashion-MNIST sample (tests/data/fmnist-sample) and, where the Debian package
 * dataset-fashion-mnist is installed, checks it against the full files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cnn.h"

/* ---------------------------------------------------------------- helpers */

static char g_dir[4096];

static void make_tmpdir(void) {
    const char *base = getenv("CNN_BINARY_DIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_idx.XXXXXX", base);
    assert_non_null(mkdtemp(g_dir));
}

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

static const char *tpath(const char *name) {
    static char buf[8][4400];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 4400, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* xorshift64*: the test's own generator. */
static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

typedef struct buf {
    unsigned char *p;
    size_t len;
} buf;

static void buf_free(buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file: magic, dims, then `data_len` bytes of data. */
static buf make_idx(uint32_t magic, const uint32_t *dims, size_t ndim, const unsigned char *data, size_t data_len) {
    buf b;
    b.len = 4 + 4 * ndim + data_len;
    b.p = malloc(b.len + 16);
    assert_non_null(b.p);
    put_be32(b.p, magic);
    for (size_t i = 0; i < ndim; i++) put_be32(b.p + 4 + 4 * i, dims[i]);
    if (data_len) memcpy(b.p + 4 + 4 * ndim, data, data_len);
    return b;
}

/* gzip (zlib deflate, gzip wrapper) of in[0..len). */
static buf gzip_bytes(const unsigned char *in, size_t len, int level) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    buf b;
    b.len = deflateBound(&zs, (uLong)len) + 64;
    b.p = malloc(b.len);
    assert_non_null(b.p);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = b.p;
    zs.avail_out = (uInt)b.len;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    b.len = zs.total_out;
    deflateEnd(&zs);
    return b;
}

static void write_buf(const char *path, buf b) { write_file(path, b.p, b.len); }

/* A random image set: n images of h x w, labels < classes with the last label = classes - 1. */
typedef struct sample_set {
    size_t n, h, w, classes;
    unsigned char *pix;
    unsigned char *lab;
} sample_set;

static sample_set make_set(size_t n, size_t h, size_t w, size_t classes, uint64_t seed) {
    sample_set s = {n, h, w, classes, malloc(n * h * w), malloc(n)};
    assert_non_null(s.pix);
    assert_non_null(s.lab);
    uint64_t r = seed * 2654435761u + 1;
    for (size_t i = 0; i < n * h * w; i++) s.pix[i] = (unsigned char)(rnd(&r) >> 56);
    for (size_t i = 0; i < n; i++) s.lab[i] = (unsigned char)(rnd(&r) % classes);
    s.lab[n - 1] = (unsigned char)(classes - 1);
    return s;
}

static void free_set(sample_set *s) {
    free(s->pix);
    free(s->lab);
}

static buf set_images(const sample_set *s) {
    uint32_t d[3] = {(uint32_t)s->n, (uint32_t)s->h, (uint32_t)s->w};
    return make_idx(0x00000803, d, 3, s->pix, s->n * s->h * s->w);
}

static buf set_labels(const sample_set *s) {
    uint32_t d[1] = {(uint32_t)s->n};
    return make_idx(0x00000801, d, 1, s->lab, s->n);
}

static cnn_ctx *new_ctx(void) {
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    return ctx;
}

/* Gather all samples in a shuffled order and compare with pixel / 255 exactly. */
static void check_dataset_exact(const cnn_dataset *ds, const sample_set *s, uint64_t seed) {
    assert_int_equal(cnn_dataset_size(ds), s->n);
    cnn_shape sh = cnn_dataset_shape(ds);
    assert_int_equal(sh.c, 1);
    assert_int_equal(sh.h, s->h);
    assert_int_equal(sh.w, s->w);
    assert_int_equal(cnn_dataset_classes(ds), s->classes);
    size_t count = s->h * s->w;
    size_t *idx = malloc(s->n * sizeof *idx);
    float *x = malloc(s->n * count * sizeof *x);
    int32_t *lab = malloc(s->n * sizeof *lab);
    assert_non_null(idx);
    assert_non_null(x);
    assert_non_null(lab);
    cnn_shuffle_indices(idx, s->n, seed);
    assert_int_equal(cnn_dataset_gather(ds, idx, s->n, x, lab), CNN_OK);
    for (size_t i = 0; i < s->n; i++) {
        assert_int_equal(lab[i], s->lab[idx[i]]);
        for (size_t j = 0; j < count; j++) {
            float want = (float)s->pix[idx[i] * count + j] / 255.0f;
            if (x[i * count + j] != want)
                fail_msg("sample %zu (file index %zu) element %zu: got %.9g, want %.9g", i, idx[i], j,
                         (double)x[i * count + j], (double)want);
        }
    }
    free(idx);
    free(x);
    free(lab);
}

static int setup(void **state) {
    (void)state;
    make_tmpdir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(g_dir);
    return 0;
}

/* ---------------------------------------------------------------- good files */

static void test_good_raw_and_gz(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(37, 5, 7, 7, 1);
    buf im = set_images(&s), lb = set_labels(&s);
    buf imz = gzip_bytes(im.p, im.len, 6), lbz = gzip_bytes(lb.p, lb.len, 9);
    write_buf(tpath("im"), im);
    write_buf(tpath("lb"), lb);
    /* .gz is detected by content: give the gzip files misleading names too. */
    write_buf(tpath("im.gz"), imz);
    write_buf(tpath("lbz.raw"), lbz);
    const char *combos[4][2] = {{"im", "lb"}, {"im.gz", "lbz.raw"}, {"im", "lbz.raw"}, {"im.gz", "lb"}};
    for (int c = 0; c < 4; c++) {
        cnn_dataset *ds = NULL;
        cnn_status st = cnn_dataset_load_idx(ctx, tpath(combos[c][0]), tpath(combos[c][1]), &ds);
        if (st != CNN_OK) fail_msg("%s + %s: %s", combos[c][0], combos[c][1], cnn_ctx_last_error(ctx));
        check_dataset_exact(ds, &s, (uint64_t)c + 5);
        cnn_dataset_free(ds);
    }
    buf_free(&im);
    buf_free(&lb);
    buf_free(&imz);
    buf_free(&lbz);
    free_set(&s);
    cnn_ctx_free(ctx);
}

static void test_gz_multi_member_and_levels(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(11, 13, 3, 3, 2);
    buf im = set_images(&s), lb = set_labels(&s);
    /* Two gzip members, split inside the header, as `cat a.gz b.gz` makes. */
    buf a = gzip_bytes(im.p, 9, 1), b = gzip_bytes(im.p + 9, im.len - 9, 0);
    buf cat;
    cat.len = a.len + b.len;
    cat.p = malloc(cat.len);
    assert_non_null(cat.p);
    memcpy(cat.p, a.p, a.len);
    memcpy(cat.p + a.len, b.p, b.len);
    write_buf(tpath("multi.gz"), cat);
    write_buf(tpath("lb"), lb);
    cnn_dataset *ds = NULL;
    if (cnn_dataset_load_idx(ctx, tpath("multi.gz"), tpath("lb"), &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_dataset_exact(ds, &s, 3);
    cnn_dataset_free(ds);
    buf_free(&a);
    buf_free(&b);
    buf_free(&cat);
    buf_free(&im);
    buf_free(&lb);
    free_set(&s);
    cnn_ctx_free(ctx);
}

static void test_large_gz_grows(void **state) {
    (void)state;
    /* More than the reader's first 1 MiB buffer, so the growing path is exercised. */
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(1500, 29, 31, 10, 3);
    buf im = set_images(&s), lb = set_labels(&s);
    buf imz = gzip_bytes(im.p, im.len, 1);
    write_buf(tpath("big.gz"), imz);
    write_buf(tpath("lb"), lb);
    cnn_dataset *ds = NULL;
    if (cnn_dataset_load_idx(ctx, tpath("big.gz"), tpath("lb"), &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_dataset_exact(ds, &s, 4);
    cnn_dataset_free(ds);
    buf_free(&im);
    buf_free(&lb);
    buf_free(&imz);
    free_set(&s);
    cnn_ctx_free(ctx);
}

static void test_classes_at_least_two(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(4, 2, 2, 1, 4); /* every label 0 */
    buf im = set_images(&s), lb = set_labels(&s);
    write_buf(tpath("im"), im);
    write_buf(tpath("lb"), lb);
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_load_idx(ctx, tpath("im"), tpath("lb"), &ds), CNN_OK);
    assert_int_equal(cnn_dataset_classes(ds), 2);
    cnn_dataset_free(ds);
    buf_free(&im);
    buf_free(&lb);
    free_set(&s);
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- normalisation, gather, memory */

static void test_normalization(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(9, 6, 5, 4, 5);
    buf im = set_images(&s), lb = set_labels(&s);
    write_buf(tpath("im"), im);
    write_buf(tpath("lb"), lb);
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_load_idx(ctx, tpath("im"), tpath("lb"), &ds), CNN_OK);
    const float mean = 0.2860f, sd = 0.3530f;
    assert_int_equal(cnn_dataset_set_normalization(ds, &mean, &sd, 1), CNN_OK);
    size_t idx[3] = {8, 0, 4};
    float x[3 * 30];
    assert_int_equal(cnn_dataset_gather(ds, idx, 3, x, NULL), CNN_OK);
    double worst = 0;
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 30; j++) {
            double want = ((double)s.pix[idx[i] * 30 + j] / 255.0 - (double)mean) / (double)sd;
            double e = fabs((double)x[i * 30 + j] - want) / fmax(fabs(want), 1.0);
            if (e > worst) worst = e;
        }
    /* float32 arithmetic on values of magnitude <= 3: a few ulp. */
    if (worst > 1e-6) fail_msg("normalised batch differs from the float64 reference by %g", worst);

    /* Bad arguments leave the normalisation as it was. */
    const float zero = 0.0f, neg = -1.0f, nan_v = NAN, inf_v = INFINITY, two[2] = {0.5f, 0.5f};
    assert_int_equal(cnn_dataset_set_normalization(ds, &mean, &zero, 1), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "std"));
    assert_int_equal(cnn_dataset_set_normalization(ds, &mean, &neg, 1), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_set_normalization(ds, &mean, &nan_v, 1), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_set_normalization(ds, &inf_v, &sd, 1), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_set_normalization(ds, two, two, 2), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "channels"));
    assert_int_equal(cnn_dataset_set_normalization(ds, &mean, NULL, 1), CNN_ERR_INVALID_ARG);
    float y[3 * 30];
    assert_int_equal(cnn_dataset_gather(ds, idx, 3, y, NULL), CNN_OK);
    assert_memory_equal(x, y, sizeof x);

    /* Clearing it gives pixel / 255 again. */
    assert_int_equal(cnn_dataset_set_normalization(ds, NULL, NULL, 0), CNN_OK);
    assert_int_equal(cnn_dataset_gather(ds, idx, 3, y, NULL), CNN_OK);
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 30; j++) assert_true(y[i * 30 + j] == (float)s.pix[idx[i] * 30 + j] / 255.0f);
    cnn_dataset_free(ds);
    buf_free(&im);
    buf_free(&lb);
    free_set(&s);
    cnn_ctx_free(ctx);
}

static void test_from_memory(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    enum { N = 5, C = 3, H = 2, W = 3, K = C * H * W };
    float x[N * K];
    int32_t lab[N] = {0, 3, 1, 2, 3};
    uint64_t r = 99;
    for (size_t i = 0; i < N * K; i++) x[i] = (float)((double)(rnd(&r) >> 11) * 0x1p-53 * 4.0 - 2.0);
    cnn_shape sh = {C, H, W};
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, sh, 4, &ds), CNN_OK);
    assert_int_equal(cnn_dataset_size(ds), N);
    assert_int_equal(cnn_dataset_classes(ds), 4);
    assert_int_equal(cnn_dataset_shape(ds).c, C);
    size_t idx[4] = {4, 4, 0, 2};
    float y[4 * K];
    int32_t yl[4];
    assert_int_equal(cnn_dataset_gather(ds, idx, 4, y, yl), CNN_OK);
    for (size_t i = 0; i < 4; i++) {
        assert_memory_equal(y + i * K, x + idx[i] * K, K * sizeof(float));
        assert_int_equal(yl[i], lab[idx[i]]);
    }
    /* The data was copied: changing the caller's array changes nothing. */
    x[4 * K] += 1.0f;
    assert_int_equal(cnn_dataset_gather(ds, idx, 1, y, NULL), CNN_OK);
    assert_true(y[0] != x[4 * K]);
    x[4 * K] -= 1.0f;

    /* Per-channel normalisation. */
    const float mean[C] = {0.5f, -0.25f, 1.0f}, sd[C] = {2.0f, 0.5f, 0.125f};
    assert_int_equal(cnn_dataset_set_normalization(ds, mean, sd, C), CNN_OK);
    assert_int_equal(cnn_dataset_gather(ds, idx, 4, y, NULL), CNN_OK);
    for (size_t i = 0; i < 4; i++)
        for (size_t c = 0; c < C; c++)
            for (size_t j = 0; j < H * W; j++) {
                double want = ((double)x[idx[i] * K + c * H * W + j] - mean[c]) / sd[c];
                double got = y[i * K + c * H * W + j];
                if (fabs(got - want) > 1e-6 * fmax(fabs(want), 1.0))
                    fail_msg("sample %zu channel %zu element %zu: got %.9g want %.9g", i, c, j, got, want);
            }
    /* One value for all channels. */
    assert_int_equal(cnn_dataset_set_normalization(ds, mean, sd, 1), CNN_OK);
    assert_int_equal(cnn_dataset_gather(ds, idx, 1, y, NULL), CNN_OK);
    for (size_t j = 0; j < K; j++) assert_true(fabs(y[j] - (x[4 * K + j] - 0.5) / 2.0) <= 1e-6);
    cnn_dataset_free(ds);

    /* classes = 0: inferred as max label + 1. */
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, sh, 0, &ds), CNN_OK);
    assert_int_equal(cnn_dataset_classes(ds), 4);
    cnn_dataset_free(ds);

    /* Bad arguments. */
    ds = (cnn_dataset *)1;
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, sh, 3, &ds), CNN_ERR_INVALID_ARG);
    assert_null(ds);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "label 1"));
    int32_t neg[N] = {0, 1, -1, 0, 0};
    assert_int_equal(cnn_dataset_from_memory(ctx, x, neg, N, sh, 3, &ds), CNN_ERR_INVALID_ARG);
    cnn_shape empty = {0, 2, 2};
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, empty, 4, &ds), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_from_memory(ctx, NULL, lab, N, sh, 4, &ds), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, 0, sh, 4, &ds), CNN_ERR_INVALID_ARG);
    cnn_shape huge = {SIZE_MAX / 2, 4, 1};
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, huge, 4, &ds), CNN_ERR_INVALID_ARG);
    assert_null(ds);
    cnn_ctx_free(ctx);
}

static void test_gather_errors(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    float x[8] = {0};
    int32_t lab[2] = {0, 1};
    cnn_shape sh = {1, 2, 2};
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, 2, sh, 2, &ds), CNN_OK);
    size_t bad[2] = {1, 2};
    float y[8];
    int32_t yl[2] = {-7, -7};
    assert_int_equal(cnn_dataset_gather(ds, bad, 2, y, yl), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "out of range"));
    assert_int_equal(yl[0], -7); /* nothing written */
    assert_int_equal(cnn_dataset_gather(ds, NULL, 1, y, yl), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_gather(ds, bad, 0, y, yl), CNN_OK);
    /* Labels only. */
    assert_int_equal(cnn_dataset_gather(ds, bad, 1, NULL, yl), CNN_OK);
    assert_int_equal(yl[0], 1);
    cnn_dataset_free(ds);
    cnn_dataset_free(NULL);
    assert_int_equal(cnn_dataset_size(NULL), 0);
    assert_int_equal(cnn_dataset_classes(NULL), 0);
    cnn_ctx_free(ctx);
}

static void test_shuffle(void **state) {
    (void)state;
    enum { N = 1000 };
    size_t a[N], b[N], c[N];
    unsigned char hit[N];
    cnn_shuffle_indices(a, N, 42);
    cnn_shuffle_indices(b, N, 42);
    cnn_shuffle_indices(c, N, 43);
    assert_memory_equal(a, b, sizeof a);
    memset(hit, 0, sizeof hit);
    size_t fixed = 0, same = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(a[i] < N);
        assert_false(hit[a[i]]);
        hit[a[i]] = 1;
        fixed += a[i] == i;
        same += a[i] == c[i];
    }
    /* A random permutation has ~1 fixed point; 1000 seeds' orders agree in ~1 place. */
    assert_true(fixed < 10);
    assert_true(same < 10);
    /* Every position gets every value over many seeds (no position stuck). */
    size_t first_counts[5] = {0};
    for (uint64_t seed = 0; seed < 5000; seed++) {
        size_t p[5];
        cnn_shuffle_indices(p, 5, seed);
        first_counts[p[0]]++;
    }
    for (size_t v = 0; v < 5; v++) assert_true(first_counts[v] > 850 && first_counts[v] < 1150);
    size_t one[1] = {7};
    cnn_shuffle_indices(one, 1, 3);
    assert_int_equal(one[0], 0);
    cnn_shuffle_indices(one, 0, 3);
    cnn_shuffle_indices(NULL, 5, 3);
}

/* ---------------------------------------------------------------- bad files */

typedef struct bad_case {
    const char *name;       /* file name */
    buf images;             /* .p == NULL: use the good images */
    buf labels;             /* .p == NULL: use the good labels */
    cnn_status want;
    char needle[256];       /* must be in the message */
    int bad_is_labels;      /* the message names the labels file */
} bad_case;

static buf copy_buf(buf b) {
    buf c = {malloc(b.len + 16), b.len};
    assert_non_null(c.p);
    if (b.len) memcpy(c.p, b.p, b.len);
    return c;
}

static void expect_load_fail(cnn_ctx *ctx, const char *im_path, const char *lb_path, cnn_status want,
                             const char *needle, const char *named, const char *what) {
    cnn_dataset *ds = (cnn_dataset *)&ds;
    cnn_status st = cnn_dataset_load_idx(ctx, im_path, lb_path, &ds);
    const char *msg = cnn_ctx_last_error(ctx);
    if (getenv("CNN_TEST_VERBOSE")) print_message("%-20s %s\n", what, msg);
    if (st != want) fail_msg("%s: status %d (%s), want %d; message: %s", what, st, cnn_status_string(st), want, msg);
    if (ds) fail_msg("%s: *out not NULL after failure", what);
    if (!strstr(msg, named)) fail_msg("%s: message does not name %s: %s", what, named, msg);
    if (needle && !strstr(msg, needle)) fail_msg("%s: message lacks \"%s\": %s", what, needle, msg);
}

static void test_bad_files(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(37, 5, 7, 10, 6);
    buf im = set_images(&s), lb = set_labels(&s);
    const size_t data = 37 * 5 * 7; /* 1295 */
    char msg[256];
    bad_case cases[40];
    size_t nc = 0;
#define CASE(nm, imb, lbb, st, nd, isl)                                                                   \
    do {                                                                                                   \
        bad_case *c_ = &cases[nc++];                                                                       \
        c_->name = nm;                                                                                     \
        c_->images = imb;                                                                                  \
        c_->labels = lbb;                                                                                  \
        c_->want = st;                                                                                     \
        snprintf(c_->needle, sizeof c_->needle, "%s", nd);                                                 \
        c_->bad_is_labels = isl;                                                                           \
    } while (0)
    buf none = {NULL, 0};

    buf t = copy_buf(im);
    t.len--;
    snprintf(msg, sizeof msg, "expected %zu bytes of data after the 16-byte header, found %zu", data, data - 1);
    CASE("truncated", t, none, CNN_ERR_FORMAT, msg, 0);

    t = copy_buf(im);
    t.p = realloc(t.p, t.len + 1);
    t.p[t.len++] = 0x55;
    snprintf(msg, sizeof msg, "expected %zu bytes of data after the 16-byte header, found %zu", data, data + 1);
    CASE("extra", t, none, CNN_ERR_FORMAT, msg, 0);

    t = copy_buf(im);
    put_be32(t.p + 4, 38); /* count larger than the data */
    snprintf(msg, sizeof msg, "expected %zu bytes of data after the 16-byte header, found %zu", data + 35, data);
    CASE("lying", t, none, CNN_ERR_FORMAT, msg, 0);

    {
        uint32_t d[3] = {100000000, 4096, 4096}; /* 1.7e15 bytes claimed, 10 present */
        unsigned char ten[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        CASE("huge_claim", make_idx(0x803, d, 3, ten, 10), none, CNN_ERR_FORMAT, "found 10", 0);
    }
    {
        uint32_t d[3] = {37, 0, 7};
        CASE("zero_dim", make_idx(0x803, d, 3, s.pix, data), none, CNN_ERR_FORMAT, "dimension 1 of the IDX header is 0", 0);
        uint32_t d0[3] = {0, 5, 7};
        CASE("zero_count", make_idx(0x803, d0, 3, NULL, 0), none, CNN_ERR_FORMAT, "is 0", 0);
        uint32_t dh[3] = {37, 4097, 7};
        CASE("huge_dim", make_idx(0x803, dh, 3, s.pix, data), none, CNN_ERR_FORMAT, "limit of 4096", 0);
        uint32_t dw[3] = {1, 7, 0xFFFFFFFFu};
        CASE("huge_dim2", make_idx(0x803, dw, 3, s.pix, data), none, CNN_ERR_FORMAT, "limit of 4096", 0);
        uint32_t dn[3] = {0xFFFFFFFFu, 5, 7};
        CASE("huge_count", make_idx(0x803, dn, 3, s.pix, data), none, CNN_ERR_FORMAT, "limit of 100000000", 0);
    }
    t = copy_buf(im);
    put_be32(t.p, 0x12345678);
    CASE("magic", t, none, CNN_ERR_FORMAT, "bad magic number 0x12345678", 0);
    t = copy_buf(im);
    put_be32(t.p, 0x00000804);
    CASE("magic_dims", t, none, CNN_ERR_FORMAT, "4 dimensions", 0);
    t = copy_buf(im);
    put_be32(t.p, 0x00000D03);
    CASE("magic_float", t, none, CNN_ERR_UNSUPPORTED, "32-bit float", 0);
    /* Images given as labels and labels as images. */
    CASE("labels_as_images", copy_buf(lb), none, CNN_ERR_FORMAT, "has 1 dimension,", 0);
    CASE("images_as_labels", none, copy_buf(im), CNN_ERR_FORMAT, "has 3 dimensions,", 1);
    {
        uint32_t d[1] = {36};
        CASE("count_mismatch", none, make_idx(0x801, d, 1, s.lab, 36), CNN_ERR_FORMAT, "36 labels", 1);
    }
    t = copy_buf(lb);
    t.len--;
    CASE("labels_truncated", none, t, CNN_ERR_FORMAT, "expected 37 bytes of data after the 8-byte header, found 36", 1);
    buf empty = {malloc(1), 0};
    CASE("empty", empty, none, CNN_ERR_FORMAT, "empty", 0);
    t = copy_buf(im);
    t.len = 10;
    CASE("short_header", t, none, CNN_ERR_FORMAT, "header truncated", 0);
    t = copy_buf(im);
    t.len = 3;
    CASE("three_bytes", t, none, CNN_ERR_FORMAT, "too short", 0);

    /* gzip cases */
    buf z = gzip_bytes(im.p, im.len, 6);
    t = copy_buf(z);
    t.len--;
    CASE("gz_truncated", t, none, CNN_ERR_FORMAT, "truncated", 0);
    t = copy_buf(z);
    t.len = z.len / 2;
    CASE("gz_truncated_half", t, none, CNN_ERR_FORMAT, "truncated", 0);
    t = copy_buf(z);
    t.len = 2;
    CASE("gz_magic_only", t, none, CNN_ERR_FORMAT, "truncated", 0);
    t = copy_buf(z);
    t.p[z.len - 6] ^= 0x40; /* CRC32 trailer */
    CASE("gz_bad_crc", t, none, CNN_ERR_FORMAT, "corrupt gzip", 0);
    t = copy_buf(z);
    t.p[10] = 0x07; /* first deflate block: BFINAL=1, BTYPE=11 (reserved) */
    CASE("gz_bad_block", t, none, CNN_ERR_FORMAT, "corrupt gzip", 0);
    t = copy_buf(z);
    t.p = realloc(t.p, t.len + 3);
    memcpy(t.p + t.len, "xyz", 3);
    t.len += 3;
    CASE("gz_trailing_garbage", t, none, CNN_ERR_FORMAT, "trailing garbage", 0);
    {
        buf longer = copy_buf(im);
        longer.p = realloc(longer.p, longer.len + 5);
        memset(longer.p + longer.len, 9, 5);
        longer.len += 5;
        snprintf(msg, sizeof msg, "expected %zu bytes of data after the 16-byte header, found %zu", data, data + 5);
        CASE("gz_extra", gzip_bytes(longer.p, longer.len, 6), none, CNN_ERR_FORMAT, msg, 0);
        buf_free(&longer);
        buf shorter = copy_buf(im);
        shorter.len -= 100;
        snprintf(msg, sizeof msg, "expected %zu bytes of data after the 16-byte header, found %zu", data, data - 100);
        CASE("gz_short", gzip_bytes(shorter.p, shorter.len, 6), none, CNN_ERR_FORMAT, msg, 0);
        buf_free(&shorter);
        CASE("gz_empty", gzip_bytes(im.p, 0, 6), none, CNN_ERR_FORMAT, "too short", 0);
        buf lz = gzip_bytes(lb.p, lb.len - 1, 9);
        CASE("gz_labels_short", none, lz, CNN_ERR_FORMAT, "found 36", 1);
    }
    buf_free(&z);

    assert_true(nc <= sizeof cases / sizeof cases[0]);
    char good_im[4400], good_lb[4400];
    snprintf(good_im, sizeof good_im, "%s", tpath("good_im"));
    snprintf(good_lb, sizeof good_lb, "%s", tpath("good_lb"));
    write_buf(good_im, im);
    write_buf(good_lb, lb);
    for (size_t i = 0; i < nc; i++) {
        bad_case *c = &cases[i];
        char ip[4400], lp[4400];
        snprintf(ip, sizeof ip, "%s", good_im);
        snprintf(lp, sizeof lp, "%s", good_lb);
        char *bad = c->bad_is_labels ? lp : ip;
        snprintf(bad, 4400, "%s", tpath(c->name));
        write_buf(bad, c->bad_is_labels ? c->labels : c->images);
        expect_load_fail(ctx, ip, lp, c->want, c->needle, c->name, c->name);
        buf_free(&c->images);
        buf_free(&c->labels);
    }
#undef CASE

    /* Missing file, a directory in place of a file. */
    expect_load_fail(ctx, tpath("no_such_file"), good_lb, CNN_ERR_IO, "No such file", "no_such_file", "missing");
    expect_load_fail(ctx, good_im, tpath("no_such_labels"), CNN_ERR_IO, NULL, "no_such_labels", "missing labels");
    assert_int_equal(mkdir(tpath("adir"), 0755), 0);
    expect_load_fail(ctx, tpath("adir"), good_lb, CNN_ERR_IO, "directory", "adir", "directory");
    expect_load_fail(ctx, good_im, tpath("adir"), CNN_ERR_IO, "directory", "adir", "directory as labels");
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_load_idx(ctx, NULL, good_lb, &ds), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_dataset_load_idx(ctx, good_im, NULL, &ds), CNN_ERR_INVALID_ARG);
    /* The good pair still loads after all that. */
    assert_int_equal(cnn_dataset_load_idx(ctx, good_im, good_lb, &ds), CNN_OK);
    cnn_dataset_free(ds);
    buf_free(&im);
    buf_free(&lb);
    free_set(&s);
    cnn_ctx_free(ctx);
}

/* Random single-byte corruptions of a gzip file: never a crash, never a wrong success. A flipped bit in the
 * deflate data is caught by inflate or the CRC; in the gzip header's flag/time/OS bytes it may be harmless,
 * in which case the data must still be right. */
static void test_gz_fuzz(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set s = make_set(8, 9, 7, 3, 7);
    buf im = set_images(&s), lb = set_labels(&s);
    buf z = gzip_bytes(im.p, im.len, 6);
    write_buf(tpath("lb"), lb);
    uint64_t r = 12345;
    int iters = getenv("CNN_FUZZ_ITERS") ? atoi(getenv("CNN_FUZZ_ITERS")) : 300;
    for (int it = 0; it < iters; it++) {
        buf t = copy_buf(z);
        size_t pos = (size_t)(rnd(&r) % t.len);
        t.p[pos] ^= (unsigned char)(1u << (rnd(&r) % 8));
        if (it % 7 == 0) t.len = (size_t)(rnd(&r) % t.len);
        write_buf(tpath("fz.gz"), t);
        cnn_dataset *ds = NULL;
        cnn_status st = cnn_dataset_load_idx(ctx, tpath("fz.gz"), tpath("lb"), &ds);
        if (st == CNN_OK) {
            check_dataset_exact(ds, &s, 1);
            cnn_dataset_free(ds);
        } else {
            assert_null(ds);
            assert_non_null(strstr(cnn_ctx_last_error(ctx), "fz.gz"));
        }
        buf_free(&t);
    }
    buf_free(&z);
    buf_free(&im);
    buf_free(&lb);
    free_set(&s);
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- folders */

static void test_load_dir(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx();
    sample_set tr = make_set(12, 4, 3, 5, 8), te = make_set(6, 4, 3, 4, 9);
    char sub[4400];
    snprintf(sub, sizeof sub, "%s", tpath("ds"));
    assert_int_equal(mkdir(sub, 0755), 0);
    char p[4600];
    buf b = set_images(&tr), bz = gzip_bytes(b.p, b.len, 6);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", sub);
    write_buf(p, bz);
    buf_free(&b);
    buf_free(&bz);
    b = set_labels(&tr);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", sub);
    write_buf(p, b);
    buf_free(&b);

    cnn_dataset *ds = NULL;
    if (cnn_dataset_load_dir(ctx, sub, "train", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_dataset_exact(ds, &tr, 2);
    cnn_dataset_free(ds);

    /* No test split yet: the message lists what was looked for. */
    ds = (cnn_dataset *)&ds;
    assert_int_equal(cnn_dataset_load_dir(ctx, sub, "test", &ds), CNN_ERR_IO);
    assert_null(ds);
    const char *m = cnn_ctx_last_error(ctx);
    assert_non_null(strstr(m, sub));
    assert_non_null(strstr(m, "t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz, test-images-idx3-ubyte, "
                              "test-images-idx3-ubyte.gz"));

    /* test-* names are accepted; the trailing slash on the folder too. */
    b = set_images(&te);
    snprintf(p, sizeof p, "%s/test-images-idx3-ubyte", sub);
    write_buf(p, b);
    buf_free(&b);
    assert_int_equal(cnn_dataset_load_dir(ctx, sub, "test", &ds), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "test labels"));
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "test-labels-idx1-ubyte.gz"));
    b = set_labels(&te);
    bz = gzip_bytes(b.p, b.len, 6);
    snprintf(p, sizeof p, "%s/test-labels-idx1-ubyte.gz", sub);
    write_buf(p, bz);
    buf_free(&b);
    buf_free(&bz);
    char slash[4500];
    snprintf(slash, sizeof slash, "%s/", sub);
    if (cnn_dataset_load_dir(ctx, slash, "test", &ds) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    check_dataset_exact(ds, &te, 3);
    cnn_dataset_free(ds);

    assert_int_equal(cnn_dataset_load_dir(ctx, sub, "valid", &ds), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "valid"));
    assert_int_equal(cnn_dataset_load_dir(ctx, tpath("nope"), "train", &ds), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "nope"));
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", sub);
    assert_int_equal(cnn_dataset_load_dir(ctx, p, "train", &ds), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "not a directory"));
    free_set(&tr);
    free_set(&te);
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- the shipped sample */

static void test_fmnist_sample(void **state) {
    (void)state;
    const char *src = getenv("CNN_SOURCE_DIR");
    if (!src || !*src) src = ".";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/data/fmnist-sample", src);
    cnn_ctx *ctx = new_ctx();
    cnn_dataset *tr = NULL, *te = NULL;
    if (cnn_dataset_load_dir(ctx, dir, "train", &tr) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    if (cnn_dataset_load_dir(ctx, dir, "test", &te) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    assert_int_equal(cnn_dataset_size(tr), 2000);
    assert_int_equal(cnn_dataset_size(te), 500);
    cnn_shape sh = cnn_dataset_shape(tr);
    assert_int_equal(sh.c, 1);
    assert_int_equal(sh.h, 28);
    assert_int_equal(sh.w, 28);
    assert_int_equal(cnn_dataset_classes(tr), 10);
    assert_int_equal(cnn_dataset_classes(te), 10);

    /* The first labels of the real files (Fashion-MNIST train: ankle boot, T-shirt, T-shirt, dress, ...). */
    static const int32_t train_first[12] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9};
    static const int32_t test_first[12] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5};
    size_t idx[12];
    int32_t lab[12];
    for (size_t i = 0; i < 12; i++) idx[i] = i;
    assert_int_equal(cnn_dataset_gather(tr, idx, 12, NULL, lab), CNN_OK);
    assert_memory_equal(lab, train_first, sizeof lab);
    assert_int_equal(cnn_dataset_gather(te, idx, 12, NULL, lab), CNN_OK);
    assert_memory_equal(lab, test_first, sizeof lab);
    /* Every class occurs, pixels span [0, 1]. */
    size_t all[2000], hist[10] = {0};
    for (size_t i = 0; i < 2000; i++) all[i] = i;
    int32_t *labs = malloc(2000 * sizeof *labs);
    float *x = malloc(2000 * 784 * sizeof *x);
    assert_non_null(labs);
    assert_non_null(x);
    assert_int_equal(cnn_dataset_gather(tr, all, 2000, x, labs), CNN_OK);
    float lo = 1, hi = 0;
    for (size_t i = 0; i < 2000; i++) hist[labs[i]]++;
    for (size_t i = 0; i < 2000 * 784; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    for (size_t k = 0; k < 10; k++) assert_true(hist[k] > 100);
    assert_true(lo == 0.0f && hi == 1.0f);

    /* Against the full files where the Debian package is installed: the sample is their prefix. */
    const char *full = "/usr/share/datasets/fashion-mnist";
    struct stat sb;
    if (stat(full, &sb) == 0) {
        cnn_dataset *fte = NULL;
        if (cnn_dataset_load_dir(ctx, full, "test", &fte) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
        assert_int_equal(cnn_dataset_size(fte), 10000);
        float *y = malloc(500 * 784 * sizeof *y);
        int32_t *yl = malloc(500 * sizeof *yl);
        assert_non_null(y);
        assert_non_null(yl);
        assert_int_equal(cnn_dataset_gather(te, all, 500, x, labs), CNN_OK);
        assert_int_equal(cnn_dataset_gather(fte, all, 500, y, yl), CNN_OK);
        assert_memory_equal(x, y, 500 * 784 * sizeof *x);
        assert_memory_equal(labs, yl, 500 * sizeof *yl);
        free(y);
        free(yl);
        cnn_dataset_free(fte);
    }
    free(x);
    free(labs);
    cnn_dataset_free(tr);
    cnn_dataset_free(te);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_raw_and_gz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gz_multi_member_and_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_gz_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classes_at_least_two, setup, teardown),
        cmocka_unit_test_setup_teardown(test_normalization, setup, teardown),
        cmocka_unit_test(test_from_memory),
        cmocka_unit_test(test_gather_errors),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gz_fuzz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_dir, setup, teardown),
        cmocka_unit_test(test_fmnist_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
