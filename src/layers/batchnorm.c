/* batchnorm.c — batch normalisation over channels (PyTorch nn.BatchNorm2d; on a dense output (c,1,1) it is
 * nn.BatchNorm1d).
 *
 * Math      per channel ch, over the m = n*h*w values x of that channel in the batch:
 *             training: mu = mean(x), var = mean((x - mu)^2) (biased), inv_std = 1 / sqrt(var + eps)
 *                       running_mean = (1 - momentum) * running_mean + momentum * mu
 *                       running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)
 *                       (PyTorch's convention: the unbiased variance goes into the running estimate; with
 *                       m == 1 it is undefined and running_var is left unchanged)
 *             eval:     mu = running_mean, inv_std = 1 / sqrt(running_var + eps)
 *             y = gamma * (x - mu) * inv_std + beta          (gamma = 1, beta = 0 when affine=0)
 *           backward (training, statistics depend on the batch), xhat = (x - mu) * inv_std:
 *             dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))
 *             dgamma = sum(dy * xhat), dbeta = sum(dy)
 *           backward in eval mode (fixed statistics): dx = gamma * inv_std * dy.
 * Layouts   x, y, dx, dy: n x c x h x w (NCHW). Parameters (PyTorch names): weight [c] (gamma, ones),
 *           bias [c] (beta, zeros) — trainable, only with affine=1 — then the buffers running_mean [c]
 *           (zeros) and running_var [c] (ones). saved_fixed: mu and inv_std per channel (2*c doubles) from
 *           the training forward for the backward.
 * FLOPs     2 per element (the normalisation is applied as one multiply-add; statistics not counted).
 * Algorithm threads over channels (cnn_pool_for, one task per channel); each channel's statistics are
 *           two passes in double (mean, then squared deviations) in sample order, so results do not depend
 *           on the thread count and the variance does not suffer from cancellation.
 * Sync     (data-parallel training, src/dist/bn_sync.h; cnn_batchnorm_set_sync): with a hook set, a
 *           training pass reduces the per-channel sums over all ranks between phases (sum x and the count,
 *           then sum (x - mu)^2; in backward sum dy and sum dy * xhat), so each rank normalises with the
 *           global batch's statistics: 2 ranks x 32 samples give the values of 1 x 64 (to rounding). The
 *           sums of the phases are kept in saved (after mu and inv_std). Without a hook nothing changes.
 * References Ioffe & Szegedy, "Batch Normalization" (2015); PyTorch torch.nn.BatchNorm2d documentation;
 *           PyTorch torch.nn.SyncBatchNorm.
 */
#include "layer.h"
#include "fold.h"
#include "../dist/bn_sync.h"

#include <math.h>
#include <string.h>

typedef struct batchnorm_params {
    double eps;
    double momentum;
    int affine;
    const cnn_bn_sync *sync; /* NULL: statistics of this process's batch only */
} batchnorm_params;

#define BN_EPS_DEFAULT 1e-5
#define BN_MOMENTUM_DEFAULT 0.1

static cnn_status batchnorm_parse(struct cnn_kv *kv, void *params) {
    batchnorm_params *p = params;
    p->eps = BN_EPS_DEFAULT;
    p->momentum = BN_MOMENTUM_DEFAULT;
    p->affine = 1;
    cnn_status st = cnn_kv_float(kv, "eps", 0.0, 1.0, &p->eps, NULL);
    if (st != CNN_OK) return st;
    if (!(p->eps > 0.0)) return cnn_kv_error(kv, "eps", "eps must be > 0");
    st = cnn_kv_float(kv, "momentum", 0.0, 1.0, &p->momentum, NULL);
    if (st != CNN_OK) return st;
    return cnn_kv_bool(kv, "affine", &p->affine, NULL);
}

static void batchnorm_print(const void *params, cnn_strbuf *out) {
    const batchnorm_params *p = params;
    char buf[40];
    if (p->eps != BN_EPS_DEFAULT) {
        cnn_format_float(buf, sizeof buf, p->eps);
        cnn_strbuf_printf(out, " eps=%s", buf);
    }
    if (p->momentum != BN_MOMENTUM_DEFAULT) {
        cnn_format_float(buf, sizeof buf, p->momentum);
        cnn_strbuf_printf(out, " momentum=%s", buf);
    }
    if (!p->affine) cnn_strbuf_printf(out, " affine=0");
}

static cnn_status batchnorm_shape(cnn_layer *L) {
    cnn_shape s = L->in[0];
    size_t count, tmp;
    if (!cnn_shape_count(s, &count))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input (%zu,%zu,%zu) has too many elements", s.c, s.h, s.w);
    if (count == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no elements");
    if (!cnn_size_mul(s.c, 4 * sizeof(double), &tmp))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input has too many channels (%zu)", s.c);
    L->out = s;
    return CNN_OK;
}

static void batchnorm_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const batchnorm_params *p = L->params;
    size_t c = L->in[0].c, k = 0;
    memset(s, 0, sizeof *s);
    if (p->affine) {
        s->tensors[k++] = (cnn_tensor_desc){.suffix = "weight", .ndim = 1, .dims = {c}, .trainable = 1,
                                            .role = CNN_ROLE_ONES, .fan_in = c, .fan_out = c};
        s->tensors[k++] = (cnn_tensor_desc){.suffix = "bias", .ndim = 1, .dims = {c}, .trainable = 1,
                                            .role = CNN_ROLE_ZEROS, .fan_in = c, .fan_out = c};
    }
    s->tensors[k++] = (cnn_tensor_desc){.suffix = "running_mean", .ndim = 1, .dims = {c}, .trainable = 0,
                                        .role = CNN_ROLE_ZEROS, .fan_in = c, .fan_out = c};
    s->tensors[k++] = (cnn_tensor_desc){.suffix = "running_var", .ndim = 1, .dims = {c}, .trainable = 0,
                                        .role = CNN_ROLE_ONES, .fan_in = c, .fan_out = c};
    s->n_tensors = k;
    /* mu, inv_std; then for sync mode the global count M and 2c + 1 doubles of sums */
    s->saved_fixed = (4 * c + 2) * sizeof(double);
    s->flops = (uint64_t)2 * L->in[0].c * L->in[0].h * L->in[0].w;
}

/* ---- per-channel work ---- */

typedef struct bn_job {
    const cnn_layer_run *r;
    size_t c, hw;
} bn_job;

static void forward_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    const batchnorm_params *p = r->L->params;
    size_t c = j->c, hw = j->hw, n = r->n, m = n * hw;
    double mu, inv_std;
    if (r->training) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) {
            const float *x = r->x[0] + (i * c + ch) * hw;
            for (size_t k = 0; k < hw; k++) s += x[k];
        }
        mu = s / (double)m;
        double v = 0.0;
        for (size_t i = 0; i < n; i++) {
            const float *x = r->x[0] + (i * c + ch) * hw;
            for (size_t k = 0; k < hw; k++) {
                double d = x[k] - mu;
                v += d * d;
            }
        }
        double var = v / (double)m;
        inv_std = 1.0 / sqrt(var + p->eps);
        double *saved = r->saved;
        saved[ch] = mu;
        saved[c + ch] = inv_std;
        float *rm = r->buf, *rv = r->buf + c;
        rm[ch] = (float)((1.0 - p->momentum) * rm[ch] + p->momentum * mu);
        if (m > 1) rv[ch] = (float)((1.0 - p->momentum) * rv[ch] + p->momentum * (v / (double)(m - 1)));
    } else {
        mu = r->buf[ch];
        inv_std = 1.0 / sqrt((double)r->buf[c + ch] + p->eps);
    }
    double g = p->affine ? r->w[ch] : 1.0, b = p->affine ? r->w[c + ch] : 0.0;
    float muf = (float)mu, a = (float)(g * inv_std), bf = (float)b;
    for (size_t i = 0; i < n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw;
        float *y = r->y + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) y[k] = (x[k] - muf) * a + bf;
    }
}

/* ---- synchronised statistics (a hook is set, training): the phases of forward_channel, with the sums
 * reduced over ranks in between. saved: mu[c], inv_std[c], M, sums[2c + 1]. ---- */

static void sync_sum_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw;
    double *sums = (double *)r->saved + 2 * c + 1, s = 0.0;
    for (size_t i = 0; i < r->n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) s += x[k];
    }
    sums[ch] = s;
}

static void sync_dev_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw;
    double *saved = r->saved, *sums = saved + 2 * c + 1, mu = saved[ch], v = 0.0;
    for (size_t i = 0; i < r->n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) {
            double d = x[k] - mu;
            v += d * d;
        }
    }
    sums[ch] = v;
}

static void sync_apply_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    const batchnorm_params *p = r->L->params;
    size_t c = j->c, hw = j->hw, n = r->n;
    const double *saved = r->saved;
    double mu = saved[ch], inv_std = saved[c + ch];
    double g = p->affine ? r->w[ch] : 1.0, b = p->affine ? r->w[c + ch] : 0.0;
    float muf = (float)mu, a = (float)(g * inv_std), bf = (float)b;
    for (size_t i = 0; i < n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw;
        float *y = r->y + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) y[k] = (x[k] - muf) * a + bf;
    }
}

static void batchnorm_forward_sync(const cnn_layer_run *r, bn_job *j) {
    const batchnorm_params *p = r->L->params;
    size_t c = j->c;
    double *saved = r->saved, *sums = saved + 2 * c + 1;
    cnn_pool_for(r->ctx, c, sync_sum_channel, j);
    sums[c] = (double)(r->n * j->hw);
    p->sync->allreduce_sum(p->sync->user, sums, c + 1, 0);
    double m = sums[c] > 0 ? sums[c] : 1.0;
    saved[2 * c] = m;
    for (size_t ch = 0; ch < c; ch++) saved[ch] = sums[ch] / m;
    cnn_pool_for(r->ctx, c, sync_dev_channel, j);
    p->sync->allreduce_sum(p->sync->user, sums, c, 0);
    float *rm = r->buf, *rv = r->buf + c;
    for (size_t ch = 0; ch < c; ch++) {
        double var = sums[ch] / m;
        saved[c + ch] = 1.0 / sqrt(var + p->eps);
        rm[ch] = (float)((1.0 - p->momentum) * rm[ch] + p->momentum * saved[ch]);
        if (m > 1) rv[ch] = (float)((1.0 - p->momentum) * rv[ch] + p->momentum * (sums[ch] / (m - 1)));
    }
    cnn_pool_for(r->ctx, c, sync_apply_channel, j);
}

static void batchnorm_forward(const cnn_layer_run *r) {
    const batchnorm_params *p = r->L->params;
    bn_job j = {.r = r, .c = r->L->in[0].c, .hw = r->L->in[0].h * r->L->in[0].w};
    if (r->n == 0) return;
    if (p->sync && r->training) {
        batchnorm_forward_sync(r, &j);
        return;
    }
    cnn_pool_for(r->ctx, j.c, forward_channel, &j);
}

int cnn_batchnorm_set_sync(cnn_layer *L, const cnn_bn_sync *sync) {
    if (!L || L->ops != &cnn_layer_batchnorm) return -1;
    ((batchnorm_params *)L->params)->sync = sync;
    return 0;
}

/* Eval-mode y = scale * x + shift per channel (fold.h: an inference compile folds it into the conv before). */
void cnn_batchnorm_eval_affine(const cnn_layer *L, const float *w, const float *buf, double *scale,
                               double *shift) {
    const batchnorm_params *p = L->params;
    const size_t c = L->in[0].c;
    for (size_t ch = 0; ch < c; ch++) {
        const double inv_std = 1.0 / sqrt((double)buf[c + ch] + p->eps);
        const double g = p->affine ? w[ch] : 1.0, b = p->affine ? w[c + ch] : 0.0;
        scale[ch] = g * inv_std;
        shift[ch] = b - (double)buf[ch] * scale[ch];
    }
}

/* Statistics the backward uses: mu and inv_std of the forward (batch ones when training). */
static void channel_stats(const cnn_layer_run *r, size_t c, size_t ch, double *mu, double *inv_std) {
    const batchnorm_params *p = r->L->params;
    if (r->training) {
        const double *saved = r->saved;
        *mu = saved[ch];
        *inv_std = saved[c + ch];
    } else {
        *mu = r->buf[ch];
        *inv_std = 1.0 / sqrt((double)r->buf[c + ch] + p->eps);
    }
}

/* sum(dy) and sum(dy * xhat) over one channel, in sample order. */
static void channel_sums(const cnn_layer_run *r, size_t c, size_t hw, size_t ch, double mu, double inv_std,
                         double *sum_dy, double *sum_dy_xhat) {
    double s1 = 0.0, s2 = 0.0;
    for (size_t i = 0; i < r->n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw, *dy = r->dy + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) {
            s1 += dy[k];
            s2 += dy[k] * (x[k] - mu);
        }
    }
    *sum_dy = s1;
    *sum_dy_xhat = s2 * inv_std;
}

static void backward_data_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    const batchnorm_params *p = r->L->params;
    size_t c = j->c, hw = j->hw, n = r->n;
    double mu, inv_std;
    channel_stats(r, c, ch, &mu, &inv_std);
    double g = p->affine ? r->w[ch] : 1.0;
    float k1 = (float)(g * inv_std), muf = (float)mu, isf = (float)inv_std, mdy = 0.0f, mdyx = 0.0f;
    if (r->training && p->sync) { /* the global means, reduced by batchnorm_backward_data */
        const double *saved = r->saved, *sums = saved + 2 * c + 1;
        mdy = (float)(sums[ch] / saved[2 * c]);
        mdyx = (float)(sums[c + ch] / saved[2 * c]);
    } else if (r->training) {
        double s1, s2, m = (double)(n * hw);
        channel_sums(r, c, hw, ch, mu, inv_std, &s1, &s2);
        mdy = (float)(s1 / m);
        mdyx = (float)(s2 / m);
    }
    int acc = r->dx_accumulate[0];
    for (size_t i = 0; i < n; i++) {
        const float *x = r->x[0] + (i * c + ch) * hw, *dy = r->dy + (i * c + ch) * hw;
        float *dx = r->dx[0] + (i * c + ch) * hw;
        for (size_t k = 0; k < hw; k++) {
            float v = k1 * (dy[k] - mdy - (x[k] - muf) * isf * mdyx);
            dx[k] = acc ? dx[k] + v : v;
        }
    }
}

/* sync mode: this rank's sum(dy) and sum(dy * xhat) into the sums area, to be reduced over ranks */
static void sync_grad_sums_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c;
    double mu, inv_std, *sums = (double *)r->saved + 2 * c + 1;
    channel_stats(r, c, ch, &mu, &inv_std);
    channel_sums(r, c, j->hw, ch, mu, inv_std, &sums[ch], &sums[c + ch]);
}

static void batchnorm_backward_data(const cnn_layer_run *r) {
    const batchnorm_params *p = r->L->params;
    bn_job j = {.r = r, .c = r->L->in[0].c, .hw = r->L->in[0].h * r->L->in[0].w};
    if (!r->dx[0] || r->n == 0) return;
    if (p->sync && r->training) {
        cnn_pool_for(r->ctx, j.c, sync_grad_sums_channel, &j);
        p->sync->allreduce_sum(p->sync->user, (double *)r->saved + 2 * j.c + 1, 2 * j.c, 1);
    }
    cnn_pool_for(r->ctx, j.c, backward_data_channel, &j);
}

static void backward_weights_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c;
    double mu, inv_std, s1, s2;
    channel_stats(r, c, ch, &mu, &inv_std);
    channel_sums(r, c, j->hw, ch, mu, inv_std, &s1, &s2);
    r->dw[ch] = (float)s2;     /* dgamma */
    r->dw[c + ch] = (float)s1; /* dbeta */
}

static void batchnorm_backward_weights(const cnn_layer_run *r) {
    const batchnorm_params *p = r->L->params;
    bn_job j = {.r = r, .c = r->L->in[0].c, .hw = r->L->in[0].h * r->L->in[0].w};
    if (!p->affine || !r->dw) return;
    if (r->n == 0) {
        memset(r->dw, 0, 2 * j.c * sizeof(float));
        return;
    }
    cnn_pool_for(r->ctx, j.c, backward_weights_channel, &j);
}

const struct cnn_layer_ops cnn_layer_batchnorm = {
    .name = "batchnorm",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(batchnorm_params),
    .parse = batchnorm_parse,
    .print = batchnorm_print,
    .shape = batchnorm_shape,
    .sizes = batchnorm_sizes,
    .forward = batchnorm_forward,
    .backward_data = batchnorm_backward_data,
    .backward_weights = batchnorm_backward_weights,
};
