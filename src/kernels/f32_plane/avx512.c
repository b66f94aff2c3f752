/* f32_plane/avx512.c — the plane copies (plane.h) with AVX-512 k-masked moves (compiled with -mavx512f
 * -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them): a row is written in 16-float
 * steps, the last one under a mask, with no libc call per row (c1's rows are 14 floats: one masked zmm).
 * pad builds each dst row in registers: the src run is loaded at its offset with a mask of the lanes
 * inside [c0, c1) (the others zero), so every dst element is written once. Same values as scalar.c. */
#include "plane.h"
#include "../mask16.h"

#include <immintrin.h>
#include <stdint.h>


void cnn_f32_plane_pad_avx512(float *dst, size_t R, size_t C, size_t ld, const float *src, size_t sr, size_t sc,
                              ptrdiff_t off_r, ptrdiff_t off_c) {
    ptrdiff_t c0 = off_c > 0 ? off_c : 0, c1 = (ptrdiff_t)sc + off_c;
    if (c1 > (ptrdiff_t)C) c1 = (ptrdiff_t)C;
    if (c0 > (ptrdiff_t)C) c0 = (ptrdiff_t)C;
    if (c1 < c0) c1 = c0;
    const __m512 z = _mm512_setzero_ps();
    for (size_t r = 0; r < R; r++) {
        float *d = dst + r * ld;
        const ptrdiff_t y = (ptrdiff_t)r - off_r;
        const int inside = y >= 0 && y < (ptrdiff_t)sr && c1 > c0;
        /* src column of dst column q: q - off_c; the row's run covers dst columns [c0, c1) */
        const float *s = inside ? src + (size_t)y * sc - off_c : NULL;
        for (ptrdiff_t q = 0; q < (ptrdiff_t)C; q += 16) {
            const __mmask16 st = cnn_mask16(0, (ptrdiff_t)C - q);
            __m512 v = z;
            if (inside) {
                const __mmask16 ld_m = cnn_mask16(c0 - q, c1 - q);
                if (ld_m) v = _mm512_maskz_loadu_ps(ld_m, s + q);
            }
            _mm512_mask_storeu_ps(d + q, st, v);
        }
    }
}

void cnn_f32_plane_add_avx512(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols,
                              float b, int accumulate) {
    const __m512 vb = _mm512_set1_ps(b);
    for (size_t r = 0; r < rows; r++) {
        float *d = dst + r * ldd;
        const float *s = src + r * lds;
        for (size_t q = 0; q < cols; q += 16) {
            const __mmask16 m = cnn_mask16(0, (ptrdiff_t)(cols - q));
            const __m512 sv = _mm512_maskz_loadu_ps(m, s + q);
            const __m512 v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + q), sv) : _mm512_add_ps(sv, vb);
            _mm512_mask_storeu_ps(d + q, m, v);
        }
    }
}
