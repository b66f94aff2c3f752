/* ref_elem.h — naive float64 references for the elementwise layers (relu, leaky_relu, sigmoid, tanh, gelu),
 * flatten, add and concat. Written from the formulas (PyTorch's definitions); shares no code with src/. */
#ifndef CNN_REF_ELEM_H
#define CNN_REF_ELEM_H

#include <stddef.h>

typedef enum ref_act { REF_RELU = 0, REF_LEAKY, REF_SIGMOID, REF_TANH, REF_GELU, REF_GELU_TANH } ref_act;

/* y[i] = f(x[i]) for i < count; slope is used by REF_LEAKY only. In place (y == x) is allowed. */
void ref_activation(ref_act f, double slope, size_t count, const double *x, double *y);
double ref_activation_one(ref_act f, double slope, double x);

/* y = x[0] + ... + x[k-1], count elements each. */
void ref_add(size_t k, size_t count, const double *const *x, double *y);

/* Channel concat of k NCHW tensors x[i] (n, c[i], h, w) into y (n, sum c, h, w). */
void ref_concat(size_t n, size_t k, const size_t *c, size_t h, size_t w, const double *const *x, double *y);

#endif
