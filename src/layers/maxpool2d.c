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
 * Algorithm: direct loops per (n, c) plane, planes spread over threads with cnn_pool_for. Taps outside the
 *   input are clipped per output row/column (cnn_pool2d_taps), so the inner loop has no bounds checks.
 *   Backward scatters dy into the argmax positions of its own plane: planes are disjoint, so the result
 *   does not depend on the thread count. Pooling is memory-bound; no ISA-specific kernel.
 * References: PyTorch aten/src/ATen/native/cpu/MaxPoolKernel.cpp (index and NaN rule), Pool.h (sizes);
 *   ONNX MaxPool (pads). */
#include "pool2d.h"

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

static void mp_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const cnn_pool2d_params *p = L->params;
    s->n_tensors = 0;
    s->saved_per_sample = p->out_count * sizeof(int32_t); /* overflow checked in shape */
    s->saved_fixed = 0;
    s->ws_per_thread = 0;
    s->flops = p->flops;
    s->algorithm = NULL;
}

/* One plane: y[oh*ow] from x[h*w]; arg (may be NULL) receives the argmax indices. */
static void max_plane(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, float *y,
                      int32_t *arg) {
    const size_t kh = p->kh, kw = p->kw, sh = p->stride_h, sw = p->stride_w;
    const size_t dh = p->dilation_h, dw = p->dilation_w;
    for (size_t oh = 0; oh < p->oh; oh++) {
        ptrdiff_t h0 = (ptrdiff_t)(oh * sh) - (ptrdiff_t)p->pad_top;
        size_t ilo, ihi;
        cnn_pool2d_taps(h0, kh, dh, h, &ilo, &ihi);
        for (size_t ow = 0; ow < p->ow; ow++) {
            ptrdiff_t w0 = (ptrdiff_t)(ow * sw) - (ptrdiff_t)p->pad_left;
            size_t jlo, jhi;
            cnn_pool2d_taps(w0, kw, dw, w, &jlo, &jhi);
            size_t best = (size_t)(h0 + (ptrdiff_t)(ilo * dh)) * w + (size_t)(w0 + (ptrdiff_t)(jlo * dw));
            float m = -INFINITY;
            for (size_t i = ilo; i < ihi; i++) {
                size_t row = (size_t)(h0 + (ptrdiff_t)(i * dh)) * w;
                for (size_t j = jlo; j < jhi; j++) {
                    size_t at = row + (size_t)(w0 + (ptrdiff_t)(j * dw));
                    float v = x[at];
                    if (v > m || v != v) {
                        m = v;
                        best = at;
                    }
                }
            }
            y[oh * p->ow + ow] = m;
            if (arg)
                arg[oh * p->ow + ow] = (int32_t)best;
        }
    }
}

static void mp_forward_task(void *arg, size_t plane, size_t thread) {
    const mp_args *a = arg;
    const cnn_layer_run *r = a->r;
    (void)thread;
    int32_t *idx = r->training ? (int32_t *)r->saved + plane * a->plane_out : NULL;
    max_plane(a->p, a->h, a->w, r->x[0] + plane * a->plane_in, r->y + plane * a->plane_out, idx);
}

static void mp_forward(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
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
