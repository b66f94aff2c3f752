/* safetensors.c — weights files in the safetensors format (https://github.com/huggingface/safetensors).
 *
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON, then the data area.
 *   {"__metadata__": {"format": "pt", "cnn.model": "<model text>"},
 *    "<layer>.<suffix>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
 * Offsets are bytes relative to the start of the data area; tensors are contiguous, in no particular order,
 * cover the data area exactly and never overlap. Elements are little-endian, row-major, with PyTorch's
 * names and layouts (conv OIHW, dense [out, in], batchnorm weight/bias/running_mean/running_var), so a
 * file loads with safetensors.torch.load_file into a PyTorch model with the same layer names.
 *
 * Save: every tensor of the net (trainable and buffers, cnn_net_param_at order) as F32; the header is
 * written by jansson (compact, keys in insertion order) and padded with spaces so that the data starts at a
 * multiple of 8 bytes. Written atomically: a temporary file in the same folder (O_EXCL, mode 0666 & ~umask),
 * fwrite, fflush, fsync, fclose, rename over the target, then fsync of the folder; on any failure the
 * temporary file is removed and the target is untouched. A temporary file that a killed writer left
 * ("<file>.tmp.<pid>.<n>" of a process that no longer exists) is removed by the next save of that file.
 *
 * Load: the header (N <= 100 MB and <= file size - 8) is parsed with jansson (duplicate keys rejected) and
 * validated completely before any weight changes: a JSON object; "__metadata__" an object of strings; each
 * entry an object with a known dtype, a shape of non-negative integers and data_offsets [begin, end] with
 * begin <= end <= data size and end - begin == elements * dtype size; the entries sorted by offset tile the
 * data area from 0 with no overlap, no gap and no trailing bytes; every tensor of the net present with its
 * exact shape and a dtype we convert (F32 as is; F16, BF16 and F64 rounded to F32); entries named
 * "*.num_batches_tracked" (PyTorch's batchnorm step counter) and "optim.*" (a checkpoint's optimizer state,
 * checkpoint.c) are accepted and ignored; any other name the
 * net lacks is an error naming it. The data is then read into one temporary buffer and only when all of it
 * has been read is it copied into the net, so a failed load leaves the weights unchanged.
 *
 * Cost: one pass over the file either way; the temporary buffer is the size of the net's tensors. */
#define _POSIX_C_SOURCE 200809L /* fileno, fdopen, fseeko, fsync, O_CLOEXEC, O_DIRECTORY */
#include "../core/internal.h"
#include "safetensors_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER 100000000ull /* the reference implementation's limit */
#define IO_CHUNK 65536u
#define LIST_NAMES 5 /* names listed in one message */

/* ---------------------------------------------------------------- dtypes */

enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_OTHER };

typedef struct dtype_info {
    const char *name;
    size_t size;
    int kind; /* DT_OTHER: recognised but not convertible */
} dtype_info;

static const dtype_info dtypes[] = {
    {"F32", 4, DT_F32},   {"F16", 2, DT_F16},   {"BF16", 2, DT_BF16},    {"F64", 8, DT_F64},
    {"I64", 8, DT_OTHER}, {"I32", 4, DT_OTHER}, {"I16", 2, DT_OTHER},    {"I8", 1, DT_OTHER},
    {"U64", 8, DT_OTHER}, {"U32", 4, DT_OTHER}, {"U16", 2, DT_OTHER},    {"U8", 1, DT_OTHER},
    {"BOOL", 1, DT_OTHER}, {"F8_E4M3", 1, DT_OTHER}, {"F8_E5M2", 1, DT_OTHER},
};

static const dtype_info *find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, s)) return &dtypes[i];
    return NULL;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, NaN (payload kept) */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* Decode `count` little-endian elements of kind `kind` from p into out. */
static void decode(int kind, const unsigned char *p, size_t count, float *out) {
    for (size_t i = 0; i < count; i++) {
        switch (kind) {
        case DT_F32: {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            out[i] = f32_from_bits(u);
            break;
        }
        case DT_F16: out[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        case DT_BF16: out[i] = f32_from_bits((uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16); break;
        case DT_F64: {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--) u = u << 8 | p[8 * i + (size_t)b];
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
            break;
        }
        default: CNN_ASSERT(0);
        }
    }
}

/* ---------------------------------------------------------------- save */

static void put_le32(unsigned char *p, uint32_t u) {
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
}

int cnn_st_meta_set_classes(json_t *meta, const cnn_net *net) {
    size_t n = 0;
    const char *const *names = cnn_net_class_names(net, &n);
    if (!n) return 0;
    json_t *arr = json_array();
    if (!arr) return -1;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, json_string(names[i]))) { /* (NULL: not UTF-8, or out of memory) */
            json_decref(arr);
            return -1;
        }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text) return -1;
    json_t *v = json_string(text);
    cnn_json_free_str(text);
    return v ? json_object_set_new(meta, "cnn.classes", v) : -1;
}

static cnn_status build_header(cnn_net *net, char **out_json) {
    cnn_ctx *ctx = cnn_net_ctx(net);
    cnn_status st = CNN_OK;
    char *text = NULL;
    json_t *root = json_object(), *meta = json_object();
    *out_json = NULL;
    if (!root || !meta) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
    CNN_TRY(cnn_net_to_text(net, &text));
    json_t *model = json_string(text);
    if (!model) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "the model text is not valid UTF-8 (or out of memory)"));
    if (json_object_set_new(meta, "format", json_string("pt"))) {
        json_decref(model); /* (a failed set_new consumes only its own value) */
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
    }
    if (json_object_set_new(meta, "cnn.model", model) || cnn_st_meta_set_classes(meta, net) ||
        json_object_set(root, "__metadata__", meta))
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
    uint64_t off = 0;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        int built = e && shape && offs;
        for (size_t d = 0; built && d < p.ndim; d++) json_array_append_new(shape, json_integer((json_int_t)p.dims[d]));
        if (built) json_array_append_new(offs, json_integer((json_int_t)off));
        off += (uint64_t)p.count * 4;
        if (built) json_array_append_new(offs, json_integer((json_int_t)off));
        if (!built || json_array_size(shape) != p.ndim || json_array_size(offs) != 2) { /* nothing owns them yet */
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
        }
        json_object_set_new(e, "dtype", json_string("F32")); /* e owns shape and offs from here, even on failure */
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_size(e) != 3) {
            json_decref(e);
            CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
        }
        if (json_object_set_new(root, p.name, e)) /* (consumes e) */
            CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
    }
    *out_json = json_dumps(root, JSON_COMPACT);
    if (!*out_json) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a safetensors header"));
cleanup:
    json_decref(meta);
    json_decref(root);
    if (text) cnn_free(ctx, text);
    return st;
}

static cnn_status write_all(cnn_ctx *ctx, FILE *f, const char *tmp, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n)
        return cnn_error(ctx, CNN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno ? errno : EIO));
    return CNN_OK;
}

static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = (size_t)(slash - path);
        if (len == 0) len = 1; /* "/file" */
        if (len >= sizeof dir) return;
        memcpy(dir, path, len);
        dir[len] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Remove what a writer killed during a save left next to `path`: "<name>.tmp.<pid>.<n>" files whose process
 * is gone (kill -9, or cnn train's immediate exit on a second signal). A live writer's file is left alone. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = (size_t)(slash - path);
        if (len == 0) len = 1;
        if (len >= sizeof dir) return;
        memcpy(dir, path, len);
        dir[len] = 0;
    }
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, ".tmp.", 5) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(nm + blen + 5, &end, 10);
        if (errno || pid <= 0 || *end != '.' || end[1] < '0' || end[1] > '9') continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char full[4096 + 256];
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, nm) < sizeof full) (void)unlink(full);
    }
    closedir(d);
}

/* Write a safetensors file atomically: header `json` (padded with spaces so the data starts at a multiple
 * of 8), then the tensors' F32 data little-endian in order, into a temporary file next to `path`; flush,
 * fsync, rename over `path`, fsync the folder. On any failure the temporary file is removed and `path` is
 * untouched. Shared by weights (below) and checkpoints (checkpoint.c). */
cnn_status cnn_safetensors_write_atomic(cnn_ctx *ctx, const char *path, const char *json,
                                        const cnn_st_data *t, size_t nt) {
    cnn_status st = CNN_OK;
    char *tmp = NULL;
    unsigned char *chunk = NULL;
    FILE *f = NULL;
    int have_tmp = 0;
    size_t hlen = strlen(json);
    size_t padded = cnn_round_up(8 + hlen, 8) - 8;

    size_t plen = strlen(path);
    tmp = cnn_mem_alloc(ctx, plen + 64);
    chunk = cnn_mem_alloc(ctx, IO_CHUNK);
    if (!tmp || !chunk) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory saving %s", path));
    remove_stale_temps(path);
    static atomic_uint counter;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno)));
    have_tmp = 1;
    f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(e)));
    }

    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    CNN_TRY(write_all(ctx, f, tmp, len8, 8));
    CNN_TRY(write_all(ctx, f, tmp, json, hlen));
    memset(chunk, ' ', 8);
    CNN_TRY(write_all(ctx, f, tmp, chunk, padded - hlen));
    for (size_t i = 0; i < nt; i++) {
        for (size_t k = 0; k < t[i].count;) {
            size_t m = t[i].count - k < IO_CHUNK / 4 ? t[i].count - k : IO_CHUNK / 4;
            for (size_t j = 0; j < m; j++) {
                uint32_t u;
                memcpy(&u, &t[i].data[k + j], 4);
                put_le32(chunk + 4 * j, u);
            }
            CNN_TRY(write_all(ctx, f, tmp, chunk, 4 * m));
            k += m;
        }
    }
    if (fflush(f) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno)));
    if (fsync(fileno(f)) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno)));
    int rc = fclose(f);
    f = NULL;
    if (rc != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: close failed: %s", tmp, strerror(errno)));
    if (rename(tmp, path) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno)));
    have_tmp = 0;
    sync_parent_dir(path);

cleanup:
    if (f) fclose(f);
    if (have_tmp) unlink(tmp);
    if (st == CNN_ERR_IO) { /* say what the failure means for the file asked for */
        char msg[sizeof ctx->error];
        snprintf(msg, sizeof msg, "%s", ctx->error);
        struct stat sb;
        cnn_error(ctx, st, "%s; %s", msg,
                  stat(path, &sb) == 0 ? "the file there before is unchanged" : "nothing was saved");
    }
    cnn_mem_free(ctx, tmp);
    cnn_mem_free(ctx, chunk);
    return st;
}

cnn_status cnn_net_save_weights(cnn_net *net, const char *path) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = cnn_net_ctx(net);
    if (!path || !*path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_save_weights: empty path");
    cnn_status st = CNN_OK;
    char *json = NULL;
    size_t nt = cnn_net_num_params(net);
    cnn_st_data *t = cnn_mem_calloc(ctx, nt ? nt : 1, sizeof *t);
    if (!t) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory saving %s", path);
    for (size_t i = 0; i < nt; i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        t[i].data = p.data;
        t[i].count = p.count;
    }
    CNN_TRY(build_header(net, &json));
    st = cnn_safetensors_write_atomic(ctx, path, json, t, nt);
cleanup:
    cnn_mem_free(ctx, t);
    cnn_json_free_str(json);
    return st;
}

/* ---------------------------------------------------------------- load */

typedef struct entry {
    const char *name;
    uint64_t begin, end;
    const dtype_info *dt;
    long param; /* index into the net's tensors, -1 when ignored */
} entry;

static int entry_cmp(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int is_ignored_name(const char *name) {
    static const char suffix[] = "num_batches_tracked";
    if (!strncmp(name, "optim.", 6)) return 1; /* a checkpoint's optimizer state (checkpoint.c) */
    size_t n = strlen(name), s = sizeof suffix - 1;
    return n >= s && !strcmp(name + n - s, suffix) && (n == s || name[n - s - 1] == '.');
}

static void shape_str(char *buf, size_t len, const size_t *dims, size_t ndim) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (size_t d = 0; d < ndim && o < len; d++) o += (size_t)snprintf(buf + o, len - o, "%s%zu", d ? ", " : "", dims[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Validate one tensor entry; fills e (param = -2: unknown name, -1: ignored). */
static cnn_status check_entry(cnn_net *net, const char *path, const char *name, json_t *v, uint64_t data_len,
                              entry *e) {
    cnn_ctx *ctx = cnn_net_ctx(net);
    if (!json_is_object(v)) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (!json_is_array(shape)) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", path, name);
    e->name = name;
    e->dt = find_dtype(json_string_value(dt));
    if (!e->dt) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, name, json_string_value(dt));
    size_t ndim = json_array_size(shape), dims[8], count = 1;
    if (ndim > 8) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': %zu dimensions is too many", path, name, ndim);
    for (size_t d = 0; d < ndim; d++) {
        json_t *x = json_array_get(shape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': shape entries must be non-negative integers", path, name);
        dims[d] = (size_t)json_integer_value(x);
        if ((json_int_t)dims[d] != json_integer_value(x) || !cnn_size_mul(count, dims[d], &count))
            return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0)), en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': bad data_offsets [%lld, %lld]", path, name, (long long)b,
                         (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end > data_len)
        return cnn_error(ctx, CNN_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data area (%llu bytes)",
                         path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)data_len);
    size_t bytes;
    if (!cnn_size_mul(count, e->dt->size, &bytes)) {
        char s[160];
        shape_str(s, sizeof s, dims, ndim);
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s': shape overflows: %s elements of %s need more than 2^64 bytes",
                         path, name, s, e->dt->name);
    }
    if ((uint64_t)bytes != e->end - e->begin) {
        char s[160];
        shape_str(s, sizeof s, dims, ndim);
        return cnn_error(ctx, CNN_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s needs %zu",
                         path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)(e->end - e->begin), s, e->dt->name, bytes);
    }
    cnn_param p;
    memset(&p, 0, sizeof p);
    e->param = -2;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        if (cnn_net_param_at(net, i, &p) == CNN_OK && !strcmp(p.name, name)) {
            e->param = (long)i;
            break;
        }
    }
    if (e->param == -2) {
        if (is_ignored_name(name)) e->param = -1;
        return CNN_OK;
    }
    int same = ndim == p.ndim;
    for (size_t d = 0; same && d < ndim; d++) same = dims[d] == p.dims[d];
    if (!same) {
        char got[160], want[160];
        shape_str(got, sizeof got, dims, ndim);
        shape_str(want, sizeof want, p.dims, p.ndim);
        return cnn_error(ctx, CNN_ERR_SHAPE, "%s: tensor '%s' has shape %s in the file, the net expects %s", path, name,
                         got, want);
    }
    if (e->dt->kind == DT_OTHER)
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                         "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and F64 can be loaded", path, name, e->dt->name);
    return CNN_OK;
}

cnn_status cnn_net_load_weights(cnn_net *net, const char *path) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = cnn_net_ctx(net);
    if (!path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_load_weights: path is NULL");
    cnn_status st = CNN_OK;
    FILE *f = NULL;
    char *hdr = NULL;
    json_t *root = NULL;
    entry *ents = NULL;
    unsigned char *seen = NULL, *chunk = NULL;
    float *staging = NULL;
    size_t *offsets = NULL;
    cnn_strbuf missing = {0}, unknown = {0};
    const size_t np = cnn_net_num_params(net);

    f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    if (S_ISDIR(sb.st_mode)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: is a directory, expected a safetensors file", path));
    if (!S_ISREG(sb.st_mode)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: not a regular file", path));
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char len8[8];
    if (size < 8 || fread(len8, 1, 8, f) != 8) {
        if (ferror(f)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: read error: %s", path, strerror(errno)));
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", path,
                          (unsigned long long)size));
    }
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--) hlen = hlen << 8 | len8[b];
    if (hlen > MAX_HEADER)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header length %llu is more than the limit of %llu bytes", path,
                          (unsigned long long)hlen, MAX_HEADER));
    if (hlen > size - 8)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                          (unsigned long long)hlen, (unsigned long long)size));
    if (hlen < 2) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", path, (unsigned long long)hlen));
    CNN_TRY(cnn_mem_alloc_checked(ctx, (size_t)hlen + 1, "a safetensors header", (void **)&hdr));
    if (fread(hdr, 1, (size_t)hlen, f) != (size_t)hlen)
        CNN_TRY(cnn_error(ctx, ferror(f) ? CNN_ERR_IO : CNN_ERR_FORMAT, "%s: cannot read the %llu-byte header", path,
                          (unsigned long long)hlen));
    hdr[hlen] = 0;
    json_error_t jerr;
    root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header is not valid JSON: %s (at file offset %llu)", path, jerr.text,
                          (unsigned long long)(8 + (jerr.position > 0 ? (uint64_t)jerr.position : 0))));
    if (!json_is_object(root)) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header is not a JSON object", path));

    const uint64_t data_start = 8 + hlen, data_len = size - data_start;
    size_t n_ent = 0, cap = json_object_size(root);
    ents = cnn_mem_calloc(ctx, cap ? cap : 1, sizeof *ents);
    seen = cnn_mem_calloc(ctx, np ? np : 1, 1);
    if (!ents || !seen) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory loading %s", path));
    const char *key;
    json_t *val;
    size_t n_unknown = 0, n_missing = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path));
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv))
                    CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: \"__metadata__\" value of \"%s\" is not a string", path, mk));
            }
            continue;
        }
        entry *e = &ents[n_ent++];
        CNN_TRY(check_entry(net, path, key, val, data_len, e));
        if (e->param == -2) {
            if (n_unknown < LIST_NAMES) cnn_strbuf_printf(&unknown, "%s'%s'", n_unknown ? ", " : "", key);
            n_unknown++;
        } else if (e->param >= 0) {
            seen[e->param] = 1;
        }
    }
    for (size_t i = 0; i < np; i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        if (seen[i]) continue;
        if (n_missing < LIST_NAMES) cnn_strbuf_printf(&missing, "%s'%s'", n_missing ? ", " : "", p.name);
        n_missing++;
    }
    if (missing.failed || unknown.failed) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory loading %s", path));
    if (n_missing || n_unknown) {
        char more_m[48] = "", more_u[48] = "";
        if (n_missing > LIST_NAMES) snprintf(more_m, sizeof more_m, " and %zu more", n_missing - LIST_NAMES);
        if (n_unknown > LIST_NAMES) snprintf(more_u, sizeof more_u, " and %zu more", n_unknown - LIST_NAMES);
        if (n_missing && n_unknown)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                              "%s: tensors of the net missing from the file: %s%s; unknown tensors (the net has no "
                              "such parameter): %s%s",
                              path, missing.data, more_m, unknown.data, more_u));
        if (n_missing)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensors of the net missing from the file: %s%s", path,
                              missing.data, more_m));
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: unknown tensors (the net has no such parameter): %s%s", path,
                          unknown.data, more_u));
    }

    /* Layout: sorted by offset, the entries tile [0, data_len) exactly. */
    qsort(ents, n_ent, sizeof *ents, entry_cmp);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < n_ent; i++) {
        if (ents[i].begin < pos)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s' (which ends at %llu)",
                              path, ents[i].name, (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end,
                              prev, (unsigned long long)pos));
        if (ents[i].begin > pos)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %llu unused bytes in the data area before tensor '%s' (at %llu)",
                              path, (unsigned long long)(ents[i].begin - pos), ents[i].name,
                              (unsigned long long)ents[i].begin));
        pos = ents[i].end;
        prev = ents[i].name;
    }
    if (pos != data_len)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %llu bytes of trailing garbage after the last tensor (file offset %llu)",
                          path, (unsigned long long)(data_len - pos), (unsigned long long)(data_start + pos)));

    /* Read everything into a staging buffer, then commit. */
    offsets = cnn_mem_calloc(ctx, np ? np : 1, sizeof *offsets);
    size_t total = 0;
    if (!offsets) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory loading %s", path));
    for (size_t i = 0; i < np; i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        offsets[i] = total;
        if (!cnn_size_add(total, p.count, &total)) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "the net's tensors are too large"));
    }
    size_t staging_bytes;
    if (!cnn_size_mul(total ? total : 1, sizeof(float), &staging_bytes))
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "the net's tensors are too large"));
    CNN_TRY(cnn_mem_alloc_checked(ctx, staging_bytes, "the weights being loaded", (void **)&staging));
    CNN_TRY(cnn_mem_alloc_checked(ctx, IO_CHUNK, "a read buffer", (void **)&chunk));
    for (size_t i = 0; i < n_ent; i++) {
        const entry *e = &ents[i];
        if (e->param < 0) continue;
        if (fseeko(f, (off_t)(data_start + e->begin), SEEK_SET) != 0)
            CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: seek failed: %s", path, strerror(errno)));
        const size_t es = e->dt->size, per = IO_CHUNK / es;
        size_t count = (size_t)(e->end - e->begin) / es;
        float *dst = staging + offsets[e->param];
        for (size_t k = 0; k < count;) {
            size_t m = count - k < per ? count - k : per;
            if (fread(chunk, es, m, f) != m)
                CNN_TRY(cnn_error(ctx, ferror(f) ? CNN_ERR_IO : CNN_ERR_FORMAT,
                                  "%s: file ended while reading tensor '%s' (it changed while loading?)", path, e->name));
            decode(e->dt->kind, chunk, m, dst + k);
            k += m;
        }
    }
    for (size_t i = 0; i < np; i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        memcpy(p.data, staging + offsets[i], p.count * sizeof(float));
    }

cleanup:
    if (f) fclose(f);
    json_decref(root);
    cnn_mem_free(ctx, hdr);
    cnn_mem_free(ctx, ents);
    cnn_mem_free(ctx, seen);
    cnn_mem_free(ctx, chunk);
    cnn_mem_free(ctx, staging);
    cnn_mem_free(ctx, offsets);
    cnn_strbuf_release(&missing);
    cnn_strbuf_release(&unknown);
    return st;
}
