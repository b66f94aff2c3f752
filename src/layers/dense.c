/* dense.c — fully connected layer (PyTorch nn.Linear on the flattened input).
 *
 * Math      y[i, j] = sum_k x[i, k] * W[j, k] + b[j]          Y = X W^T + b
 *           dX = dY W      dW = dY^T X      db[j] = sum_i dY[i, j]
 * Layouts   x: n x (c*h*w), the NCHW sample flattened in memory order (c, then h, then w), in = c*h*w;
 *           y: n x out, per-sample shape (out, 1, 1); W: [out, in] row-major (PyTorch layout), b: [out].
 * FLOPs     2 * in * out per sample (forward; the bias add is not counted).
 * Algorithm one row-major SGEMM from the kernel table per thread block:
 *           forward        sgemm(N, T): Y[n,out] = X[n,in] * W[out,in]^T, then + b
 *           backward_data  sgemm(N, N): dX[n,in] = dY[n,out] * W[out,in]   (beta = 1 when accumulating)
 *           backward_wts   sgemm(T, N): dW[out,in] = dY[n,out]^T * X[n,in]
 *           Threads split the batch when it is large (n >= 4 * threads), else the output columns of the
 *           product (aligned to 16) so that a batch of one still uses every thread. dW is split over its
 *           rows (or, with few rows, its columns): every element is produced by exactly one thread, so no
 *           reduction is needed and the result is independent of the thread count. db sums dY over the
 *           batch in sample order in double. Products under SMALL_MACS multiply-adds run on one thread.
 * References PyTorch torch.nn.Linear; Goodfellow et al., Deep Learning, 6.5.
 */
#include "layer.h"

#include <string.h>

typedef struct dense_params {
    size_t out;
    int bias;
} dense_params;

static cnn_status dense_parse(struct cnn_kv *kv, void *params) {
    dense_params *p = params;
    p->out = 0;
    p->bias = 1;
    int present = 0;
    cnn_status st = cnn_kv_size(kv, "out", 1, SIZE_MAX, &p->out, &present);
    if (st != CNN_OK) return st;
    if (!present) return cnn_kv_error(kv, NULL, "dense needs out=<features>");
    return cnn_kv_bool(kv, "bias", &p->bias, NULL);
}

static void dense_print(const void *params, cnn_strbuf *out) {
    const dense_params *p = params;
    cnn_strbuf_printf(out, " out=%zu", p->out);
    if (!p->bias) cnn_strbuf_printf(out, " bias=0");
}

static cnn_status dense_shape(cnn_layer *L) {
    const dense_params *p = L->params;
    size_t in, wcount, tmp;
    cnn_shape s = L->in[0];
    if (!cnn_shape_count(s, &in))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input (%zu,%zu,%zu) has too many elements", s.c, s.h, s.w);
    if (in == 0) return cnn_layer_error(L, CNN_ERR_SHAPE, "input has no elements");
    if (!cnn_size_mul(in, p->out, &wcount) || !cnn_size_add(wcount, p->out, &tmp) ||
        !cnn_size_mul(tmp, 2 * sizeof(float), &tmp))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "weight [%zu, %zu] has too many elements", p->out, in);
    L->out = (cnn_shape){p->out, 1, 1};
    return CNN_OK;
}

/* Input features c*h*w (checked against overflow in shape). */
static size_t dense_in(const cnn_layer *L) { return L->in[0].c * L->in[0].h * L->in[0].w; }

static void dense_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const dense_params *p = L->params;
    size_t in = dense_in(L);
    memset(s, 0, sizeof *s);
    s->tensors[0] = (cnn_tensor_desc){.suffix = "weight", .ndim = 2, .dims = {p->out, in}, .trainable = 1,
                                      .role = CNN_ROLE_WEIGHT, .fan_in = in, .fan_out = p->out};
    s->n_tensors = 1;
    if (p->bias) {
        s->tensors[1] = (cnn_tensor_desc){.suffix = "bias", .ndim = 1, .dims = {p->out}, .trainable = 1,
                                          .role = CNN_ROLE_BIAS, .fan_in = in, .fan_out = p->out};
        s->n_tensors = 2;
    }
    s->flops = (uint64_t)2 * in * p->out;
    s->algorithm = "gemm";
}

/* ---- threading ---- */

typedef struct dense_job {
    const cnn_layer_run *r;
    size_t in, out, parts;
    int split_batch; /* 1: tasks own sample ranges; 0: tasks own column (or dW row) ranges */
} dense_job;

/* Range i of `parts` over [0, n) in blocks of `align` (the last block takes the tail). */
static void split_aligned(size_t n, size_t parts, size_t i, size_t align, size_t *b, size_t *e) {
    size_t blocks = (n + align - 1) / align, bb, be;
    cnn_split_range(blocks, parts, i, &bb, &be);
    *b = bb * align < n ? bb * align : n;
    *e = be * align < n ? be * align : n;
}

/* Threads for one product: one when it is small (M1's fc2, 64 x 128 x 10, takes a few microseconds, less
 * than a parallel region costs on a busy machine). The split depends only on the shape and the thread
 * count, so results stay deterministic. */
#define SMALL_MACS ((size_t)1 << 20)
static size_t dense_parts(const cnn_layer_run *r) {
    size_t macs = r->n * dense_in(r->L) * ((const dense_params *)r->L->params)->out;
    if (macs < SMALL_MACS) return 1;
    return r->ctx->threads ? r->ctx->threads : 1;
}

static void forward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const dense_job *j = arg;
    const cnn_layer_run *r = j->r;
    const dense_params *p = r->L->params;
    const float *x = r->x[0], *w = r->w, *b = p->bias ? r->w + j->out * j->in : NULL;
    size_t in = j->in, out = j->out, i0 = 0, i1 = r->n, c0 = 0, c1 = out;
    if (j->split_batch)
        cnn_split_range(r->n, j->parts, task, &i0, &i1);
    else
        split_aligned(out, j->parts, task, 16, &c0, &c1);
    if (i1 <= i0 || c1 <= c0) return;
    /* Y[i0:i1, c0:c1] = X[i0:i1, :] * W[c0:c1, :]^T */
    r->ctx->kernels.sgemm(0, 1, i1 - i0, c1 - c0, in, 1.0f, x + i0 * in, in, w + c0 * in, in, 0.0f,
                          r->y + i0 * out + c0, out);
    if (b)
        for (size_t i = i0; i < i1; i++) {
            float *y = r->y + i * out;
            for (size_t c = c0; c < c1; c++) y[c] += b[c];
        }
}

static void dense_forward(const cnn_layer_run *r) {
    const dense_params *p = r->L->params;
    dense_job j = {.r = r, .in = dense_in(r->L), .out = p->out, .parts = dense_parts(r)};
    if (r->n == 0) return;
    j.split_batch = r->n >= 4 * j.parts || j.out < 32;
    cnn_pool_for(r->ctx, j.parts, forward_task, &j);
}

static void backward_data_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const dense_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t in = j->in, out = j->out, i0 = 0, i1 = r->n, c0 = 0, c1 = in;
    if (j->split_batch)
        cnn_split_range(r->n, j->parts, task, &i0, &i1);
    else
        split_aligned(in, j->parts, task, 16, &c0, &c1);
    if (i1 <= i0 || c1 <= c0) return;
    /* dX[i0:i1, c0:c1] (+)= dY[i0:i1, :] * W[:, c0:c1] */
    r->ctx->kernels.sgemm(0, 0, i1 - i0, c1 - c0, out, 1.0f, r->dy + i0 * out, out, r->w + c0, in,
                          r->dx_accumulate[0] ? 1.0f : 0.0f, r->dx[0] + i0 * in + c0, in);
}

static void dense_backward_data(const cnn_layer_run *r) {
    const dense_params *p = r->L->params;
    dense_job j = {.r = r, .in = dense_in(r->L), .out = p->out, .parts = dense_parts(r)};
    if (!r->dx[0] || r->n == 0) return;
    j.split_batch = r->n >= 4 * j.parts || j.in < 32;
    cnn_pool_for(r->ctx, j.parts, backward_data_task, &j);
}

static void backward_weights_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const dense_job *j = arg;
    const cnn_layer_run *r = j->r;
    const dense_params *p = r->L->params;
    size_t in = j->in, out = j->out, n = r->n, o0 = 0, o1 = out, c0 = 0, c1 = in;
    float *dw = r->dw, *db = p->bias ? r->dw + out * in : NULL;
    if (j->split_batch) /* here: 1 = split dW rows (outputs), 0 = split dW columns (inputs) */
        cnn_split_range(out, j->parts, task, &o0, &o1);
    else
        split_aligned(in, j->parts, task, 16, &c0, &c1);
    if (o1 > o0 && c1 > c0)
        /* dW[o0:o1, c0:c1] = dY[:, o0:o1]^T * X[:, c0:c1] */
        r->ctx->kernels.sgemm(1, 0, o1 - o0, c1 - c0, n, 1.0f, r->dy + o0, out, r->x[0] + c0, in, 0.0f,
                              dw + o0 * in + c0, in);
    /* db over this task's rows; with a column split the task owning column 0 does all of db. */
    if (db && o1 > o0 && c0 == 0 && c1 > c0)
        for (size_t o = o0; o < o1; o++) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++) s += r->dy[i * out + o];
            db[o] = (float)s;
        }
}

static void dense_backward_weights(const cnn_layer_run *r) {
    const dense_params *p = r->L->params;
    dense_job j = {.r = r, .in = dense_in(r->L), .out = p->out, .parts = dense_parts(r)};
    if (!r->dw) return;
    if (r->n == 0) {
        memset(r->dw, 0, (j.out * j.in + (p->bias ? j.out : 0)) * sizeof(float));
        return;
    }
    j.split_batch = j.out >= 8 * j.parts || j.in < 32;
    cnn_pool_for(r->ctx, j.parts, backward_weights_task, &j);
}

const struct cnn_layer_ops cnn_layer_dense = {
    .name = "dense",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(dense_params),
    .parse = dense_parse,
    .print = dense_print,
    .shape = dense_shape,
    .sizes = dense_sizes,
    .forward = dense_forward,
    .backward_data = dense_backward_data,
    .backward_weights = dense_backward_weights,
};
