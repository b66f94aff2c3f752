/* fold.h — what the network's inference compile (src/core/net.c) uses of conv2d.c and batchnorm.c to fold
 * a conv2d -> batchnorm pair into one convolution and to keep conv weights pre-transformed.
 *
 * An inference compile may give a conv2d layer an "inference weight block": a compile-time copy of its
 * weights in the form its forward wants, which the forward then reads instead of the trained parameters
 * (the net passes it as cnn_layer_run.w). Two things can be in it:
 *   fold   a batchnorm that reads only this conv's output is applied to the weights: per output channel k
 *          with the batchnorm's eval-mode y = scale[k] * x + shift[k],
 *            W'[k] = W[k] * scale[k],  b'[k] = (b[k] or 0) * scale[k] + shift[k]
 *          and the conv adds b' even when it has no bias (bias=0).
 *   pack   a winograd layer keeps U = G W' G^T (the weight transform its forward otherwise does on every
 *          call, winograd.h) instead of W'; a GEMM layer (below) also keeps W' in the SGEMM's packed-A
 *          panels, which its forward would otherwise pack on every call.
 * Block layout (floats, 64-byte aligned start):
 *   winograd with pack:  b' [round16(K)] then the E (16 or 36) U_e [K][C], each packed for
 *                        ctx->kernels.sgemm_pa, then fill scratch (conv2d.c wino_block_floats; b' unused
 *                        without fold and bias)
 *   groups-1 gemm-1x1 and im2col+gemm (conv2d.c's packed-A driver): W' [K][C][kh][kw], b' [K], then
 *                        from a 16-float boundary W' packed for ctx->kernels.sgemm_pa (kernels.h)
 *   otherwise:           W' [K][C/G][kh][kw] then b' [K]             (the parameter layout with a bias)
 * The trained parameters are never written; a later training compile turns all of this off.
 */
#ifndef CNN_FOLD_H
#define CNN_FOLD_H

#include "layer.h"

/* Tell conv2d L the batch a compile is for (its automatic Winograd tile size depends on it); the caller
 * recomputes L's sizes after it. */
void cnn_conv2d_set_batch(cnn_layer *L, size_t batch);
/* Floats of L's inference weight block with (fold != 0) or without a folded batchnorm; 0 when the layer
 * needs no block (nothing folded and nothing to pack). L is a conv2d. */
size_t cnn_conv2d_infer_block_floats(const cnn_layer *L, int fold);
/* Set how L's forward reads its weights: from a block made with this fold value (block != 0), or from the
 * parameters (block == 0, what every compile starts with). */
void cnn_conv2d_set_infer_block(cnn_layer *L, int block, int fold);
/* Fill L's block from its parameters w (the layer's trainable floats: W, then b when it has a bias) and,
 * with fold, the per-output-channel scale and shift (K doubles each; NULL without fold). Threads over
 * output channels with cnn_pool_for; the result does not depend on the thread count. */
void cnn_conv2d_fill_infer_block(const cnn_layer *L, cnn_ctx *ctx, const float *w, const double *scale,
                                 const double *shift, float *block);

/* batchnorm.c: the eval-mode affine map of batchnorm L per channel, y = scale[c] * x + shift[c] with
 * scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale (in double); w: its
 * trainable floats (gamma, beta; NULL with affine=0), buf: its buffers (running_mean, running_var). */
void cnn_batchnorm_eval_affine(const cnn_layer *L, const float *w, const float *buf, double *scale,
                               double *shift);

/* batchnorm.c: run the relu that reads batchnorm L inside it (net.c's compile sets it, see batchnorm.c),
 * and whether it is set. */
void cnn_batchnorm_set_fused_relu(cnn_layer *L, int on);
int cnn_batchnorm_fused_relu(const cnn_layer *L);

#endif
