/* bn_kernels.h — the per-channel loops of batch normalisation in training (src/layers/batchnorm.c), which are
 * memory-bound: each call walks one channel of an NCHW tensor, n planes of hw floats, plane i at
 * base + i * stride (stride = C * hw), in plane order.
 *
 *   sums      s1 = sum (x - shift), s2 = sum (x - shift)^2                  (forward statistics)
 *   dsums     s1 = sum g,           s2 = sum g * (x - mu)                   (backward: dbeta, dgamma / inv_std)
 *   apply     y  = (x - mu) * a + b, then with relu: y = (y > 0 || y is NaN) ? y : 0 (activations.c's rule)
 *   bwd       v  = k * (g - mdy - (x - mu) * c);  dx = v, or dx += v when acc (backward data)
 * where g = dy, or with a mask plane ym (the fused relu's output, laid out like x): g = ym > 0 ? dy : 0,
 * the relu's backward rule (ym = relu(z) > 0 exactly when z > 0).
 *
 * Sums: each plane is summed in float, then the plane's total is added to a double accumulator, in plane
 * order. Within a plane: 4 accumulators of 8 lanes take elements [32t + 8j + l] (accumulator j, lane l) of
 * the whole 32-blocks, accumulator 0 then takes the remaining whole 8-blocks, the last hw % 8 elements go to
 * one float in order; the accumulators are combined as (A0 + A1) + (A2 + A3), its lanes as
 * ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), and the tail is added last. So a plane of a few
 * thousand floats keeps float rounding near 1e-7 relative. Every operation is a separate IEEE add or multiply
 * (no FMA contraction), and the scalar file follows the same order lane by lane: results are bit-identical
 * across ISAs and never depend on the thread count.
 *
 * Pure, single-threaded, no allocation, any alignment; y and dx must not overlap x or dy (except dx == dy
 * is not allowed either). */
#ifndef CNN_F32_BN_KERNELS_H
#define CNN_F32_BN_KERNELS_H

#include <stddef.h>

typedef void (*cnn_f32_bn_sums_fn)(const float *x, size_t n, size_t stride, size_t hw, float shift, double *s1,
                                   double *s2);
typedef void (*cnn_f32_bn_dsums_fn)(const float *x, const float *dy, const float *ym, size_t n, size_t stride,
                                    size_t hw, float mu, double *s1, double *s2);
typedef void (*cnn_f32_bn_apply_fn)(const float *x, float *y, size_t n, size_t stride, size_t hw, float mu,
                                    float a, float b, int relu);
typedef void (*cnn_f32_bn_bwd_fn)(const float *x, const float *dy, const float *ym, float *dx, size_t n,
                                  size_t stride, size_t hw, float k, float mdy, float mu, float c, int acc);

#define CNN_F32_BN_DECLARE(isa)                                                                                \
    void cnn_f32_bn_sums_##isa(const float *x, size_t n, size_t stride, size_t hw, float shift, double *s1,   \
                               double *s2);                                                                    \
    void cnn_f32_bn_dsums_##isa(const float *x, const float *dy, const float *ym, size_t n, size_t stride,   \
                                size_t hw, float mu, double *s1, double *s2);                                  \
    void cnn_f32_bn_apply_##isa(const float *x, float *y, size_t n, size_t stride, size_t hw, float mu,       \
                                float a, float b, int relu);                                                   \
    void cnn_f32_bn_bwd_##isa(const float *x, const float *dy, const float *ym, float *dx, size_t n,          \
                              size_t stride, size_t hw, float k, float mdy, float mu, float c, int acc);
CNN_F32_BN_DECLARE(scalar)
CNN_F32_BN_DECLARE(avx2)

#endif
