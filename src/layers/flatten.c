/* flatten.c — flatten: reshape a (c, h, w) sample to (c*h*w, 1, 1), as torch.nn.Flatten does for NCHW.
 *
 * Math: y[n][k] = x[n][k] for k in [0, c*h*w): the NCHW memory order is the flattened order (channel major,
 * then rows, then columns), so dense weights [out, c*h*w] match PyTorch's Flatten + Linear.
 * Backward: dx = dy (added when dx accumulates).
 * Layouts: x n*(c,h,w), y n*(c*h*w,1,1), both contiguous; the same bytes.
 * FLOPs: 0. Algorithm: memcpy (skipped when the network hands the same buffer), chunks of CHUNK floats over
 * the context's threads with cnn_pool_for; the accumulate case is a vectorised add.
 * References: PyTorch torch.nn.Flatten(start_dim=1).
 */
#include "layer.h"

#include <string.h>

#define CHUNK ((size_t)65536)

typedef struct flatten_params {
    int unused;
} flatten_params;

typedef struct copy_job {
    const float *src;
    float *dst;
    size_t total;
    int acc;
} copy_job;

static void copy_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const copy_job *j = arg;
    size_t b = task * CHUNK;
    size_t e = b + CHUNK < j->total ? b + CHUNK : j->total;
    if (j->acc) {
        const float *s = j->src;
        float *d = j->dst;
#if defined(_OPENMP)
#pragma omp simd
#endif
        for (size_t i = b; i < e; i++) d[i] += s[i];
    } else {
        memcpy(j->dst + b, j->src + b, (e - b) * sizeof(float));
    }
}

static void run_copy(const cnn_layer_run *r, const float *src, float *dst, int acc) {
    copy_job j = {src, dst, r->n * r->L->out.c, acc};
    if (j.total == 0 || (!acc && src == dst)) return;
    cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, copy_task, &j);
}

static void flatten_forward(const cnn_layer_run *r) { run_copy(r, r->x[0], r->y, 0); }

static void flatten_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    run_copy(r, r->dy, r->dx[0], r->dx_accumulate[0]);
}

static cnn_status flatten_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void flatten_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status flatten_shape(cnn_layer *L) {
    size_t count;
    if (!cnn_shape_count(L->in[0], &count))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input %zux%zux%zu has too many elements", L->in[0].c,
                               L->in[0].h, L->in[0].w);
    L->out.c = count;
    L->out.h = 1;
    L->out.w = 1;
    return CNN_OK;
}

static void flatten_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    memset(s, 0, sizeof *s);
}

const struct cnn_layer_ops cnn_layer_flatten = {
    .name = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(flatten_params),
    .parse = flatten_parse,
    .print = flatten_print,
    .shape = flatten_shape,
    .sizes = flatten_sizes,
    .forward = flatten_forward,
    .backward_data = flatten_backward_data,
};
