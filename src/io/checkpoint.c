/* checkpoint.c — training checkpoints: one safetensors file with the net's tensors, the optimizer state and
 * the training position, so that a run stopped and resumed gives the same weights bit for bit.
 *
 * File (the safetensors layout of safetensors.c; F32 little-endian tensors, data starts 8-aligned):
 *   tensors   every tensor of the net, cnn_net_param_at order and names (a weights loader reads it as is)
 *             "optim.momentum"                       [count]  SGD with momentum > 0
 *             "optim.exp_avg", "optim.exp_avg_sq"    [count]  Adam, AdamW
 *             count = floats in the parameter arena, alignment padding between tensors included (the padding
 *             stays 0); the arena layout is a function of the model text, so the same model reads it back.
 *   metadata  "format": "pt", "cnn.model": model text, "cnn.checkpoint": "1",
 *             "cnn.train": JSON {"epoch", "batch", "step", "seed", "net_seed", "net_step"} (integers as
 *             decimal strings, exact for 64 bits),
 *             "cnn.optim": JSON {"kind": "sgd"|"adam"|"adamw", "steps", "count", "lr", "momentum", "nesterov",
 *             "weight_decay", "beta1", "beta2", "eps"} (floats as JSON reals, %.17g: exact), or absent,
 *             "cnn.args": JSON array of the caller's training arguments (strings).
 * Writing is atomic as cnn_net_save_weights: temp file next to the target (O_EXCL), write, fflush, fsync,
 * rename, fsync of the folder; on failure the temp file is removed and the previous file is untouched.
 * Reading validates the file with cnn_net_load_weights (layout, names, shapes) before any optimizer state is
 * read; optimizer tensors must be F32 [count] with count equal to the optimizer's arena. */
#define _POSIX_C_SOURCE 200809L
#include "../core/internal.h"
#include "safetensors_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER 100000000ull
#define IO_CHUNK 65536u

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

typedef struct ck_tensor {
    const char *name;
    const float *data;
    size_t ndim, dims[4], count;
} ck_tensor;

static json_t *u64_str(uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return json_string(b);
}

static int get_u64(json_t *o, const char *key, uint64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return 0;
    const char *s = json_string_value(v);
    if (!*s) return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno || s[0] == '-') return 0;
    *out = (uint64_t)x;
    return 1;
}

/* v when it has `size` members, else NULL after releasing v (a member failed to allocate). */
static json_t *whole(json_t *v, size_t size) {
    if (v && json_object_size(v) != size) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Set meta[key] to the compact JSON text of v (stolen). */
static int set_json_text(json_t *meta, const char *key, json_t *v) {
    if (!v) return -1;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!s) return -1;
    int rc = json_object_set_new(meta, key, json_string(s));
    cnn_json_free_str(s);
    return rc;
}

static cnn_status build_header(cnn_net *net, const cnn_optimizer *opt_c, const cnn_train_state *ts,
                               const ck_tensor *t, size_t nt, const cnn_ema *ema_c, double best_val,
                               char **out_json) {
    cnn_ctx *ctx = cnn_net_ctx(net);
    cnn_status st = CNN_OK;
    char *text = NULL;
    json_t *root = json_object(), *meta = json_object();
    *out_json = NULL;
#define NOMEM_IF(c) \
    if (c) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building a checkpoint header"))
    NOMEM_IF(!root || !meta);
    CNN_TRY(cnn_net_to_text(net, &text));
    json_t *model = json_string(text);
    if (!model) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "the model text is not valid UTF-8 (or out of memory)"));
    if (json_object_set_new(meta, "format", json_string("pt"))) {
        json_decref(model); /* (a failed set_new consumes only its own value) */
        NOMEM_IF(1);
    }
    NOMEM_IF(json_object_set_new(meta, "cnn.model", model) || json_object_set_new(meta, "cnn.checkpoint", json_string("1")));
    uint64_t nseed, nstep;
    cnn_net_get_rng(net, &nseed, &nstep);
    json_t *tr = json_object();
    NOMEM_IF(!tr);
    json_object_set_new(tr, "epoch", u64_str(ts->epoch));
    json_object_set_new(tr, "batch", u64_str(ts->batch));
    json_object_set_new(tr, "step", u64_str(ts->step));
    json_object_set_new(tr, "seed", u64_str(ts->seed));
    json_object_set_new(tr, "net_seed", u64_str(nseed));
    json_object_set_new(tr, "net_step", u64_str(nstep));
    NOMEM_IF(set_json_text(meta, "cnn.train", whole(tr, 6)));
    if (opt_c) {
        cnn_optimizer *opt = (cnn_optimizer *)(uintptr_t)opt_c;
        cnn_optimizer_options o = cnn_optimizer_get_options(opt);
        size_t count;
        cnn_optimizer_state(opt, NULL, &count);
        json_t *oj = json_object();
        NOMEM_IF(!oj);
        json_object_set_new(oj, "kind", json_string(kind_names[o.kind]));
        json_object_set_new(oj, "steps", u64_str(cnn_optimizer_steps(opt)));
        json_object_set_new(oj, "count", u64_str(count));
        json_object_set_new(oj, "lr", json_real(o.lr));
        json_object_set_new(oj, "momentum", json_real(o.momentum));
        json_object_set_new(oj, "nesterov", json_boolean(o.nesterov));
        json_object_set_new(oj, "weight_decay", json_real(o.weight_decay));
        json_object_set_new(oj, "beta1", json_real(o.beta1));
        json_object_set_new(oj, "beta2", json_real(o.beta2));
        json_object_set_new(oj, "eps", json_real(o.eps));
        NOMEM_IF(set_json_text(meta, "cnn.optim", whole(oj, 10)));
    }
    if (ema_c) { /* part "recipe": the EMA of the weights (tensors "optim.ema.*") */
        cnn_ema *ema = (cnn_ema *)(uintptr_t)ema_c;
        size_t enp, enb;
        cnn_ema_state(ema, NULL, &enp, NULL, &enb);
        json_t *ej = json_object();
        NOMEM_IF(!ej);
        json_object_set_new(ej, "decay", json_real(cnn_ema_decay(ema)));
        json_object_set_new(ej, "updates", u64_str(cnn_ema_updates(ema)));
        json_object_set_new(ej, "params", u64_str(enp));
        json_object_set_new(ej, "buffers", u64_str(enb));
        NOMEM_IF(set_json_text(meta, "cnn.ema", whole(ej, 4)));
    }
    if (best_val == best_val) {
        char bv[40];
        snprintf(bv, sizeof bv, "%.17g", best_val);
        NOMEM_IF(json_object_set_new(meta, "cnn.best_val", json_string(bv)));
    }
    json_t *args = json_array();
    NOMEM_IF(!args);
    for (size_t i = 0; i < ts->n_args; i++) {
        json_t *a = json_string(ts->args[i] ? ts->args[i] : "");
        if (!a) {
            json_decref(args);
            CNN_TRY(cnn_error(ctx, CNN_ERR_INVALID_ARG, "checkpoint: training argument %zu is not valid UTF-8", i));
        }
        json_array_append_new(args, a);
    }
    NOMEM_IF(set_json_text(meta, "cnn.args", json_array_size(args) == ts->n_args ? args : (json_decref(args), NULL)));
    NOMEM_IF(cnn_st_meta_set_classes(meta, net));
    NOMEM_IF(json_object_set(root, "__metadata__", meta));

    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        int built = e && shape && offs;
        for (size_t d = 0; built && d < t[i].ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t[i].dims[d]));
        if (built) json_array_append_new(offs, json_integer((json_int_t)off));
        off += (uint64_t)t[i].count * 4;
        if (built) json_array_append_new(offs, json_integer((json_int_t)off));
        built = built && json_array_size(shape) == t[i].ndim && json_array_size(offs) == 2;
        if (!built) { /* nothing owns them yet */
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            NOMEM_IF(1);
        }
        json_object_set_new(e, "dtype", json_string("F32")); /* e owns shape and offs from here, even on failure */
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_size(e) != 3 || json_object_get(root, t[i].name)) {
            json_decref(e);
            if (json_object_get(root, t[i].name))
                CNN_TRY(cnn_error(ctx, CNN_ERR_INVALID_ARG, "checkpoint: tensor name '%s' twice", t[i].name));
            NOMEM_IF(1);
        }
        NOMEM_IF(json_object_set_new(root, t[i].name, e));
    }
    *out_json = json_dumps(root, JSON_COMPACT);
    NOMEM_IF(!*out_json);
#undef NOMEM_IF
cleanup:
    json_decref(meta);
    json_decref(root);
    if (text) cnn_free(ctx, text);
    return st;
}

cnn_status cnn_checkpoint_save(cnn_net *net, const cnn_optimizer *opt, const cnn_train_state *state,
                               const char *path) {
    return cnn_checkpoint_save_ex(net, opt, NULL, state, NAN, path);
}

cnn_status cnn_checkpoint_save_ex(cnn_net *net, const cnn_optimizer *opt, const cnn_ema *ema,
                                  const cnn_train_state *state, double best_val, const char *path) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = cnn_net_ctx(net);
    if (!path || !*path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_save: empty path");
    cnn_train_state zero;
    memset(&zero, 0, sizeof zero);
    if (!state) state = &zero;
    if (state->n_args && !state->args)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_save: n_args without args");
    cnn_status st = CNN_OK;
    char *json = NULL;
    ck_tensor *t = NULL;

    const size_t np = cnn_net_num_params(net);
    t = cnn_mem_calloc(ctx, np + 4, sizeof *t);
    if (!t) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory saving %s", path));
    size_t nt = 0;
    for (size_t i = 0; i < np; i++) {
        cnn_param p;
        CNN_TRY(cnn_net_param_at(net, i, &p));
        t[nt].name = p.name;
        t[nt].data = p.data;
        t[nt].ndim = p.ndim;
        memcpy(t[nt].dims, p.dims, sizeof p.dims);
        t[nt].count = p.count;
        nt++;
    }
    if (opt) {
        float *s[2];
        size_t count;
        cnn_optimizer_state((cnn_optimizer *)(uintptr_t)opt, s, &count);
        cnn_optimizer_options o = cnn_optimizer_get_options(opt);
        const char *n0 = o.kind == CNN_OPT_SGD ? "optim.momentum" : "optim.exp_avg";
        const char *names[2] = {n0, "optim.exp_avg_sq"};
        for (int k = 0; k < 2; k++) {
            if (!s[k]) continue;
            t[nt].name = names[k];
            t[nt].data = s[k];
            t[nt].ndim = 1;
            t[nt].dims[0] = count;
            t[nt].count = count;
            nt++;
        }
    }

    if (ema) {
        float *ep, *eb;
        size_t enp, enb;
        cnn_ema_state((cnn_ema *)(uintptr_t)ema, &ep, &enp, &eb, &enb);
        const char *en[2] = {"optim.ema.params", "optim.ema.buffers"};
        const float *ed[2] = {ep, eb};
        size_t ec[2] = {enp, enb};
        for (int k = 0; k < 2; k++) {
            if (!ec[k]) continue;
            t[nt].name = en[k];
            t[nt].data = ed[k];
            t[nt].ndim = 1;
            t[nt].dims[0] = ec[k];
            t[nt].count = ec[k];
            nt++;
        }
    }
    CNN_TRY(build_header(net, opt, state, t, nt, ema, best_val, &json));
    {
        cnn_st_data *d = cnn_mem_calloc(ctx, nt ? nt : 1, sizeof *d);
        if (!d) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory saving %s", path));
        for (size_t i = 0; i < nt; i++) {
            d[i].data = t[i].data;
            d[i].count = t[i].count;
        }
        st = cnn_safetensors_write_atomic(ctx, path, json, d, nt);
        cnn_mem_free(ctx, d);
    }
cleanup:
    cnn_mem_free(ctx, t);
    cnn_json_free_str(json);
    return st;
}

/* ---------------------------------------------------------------- reading */

/* The header JSON of a safetensors file (only the header is checked here; the tensors are validated by
 * cnn_net_load_weights). *data_start: file offset of the data area. */
static cnn_status read_header(cnn_ctx *ctx, const char *path, json_t **out, uint64_t *data_start) {
    *out = NULL;
    cnn_status st = CNN_OK;
    char *hdr = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    if (!S_ISREG(sb.st_mode)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: not a regular file", path));
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char len8[8];
    if (size < 8 || fread(len8, 1, 8, f) != 8)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %llu bytes is too short for a checkpoint (safetensors) file", path,
                          (unsigned long long)size));
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--) hlen = hlen << 8 | len8[b];
    if (hlen > MAX_HEADER || hlen > size - 8 || hlen < 2)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header length %llu does not fit the file (%llu bytes): not a "
                          "safetensors file, or truncated", path, (unsigned long long)hlen, (unsigned long long)size));
    CNN_TRY(cnn_mem_alloc_checked(ctx, (size_t)hlen + 1, "a safetensors header", (void **)&hdr));
    if (fread(hdr, 1, (size_t)hlen, f) != (size_t)hlen)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: cannot read the %llu-byte header", path, (unsigned long long)hlen));
    json_error_t jerr;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header is not valid JSON: %s", path, jerr.text));
    if (!json_is_object(root)) {
        json_decref(root);
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: header is not a JSON object", path));
    }
    *out = root;
    *data_start = 8 + hlen;
cleanup:
    fclose(f);
    cnn_mem_free(ctx, hdr);
    return st;
}

/* meta[key] parsed as JSON (new reference), or NULL with an error. */
static cnn_status meta_json(cnn_ctx *ctx, const char *path, json_t *root, const char *key, int required,
                            json_t **out) {
    *out = NULL;
    json_t *meta = json_object_get(root, "__metadata__");
    json_t *v = json_is_object(meta) ? json_object_get(meta, key) : NULL;
    if (!v) {
        if (!required) return CNN_OK;
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: not a checkpoint (no \"%s\" in the metadata; a plain weights file?)",
                         path, key);
    }
    if (!json_is_string(v)) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"%s\" is not a string", path, key);
    json_error_t jerr;
    *out = json_loads(json_string_value(v), JSON_DECODE_ANY, &jerr);
    if (!*out) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"%s\" is not valid JSON: %s", path, key, jerr.text);
    return CNN_OK;
}

cnn_status cnn_checkpoint_read_model(cnn_ctx *ctx, const char *path, char **text) {
    if (!text) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_model: text is NULL");
    *text = NULL;
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_model: NULL argument");
    json_t *root;
    uint64_t ds;
    cnn_status st = read_header(ctx, path, &root, &ds);
    if (st != CNN_OK) return st;
    json_t *meta = json_object_get(root, "__metadata__");
    json_t *m = json_is_object(meta) ? json_object_get(meta, "cnn.model") : NULL;
    if (!json_is_string(m)) {
        st = cnn_error(ctx, CNN_ERR_FORMAT,
                       "%s: no model text inside (metadata \"cnn.model\"); give the model file (--model MODEL.cnn)", path);
    } else {
        size_t n = json_string_length(m);
        char *s = cnn_alloc(ctx, n + 1);
        if (!s) {
            st = cnn_error(ctx, CNN_ERR_NOMEM, "out of memory reading %s", path);
        } else {
            memcpy(s, json_string_value(m), n + 1);
            *text = s;
        }
    }
    json_decref(root);
    return st;
}

static cnn_status parse_train(cnn_ctx *ctx, const char *path, json_t *root, cnn_train_state *ts, uint64_t *nseed,
                              uint64_t *nstep) {
    json_t *tr;
    cnn_status st = meta_json(ctx, path, root, "cnn.train", 1, &tr);
    if (st != CNN_OK) return st;
    if (!json_is_object(tr) || !get_u64(tr, "epoch", &ts->epoch) || !get_u64(tr, "batch", &ts->batch) ||
        !get_u64(tr, "step", &ts->step) || !get_u64(tr, "seed", &ts->seed) || !get_u64(tr, "net_seed", nseed) ||
        !get_u64(tr, "net_step", nstep))
        st = cnn_error(ctx, CNN_ERR_FORMAT,
                       "%s: metadata \"cnn.train\" needs epoch, batch, step, seed, net_seed, net_step as decimal strings",
                       path);
    json_decref(tr);
    return st;
}

/* The n strings of the JSON array arr (already checked to be strings) as one cnn_alloc block: n + 1
 * pointers (the last NULL) followed by the texts; bytes is that total. NULL when out of memory. */
static char **string_block(cnn_ctx *ctx, json_t *arr, size_t n, size_t bytes) {
    char **block = cnn_alloc(ctx, bytes);
    if (!block) return NULL;
    char *s = (char *)(block + n + 1);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(arr, i);
        size_t len = json_string_length(a);
        memcpy(s, json_string_value(a), len + 1);
        block[i] = s;
        s += len + 1;
    }
    block[n] = NULL;
    return block;
}

cnn_status cnn_checkpoint_read_state(cnn_ctx *ctx, const char *path, cnn_train_state *state) {
    if (!state) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_state: state is NULL");
    memset(state, 0, sizeof *state);
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_state: NULL argument");
    json_t *root = NULL, *args = NULL;
    uint64_t ds, ns, nst;
    cnn_train_state ts;
    memset(&ts, 0, sizeof ts);
    cnn_status st = read_header(ctx, path, &root, &ds);
    if (st != CNN_OK) return st;
    CNN_TRY(parse_train(ctx, path, root, &ts, &ns, &nst));
    CNN_TRY(meta_json(ctx, path, root, "cnn.args", 0, &args));
    if (args) {
        if (!json_is_array(args))
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.args\" is not a JSON array", path));
        size_t n = json_array_size(args), bytes = (n + 1) * sizeof(char *);
        for (size_t i = 0; i < n; i++) {
            json_t *a = json_array_get(args, i);
            if (!json_is_string(a))
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.args\" entry %zu is not a string", path, i));
            bytes += json_string_length(a) + 1;
        }
        char **block = string_block(ctx, args, n, bytes);
        if (!block) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory reading %s", path));
        ts.n_args = n;
        ts.args = (const char *const *)block;
    }
    *state = ts;
cleanup:
    json_decref(args);
    json_decref(root);
    return st;
}

cnn_status cnn_checkpoint_load(cnn_ctx *ctx, const char *path, cnn_net **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_load: out is NULL");
    *out = NULL;
    char *text = NULL;
    cnn_net *net = NULL;
    json_t *root = NULL;
    cnn_status st = cnn_checkpoint_read_model(ctx, path, &text);
    if (st != CNN_OK) return st;
    CNN_TRY(cnn_net_parse(ctx, text, strlen(text), path, &net));
    CNN_TRY(cnn_net_load_weights(net, path));
    uint64_t ds;
    CNN_TRY(read_header(ctx, path, &root, &ds));
    json_t *meta = json_object_get(root, "__metadata__");
    if (json_is_object(meta) && json_object_get(meta, "cnn.train")) {
        cnn_train_state ts;
        uint64_t ns, nst;
        CNN_TRY(parse_train(ctx, path, root, &ts, &ns, &nst));
        cnn_net_set_rng(net, ns, nst);
    }
    *out = net;
    net = NULL;
cleanup:
    json_decref(root);
    cnn_net_free(net);
    cnn_free(ctx, text);
    return st;
}

static cnn_status read_f32(cnn_ctx *ctx, const char *path, FILE *f, uint64_t at, float *dst, size_t count,
                           unsigned char *chunk) {
    if (fseeko(f, (off_t)at, SEEK_SET) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
    for (size_t k = 0; k < count;) {
        size_t m = count - k < IO_CHUNK / 4 ? count - k : IO_CHUNK / 4;
        if (fread(chunk, 4, m, f) != m)
            return cnn_error(ctx, CNN_ERR_FORMAT, "%s: file ended while reading the optimizer state", path);
        for (size_t j = 0; j < m; j++) {
            uint32_t u = (uint32_t)chunk[4 * j] | (uint32_t)chunk[4 * j + 1] << 8 | (uint32_t)chunk[4 * j + 2] << 16 |
                         (uint32_t)chunk[4 * j + 3] << 24;
            memcpy(&dst[k + j], &u, 4);
        }
        k += m;
    }
    return CNN_OK;
}

cnn_status cnn_checkpoint_load_optimizer(cnn_optimizer *opt, const char *path) {
    if (!opt || !path) return CNN_ERR_INVALID_ARG;
    float *s[2];
    size_t count;
    cnn_optimizer_state(opt, s, &count);
    cnn_optimizer_options o = cnn_optimizer_get_options(opt);
    cnn_ctx *ctx = cnn_optimizer_ctx(opt);
    cnn_status st = CNN_OK;
    json_t *root = NULL, *oj = NULL;
    FILE *f = NULL;
    unsigned char *chunk = NULL;
    float *staging = NULL;
    uint64_t ds;
    CNN_TRY(read_header(ctx, path, &root, &ds));
    CNN_TRY(meta_json(ctx, path, root, "cnn.optim", 1, &oj));
    json_t *k = json_object_get(oj, "kind");
    uint64_t steps, fcount;
    if (!json_is_object(oj) || !json_is_string(k) || !get_u64(oj, "steps", &steps) || !get_u64(oj, "count", &fcount))
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.optim\" needs kind, steps and count", path));
    if (strcmp(json_string_value(k), kind_names[o.kind]) != 0)
        CNN_TRY(cnn_error(ctx, CNN_ERR_MISUSE, "%s: the checkpoint's optimizer is %s, this one is %s", path,
                          json_string_value(k), kind_names[o.kind]));
    if (fcount != (uint64_t)count)
        CNN_TRY(cnn_error(ctx, CNN_ERR_SHAPE, "%s: the checkpoint's optimizer state has %llu floats, this net %zu", path,
                          (unsigned long long)fcount, count));
    const char *names[2] = {o.kind == CNN_OPT_SGD ? "optim.momentum" : "optim.exp_avg", "optim.exp_avg_sq"};
    size_t bytes;
    if (!cnn_size_mul(count ? count : 1, 2 * sizeof(float), &bytes))
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "optimizer state too large"));
    CNN_TRY(cnn_mem_alloc_checked(ctx, bytes, "the optimizer state being loaded", (void **)&staging));
    CNN_TRY(cnn_mem_alloc_checked(ctx, IO_CHUNK, "a read buffer", (void **)&chunk));
    f = fopen(path, "rb");
    if (!f) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno)));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    const uint64_t data_len = (uint64_t)sb.st_size > ds ? (uint64_t)sb.st_size - ds : 0;
    for (int i = 0; i < 2; i++) {
        json_t *e = json_object_get(root, names[i]);
        if (!s[i]) {
            if (e) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: tensor '%s' is not state of this optimizer", path, names[i]));
            continue;
        }
        if (!e) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: optimizer state '%s' missing", path, names[i]));
        json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
               *offs = json_object_get(e, "data_offsets");
        if (!json_is_string(dt) || strcmp(json_string_value(dt), "F32") || !json_is_array(shape) ||
            json_array_size(shape) != 1 || json_integer_value(json_array_get(shape, 0)) != (json_int_t)count ||
            !json_is_array(offs) || json_array_size(offs) != 2)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: optimizer state '%s' must be F32 of shape [%zu]", path, names[i],
                              count));
        json_int_t b = json_integer_value(json_array_get(offs, 0)), en = json_integer_value(json_array_get(offs, 1));
        /* (unsigned arithmetic: en - b may overflow json_int_t for hostile offsets) */
        if (b < 0 || en < b || (uint64_t)en - (uint64_t)b != (uint64_t)count * 4)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: optimizer state '%s': bad data_offsets", path, names[i]));
        if ((uint64_t)en > data_len)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                              "%s: optimizer state '%s': data_offsets [%lld, %lld] run past the end of the data area "
                              "(%llu bytes)", path, names[i], (long long)b, (long long)en, (unsigned long long)data_len));
        CNN_TRY(read_f32(ctx, path, f, ds + (uint64_t)b, staging + (size_t)i * count, count, chunk));
    }
    for (int i = 0; i < 2; i++)
        if (s[i] && count) memcpy(s[i], staging + (size_t)i * count, count * sizeof(float));
    cnn_optimizer_set_steps(opt, steps);
cleanup:
    if (f) fclose(f);
    json_decref(oj);
    json_decref(root);
    cnn_mem_free(ctx, chunk);
    cnn_mem_free(ctx, staging);
    return st;
}

/* ---------------------------------------------------------------- EMA and best validation (part "recipe") */

/* Read F32 tensor `name` of shape [count] into dst. */
static cnn_status read_vec(cnn_ctx *ctx, const char *path, json_t *root, uint64_t ds, uint64_t data_len, FILE *f,
                           const char *name, float *dst, size_t count, unsigned char *chunk) {
    json_t *e = json_object_get(root, name);
    if (!e) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: EMA tensor '%s' missing", path, name);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || strcmp(json_string_value(dt), "F32") || !json_is_array(shape) ||
        json_array_size(shape) != 1 || json_integer_value(json_array_get(shape, 0)) != (json_int_t)count ||
        !json_is_array(offs) || json_array_size(offs) != 2)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: EMA tensor '%s' must be F32 of shape [%zu]", path, name, count);
    json_int_t b = json_integer_value(json_array_get(offs, 0)), en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b || (uint64_t)en - (uint64_t)b != (uint64_t)count * 4 || (uint64_t)en > data_len)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: EMA tensor '%s': bad data_offsets", path, name);
    return read_f32(ctx, path, f, ds + (uint64_t)b, dst, count, chunk);
}

cnn_status cnn_checkpoint_load_ema(cnn_ema *ema, const char *path) {
    if (!ema || !path) return CNN_ERR_INVALID_ARG;
    float *ep, *eb;
    size_t enp, enb;
    cnn_ema_state(ema, &ep, &enp, &eb, &enb);
    cnn_ctx *ctx = cnn_ema_ctx(ema);
    cnn_status st = CNN_OK;
    json_t *root = NULL, *ej = NULL;
    FILE *f = NULL;
    unsigned char *chunk = NULL;
    float *staging = NULL;
    uint64_t ds, updates, fp, fb;
    CNN_TRY(read_header(ctx, path, &root, &ds));
    CNN_TRY(meta_json(ctx, path, root, "cnn.ema", 0, &ej));
    if (!ej) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: the checkpoint has no EMA of the weights (metadata \"cnn.ema\")", path));
    if (!json_is_object(ej) || !get_u64(ej, "updates", &updates) || !get_u64(ej, "params", &fp) ||
        !get_u64(ej, "buffers", &fb))
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.ema\" needs updates, params and buffers", path));
    if (fp != (uint64_t)enp || fb != (uint64_t)enb)
        CNN_TRY(cnn_error(ctx, CNN_ERR_SHAPE, "%s: the checkpoint's EMA has %llu + %llu floats, this net %zu + %zu", path,
                          (unsigned long long)fp, (unsigned long long)fb, enp, enb));
    CNN_TRY(cnn_mem_alloc_checked(ctx, (enp + enb + 1) * sizeof(float), "the EMA being loaded", (void **)&staging));
    CNN_TRY(cnn_mem_alloc_checked(ctx, IO_CHUNK, "a read buffer", (void **)&chunk));
    f = fopen(path, "rb");
    if (!f) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno)));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    const uint64_t data_len = (uint64_t)sb.st_size > ds ? (uint64_t)sb.st_size - ds : 0;
    if (enp) CNN_TRY(read_vec(ctx, path, root, ds, data_len, f, "optim.ema.params", staging, enp, chunk));
    if (enb) CNN_TRY(read_vec(ctx, path, root, ds, data_len, f, "optim.ema.buffers", staging + enp, enb, chunk));
    if (enp) memcpy(ep, staging, enp * sizeof(float));
    if (enb) memcpy(eb, staging + enp, enb * sizeof(float));
    cnn_ema_set_updates(ema, updates);
cleanup:
    if (f) fclose(f);
    json_decref(ej);
    json_decref(root);
    cnn_mem_free(ctx, chunk);
    cnn_mem_free(ctx, staging);
    return st;
}

cnn_status cnn_checkpoint_read_best(cnn_ctx *ctx, const char *path, double *best) {
    if (!best) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_best: best is NULL");
    *best = NAN;
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_best: NULL argument");
    json_t *root;
    uint64_t ds;
    cnn_status st = read_header(ctx, path, &root, &ds);
    if (st != CNN_OK) return st;
    json_t *meta = json_object_get(root, "__metadata__");
    json_t *v = json_is_object(meta) ? json_object_get(meta, "cnn.best_val") : NULL;
    if (v) {
        char *end;
        const char *sv = json_is_string(v) ? json_string_value(v) : "";
        double x = strtod(sv, &end);
        if (end == sv || *end)
            st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.best_val\" is not a number", path);
        else
            *best = x;
    }
    json_decref(root);
    return st;
}

/* ---------------------------------------------------------------- class names (part "data")
 * metadata "cnn.classes": the JSON text of an array of strings, the class names in label order. Written by
 * rewriting the file: header and data are read, the key is set, and the file is written again atomically
 * (cnn_safetensors_write_atomic), so a failure leaves the old file. */

#define MAX_CLASS_NAMES CNN_MAX_CLASS_NAMES

cnn_status cnn_checkpoint_read_class_names(cnn_ctx *ctx, const char *path, char ***names, size_t *n) {
    if (!names || !n) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_class_names: NULL output");
    *names = NULL;
    *n = 0;
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_read_class_names: NULL argument");
    json_t *root = NULL, *arr = NULL;
    uint64_t ds;
    cnn_status st = read_header(ctx, path, &root, &ds);
    if (st != CNN_OK) return st;
    CNN_TRY(meta_json(ctx, path, root, "cnn.classes", 0, &arr));
    if (!arr) goto cleanup;
    size_t k = json_is_array(arr) ? json_array_size(arr) : 0;
    if (!k || k > MAX_CLASS_NAMES)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.classes\" is not an array of 1..%u names", path,
                          MAX_CLASS_NAMES));
    size_t bytes = (k + 1) * sizeof(char *);
    for (size_t i = 0; i < k; i++) {
        json_t *a = json_array_get(arr, i);
        if (!json_is_string(a) || json_string_length(a) == 0 || strlen(json_string_value(a)) != json_string_length(a))
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: metadata \"cnn.classes\" entry %zu is not a non-empty string",
                              path, i));
        bytes += json_string_length(a) + 1;
    }
    char **block = string_block(ctx, arr, k, bytes);
    if (!block) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory reading %s", path));
    *names = block;
    *n = k;
cleanup:
    json_decref(arr);
    json_decref(root);
    return st;
}

cnn_status cnn_checkpoint_write_class_names(cnn_ctx *ctx, const char *path, const char *const *names, size_t n) {
    if (!ctx || !path || (!names && n))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_write_class_names: NULL argument");
    if (n == 0 || n > MAX_CLASS_NAMES)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_write_class_names: %zu names (expected 1..%u)", n,
                         MAX_CLASS_NAMES);
    cnn_status st = CNN_OK;
    json_t *root = NULL, *arr = json_array();
    float *data = NULL;
    unsigned char *chunk = NULL;
    char *json = NULL;
    FILE *f = NULL;
    if (!arr) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = names[i] && names[i][0] ? json_string(names[i]) : NULL;
        if (!v)
            CNN_TRY(cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_checkpoint_write_class_names: name %zu is %s", i,
                              !names[i] ? "NULL" : !names[i][0] ? "empty" : "not valid UTF-8"));
        json_array_append_new(arr, v);
    }
    if (json_array_size(arr) != n) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
    uint64_t ds;
    CNN_TRY(read_header(ctx, path, &root, &ds));
    f = fopen(path, "rb");
    if (!f) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno)));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    uint64_t bytes = (uint64_t)sb.st_size - ds;
    /* every entry F32 (the only dtype the library writes), so the data area is a float array */
    const char *key;
    json_t *e;
    json_object_foreach(root, key, e) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *dt = json_object_get(e, "dtype");
        if (!json_is_string(dt) || strcmp(json_string_value(dt), "F32") != 0)
            CNN_TRY(cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: tensor '%s' is not F32: class names can only be added to "
                              "files the library wrote", path, key));
    }
    if (bytes % 4) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: data area of %llu bytes is not whole floats", path,
                                     (unsigned long long)bytes));
    size_t count = (size_t)(bytes / 4);
    CNN_TRY(cnn_mem_alloc_checked(ctx, count ? count * 4 : 4, "the tensors being rewritten", (void **)&data));
    CNN_TRY(cnn_mem_alloc_checked(ctx, IO_CHUNK, "a read buffer", (void **)&chunk));
    CNN_TRY(read_f32(ctx, path, f, ds, data, count, chunk));
    fclose(f);
    f = NULL;
    json_t *meta = json_object_get(root, "__metadata__");
    if (!json_is_object(meta)) {
        meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta)) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
    }
    json_t *a = arr;
    arr = NULL;
    if (set_json_text(meta, "cnn.classes", a)) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
    json = json_dumps(root, JSON_COMPACT);
    if (!json) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
    cnn_st_data d = {data, count};
    st = cnn_safetensors_write_atomic(ctx, path, json, &d, 1);
cleanup:
    if (f) fclose(f);
    json_decref(arr);
    json_decref(root);
    cnn_json_free_str(json);
    cnn_mem_free(ctx, data);
    cnn_mem_free(ctx, chunk);
    return st;
}
