/* concat.c — concat: join 2..8 inputs along channels (torch.cat(dim=1) on NCHW).
 *
 * Math: inputs x_i of shape (c_i, h, w), equal h and w; y has shape (sum c_i, h, w) and
 *   y[n][off_i + c][h][w] = x_i[n][c][h][w],  off_i = c_0 + ... + c_{i-1}.
 * Backward: dx_i[n][c][h][w] = dy[n][off_i + c][h][w] (stored, or added when dx_i accumulates; skipped
 * when NULL). An input named twice (`concat from=a,a`) is exact: for one sample, the inputs are processed
 * in order by the same thread.
 * Layouts: NCHW; per sample an input is one contiguous block of c_i*h*w floats, so both passes are one
 * memcpy (or a vectorised add) per input and sample.
 * FLOPs: 0. Algorithm: one task per sample over the context's threads (cnn_pool_for).
 * References: PyTorch torch.cat; Szegedy et al., "Going Deeper with Convolutions" (inception joins), 2015.
 */
#include "layer.h"

#include <string.h>

typedef struct concat_params {
    int unused;
} concat_params;

static void concat_fwd_task(void *arg, size_t s, size_t thread) {
    (void)thread;
    const cnn_layer_run *r = arg;
    const cnn_layer *L = r->L;
    size_t hw = L->out.h * L->out.w;
    float *y = r->y + s * L->out.c * hw;
    for (size_t i = 0; i < L->n_inputs; i++) {
        size_t m = L->in[i].c * hw;
        memcpy(y, r->x[i] + s * m, m * sizeof(float));
        y += m;
    }
}

static void concat_bwd_task(void *arg, size_t s, size_t thread) {
    (void)thread;
    const cnn_layer_run *r = arg;
    const cnn_layer *L = r->L;
    size_t hw = L->out.h * L->out.w;
    const float *dy = r->dy + s * L->out.c * hw;
    for (size_t i = 0; i < L->n_inputs; i++) {
        size_t m = L->in[i].c * hw;
        float *dx = r->dx[i];
        if (dx) {
            dx += s * m;
            if (r->dx_accumulate[i]) {
#if defined(_OPENMP)
#pragma omp simd
#endif
                for (size_t k = 0; k < m; k++) dx[k] += dy[k];
            } else {
                memcpy(dx, dy, m * sizeof(float));
            }
        }
        dy += m;
    }
}

static void concat_forward(const cnn_layer_run *r) {
    cnn_pool_for(r->ctx, r->n, concat_fwd_task, (void *)r);
}

static void concat_backward_data(const cnn_layer_run *r) {
    cnn_pool_for(r->ctx, r->n, concat_bwd_task, (void *)r);
}

static cnn_status concat_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void concat_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status concat_shape(cnn_layer *L) {
    cnn_shape s0 = L->in[0];
    size_t c = s0.c;
    for (size_t i = 1; i < L->n_inputs; i++) {
        cnn_shape s = L->in[i];
        if (s.h != s0.h || s.w != s0.w)
            return cnn_layer_error(L, CNN_ERR_SHAPE,
                                   "inputs differ in height or width: input %zu is %zux%zux%zu, input 0 is "
                                   "%zux%zux%zu",
                                   i, s.c, s.h, s.w, s0.c, s0.h, s0.w);
        if (!cnn_size_add(c, s.c, &c))
            return cnn_layer_error(L, CNN_ERR_SHAPE, "total channel count overflows");
    }
    L->out.c = c;
    L->out.h = s0.h;
    L->out.w = s0.w;
    return CNN_OK;
}

static void concat_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    memset(s, 0, sizeof *s);
}

const struct cnn_layer_ops cnn_layer_concat = {
    .name = "concat",
    .min_inputs = 2,
    .max_inputs = 8,
    .params_size = sizeof(concat_params),
    .parse = concat_parse,
    .print = concat_print,
    .shape = concat_shape,
    .sizes = concat_sizes,
    .forward = concat_forward,
    .backward_data = concat_backward_data,
};
