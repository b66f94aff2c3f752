/* recipe.c — the `recipe` line of the model text (training settings), the one-cycle schedule, gradient
 * clipping by global norm and the validation split.
 *
 * Recipe (docs/formats.md "Recipe"): one line `recipe KEY=VALUE ...` anywhere in the model text (at most
 * one), read with the cnn_kv_* helpers of the layer lines, so errors carry file:line:col and a key nobody
 * reads is an error. The key table below is the one list of keys: parsing, printing (cnn_recipe_format,
 * cnn_net_to_text) and the CLI (cmd_train.c turns each key into its --option) all walk it.
 *
 * One-cycle (cnn_onecycle_lr): PyTorch's torch.optim.lr_scheduler.OneCycleLR, anneal_strategy='cos',
 * three_phase=False: phases end at e1 = W - 1 (W = warmup steps, default 0.3 * T) and e2 = T - 1;
 *   step <= e1: lr = cos_anneal(initial, max, step / e1)
 *   else      : lr = cos_anneal(max, min, (step - e1) / (e2 - e1)), min from e2 on
 *   cos_anneal(a, b, pct) = b + (a - b) / 2 * (1 + cos(pi * pct)),  initial = max / div,  min = initial / final_div
 * A phase of length <= 0 is skipped (PyTorch would divide by zero).
 *
 * Clipping (cnn_net_clip_grad_norm): torch.nn.utils.clip_grad_norm_ (norm_type 2) except for the 1e-6 PyTorch
 * adds to the norm in the coefficient: coef = max_norm / norm, applied only when norm > max_norm. The sum of
 * squares is taken in double over fixed chunks of the gradient arena (the chunking depends only on the arena
 * size), chunk sums added in order: the same result for any thread count.
 */
#include "net_internal.h"
#include "sys_alloc.h" /* plain heap that tests can fail */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

/* ---------------------------------------------------------------- the key table */

typedef enum { K_ENUM, K_FLOAT, K_BOOL, K_U64, K_TEXT } key_kind;

static const char *const optimizer_choices[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_choices[] = {"constant", "step", "cosine", "onecycle", NULL};

typedef struct recipe_key {
    const char *name;
    unsigned bit;
    key_kind kind;
    size_t off;
    double lo, hi;
    int lo_open, hi_open;
    const char *const *choices;
} recipe_key;

#define OFF(f) offsetof(cnn_recipe, f)
static const recipe_key keys[] = {
    {"optimizer", CNN_RECIPE_OPTIMIZER, K_ENUM, OFF(optimizer), 0, 0, 0, 0, optimizer_choices},
    {"lr", CNN_RECIPE_LR, K_FLOAT, OFF(lr), 0, 1000, 1, 0, NULL},
    {"momentum", CNN_RECIPE_MOMENTUM, K_FLOAT, OFF(momentum), 0, 1, 0, 1, NULL},
    {"nesterov", CNN_RECIPE_NESTEROV, K_BOOL, OFF(nesterov), 0, 0, 0, 0, NULL},
    {"weight_decay", CNN_RECIPE_WEIGHT_DECAY, K_FLOAT, OFF(weight_decay), 0, 10, 0, 0, NULL},
    {"schedule", CNN_RECIPE_SCHEDULE, K_ENUM, OFF(schedule), 0, 0, 0, 0, schedule_choices},
    {"warmup_epochs", CNN_RECIPE_WARMUP_EPOCHS, K_FLOAT, OFF(warmup_epochs), 0, 1e6, 0, 0, NULL},
    {"step_epochs", CNN_RECIPE_STEP_EPOCHS, K_FLOAT, OFF(step_epochs), 0, 1e6, 1, 0, NULL},
    {"gamma", CNN_RECIPE_GAMMA, K_FLOAT, OFF(gamma), 0, 10, 1, 0, NULL},
    {"div_factor", CNN_RECIPE_DIV_FACTOR, K_FLOAT, OFF(div_factor), 1, 1e6, 0, 0, NULL},
    {"final_div_factor", CNN_RECIPE_FINAL_DIV_FACTOR, K_FLOAT, OFF(final_div_factor), 1, 1e9, 0, 0, NULL},
    {"epochs", CNN_RECIPE_EPOCHS, K_U64, OFF(epochs), 1, 1000000, 0, 0, NULL},
    {"batch", CNN_RECIPE_BATCH, K_U64, OFF(batch), 1, 65536, 0, 0, NULL},
    {"seed", CNN_RECIPE_SEED, K_U64, OFF(seed), 0, 9.2e18, 0, 0, NULL},
    {"label_smoothing", CNN_RECIPE_LABEL_SMOOTHING, K_FLOAT, OFF(label_smoothing), 0, 1, 0, 1, NULL},
    {"clip_norm", CNN_RECIPE_CLIP_NORM, K_FLOAT, OFF(clip_norm), 0, 1e9, 1, 0, NULL},
    {"ema", CNN_RECIPE_EMA, K_FLOAT, OFF(ema), 0, 1, 1, 1, NULL},
    {"val_split", CNN_RECIPE_VAL_SPLIT, K_FLOAT, OFF(val_split), 0, 1, 1, 1, NULL},
    {"normalize", CNN_RECIPE_NORMALIZE, K_TEXT, OFF(normalize), 0, 0, 0, 0, NULL},
    {"augment", CNN_RECIPE_AUGMENT, K_TEXT, OFF(augment), 0, 0, 0, 0, NULL},
    {"tta", CNN_RECIPE_TTA, K_BOOL, OFF(tta), 0, 0, 0, 0, NULL},
    {"lanes", CNN_RECIPE_LANES, K_U64, OFF(lanes), 0, CNN_LANES_MAX, 0, 0, NULL},
};
#undef OFF
#define N_KEYS (sizeof keys / sizeof keys[0])

size_t cnn_recipe_num_keys(void) { return N_KEYS; }

const char *cnn_recipe_key(size_t i, unsigned *bit) {
    if (i >= N_KEYS) {
        if (bit) *bit = 0;
        return NULL;
    }
    if (bit) *bit = keys[i].bit;
    return keys[i].name;
}

static void range_text(const recipe_key *k, char *buf, size_t n) {
    snprintf(buf, n, "%c%g, %g%c", k->lo_open ? '(' : '[', k->lo, k->hi, k->hi_open ? ')' : ']');
}

/* "MEAN,STD": two finite numbers, STD > 0. */
static int valid_normalize(const char *s) {
    char *end;
    double m = strtod(s, &end);
    if (end == s || *end != ',' || !isfinite(m)) return 0;
    const char *t = end + 1;
    double sd = strtod(t, &end);
    return end != t && *end == 0 && isfinite(sd) && sd > 0;
}

cnn_status cnn_recipe_parse_kv(cnn_ctx *ctx, struct cnn_kv *kv, cnn_recipe *r, size_t line) {
    memset(r, 0, sizeof *r);
    r->line = line;
    for (size_t i = 0; i < N_KEYS; i++) {
        const recipe_key *k = &keys[i];
        char *field = (char *)r + k->off;
        int present = 0;
        cnn_status st = CNN_OK;
        switch (k->kind) {
        case K_ENUM:
            st = cnn_kv_enum(kv, k->name, k->choices, (int *)(void *)field, &present);
            break;
        case K_BOOL:
            st = cnn_kv_bool(kv, k->name, (int *)(void *)field, &present);
            break;
        case K_FLOAT: {
            double v = 0;
            st = cnn_kv_float(kv, k->name, -DBL_MAX, DBL_MAX, &v, &present); /* the range below, open or closed */
            if (st == CNN_OK && present &&
                (v < k->lo || v > k->hi || (k->lo_open && !(v > k->lo)) || (k->hi_open && !(v < k->hi)))) {
                char rg[64];
                range_text(k, rg, sizeof rg);
                return cnn_kv_error(kv, k->name, "%s: %g is out of range %s", k->name, v, rg);
            }
            if (present) memcpy(field, &v, sizeof v);
            break;
        }
        case K_U64: {
            long v = 0;
            st = cnn_kv_int(kv, k->name, (long)k->lo, k->hi > 9e18 ? 9000000000000000000L : (long)k->hi, &v, &present);
            if (present && st == CNN_OK) {
                uint64_t u = (uint64_t)v;
                memcpy(field, &u, sizeof u);
            }
            break;
        }
        case K_TEXT: {
            const char *v;
            size_t vl;
            cnn_kv_str(kv, k->name, &v, &vl, &present);
            if (present) {
                if (vl == 0 || vl >= CNN_RECIPE_TEXT_MAX)
                    return cnn_kv_error(kv, k->name, "%s: expected 1 to %d characters, got %zu", k->name,
                                        CNN_RECIPE_TEXT_MAX - 1, vl);
                memcpy(field, v, vl);
                field[vl] = 0;
                if (k->bit == CNN_RECIPE_NORMALIZE && !valid_normalize(field))
                    return cnn_kv_error(kv, k->name, "normalize: expected MEAN,STD (STD > 0), got '%s'", field);
                if (k->bit == CNN_RECIPE_AUGMENT) { /* the spec of part "augment" (cnn_augment_parse) */
                    cnn_augment_spec spec;
                    if (cnn_augment_parse(ctx, field, &spec) != CNN_OK) {
                        char why[512];
                        snprintf(why, sizeof why, "%s", cnn_ctx_last_error(ctx));
                        return cnn_kv_error(kv, k->name, "augment: %s", why);
                    }
                }
            }
            break;
        }
        }
        if (st != CNN_OK) return st;
        if (present) r->set |= k->bit;
    }
    /* combinations the CLI would refuse, reported here with the position */
    if ((r->set & (CNN_RECIPE_MOMENTUM | CNN_RECIPE_NESTEROV)) && (r->set & CNN_RECIPE_OPTIMIZER) &&
        r->optimizer != CNN_OPT_SGD)
        return cnn_kv_error(kv, (r->set & CNN_RECIPE_MOMENTUM) ? "momentum" : "nesterov",
                            "momentum and nesterov apply only to optimizer=sgd");
    if ((r->set & CNN_RECIPE_NESTEROV) && r->nesterov && (r->set & CNN_RECIPE_MOMENTUM) && !(r->momentum > 0))
        return cnn_kv_error(kv, "nesterov", "nesterov needs momentum greater than 0");
    int sched = (r->set & CNN_RECIPE_SCHEDULE) ? r->schedule : CNN_SCHED_CONSTANT;
    if ((r->set & (CNN_RECIPE_STEP_EPOCHS | CNN_RECIPE_GAMMA)) && sched != CNN_SCHED_STEP)
        return cnn_kv_error(kv, (r->set & CNN_RECIPE_STEP_EPOCHS) ? "step_epochs" : "gamma",
                            "step_epochs and gamma apply only to schedule=step");
    if (sched == CNN_SCHED_STEP && !(r->set & CNN_RECIPE_STEP_EPOCHS))
        return cnn_kv_error(kv, "schedule", "schedule=step needs step_epochs=S");
    if ((r->set & (CNN_RECIPE_DIV_FACTOR | CNN_RECIPE_FINAL_DIV_FACTOR)) && sched != CNN_SCHED_ONECYCLE)
        return cnn_kv_error(kv, (r->set & CNN_RECIPE_DIV_FACTOR) ? "div_factor" : "final_div_factor",
                            "div_factor and final_div_factor apply only to schedule=onecycle");
    return CNN_OK;
}

/* Shortest of %.15g / %.17g that reads back as v. */
static void format_double(char *buf, size_t n, double v) {
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, n, "%.17g", v);
}

size_t cnn_recipe_format(const cnn_recipe *r, char *buf, size_t n) {
    size_t len = 0;
    if (buf && n) buf[0] = 0;
    if (!r) return 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const recipe_key *k = &keys[i];
        if (!(r->set & k->bit)) continue;
        const char *field = (const char *)r + k->off;
        char val[CNN_RECIPE_TEXT_MAX + 32];
        switch (k->kind) {
        case K_ENUM: {
            int v;
            memcpy(&v, field, sizeof v);
            int m = 0;
            while (k->choices[m]) m++;
            snprintf(val, sizeof val, "%s", v >= 0 && v < m ? k->choices[v] : "?");
            break;
        }
        case K_BOOL: {
            int v;
            memcpy(&v, field, sizeof v);
            snprintf(val, sizeof val, "%d", v ? 1 : 0);
            break;
        }
        case K_FLOAT: {
            double v;
            memcpy(&v, field, sizeof v);
            format_double(val, sizeof val, v);
            break;
        }
        case K_U64: {
            uint64_t v;
            memcpy(&v, field, sizeof v);
            snprintf(val, sizeof val, "%llu", (unsigned long long)v);
            break;
        }
        case K_TEXT:
            snprintf(val, sizeof val, "%.*s", CNN_RECIPE_TEXT_MAX - 1, field);
            break;
        }
        int w = snprintf(buf && len < n ? buf + len : NULL, buf && len < n ? n - len : 0, "%s%s=%s", len ? " " : "",
                         k->name, val);
        if (w > 0) len += (size_t)w;
    }
    return len;
}

cnn_status cnn_net_get_recipe(const cnn_net *net, cnn_recipe *out) {
    if (!out) return CNN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!net) return CNN_ERR_INVALID_ARG;
    *out = net->recipe;
    return CNN_OK;
}

cnn_status cnn_net_set_recipe(cnn_net *net, const cnn_recipe *r) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (!r || !r->set) {
        memset(&net->recipe, 0, sizeof net->recipe);
        return CNN_OK;
    }
    size_t need = cnn_recipe_format(r, NULL, 0);
    char *text = cnn_sys_malloc(need + 8);
    if (!text) return cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory setting the recipe");
    memcpy(text, "recipe ", 7);
    cnn_recipe_format(r, text + 7, need + 1);
    cnn_recipe parsed;
    cnn_status st = cnn_recipe_parse_line(net->ctx, text, strlen(text), "cnn_net_set_recipe", &parsed);
    free(text);
    if (st != CNN_OK) return st;
    parsed.line = net->recipe.line;
    net->recipe = parsed;
    return CNN_OK;
}

/* ---------------------------------------------------------------- one-cycle */

static double cos_anneal(double a, double b, double pct) { return b + (a - b) / 2.0 * (1.0 + cos(PI * pct)); }

float cnn_onecycle_lr(double max_lr, double total_steps, double warmup_steps, double div_factor,
                      double final_div_factor, double step) {
    if (!(step >= 0.0)) step = 0.0;
    if (!(div_factor > 0.0)) div_factor = 25.0;
    if (!(final_div_factor > 0.0)) final_div_factor = 1e4;
    double initial = max_lr / div_factor, lo = initial / final_div_factor;
    double w = warmup_steps > 0.0 ? warmup_steps : 0.3 * total_steps;
    double e1 = w - 1.0, e2 = total_steps - 1.0;
    if (step <= e1 && e1 > 0.0) return (float)cos_anneal(initial, max_lr, step / e1);
    double s1 = e1 > 0.0 ? e1 : 0.0;
    if (step >= e2 || !(e2 > s1)) return (float)(step >= e2 ? lo : max_lr);
    return (float)cos_anneal(max_lr, lo, (step - s1) / (e2 - s1));
}

/* ---------------------------------------------------------------- clipping */

#define CLIP_CHUNKS 256
#define CLIP_MIN_CHUNK ((size_t)16384)

typedef struct clip_job {
    float *g;
    size_t count, chunk, n_chunks;
    double sums[CLIP_CHUNKS];
    float coef;
} clip_job;

static void sumsq_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    clip_job *j = arg;
    size_t b = task * j->chunk, e = b + j->chunk < j->count ? b + j->chunk : j->count;
    double s = 0.0;
    for (size_t i = b; i < e; i++) s += (double)j->g[i] * (double)j->g[i];
    j->sums[task] = s;
}

static void scale_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    clip_job *j = arg;
    size_t b = task * j->chunk, e = b + j->chunk < j->count ? b + j->chunk : j->count;
    const float c = j->coef;
    for (size_t i = b; i < e; i++) j->g[i] *= c;
}

cnn_status cnn_net_clip_grad_norm(cnn_net *net, double max_norm, double *norm) {
    if (norm) *norm = 0.0;
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (!(max_norm > 0.0) || !isfinite(max_norm))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "clip_grad_norm: max_norm must be finite and > 0, got %g", max_norm);
    float *p, *g;
    size_t count;
    cnn_status st = cnn_net_arenas(net, &p, &g, &count);
    if (st != CNN_OK) return st;
    if (count && !g)
        return cnn_error(ctx, CNN_ERR_MISUSE, "clip_grad_norm: the network has no gradients (compile with CNN_COMPILE_TRAIN)");
    if (!count) return CNN_OK;
    clip_job job, *j = &job; /* on the stack: a training step allocates nothing */
    memset(j, 0, sizeof *j);
    j->g = g;
    j->count = count;
    j->chunk = (count + CLIP_CHUNKS - 1) / CLIP_CHUNKS;
    if (j->chunk < CLIP_MIN_CHUNK) j->chunk = CLIP_MIN_CHUNK;
    j->n_chunks = (count + j->chunk - 1) / j->chunk;
    cnn_pool_for(ctx, j->n_chunks, sumsq_task, j);
    double s = 0.0;
    for (size_t i = 0; i < j->n_chunks; i++) s += j->sums[i];
    double nrm = sqrt(s);
    if (norm) *norm = nrm;
    if (!isfinite(nrm))
        return cnn_error(ctx, CNN_ERR_NUMERIC, "clip_grad_norm: the gradient norm is not finite");
    if (nrm > max_norm) {
        j->coef = (float)(max_norm / nrm);
        cnn_pool_for(ctx, j->n_chunks, scale_task, j);
    }
    return CNN_OK;
}

/* ---------------------------------------------------------------- validation split */

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

cnn_status cnn_val_split(cnn_ctx *ctx, size_t n, double fraction, uint64_t seed, size_t *idx, size_t *n_val) {
    if (n_val) *n_val = 0;
    if (!idx || !n_val) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "val_split: NULL argument");
    if (!(fraction > 0.0 && fraction < 1.0))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "val_split: fraction must be in (0, 1), got %g", fraction);
    if (n < 2) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "val_split: %zu samples cannot be split", n);
    double want = floor(fraction * (double)n + 0.5);
    size_t nv = want < 1.0 ? 1 : want > (double)(n - 1) ? n - 1 : (size_t)want;
    cnn_shuffle_indices(idx, n, seed);
    qsort(idx, nv, sizeof *idx, cmp_size);
    qsort(idx + nv, n - nv, sizeof *idx, cmp_size);
    *n_val = nv;
    return CNN_OK;
}
