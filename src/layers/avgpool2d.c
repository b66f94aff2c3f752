/* avgpool2d.c — 2-D average pooling, as torch.nn.AvgPool2d (with asymmetric pads as ONNX AveragePool).
 *
 * Math (per sample n, channel c; geometry in pool2d.h, no dilation):
 *   h0 = oh*stride_h - pad_top, w0 = ow*stride_w - pad_left (may be negative)
 *   rows of the window inside the input:          [max(h0,0), min(h0+kh, h))
 *   rows of the window inside the padded input:   [h0, min(h0+kh, h+pad_bottom))  (the ceil-mode overhang
 *                                                  beyond the padded input is never counted)
 *   divisor = (padded rows) * (padded cols) if count_include_pad, else (input rows) * (input cols)
 *   y[n,c,oh,ow] = (sum of x over the window's input elements, row-major, in float) / divisor
 *   dx[n,c,ih,iw] += dy[n,c,oh,ow] / divisor for every window (oh,ow) that reads (ih,iw)
 *   This is PyTorch's rule (aten/src/ATen/native/cpu/AvgPoolKernel.cpp), divisor_override aside.
 * Layouts: x/dx (n, c, h, w), y/dy (n, c, oh, ow), NCHW contiguous. Nothing saved, no workspace.
 * FLOPs per sample: c * oh * ow * kh * kw (one addition per window element per output).
 * Algorithm: direct loops per (n, c) plane, planes spread over threads with cnn_pool_for; taps clipped
 *   per output row/column. Backward clears (or, when accumulating, keeps) the dx plane and adds each
 *   output's share into its window in output order, within one plane: the result does not depend on the
 *   thread count. Memory-bound; no ISA-specific kernel.
 * References: PyTorch AvgPoolKernel.cpp and Pool.h; ONNX AveragePool. */
#include "pool2d.h"

#include <string.h>

typedef struct ap_args {
    const cnn_layer_run *r;
    const cnn_pool2d_params *p;
    size_t h, w, plane_in, plane_out;
} ap_args;

static cnn_status ap_parse(struct cnn_kv *kv, void *params) {
    return cnn_pool2d_parse(kv, params, CNN_POOL2D_AVG);
}

static void ap_print(const void *params, cnn_strbuf *out) {
    cnn_pool2d_print(params, CNN_POOL2D_AVG, out);
}

static cnn_status ap_shape(cnn_layer *L) {
    return cnn_pool2d_shape(L, L->params, CNN_POOL2D_AVG);
}

static void ap_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const cnn_pool2d_params *p = L->params;
    s->n_tensors = 0;
    s->saved_per_sample = 0;
    s->saved_fixed = 0;
    s->ws_per_thread = 0;
    s->flops = p->flops;
    s->algorithm = NULL;
}

/* Input taps [lo, hi) of a window starting at `start`, and the window length counted by the divisor. */
static inline size_t window(ptrdiff_t start, size_t k, size_t len, size_t pad_end, int include_pad,
                            size_t *lo, size_t *hi) {
    cnn_pool2d_taps(start, k, 1, len, lo, hi);
    if (!include_pad)
        return *hi - *lo;
    /* [start, min(start + k, len + pad_end)) */
    ptrdiff_t end = start + (ptrdiff_t)k, lim = (ptrdiff_t)(len + pad_end);
    return (size_t)((end < lim ? end : lim) - start);
}

static void avg_plane(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, float *y) {
    const int inc = p->count_include_pad;
    for (size_t oh = 0; oh < p->oh; oh++) {
        ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
        size_t ilo, ihi;
        size_t ch = window(h0, p->kh, h, p->pad_bottom, inc, &ilo, &ihi);
        for (size_t ow = 0; ow < p->ow; ow++) {
            ptrdiff_t w0 = (ptrdiff_t)(ow * p->stride_w) - (ptrdiff_t)p->pad_left;
            size_t jlo, jhi;
            size_t cw = window(w0, p->kw, w, p->pad_right, inc, &jlo, &jhi);
            float sum = 0.0f;
            for (size_t i = ilo; i < ihi; i++) {
                ptrdiff_t row = (h0 + (ptrdiff_t)i) * (ptrdiff_t)w + w0; /* row + j >= 0 for j >= jlo */
                for (size_t j = jlo; j < jhi; j++)
                    sum += x[row + (ptrdiff_t)j];
            }
            y[oh * p->ow + ow] = sum / (float)(ch * cw);
        }
    }
}

static void avg_plane_backward(const cnn_pool2d_params *p, size_t h, size_t w, const float *dy, float *dx) {
    const int inc = p->count_include_pad;
    for (size_t oh = 0; oh < p->oh; oh++) {
        ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
        size_t ilo, ihi;
        size_t ch = window(h0, p->kh, h, p->pad_bottom, inc, &ilo, &ihi);
        for (size_t ow = 0; ow < p->ow; ow++) {
            ptrdiff_t w0 = (ptrdiff_t)(ow * p->stride_w) - (ptrdiff_t)p->pad_left;
            size_t jlo, jhi;
            size_t cw = window(w0, p->kw, w, p->pad_right, inc, &jlo, &jhi);
            float g = dy[oh * p->ow + ow] / (float)(ch * cw);
            for (size_t i = ilo; i < ihi; i++) {
                ptrdiff_t row = (h0 + (ptrdiff_t)i) * (ptrdiff_t)w + w0;
                for (size_t j = jlo; j < jhi; j++)
                    dx[row + (ptrdiff_t)j] += g;
            }
        }
    }
}

static void ap_forward_task(void *arg, size_t plane, size_t thread) {
    const ap_args *a = arg;
    (void)thread;
    avg_plane(a->p, a->h, a->w, a->r->x[0] + plane * a->plane_in, a->r->y + plane * a->plane_out);
}

static void ap_forward(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
    ap_args a = {r, L->params, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w};
    cnn_pool_for(r->ctx, r->n * L->in[0].c, ap_forward_task, &a);
}

static void ap_backward_task(void *arg, size_t plane, size_t thread) {
    const ap_args *a = arg;
    const cnn_layer_run *r = a->r;
    (void)thread;
    float *dx = r->dx[0] + plane * a->plane_in;
    if (!r->dx_accumulate[0])
        memset(dx, 0, a->plane_in * sizeof(float));
    avg_plane_backward(a->p, a->h, a->w, r->dy + plane * a->plane_out, dx);
}

static void ap_backward_data(const cnn_layer_run *r) {
    const cnn_layer *L = r->L;
    if (!r->dx[0])
        return;
    ap_args a = {r, L->params, L->in[0].h, L->in[0].w, L->in[0].h * L->in[0].w, L->out.h * L->out.w};
    cnn_pool_for(r->ctx, r->n * L->in[0].c, ap_backward_task, &a);
}

const struct cnn_layer_ops cnn_layer_avgpool2d = {
    .name = "avgpool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(cnn_pool2d_params),
    .parse = ap_parse,
    .print = ap_print,
    .shape = ap_shape,
    .sizes = ap_sizes,
    .forward = ap_forward,
    .backward_data = ap_backward_data,
};
