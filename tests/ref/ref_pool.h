/* ref_pool.h — naive float64 references for the pooling layers (shares no code with src/). */
#ifndef CNN_REF_POOL_H
#define CNN_REF_POOL_H

#include <stddef.h>

typedef struct ref_pool2d {
    long kh, kw;
    long sh, sw;             /* strides */
    long pt, pb, pl, pr;     /* pads: top, bottom, left, right */
    long dh, dw;             /* dilation (1 for average pooling) */
    int ceil;                /* PyTorch ceil_mode */
    int count_include_pad;   /* average pooling */
} ref_pool2d;

/* PyTorch's output length along one axis (pooling_output_shape_pad_lr); < 1 means "too small". */
long ref_pool_out_len(long len, long k, long stride, long pad0, long pad1, long dilation, int ceil);

/* x: (n, c, h, w); y: (n, c, oh, ow) with oh, ow from ref_pool_out_len. Max: padding never wins, the
 * first maximum wins, NaN propagates. Average: PyTorch's divisor (see docs/layers/pool.md). */
void ref_maxpool2d(const ref_pool2d *p, size_t n, size_t c, size_t h, size_t w, const double *x, double *y);
void ref_avgpool2d(const ref_pool2d *p, size_t n, size_t c, size_t h, size_t w, const double *x, double *y);
/* y: (n, c) */
void ref_global_avgpool(size_t n, size_t c, size_t h, size_t w, const double *x, double *y);
void ref_global_maxpool(size_t n, size_t c, size_t h, size_t w, const double *x, double *y);

#endif
