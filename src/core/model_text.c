/* model_text.c — the .cnn model text: tokenizer, key=value access for layer parse callbacks, printing.
 *
 * Grammar (one layer per line):
 *   line    := [layer] [# comment]
 *   layer   := TYPE { KEY=VALUE }        whitespace-separated, no spaces around '='
 *   common  := name=ID  from=ID[,ID...]  init=default|pytorch|kaiming_uniform|kaiming_normal|
 *              xavier_uniform|xavier_normal
 * Everything else is read by the layer's parse callback through cnn_kv_*; a key nobody read is an error
 * ("model.cnn:4:12: conv2d: unknown key 'strid'"). Positions are 1-based line:column of the key or value. */
#include "net_internal.h"
#include "sys_alloc.h" /* plain heap that tests can fail (the parsed layers are freed with free() by net.c) */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kv_entry {
    const char *key, *val;
    size_t key_len, val_len;
    size_t key_col, val_col;
    int used;
};

#define KV_MAX 64

struct cnn_kv {
    cnn_ctx *ctx;
    const char *origin;
    size_t line, type_col;
    const char *type;
    size_t type_len;
    size_t n;
    struct kv_entry e[KV_MAX];
};

static struct kv_entry *kv_find(struct cnn_kv *kv, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i < kv->n; i++)
        if (kv->e[i].key_len == kl && !memcmp(kv->e[i].key, key, kl)) {
            kv->e[i].used = 1;
            return &kv->e[i];
        }
    return NULL;
}

static cnn_status kv_verr(struct cnn_kv *kv, size_t col, const char *fmt, va_list ap) {
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: %.*s: %s", kv->origin, kv->line, col,
                     (int)kv->type_len, kv->type, msg);
}

static cnn_status kv_err_at(struct cnn_kv *kv, size_t col, const char *fmt, ...) CNN_PRINTF(3, 4);
static cnn_status kv_err_at(struct cnn_kv *kv, size_t col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cnn_status s = kv_verr(kv, col, fmt, ap);
    va_end(ap);
    return s;
}

cnn_status cnn_kv_error(struct cnn_kv *kv, const char *key, const char *fmt, ...) {
    size_t col = kv->type_col;
    if (key) {
        size_t kl = strlen(key);
        for (size_t i = 0; i < kv->n; i++)
            if (kv->e[i].key_len == kl && !memcmp(kv->e[i].key, key, kl)) col = kv->e[i].val_col;
    }
    va_list ap;
    va_start(ap, fmt);
    cnn_status s = kv_verr(kv, col, fmt, ap);
    va_end(ap);
    return s;
}

cnn_status cnn_kv_str(struct cnn_kv *kv, const char *key, const char **val, size_t *len, int *present) {
    struct kv_entry *e = kv_find(kv, key);
    if (present) *present = e != NULL;
    if (e) {
        *val = e->val;
        *len = e->val_len;
    }
    return CNN_OK;
}

static int copy_value(const struct kv_entry *e, char *buf, size_t n) {
    if (e->val_len + 1 > n) return 0;
    memcpy(buf, e->val, e->val_len);
    buf[e->val_len] = '\0';
    return 1;
}

cnn_status cnn_kv_int(struct cnn_kv *kv, const char *key, long min, long max, long *out, int *present) {
    struct kv_entry *e = kv_find(kv, key);
    if (present) *present = e != NULL;
    if (!e) return CNN_OK;
    char buf[64], *end;
    if (!copy_value(e, buf, sizeof buf) || !e->val_len)
        return kv_err_at(kv, e->val_col, "%s: expected an integer, got '%.*s'", key, (int)e->val_len, e->val);
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (*end || errno == ERANGE)
        return kv_err_at(kv, e->val_col, "%s: expected an integer, got '%s'", key, buf);
    if (v < min || v > max)
        return kv_err_at(kv, e->val_col, "%s: %ld is out of range [%ld, %ld]", key, v, min, max);
    *out = v;
    return CNN_OK;
}

cnn_status cnn_kv_size(struct cnn_kv *kv, const char *key, size_t min, size_t max, size_t *out, int *present) {
    long v = 0;
    int pr = 0;
    if (max > (size_t)LONG_MAX) max = (size_t)LONG_MAX;
    if (min > max) min = max;
    cnn_status s = cnn_kv_int(kv, key, (long)min, (long)max, &v, &pr);
    if (present) *present = pr;
    if (s == CNN_OK && pr) *out = (size_t)v;
    return s;
}

cnn_status cnn_kv_float(struct cnn_kv *kv, const char *key, double min, double max, double *out, int *present) {
    struct kv_entry *e = kv_find(kv, key);
    if (present) *present = e != NULL;
    if (!e) return CNN_OK;
    char buf[64], *end;
    if (!copy_value(e, buf, sizeof buf) || !e->val_len)
        return kv_err_at(kv, e->val_col, "%s: expected a number, got '%.*s'", key, (int)e->val_len, e->val);
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || !isfinite(v)) return kv_err_at(kv, e->val_col, "%s: expected a finite number, got '%s'", key, buf);
    if (v < min || v > max) return kv_err_at(kv, e->val_col, "%s: %g is out of range [%g, %g]", key, v, min, max);
    *out = v;
    return CNN_OK;
}

cnn_status cnn_kv_bool(struct cnn_kv *kv, const char *key, int *out, int *present) {
    static const char *const choices[] = {"0", "1", "false", "true", "no", "yes", "off", "on", NULL};
    int idx = 0, pr = 0;
    cnn_status s = cnn_kv_enum(kv, key, choices, &idx, &pr);
    if (present) *present = pr;
    if (s == CNN_OK && pr) *out = idx & 1;
    return s;
}

cnn_status cnn_kv_enum(struct cnn_kv *kv, const char *key, const char *const *choices, int *out, int *present) {
    struct kv_entry *e = kv_find(kv, key);
    if (present) *present = e != NULL;
    if (!e) return CNN_OK;
    for (int i = 0; choices[i]; i++)
        if (strlen(choices[i]) == e->val_len && !memcmp(choices[i], e->val, e->val_len)) {
            *out = i;
            return CNN_OK;
        }
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (i) strncat(list, "|", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    return kv_err_at(kv, e->val_col, "%s: expected one of %s, got '%.*s'", key, list, (int)e->val_len, e->val);
}

/* ---- tokenizing ---- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static int valid_name(const char *s, size_t n) {
    if (!n || n >= CNN_NAME_MAX) return 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static const char *const init_names[] = {"default",        "pytorch",        "kaiming_uniform", "kaiming_normal",
                                         "xavier_uniform", "xavier_normal", NULL};

const char *cnn_init_name(cnn_init m) {
    return (m >= 0 && m <= CNN_INIT_XAVIER_NORMAL) ? init_names[m] : "default";
}

/* One parsed line, before names are resolved. */
struct pending {
    cnn_layer L;
    size_t from_count;
    char from[CNN_MAX_INPUTS][CNN_NAME_MAX];
    size_t from_col;
    size_t line;
    int named;
};

/* Split one line into kv; returns CNN_OK with kv->type_len == 0 for blank lines. */
static cnn_status tokenize_line(struct cnn_kv *kv, const char *s, size_t len) {
    size_t i = 0;
    kv->n = 0;
    kv->type_len = 0;
    for (size_t j = 0; j < len; j++)
        if (s[j] == '#') {
            len = j;
            break;
        }
    while (i < len && is_space(s[i])) i++;
    if (i == len) return CNN_OK;
    kv->type = s + i;
    kv->type_col = i + 1;
    while (i < len && !is_space(s[i])) i++;
    kv->type_len = (size_t)(s + i - kv->type);
    for (size_t j = 0; j < kv->type_len; j++)
        if (kv->type[j] == '=')
            return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: expected a layer type first, got '%.*s'",
                             kv->origin, kv->line, kv->type_col, (int)kv->type_len, kv->type);
    for (;;) {
        while (i < len && is_space(s[i])) i++;
        if (i == len) break;
        size_t start = i;
        while (i < len && !is_space(s[i])) i++;
        const char *tok = s + start;
        size_t tl = i - start;
        const char *eq = memchr(tok, '=', tl);
        if (!eq || eq == tok)
            return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: %.*s: expected key=value, got '%.*s'", kv->origin,
                             kv->line, start + 1, (int)kv->type_len, kv->type, (int)tl, tok);
        if (kv->n == KV_MAX)
            return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: too many keys (at most %d)", kv->origin, kv->line,
                             start + 1, KV_MAX);
        struct kv_entry *e = &kv->e[kv->n];
        e->key = tok;
        e->key_len = (size_t)(eq - tok);
        e->val = eq + 1;
        e->val_len = tl - e->key_len - 1;
        e->key_col = start + 1;
        e->val_col = start + e->key_len + 2;
        e->used = 0;
        for (size_t k = 0; k < kv->n; k++)
            if (kv->e[k].key_len == e->key_len && !memcmp(kv->e[k].key, e->key, e->key_len))
                return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: %.*s: key '%.*s' given twice", kv->origin,
                                 kv->line, e->key_col, (int)kv->type_len, kv->type, (int)e->key_len, e->key);
        kv->n++;
    }
    return CNN_OK;
}

static cnn_status parse_line(struct cnn_kv *kv, struct pending *p, cnn_ctx *ctx, const char *origin) {
    cnn_status st = CNN_OK;
    memset(p, 0, sizeof *p);
    p->line = kv->line;
    const struct cnn_layer_ops *ops = cnn_layer_ops_find(kv->type, kv->type_len);
    if (!ops)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: unknown layer type '%.*s'", origin, kv->line, kv->type_col,
                         (int)kv->type_len, kv->type);
    p->L.ops = ops;
    p->L.ctx = ctx;
    p->L.origin = origin;
    p->L.line = kv->line;
    /* common keys */
    const char *v;
    size_t vl;
    int present;
    cnn_kv_str(kv, "name", &v, &vl, &present);
    if (present) {
        if (!valid_name(v, vl)) return cnn_kv_error(kv, "name", "invalid layer name '%.*s' (letters, digits, _ and -, "
                                                                "starting with a letter, at most %d characters)",
                                                    (int)vl, v, CNN_NAME_MAX - 1);
        memcpy(p->L.name, v, vl);
        p->L.name[vl] = '\0';
        p->named = 1;
    }
    cnn_kv_str(kv, "from", &v, &vl, &present);
    if (present) {
        for (size_t k = 0; k < kv->n; k++)
            if (kv->e[k].key_len == 4 && !memcmp(kv->e[k].key, "from", 4)) p->from_col = kv->e[k].val_col;
        size_t i = 0;
        while (i <= vl) {
            size_t j = i;
            while (j < vl && v[j] != ',') j++;
            if (!valid_name(v + i, j - i))
                return cnn_kv_error(kv, "from", "invalid layer name '%.*s' in from=", (int)(j - i), v + i);
            if (p->from_count == CNN_MAX_INPUTS) return cnn_kv_error(kv, "from", "at most %d inputs", CNN_MAX_INPUTS);
            memcpy(p->from[p->from_count], v + i, j - i);
            p->from[p->from_count][j - i] = '\0';
            p->from_count++;
            i = j + 1;
        }
    }
    int init = 0;
    CNN_TRY(cnn_kv_enum(kv, "init", init_names, &init, NULL));
    p->L.init = (cnn_init)init;
    if (ops->params_size) {
        p->L.params = cnn_sys_calloc(1, ops->params_size);
        if (!p->L.params) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing %s", origin);
    }
    if (ops->parse) CNN_TRY(ops->parse(kv, p->L.params));
    for (size_t k = 0; k < kv->n; k++)
        if (!kv->e[k].used)
            return cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: %s: unknown key '%.*s'", origin, kv->line,
                             kv->e[k].key_col, ops->name, (int)kv->e[k].key_len, kv->e[k].key);
cleanup:
    return st;
}

/* A `recipe` line (src/core/recipe.c reads its keys); a key it did not read is an error. */
static int is_recipe_line(const struct cnn_kv *kv) { return kv->type_len == 6 && !memcmp(kv->type, "recipe", 6); }

static cnn_status parse_recipe(struct cnn_kv *kv, cnn_recipe *r) {
    cnn_status st = cnn_recipe_parse_kv(kv->ctx, kv, r, kv->line);
    if (st != CNN_OK) return st;
    for (size_t k = 0; k < kv->n; k++)
        if (!kv->e[k].used)
            return cnn_error(kv->ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: recipe: unknown key '%.*s'", kv->origin, kv->line,
                             kv->e[k].key_col, (int)kv->e[k].key_len, kv->e[k].key);
    return CNN_OK;
}

cnn_status cnn_recipe_parse_line(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_recipe *out) {
    memset(out, 0, sizeof *out);
    struct cnn_kv *kv = cnn_sys_calloc(1, sizeof *kv);
    if (!kv) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing a recipe");
    kv->ctx = ctx;
    kv->origin = origin ? origin : "<recipe>";
    kv->line = 1;
    cnn_status st = tokenize_line(kv, text, len);
    if (st == CNN_OK && !is_recipe_line(kv))
        st = cnn_error(ctx, CNN_ERR_FORMAT, "%s:1:1: expected a 'recipe' line", kv->origin);
    if (st == CNN_OK) st = parse_recipe(kv, out);
    if (st != CNN_OK) memset(out, 0, sizeof *out);
    free(kv);
    return st;
}

cnn_status cnn_recipe_parse(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_recipe *out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_recipe_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!text) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_recipe_parse: text is NULL");
    struct cnn_kv *kv = cnn_sys_calloc(1, sizeof *kv);
    if (!kv) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing a recipe");
    kv->ctx = ctx;
    kv->origin = origin ? origin : "<model>";
    cnn_status st = CNN_OK;
    size_t line = 0;
    for (size_t i = 0; i <= len && st == CNN_OK;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        kv->line = ++line;
        if (j - i >= 6 && memchr(text + i, 'r', j - i) && !memchr(text + i, '\0', j - i)) {
            cnn_status t = tokenize_line(kv, text + i, j - i);
            if (t == CNN_OK && kv->type_len && is_recipe_line(kv)) {
                if (out->line) {
                    st = cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: recipe: a second recipe line (the first is line %zu)",
                                   kv->origin, line, kv->type_col, out->line);
                    break;
                }
                st = parse_recipe(kv, out);
            }
        }
        i = j + 1;
    }
    if (st != CNN_OK) memset(out, 0, sizeof *out);
    free(kv);
    return st;
}

static int name_taken(struct pending *p, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(p[i].L.name, name)) return 1;
    return 0;
}

cnn_status cnn_net_parse(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_net **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_parse: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!text) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_parse: text is NULL");
    if (!origin) origin = "<model>";
    cnn_status st = CNN_OK;
    struct cnn_kv *kv = cnn_sys_calloc(1, sizeof *kv);
    struct pending *p = NULL;
    size_t n = 0, cap = 0;
    cnn_recipe recipe;
    memset(&recipe, 0, sizeof recipe);
    if (!kv) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing %s", origin);
    kv->ctx = ctx;
    kv->origin = origin;
    size_t line = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        line++;
        kv->line = line;
        for (size_t k = i; k < j; k++)
            if (text[k] == '\0')
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: NUL byte in model text", origin, line, k - i + 1));
        CNN_TRY(tokenize_line(kv, text + i, j - i));
        if (kv->type_len && is_recipe_line(kv)) {
            if (recipe.line)
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: recipe: a second recipe line (the first is line %zu)",
                                  origin, line, kv->type_col, recipe.line));
            CNN_TRY(parse_recipe(kv, &recipe));
        } else if (kv->type_len) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                if (nc > 100000) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: more than 100000 layers", origin));
                struct pending *np = cnn_sys_realloc(p, nc * sizeof *np);
                if (!np) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing %s", origin));
                p = np;
                cap = nc;
            }
            st = parse_line(kv, &p[n], ctx, origin);
            n++; /* owns params even on failure, so cleanup frees it */
            if (st != CNN_OK) goto cleanup;
        }
        i = j + 1;
    }
    if (n == 0) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no layers (expected an 'input c=.. h=.. w=..' line first)", origin));
    if (p[0].L.ops != &cnn_layer_input)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: the first layer must be 'input', got '%s'", origin, p[0].line,
                          p[0].L.ops->name));
    /* names: explicit ones must be unique; generated ones avoid every explicit one */
    for (size_t i = 0; i < n; i++)
        if (p[i].named)
            for (size_t k = 0; k < i; k++)
                if (p[k].named && !strcmp(p[k].L.name, p[i].L.name))
                    CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: layer name '%s' is already used on line %zu", origin,
                                      p[i].line, p[i].L.name, p[k].line));
    for (size_t i = 0; i < n; i++) {
        if (p[i].named) continue;
        if (p[i].L.ops == &cnn_layer_input && !name_taken(p, n, "input")) {
            strcpy(p[i].L.name, "input");
            continue;
        }
        size_t k = 0; /* <type><k>, k counting layers of that type so far, bumped past taken names */
        for (size_t q = 0; q <= i; q++)
            if (p[q].L.ops == p[i].L.ops) k++;
        char cand[CNN_NAME_MAX];
        for (;; k++) {
            snprintf(cand, sizeof cand, "%s%zu", p[i].L.ops->name, k);
            if (!name_taken(p, n, cand)) break;
        }
        strcpy(p[i].L.name, cand);
    }
    /* inputs */
    for (size_t i = 0; i < n; i++) {
        cnn_layer *L = &p[i].L;
        const struct cnn_layer_ops *ops = L->ops;
        if (ops == &cnn_layer_input) {
            if (i != 0)
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: only one 'input' layer is allowed (first at line %zu)",
                                  origin, p[i].line, p[0].line));
            if (p[i].from_count)
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: input takes no from=", origin, p[i].line,
                                  p[i].from_col));
            continue;
        }
        if (p[i].from_count == 0) {
            L->n_inputs = 1;
            L->inputs[0] = i - 1;
        } else {
            L->n_inputs = p[i].from_count;
            for (size_t k = 0; k < p[i].from_count; k++) {
                size_t q = 0;
                while (q < i && strcmp(p[q].L.name, p[i].from[k])) q++;
                if (q == i) {
                    int later = 0;
                    for (size_t r = i; r < n; r++)
                        if (!strcmp(p[r].L.name, p[i].from[k])) later = 1;
                    CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu:%zu: %s '%s': from=%s: %s", origin, p[i].line,
                                      p[i].from_col, ops->name, L->name, p[i].from[k],
                                      later ? "a layer can only read layers defined before it" : "no layer of that name"));
                }
                L->inputs[k] = q;
            }
        }
        if (L->n_inputs < ops->min_inputs || L->n_inputs > ops->max_inputs)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: %s '%s' takes %zu to %zu inputs, got %zu", origin, p[i].line,
                              ops->name, L->name, ops->min_inputs, ops->max_inputs, L->n_inputs));
        if (ops->is_loss && i != n - 1)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: loss layer %s must be the last layer", origin, p[i].line,
                              ops->name));
    }
    {
        cnn_layer *layers = cnn_sys_calloc(n, sizeof *layers);
        if (!layers) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory parsing %s", origin));
        for (size_t i = 0; i < n; i++) {
            layers[i] = p[i].L;
            p[i].L.params = NULL;
        }
        st = cnn_net_build(ctx, layers, n, origin, out); /* takes ownership of layers */
        if (st == CNN_OK) (*out)->recipe = recipe;
    }
cleanup:
    for (size_t i = 0; i < n; i++) free(p[i].L.params);
    free(p);
    free(kv);
    return st;
}

cnn_status cnn_net_load(cnn_ctx *ctx, const char *path, cnn_net **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_load: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cnn_status st = CNN_OK;
    for (;;) {
        if (len + 4096 > cap) {
            size_t nc = cap ? cap * 2 : 8192;
            if (nc > (64u << 20)) {
                st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: model text larger than 64 MiB", path);
                goto cleanup;
            }
            char *nb = cnn_sys_realloc(buf, nc);
            if (!nb) {
                st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory reading", path);
                goto cleanup;
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                st = cnn_error(ctx, CNN_ERR_IO, "%s: read error: %s", path, strerror(errno));
                goto cleanup;
            }
            break;
        }
    }
    st = cnn_net_parse(ctx, buf ? buf : "", len, path, out);
cleanup:
    free(buf);
    fclose(f);
    return st;
}

cnn_status cnn_net_to_text(const cnn_net *net, char **out) {
    if (!out) return CNN_ERR_INVALID_ARG;
    *out = NULL;
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_strbuf b = {0};
    cnn_strbuf_printf(&b, "# model text written by cnn %s from %s\n", cnn_version_string(), net->origin);
    if (net->recipe.set) {
        size_t need = cnn_recipe_format(&net->recipe, NULL, 0);
        char *rt = cnn_sys_malloc(need + 1);
        if (rt) {
            cnn_recipe_format(&net->recipe, rt, need + 1);
            cnn_strbuf_printf(&b, "recipe %s\n", rt);
            free(rt);
        } else {
            b.failed = true;
        }
    }
    for (size_t i = 0; i < net->n_layers; i++) {
        const cnn_layer *L = &net->layers[i];
        cnn_strbuf_printf(&b, "%s name=%s", L->ops->name, L->name);
        int implicit = L->n_inputs == 1 && L->inputs[0] + 1 == i;
        if (L->n_inputs && !implicit) {
            cnn_strbuf_printf(&b, " from=");
            for (size_t k = 0; k < L->n_inputs; k++)
                cnn_strbuf_printf(&b, "%s%s", k ? "," : "", net->layers[L->inputs[k]].name);
        }
        if (L->init != CNN_INIT_DEFAULT) cnn_strbuf_printf(&b, " init=%s", cnn_init_name(L->init));
        if (L->ops->print) L->ops->print(L->params, &b);
        cnn_strbuf_printf(&b, "\n");
    }
    cnn_status st = CNN_OK;
    if (b.failed) {
        st = cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory writing model text");
    } else {
        char *s = cnn_mem_alloc(net->ctx, b.len + 1);
        if (!s) st = cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory writing model text");
        else {
            memcpy(s, b.data, b.len + 1);
            *out = s;
        }
    }
    cnn_strbuf_release(&b);
    return st;
}
