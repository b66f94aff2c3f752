/* maxpool2d.c — 2-D max pooling, as torch.nn.MaxPool2d (with asymmetric pads as ONNX MaxPool).
 *
 * Math (per sample n, channel c; geometry in pool2d.h):
 *   y[n,c,oh,ow] = max over i < kh, j < kw of x[n,c, oh*stride_h - pad_top + i*dilation_h,
 *                                                   ow*stride_w - pad_left + j*dilation_w]
 *   Padding is -inf: never selected (every window holds at least one input element, checked in shape).
 *   Ties: the first maximum in window order (row-major) wins (strict >). NaN propagates: a NaN replaces
 *   the running maximum and is never replaced by a number (`v > m || v != v`, PyTorch's rule, so the
 *   argmax is the last NaN of the window).
 *   dx[n,c,argmax(n,c,oh,ow)] += dy[n,c,oh,ow]; every other dx element gets 0.
 * Layouts: x (n, c, h, w), y/dy (n, c, oh, ow), NCHW contiguous. Training forward saves the argmax of each
 *   output as an int32 index into its input plane (ih * w + iw): saved_per_sample = 4 * c * oh * ow bytes.
 *   Inference forward does not touch r->saved.
 * FLOPs per sample: c * oh * ow * kh * kw (one comparison per window element per output).
 * Algorithm: one task per (n, c) plane through cnn_pool_for. Per output row, the columns whose windows
 *   read no left/right padding ([ow_a, ow_b), from shape) go through max_row: blocks of 8 outputs held in
 *   local arrays across all taps, branch-free (`v > m ? v : m`, argmax selected with masks; a branchy
 *   `if` mispredicts on random data and was 3-4x slower), with stride 1 and 2 as compile-time constants.
 *   Windows that hold a NaN or an infinity are flagged on the way (sum of v * 0 is NaN) and redone, like
 *   the border columns, by max_one, the plain sequential rule clipped to the input. Both give the same
 *   result, so the output is what the sequential rule gives everywhere. Workspace: ow floats per thread
 *   (the flags of one row). Backward scatters dy into the argmax positions of its own plane: planes are
 *   disjoint, so results do not depend on the thread count.
 *   2x2 windows with stride 2, no padding, no dilation (the common case) go through the kernels of
 *   src/kernels/f32_pool2d/ instead (scalar and AVX2, bit-identical to the rule above): one pass that
 *   reads x once and writes y and the argmax; backward writes every dx element of the pooled rows once
 *   (dy at the argmax, 0 elsewhere) instead of clearing the plane and scattering.
 * Fused ReLU (2x2 stride-2 path; 3x3 stride-2 in inference compiles, run_3x3s2_infer): when the network compiles a `relu` whose only reader is this layer
 *   (and whose input has no other reader), it skips the relu and sets p->fused_relu. Forward then reads
 *   the relu's input and writes y = relu(max x) = max relu(x); the argmax is that of x. Backward writes
 *   dy into the relu's input gradient where y > 0 and 0 elsewhere. This is exactly "relu then maxpool":
 *   where max x > 0 both pick the same first maximum; where max x <= 0 (or is NaN) the unfused relu
 *   backward zeroes the gradient of the whole window, as the fused rule does.
 * References: PyTorch aten/src/ATen/native/cpu/MaxPoolKernel.cpp (index and NaN rule), Pool.h (sizes);
 *   ONNX MaxPool (pads). */
#include "pool2d.h"
#include "../kernels/f32_pool2d/pool2d_kernels.h"

#include <math.h>
#include <string.h>

typedef struct mp_args {
    const cnn_layer_run *r;
    const cnn_pool2d_params *p;
    size_t h, w, plane_in, plane_out;
} mp_args;

static cnn_status mp_parse(struct cnn_kv *kv, void *params) {
    return cnn_pool2d_parse(kv, params, CNN_POOL2D_MAX);
}

static void mp_print(const void *params, cnn_strbuf *out) {
    cnn_pool2d_print(params, CNN_POOL2D_MAX, out);
}

static cnn_status mp_shape(cnn_layer *L) {
    return cnn_pool2d_shape(L, L->params, CNN_POOL2D_MAX);
}

/* The 2x2 stride-2 fast path: no padding, no dilation, every window inside the input. */
static int is_2x2s2(const cnn_pool2d_params *p, size_t h, size_t w) {
    return p->kh == 2 && p->kw == 2 && p->stride_h == 2 && p->stride_w == 2 && p->dilation_h == 1 &&
           p->dilation_w == 1 && p->pad_top == 0 && p->pad_left == 0 && 2 * p->oh <= h && 2 * p->ow <= w;
}

/* 3x3 windows, stride 2, dilation 1: the inference kernel of run_3x3s2_infer */
static int is_3x3s2(const cnn_pool2d_params *p) {
    return p->kh == 3 && p->kw == 3 && p->stride_h == 2 && p->stride_w == 2 && p->dilation_h == 1 &&
           p->dilation_w == 1;
}

int cnn_maxpool2d_can_fuse_relu(const cnn_layer *L, int train) {
    return L->ops == &cnn_layer_maxpool2d &&
           (is_2x2s2(L->params, L->in[0].h, L->in[0].w) || (!train && is_3x3s2(L->params)));
}

void cnn_maxpool2d_set_fused_relu(cnn_layer *L, int on) {
    cnn_pool2d_params *p = L->params;
    p->fused_relu = on && cnn_maxpool2d_can_fuse_relu(L, 0); /* the compile's plan checked the mode */
}

static cnn_f32_maxpool2x2_fwd_fn fwd_kernel(const cnn_ctx *ctx) {
    return ctx->kernels.isa >= CNN_ISA_AVX2 ? cnn_f32_maxpool2x2_fwd_avx2 : cnn_f32_maxpool2x2_fwd_scalar;
}

static cnn_f32_maxpool2x2_bwd_fn bwd_kernel(const cnn_ctx *ctx) {
    return ctx->kernels.isa >= CNN_ISA_AVX2 ? cnn_f32_maxpool2x2_bwd_avx2 : cnn_f32_maxpool2x2_bwd_scalar;
}

typedef struct fast_args {
    const cnn_layer_run *r;
    const cnn_pool2d_params *p;
    size_t h, w, plane_in, plane_out, per_task;
    cnn_f32_maxpool2x2_fwd_fn fwd;
    cnn_f32_maxpool2x2_bwd_fn bwd;
} fast_args;

#define FAST_PLANES 8 /* planes per task: fewer, larger tasks for small planes */

static void fast_forward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const fast_args *a = arg;
    const cnn_layer_run *r = a->r;
    const size_t total = r->n * r->L->in[0].c;
    const size_t b = task * a->per_task, e = b + a->per_task < total ? b + a->per_task : total;
    for (size_t pl = b; pl < e; pl++)
        a->fwd(r->x[0] + pl * a->plane_in, a->w, a->p->ow, a->p->oh, a->p->fused_relu, r->y + pl * a->plane_out,
               r->training ? (int32_t *)r->saved + pl * a->plane_out : NULL);
}

static void fast_backward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const fast_args *a = arg;
    const cnn_layer_run *r = a->r;
    const size_t total = r->n * r->L->in[0].c;
    const size_t b = task * a->per_task, e = b + a->per_task < total ? b + a->per_task : total;
    const size_t oh = a->p->oh, ow = a->p->ow, w = a->w;
    const int acc = r->dx_accumulate[0];
    for (size_t pl = b; pl < e; pl++) {
        float *dx = r->dx[0] + pl * a->plane_in;
        a->bwd(r->dy + pl * a->plane_out, (const int32_t *)r->saved + pl * a->plane_out,
               a->p->fused_relu ? r->y + pl * a->plane_out : NULL, w, ow, oh, a->p->fused_relu, acc, dx);
        if (acc) continue;
        if (2 * ow < w) /* an odd last column no window reads */
            for (size_t i = 0; i < 2 * oh; i++) memset(dx + i * w + 2 * ow, 0, (w - 2 * ow) * sizeof(float));
        if (2 * oh < a->h) memset(dx + 2 * oh * w, 0, (a->h - 2 * oh) * w * sizeof(float));
    }
}

static int run_fast(const cnn_layer_run *r, int backward) {
    const cnn_layer *L = r->L;
    const cnn_pool2d_params *p = L->params;
    if (!is_2x2s2(p, L->in[0].h, L->in[0].w)) return 0;
    fast_args a = {r, p, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w, FAST_PLANES,
                   fwd_kernel(r->ctx), bwd_kernel(r->ctx)};
    const size_t total = r->n * L->in[0].c;
    cnn_pool_for(r->ctx, (total + a.per_task - 1) / a.per_task, backward ? fast_backward_task : fast_forward_task,
                 &a);
    return 1;
}

static void mp_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const cnn_pool2d_params *p = L->params;
    s->n_tensors = 0;
    s->saved_per_sample = p->out_count * sizeof(int32_t); /* overflow checked in shape */
    s->saved_fixed = 0;
    s->ws_per_thread = p->ow; /* NaN/inf flags of one output row */
    s->flops = p->flops;
    s->algorithm = NULL;
}

/* One output (oh, ow) by the sequential rule, clipped to the input: for borders and for windows that hold
 * a NaN or an infinity (flagged by the row kernel). */
static void max_one(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, size_t oh, size_t ow,
                    float *y, int32_t *arg) {
    const ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
    const ptrdiff_t w0 = (ptrdiff_t)(ow * p->stride_w) - (ptrdiff_t)p->pad_left;
    size_t ilo, ihi, jlo, jhi;
    cnn_pool2d_taps(h0, p->kh, p->dilation_h, h, &ilo, &ihi);
    cnn_pool2d_taps(w0, p->kw, p->dilation_w, w, &jlo, &jhi);
    size_t best = (size_t)(h0 + (ptrdiff_t)(ilo * p->dilation_h)) * w + (size_t)(w0 + (ptrdiff_t)(jlo * p->dilation_w));
    float m = -INFINITY;
    for (size_t i = ilo; i < ihi; i++) {
        const size_t row = (size_t)(h0 + (ptrdiff_t)(i * p->dilation_h)) * w;
        for (size_t j = jlo; j < jhi; j++) {
            const size_t at = row + (size_t)(w0 + (ptrdiff_t)(j * p->dilation_w));
            const float v = x[at];
            if (v > m || v != v) {
                m = v;
                best = at;
            }
        }
    }
    *y = m;
    if (arg)
        *arg = (int32_t)best;
}

/* Outputs [oa, ob) of one output row whose windows read no column padding; input rows r0 + i * dh,
 * i < rows. Blocks of B outputs are kept in local arrays across all taps (the compiler keeps them in
 * vector registers). Taps in row-major window order per output, so ties keep the first maximum;
 * branch-free: `v > m ? v : m` skips NaN, the argmax is selected with masks, and fl[o] accumulates v * 0,
 * which is NaN when the window holds a NaN or an infinity: the caller redoes those outputs with max_one.
 * stride and dw are compile-time constants in the common instantiations. */
#define B 8
static CNN_POOL_INLINE void max_row(const float *restrict x, size_t w, size_t r0, size_t rows, size_t dh,
                                    size_t kw, size_t dw, size_t stride, size_t pad_left, size_t oa,
                                    size_t ob, float *restrict y, int32_t *restrict arg,
                                    float *restrict fl) {
    for (size_t o = oa; o < ob; o += B) {
        const size_t nb = ob - o < B ? ob - o : B;
        float m[B], f[B];
        int32_t a[B];
        const int32_t first = (int32_t)(r0 * w + o * stride - pad_left);
        for (size_t l = 0; l < B; l++) {
            m[l] = -INFINITY;
            f[l] = 0.0f;
            a[l] = first + (int32_t)(l * stride);
        }
        if (nb == B) {
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < kw; j++) {
                    const int32_t base = first + (int32_t)(i * dh * w + j * dw);
                    for (size_t l = 0; l < B; l++) {
                        const int32_t at = base + (int32_t)(l * stride);
                        const float v = x[at];
                        const int32_t take = -(int32_t)(v > m[l]);
                        m[l] = v > m[l] ? v : m[l];
                        a[l] = (at & take) | (a[l] & ~take);
                        f[l] += v * 0.0f;
                    }
                }
        } else {
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < kw; j++) {
                    const int32_t base = first + (int32_t)(i * dh * w + j * dw);
                    for (size_t l = 0; l < nb; l++) {
                        const int32_t at = base + (int32_t)(l * stride);
                        const float v = x[at];
                        const int32_t take = -(int32_t)(v > m[l]);
                        m[l] = v > m[l] ? v : m[l];
                        a[l] = (at & take) | (a[l] & ~take);
                        f[l] += v * 0.0f;
                    }
                }
        }
        for (size_t l = 0; l < nb; l++) {
            y[o + l] = m[l];
            fl[o + l] = f[l];
            if (arg)
                arg[o + l] = a[l];
        }
    }
}
#undef B

/* One plane: y[oh*ow] from x[h*w]; arg (NULL in inference) receives the argmax indices; fl: ow floats. */
static CNN_POOL_INLINE void max_plane(const cnn_pool2d_params *p, size_t h, size_t w, const float *x,
                                      float *y, int32_t *arg, float *fl) {
    const size_t OW = p->ow, oa = p->ow_a, ob = p->ow_b;
    for (size_t oh = 0; oh < p->oh; oh++) {
        const ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
        size_t ilo, ihi;
        cnn_pool2d_taps(h0, p->kh, p->dilation_h, h, &ilo, &ihi);
        const size_t r0 = (size_t)(h0 + (ptrdiff_t)(ilo * p->dilation_h)), rows = ihi - ilo;
        float *yr = y + oh * OW;
        int32_t *ar = arg ? arg + oh * OW : NULL;
        if (p->dilation_w == 1 && p->stride_w == 2)
            max_row(x, w, r0, rows, p->dilation_h, p->kw, 1, 2, p->pad_left, oa, ob, yr, ar, fl);
        else if (p->dilation_w == 1 && p->stride_w == 1)
            max_row(x, w, r0, rows, p->dilation_h, p->kw, 1, 1, p->pad_left, oa, ob, yr, ar, fl);
        else
            max_row(x, w, r0, rows, p->dilation_h, p->kw, p->dilation_w, p->stride_w, p->pad_left, oa, ob,
                    yr, ar, fl);
        for (size_t o = oa; o < ob; o++)
            if (fl[o] != fl[o])
                max_one(p, h, w, x, oh, o, yr + o, ar ? ar + o : NULL);
        for (size_t o = 0; o < oa; o++)
            max_one(p, h, w, x, oh, o, yr + o, ar ? ar + o : NULL);
        for (size_t o = ob; o < OW; o++)
            max_one(p, h, w, x, oh, o, yr + o, ar ? ar + o : NULL);
    }
}

static void max_plane_infer(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, float *y,
                            float *fl) {
    max_plane(p, h, w, x, y, NULL, fl);
}

static void max_plane_train(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, float *y,
                            int32_t *arg, float *fl) {
    max_plane(p, h, w, x, y, arg, fl);
}

static void mp_forward_task(void *arg, size_t plane, size_t thread) {
    const mp_args *a = arg;
    const cnn_layer_run *r = a->r;
    const float *x = r->x[0] + plane * a->plane_in;
    float *y = r->y + plane * a->plane_out;
    float *fl = r->ws + thread * r->ws_stride;
    if (r->training)
        max_plane_train(a->p, a->h, a->w, x, y, (int32_t *)r->saved + plane * a->plane_out, fl);
    else
        max_plane_infer(a->p, a->h, a->w, x, y, fl);
}

/* Inference with 3x3 windows, stride 2, dilation 1 (ResNet's stem pooling): f32_pool2d's kernel per plane
 * (no argmax; the same values as the rule above). ResNet-18 batch 1 on the Zen 4: 0.77 ms in the generic
 * loops (compiled for the baseline ISA, with the argmax selects and the NaN flags). */
typedef struct mp3_args {
    const cnn_layer_run *r;
    const cnn_pool2d_params *p;
    size_t h, w, plane_in, plane_out;
    cnn_f32_maxpool3x3s2_infer_fn fn;
} mp3_args;

static void mp3_task(void *arg, size_t plane, size_t thread) {
    (void)thread;
    const mp3_args *a = arg;
    a->fn(a->r->x[0] + plane * a->plane_in, a->h, a->w, (ptrdiff_t)a->p->pad_top, (ptrdiff_t)a->p->pad_left, a->p->oh,
          a->p->ow, a->p->fused_relu, a->r->y + plane * a->plane_out);
}

static int run_3x3s2_infer(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
    const cnn_pool2d_params *p = L->params;
    if (r->training || !is_3x3s2(p)) return 0;
    mp3_args a = {r, p, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w,
                  r->ctx->kernels.isa >= CNN_ISA_AVX2 ? cnn_f32_maxpool3x3s2_infer_avx2
                                                      : cnn_f32_maxpool3x3s2_infer_scalar};
    cnn_pool_for(r->ctx, r->n * L->in[0].c, mp3_task, &a);
    return 1;
}

static void mp_forward(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
    if (run_fast(r, 0)) return;
    if (run_3x3s2_infer(r)) return;
    mp_args a = {r, L->params, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w};
    cnn_pool_for(r->ctx, r->n * L->in[0].c, mp_forward_task, &a);
}

static void mp_backward_task(void *arg, size_t plane, size_t thread) {
    const mp_args *a = arg;
    const cnn_layer_run *r = a->r;
    (void)thread;
    const int32_t *idx = (const int32_t *)r->saved + plane * a->plane_out;
    const float *dy = r->dy + plane * a->plane_out;
    float *dx = r->dx[0] + plane * a->plane_in;
    if (!r->dx_accumulate[0])
        memset(dx, 0, a->plane_in * sizeof(float));
    for (size_t o = 0; o < a->plane_out; o++)
        dx[idx[o]] += dy[o];
}

static void mp_backward_data(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
    if (!r->dx[0])
        return;
    if (run_fast(r, 1)) return;
    mp_args a = {r, L->params, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w};
    cnn_pool_for(r->ctx, r->n * L->in[0].c, mp_backward_task, &a);
}

const struct cnn_layer_ops cnn_layer_maxpool2d = {
    .name = "maxpool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(cnn_pool2d_params),
    .parse = mp_parse,
    .print = mp_print,
    .shape = mp_shape,
    .sizes = mp_sizes,
    .forward = mp_forward,
    .backward_data = mp_backward_data,
};
