/* reshape.c — reshape: the same floats under another per-sample shape (ONNX Reshape / Flatten / Squeeze /
 * Unsqueeze / Identity where the memory order is unchanged).
 *
 * Math      y = x elementwise; only the shape (c, h, w) changes, c*h*w is kept. Backward: dx = dy.
 * Keys      c=, h=, w= (each >= 1; default 1). The product must equal the input's c*h*w.
 * Layouts   x, y, dx, dy: n * count floats, NCHW; memory order is unchanged by definition.
 * FLOPs     0. Algorithm: memcpy (skipped when y aliases x), contiguous ranges over threads.
 * References ONNX Reshape; torch.reshape on a contiguous tensor.
 */
#include "layer.h"

#include <string.h>

#define CHUNK ((size_t)65536)

typedef struct reshape_params {
    size_t c, h, w;
} reshape_params;

#if defined(_OPENMP)
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

static cnn_status reshape_parse(struct cnn_kv *kv, void *params) {
    reshape_params *p = params;
    cnn_status st;
    p->c = p->h = p->w = 1;
    if ((st = cnn_kv_size(kv, "c", 1, (size_t)1 << 40, &p->c, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_size(kv, "h", 1, (size_t)1 << 40, &p->h, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_size(kv, "w", 1, (size_t)1 << 40, &p->w, NULL)) != CNN_OK) return st;
    return CNN_OK;
}

static void reshape_print(const void *params, cnn_strbuf *out) {
    const reshape_params *p = params;
    cnn_strbuf_printf(out, " c=%zu h=%zu w=%zu", p->c, p->h, p->w);
}

static cnn_status reshape_shape(cnn_layer *L) {
    const reshape_params *p = L->params;
    size_t a, b;
    cnn_shape o = {p->c, p->h, p->w};
    if (!cnn_shape_count(L->in[0], &a) || !cnn_shape_count(o, &b))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "shape has too many elements");
    if (a != b)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "cannot reshape %zux%zux%zu (%zu elements) to %zux%zux%zu (%zu)",
                               L->in[0].c, L->in[0].h, L->in[0].w, a, o.c, o.h, o.w, b);
    L->out = o;
    return CNN_OK;
}

static void reshape_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    memset(s, 0, sizeof *s);
}

typedef struct rs_job {
    const cnn_layer_run *r;
    size_t total;
    int backward;
} rs_job;

static void rs_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const rs_job *j = arg;
    size_t b = task * CHUNK, e = b + CHUNK < j->total ? b + CHUNK : j->total;
    if (!j->backward) {
        if (j->r->y != j->r->x[0]) memcpy(j->r->y + b, j->r->x[0] + b, (e - b) * sizeof(float));
        return;
    }
    float *dx = j->r->dx[0];
    const float *dy = j->r->dy;
    if (j->r->dx_accumulate[0]) {
        SIMD
        for (size_t i = b; i < e; i++) dx[i] += dy[i];
    } else if (dx != dy) {
        memcpy(dx + b, dy + b, (e - b) * sizeof(float));
    }
}

static void rs_run(const cnn_layer_run *r, int backward) {
    rs_job j = {r, r->n * r->L->out.c * r->L->out.h * r->L->out.w, backward};
    if (backward && !r->dx[0]) return;
    if (j.total) cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, rs_task, &j);
}

static void reshape_forward(const cnn_layer_run *r) { rs_run(r, 0); }
static void reshape_backward_data(const cnn_layer_run *r) { rs_run(r, 1); }

const struct cnn_layer_ops cnn_layer_reshape = {
    .name = "reshape",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(reshape_params),
    .parse = reshape_parse,
    .print = reshape_print,
    .shape = reshape_shape,
    .sizes = reshape_sizes,
    .forward = reshape_forward,
    .backward_data = reshape_backward_data,
};
