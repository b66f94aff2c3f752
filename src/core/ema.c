/* ema.c — exponential moving average of a net's weights (cnn_ema_*).
 *
 * shadow starts as a copy of the live parameters and buffers; after optimizer step t (t = 0, 1, ...)
 *     shadow += (1 - d_t) * (live - shadow),   d_t = min(decay, (1 + t) / (10 + t))
 * (float, c = (float)(1 - d_t)). The warmup d_t is TensorFlow's ExponentialMovingAverage with num_updates
 * (and timm's ModelEmaV3 use_warmup): without it, decay^t of the initial weights stays in the shadow for
 * thousands of steps (0.999^2345 = 0.1), and with batchnorm the averaged running statistics then fit
 * none of the averaged weights: fmnist-fast with --ema 0.999 read 0.49 test accuracy after 5 epochs where
 * its live weights read 0.92.
 * over the whole parameter arena and the whole buffer arena: batchnorm running statistics are averaged like
 * the weights (timm's ModelEmaV2 averages every state_dict entry; PyTorch's AveragedModel with
 * use_buffers=True). This is torch._foreach_lerp_(shadow, live, 1 - decay), the form of
 * torch.optim.swa_utils.get_ema_multi_avg_fn. After k updates with live values p_1..p_k:
 *     shadow_k = decay^k * shadow_0 + sum_i (1 - decay) * decay^(k-i) * p_i   (up to float rounding).
 * Evaluating or saving with the EMA: cnn_ema_swap (exchange the arrays' contents), work, cnn_ema_swap again;
 * a swap marks the parameters changed so an inference compile refolds its weight blocks.
 * Threads: elementwise over fixed ranges, bit-identical for any thread count. No allocation after create.
 */
#include "net_internal.h"

#include <math.h>
#include <string.h>

#define MIN_RANGE ((size_t)16384)

struct cnn_ema {
    cnn_net *net;
    cnn_ctx *ctx;
    double decay;
    size_t n_params, n_buffers;
    float *params, *buffers;
    uint64_t updates;
};

cnn_status cnn_ema_create(cnn_net *net, double decay, cnn_ema **out) {
    if (!out) return net ? cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "ema: out is NULL") : CNN_ERR_INVALID_ARG;
    *out = NULL;
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (!(decay > 0.0 && decay < 1.0))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "ema: decay must be in (0, 1), got %g", decay);
    if (!net->params || !net->buffers)
        return cnn_error(ctx, CNN_ERR_MISUSE, "ema: the network has no parameters allocated");
    cnn_ema *e = cnn_mem_calloc(ctx, 1, sizeof *e);
    if (!e) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating the EMA");
    e->net = net;
    e->ctx = ctx;
    e->decay = decay;
    e->n_params = net->n_params;
    e->n_buffers = net->n_buffers;
    e->params = cnn_mem_calloc(ctx, e->n_params ? e->n_params : 1, sizeof(float));
    e->buffers = cnn_mem_calloc(ctx, e->n_buffers ? e->n_buffers : 1, sizeof(float));
    if (!e->params || !e->buffers) {
        cnn_ema_free(e);
        return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating the EMA (%zu + %zu floats)", net->n_params,
                         net->n_buffers);
    }
    if (e->n_params) memcpy(e->params, net->params, e->n_params * sizeof(float));
    if (e->n_buffers) memcpy(e->buffers, net->buffers, e->n_buffers * sizeof(float));
    *out = e;
    return CNN_OK;
}

void cnn_ema_free(cnn_ema *ema) {
    if (!ema) return;
    cnn_ctx *ctx = ema->ctx;
    cnn_mem_free(ctx, ema->params);
    cnn_mem_free(ctx, ema->buffers);
    cnn_mem_free(ctx, ema);
}

typedef struct ema_job {
    float *s, *p;
    size_t count, parts;
    float c;
    int swap;
} ema_job;

static void ema_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const ema_job *j = arg;
    size_t b, e;
    cnn_split_range(j->count, j->parts, task, &b, &e);
    float *s = j->s, *p = j->p;
    if (j->swap) {
        for (size_t i = b; i < e; i++) {
            float t = s[i];
            s[i] = p[i];
            p[i] = t;
        }
    } else {
        const float c = j->c;
        for (size_t i = b; i < e; i++) s[i] += c * (p[i] - s[i]);
    }
}

static cnn_status check_net(cnn_ema *ema) {
    cnn_net *net = ema->net;
    if (net->n_params != ema->n_params || net->n_buffers != ema->n_buffers || !net->params || !net->buffers)
        return cnn_error(ema->ctx, CNN_ERR_MISUSE, "ema: the network's arenas changed since the EMA was created");
    return CNN_OK;
}

/* d_t of the next update (t = updates so far) */
static double decay_now(const cnn_ema *ema) {
    const double t = (double)ema->updates, w = (1.0 + t) / (10.0 + t);
    return w < ema->decay ? w : ema->decay;
}

static void run(cnn_ema *ema, float *s, float *p, size_t count, int swap) {
    if (!count) return;
    ema_job j = {.s = s, .p = p, .count = count, .c = (float)(1.0 - decay_now(ema)), .swap = swap};
    size_t parts = count / MIN_RANGE, threads = ema->ctx->threads ? ema->ctx->threads : 1;
    if (parts > threads) parts = threads;
    if (parts < 1) parts = 1;
    j.parts = parts;
    cnn_pool_for(ema->ctx, parts, ema_task, &j);
}

cnn_status cnn_ema_update(cnn_ema *ema) {
    if (!ema) return CNN_ERR_INVALID_ARG;
    cnn_status st = check_net(ema);
    if (st != CNN_OK) return st;
    run(ema, ema->params, ema->net->params, ema->n_params, 0);
    run(ema, ema->buffers, ema->net->buffers, ema->n_buffers, 0);
    ema->updates++;
    return CNN_OK;
}

cnn_status cnn_ema_swap(cnn_ema *ema) {
    if (!ema) return CNN_ERR_INVALID_ARG;
    cnn_status st = check_net(ema);
    if (st != CNN_OK) return st;
    run(ema, ema->params, ema->net->params, ema->n_params, 1);
    run(ema, ema->buffers, ema->net->buffers, ema->n_buffers, 1);
    ema->net->param_gen++;
    return CNN_OK;
}

double cnn_ema_decay(const cnn_ema *ema) { return ema ? ema->decay : 0.0; }
uint64_t cnn_ema_updates(const cnn_ema *ema) { return ema ? ema->updates : 0; }

void cnn_ema_state(cnn_ema *ema, float **params, size_t *n_params, float **buffers, size_t *n_buffers) {
    if (params) *params = ema ? ema->params : NULL;
    if (n_params) *n_params = ema ? ema->n_params : 0;
    if (buffers) *buffers = ema ? ema->buffers : NULL;
    if (n_buffers) *n_buffers = ema ? ema->n_buffers : 0;
}

void cnn_ema_set_updates(cnn_ema *ema, uint64_t updates) {
    if (ema) ema->updates = updates;
}

cnn_ctx *cnn_ema_ctx(const cnn_ema *ema) { return ema ? ema->ctx : NULL; }
