/* optimizer.c — SGD (momentum, Nesterov), Adam and AdamW over a net's contiguous parameter arena, and the
 * learning-rate schedules. Semantics are PyTorch's torch.optim.SGD / Adam / AdamW (defaults: dampening 0,
 * maximize off, amsgrad off).
 *
 * Per parameter p with gradient grad, at learning rate lr (the argument of cnn_optimizer_step), step t =
 * 1, 2, ... (cnn_optimizer_steps() before the step + 1):
 *   SGD    g = grad + wd * p
 *          momentum > 0: buf = (t == 1 ? g : momentum * buf + g);  g = nesterov ? g + momentum * buf : buf
 *          p -= lr * g
 *   Adam   g = grad + wd * p
 *          m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *          p -= lr * mhat / (sqrt(vhat) + eps),  mhat = m / (1 - b1^t),  vhat = v / (1 - b2^t)
 *          (computed as PyTorch does: p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps))
 *   AdamW  p *= 1 - lr * wd; then Adam with g = grad (decoupled weight decay).
 * State (momentum buffer; Adam m, v) is one array per kind in the layout of the parameter arena, zeroed and
 * allocated at create; nothing is allocated by a step. The per-step scalars (bias corrections) are computed
 * in double, the element updates in float.
 *
 * Threads: the arena is split into contiguous ranges (at least MIN_RANGE floats each, at most one per
 * thread) run with cnn_pool_for. The update is elementwise, so results are bit-identical for any thread
 * count.
 *
 * Schedules (cnn_schedule_lr, step counted from 0):
 *   warmup   for step < warmup_steps: lr = base * (step + 1) / warmup_steps   (every kind)
 *   constant lr = base
 *   step     lr = base * gamma^floor(step / step_size)       (step_size <= 0: no decay)
 *   cosine   t = step - warmup_steps, T = total_steps - warmup_steps:
 *            lr = min + (base - min) * (1 + cos(pi * t / T)) / 2 for t < T, min_lr from T on (and if T <= 0)
 *   Negative or NaN steps count as step 0; a NULL schedule gives 0.
 *
 * References: PyTorch docs of torch.optim.SGD, Adam, AdamW (the pseudo-code sections); Kingma & Ba, "Adam",
 * ICLR 2015; Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019; Loshchilov & Hutter,
 * "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017 (cosine schedule).
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIN_RANGE ((size_t)16384)
#define PI 3.14159265358979323846

#if defined(_OPENMP)
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

struct cnn_optimizer {
    cnn_net *net;
    cnn_ctx *ctx;
    cnn_optimizer_options o;
    size_t count;  /* floats in the arena */
    float *state0; /* SGD momentum buffer, Adam m */
    float *state1; /* Adam v */
    uint64_t steps;
};

cnn_optimizer_options cnn_optimizer_options_default(cnn_optimizer_kind kind) {
    cnn_optimizer_options o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.lr = kind == CNN_OPT_SGD ? 0.01f : 0.001f;
    o.momentum = 0.0f;
    o.nesterov = 0;
    o.weight_decay = kind == CNN_OPT_ADAMW ? 0.01f : 0.0f;
    o.beta1 = 0.9f;
    o.beta2 = 0.999f;
    o.eps = 1e-8f;
    return o;
}

static cnn_status check_options(cnn_ctx *ctx, const cnn_optimizer_options *o) {
    if (o->kind != CNN_OPT_SGD && o->kind != CNN_OPT_ADAM && o->kind != CNN_OPT_ADAMW)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: unknown kind %d", (int)o->kind);
    if (!(o->lr >= 0.0f) || !isfinite(o->lr))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: lr must be finite and >= 0, got %g", (double)o->lr);
    if (!(o->weight_decay >= 0.0f) || !isfinite(o->weight_decay))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: weight_decay must be finite and >= 0, got %g",
                         (double)o->weight_decay);
    if (o->kind == CNN_OPT_SGD) {
        if (!(o->momentum >= 0.0f && o->momentum < 1.0f))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: momentum must be in [0, 1), got %g",
                             (double)o->momentum);
        if (o->nesterov && !(o->momentum > 0.0f))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: nesterov needs momentum > 0");
    } else {
        if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: beta1 must be in [0, 1), got %g",
                             (double)o->beta1);
        if (!(o->beta2 >= 0.0f && o->beta2 < 1.0f))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: beta2 must be in [0, 1), got %g",
                             (double)o->beta2);
        if (!(o->eps > 0.0f) || !isfinite(o->eps))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: eps must be finite and > 0, got %g",
                             (double)o->eps);
    }
    return CNN_OK;
}

/* The arenas, or CNN_ERR_MISUSE with a message when the net is not compiled for training. */
static cnn_status get_arenas(cnn_net *net, cnn_ctx *ctx, float **p, float **g, size_t *count) {
    *p = *g = NULL;
    *count = 0;
    cnn_status st = cnn_net_arenas(net, p, g, count);
    if (st == CNN_OK && *count && (!*p || !*g)) {
        *p = *g = NULL;
        *count = 0;
        return cnn_error(ctx, CNN_ERR_MISUSE, "optimizer: the network has no gradients (compile with CNN_COMPILE_TRAIN)");
    }
    if (st != CNN_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", cnn_ctx_last_error(ctx));
        *p = *g = NULL;
        *count = 0;
        return cnn_error(ctx, st, "optimizer: %s", why);
    }
    return CNN_OK;
}

cnn_status cnn_optimizer_create(cnn_net *net, const cnn_optimizer_options *opt, cnn_optimizer **out) {
    if (!out) return net ? cnn_error(cnn_net_ctx(net), CNN_ERR_INVALID_ARG, "optimizer: out is NULL")
                         : CNN_ERR_INVALID_ARG;
    *out = NULL;
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = cnn_net_ctx(net);
    if (!opt) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: options are NULL");
    cnn_status st = check_options(ctx, opt);
    if (st != CNN_OK) return st;
    float *p, *g;
    size_t count;
    st = get_arenas(net, ctx, &p, &g, &count);
    if (st != CNN_OK) return st;

    cnn_optimizer *o = cnn_mem_calloc(ctx, 1, sizeof *o);
    if (!o) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating the optimizer");
    o->net = net;
    o->ctx = ctx;
    o->o = *opt;
    o->count = count;
    int need0 = opt->kind != CNN_OPT_SGD || opt->momentum > 0.0f;
    int need1 = opt->kind != CNN_OPT_SGD;
    if (count && need0 && !(o->state0 = cnn_mem_calloc(ctx, count, sizeof(float)))) goto nomem;
    if (count && need1 && !(o->state1 = cnn_mem_calloc(ctx, count, sizeof(float)))) goto nomem;
    *out = o;
    return CNN_OK;
nomem:
    cnn_optimizer_free(o);
    return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating optimizer state (%zu floats)", count);
}

void cnn_optimizer_free(cnn_optimizer *opt) {
    if (!opt) return;
    cnn_ctx *ctx = opt->ctx;
    cnn_mem_free(ctx, opt->state0);
    cnn_mem_free(ctx, opt->state1);
    cnn_mem_free(ctx, opt);
}

uint64_t cnn_optimizer_steps(const cnn_optimizer *opt) { return opt ? opt->steps : 0; }

/* ---- the update ---- */

typedef struct step_job {
    float *p;
    const float *g;
    float *s0, *s1;
    size_t count, parts;
    cnn_optimizer_kind kind;
    int first, nesterov;
    float lr, wd, momentum;
    float b1, b2, eps;
    float step_size;  /* Adam: lr / (1 - b1^t) */
    float inv_sqrt_bc2; /* Adam: 1 / sqrt(1 - b2^t) */
    float decay;      /* AdamW: 1 - lr * wd */
} step_job;

static void sgd_range(const step_job *j, size_t b, size_t e) {
    float *p = j->p, *buf = j->s0;
    const float *g = j->g;
    const float lr = j->lr, wd = j->wd, mu = j->momentum;
    if (!buf) {
        SIMD
        for (size_t i = b; i < e; i++) p[i] -= lr * (g[i] + wd * p[i]);
    } else if (j->first && !j->nesterov) { /* buf = g */
        SIMD
        for (size_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * d;
        }
    } else if (j->first) { /* buf = g; g + mu * buf */
        SIMD
        for (size_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * (d + mu * d);
        }
    } else if (!j->nesterov) {
        SIMD
        for (size_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            float m = mu * buf[i] + d;
            buf[i] = m;
            p[i] -= lr * m;
        }
    } else {
        SIMD
        for (size_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            float m = mu * buf[i] + d;
            buf[i] = m;
            p[i] -= lr * (d + mu * m);
        }
    }
}

/* Not vectorised at -O2 without -fno-math-errno (sqrtf may set errno); it is bandwidth-bound anyway. */
static void adam_range(const step_job *j, size_t b, size_t e) {
    float *p = j->p, *m = j->s0, *v = j->s1;
    const float *g = j->g;
    const float wd = j->kind == CNN_OPT_ADAM ? j->wd : 0.0f;
    const float b1 = j->b1, b2 = j->b2, c1 = 1.0f - j->b1, c2 = 1.0f - j->b2;
    const float step_size = j->step_size, inv_sqrt_bc2 = j->inv_sqrt_bc2, eps = j->eps;
    const float decay = j->kind == CNN_OPT_ADAMW ? j->decay : 1.0f;
    for (size_t i = b; i < e; i++) {
        float pi = p[i] * decay;
        float d = g[i] + wd * pi;
        float mi = b1 * m[i] + c1 * d;
        float vi = b2 * v[i] + c2 * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

static void step_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const step_job *j = arg;
    size_t b, e;
    cnn_split_range(j->count, j->parts, task, &b, &e);
    if (j->kind == CNN_OPT_SGD)
        sgd_range(j, b, e);
    else
        adam_range(j, b, e);
}

cnn_status cnn_optimizer_step(cnn_optimizer *opt, float lr) {
    if (!opt) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = opt->ctx;
    if (!(lr >= 0.0f) || !isfinite(lr))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "optimizer: lr must be finite and >= 0, got %g", (double)lr);
    float *p, *g;
    size_t count;
    cnn_status st = get_arenas(opt->net, ctx, &p, &g, &count);
    if (st != CNN_OK) return st;
    if (count != opt->count)
        return cnn_error(ctx, CNN_ERR_MISUSE, "optimizer: the net now has %zu parameters, the optimizer %zu",
                         count, opt->count);

    const cnn_optimizer_options *o = &opt->o;
    step_job j;
    memset(&j, 0, sizeof j);
    j.p = p;
    j.g = g;
    j.s0 = opt->state0;
    j.s1 = opt->state1;
    j.count = count;
    j.kind = o->kind;
    j.first = opt->steps == 0;
    j.nesterov = o->nesterov;
    j.lr = lr;
    j.wd = o->weight_decay;
    j.momentum = o->momentum;
    j.b1 = o->beta1;
    j.b2 = o->beta2;
    j.eps = o->eps;
    if (o->kind != CNN_OPT_SGD) {
        double t = (double)(opt->steps + 1);
        double bc1 = 1.0 - pow((double)o->beta1, t);
        double bc2 = 1.0 - pow((double)o->beta2, t);
        j.step_size = (float)((double)lr / bc1);
        j.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        j.decay = (float)(1.0 - (double)lr * (double)o->weight_decay);
    }
    if (count) {
        size_t parts = count / MIN_RANGE;
        size_t threads = ctx->threads ? ctx->threads : 1;
        if (parts > threads) parts = threads;
        if (parts < 1) parts = 1;
        j.parts = parts;
        cnn_pool_for(ctx, parts, step_task, &j);
    }
    opt->steps++;
    return CNN_OK;
}

/* ---- schedules ---- */

float cnn_schedule_lr(const cnn_schedule *s, double step) {
    if (!s) return 0.0f;
    if (!(step >= 0.0)) step = 0.0;
    double base = s->base_lr;
    double warm = s->warmup_steps > 0.0 ? s->warmup_steps : 0.0;
    if (step < warm) return (float)(base * (step + 1.0) / warm);
    switch (s->kind) {
    case CNN_SCHED_STEP:
        if (!(s->step_size > 0.0)) return (float)base;
        return (float)(base * pow((double)s->gamma, floor(step / s->step_size)));
    case CNN_SCHED_COSINE: {
        double t = step - warm, T = s->total_steps - warm, lo = s->min_lr;
        if (!(T > 0.0) || t >= T) return (float)lo;
        return (float)(lo + (base - lo) * (1.0 + cos(PI * t / T)) * 0.5);
    }
    case CNN_SCHED_CONSTANT:
    default:
        return (float)base;
    }
}

/* ---- state access (checkpoints, src/io/checkpoint.c) ---- */

cnn_optimizer_options cnn_optimizer_get_options(const cnn_optimizer *opt) {
    if (!opt) {
        cnn_optimizer_options o;
        memset(&o, 0, sizeof o);
        return o;
    }
    return opt->o;
}

void cnn_optimizer_state(cnn_optimizer *opt, float *state[2], size_t *count) {
    if (state) state[0] = opt ? opt->state0 : NULL, state[1] = opt ? opt->state1 : NULL;
    if (count) *count = opt ? opt->count : 0;
}

void cnn_optimizer_set_steps(cnn_optimizer *opt, uint64_t steps) {
    if (opt) opt->steps = steps;
}

cnn_ctx *cnn_optimizer_ctx(const cnn_optimizer *opt) { return opt ? opt->ctx : NULL; }
