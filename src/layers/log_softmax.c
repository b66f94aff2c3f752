/* log_softmax.c — log of the softmax over channels (PyTorch nn.LogSoftmax(dim=1), ONNX LogSoftmax).
 *
 * Math      at every sample and position (h, w), over the c channels, with m = max_j x_j:
 *             y_k = x_k - m - log(sum_j exp(x_j - m))      (every exponent <= 0, one term is 1: no
 *             overflow for large logits, and log of a sum >= 1)
 *           backward: dx_k = dy_k - exp(y_k) * sum_j dy_j
 *           NaN anywhere in a row makes the whole row NaN (it reaches the sum).
 * Layouts   x, y, dx, dy: n x c x h x w (NCHW); the channels of one position are hw floats apart.
 * FLOPs     4 per element (max, subtract and exp, sum, subtract).
 * Algorithm rows (sample, position) split into contiguous ranges over threads; sums in double, so results
 *           do not depend on the thread count.
 * References ONNX LogSoftmax-13; torch.nn.functional.log_softmax.
 */
#include "layer.h"

#include <math.h>
#include <string.h>

static cnn_status lsm_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void lsm_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status lsm_shape(cnn_layer *L) {
    size_t count;
    if (!cnn_shape_count(L->in[0], &count)) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has too many elements");
    if (count == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no elements");
    L->out = L->in[0];
    return CNN_OK;
}

static void lsm_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    memset(s, 0, sizeof *s);
    s->flops = (uint64_t)4 * L->in[0].c * L->in[0].h * L->in[0].w;
}

typedef struct lsm_job {
    const cnn_layer_run *r;
    size_t c, hw, rows, parts;
} lsm_job;

static void lsm_fwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const lsm_job *j = arg;
    size_t c = j->c, hw = j->hw, b, e;
    cnn_split_range(j->rows, j->parts, task, &b, &e);
    for (size_t row = b; row < e; row++) {
        size_t off = (row / hw) * c * hw + row % hw;
        const float *x = j->r->x[0] + off;
        float *y = j->r->y + off;
        float mx = x[0];
        for (size_t k = 1; k < c; k++)
            if (x[k * hw] > mx) mx = x[k * hw];
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) sum += exp((double)x[k * hw] - mx);
        double lse = (double)mx + log(sum);
        for (size_t k = 0; k < c; k++) y[k * hw] = (float)((double)x[k * hw] - lse);
    }
}

static void lsm_bwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const lsm_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw, b, e;
    int acc = r->dx_accumulate[0];
    cnn_split_range(j->rows, j->parts, task, &b, &e);
    for (size_t row = b; row < e; row++) {
        size_t off = (row / hw) * c * hw + row % hw;
        const float *y = r->y + off, *dy = r->dy + off;
        float *dx = r->dx[0] + off;
        double s = 0.0;
        for (size_t k = 0; k < c; k++) s += dy[k * hw];
        for (size_t k = 0; k < c; k++) {
            float v = (float)((double)dy[k * hw] - exp((double)y[k * hw]) * s);
            dx[k * hw] = acc ? dx[k * hw] + v : v;
        }
    }
}

static lsm_job make_job(const cnn_layer_run *r) {
    lsm_job j = {.r = r, .c = r->L->in[0].c, .hw = r->L->in[0].h * r->L->in[0].w};
    j.rows = r->n * j.hw;
    j.parts = r->ctx->threads ? r->ctx->threads : 1;
    return j;
}

static void lsm_forward(const cnn_layer_run *r) {
    lsm_job j = make_job(r);
    cnn_pool_for(r->ctx, j.parts, lsm_fwd_task, &j);
}

static void lsm_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    lsm_job j = make_job(r);
    cnn_pool_for(r->ctx, j.parts, lsm_bwd_task, &j);
}

const struct cnn_layer_ops cnn_layer_log_softmax = {
    .name = "log_softmax",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = 0,
    .parse = lsm_parse,
    .print = lsm_print,
    .shape = lsm_shape,
    .sizes = lsm_sizes,
    .forward = lsm_forward,
    .backward_data = lsm_backward_data,
};
