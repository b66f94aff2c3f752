/* ref_dense.c — naive float64 references (see ref_dense.h). Plain loops straight from the formulas. */
#include "ref_dense.h"

#include <math.h>

void ref_dense_forward(size_t n, size_t in, size_t out, const double *x, const double *w, const double *b,
                       double *y) {
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (size_t k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
}

void ref_batchnorm_stats(size_t n, size_t c, size_t hw, const double *x, double *mean, double *var_biased,
                         double *var_unbiased) {
    for (size_t ch = 0; ch < c; ch++) {
        double m = (double)(n * hw), s = 0.0, ss = 0.0;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < hw; k++) s += x[(i * c + ch) * hw + k];
        double mu = s / m;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < hw; k++) {
                double d = x[(i * c + ch) * hw + k] - mu;
                ss += d * d;
            }
        if (mean) mean[ch] = mu;
        if (var_biased) var_biased[ch] = ss / m;
        if (var_unbiased) var_unbiased[ch] = m > 1 ? ss / (m - 1) : ss / m;
    }
}

void ref_batchnorm_forward(size_t n, size_t c, size_t hw, const double *x, const double *gamma,
                           const double *beta, const double *running_mean, const double *running_var, double eps,
                           int training, double *y) {
    for (size_t ch = 0; ch < c; ch++) {
        double mu, var;
        if (training) {
            double m = (double)(n * hw), s = 0.0, ss = 0.0;
            for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < hw; k++) s += x[(i * c + ch) * hw + k];
            mu = s / m;
            for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < hw; k++) ss += pow(x[(i * c + ch) * hw + k] - mu, 2);
            var = ss / m;
        } else {
            mu = running_mean[ch];
            var = running_var[ch];
        }
        double g = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < hw; k++) {
                size_t e = (i * c + ch) * hw + k;
                y[e] = g * (x[e] - mu) / sqrt(var + eps) + b;
            }
    }
}

void ref_softmax(size_t n, size_t c, size_t hw, const double *x, double *y) {
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < hw; p++) {
            const double *xr = x + i * c * hw + p;
            double *yr = y + i * c * hw + p;
            double mx = -INFINITY, s = 0.0;
            for (size_t k = 0; k < c; k++) mx = fmax(mx, xr[k * hw]);
            for (size_t k = 0; k < c; k++) s += exp(xr[k * hw] - mx);
            for (size_t k = 0; k < c; k++) yr[k * hw] = exp(xr[k * hw] - mx) / s;
        }
}

double ref_softmax_ce(size_t n, size_t c, const double *x, const int32_t *labels, double s, size_t *correct) {
    double total = 0.0;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const double *xr = x + i * c;
        size_t best = 0;
        double mx = -INFINITY, z = 0.0;
        for (size_t k = 0; k < c; k++) {
            mx = fmax(mx, xr[k]);
            if (xr[k] > xr[best]) best = k;
        }
        for (size_t k = 0; k < c; k++) z += exp(xr[k] - mx);
        /* target distribution q_k = (1 - s) [k == label] + s / c; log p_k = x_k - mx - log z */
        double li = 0.0;
        for (size_t k = 0; k < c; k++) {
            double q = s / (double)c + ((int32_t)k == labels[i] ? 1.0 - s : 0.0);
            li -= q * (xr[k] - mx - log(z));
        }
        total += li;
        if ((int32_t)best == labels[i]) ok++;
    }
    if (correct) *correct = ok;
    return total / (double)n;
}

static size_t first_argmax(const double *v, size_t k) {
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

double ref_mse(size_t n, size_t k, const double *y, const double *t, size_t *correct) {
    double s = 0.0;
    size_t ok = 0;
    for (size_t i = 0; i < n * k; i++) s += (y[i] - t[i]) * (y[i] - t[i]);
    for (size_t i = 0; k > 1 && i < n; i++)
        if (first_argmax(y + i * k, k) == first_argmax(t + i * k, k)) ok++;
    if (correct) *correct = ok;
    return s / (double)(n * k);
}
