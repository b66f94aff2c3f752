/* dropout.c — inverted dropout (PyTorch nn.Dropout).
 *
 * Math      training: keep_e = [u_e >= p] with u_e uniform in [0, 1); y_e = x_e * keep_e / (1 - p)
 *                     dx_e = dy_e * keep_e / (1 - p)
 *           eval:     y = x, dx = dy.
 *           The product is always formed as x * s with s in {0, 1/(1-p)}, so a NaN input stays NaN even
 *           where it is dropped (as in PyTorch, which multiplies by the mask).
 * Random    u_e = ((cnn_hash64(r->seed, e / 4) >> (16 * (e % 4))) & 0xffff) * 2^-16 where e is the element's
 *           index in the whole batch (sample * count + offset): one 64-bit hash gives four 16-bit uniforms.
 *           The mask depends only on the step seed and the element, never on the thread count or the
 *           partition. Kept when u_e >= ceil(p * 2^16) * 2^-16: the rate dropped is p rounded up to a
 *           multiple of 2^-16 (at most 1.5e-5 above p).
 * Layouts   any (c,h,w), NCHW; saved_per_sample: the keep mask, one byte per element (training).
 * FLOPs     1 per element.
 * Algorithm elementwise, the batch's elements split into contiguous ranges, one per thread.
 * References Srivastava et al., "Dropout" (JMLR 2014); PyTorch torch.nn.Dropout.
 */
#include "layer.h"

#include <math.h>
#include <string.h>

typedef struct dropout_params {
    double p;
} dropout_params;

#define DROPOUT_P_DEFAULT 0.5

static cnn_status dropout_parse(struct cnn_kv *kv, void *params) {
    dropout_params *d = params;
    d->p = DROPOUT_P_DEFAULT;
    cnn_status st = cnn_kv_float(kv, "p", 0.0, 1.0, &d->p, NULL);
    if (st != CNN_OK) return st;
    if (!(d->p < 1.0)) return cnn_kv_error(kv, "p", "p must be in [0, 1)");
    return CNN_OK;
}

static void dropout_print(const void *params, cnn_strbuf *out) {
    const dropout_params *d = params;
    char buf[40];
    cnn_format_float(buf, sizeof buf, d->p);
    cnn_strbuf_printf(out, " p=%s", buf);
}

static cnn_status dropout_shape(cnn_layer *L) {
    cnn_shape s = L->in[0];
    size_t count;
    if (!cnn_shape_count(s, &count))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input (%zu,%zu,%zu) has too many elements", s.c, s.h, s.w);
    L->out = s;
    return CNN_OK;
}

static void dropout_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    size_t count = L->in[0].c * L->in[0].h * L->in[0].w;
    memset(s, 0, sizeof *s);
    s->saved_per_sample = count; /* one byte per element */
    s->flops = count;
}

typedef struct dropout_job {
    const cnn_layer_run *r;
    size_t total, parts;
    uint32_t threshold; /* keep when the element's 16-bit uniform is >= threshold, i.e. u >= p */
    float scale;        /* 1 / (1 - p) */
} dropout_job;

static size_t dropout_count(const cnn_layer_run *r) { return r->L->in[0].c * r->L->in[0].h * r->L->in[0].w; }

/* The keep bytes of elements [b, e) (indices in this pass; element base + i of the whole batch, see
 * sample0 in layer.h): four per hash (branch-free, so the compiler can keep it in registers). */
static void make_mask(uint64_t seed, uint32_t threshold, size_t base, size_t b, size_t e, unsigned char *mask) {
    size_t i = b;
    for (; i < e && ((base + i) & 3); i++)
        mask[i] = ((cnn_hash64(seed, (base + i) >> 2) >> (16 * ((base + i) & 3))) & 0xffffu) >= threshold;
    for (; i + 4 <= e; i += 4) {
        uint64_t h = cnn_hash64(seed, (base + i) >> 2);
        mask[i] = (h & 0xffffu) >= threshold;
        mask[i + 1] = ((h >> 16) & 0xffffu) >= threshold;
        mask[i + 2] = ((h >> 32) & 0xffffu) >= threshold;
        mask[i + 3] = (h >> 48) >= threshold;
    }
    for (; i < e; i++)
        mask[i] = ((cnn_hash64(seed, (base + i) >> 2) >> (16 * ((base + i) & 3))) & 0xffffu) >= threshold;
}

/* y = x * mask * scale (mask 0 or 1), dx (+)= dy * mask * scale, branch-free, with in-place forms for y == x.
 * (Not vectorised at the library's baseline -O2: GCC has no vector type there for the uint8-to-float
 * conversion; a float mask would be.) */
static void mul_mask(float *restrict y, const float *restrict x, const unsigned char *restrict m, size_t n,
                     float s) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] * ((float)m[i] * s);
}
static void mul_mask_inplace(float *restrict y, const unsigned char *restrict m, size_t n, float s) {
    for (size_t i = 0; i < n; i++) y[i] *= (float)m[i] * s;
}
static void add_mul_mask(float *restrict y, const float *restrict x, const unsigned char *restrict m, size_t n,
                         float s) {
    for (size_t i = 0; i < n; i++) y[i] += x[i] * ((float)m[i] * s);
}

static void forward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const dropout_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t b, e;
    cnn_split_range(j->total, j->parts, task, &b, &e);
    const float *x = r->x[0]; /* (y may be x: in place) */
    float *y = r->y;
    unsigned char *restrict mask = r->saved;
    const float scale = j->scale;
    /* in blocks, so the mask bytes are still in L1 when the multiply reads them */
    for (size_t b0 = b; b0 < e; b0 += 4096) {
        size_t e0 = e - b0 < 4096 ? e : b0 + 4096;
        make_mask(r->seed, j->threshold, r->sample0 * dropout_count(r), b0, e0, mask);
        if (y == x) mul_mask_inplace(y + b0, mask + b0, e0 - b0, scale);
        else mul_mask(y + b0, x + b0, mask + b0, e0 - b0, scale);
    }
}

static void dropout_forward(const cnn_layer_run *r) {
    const dropout_params *d = r->L->params;
    size_t total = r->n * dropout_count(r);
    if (!r->training) {
        if (r->y != r->x[0]) memcpy(r->y, r->x[0], total * sizeof(float));
        return;
    }
    dropout_job j = {.r = r,
                     .total = total,
                     .parts = r->ctx->threads ? r->ctx->threads : 1,
                     .threshold = (uint32_t)ceil(d->p * 65536.0),
                     .scale = (float)(1.0 / (1.0 - d->p))};
    cnn_pool_for(r->ctx, j.parts, forward_task, &j);
}

static void backward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const dropout_job *j = arg;
    const cnn_layer_run *r = j->r;
    size_t b, e;
    cnn_split_range(j->total, j->parts, task, &b, &e);
    const float *dy = r->dy; /* (dx may be dy) */
    float *dx = r->dx[0];
    const unsigned char *restrict mask = r->saved;
    const float scale = j->scale;
    if (!r->training) { /* (a backward after an inference forward: the identity) */
        if (r->dx_accumulate[0])
            for (size_t i = b; i < e; i++) dx[i] += dy[i];
        else
            if (dx != dy) memcpy(dx + b, dy + b, (e - b) * sizeof(float));
    } else if (r->dx_accumulate[0]) {
        if (dx == dy)
            for (size_t i = b; i < e; i++) dx[i] += dx[i] * ((float)mask[i] * scale);
        else
            add_mul_mask(dx + b, dy + b, mask + b, e - b, scale);
    } else if (dx == dy) {
        mul_mask_inplace(dx + b, mask + b, e - b, scale);
    } else {
        mul_mask(dx + b, dy + b, mask + b, e - b, scale);
    }
}

static void dropout_backward_data(const cnn_layer_run *r) {
    const dropout_params *d = r->L->params;
    if (!r->dx[0]) return;
    dropout_job j = {.r = r,
                     .total = r->n * dropout_count(r),
                     .parts = r->ctx->threads ? r->ctx->threads : 1,
                     .scale = (float)(1.0 / (1.0 - d->p))};
    cnn_pool_for(r->ctx, j.parts, backward_task, &j);
}

const struct cnn_layer_ops cnn_layer_dropout = {
    .name = "dropout",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(dropout_params),
    .parse = dropout_parse,
    .print = dropout_print,
    .shape = dropout_shape,
    .sizes = dropout_sizes,
    .forward = dropout_forward,
    .backward_data = dropout_backward_data,
};
