/* wgrad.h — the kernels of conv2d's "blocked" weight gradient (src/layers/conv2d.c, wgrad=blocked):
 * dW[k][tap] = sum over the batch's output pixels of dy[k][pixel] * x(tap, pixel), with 16 output channels
 * in the vector lanes and up to 27 (channel block, tap) sums in registers (3 x 9 or 4 x 6), the pixels the loop (as
 * oneDNN's direct weight gradient on its nChw16c layout; here dy is transposed per sample instead).
 *
 * pack_dy: the sample's output gradient dy [K][P] (rows ld floats apart) for channel blocks [b0, b1)
 *          into dyT[(b - b0)*P*16 + p*16 + l] = dy[16*b + l][p] (0 for 16*b + l >= K), and with bsum
 *          != NULL also bsum[(b - b0)*16 + l] = the float sum of dy[16*b + l][p] over p ascending from
 *          zero (the bias gradient's share; 0 past K). A copy and sequential sums: the same values on
 *          every ISA.
 * sums:    for one piece of a sample (oh output rows), kb <= CNN_WGRAD_MAX_KB blocks of 16 output channels
 *          (dyT as pack_dy wrote them, block b at dyT + b*P*16, P = oh*ow) and ntap <=
 *          CNN_WGRAD_MAX_TAPS taps, kb * ntap <= CNN_WGRAD_MAX_ACC: the float sums
 *            S[b][t][l] = sum_{oy < oh, ox < ow} dyT[b][oy*ow + ox][l] * xp[oy*sh*ldp + ox*sw + off[t]]
 *          each from zero in the order (oy, ox) ascending with one fused multiply-add per term (fmaf in
 *          scalar), then acc[(b*ntap + t)*16 + l] = (first ? 0 : acc[...]) + (double)S[b][t][l]. Every
 *          ISA gives the same bits. xp is the piece's zero-padded input (the driver's planes); off[t] =
 *          c*plane_stride + r*dh*ldp + s*dw for tap (c, r, s).
 * Pure, single-threaded, no allocation, no alignment requirement. */
#ifndef CNN_CONV_WGRAD_H
#define CNN_CONV_WGRAD_H

#include <stddef.h>

#define CNN_WGRAD_MAX_KB 4
#define CNN_WGRAD_MAX_TAPS 9
#define CNN_WGRAD_MAX_ACC 27 /* kb * ntap at most */

typedef struct cnn_wgrad_args {
    const float *dyT; /* block 0 of the sample's packed dy */
    const float *xp;  /* the sample's padded input */
    size_t oh, ow, ldp, sh, sw;
    size_t kb, ntap;
    ptrdiff_t off[CNN_WGRAD_MAX_TAPS];
} cnn_wgrad_args;

typedef void (*cnn_wgrad_pack_dy_fn)(const float *dy, size_t K, size_t P, size_t ld, size_t b0, size_t b1,
                                     float *dyT, float *bsum);
typedef void (*cnn_wgrad_sums_fn)(const cnn_wgrad_args *a, double *acc, int first);

void cnn_f32_wgrad_pack_dy_scalar(const float *dy, size_t K, size_t P, size_t ld, size_t b0, size_t b1, float *dyT,
                                  float *bsum);
void cnn_f32_wgrad_pack_dy_avx2(const float *dy, size_t K, size_t P, size_t ld, size_t b0, size_t b1, float *dyT,
                                float *bsum);
void cnn_f32_wgrad_sums_scalar(const cnn_wgrad_args *a, double *acc, int first);
void cnn_f32_wgrad_sums_avx2(const cnn_wgrad_args *a, double *acc, int first);
void cnn_f32_wgrad_sums_avx512(const cnn_wgrad_args *a, double *acc, int first);

#endif
