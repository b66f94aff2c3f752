/* softmax.c — softmax over channels (PyTorch nn.Softmax(dim=1) on NCHW).
 *
 * Math      at every sample i and position (h, w), over the c channels:
 *             y_k = exp(x_k - max_j x_j) / sum_j exp(x_j - max_j x_j)     (subtracting the max keeps
 *             every exponent <= 0: no overflow for large logits, and at least one term equals 1)
 *           backward: dx_k = y_k * (dy_k - sum_j dy_j * y_j)
 *           NaN anywhere in a row makes the whole row NaN (it reaches the sum).
 * Layouts   x, y, dx, dy: n x c x h x w (NCHW); the channels of one position are hw floats apart (1 for a
 *           dense output (c,1,1)).
 * FLOPs     4 per element (max, subtract and exp, sum, scale).
 * Algorithm rows (sample, position) split into contiguous ranges over threads; sums in double.
 * References Goodfellow et al., Deep Learning, 6.2.2.3 and 4.1.
 */
#include "layer.h"

#include <math.h>
#include <string.h>

static cnn_status softmax_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void softmax_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status softmax_shape(cnn_layer *L) {
    cnn_shape s = L->in[0];
    size_t count;
    if (!cnn_shape_count(s, &count))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input (%zu,%zu,%zu) has too many elements", s.c, s.h, s.w);
    if (count == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no elements");
    L->out = s;
    return CNN_OK;
}

static void softmax_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    memset(s, 0, sizeof *s);
    s->flops = (uint64_t)4 * L->in[0].c * L->in[0].h * L->in[0].w;
}

typedef struct softmax_job {
    const cnn_layer_run *r;
    size_t c, hw, rows, parts;
} softmax_job;

static void forward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const softmax_job *j = arg;
    size_t c = j->c, hw = j->hw, b, e;
    cnn_split_range(j->rows, j->parts, task, &b, &e);
    for (size_t row = b; row < e; row++) {
        size_t i = row / hw, pos = row % hw;
        const float *x = j->r->x[0] + i * c * hw + pos;
        float *y = j->r->y + i * c * hw + pos;
        float mx = x[0];
        for (size_t k = 1; k < c; k++)
            if (x[k * hw] > mx) mx = x[k * hw];
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) {
            float v = expf(x[k * hw] - mx);
            y[k * hw] = v;
            sum += v;
        }
        float inv = (float)(1.0 / sum);
        for (size_t k = 0; k < c; k++) y[k * hw] *= inv;
    }
}

static void backward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const softmax_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t c = j->c, hw = j->hw, b, e;
    int acc = r->dx_accumulate[0];
    cnn_split_range(j->rows, j->parts, task, &b, &e);
    for (size_t row = b; row < e; row++) {
        size_t off = (row / hw) * c * hw + row % hw;
        const float *y = r->y + off, *dy = r->dy + off;
        float *dx = r->dx[0] + off;
        double s = 0.0;
        for (size_t k = 0; k < c; k++) s += (double)dy[k * hw] * y[k * hw];
        float sf = (float)s;
        for (size_t k = 0; k < c; k++) {
            float v = y[k * hw] * (dy[k * hw] - sf);
            dx[k * hw] = acc ? dx[k * hw] + v : v;
        }
    }
}

static softmax_job make_job(const cnn_layer_run *r) {
    softmax_job j = {.r = r, .c = r->L->in[0].c, .hw = r->L->in[0].h * r->L->in[0].w};
    j.rows = r->n * j.hw;
    j.parts = r->ctx->threads ? r->ctx->threads : 1;
    return j;
}

static void softmax_forward(const cnn_layer_run *r) {
    softmax_job j = make_job(r);
    cnn_pool_for(r->ctx, j.parts, forward_task, &j);
}

static void softmax_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    softmax_job j = make_job(r);
    cnn_pool_for(r->ctx, j.parts, backward_task, &j);
}

const struct cnn_layer_ops cnn_layer_softmax = {
    .name = "softmax",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = 0,
    .parse = softmax_parse,
    .print = softmax_print,
    .shape = softmax_shape,
    .sizes = softmax_sizes,
    .forward = softmax_forward,
    .backward_data = softmax_backward_data,
};
