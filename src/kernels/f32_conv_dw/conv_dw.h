/* conv_dw.h — depthwise convolution kernels (f32_conv_dw/{scalar,avx2}.c), used by conv2d's "depthwise"
 * algorithm (groups == C == K: one input and one output channel per group, MobileNet's 3x3 layers,
 * stride 1 or 2, dilation 1).
 *
 * One call works on ONE plane pair, read and written in place (NCHW planes, rows of iw / ow floats, no
 * padded copies): x is the ih x iw input plane, y the oh x ow output plane, the filter w[kh*kw]
 * (row-major, the OIHW weights of one channel). Geometry: stride s (both axes) and the offsets pad_top,
 * pad_left (signed: a negative offset crops); every input element outside the plane is zero, which is
 * how padding (and the bottom/right padding implied by oh, ow) is handled.
 *   fwd:   y[oy][ox] = bias + sum_{i<kh, j<kw} w[i*kw + j] * x[oy*s + i - pad_top][ox*s + j - pad_left]
 *          (accumulate != 0: bias ignored and the sum added to y, starting from y). Taps outside the
 *          plane are skipped (not multiplied by zero); the others are summed in the order i, j ascending,
 *          starting from bias (or y), one rounding per multiply-add (FMA in avx2, mul + add in scalar).
 *   bwd:   the input gradient of fwd with the same geometry (g describes the FORWARD pass, dy is oh x ow,
 *          dx is ih x iw): dx[iy][ix] (=|+=) sum over the (oy, i), (ox, j) with oy*s + i - pad_top = iy
 *          and ox*s + j - pad_left = ix of w[i*kw + j] * dy[oy][ox]. Stride 1 runs fwd on dy with the
 *          flipped filter and offsets (kh-1-pad_top, kw-1-pad_left) (the full correlation; accumulate
 *          starts from dx as in fwd). Stride 2 gathers per column phase: dx column 2t + q gets the taps j
 *          with j = q + pad_left (mod 2) from dy columns t + (q + pad_left - j)/2, a contiguous run, so
 *          each dx element is written once (no scatter); the sum starts from 0 (i, j ascending) and
 *          accumulate adds it to dx.
 *   wgrad: out[i*kw + j] = sum_{oy<oh, ox<ow} dy[oy][ox] * x[oy*s + i - pad_top][ox*s + j - pad_left]
 *          (taps outside the plane contribute nothing), and with bias != 0 also out[kh*kw] = sum of dy.
 *          Overwrites out. Summation order fixed by the shape (avx2: 8 lane partial sums per tap over
 *          pairs of rows and their columns in order, the lanes added in a fixed tree; scalar: a double sum per tap, rows then
 *          columns, rounded once), so a result never depends on the caller's threads.
 * The AVX2 kernels are unrolled for kh = kw = 3 with s = 1 or 2, with general loops for other sizes
 * (s 1 or 2, kh, kw <= CNN_DW_MAX_K); other strides run the scalar code. Vectorised along the output
 * width (8 outputs per ymm; the taps of a row from shifted unaligned loads, or for s = 2 deinterleaved
 * pairs of loads): vectors whose loads fall inside the row run without masks, the vectors at the left
 * and right edges (padding, the width tail) load with vmaskmovps (masked lanes are not read) and store
 * only the columns < ow. Reads only elements inside the x / dy planes and writes only inside y / dx.
 * Sizes below 2^30 per axis. No alignment requirement. Pure, single-threaded, no allocation.
 */
#ifndef CNN_CONV_DW_H
#define CNN_CONV_DW_H

#include <stddef.h>

#define CNN_DW_MAX_K 7

typedef struct cnn_dw_geom {
    size_t ih, iw;               /* input plane */
    size_t oh, ow;               /* output plane */
    size_t kh, kw;               /* filter, each <= CNN_DW_MAX_K */
    size_t stride;               /* both axes */
    ptrdiff_t pad_top, pad_left; /* offsets of the input in the padded plane */
} cnn_dw_geom;

typedef void (*cnn_conv_dw_fwd_fn)(const cnn_dw_geom *g, const float *x, const float *w, float bias,
                                   int accumulate, float *y);
typedef void (*cnn_conv_dw_bwd_fn)(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate,
                                   float *dx);
typedef void (*cnn_conv_dw_wgrad_fn)(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out);

void cnn_f32_conv_dw_fwd_scalar(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                                float *y);
void cnn_f32_conv_dw_bwd_scalar(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx);
void cnn_f32_conv_dw_wgrad_scalar(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out);
void cnn_f32_conv_dw_fwd_avx2(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                              float *y);
void cnn_f32_conv_dw_bwd_avx2(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx);
void cnn_f32_conv_dw_wgrad_avx2(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out);
/* AVX-512 (avx512.c): 3x3 stride 1, bit-identical to AVX2; everything else runs the AVX2 kernels */
void cnn_f32_conv_dw_fwd_avx512(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                                float *y);
void cnn_f32_conv_dw_bwd_avx512(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx);

#endif
