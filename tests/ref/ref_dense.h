/* ref_dense.h — naive float64 references for dense, batchnorm, dropout's scale, softmax and the losses.
 * Written from the formulas (PyTorch semantics); they share no code with src/. */
#ifndef CNN_REF_DENSE_H
#define CNN_REF_DENSE_H

#include <stddef.h>
#include <stdint.h>

/* y[n, out] = x[n, in] * w[out, in]^T + b[out] (b may be NULL). */
void ref_dense_forward(size_t n, size_t in, size_t out, const double *x, const double *w, const double *b,
                       double *y);

/* Per-channel batch statistics over n*hw values: mean, biased and unbiased variance (unbiased = biased
 * when n*hw == 1). Any output may be NULL. */
void ref_batchnorm_stats(size_t n, size_t c, size_t hw, const double *x, double *mean, double *var_biased,
                         double *var_unbiased);
/* Batch normalisation of x (n x c x hw). training: batch statistics (biased variance), else running_mean /
 * running_var. gamma, beta may be NULL (affine=0). */
void ref_batchnorm_forward(size_t n, size_t c, size_t hw, const double *x, const double *gamma,
                           const double *beta, const double *running_mean, const double *running_var, double eps,
                           int training, double *y);

/* Softmax over channels at every (sample, position): x, y are n x c x hw. */
void ref_softmax(size_t n, size_t c, size_t hw, const double *x, double *y);

/* Mean over the batch of cross-entropy between softmax(x) and the label distribution with smoothing s
 * (PyTorch CrossEntropyLoss). x is n x c logits. correct (may be NULL): samples whose first maximal logit
 * is the label. */
double ref_softmax_ce(size_t n, size_t c, const double *x, const int32_t *labels, double s, size_t *correct);

/* Mean over all n*k elements of (y - t)^2. correct (may be NULL): samples where the first argmax of y equals
 * the first argmax of t, counted only when k > 1. */
double ref_mse(size_t n, size_t k, const double *y, const double *t, size_t *correct);

#endif
