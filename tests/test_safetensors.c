/* test_safetensors.c — saving and loading weights (safetensors): round trip bit-identical, the header's
 * fields checked independently with jansson, dtype conversions, and every malformed file rejected with a
 * clear message while the net's weights stay unchanged; saving into an unwritable place fails cleanly and
 * leaves no temporary file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn.h"

static const char *MODEL = "input c=3 h=7 w=5\n"
                           "conv2d name=c1 k=4 kh=3 kw=3 pad=1\n"
                           "batchnorm name=bn1\n"
                           "relu\n"
                           "flatten\n"
                           "dense name=fc out=6\n"
                           "relu\n"
                           "dense name=out out=3\n";

/* ---------------------------------------------------------------- helpers */

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
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            chmod(p, 0755);
            remove_tree(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("CNN_BINARY_DIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_safetensors.XXXXXX", base);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(g_dir);
    return 0;
}

static void tpath(char *out, const char *name) { snprintf(out, 4400, "%s/%s", g_dir, name); }

/* Count the entries of a folder whose name contains `needle`. */
static size_t count_entries(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static double uni(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1p-53; }

typedef struct tnet {
    cnn_ctx *ctx;
    cnn_net *net;
} tnet;

/* Parse MODEL, compile, fill every tensor (buffers too) with seeded random values. */
static tnet make_net(uint64_t seed) {
    tnet t;
    assert_int_equal(cnn_ctx_create(&t.ctx, NULL), CNN_OK);
    if (cnn_net_parse(t.ctx, MODEL, strlen(MODEL), "test.cnn", &t.net) != CNN_OK)
        fail_msg("parse: %s", cnn_ctx_last_error(t.ctx));
    if (cnn_net_compile(t.net, 2, 0) != CNN_OK) fail_msg("compile: %s", cnn_ctx_last_error(t.ctx));
    uint64_t r = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < cnn_net_num_params(t.net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(t.net, i, &p), CNN_OK);
        int positive = strstr(p.name, "running_var") != NULL;
        for (size_t k = 0; k < p.count; k++)
            p.data[k] = (float)(positive ? 0.5 + uni(&r) : 2.0 * uni(&r) - 1.0);
    }
    return t;
}

static void free_net(tnet *t) {
    cnn_net_free(t->net);
    cnn_ctx_free(t->ctx);
}

/* All tensors of the net, concatenated. */
static float *snapshot(const tnet *t, size_t *total) {
    size_t n = 0;
    for (size_t i = 0; i < cnn_net_num_params(t->net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(t->net, i, &p), CNN_OK);
        n += p.count;
    }
    float *s = malloc((n ? n : 1) * sizeof *s);
    assert_non_null(s);
    size_t o = 0;
    for (size_t i = 0; i < cnn_net_num_params(t->net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(t->net, i, &p), CNN_OK);
        memcpy(s + o, p.data, p.count * sizeof *s);
        o += p.count;
    }
    *total = n;
    return s;
}

static void expect_snapshot(const tnet *t, const float *snap, size_t total, const char *what) {
    size_t n;
    float *now = snapshot(t, &n);
    assert_int_equal(n, total);
    if (memcmp(now, snap, n * sizeof *now) != 0) fail_msg("%s: the net's weights changed", what);
    free(now);
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint64_t get_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--) v = v << 8 | p[b];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int b = 0; b < 8; b++) p[b] = (unsigned char)(v >> (8 * b));
}

static float le_float(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A parsed weights file: its header as JSON and its data area. */
typedef struct stfile {
    json_t *hdr;
    unsigned char *data;
    size_t data_len;
} stfile;

static stfile parse_file(const char *path) {
    size_t len;
    unsigned char *b = read_all(path, &len);
    assert_true(len >= 8);
    uint64_t n = get_le64(b);
    assert_true(n <= len - 8);
    json_error_t err;
    stfile s;
    s.hdr = json_loadb((const char *)b + 8, (size_t)n, 0, &err);
    if (!s.hdr) fail_msg("%s: header does not parse: %s", path, err.text);
    s.data_len = len - 8 - (size_t)n;
    s.data = malloc(s.data_len + 1);
    assert_non_null(s.data);
    memcpy(s.data, b + 8 + n, s.data_len);
    free(b);
    return s;
}

static void free_file(stfile *s) {
    json_decref(s->hdr);
    free(s->data);
}

/* Write header (compact JSON, padded with `pad` spaces) + data. */
static void write_file_parts(const char *path, json_t *hdr, const unsigned char *data, size_t data_len, size_t pad) {
    char *j = json_dumps(hdr, JSON_COMPACT);
    assert_non_null(j);
    size_t hl = strlen(j) + pad;
    unsigned char *b = malloc(8 + hl + data_len + 1);
    assert_non_null(b);
    put_le64(b, hl);
    memcpy(b + 8, j, strlen(j));
    memset(b + 8 + strlen(j), ' ', pad);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    write_all(path, b, 8 + hl + data_len);
    free(b);
    free(j);
}

static void set_offsets(json_t *e, uint64_t b, uint64_t en) {
    json_t *o = json_array();
    json_array_append_new(o, json_integer((json_int_t)b));
    json_array_append_new(o, json_integer((json_int_t)en));
    json_object_set_new(e, "data_offsets", o);
}

static uint64_t off_at(json_t *hdr, const char *name, int which) {
    json_t *e = json_object_get(hdr, name);
    assert_non_null(e);
    return (uint64_t)json_integer_value(json_array_get(json_object_get(e, "data_offsets"), (size_t)which));
}

/* ---------------------------------------------------------------- round trip and header */

static void test_roundtrip(void **state) {
    (void)state;
    tnet a = make_net(1), b = make_net(2);
    char pa[4400], pb[4400];
    tpath(pa, "a.safetensors");
    tpath(pb, "b.safetensors");
    if (cnn_net_save_weights(a.net, pa) != CNN_OK) fail_msg("save: %s", cnn_ctx_last_error(a.ctx));
    size_t na, nb;
    float *sa = snapshot(&a, &na), *sb = snapshot(&b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(sa, sb, na * sizeof *sa) != 0); /* different before the load */
    if (cnn_net_load_weights(b.net, pa) != CNN_OK) fail_msg("load: %s", cnn_ctx_last_error(b.ctx));
    expect_snapshot(&b, sa, na, "round trip"); /* bit-identical, buffers included */

    /* Same outputs on the same input. */
    cnn_shape in = cnn_net_input_shape(a.net);
    size_t cnt = in.c * in.h * in.w;
    float *x = malloc(2 * cnt * sizeof *x);
    assert_non_null(x);
    uint64_t r = 5;
    for (size_t i = 0; i < 2 * cnt; i++) x[i] = (float)(2.0 * uni(&r) - 1.0);
    assert_int_equal(cnn_net_forward(a.net, x, 2, 0), CNN_OK);
    size_t n1, n2;
    const float *ya = cnn_net_output(a.net, &n1);
    float ycopy[6];
    assert_int_equal(n1, 2);
    memcpy(ycopy, ya, sizeof ycopy);
    assert_int_equal(cnn_net_forward(b.net, x, 2, 0), CNN_OK);
    const float *yb = cnn_net_output(b.net, &n2);
    assert_memory_equal(ycopy, yb, sizeof ycopy);
    free(x);

    /* Saving the loaded net gives the same bytes; the old file is replaced atomically. */
    assert_int_equal(cnn_net_save_weights(b.net, pb), CNN_OK);
    size_t la, lb;
    unsigned char *fa = read_all(pa, &la), *fb = read_all(pb, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(fa, fb, la);
    free(fb);
    struct stat s1, s2;
    assert_int_equal(stat(pa, &s1), 0);
    assert_int_equal(cnn_net_save_weights(b.net, pa), CNN_OK);
    assert_int_equal(stat(pa, &s2), 0);
    assert_true(s1.st_ino != s2.st_ino); /* renamed into place, not rewritten */
    fb = read_all(pa, &lb);
    assert_memory_equal(fa, fb, la);
    free(fa);
    free(fb);
    assert_int_equal(count_entries(g_dir, ".tmp"), 0);
    free(sa);
    free(sb);
    free_net(&a);
    free_net(&b);
}

static void test_header_fields(void **state) {
    (void)state;
    tnet a = make_net(3);
    char p[4400];
    tpath(p, "h.safetensors");
    assert_int_equal(cnn_net_save_weights(a.net, p), CNN_OK);
    size_t len;
    unsigned char *b = read_all(p, &len);
    uint64_t n = get_le64(b);
    assert_true(n >= 2 && n <= len - 8);
    assert_int_equal((8 + n) % 8, 0); /* data aligned to 8 bytes */
    assert_int_equal(b[8], '{');
    /* Padding after the JSON is spaces only. */
    json_error_t err;
    json_t *h = json_loadb((const char *)b + 8, (size_t)n, JSON_DISABLE_EOF_CHECK, &err);
    if (!h) fail_msg("header: %s", err.text);
    for (size_t i = err.position; i < n; i++) assert_int_equal(b[8 + i], ' ');
    assert_true(n - (uint64_t)err.position < 8);
    assert_true(json_is_object(h));

    json_t *meta = json_object_get(h, "__metadata__");
    assert_true(json_is_object(meta));
    assert_string_equal(json_string_value(json_object_get(meta, "format")), "pt");
    char *text = NULL;
    assert_int_equal(cnn_net_to_text(a.net, &text), CNN_OK);
    assert_string_equal(json_string_value(json_object_get(meta, "cnn.model")), text);
    cnn_free(a.ctx, text);

    size_t np = cnn_net_num_params(a.net);
    assert_int_equal(json_object_size(h), np + 1);
    assert_true(np == 10);
    const unsigned char *data = b + 8 + n;
    size_t data_len = len - 8 - (size_t)n;
    uint64_t *ranges = calloc(np * 2, sizeof *ranges);
    assert_non_null(ranges);
    for (size_t i = 0; i < np; i++) {
        cnn_param q;
        assert_int_equal(cnn_net_param_at(a.net, i, &q), CNN_OK);
        json_t *e = json_object_get(h, q.name);
        if (!e) fail_msg("tensor %s not in the header", q.name);
        assert_int_equal(json_object_size(e), 3);
        assert_string_equal(json_string_value(json_object_get(e, "dtype")), "F32");
        json_t *shape = json_object_get(e, "shape");
        assert_int_equal(json_array_size(shape), q.ndim);
        for (size_t d = 0; d < q.ndim; d++) assert_int_equal(json_integer_value(json_array_get(shape, d)), q.dims[d]);
        uint64_t o0 = off_at(h, q.name, 0), o1 = off_at(h, q.name, 1);
        assert_int_equal(o1 - o0, q.count * 4);
        assert_true(o1 <= data_len);
        for (size_t k = 0; k < q.count; k++) {
            float v = le_float(data + o0 + 4 * k);
            if (memcmp(&v, &q.data[k], 4) != 0) fail_msg("%s[%zu]: file %g, net %g", q.name, k, (double)v, (double)q.data[k]);
        }
        ranges[2 * i] = o0;
        ranges[2 * i + 1] = o1;
    }
    /* The ranges tile the data area exactly. */
    uint64_t pos = 0;
    for (size_t done = 0; done < np; done++) {
        size_t k = np;
        for (size_t i = 0; i < np; i++)
            if (ranges[2 * i] == pos && ranges[2 * i + 1] > pos) k = i;
        if (k == np) fail_msg("no tensor starts at data offset %llu", (unsigned long long)pos);
        pos = ranges[2 * k + 1];
    }
    assert_int_equal(pos, data_len);

    /* PyTorch names and layouts. */
    static const struct {
        const char *name;
        size_t ndim, dims[4];
    } want[] = {{"c1.weight", 4, {4, 3, 3, 3}}, {"c1.bias", 1, {4}},           {"bn1.weight", 1, {4}},
                {"bn1.bias", 1, {4}},           {"bn1.running_mean", 1, {4}}, {"bn1.running_var", 1, {4}},
                {"fc.weight", 2, {6, 140}},     {"fc.bias", 1, {6}},          {"out.weight", 2, {3, 6}},
                {"out.bias", 1, {3}}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_t *shape = json_object_get(json_object_get(h, want[i].name), "shape");
        if (!shape) fail_msg("no tensor %s", want[i].name);
        assert_int_equal(json_array_size(shape), want[i].ndim);
        for (size_t d = 0; d < want[i].ndim; d++)
            assert_int_equal(json_integer_value(json_array_get(shape, d)), want[i].dims[d]);
    }
    free(ranges);
    json_decref(h);
    free(b);
    free_net(&a);
}

/* ---------------------------------------------------------------- conversions and extras */

static uint16_t f32_to_bf16_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    assert_int_equal(u & 0xffff, 0);
    return (uint16_t)(u >> 16);
}

static void test_dtypes_and_ignored(void **state) {
    (void)state;
    tnet a = make_net(4), b = make_net(5);
    /* Values representable in every format used below. */
    cnn_param w, bias, bnw;
    assert_int_equal(cnn_net_param_find(a.net, "out.bias", &bias), CNN_OK);
    assert_int_equal(cnn_net_param_find(a.net, "bn1.weight", &bnw), CNN_OK);
    assert_int_equal(cnn_net_param_find(a.net, "out.weight", &w), CNN_OK);
    const float halfs[3] = {-1.25f, 0x1p-24f /* smallest subnormal */, 65504.0f};
    const uint16_t half_bits[3] = {0xBD00, 0x0001, 0x7BFF};
    memcpy(bias.data, halfs, sizeof halfs);
    const float bfs[4] = {0.5f, -3.0f, 1.0f / 128, 7.0f};
    memcpy(bnw.data, bfs, sizeof bfs);

    char p[4400], q[4400];
    tpath(p, "base.safetensors");
    tpath(q, "conv.safetensors");
    assert_int_equal(cnn_net_save_weights(a.net, p), CNN_OK);
    stfile f = parse_file(p);

    /* Rebuild the data area: out.weight as F64, out.bias as F16, bn1.weight as BF16, plus PyTorch's
     * bn1.num_batches_tracked (I64, shape []), with the other tensors copied as they are. */
    unsigned char *nd = malloc(f.data_len + 1024);
    assert_non_null(nd);
    size_t o = 0;
    const char *key;
    json_t *val;
    json_t *hdr = json_object();
    json_object_set(hdr, "__metadata__", json_object_get(f.hdr, "__metadata__"));
    json_object_foreach(f.hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *e = json_deep_copy(val);
        uint64_t b0 = off_at(f.hdr, key, 0), b1 = off_at(f.hdr, key, 1);
        size_t start = o;
        if (!strcmp(key, "out.weight")) {
            json_object_set_new(e, "dtype", json_string("F64"));
            for (size_t k = 0; k < w.count; k++) {
                double d = (double)w.data[k];
                uint64_t u;
                memcpy(&u, &d, 8);
                put_le64(nd + o, u);
                o += 8;
            }
        } else if (!strcmp(key, "out.bias")) {
            json_object_set_new(e, "dtype", json_string("F16"));
            for (size_t k = 0; k < 3; k++) {
                nd[o++] = (unsigned char)(half_bits[k] & 0xff);
                nd[o++] = (unsigned char)(half_bits[k] >> 8);
            }
        } else if (!strcmp(key, "bn1.weight")) {
            json_object_set_new(e, "dtype", json_string("BF16"));
            for (size_t k = 0; k < 4; k++) {
                uint16_t h = f32_to_bf16_exact(bfs[k]);
                nd[o++] = (unsigned char)(h & 0xff);
                nd[o++] = (unsigned char)(h >> 8);
            }
        } else {
            memcpy(nd + o, f.data + b0, (size_t)(b1 - b0));
            o += (size_t)(b1 - b0);
        }
        set_offsets(e, start, o);
        json_object_set_new(hdr, key, e);
    }
    json_t *nbt = json_object();
    json_object_set_new(nbt, "dtype", json_string("I64"));
    json_object_set_new(nbt, "shape", json_array());
    set_offsets(nbt, o, o + 8);
    put_le64(nd + o, 1234);
    o += 8;
    json_object_set_new(hdr, "bn1.num_batches_tracked", nbt);
    /* No padding: the loader must not need aligned data. */
    write_file_parts(q, hdr, nd, o, 3);

    size_t na;
    float *sa = snapshot(&a, &na);
    if (cnn_net_load_weights(b.net, q) != CNN_OK) fail_msg("load: %s", cnn_ctx_last_error(b.ctx));
    expect_snapshot(&b, sa, na, "converted load");
    free(sa);
    json_decref(hdr);
    free(nd);
    free_file(&f);
    free_net(&a);
    free_net(&b);
}

/* ---------------------------------------------------------------- corrupt files */

typedef enum {
    M_TRUNCATE, M_LEN_HUGE, M_LEN_PAST, M_LEN_ZERO, M_TOO_SHORT, M_BAD_JSON, M_NOT_OBJECT, M_DUP_KEY,
    M_OVERLAP, M_OUT_OF_RANGE, M_SIZE_MISMATCH, M_GAP, M_WRONG_SHAPE, M_WRONG_RANK, M_MISSING, M_UNKNOWN,
    M_RENAMED, M_TRAILING, M_DTYPE_UNSUPPORTED, M_DTYPE_UNKNOWN, M_META_NOT_STRING, M_ENTRY_NOT_OBJECT,
    M_NO_OFFSETS, M_NEG_OFFSET, M_NEG_SHAPE, M_FLOAT_OFFSET, M_REVERSED, M_HEADER_GARBAGE, M_COUNT
} mutation;

static const struct {
    mutation m;
    const char *name;
    cnn_status want;
    const char *needle;
} cases[] = {
    {M_TRUNCATE, "truncated", CNN_ERR_FORMAT, "past the end of the data area"},
    {M_LEN_HUGE, "len_huge", CNN_ERR_FORMAT, "more than the limit"},
    {M_LEN_PAST, "len_past", CNN_ERR_FORMAT, "runs past the end of the file"},
    {M_LEN_ZERO, "len_zero", CNN_ERR_FORMAT, "too short"},
    {M_TOO_SHORT, "too_short", CNN_ERR_FORMAT, "too short"},
    {M_BAD_JSON, "bad_json", CNN_ERR_FORMAT, "not valid JSON"},
    {M_NOT_OBJECT, "not_object", CNN_ERR_FORMAT, "not a JSON object"},
    {M_DUP_KEY, "dup_key", CNN_ERR_FORMAT, "duplicate"},
    {M_OVERLAP, "overlap", CNN_ERR_FORMAT, "overlaps"},
    {M_OUT_OF_RANGE, "out_of_range", CNN_ERR_FORMAT, "past the end of the data area"},
    {M_SIZE_MISMATCH, "size_mismatch", CNN_ERR_FORMAT, "'fc.bias': data_offsets"},
    {M_GAP, "gap", CNN_ERR_FORMAT, "unused bytes"},
    {M_WRONG_SHAPE, "wrong_shape", CNN_ERR_SHAPE, "'fc.weight' has shape [140, 6] in the file, the net expects [6, 140]"},
    {M_WRONG_RANK, "wrong_rank", CNN_ERR_SHAPE, "'c1.weight' has shape [4, 27]"},
    {M_MISSING, "missing", CNN_ERR_FORMAT, "missing from the file: 'bn1.running_var'"},
    {M_UNKNOWN, "unknown", CNN_ERR_FORMAT, "'extra.weight'"},
    {M_RENAMED, "renamed", CNN_ERR_FORMAT, "missing from the file: 'fc.bias'; unknown tensors (the net has no such parameter): 'fc.bias2'"},
    {M_TRAILING, "trailing", CNN_ERR_FORMAT, "8 bytes of trailing garbage"},
    {M_DTYPE_UNSUPPORTED, "dtype_i32", CNN_ERR_UNSUPPORTED, "dtype I32"},
    {M_DTYPE_UNKNOWN, "dtype_unknown", CNN_ERR_FORMAT, "unknown dtype \"F33\""},
    {M_META_NOT_STRING, "meta", CNN_ERR_FORMAT, "__metadata__"},
    {M_ENTRY_NOT_OBJECT, "entry", CNN_ERR_FORMAT, "'c1.bias': entry is not a JSON object"},
    {M_NO_OFFSETS, "no_offsets", CNN_ERR_FORMAT, "data_offsets"},
    {M_NEG_OFFSET, "neg_offset", CNN_ERR_FORMAT, "bad data_offsets"},
    {M_NEG_SHAPE, "neg_shape", CNN_ERR_FORMAT, "non-negative"},
    {M_FLOAT_OFFSET, "float_offset", CNN_ERR_FORMAT, "data_offsets"},
    {M_REVERSED, "reversed", CNN_ERR_FORMAT, "bad data_offsets"},
    {M_HEADER_GARBAGE, "header_garbage", CNN_ERR_FORMAT, "not valid JSON"},
};

/* Write the corrupted variant of the base file `f` for mutation m to path. */
static void write_mutation(const char *path, const stfile *f, mutation m) {
    json_t *h = json_deep_copy(f->hdr);
    unsigned char *d = malloc(f->data_len + 64);
    assert_non_null(d);
    memcpy(d, f->data, f->data_len);
    size_t dl = f->data_len;
    /* The tensor stored last and the one before it. */
    const char *last = NULL, *prev = NULL, *key;
    uint64_t last_end = 0;
    json_t *val;
    json_object_foreach(h, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        uint64_t e = off_at(h, key, 1);
        if (e >= last_end) {
            prev = last;
            last = key;
            last_end = e;
        }
    }
    assert_non_null(last);
    assert_non_null(prev);
    assert_int_equal(last_end, dl);
    switch (m) {
    case M_TRUNCATE: dl--; break;
    case M_LEN_HUGE:
    case M_LEN_PAST:
    case M_LEN_ZERO:
    case M_TOO_SHORT: {
        char *j = json_dumps(h, JSON_COMPACT);
        size_t jl = strlen(j), total = 8 + jl + dl;
        unsigned char *b = malloc(total);
        assert_non_null(b);
        uint64_t n = m == M_LEN_HUGE ? (uint64_t)1 << 40 : m == M_LEN_PAST ? total - 7 : 0;
        put_le64(b, m == M_LEN_HUGE || m == M_LEN_PAST || m == M_LEN_ZERO ? n : jl);
        memcpy(b + 8, j, jl);
        memcpy(b + 8 + jl, d, dl);
        write_all(path, b, m == M_TOO_SHORT ? 5 : total);
        free(b);
        free(j);
        json_decref(h);
        free(d);
        return;
    }
    case M_BAD_JSON:
    case M_NOT_OBJECT:
    case M_DUP_KEY:
    case M_HEADER_GARBAGE: {
        char *j = json_dumps(h, JSON_COMPACT);
        size_t jl = strlen(j);
        char *t = malloc(jl + 64);
        assert_non_null(t);
        if (m == M_BAD_JSON) {
            memcpy(t, j, jl);
            t[jl - 1] = ','; /* {"a":...,  — cut off */
            t[jl] = 0;
        } else if (m == M_NOT_OBJECT) {
            snprintf(t, jl + 64, "[%s]", j);
        } else if (m == M_DUP_KEY) {
            /* {"c1.bias":{...},<the original members>}: c1.bias twice */
            char *e = json_dumps(json_object_get(h, "c1.bias"), JSON_COMPACT);
            free(t);
            t = malloc(jl + strlen(e) + 32);
            assert_non_null(t);
            snprintf(t, jl + strlen(e) + 32, "{\"c1.bias\":%s,%s", e, j + 1);
            free(e);
        } else {
            snprintf(t, jl + 64, "%s xyz", j);
        }
        size_t tl = strlen(t);
        unsigned char *b = malloc(8 + tl + dl);
        assert_non_null(b);
        put_le64(b, tl);
        memcpy(b + 8, t, tl);
        memcpy(b + 8 + tl, d, dl);
        write_all(path, b, 8 + tl + dl);
        free(b);
        free(t);
        free(j);
        json_decref(h);
        free(d);
        return;
    }
    case M_OVERLAP: set_offsets(json_object_get(h, last), off_at(h, last, 0) - 4, off_at(h, last, 1) - 4); break;
    case M_OUT_OF_RANGE: set_offsets(json_object_get(h, last), off_at(h, last, 0) + 4, off_at(h, last, 1) + 4); break;
    case M_SIZE_MISMATCH: set_offsets(json_object_get(h, "fc.bias"), off_at(h, "fc.bias", 0), off_at(h, "fc.bias", 1) - 4); break;
    case M_GAP:
        set_offsets(json_object_get(h, last), off_at(h, last, 0) + 4, off_at(h, last, 1) + 4);
        memset(d + dl, 0, 4);
        dl += 4;
        break;
    case M_WRONG_SHAPE: {
        json_t *s = json_array();
        json_array_append_new(s, json_integer(140));
        json_array_append_new(s, json_integer(6));
        json_object_set_new(json_object_get(h, "fc.weight"), "shape", s);
        break;
    }
    case M_WRONG_RANK: {
        json_t *s = json_array();
        json_array_append_new(s, json_integer(4));
        json_array_append_new(s, json_integer(27));
        json_object_set_new(json_object_get(h, "c1.weight"), "shape", s);
        break;
    }
    case M_MISSING: json_object_del(h, "bn1.running_var"); break;
    case M_UNKNOWN: {
        json_t *e = json_deep_copy(json_object_get(h, "out.bias"));
        set_offsets(e, dl, dl + 12);
        memset(d + dl, 0x3f, 12);
        dl += 12;
        json_object_set_new(h, "extra.weight", e);
        break;
    }
    case M_RENAMED: {
        json_t *e = json_incref(json_object_get(h, "fc.bias"));
        json_object_del(h, "fc.bias");
        json_object_set_new(h, "fc.bias2", e);
        break;
    }
    case M_TRAILING:
        memcpy(d + dl, "GARBAGE!", 8);
        dl += 8;
        break;
    case M_DTYPE_UNSUPPORTED: json_object_set_new(json_object_get(h, "fc.weight"), "dtype", json_string("I32")); break;
    case M_DTYPE_UNKNOWN: json_object_set_new(json_object_get(h, "fc.weight"), "dtype", json_string("F33")); break;
    case M_META_NOT_STRING: json_object_set_new(json_object_get(h, "__metadata__"), "epoch", json_integer(3)); break;
    case M_ENTRY_NOT_OBJECT: json_object_set_new(h, "c1.bias", json_string("oops")); break;
    case M_NO_OFFSETS: json_object_del(json_object_get(h, "c1.bias"), "data_offsets"); break;
    case M_NEG_OFFSET: set_offsets(json_object_get(h, "c1.bias"), (uint64_t)-4, 12); break;
    case M_NEG_SHAPE: {
        json_t *s = json_array();
        json_array_append_new(s, json_integer(-4));
        json_object_set_new(json_object_get(h, "c1.bias"), "shape", s);
        break;
    }
    case M_FLOAT_OFFSET: {
        json_t *o = json_array();
        json_array_append_new(o, json_real(0.0));
        json_array_append_new(o, json_real(16.0));
        json_object_set_new(json_object_get(h, "c1.bias"), "data_offsets", o);
        break;
    }
    case M_REVERSED: set_offsets(json_object_get(h, "c1.bias"), off_at(h, "c1.bias", 1), off_at(h, "c1.bias", 0)); break;
    case M_COUNT: break;
    }
    (void)prev;
    write_file_parts(path, h, d, dl, 0);
    json_decref(h);
    free(d);
}

static void test_corrupt_files(void **state) {
    (void)state;
    tnet a = make_net(6), b = make_net(7);
    char base[4400];
    tpath(base, "base.safetensors");
    assert_int_equal(cnn_net_save_weights(a.net, base), CNN_OK);
    stfile f = parse_file(base);
    size_t nb;
    float *sb = snapshot(&b, &nb);

    /* The unmodified parts, rewritten by the test's writer, load: the mutations are what fails. */
    char ok[4400];
    tpath(ok, "control.safetensors");
    write_file_parts(ok, f.hdr, f.data, f.data_len, 0);
    tnet c = make_net(8);
    if (cnn_net_load_weights(c.net, ok) != CNN_OK) fail_msg("control: %s", cnn_ctx_last_error(c.ctx));
    free_net(&c);

    assert_int_equal(sizeof cases / sizeof cases[0], M_COUNT);
    for (size_t i = 0; i < M_COUNT; i++) {
        char p[4400];
        tpath(p, cases[i].name);
        write_mutation(p, &f, cases[i].m);
        cnn_status st = cnn_net_load_weights(b.net, p);
        const char *msg = cnn_ctx_last_error(b.ctx);
        if (getenv("CNN_TEST_VERBOSE")) print_message("%-16s %s\n", cases[i].name, msg);
        if (st != cases[i].want)
            fail_msg("%s: status %d (%s), want %d; message: %s", cases[i].name, st, cnn_status_string(st),
                     cases[i].want, msg);
        if (!strstr(msg, p)) fail_msg("%s: message does not name the file: %s", cases[i].name, msg);
        if (!strstr(msg, cases[i].needle)) fail_msg("%s: message lacks \"%s\": %s", cases[i].name, cases[i].needle, msg);
        expect_snapshot(&b, sb, nb, cases[i].name);
    }

    /* Missing file, a directory, an empty file. */
    char p[4400];
    tpath(p, "no_such.safetensors");
    assert_int_equal(cnn_net_load_weights(b.net, p), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(b.ctx), "no_such.safetensors"));
    assert_int_equal(cnn_net_load_weights(b.net, g_dir), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(b.ctx), "directory"));
    tpath(p, "empty.safetensors");
    write_all(p, "", 0);
    assert_int_equal(cnn_net_load_weights(b.net, p), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(b.ctx), "empty.safetensors"));
    expect_snapshot(&b, sb, nb, "missing/dir/empty");

    /* A file for another architecture. */
    cnn_ctx *ctx2;
    cnn_net *other;
    const char *m2 = "input c=3 h=7 w=5\nconv2d name=c1 k=5 kh=3 kw=3 pad=1\n";
    assert_int_equal(cnn_ctx_create(&ctx2, NULL), CNN_OK);
    assert_int_equal(cnn_net_parse(ctx2, m2, strlen(m2), "other.cnn", &other), CNN_OK);
    assert_int_equal(cnn_net_load_weights(other, base), CNN_ERR_SHAPE);
    assert_non_null(strstr(cnn_ctx_last_error(ctx2), "c1.weight"));
    cnn_net_free(other);
    cnn_ctx_free(ctx2);

    /* And after all that, the good file still loads into b. */
    assert_int_equal(cnn_net_load_weights(b.net, base), CNN_OK);
    size_t na;
    float *sa = snapshot(&a, &na);
    expect_snapshot(&b, sa, na, "final load");
    free(sa);
    free(sb);
    free_file(&f);
    free_net(&a);
    free_net(&b);
}

/* Random byte flips and truncations of a good file: never a crash; a success only when the flip is
 * in the data area (then the header checks passed and the file is legitimately different data) or in a
 * JSON byte that leaves the header meaning the same (e.g. padding). */
static void test_fuzz(void **state) {
    (void)state;
    tnet a = make_net(9), b = make_net(10);
    char base[4400], p[4400];
    tpath(base, "fz_base.safetensors");
    tpath(p, "fz.safetensors");
    assert_int_equal(cnn_net_save_weights(a.net, base), CNN_OK);
    size_t len;
    unsigned char *good = read_all(base, &len);
    uint64_t hl = get_le64(good);
    size_t nb;
    float *sb = snapshot(&b, &nb);
    uint64_t r = 77;
    unsigned char *t = malloc(len);
    assert_non_null(t);
    int iters = getenv("CNN_FUZZ_ITERS") ? atoi(getenv("CNN_FUZZ_ITERS")) : 400;
    for (int it = 0; it < iters; it++) {
        memcpy(t, good, len);
        size_t tl = len;
        size_t pos = (size_t)(rnd(&r) % (8 + hl)); /* in the length or the header */
        t[pos] = (unsigned char)rnd(&r);
        if (it % 5 == 0) tl = (size_t)(rnd(&r) % len);
        write_all(p, t, tl);
        cnn_status st = cnn_net_load_weights(b.net, p);
        if (st == CNN_OK) {
            /* Then the header still describes the same tensors: the weights are a's. */
            size_t na;
            float *sa = snapshot(&a, &na);
            expect_snapshot(&b, sa, na, "fuzz success");
            free(sa);
            /* Restore b for the next round. */
            size_t o = 0;
            for (size_t i = 0; i < cnn_net_num_params(b.net); i++) {
                cnn_param q;
                assert_int_equal(cnn_net_param_at(b.net, i, &q), CNN_OK);
                memcpy(q.data, sb + o, q.count * sizeof(float));
                o += q.count;
            }
        } else {
            assert_non_null(strstr(cnn_ctx_last_error(b.ctx), "fz.safetensors"));
            expect_snapshot(&b, sb, nb, "fuzz failure");
        }
    }
    free(t);
    free(good);
    free(sb);
    free_net(&a);
    free_net(&b);
}

/* ---------------------------------------------------------------- saving errors */

static void test_save_errors(void **state) {
    (void)state;
    tnet a = make_net(11);
    char p[4400];
    /* A folder that does not exist. */
    tpath(p, "no/such/dir/w.safetensors");
    assert_int_equal(cnn_net_save_weights(a.net, p), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(a.ctx), p));
    /* A place nobody may create files in, root included. */
    assert_int_equal(cnn_net_save_weights(a.net, "/proc/cnn_test_weights.safetensors"), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(a.ctx), "/proc/cnn_test_weights.safetensors"));
    /* A read-only folder (permissions do not stop root, so only checked for others). */
    char ro[4400];
    tpath(ro, "ro");
    assert_int_equal(mkdir(ro, 0755), 0);
    char rp[4500];
    snprintf(rp, sizeof rp, "%s/w.safetensors", ro);
    assert_int_equal(chmod(ro, 0555), 0);
    if (access(ro, W_OK) != 0) {
        assert_int_equal(cnn_net_save_weights(a.net, rp), CNN_ERR_IO);
        assert_non_null(strstr(cnn_ctx_last_error(a.ctx), rp));
        assert_int_equal(count_entries(ro, ""), 2); /* . and .. */
    }
    assert_int_equal(chmod(ro, 0755), 0);
    /* The target is a folder: the rename fails and the temporary file is removed. */
    char target[4400];
    tpath(target, "target");
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(cnn_net_save_weights(a.net, target), CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(a.ctx), target));
    assert_int_equal(count_entries(g_dir, ".tmp"), 0);
    /* An existing file is replaced by a good save. */
    char keep[4400];
    tpath(keep, "keep.safetensors");
    write_all(keep, "old", 3);
    assert_int_equal(cnn_net_save_weights(a.net, keep), CNN_OK);
    size_t len;
    unsigned char *b = read_all(keep, &len);
    assert_true(len > 100);
    free(b);
    assert_int_equal(cnn_net_save_weights(a.net, ""), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_save_weights(a.net, NULL), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_load_weights(a.net, NULL), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_save_weights(NULL, keep), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_load_weights(NULL, keep), CNN_ERR_INVALID_ARG);
    free_net(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtypes_and_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
