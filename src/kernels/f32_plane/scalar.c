/* f32_plane/scalar.c — the plane copies (plane.h) in plain C; also the AVX2 machines' kernels (the compiler
 * vectorises the loops for the baseline ISA). */
#include "plane.h"

#include <string.h>

void cnn_f32_plane_pad_scalar(float *dst, size_t R, size_t C, size_t ld, const float *src, size_t sr, size_t sc,
                              ptrdiff_t off_r, ptrdiff_t off_c) {
    ptrdiff_t c0 = off_c > 0 ? off_c : 0, c1 = (ptrdiff_t)sc + off_c;
    if (c1 > (ptrdiff_t)C) c1 = (ptrdiff_t)C;
    if (c0 > (ptrdiff_t)C) c0 = (ptrdiff_t)C;
    if (c1 < c0) c1 = c0;
    for (size_t r = 0; r < R; r++) {
        float *d = dst + r * ld;
        const ptrdiff_t y = (ptrdiff_t)r - off_r;
        if (y < 0 || y >= (ptrdiff_t)sr || c1 == c0) {
            memset(d, 0, C * sizeof(float));
            continue;
        }
        const float *s = src + (size_t)y * sc + (c0 - off_c);
        for (ptrdiff_t q = 0; q < c0; q++) d[q] = 0.0f;
        memcpy(d + c0, s, (size_t)(c1 - c0) * sizeof(float));
        for (ptrdiff_t q = c1; q < (ptrdiff_t)C; q++) d[q] = 0.0f;
    }
}

void cnn_f32_plane_add_scalar(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols,
                              float b, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict d = dst + r * ldd;
        const float *restrict s = src + r * lds;
        if (accumulate)
            for (size_t q = 0; q < cols; q++) d[q] += s[q];
        else
            for (size_t q = 0; q < cols; q++) d[q] = s[q] + b;
    }
}
