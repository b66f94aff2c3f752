/* f32_winograd/avx512.c — the F(4x4, 3x3) input and output transforms (winograd.h) with AVX-512 (compiled
 * with -mavx512f -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them), 16 consecutive
 * tiles per step (one zmm lane per tile; a step may span tile rows, as the AVX2 kernel's 8).
 * input: per input row of the 6x6 tiles, 32 128-bit loads (columns 0-3 and 4-7 of each tile, four per zmm
 *   through vinsertf32x4 from memory: tiles i, i+4, i+8, i+12 in the four 128-bit lanes) and the in-lane
 *   4x4 transpose give the 6 tile columns of 16 tiles in order; then the row and column transforms and 36
 *   stores of 16 columns (the call's last step masked to its valid tiles: nothing past nty*tw is written).
 * output: per tile column 6 loads of 16 columns of M (the last step masked), A^T, per output row A^T again
 *   and the in-lane transpose into 16 128-bit stores (one per tile; idle lanes store nothing).
 * The same expressions in the same order as f43_avx2.inc and f43_scalar.inc (every multiplier a power of
 * two: exact products, so FMA contraction cannot change a result): bitwise the same results. The F(2x2)
 * transforms, the weight transforms and the weight-gradient kernels stay AVX2. */
#include "winograd.h"
#include "../mask16.h"

#include <immintrin.h>

static inline __attribute__((always_inline)) void f43_bt6_avx512(const __m512 d[6], __m512 r[6]) {
    const __m512 four = _mm512_set1_ps(4.0f), two = _mm512_set1_ps(2.0f);
    const __m512 p = _mm512_sub_ps(d[4], _mm512_mul_ps(four, d[2]));
    const __m512 q = _mm512_sub_ps(d[3], _mm512_mul_ps(four, d[1]));
    const __m512 u = _mm512_sub_ps(d[4], d[2]);
    const __m512 v = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    const __m512 f2 = _mm512_add_ps(_mm512_mul_ps(four, d[2]), d[2]); /* 5 d2 */
    const __m512 f3 = _mm512_add_ps(_mm512_mul_ps(four, d[3]), d[3]); /* 5 d3 */
    r[0] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, d[0]), f2), d[4]);
    r[1] = _mm512_add_ps(p, q);
    r[2] = _mm512_sub_ps(p, q);
    r[3] = _mm512_add_ps(u, v);
    r[4] = _mm512_sub_ps(u, v);
    r[5] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, d[1]), f3), d[5]);
}

static inline __attribute__((always_inline)) void f43_at6_avx512(const __m512 m[6], __m512 o[4]) {
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
    const __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
    const __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    o[1] = _mm512_add_ps(d12, _mm512_mul_ps(two, d34));
    o[2] = _mm512_add_ps(s12, _mm512_mul_ps(four, s34));
    o[3] = _mm512_add_ps(_mm512_add_ps(d12, _mm512_mul_ps(eight, d34)), m[5]);
}

/* Offsets of the 16 tiles j0 .. j0+15 (tile j = ty*tw + tx at 4*ty*ld + 4*tx); lanes at or past `count`
 * repeat tile j0 (reads in bounds, results not stored). Returns the number of valid lanes. */
static inline int f43_lanes16(size_t j0, size_t count, size_t tw, size_t ld, size_t off[16]) {
    size_t ty = j0 / tw, tx = j0 % tw;
    int n = 0;
    for (int t = 0; t < 16; t++) {
        if (j0 + (size_t)t < count) {
            off[t] = 4 * ty * ld + 4 * tx;
            n++;
            if (++tx == tw) tx = 0, ty++;
        } else {
            off[t] = off[0];
        }
    }
    return n;
}

/* tiles i, i+4, i+8, i+12's 4 floats at r + off[.] + c0 in the four 128-bit lanes */
static inline __attribute__((always_inline)) __m512 f43_load4(const float *r, const size_t off[16], int i,
                                                              size_t c0) {
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(r + off[i] + c0));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(r + off[i + 4] + c0), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(r + off[i + 8] + c0), 2);
    return _mm512_insertf32x4(v, _mm_loadu_ps(r + off[i + 12] + c0), 3);
}

/* columns c0 .. c0+3 of the 16 tiles (one row): out[q] lane t = tile t's column c0 + q */
static inline __attribute__((always_inline)) void f43_cols4_avx512(const float *r, const size_t off[16],
                                                                   size_t c0, __m512 out[4]) {
    const __m512 b0 = f43_load4(r, off, 0, c0), b1 = f43_load4(r, off, 1, c0);
    const __m512 b2 = f43_load4(r, off, 2, c0), b3 = f43_load4(r, off, 3, c0);
    const __m512 t0 = _mm512_unpacklo_ps(b0, b1), t1 = _mm512_unpackhi_ps(b0, b1);
    const __m512 t2 = _mm512_unpacklo_ps(b2, b3), t3 = _mm512_unpackhi_ps(b2, b3);
    out[0] = _mm512_shuffle_ps(t0, t2, 0x44);
    out[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
    out[2] = _mm512_shuffle_ps(t1, t3, 0x44);
    out[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
}

/* columns 4 and 5 only */
static inline __attribute__((always_inline)) void f43_cols2_avx512(const float *r, const size_t off[16],
                                                                   __m512 out[2]) {
    const __m512 b0 = f43_load4(r, off, 0, 4), b1 = f43_load4(r, off, 1, 4);
    const __m512 b2 = f43_load4(r, off, 2, 4), b3 = f43_load4(r, off, 3, 4);
    const __m512 t0 = _mm512_unpacklo_ps(b0, b1), t2 = _mm512_unpacklo_ps(b2, b3);
    out[0] = _mm512_shuffle_ps(t0, t2, 0x44);
    out[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
}

void cnn_f32_winograd_f43_input_avx512(const float *xp, size_t cin, size_t plane_stride, size_t ldp, size_t tw,
                                       size_t nty, float *V, size_t ldv) {
    const size_t count = nty * tw;
    for (size_t j0 = 0; j0 < count; j0 += 16) {
        size_t off[16];
        const int n = f43_lanes16(j0, count, tw, ldp, off);
        const __mmask16 m = cnn_mask16(0, n);
        for (size_t c = 0; c < cin; c++) {
            const float *s = xp + c * plane_stride;
            __m512 h[6][6];
            for (int a = 0; a < 6; a++) { /* row a of the 16 tiles, d B */
                __m512 d[6], lo[4], hi[2];
                f43_cols4_avx512(s + (size_t)a * ldp, off, 0, lo);
                f43_cols2_avx512(s + (size_t)a * ldp, off, hi);
                d[0] = lo[0], d[1] = lo[1], d[2] = lo[2], d[3] = lo[3], d[4] = hi[0], d[5] = hi[1];
                f43_bt6_avx512(d, h[a]);
            }
            float *v = V + c * 36 * ldv + j0;
            for (int j = 0; j < 6; j++) { /* column j: B^T (d B) */
                __m512 col[6], o[6];
                for (int a = 0; a < 6; a++) col[a] = h[a][j];
                f43_bt6_avx512(col, o);
                if (n == 16)
                    for (int i = 0; i < 6; i++) _mm512_storeu_ps(v + (size_t)(6 * i + j) * ldv, o[i]);
                else
                    for (int i = 0; i < 6; i++) _mm512_mask_storeu_ps(v + (size_t)(6 * i + j) * ldv, m, o[i]);
            }
        }
    }
}

/* o[q] lane t holds column q of tile t; write tile t's 4 columns to y + off[t], t < n */
static inline __attribute__((always_inline)) void f43_store4_avx512(const __m512 o[4], float *y,
                                                                    const size_t off[16], int n) {
    const __m512 t0 = _mm512_unpacklo_ps(o[0], o[1]), t1 = _mm512_unpackhi_ps(o[0], o[1]);
    const __m512 t2 = _mm512_unpacklo_ps(o[2], o[3]), t3 = _mm512_unpackhi_ps(o[2], o[3]);
    /* w[i] 128-bit lane L = tile 4L + i's 4 columns */
    const __m512 w[4] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xEE),
                         _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xEE)};
    if (n == 16) {
        for (int i = 0; i < 4; i++) {
            _mm_storeu_ps(y + off[i], _mm512_castps512_ps128(w[i]));
            _mm_storeu_ps(y + off[i + 4], _mm512_extractf32x4_ps(w[i], 1));
            _mm_storeu_ps(y + off[i + 8], _mm512_extractf32x4_ps(w[i], 2));
            _mm_storeu_ps(y + off[i + 12], _mm512_extractf32x4_ps(w[i], 3));
        }
        return;
    }
    for (int t = 0; t < n; t++) {
        const int i = t & 3, L = t >> 2;
        const __m128 q = L == 0 ? _mm512_castps512_ps128(w[i])
                         : L == 1 ? _mm512_extractf32x4_ps(w[i], 1)
                         : L == 2 ? _mm512_extractf32x4_ps(w[i], 2)
                                  : _mm512_extractf32x4_ps(w[i], 3);
        _mm_storeu_ps(y + off[t], q);
    }
}

void cnn_f32_winograd_f43_output_avx512(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, float *Y,
                                        size_t plane_stride, size_t ldo) {
    const size_t count = nty * tw;
    for (size_t j0 = 0; j0 < count; j0 += 16) {
        size_t off[16];
        const int n = f43_lanes16(j0, count, tw, ldo, off);
        const __mmask16 m = cnn_mask16(0, n);
        for (size_t k = 0; k < kout; k++) {
            const float *mk = M + k * 36 * ldm + j0;
            __m512 t[4][6];
            for (int q = 0; q < 6; q++) { /* column q: A^T m */
                __m512 mm[6], o[4];
                for (int e = 0; e < 6; e++) mm[e] = _mm512_maskz_loadu_ps(m, mk + (size_t)(6 * e + q) * ldm);
                f43_at6_avx512(mm, o);
                for (int r = 0; r < 4; r++) t[r][q] = o[r];
            }
            float *y = Y + k * plane_stride;
            for (int r = 0; r < 4; r++) { /* row r: (A^T m) A */
                __m512 o[4];
                f43_at6_avx512(t[r], o);
                f43_store4_avx512(o, y + (size_t)r * ldo, off, n);
            }
        }
    }
}
