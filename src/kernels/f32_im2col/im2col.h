/* im2col.h — lowering a convolution to GEMM: im2col (image -> column matrix) and col2im (its adjoint).
 *
 * One sample, one group of c channels, image x[c][h][w] (CHW, contiguous). The column matrix has
 * c*kh*kw rows and oh*ow columns:
 *   col[(ci*kh + i)*kw + j][oy*ow + ox] = x[ci][oy*stride_h + i*dil_h - pad_top][ox*stride_w + j*dil_w - pad_left]
 * (0 where that position lies in the padding), so that with an OIHW weight W_g viewed as a
 * [k/g, c*kh*kw] matrix the convolution is Y_g[k/g, oh*ow] = W_g * col.
 * col2im is the transpose: every col element is added back to the x position it was read from
 * (positions in the padding are dropped), which is the input gradient of im2col.
 * Bottom/right padding need not be given: oh and ow say how far the windows go. With oy0 > 0 the
 * matrix covers output rows [oy0, oy0 + oh) only (a block of columns of the whole matrix; oy above is
 * then counted from oy0).
 */
#ifndef CNN_IM2COL_H
#define CNN_IM2COL_H

#include <stddef.h>

typedef struct cnn_conv_geom {
    size_t c, h, w;           /* input channels (of one group) and spatial size */
    size_t kh, kw;            /* kernel */
    size_t stride_h, stride_w;
    size_t pad_top, pad_left; /* top/left zero padding (bottom/right follow from oh, ow) */
    size_t dil_h, dil_w;      /* dilation (1 = dense kernel) */
    size_t oh, ow;            /* output size (of this block of output rows) */
    size_t oy0;               /* first output row: the column matrix covers output rows [oy0, oy0 + oh) */
} cnn_conv_geom;

/* Rows [row_begin, row_end) of the column matrix of x (row_end <= c*kh*kw) into col, which holds
 * (row_end - row_begin) rows of oh*ow floats. Overwrites col. */
void cnn_f32_im2col_scalar(const cnn_conv_geom *g, const float *x, size_t row_begin, size_t row_end,
                           float *col);

/* x += col2im(col): col has c*kh*kw rows of oh*ow floats; x is c*h*w floats (accumulated into). */
void cnn_f32_col2im_scalar(const cnn_conv_geom *g, const float *col, float *x);

/* The same with AVX2 row moves (avx2.c; bit-identical results). */
void cnn_f32_im2col_avx2(const cnn_conv_geom *g, const float *x, size_t row_begin, size_t row_end, float *col);
void cnn_f32_col2im_avx2(const cnn_conv_geom *g, const float *col, float *x);
/* col2im with AVX-512 masked moves (avx512.c; bit-identical results). */
void cnn_f32_col2im_avx512(const cnn_conv_geom *g, const float *col, float *x);

/* Valid output range [*lo, *hi) along one axis: out*stride + off in [0, in) for out in [0, n_out) (the
 * kernels of every ISA walk a column-matrix row through it). */
static inline void cnn_im2col_valid_range(size_t n_out, size_t in, size_t stride, ptrdiff_t off, size_t *lo,
                                          size_t *hi) {
    size_t l = 0, h = 0;
    if (off < 0) l = ((size_t)(-off) + stride - 1) / stride;
    if ((ptrdiff_t)in - 1 - off >= 0) h = (size_t)((ptrdiff_t)in - 1 - off) / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

typedef void (*cnn_im2col_fn)(const cnn_conv_geom *g, const float *x, size_t row_begin, size_t row_end,
                              float *col);
typedef void (*cnn_col2im_fn)(const cnn_conv_geom *g, const float *col, float *x);

#endif
