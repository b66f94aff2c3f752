/* conv_direct.h — direct plane-by-plane convolution kernels (f32_conv_direct/{scalar,avx2}.c), used by
 * conv2d's "direct" algorithm (depthwise layers and small-channel stems, stride 1).
 *
 * One kernel call correlates ONE padded input plane with ONE kh x kw filter:
 *   fwd:  y[oy*ldy + ox] (=|+=) bias + sum_{i<kh, j<kw} w[i*kw + j] * xp[(oy + i*dh)*ldx + ox + j*dw]
 *         for oy < oh, ox < ow (stride 1; the driver builds the zero-padded plane xp). With accumulate,
 *         bias is ignored and the sum is added to y. The taps are summed in the order i, j ascending,
 *         starting from bias (or y), one rounding per FMA.
 *   wgrad: out[i*kw + j] = sum_{oy<oh, ox<ow} dy[oy*ldy + ox] * xp[(oy + i*dh)*ldx + ox + j*dw]
 *         and, with bias != 0, out[kh*kw] = sum_{oy, ox} dy[oy*ldy + ox] (the bias gradient's share)
 *         (overwrites out; summation order fixed by the shape: per-lane partial sums over the plane,
 *         then the 8 lanes pairwise in the AVX2 kernel; row by row in the scalar one).
 * The input gradient of a stride-1 correlation is a correlation of the padded output gradient with the
 * flipped filter, so the driver uses fwd for backward-data too.
 * Reads: xp rows [0, oh-1 + (kh-1)*dh], columns [0, ow-1 + (kw-1)*dw] of each row, and the AVX2 kernels
 * up to 7 floats more per row: the caller gives ldx >= ow + (kw-1)*dw + 7 (the values there never reach
 * a result, NaN included). y / dy are accessed only inside the oh x ow plane (masked tails). No alignment
 * requirement. Pure, single-threaded, no allocation.
 */
#ifndef CNN_CONV_DIRECT_H
#define CNN_CONV_DIRECT_H

#include <stddef.h>

typedef struct cnn_plane_geom {
    size_t oh, ow;   /* output plane */
    size_t kh, kw;   /* filter */
    size_t dh, dw;   /* dilation */
    size_t ldx, ldy; /* row strides of xp and of y (or dy) */
} cnn_plane_geom;

typedef void (*cnn_conv_direct_fwd_fn)(const cnn_plane_geom *g, const float *xp, const float *w, float bias,
                                       int accumulate, float *y);
typedef void (*cnn_conv_direct_wgrad_fn)(const cnn_plane_geom *g, const float *xp, const float *dy, int bias,
                                         float *out);

void cnn_f32_conv_direct_fwd_scalar(const cnn_plane_geom *g, const float *xp, const float *w, float bias,
                                    int accumulate, float *y);
void cnn_f32_conv_direct_fwd_avx2(const cnn_plane_geom *g, const float *xp, const float *w, float bias,
                                  int accumulate, float *y);
void cnn_f32_conv_direct_wgrad_scalar(const cnn_plane_geom *g, const float *xp, const float *dy, int bias,
                                      float *out);
void cnn_f32_conv_direct_wgrad_avx2(const cnn_plane_geom *g, const float *xp, const float *dy, int bias,
                                    float *out);

#endif
