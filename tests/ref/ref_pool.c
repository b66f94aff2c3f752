/* ref_pool.c — naive float64 pooling: every window tap is visited and bounds-checked one by one. */
#include "ref_pool.h"

#include <math.h>

long ref_pool_out_len(long len, long k, long stride, long pad0, long pad1, long dilation, int ceil) {
    long num = len + pad0 + pad1 - dilation * (k - 1) - 1 + (ceil ? stride - 1 : 0);
    /* division rounding toward -infinity */
    long q = num / stride;
    if (num % stride != 0 && num < 0)
        q--;
    long out = q + 1;
    if (ceil && (out - 1) * stride >= len + pad0)
        out--;
    return out;
}

static void dims(const ref_pool2d *p, size_t h, size_t w, long *oh, long *ow) {
    *oh = ref_pool_out_len((long)h, p->kh, p->sh, p->pt, p->pb, p->dh, p->ceil);
    *ow = ref_pool_out_len((long)w, p->kw, p->sw, p->pl, p->pr, p->dw, p->ceil);
}

void ref_maxpool2d(const ref_pool2d *p, size_t n, size_t c, size_t h, size_t w, const double *x, double *y) {
    long oh, ow;
    dims(p, h, w, &oh, &ow);
    for (size_t plane = 0; plane < n * c; plane++) {
        const double *xp = x + plane * h * w;
        double *yp = y + plane * (size_t)(oh * ow);
        for (long i = 0; i < oh; i++)
            for (long j = 0; j < ow; j++) {
                double m = -INFINITY;
                for (long a = 0; a < p->kh; a++)
                    for (long b = 0; b < p->kw; b++) {
                        long r = i * p->sh - p->pt + a * p->dh;
                        long q = j * p->sw - p->pl + b * p->dw;
                        if (r < 0 || r >= (long)h || q < 0 || q >= (long)w)
                            continue; /* padding */
                        double v = xp[r * (long)w + q];
                        if (isnan(m))
                            continue;
                        if (isnan(v) || v > m)
                            m = v;
                    }
                yp[i * ow + j] = m;
            }
    }
}

void ref_avgpool2d(const ref_pool2d *p, size_t n, size_t c, size_t h, size_t w, const double *x, double *y) {
    long oh, ow;
    dims(p, h, w, &oh, &ow);
    for (size_t plane = 0; plane < n * c; plane++) {
        const double *xp = x + plane * h * w;
        double *yp = y + plane * (size_t)(oh * ow);
        for (long i = 0; i < oh; i++)
            for (long j = 0; j < ow; j++) {
                double sum = 0;
                long rows_in = 0, rows_pad = 0, cols_in = 0, cols_pad = 0;
                for (long a = 0; a < p->kh; a++) {
                    long r = i * p->sh - p->pt + a;
                    rows_in += r >= 0 && r < (long)h;
                    rows_pad += r >= -p->pt && r < (long)h + p->pb;
                }
                for (long b = 0; b < p->kw; b++) {
                    long q = j * p->sw - p->pl + b;
                    cols_in += q >= 0 && q < (long)w;
                    cols_pad += q >= -p->pl && q < (long)w + p->pr;
                }
                for (long a = 0; a < p->kh; a++)
                    for (long b = 0; b < p->kw; b++) {
                        long r = i * p->sh - p->pt + a, q = j * p->sw - p->pl + b;
                        if (r >= 0 && r < (long)h && q >= 0 && q < (long)w)
                            sum += xp[r * (long)w + q];
                    }
                double div = p->count_include_pad ? (double)(rows_pad * cols_pad) : (double)(rows_in * cols_in);
                yp[i * ow + j] = sum / div;
            }
    }
}

void ref_global_avgpool(size_t n, size_t c, size_t h, size_t w, const double *x, double *y) {
    for (size_t plane = 0; plane < n * c; plane++) {
        double s = 0;
        for (size_t i = 0; i < h * w; i++)
            s += x[plane * h * w + i];
        y[plane] = s / (double)(h * w);
    }
}

void ref_global_maxpool(size_t n, size_t c, size_t h, size_t w, const double *x, double *y) {
    for (size_t plane = 0; plane < n * c; plane++) {
        double m = -INFINITY;
        for (size_t i = 0; i < h * w; i++) {
            double v = x[plane * h * w + i];
            if (isnan(v)) {
                m = v;
                break;
            }
            if (v > m)
                m = v;
        }
        y[plane] = m;
    }
}
