/* global_pool.c — global average and global max pooling over each channel plane: output (c, 1, 1), as
 * torch.nn.AdaptiveAvgPool2d(1) / AdaptiveMaxPool2d(1) (ONNX GlobalAveragePool / GlobalMaxPool).
 *
 * Math (per sample n, channel c; plane P = h * w):
 *   global_avgpool: y[n,c] = (sum_i x[n,c,i]) / P, summed in float64 (8 partial sums), rounded once;
 *                   dx[n,c,i] = dy[n,c] / P.
 *   global_maxpool: y[n,c] = max_i x[n,c,i]; the first maximum in row-major order wins (strict >), a NaN
 *                   replaces the running maximum and is never replaced by a number (`v > m || v != v`,
 *                   PyTorch's rule); dx[n,c,argmax] = dy[n,c], 0 elsewhere. Training forward saves the
 *                   argmax as int32 (saved_per_sample = 4 * c bytes); inference does not touch r->saved.
 * Layouts: x/dx (n, c, h, w), y/dy (n, c, 1, 1), NCHW contiguous. No keys in model text.
 * FLOPs per sample: c * h * w (one addition or comparison per input element).
 * Algorithm: one task per (n, c) plane through cnn_pool_for. The average sums in 8 interleaved float64
 *   partial sums (fixed order). The maximum runs 8 branch-free lanes and takes the smallest index among
 *   the lanes that reach the maximum (= the first maximum); a NaN or infinity in the plane (v * 0 is NaN)
 *   sends the plane through the plain sequential rule. Planes are independent, so results do not depend
 *   on the thread count. Memory-bound; no ISA-specific kernel.
 * References: PyTorch aten/src/ATen/native/cpu/AdaptiveAvgPoolKernel.cpp, AdaptiveMaxPoolKernel.cpp. */
#include "layer.h"

#include <math.h>
#include <string.h>

typedef struct gp_params {
    size_t plane; /* h * w, set by shape */
} gp_params;

static cnn_status gp_parse(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static void gp_print(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static cnn_status gp_shape_kind(cnn_layer *L, int is_max) {
    gp_params *p = L->params;
    cnn_shape in = L->in[0];
    if (in.c == 0 || in.h == 0 || in.w == 0)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input %zu x %zu x %zu is empty", in.c, in.h, in.w);
    if (!cnn_size_mul(in.h, in.w, &p->plane))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input plane %zu x %zu overflows", in.h, in.w);
    if (is_max && p->plane > (size_t)INT32_MAX)
        return cnn_layer_error(L, CNN_ERR_UNSUPPORTED,
                               "input plane %zu x %zu is too large for int32 argmax indices", in.h, in.w);
    size_t total;
    if (!cnn_size_mul(in.c, p->plane, &total))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input %zu x %zu x %zu overflows", in.c, in.h, in.w);
    L->out.c = in.c;
    L->out.h = 1;
    L->out.w = 1;
    return CNN_OK;
}

static cnn_status gap_shape(cnn_layer *L) { return gp_shape_kind(L, 0); }
static cnn_status gmp_shape(cnn_layer *L) { return gp_shape_kind(L, 1); }

static void gp_sizes_kind(const cnn_layer *L, cnn_layer_sizes *s, int is_max) {
    const gp_params *p = L->params;
    s->n_tensors = 0;
    s->saved_per_sample = is_max ? L->in[0].c * sizeof(int32_t) : 0; /* c fits: c * plane checked */
    s->saved_fixed = 0;
    s->ws_per_thread = 0;
    s->flops = (uint64_t)L->in[0].c * (uint64_t)p->plane; /* c * plane checked in shape */
    s->algorithm = NULL;
}

static void gap_sizes(const cnn_layer *L, cnn_layer_sizes *s) { gp_sizes_kind(L, s, 0); }
static void gmp_sizes(const cnn_layer *L, cnn_layer_sizes *s) { gp_sizes_kind(L, s, 1); }

typedef struct gp_args {
    const cnn_layer_run *r;
    size_t plane;
} gp_args;

/* ---- global_avgpool ---- */

/* Sum in float64 over 8 interleaved partial sums (independent add chains; the order is fixed, so the
 * result does not depend on threads), then the partials in order, then the tail. */
static void gap_forward_task(void *arg, size_t t, size_t thread) {
    const gp_args *a = arg;
    const float *x = a->r->x[0] + t * a->plane;
    const size_t P = a->plane;
    (void)thread;
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= P; i += 8)
        for (size_t l = 0; l < 8; l++)
            s[l] += x[i + l];
    double sum = 0.0;
    for (size_t l = 0; l < 8; l++)
        sum += s[l];
    for (; i < P; i++)
        sum += x[i];
    a->r->y[t] = (float)(sum / (double)P);
}

static void gap_forward(const cnn_layer_run *r) {
    const gp_params *p = r->L->params;
    gp_args a = {r, p->plane};
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, gap_forward_task, &a);
}

static void gap_backward_task(void *arg, size_t t, size_t thread) {
    const gp_args *a = arg;
    const cnn_layer_run *r = a->r;
    float *dx = r->dx[0] + t * a->plane;
    (void)thread;
    float g = r->dy[t] / (float)a->plane;
    if (r->dx_accumulate[0]) {
        for (size_t i = 0; i < a->plane; i++)
            dx[i] += g;
    } else {
        for (size_t i = 0; i < a->plane; i++)
            dx[i] = g;
    }
}

static void gap_backward_data(const cnn_layer_run *r) {
    const gp_params *p = r->L->params;
    if (!r->dx[0])
        return;
    gp_args a = {r, p->plane};
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, gap_backward_task, &a);
}

/* ---- global_maxpool ---- */

/* The sequential rule: first maximum (strict >), a NaN replaces the maximum and stays (PyTorch). */
static size_t argmax_seq(const float *x, size_t n) {
    float m = -INFINITY;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (v > m || v != v) {
            m = v;
            best = i;
        }
    }
    return best;
}

/* 8 interleaved lanes, branch-free (`v > m ? v : m`, mask-selected indices); each lane keeps its first
 * maximum, and the overall first maximum is the smallest index among the lanes that reach the maximum.
 * NaN and infinities make v * 0 NaN: then the sequential rule decides. */
static size_t argmax_fast(const float *x, size_t n) {
    if (n < 16)
        return argmax_seq(x, n);
    float m[8], f[8];
    int32_t idx[8];
    for (size_t l = 0; l < 8; l++) {
        m[l] = -INFINITY;
        f[l] = 0.0f;
        idx[l] = (int32_t)l;
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t l = 0; l < 8; l++) {
            const float v = x[i + l];
            const int32_t take = -(int32_t)(v > m[l]);
            m[l] = v > m[l] ? v : m[l];
            idx[l] = ((int32_t)(i + l) & take) | (idx[l] & ~take);
            f[l] += v * 0.0f;
        }
    float fl = 0.0f;
    for (size_t l = 0; l < 8; l++)
        fl += f[l];
    for (size_t j = i; j < n; j++)
        fl += x[j] * 0.0f;
    if (fl != fl)
        return argmax_seq(x, n);
    float bm = m[0];
    size_t best = (size_t)idx[0];
    for (size_t l = 1; l < 8; l++)
        if (m[l] > bm || (m[l] == bm && (size_t)idx[l] < best)) {
            bm = m[l];
            best = (size_t)idx[l];
        }
    for (; i < n; i++)
        if (x[i] > bm) {
            bm = x[i];
            best = i;
        }
    return best;
}

static void gmp_forward_task(void *arg, size_t t, size_t thread) {
    const gp_args *a = arg;
    const cnn_layer_run *r = a->r;
    const float *x = r->x[0] + t * a->plane;
    (void)thread;
    const size_t best = argmax_fast(x, a->plane);
    r->y[t] = x[best];
    if (r->training)
        ((int32_t *)r->saved)[t] = (int32_t)best;
}

static void gmp_forward(const cnn_layer_run *r) {
    const gp_params *p = r->L->params;
    gp_args a = {r, p->plane};
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, gmp_forward_task, &a);
}

static void gmp_backward_task(void *arg, size_t t, size_t thread) {
    const gp_args *a = arg;
    const cnn_layer_run *r = a->r;
    float *dx = r->dx[0] + t * a->plane;
    size_t best = (size_t)((const int32_t *)r->saved)[t];
    (void)thread;
    if (!r->dx_accumulate[0])
        memset(dx, 0, a->plane * sizeof(float));
    dx[best] += r->dy[t];
}

static void gmp_backward_data(const cnn_layer_run *r) {
    const gp_params *p = r->L->params;
    if (!r->dx[0])
        return;
    gp_args a = {r, p->plane};
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, gmp_backward_task, &a);
}

const struct cnn_layer_ops cnn_layer_global_avgpool = {
    .name = "global_avgpool",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(gp_params),
    .parse = gp_parse,
    .print = gp_print,
    .shape = gap_shape,
    .sizes = gap_sizes,
    .forward = gap_forward,
    .backward_data = gap_backward_data,
};

const struct cnn_layer_ops cnn_layer_global_maxpool = {
    .name = "global_maxpool",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(gp_params),
    .parse = gp_parse,
    .print = gp_print,
    .shape = gmp_shape,
    .sizes = gmp_sizes,
    .forward = gmp_forward,
    .backward_data = gmp_backward_data,
};
