/* pool2d.h — what maxpool2d.c and avgpool2d.c share (src/layers/pool2d_common.c): the params struct, the
 * model-text keys, PyTorch's output-size rule and the geometry of one window.
 *
 * Geometry along one axis (rows; columns are the same with w, kw, stride_w, pad_left, pad_right):
 *   keff  = dilation * (k - 1) + 1                                   effective window
 *   out   = floor((len + pad0 + pad1 - keff) / stride) + 1            floor mode
 *   out   = ceil ((len + pad0 + pad1 - keff) / stride) + 1            ceil mode, then
 *           out -= 1 if (out - 1) * stride >= len + pad0              (the last window must start inside the
 *                                                                      input or the leading padding)
 *   window o reads input positions start + i * dilation, i in [0, k), start = o * stride - pad0; positions
 *   outside [0, len) are padding (never selected by max, counted by avg only with count_include_pad).
 * This is aten/src/ATen/native/Pool.h (pooling_output_shape_pad_lr, pool2d_shape_check). */
#ifndef CNN_LAYERS_POOL2D_H
#define CNN_LAYERS_POOL2D_H

#include "layer.h"

#include <stddef.h>

#if defined(__GNUC__)
#define CNN_POOL_INLINE inline __attribute__((always_inline))
#else
#define CNN_POOL_INLINE inline
#endif

enum { CNN_POOL2D_MAX = 0, CNN_POOL2D_AVG = 1 };

typedef struct cnn_pool2d_params {
    /* from model text */
    size_t kh, kw;
    size_t stride_h, stride_w;
    size_t pad_top, pad_bottom, pad_left, pad_right;
    size_t dilation_h, dilation_w; /* maxpool only; 1 for avgpool */
    int ceil;                      /* PyTorch ceil_mode */
    int count_include_pad;         /* avgpool only (default 1) */
    /* derived by cnn_pool2d_shape */
    size_t oh, ow;
    size_t out_count;              /* c * oh * ow */
    uint64_t flops;                /* c * oh * ow * kh * kw */
    size_t ow_a, ow_b;             /* output columns [ow_a, ow_b) read no left/right padding */
    /* set by the network when it compiles (src/core/net.c), not by model text */
    int fused_relu;                /* maxpool: the input is a relu's input; y = relu(max), see maxpool2d.c */
} cnn_pool2d_params;

/* Reads size|kh,kw  stride|stride_h,stride_w  pad|pad_top,pad_bottom,pad_left,pad_right  ceil, and
 * dilation|dilation_h,dilation_w (kind MAX) or count_include_pad (kind AVG). */
cnn_status cnn_pool2d_parse(struct cnn_kv *kv, cnn_pool2d_params *p, int kind);
void cnn_pool2d_print(const cnn_pool2d_params *p, int kind, cnn_strbuf *out);
/* Checks the parameters against L->in[0], fills the derived fields of p and L->out. */
cnn_status cnn_pool2d_shape(cnn_layer *L, cnn_pool2d_params *p, int kind);

/* maxpool2d.c: whether L (a maxpool2d layer) can take over a relu that feeds it (the 2x2 stride-2 fast
 * path), and switch that on or off. With it on, the network skips the relu and hands the maxpool the
 * relu's input and gradient buffers. */
int cnn_maxpool2d_can_fuse_relu(const cnn_layer *L, int train);
void cnn_maxpool2d_set_fused_relu(cnn_layer *L, int on);

/* The taps i in [lo, hi) of a window starting at `start` (k taps, `dilation` apart) that fall inside
 * [0, len). hi > lo for every window of a shape that cnn_pool2d_shape accepted. */
static inline void cnn_pool2d_taps(ptrdiff_t start, size_t k, size_t dilation, size_t len, size_t *lo,
                                   size_t *hi) {
    size_t a = 0, b = k;
    if (start < 0) {
        size_t skip = (size_t)(-start);
        a = dilation == 1 ? skip : (skip + dilation - 1) / dilation;
    }
    ptrdiff_t room = (ptrdiff_t)len - start; /* taps with start + i * dilation < len */
    if (room <= 0) {
        b = 0;
    } else {
        size_t m = dilation == 1 ? (size_t)room : ((size_t)room + dilation - 1) / dilation;
        if (m < b)
            b = m;
    }
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

#endif
