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
 * Algorithm threads over channels (cnn_pool_for, one task per channel); the channel loops are the
 *           vectorised kernels of src/kernels/f32_bn (float sums per plane, double across planes, in sample
 *           order, bit-identical across ISAs), so results do not depend on the thread count. Statistics
 *           take two passes (the mean, then the squared deviations from it, corrected by the sum of the
 *           deviations for the rounding of the float mean): no cancellation. A training backward computes
 *           sum(dy) and sum(dy * xhat) once: backward_weights keeps them for backward_data.
 * Sync     (data-parallel ranks and batch lanes, src/dist/bn_sync.h; cnn_batchnorm_set_sync): with a hook
 *           set, a training pass reduces the per-channel sums over all ranks (or lanes) between phases (sum
 *           x and the count, then sum (x - mu)^2 about the global mean; in backward sum dy and sum dy *
 *           xhat), so each one normalises with the global batch's statistics: 2 ranks x 32 samples give the
 *           values of 1 x 64 (to rounding). The sums use the same kernels as the plain path. The sums of the
 *           phases are kept in saved (after mu and inv_std). Without a hook nothing changes.
 * Fused ReLU (training, or inference where the batchnorm is not folded): when the network compiles a `relu`
 *           whose input is this layer (with no other reader), the relu is skipped and shares this layer's
 *           buffers; forward writes relu(y) (activations.c's rule, NaN kept) and backward takes the relu's
 *           gradient as dy masked by y > 0 (the relu's backward rule), so the values are those of the pair.
 * References Ioffe & Szegedy, "Batch Normalization" (2015); PyTorch torch.nn.BatchNorm2d documentation;
 *           PyTorch torch.nn.SyncBatchNorm.
 */
#include "layer.h"
#include "fold.h"
#include "../dist/bn_sync.h"
#include "../kernels/f32_bn/bn_kernels.h"

#include <math.h>
#include <string.h>

typedef struct batchnorm_params {
    double eps;
    double momentum;
    int affine;
    int fused_relu; /* set by the network's compile: the next layer is a relu run here (see below) */
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
    int cached; /* backward: the channel sums are (data) / are to be (weights) kept in saved */
} bn_job;

/* The channel loops of this ISA (src/kernels/f32_bn/bn_kernels.h). */
typedef struct bn_kernels {
    cnn_f32_bn_sums_fn sums;
    cnn_f32_bn_dsums_fn dsums;
    cnn_f32_bn_apply_fn apply;
    cnn_f32_bn_bwd_fn bwd;
} bn_kernels;

static bn_kernels bn_kernels_of(const cnn_ctx *ctx) {
    if (ctx->kernels.isa >= CNN_ISA_AVX2)
        return (bn_kernels){cnn_f32_bn_sums_avx2, cnn_f32_bn_dsums_avx2, cnn_f32_bn_apply_avx2, cnn_f32_bn_bwd_avx2};
    return (bn_kernels){cnn_f32_bn_sums_scalar, cnn_f32_bn_dsums_scalar, cnn_f32_bn_apply_scalar,
                        cnn_f32_bn_bwd_scalar};
}

static void forward_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    const batchnorm_params *p = r->L->params;
    const bn_kernels k = bn_kernels_of(r->ctx);
    size_t c = j->c, hw = j->hw, n = r->n, m = n * hw;
    const float *x = r->x[0] + ch * hw;
    double mu, inv_std;
    if (r->training) {
        /* mean, then the squared deviations from the float mean (and their sum, which corrects for the
         * rounding of that mean): two passes, no cancellation */
        double s, sq;
        k.sums(x, n, c * hw, hw, 0.0f, &s, &sq);
        float mu0 = (float)(s / (double)m);
        double d1, d2;
        k.sums(x, n, c * hw, hw, mu0, &d1, &d2);
        double dm = d1 / (double)m;
        mu = (double)mu0 + dm;
        double v = d2 - d1 * dm; /* sum (x - mu)^2 */
        if (v < 0) v = 0;
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
    k.apply(x, r->y + ch * hw, n, c * hw, hw, (float)mu, (float)(g * inv_std), (float)b, p->fused_relu);
}

/* ---- synchronised statistics (a hook is set, training): the phases of forward_channel, with the sums
 * reduced over ranks in between. saved: mu[c], inv_std[c], M, sums[2c + 1]. ---- */

static void sync_sum_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw;
    double *sums = (double *)r->saved + 2 * c + 1, sq;
    bn_kernels_of(r->ctx).sums(r->x[0] + ch * hw, r->n, c * hw, hw, 0.0f, &sums[ch], &sq);
}

/* sum (x - mu)^2 about the global mean mu, from the sums about the float mu0 nearest it:
 * sum (x - mu)^2 = d2 - 2 e d1 + m e^2 with e = mu - mu0, d1 = sum (x - mu0), d2 = sum (x - mu0)^2 */
static void sync_dev_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw;
    double *saved = r->saved, *sums = saved + 2 * c + 1, mu = saved[ch], d1, d2;
    const float mu0 = (float)mu;
    const double e = mu - (double)mu0, m = (double)(r->n * hw);
    bn_kernels_of(r->ctx).sums(r->x[0] + ch * hw, r->n, c * hw, hw, mu0, &d1, &d2);
    sums[ch] = d2 - 2.0 * e * d1 + m * e * e;
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
    bn_kernels_of(r->ctx).apply(r->x[0] + ch * hw, r->y + ch * hw, n, c * hw, hw, (float)mu, (float)(g * inv_std),
                                (float)b, p->fused_relu);
}

static void batchnorm_forward_sync(const cnn_layer_run *r, bn_job *j) {
    const batchnorm_params *p = r->L->params;
    size_t c = j->c;
    double *saved = r->saved, *sums = saved + 2 * c + 1;
    sums[2 * c] = 0; /* no backward sums kept yet (see batchnorm_backward_weights) */
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
        double var = sums[ch] > 0 ? sums[ch] / m : 0.0;
        saved[c + ch] = 1.0 / sqrt(var + p->eps);
        rm[ch] = (float)((1.0 - p->momentum) * rm[ch] + p->momentum * saved[ch]);
        if (m > 1) rv[ch] = (float)((1.0 - p->momentum) * rv[ch] + p->momentum * (var * m / (m - 1)));
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
    if (r->training) ((double *)r->saved)[2 * j.c] = 0; /* no backward sums cached yet (see channel_sums) */
    cnn_pool_for(r->ctx, j.c, forward_channel, &j);
}

void cnn_batchnorm_set_fused_relu(cnn_layer *L, int on) {
    if (L && L->ops == &cnn_layer_batchnorm) ((batchnorm_params *)L->params)->fused_relu = on != 0;
}

int cnn_batchnorm_fused_relu(const cnn_layer *L) {
    return L && L->ops == &cnn_layer_batchnorm && ((const batchnorm_params *)L->params)->fused_relu;
}

int cnn_batchnorm_set_sync(cnn_layer *L, const cnn_bn_sync *sync) {
    if (!L || L->ops != &cnn_layer_batchnorm) return -1;
    ((batchnorm_params *)L->params)->sync = sync;
    return 0;
}

const cnn_bn_sync *cnn_batchnorm_sync(const cnn_layer *L) {
    if (!L || L->ops != &cnn_layer_batchnorm) return NULL;
    return ((const batchnorm_params *)L->params)->sync;
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

/* With a fused relu, y holds relu(batchnorm(x)) and dy the gradient of the relu's output: the kernels take
 * y as the mask of the relu's backward. */
static const float *relu_mask(const cnn_layer_run *r, size_t off) {
    return ((const batchnorm_params *)r->L->params)->fused_relu ? r->y + off : NULL;
}

/* sum(dy) and sum(dy * xhat) over one channel, in sample order. Without a sync hook, a training backward
 * computes them once: backward_weights (which runs first) keeps them in saved (after mu and inv_std, where
 * sync mode keeps its reduced sums) and sets saved[2c] = 1; backward_data takes them and clears the flag. A
 * training forward clears it too. With a sync hook the same holds for this rank's own sums, which
 * backward_data then reduces; the flag is sums[2c] there (saved[2c] holds the global count). */
static void channel_sums(const cnn_layer_run *r, size_t c, size_t hw, size_t ch, double mu, double inv_std,
                         double *sum_dy, double *sum_dy_xhat) {
    double s1, s2;
    bn_kernels_of(r->ctx).dsums(r->x[0] + ch * hw, r->dy + ch * hw, relu_mask(r, ch * hw), r->n, c * hw, hw,
                                (float)mu, &s1, &s2);
    *sum_dy = s1;
    *sum_dy_xhat = s2 * inv_std;
}

static int sums_cached(const cnn_layer_run *r, size_t c) {
    const batchnorm_params *p = r->L->params;
    return r->training && !p->sync && ((const double *)r->saved)[2 * c] == 1.0;
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
        if (j->cached) {
            const double *sums = (const double *)r->saved + 2 * c + 1;
            s1 = sums[ch];
            s2 = sums[c + ch];
        } else {
            channel_sums(r, c, hw, ch, mu, inv_std, &s1, &s2);
        }
        mdy = (float)(s1 / m);
        mdyx = (float)(s2 / m);
    }
    bn_kernels_of(r->ctx).bwd(r->x[0] + ch * hw, r->dy + ch * hw, relu_mask(r, ch * hw), r->dx[0] + ch * hw, n, c * hw,
                              hw, k1, mdy, muf,
                              isf * mdyx, r->dx_accumulate[0]);
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
        double *sums = (double *)r->saved + 2 * j.c + 1;
        if (sums[2 * j.c] != 1.0) /* (backward_weights did not leave this rank's sums there) */
            cnn_pool_for(r->ctx, j.c, sync_grad_sums_channel, &j);
        sums[2 * j.c] = 0;
        p->sync->allreduce_sum(p->sync->user, sums, 2 * j.c, 1);
    }
    j.cached = sums_cached(r, j.c);
    cnn_pool_for(r->ctx, j.c, backward_data_channel, &j);
    if (j.cached) ((double *)r->saved)[2 * j.c] = 0;
}

static void backward_weights_channel(void *arg, size_t ch, size_t thread) {
    (void)thread;
    const bn_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c;
    double mu, inv_std, s1, s2;
    channel_stats(r, c, ch, &mu, &inv_std);
    channel_sums(r, c, j->hw, ch, mu, inv_std, &s1, &s2);
    if (j->cached) { /* kept for backward_data */
        double *sums = (double *)r->saved + 2 * c + 1;
        sums[ch] = s1;
        sums[c + ch] = s2;
    }
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
    j.cached = r->training;
    cnn_pool_for(r->ctx, j.c, backward_weights_channel, &j);
    /* the flag: saved[2c] without a hook; with one saved[2c] is the global count, and the flag is the
     * sums area's last double (sums[2c], unused in backward) */
    if (j.cached) ((double *)r->saved)[p->sync ? 4 * j.c + 1 : 2 * j.c] = 1.0;
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
