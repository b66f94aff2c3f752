/* add.c — add: elementwise sum of 2..8 inputs of identical shape (residual connections).
 *
 * Math: y = x_0 + x_1 + ... + x_{k-1}, summed in input order (so results do not depend on threads).
 * Backward: dx_i = dy for every input i (stored, or added when that tensor has several consumers; skipped
 * when the network needs no gradient for it). An input named twice (`add from=a,a`) is handled by the
 * network's accumulate flags; inputs are processed in order within each chunk, so that is exact.
 * Layouts: every x_i, y, dy, dx_i is n * (c,h,w) floats, NCHW; out = in[0].
 * FLOPs: (k - 1) * c*h*w per sample.
 * Algorithm: chunks of CHUNK floats over the context's threads (cnn_pool_for); inside a chunk, tiles of
 * TILE floats are summed in a stack buffer and then stored, so y may even share memory with an input.
 * References: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; torch.add.
 */
#include "layer.h"

#include <string.h>

#define CHUNK ((size_t)16384)
#define TILE ((size_t)256)

typedef struct add_params {
    int unused;
} add_params;

#if defined(_OPENMP)
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

typedef struct add_job {
    const cnn_layer_run *r;
    size_t total;
} add_job;

static void add_fwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const add_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t k = r->L->n_inputs;
    size_t b = task * CHUNK;
    size_t e = b + CHUNK < j->total ? b + CHUNK : j->total;
    float acc[TILE];
    for (size_t t0 = b; t0 < e; t0 += TILE) {
        size_t m = e - t0 < TILE ? e - t0 : TILE;
        const float *x0 = r->x[0] + t0;
        for (size_t i = 0; i < m; i++) acc[i] = x0[i];
        for (size_t in = 1; in < k; in++) {
            const float *xi = r->x[in] + t0;
            SIMD
            for (size_t i = 0; i < m; i++) acc[i] += xi[i];
        }
        memcpy(r->y + t0, acc, m * sizeof(float));
    }
}

static void add_bwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const add_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t b = task * CHUNK;
    size_t e = b + CHUNK < j->total ? b + CHUNK : j->total;
    const float *dy = r->dy;
    for (size_t in = 0; in < r->L->n_inputs; in++) {
        float *dx = r->dx[in];
        if (!dx) continue;
        if (r->dx_accumulate[in]) {
            SIMD
            for (size_t i = b; i < e; i++) dx[i] += dy[i];
        } else if (dx != dy) {
            memcpy(dx + b, dy + b, (e - b) * sizeof(float));
        }
    }
}

static size_t total_of(const cnn_layer_run *r) {
    return r->n * r->L->out.c * r->L->out.h * r->L->out.w;
}

static void add_forward(const cnn_layer_run *r) {
    add_job j = {r, total_of(r)};
    if (j.total) cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, add_fwd_task, &j);
}

static void add_backward_data(const cnn_layer_run *r) {
    add_job j = {r, total_of(r)};
    if (j.total) cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, add_bwd_task, &j);
}

static cnn_status add_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void add_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status add_shape(cnn_layer *L) {
    cnn_shape s0 = L->in[0];
    for (size_t i = 1; i < L->n_inputs; i++) {
        cnn_shape s = L->in[i];
        if (s.c != s0.c || s.h != s0.h || s.w != s0.w)
            return cnn_layer_error(L, CNN_ERR_SHAPE,
                                   "inputs differ in shape: input %zu is %zux%zux%zu, input 0 is %zux%zux%zu", i,
                                   s.c, s.h, s.w, s0.c, s0.h, s0.w);
    }
    L->out = s0;
    return CNN_OK;
}

static void add_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    size_t count = 0, flops = 0;
    memset(s, 0, sizeof *s);
    if (cnn_shape_count(L->out, &count) && cnn_size_mul(count, L->n_inputs - 1, &flops))
        s->flops = (uint64_t)flops;
}

const struct cnn_layer_ops cnn_layer_add = {
    .name = "add",
    .min_inputs = 2,
    .max_inputs = 8,
    .params_size = sizeof(add_params),
    .parse = add_parse,
    .print = add_print,
    .shape = add_shape,
    .sizes = add_sizes,
    .forward = add_forward,
    .backward_data = add_backward_data,
};
