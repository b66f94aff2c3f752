/* ref_elem.c — see ref_elem.h. Plain loops, one element at a time, in double. */
#include "ref_elem.h"

#include <math.h>

double ref_activation_one(ref_act f, double slope, double x) {
    const double pi = 3.14159265358979323846;
    switch (f) {
    case REF_RELU: return x > 0 ? x : (isnan(x) ? x : 0.0);
    case REF_LEAKY: return x >= 0 ? x : (isnan(x) ? x : slope * x);
    case REF_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case REF_TANH: return tanh(x);
    case REF_GELU: return x * 0.5 * (1.0 + erf(x / sqrt(2.0)));
    case REF_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * pow(x, 3.0))));
    }
    return NAN;
}

void ref_activation(ref_act f, double slope, size_t count, const double *x, double *y) {
    for (size_t i = 0; i < count; i++) y[i] = ref_activation_one(f, slope, x[i]);
}

void ref_add(size_t k, size_t count, const double *const *x, double *y) {
    for (size_t i = 0; i < count; i++) {
        double s = 0;
        for (size_t j = 0; j < k; j++) s += x[j][i];
        y[i] = s;
    }
}

void ref_concat(size_t n, size_t k, const size_t *c, size_t h, size_t w, const double *const *x, double *y) {
    size_t ctot = 0;
    for (size_t j = 0; j < k; j++) ctot += c[j];
    for (size_t s = 0; s < n; s++) {
        size_t off = 0;
        for (size_t j = 0; j < k; j++) {
            for (size_t ch = 0; ch < c[j]; ch++)
                for (size_t r = 0; r < h; r++)
                    for (size_t q = 0; q < w; q++)
                        y[((s * ctot + off + ch) * h + r) * w + q] = x[j][((s * c[j] + ch) * h + r) * w + q];
            off += c[j];
        }
    }
}
