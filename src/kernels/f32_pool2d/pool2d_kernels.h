/* pool2d_kernels.h — max pooling with a 2x2 window and stride 2 (no padding, no dilation): the pooling of
 * most CNNs (M1, VGG, U-Net), memory-bound, so one pass that reads the input once and writes the output
 * and the argmax once. The generic maxpool2d loops (src/layers/maxpool2d.c) handle every other geometry.
 *
 * One call does `rows` output rows of one plane. Output row r reads input rows 2r and 2r+1 of width w,
 * output column j the input columns 2j, 2j+1 (requires 2 * ow <= w; an odd last input column is never
 * read). Window order (2r,2j), (2r,2j+1), (2r+1,2j), (2r+1,2j+1); the running maximum takes a value when
 * `v > m || v != v` (PyTorch's rule: ties keep the first maximum, NaN propagates and the last NaN wins).
 *
 *   forward   y[r*ow + j] = max (relu != 0: y = relu(max) = (max > 0 || max is NaN) ? max : +0, which is
 *             max of relu(x) with the same argmax whenever the gradient is nonzero, so "relu then maxpool"
 *             can run as one pass). arg (may be NULL) receives the index of the chosen element in the
 *             plane, (2r + dr) * w + 2j + dc, as int32.
 *   backward  the input rows 2r, 2r+1, columns [0, 2*ow): dx = (0 +) g at the argmax and 0 elsewhere
 *             (acc != 0: dx += g at the argmax, other elements unchanged), g = dy, or with relu
 *             g = (y > 0 ? dy : 0) (y the forward output). Rows >= 2*rows are never touched; columns
 *             >= 2*ow (an odd width) are left unchanged with acc and hold garbage without it (the driver
 *             clears them after the call).
 *
 * Pure, single-threaded, no allocation, any alignment. Nothing outside the call's plane is read or written:
 * x[0, 2*rows*w), y and arg [0, rows*ow), dx [0, 2*rows*w). Inside it, AVX2 tails load whole vectors and
 * store whole vectors where a later store of the same call rewrites the extra lanes; at the plane's end
 * they use masked loads and stores. avx2: 8 outputs per step; forward keeps 2 ymm per input row pair, the running max,
 * its index and 4 constants (<= 12 ymm); backward 4 index compares and 2 interleaves per row (<= 14 ymm).
 */
#ifndef CNN_F32_POOL2D_KERNELS_H
#define CNN_F32_POOL2D_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*cnn_f32_maxpool2x2_fwd_fn)(const float *x, size_t w, size_t ow, size_t rows, int relu,
                                          float *y, int32_t *arg);
typedef void (*cnn_f32_maxpool2x2_bwd_fn)(const float *dy, const int32_t *arg, const float *y, size_t w,
                                          size_t ow, size_t rows, int relu, int acc, float *dx);

void cnn_f32_maxpool2x2_fwd_scalar(const float *x, size_t w, size_t ow, size_t rows, int relu, float *y,
                                   int32_t *arg);
void cnn_f32_maxpool2x2_bwd_scalar(const float *dy, const int32_t *arg, const float *y, size_t w, size_t ow,
                                   size_t rows, int relu, int acc, float *dx);
void cnn_f32_maxpool2x2_fwd_avx2(const float *x, size_t w, size_t ow, size_t rows, int relu, float *y,
                                 int32_t *arg);
void cnn_f32_maxpool2x2_bwd_avx2(const float *dy, const int32_t *arg, const float *y, size_t w, size_t ow,
                                 size_t rows, int relu, int acc, float *dx);

/* Inference forward of 3x3 windows with stride 2 and dilation 1 (ResNet's stem pooling, padding 1): the
 * whole plane (h x w in, oh x ow out), window (oy, ox) at input rows 2*oy - pt + i, columns 2*ox - pl + j,
 * taps outside the plane skipped (every window must hold one: the layer checks), taps in row-major order
 * with the running-maximum rule above; no argmax. avx2: 8 outputs per step from two pairs of loads per
 * input row, deinterleaved (the columns 2*ox + j - pl of taps j = 0, 1, 2); where the 18 columns leave the
 * row, from a copy with -inf outside it (never taken: the skipped taps). The scalar kernel takes the rule
 * one output at a time. The two agree bitwise (NaN payloads included: the last NaN of a window wins).
 * relu != 0: y = relu(max) as in the 2x2 forward ("relu then maxpool" of an inference compile). */
typedef void (*cnn_f32_maxpool3x3s2_infer_fn)(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl,
                                              size_t oh, size_t ow, int relu, float *y);
void cnn_f32_maxpool3x3s2_infer_scalar(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oh,
                                       size_t ow, int relu, float *y);
void cnn_f32_maxpool3x3s2_infer_avx2(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oh,
                                     size_t ow, int relu, float *y);

#endif
