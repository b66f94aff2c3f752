/* lanes.c — batch lanes: data parallelism across the threads of one process (include/cnn.h section "batch
 * lanes"; docs/kernels.md "Threads").
 *
 * Why   Layer-by-layer threading splits every layer's work over the threads and meets at the end of each
 *       one; a small network on 2 cores loses 15-20% of its step to those meetings and to the chunks that
 *       do not split evenly (two 1-thread processes train 1300 img/s together where one 2-thread process
 *       trains 1050-1200, fmnist-fast). With lanes each of T threads runs the whole network, forward and
 *       backward, on its own contiguous share of the batch, one thread per lane, and the lanes meet only
 *       where the mathematics needs the whole batch.
 *
 * Nets  Lane 0 is the caller's net itself, run for the step with a one-thread context of its own (swapped
 *       in and back; the net keeps its compile). Lanes 1..T-1 are copies built from its model text and
 *       compiled for ceil(B / T) samples (B: the caller's compiled batch); they read the caller's parameter
 *       arena (their own stays unused), so an optimizer step on the caller's net is seen by every lane.
 *
 * Meets (cnn_pool_lanes, cnn_pool_barrier)
 *       batchnorm  every batchnorm layer of every lane gets the bn_sync.h hook for the step: a lane writes
 *                  its per-channel sums into its slot, the lanes meet, each sums the slots in lane order
 *                  (so every lane gets bit-identical statistics of the whole batch) and they meet again
 *                  before a slot is reused. Gradient sums are weighted by n_r / n on the way in and divided
 *                  by it on the way out (the hook's contract).
 *       loss       after the loss every lane publishes its status and they meet: a lane whose loss is not
 *                  finite stops them all before backward, whose batchnorm meets would otherwise wait for it.
 *       gradients  after backward they meet; then lane r sums the weighted gradients of all lanes,
 *                  g = sum_q (n_q / n) g_q in lane order, over its own contiguous range of the arena into
 *                  the caller's arena. The step's gradient is the mean over the whole batch.
 *       Inputs and labels are checked for the whole batch before the lanes start (the errors that would
 *       otherwise stop one lane and not the others).
 *
 * Random  each lane's layers see sample0, the index of its first sample in the batch, and the caller's seed
 *       and step: dropout masks are those of the same step without lanes.
 *
 * Result  the same mathematics as one pass over the whole batch; the float sums are in another order, so
 *       results depend on the lane count (deterministic for a given count). */
#include "net_internal.h"
#include "../dist/bn_sync.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lane_hook {
    struct cnn_lanes *l;
    size_t lane;
} lane_hook;

struct cnn_lanes {
    cnn_net *net;       /* lane 0: the caller's */
    size_t T;           /* lanes made */
    size_t active;      /* lanes of the current step (fewer for a batch of fewer samples) */
    cnn_ctx **ctx;      /* [T] one-thread contexts; ctx[0] is swapped into net for a step */
    cnn_net **copy;     /* [T] copy[0] NULL; copy[r] lane r's net */
    float **own_params; /* [T] the copies' own parameter arenas, put back before they are freed */
    size_t lane_batch;  /* compiled batch of the copies */
    lane_hook *hooks;   /* [T] */
    cnn_bn_sync *sync;  /* [T] */
    double *slots;      /* T * slot_cap doubles */
    size_t slot_cap;
    /* the step */
    const float *x;
    const int32_t *labels;
    const float *targets;
    size_t n, in_per, tgt_per;
    size_t b[CNN_LANES_MAX + 1]; /* lane r: samples [b[r], b[r+1]) */
    double share[CNN_LANES_MAX]; /* (b[r+1] - b[r]) / n */
    cnn_status st[CNN_LANES_MAX];
    int phase[CNN_LANES_MAX];    /* 0 forward, 1 loss, 2 backward: where st[r] failed */
    cnn_loss_stats ls[CNN_LANES_MAX];
};

static cnn_net *lane_net(const cnn_lanes *l, size_t r) { return r ? l->copy[r] : l->net; }

size_t cnn_lanes_count(const cnn_lanes *l) { return l ? l->T : 0; }

size_t cnn_lanes_memory(const cnn_lanes *l) {
    size_t m = 0;
    if (l)
        for (size_t r = 0; r < l->T; r++) m += cnn_ctx_memory_in_use(l->ctx[r]);
    return m;
}

void cnn_lanes_free(cnn_lanes *l) {
    if (!l) return;
    for (size_t r = 1; r < l->T; r++)
        if (l->copy && l->copy[r]) {
            l->copy[r]->params = l->own_params[r];
            cnn_net_free(l->copy[r]);
        }
    if (l->ctx)
        for (size_t r = 0; r < l->T; r++) cnn_ctx_free(l->ctx[r]);
    free(l->ctx);
    free(l->copy);
    free(l->own_params);
    free(l->hooks);
    free(l->sync);
    free(l->slots);
    free(l);
}

/* The bn_sync.h hook: sum buf over the lanes (see "Meets"). */
static int lane_bn_sum(void *user, double *buf, size_t n, int grad) {
    const lane_hook *h = user;
    cnn_lanes *l = h->l;
    const size_t T = l->active;
    const double s = grad ? l->share[h->lane] : 1.0;
    double *mine = l->slots + h->lane * l->slot_cap;
    for (size_t i = 0; i < n; i++) mine[i] = buf[i] * s;
    cnn_pool_barrier(T);
    for (size_t i = 0; i < n; i++) {
        double v = 0.0;
        for (size_t q = 0; q < T; q++) v += l->slots[q * l->slot_cap + i];
        buf[i] = grad ? v / s : v;
    }
    cnn_pool_barrier(T);
    return 0;
}

static void set_hooks(cnn_lanes *l, int on) {
    for (size_t r = 0; r < l->T; r++) {
        cnn_net *net = lane_net(l, r);
        for (size_t i = 0; i < net->n_layers; i++)
            if (net->layers[i].ops == &cnn_layer_batchnorm)
                cnn_batchnorm_set_sync(&net->layers[i], on ? &l->sync[r] : NULL);
    }
}

cnn_status cnn_lanes_create(cnn_net *net, size_t lanes, cnn_lanes **out) {
    if (!out) return CNN_ERR_INVALID_ARG;
    *out = NULL;
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (!net->compiled || !(net->flags & CNN_COMPILE_TRAIN))
        return cnn_error(ctx, CNN_ERR_MISUSE, "cnn_lanes_create: the network is not compiled for training");
    if (!net->layers[net->n_layers - 1].ops->is_loss)
        return cnn_error(ctx, CNN_ERR_MISUSE, "cnn_lanes_create: the network does not end in a loss layer");
    if (lanes < 2 || lanes > CNN_LANES_MAX)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_lanes_create: %zu lanes, expected 2..%d", lanes, CNN_LANES_MAX);
    if (net->max_batch < lanes)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_lanes_create: %zu lanes for a compiled batch of %zu samples",
                         lanes, net->max_batch);
    for (size_t i = 0; i < net->n_layers; i++)
        if (net->layers[i].ops == &cnn_layer_batchnorm && cnn_batchnorm_sync(&net->layers[i]))
            return cnn_error(ctx, CNN_ERR_MISUSE,
                             "cnn_lanes_create: batchnorm '%s' is already synchronised (data-parallel ranks)",
                             net->layers[i].name);
    cnn_status st = CNN_OK;
    char *text = NULL;
    cnn_lanes *l = calloc(1, sizeof *l);
    if (!l) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating %zu batch lanes", lanes);
    l->net = net;
    l->T = lanes;
    l->lane_batch = (net->max_batch + lanes - 1) / lanes;
    l->ctx = calloc(lanes, sizeof *l->ctx);
    l->copy = calloc(lanes, sizeof *l->copy);
    l->own_params = calloc(lanes, sizeof *l->own_params);
    l->hooks = calloc(lanes, sizeof *l->hooks);
    l->sync = calloc(lanes, sizeof *l->sync);
    for (size_t i = 0; i < net->n_layers; i++)
        if (net->layers[i].ops == &cnn_layer_batchnorm && 2 * net->layers[i].in[0].c + 1 > l->slot_cap)
            l->slot_cap = 2 * net->layers[i].in[0].c + 1;
    l->slot_cap = cnn_round_up(l->slot_cap ? l->slot_cap : 1, 8); /* slots on their own cache lines */
    l->slots = calloc(lanes * l->slot_cap, sizeof *l->slots);
    if (!l->ctx || !l->copy || !l->own_params || !l->hooks || !l->sync || !l->slots)
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating %zu batch lanes", lanes));
    CNN_TRY(cnn_net_to_text(net, &text));
    for (size_t r = 0; r < lanes; r++) {
        cnn_ctx_options o = cnn_ctx_options_default();
        o.threads = 1;
        o.allocator = &ctx->alloc;
        if (cnn_ctx_create(&l->ctx[r], &o) != CNN_OK)
            CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating the context of batch lane %zu", r));
        l->ctx[r]->kernels = ctx->kernels; /* the same instruction set as the caller's, whatever CNN_ISA says now */
        l->hooks[r] = (lane_hook){.l = l, .lane = r};
        l->sync[r] = (cnn_bn_sync){.allreduce_sum = lane_bn_sum, .user = &l->hooks[r]};
        if (r == 0) continue;
        cnn_net *c = NULL;
        if ((st = cnn_net_parse(l->ctx[r], text, strlen(text), net->origin, &c)) != CNN_OK) {
            cnn_error(ctx, st, "batch lane %zu: %s", r, cnn_ctx_last_error(l->ctx[r]));
            goto cleanup;
        }
        l->copy[r] = c;
        l->own_params[r] = c->params;
        if (c->n_params != net->n_params || c->n_buffers != net->n_buffers || c->n_layers != net->n_layers)
            CNN_TRY(cnn_error(ctx, CNN_ERR_MISUSE, "batch lane %zu: the copy of the network has another layout", r));
        c->no_fuse = net->no_fuse;
        c->no_fold = net->no_fold;
        if ((st = cnn_net_compile(c, l->lane_batch, net->flags)) != CNN_OK) {
            cnn_error(ctx, st, "batch lane %zu: %s", r, cnn_ctx_last_error(l->ctx[r]));
            goto cleanup;
        }
        c->params = net->params;
    }
    *out = l;
    l = NULL;
cleanup:
    cnn_free(ctx, text);
    cnn_lanes_free(l);
    return st;
}

/* One lane's pass; every lane reaches every meet, whatever failed (see "Meets"). */
static void lane_run(void *arg, size_t r, size_t T) {
    cnn_lanes *l = arg;
    cnn_net *net = lane_net(l, r);
    const size_t b = l->b[r], n = l->b[r + 1] - b;
    cnn_status st = cnn_net_forward(net, l->x + b * l->in_per, n, 1);
    int phase = 0;
    if (st == CNN_OK) {
        phase = 1;
        st = cnn_net_loss(net, l->labels ? l->labels + b : NULL, l->targets ? l->targets + b * l->tgt_per : NULL,
                          &l->ls[r]);
    }
    l->st[r] = st;
    l->phase[r] = phase;
    cnn_pool_barrier(T);
    for (size_t q = 0; q < T; q++)
        if (l->st[q] != CNN_OK) return; /* (every lane sees the same statuses: none starts backward) */
    cnn_pool_barrier(T); /* every lane has read the statuses before any overwrites its own */
    st = cnn_net_backward(net, NULL);
    l->st[r] = st;
    l->phase[r] = 2;
    cnn_pool_barrier(T);
    for (size_t q = 0; q < T; q++)
        if (l->st[q] != CNN_OK) return;
    /* the gradients of the whole batch into lane 0's (the caller's) arena, over this lane's range */
    size_t g0, g1;
    cnn_split_range(l->net->n_params, T, r, &g0, &g1);
    float w[CNN_LANES_MAX];
    for (size_t q = 0; q < T; q++) w[q] = (float)l->share[q];
    float *restrict out = l->net->grads;
    for (size_t i = g0; i < g1; i++) {
        float v = w[0] * out[i];
        for (size_t q = 1; q < T; q++) v += w[q] * l->copy[q]->grads[i];
        out[i] = v;
    }
}

static const char *const phase_name[] = {"forward", "loss", "backward"};

/* The step without lanes (on the net's own context). */
static cnn_status plain_step(cnn_net *net, const float *x, const int32_t *labels, const float *targets, size_t n,
                             cnn_loss_stats *out, const char **phase) {
    cnn_status st;
    if (phase) *phase = "forward";
    if ((st = cnn_net_forward(net, x, n, 1)) != CNN_OK) return st;
    if (phase) *phase = "loss";
    if ((st = cnn_net_loss(net, labels, targets, out)) != CNN_OK) return st;
    if (phase) *phase = "backward";
    return cnn_net_backward(net, NULL);
}

cnn_status cnn_lanes_step(cnn_lanes *l, const float *x, const int32_t *labels, const float *targets, size_t n,
                          cnn_loss_stats *out, const char **phase) {
    if (out) memset(out, 0, sizeof *out);
    if (phase) *phase = "forward";
    if (!l) return CNN_ERR_INVALID_ARG;
    cnn_net *net = l->net;
    cnn_ctx *ctx = net->ctx;
    if (!x) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_lanes_step: x is NULL");
    if (n == 0 || n > net->max_batch)
        return cnn_error(ctx, CNN_ERR_SHAPE, "cnn_lanes_step: batch of %zu samples, compiled for 1..%zu", n, net->max_batch);
    if (!net->compiled || !(net->flags & CNN_COMPILE_TRAIN) || net->max_batch > l->lane_batch * l->T)
        return cnn_error(ctx, CNN_ERR_MISUSE, "cnn_lanes_step: the network was compiled again after cnn_lanes_create");
    size_t T = l->T < n ? l->T : n;
    cnn_status st = cnn_net_check_batch(net, x, labels, targets, n, phase);
    if (st) return st;
    if (T < 2) return plain_step(net, x, labels, targets, n, out, phase); /* one sample: no lanes */
    cnn_shape_count(net->layers[0].out, &l->in_per);
    const cnn_layer *loss = &net->layers[net->n_layers - 1];
    l->tgt_per = loss->in[0].c * loss->in[0].h * loss->in[0].w;
    l->x = x;
    l->labels = labels;
    l->targets = targets;
    l->n = n;
    for (size_t r = 0; r <= T; r++) l->b[r] = n * r / T;
    for (size_t r = 0; r < T; r++) {
        l->share[r] = (double)(l->b[r + 1] - l->b[r]) / (double)n;
        l->st[r] = CNN_OK;
        cnn_net *c = lane_net(l, r);
        c->sample0 = l->b[r];
        if (r) {
            c->seed = net->seed;
            c->step = net->step;
            c->params = net->params;
        }
    }
    l->active = T;
    cnn_ctx *own = net->ctx;
    net->ctx = l->ctx[0];
    set_hooks(l, 1);
    int ran = cnn_pool_lanes(T, lane_run, l);
    set_hooks(l, 0);
    net->ctx = own;
    net->sample0 = 0;
    if (ran != 0) /* OpenMP gave fewer threads than lanes: the step without lanes */
        return plain_step(net, x, labels, targets, n, out, phase);
    size_t bad = T, bad_layer = SIZE_MAX;
    for (size_t r = 0; r < T; r++) {
        if (l->st[r] == CNN_OK) continue;
        if (bad == T) bad = r;
        if (l->phase[r] == 1 && l->st[r] == CNN_ERR_NUMERIC) {
            /* batchnorm spreads a non-finite value to every lane: name the lane where it appears first
             * in network order */
            size_t k = cnn_net_first_nonfinite_output(lane_net(l, r), NULL);
            if (k < bad_layer) {
                bad_layer = k;
                bad = r;
            }
        }
    }
    if (bad < T) {
        const size_t r = bad;
        cnn_net *c = lane_net(l, r);
        cnn_ctx *lc = l->ctx[r];
        if (phase) *phase = phase_name[l->phase[r]];
        if (bad_layer != SIZE_MAX) {
            cnn_ctx *keep = c->ctx;
            c->ctx = lc;
            cnn_status a = cnn_net_check_activations(c);
            c->ctx = keep;
            if (a == CNN_ERR_NUMERIC)
                return cnn_error(ctx, l->st[r], "%s (samples %zu..%zu of the batch, lane %zu)", cnn_ctx_last_error(lc),
                                 l->b[r], l->b[r + 1] - 1, r);
        }
        return cnn_error(ctx, l->st[r], "%s", cnn_ctx_last_error(lc));
    }
    if (out) {
        double loss_sum = 0.0;
        for (size_t r = 0; r < T; r++) {
            loss_sum += l->ls[r].loss * (double)l->ls[r].n;
            out->correct += l->ls[r].correct;
        }
        out->loss = loss_sum / (double)n;
        out->n = n;
    }
    return CNN_OK;
}
