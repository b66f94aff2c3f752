/* loss.c — the loss layers: softmax_ce (softmax + cross-entropy with integer labels) and mse.
 * Both are the last layer of a net (is_loss), take one input and output a tensor of the input's shape.
 *
 * softmax_ce (PyTorch nn.CrossEntropyLoss(reduction='mean', label_smoothing=s) on logits)
 *   Input     logits x of shape (C,1,1); labels: one int32 class in [0, C) per sample (range-checked by
 *             the network before the loss callback).
 *   Forward   y = softmax(x), numerically stable (the row max is subtracted before exp).
 *   Loss      target distribution q_j = (1 - s) * [j == label] + s / C (PyTorch's label smoothing)
 *             lse = max + log(sum_j exp(x_j - max)),  log p_j = x_j - lse
 *             loss = (1/n) * sum_i sum_j -q_ij * log p_ij   (double; no log(0) since log p = x - lse)
 *             dx_ij = (p_ij - q_ij) / n
 *             correct: argmax_j y_ij == label_i (first maximum on ties)
 *   FLOPs     4 per element (softmax).
 *
 * mse (PyTorch nn.MSELoss(reduction='mean'))
 *   Input     any (c,h,w) with K = c*h*w outputs per sample; targets: n * K floats.
 *   Forward   y = x.
 *   Loss      loss = (1/(n*K)) * sum (y - t)^2 (double), dx = 2 * (y - t) / (n*K)
 *             correct: per sample argmax(y) == argmax(t) (first maximum), counted only when K > 1.
 *   FLOPs     0 (a copy).
 *
 * Layouts   x, y, dx: n x K floats, NCHW.
 * Algorithm the loss callbacks run serially over the batch in sample order (n*K is tiny next to the
 *           layers before; the order makes the mean deterministic); the softmax forward splits samples
 *           over threads when the batch has at least SMALL_WORK logits (else one thread: M1's 64 x 10). backward_data is NULL: the network takes dx from the loss callback.
 * References PyTorch torch.nn.CrossEntropyLoss and torch.nn.MSELoss documentation; Szegedy et al.,
 *           "Rethinking the Inception Architecture" (2016) for label smoothing.
 */
#include "layer.h"

#include <math.h>
#include <string.h>

#define SMALL_WORK ((size_t)16384) /* elements below which the softmax runs on the calling thread */

static size_t loss_count(const cnn_layer *L) { return L->in[0].c * L->in[0].h * L->in[0].w; }

/* First index of the maximum of v[0..k); NaN entries are never a maximum unless v[0] is NaN. */
static size_t argmax(const float *v, size_t k) {
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

/* ---------------- softmax_ce ---------------- */

typedef struct softmax_ce_params {
    double label_smoothing;
} softmax_ce_params;

static cnn_status softmax_ce_parse(struct cnn_kv *kv, void *params) {
    softmax_ce_params *p = params;
    p->label_smoothing = 0.0;
    cnn_status st = cnn_kv_float(kv, "label_smoothing", 0.0, 1.0, &p->label_smoothing, NULL);
    if (st != CNN_OK) return st;
    if (!(p->label_smoothing < 1.0))
        return cnn_kv_error(kv, "label_smoothing", "label_smoothing must be in [0, 1)");
    return CNN_OK;
}

static void softmax_ce_print(const void *params, cnn_strbuf *out) {
    const softmax_ce_params *p = params;
    if (p->label_smoothing != 0.0) {
        char buf[40];
        cnn_format_float(buf, sizeof buf, p->label_smoothing);
        cnn_strbuf_printf(out, " label_smoothing=%s", buf);
    }
}

static cnn_status softmax_ce_shape(cnn_layer *L) {
    cnn_shape s = L->in[0];
    if (s.h != 1 || s.w != 1)
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "input is (%zu,%zu,%zu), needs class scores of shape (classes,1,1) "
                               "(add flatten or dense before it)",
                               s.c, s.h, s.w);
    if (s.c == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no classes");
    L->out = s;
    return CNN_OK;
}

static void softmax_ce_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    memset(s, 0, sizeof *s);
    s->flops = (uint64_t)4 * L->in[0].c;
}

typedef struct rows_job {
    const cnn_layer_run *r;
    size_t c, parts;
} rows_job;

static void softmax_rows_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const rows_job *j = arg;
    size_t c = j->c, b, e;
    cnn_split_range(j->r->n, j->parts, task, &b, &e);
    for (size_t i = b; i < e; i++) {
        const float *x = j->r->x[0] + i * c;
        float *y = j->r->y + i * c;
        float mx = x[0];
        for (size_t k = 1; k < c; k++)
            if (x[k] > mx) mx = x[k];
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) {
            float v = expf(x[k] - mx);
            y[k] = v;
            sum += v;
        }
        float inv = (float)(1.0 / sum);
        for (size_t k = 0; k < c; k++) y[k] *= inv;
    }
}

static void softmax_ce_forward(const cnn_layer_run *r) {
    rows_job j = {.r = r, .c = r->L->in[0].c, .parts = r->ctx->threads ? r->ctx->threads : 1};
    /* a few thousand exps take microseconds: less than waking a second thread (pool.c) */
    if (r->n * j.c < SMALL_WORK) j.parts = 1;
    cnn_pool_for(r->ctx, j.parts, softmax_rows_task, &j);
}

static double softmax_ce_loss(const cnn_layer_run *r, const int32_t *labels, const float *targets, float *dx,
                              size_t *correct) {
    (void)targets;
    const softmax_ce_params *p = r->L->params;
    size_t n = r->n, c = r->L->in[0].c, ok = 0;
    double s = p->label_smoothing, off = s / (double)c, total = 0.0, inv_n = n ? 1.0 / (double)n : 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *x = r->x[0] + i * c;
        size_t label = (size_t)labels[i];
        double mx = x[0];
        for (size_t k = 1; k < c; k++)
            if (x[k] > mx) mx = x[k];
        double sum = 0.0, sum_x = 0.0;
        for (size_t k = 0; k < c; k++) {
            sum += exp((double)x[k] - mx);
            sum_x += x[k];
        }
        double lse = mx + log(sum);
        /* -sum_j q_j (x_j - lse) = lse - (1 - s) x_label - (s / C) sum_j x_j */
        total += lse - (1.0 - s) * (double)x[label] - off * sum_x;
        if (dx) {
            float *d = dx + i * c;
            for (size_t k = 0; k < c; k++) {
                double q = off + (k == label ? 1.0 - s : 0.0);
                d[k] = (float)((exp((double)x[k] - lse) - q) * inv_n);
            }
        }
        if (argmax(r->y + i * c, c) == label) ok++;
    }
    if (correct) *correct = ok;
    return total * inv_n;
}

/* ---------------- mse ---------------- */

static cnn_status mse_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void mse_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status mse_shape(cnn_layer *L) {
    cnn_shape s = L->in[0];
    size_t count;
    if (!cnn_shape_count(s, &count))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input (%zu,%zu,%zu) has too many elements", s.c, s.h, s.w);
    if (count == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no elements");
    L->out = s;
    return CNN_OK;
}

static void mse_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    memset(s, 0, sizeof *s);
}

static void mse_forward(const cnn_layer_run *r) {
    if (r->y != r->x[0]) memcpy(r->y, r->x[0], r->n * loss_count(r->L) * sizeof(float));
}

static double mse_loss(const cnn_layer_run *r, const int32_t *labels, const float *targets, float *dx,
                       size_t *correct) {
    (void)labels;
    size_t n = r->n, k = loss_count(r->L), ok = 0, total = n * k;
    if (correct) *correct = 0;
    if (total == 0) return 0.0;
    if (!targets) { /* the network checks this; never read through NULL */
        if (dx) memset(dx, 0, total * sizeof(float));
        return NAN;
    }
    double sum = 0.0, scale = 2.0 / (double)total;
    for (size_t i = 0; i < total; i++) {
        double d = (double)r->y[i] - (double)targets[i];
        sum += d * d;
        if (dx) dx[i] = (float)(d * scale);
    }
    if (k > 1)
        for (size_t i = 0; i < n; i++)
            if (argmax(r->y + i * k, k) == argmax(targets + i * k, k)) ok++;
    if (correct) *correct = ok;
    return sum / (double)total;
}

const struct cnn_layer_ops cnn_layer_softmax_ce = {
    .name = "softmax_ce",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(softmax_ce_params),
    .is_loss = 1,
    .parse = softmax_ce_parse,
    .print = softmax_ce_print,
    .shape = softmax_ce_shape,
    .sizes = softmax_ce_sizes,
    .forward = softmax_ce_forward,
    .backward_data = NULL,
    .loss = softmax_ce_loss,
};

const struct cnn_layer_ops cnn_layer_mse = {
    .name = "mse",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = 0,
    .is_loss = 1,
    .parse = mse_parse,
    .print = mse_print,
    .shape = mse_shape,
    .sizes = mse_sizes,
    .forward = mse_forward,
    .backward_data = NULL,
    .loss = mse_loss,
};

/* ---- label smoothing from outside the model text (part "recipe": cnn train --label-smoothing) ---- */
#include "../core/net_internal.h"

cnn_status cnn_net_set_label_smoothing(cnn_net *net, double eps) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (!(eps >= 0.0 && eps < 1.0))
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "label smoothing must be in [0, 1), got %g", eps);
    cnn_layer *L = net->n_layers ? &net->layers[net->n_layers - 1] : NULL;
    if (!L || L->ops != &cnn_layer_softmax_ce || !L->params)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "label smoothing needs a softmax_ce loss as the last layer, got %s",
                         L ? L->ops->name : "no layers");
    ((softmax_ce_params *)L->params)->label_smoothing = eps;
    return CNN_OK;
}
