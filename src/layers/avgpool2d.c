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
 * Algorithm: one task per (n, c) plane through cnn_pool_for. Per output row, the columns whose windows
 *   read no left/right padding ([ow_a, ow_b), from shape) go through avg_row: blocks of 8 outputs summed
 *   in local arrays across all taps (vectorised by the compiler for stride 1; stride 1 and 2 are
 *   compile-time constants); border columns go through avg_one. Both sum each window row-major from 0 in
 *   float and divide by the same divisor, so they agree bit for bit. Backward: the dx plane is cleared
 *   (unless accumulating), then each output adds dy/divisor into its window (borders per output, the
 *   interior in blocks), all within one plane, so results do not depend on the thread count. No
 *   workspace, nothing saved, no ISA-specific kernel (memory-bound).
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

/* One output (oh, ow), clipped to the input: sum of its taps row-major, divided by the divisor. */
static void avg_one(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, size_t oh, size_t ow,
                    float *y) {
    const int inc = p->count_include_pad;
    const ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
    const ptrdiff_t w0 = (ptrdiff_t)(ow * p->stride_w) - (ptrdiff_t)p->pad_left;
    size_t ilo, ihi, jlo, jhi;
    const size_t ch = window(h0, p->kh, h, p->pad_bottom, inc, &ilo, &ihi);
    const size_t cw = window(w0, p->kw, w, p->pad_right, inc, &jlo, &jhi);
    float sum = 0.0f;
    for (size_t i = ilo; i < ihi; i++) {
        const ptrdiff_t row = (h0 + (ptrdiff_t)i) * (ptrdiff_t)w + w0; /* row + j >= 0 for j >= jlo */
        for (size_t j = jlo; j < jhi; j++)
            sum += x[row + (ptrdiff_t)j];
    }
    *y = sum / (float)(ch * cw);
}

static void avg_one_backward(const cnn_pool2d_params *p, size_t h, size_t w, float dy, size_t oh, size_t ow,
                             float *dx) {
    const int inc = p->count_include_pad;
    const ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
    const ptrdiff_t w0 = (ptrdiff_t)(ow * p->stride_w) - (ptrdiff_t)p->pad_left;
    size_t ilo, ihi, jlo, jhi;
    const size_t ch = window(h0, p->kh, h, p->pad_bottom, inc, &ilo, &ihi);
    const size_t cw = window(w0, p->kw, w, p->pad_right, inc, &jlo, &jhi);
    const float g = dy / (float)(ch * cw);
    for (size_t i = ilo; i < ihi; i++) {
        const ptrdiff_t row = (h0 + (ptrdiff_t)i) * (ptrdiff_t)w + w0;
        for (size_t j = jlo; j < jhi; j++)
            dx[row + (ptrdiff_t)j] += g;
    }
}

/* Outputs [oa, ob) of one output row whose windows read no column padding (every column of the window
 * counts in both modes); input rows r0 .. r0 + rows - 1; div = rows counted * kw. Blocks of B outputs in
 * local arrays across all taps; each output sums its taps in row-major order, as avg_one does, so both
 * paths give the same bits. `stride` is a compile-time constant in the common instantiations. */
#define B 8
static CNN_POOL_INLINE void avg_row(const float *restrict x, size_t w, size_t r0, size_t rows, size_t kw,
                                    size_t stride, size_t pad_left, size_t oa, size_t ob, float div,
                                    float *restrict y) {
    for (size_t o = oa; o < ob; o += B) {
        const size_t nb = ob - o < B ? ob - o : B;
        const size_t first = r0 * w + o * stride - pad_left;
        float s[B];
        for (size_t l = 0; l < B; l++)
            s[l] = 0.0f;
        if (nb == B) {
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < kw; j++) {
                    const float *xs = x + first + i * w + j;
                    for (size_t l = 0; l < B; l++)
                        s[l] += xs[l * stride];
                }
        } else {
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < kw; j++) {
                    const float *xs = x + first + i * w + j;
                    for (size_t l = 0; l < nb; l++)
                        s[l] += xs[l * stride];
                }
        }
        for (size_t l = 0; l < nb; l++)
            y[o + l] = s[l] / div;
    }
}

static CNN_POOL_INLINE void avg_row_backward(float *restrict dx, size_t w, size_t r0, size_t rows, size_t kw,
                                             size_t stride, size_t pad_left, size_t oa, size_t ob, float div,
                                             const float *restrict dy) {
    for (size_t o = oa; o < ob; o += B) {
        const size_t nb = ob - o < B ? ob - o : B;
        const size_t first = r0 * w + o * stride - pad_left;
        float g[B];
        for (size_t l = 0; l < nb; l++)
            g[l] = dy[o + l] / div;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < kw; j++) {
                float *ds = dx + first + i * w + j;
                for (size_t l = 0; l < nb; l++)
                    ds[l * stride] += g[l];
            }
    }
}
#undef B

/* Rows of output row oh inside the input (r0, rows) and the rows its divisor counts. */
static inline size_t avg_rows(const cnn_pool2d_params *p, size_t h, size_t oh, size_t *r0, size_t *rows) {
    const ptrdiff_t h0 = (ptrdiff_t)(oh * p->stride_h) - (ptrdiff_t)p->pad_top;
    size_t ilo, ihi;
    const size_t ch = window(h0, p->kh, h, p->pad_bottom, p->count_include_pad, &ilo, &ihi);
    *r0 = (size_t)(h0 + (ptrdiff_t)ilo);
    *rows = ihi - ilo;
    return ch;
}

static void avg_plane(const cnn_pool2d_params *p, size_t h, size_t w, const float *x, float *y) {
    const size_t OW = p->ow, oa = p->ow_a, ob = p->ow_b;
    for (size_t oh = 0; oh < p->oh; oh++) {
        size_t r0, rows;
        const float div = (float)(avg_rows(p, h, oh, &r0, &rows) * p->kw);
        float *yr = y + oh * OW;
        if (p->stride_w == 1)
            avg_row(x, w, r0, rows, p->kw, 1, p->pad_left, oa, ob, div, yr);
        else if (p->stride_w == 2)
            avg_row(x, w, r0, rows, p->kw, 2, p->pad_left, oa, ob, div, yr);
        else
            avg_row(x, w, r0, rows, p->kw, p->stride_w, p->pad_left, oa, ob, div, yr);
        for (size_t o = 0; o < oa; o++)
            avg_one(p, h, w, x, oh, o, yr + o);
        for (size_t o = ob; o < OW; o++)
            avg_one(p, h, w, x, oh, o, yr + o);
    }
}

static void avg_plane_backward(const cnn_pool2d_params *p, size_t h, size_t w, const float *dy, float *dx) {
    const size_t OW = p->ow, oa = p->ow_a, ob = p->ow_b;
    for (size_t oh = 0; oh < p->oh; oh++) {
        size_t r0, rows;
        const float div = (float)(avg_rows(p, h, oh, &r0, &rows) * p->kw);
        const float *dyr = dy + oh * OW;
        for (size_t o = 0; o < oa; o++)
            avg_one_backward(p, h, w, dyr[o], oh, o, dx);
        if (p->stride_w == 1)
            avg_row_backward(dx, w, r0, rows, p->kw, 1, p->pad_left, oa, ob, div, dyr);
        else if (p->stride_w == 2)
            avg_row_backward(dx, w, r0, rows, p->kw, 2, p->pad_left, oa, ob, div, dyr);
        else
            avg_row_backward(dx, w, r0, rows, p->kw, p->stride_w, p->pad_left, oa, ob, div, dyr);
        for (size_t o = ob; o < OW; o++)
            avg_one_backward(p, h, w, dyr[o], oh, o, dx);
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
