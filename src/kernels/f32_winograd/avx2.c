/* f32_winograd/avx2.c — the F(2x2, 3x3) transforms (winograd.h) with AVX2 (compiled with -mavx2 -mfma;
 * call only when the CPU has both), 8 tiles of a tile row per step.
 * input: per input row of the 4x4 tiles, 4 unaligned loads (columns 2*tx0 + [0,8), [8,16), [2,10),
 *   [10,18)) and even/odd de-interleaves (vshufps + vpermpd) give the 4 tile columns of 8 tiles; then
 *   32 vector additions and 16 unaligned stores of 8 consecutive tiles. The last group of a row may
 *   cover up to 7 tiles past the row end: their lanes land on the next row's columns (rewritten when that
 *   row is done, rows go in order) or past nty*tw (the caller's slack).
 * output: 16 loads of 8 consecutive tiles, 24 additions, and the two output columns of each tile
 *   interleaved (vunpcklps/vunpckhps + vperm2f128) into 16 consecutive floats per output row.
 * dyin: per 8 tiles 4 loads of the two dy rows, de-interleaved, 6 additions and 16 stores (negation is
 *   a sign flip, as -x in scalar.c).
 * The same additions in the same order as scalar.c: bitwise the same results. Registers: 16 inputs of
 * a tile live at once at most (the compiler keeps them in ymm0-15, reloading where it must). */
#define WINO_SUFFIX(name) name##_avx2
#include "winograd_impl.h"

#include <immintrin.h>

static inline __m256 even8(__m256 a, __m256 b) { /* a0 a2 a4 a6 b0 b2 b4 b6 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}
static inline __m256 odd8(__m256 a, __m256 b) { /* a1 a3 a5 a7 b1 b3 b5 b7 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

void cnn_f32_winograd_f23_input_avx2(const float *xp, size_t cin, size_t plane_stride, size_t ldp, size_t tw,
                                     size_t nty, float *V, size_t ldv) {
    for (size_t c = 0; c < cin; c++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx += 8) {
                const float *s = xp + c * plane_stride + 2 * ty * ldp + 2 * tx;
                __m256 d[4][4], t[4][4];
                for (int a = 0; a < 4; a++) {
                    const float *ra = s + (size_t)a * ldp;
                    const __m256 v0 = _mm256_loadu_ps(ra), v1 = _mm256_loadu_ps(ra + 8);
                    const __m256 v2 = _mm256_loadu_ps(ra + 2), v3 = _mm256_loadu_ps(ra + 10);
                    d[a][0] = even8(v0, v1);
                    d[a][1] = odd8(v0, v1);
                    d[a][2] = even8(v2, v3);
                    d[a][3] = odd8(v2, v3);
                }
                for (int b = 0; b < 4; b++) {
                    t[0][b] = _mm256_sub_ps(d[0][b], d[2][b]);
                    t[1][b] = _mm256_add_ps(d[1][b], d[2][b]);
                    t[2][b] = _mm256_sub_ps(d[2][b], d[1][b]);
                    t[3][b] = _mm256_sub_ps(d[1][b], d[3][b]);
                }
                float *v = V + c * 16 * ldv + ty * tw + tx;
                for (int i = 0; i < 4; i++) {
                    _mm256_storeu_ps(v + (size_t)(4 * i + 0) * ldv, _mm256_sub_ps(t[i][0], t[i][2]));
                    _mm256_storeu_ps(v + (size_t)(4 * i + 1) * ldv, _mm256_add_ps(t[i][1], t[i][2]));
                    _mm256_storeu_ps(v + (size_t)(4 * i + 2) * ldv, _mm256_sub_ps(t[i][2], t[i][1]));
                    _mm256_storeu_ps(v + (size_t)(4 * i + 3) * ldv, _mm256_sub_ps(t[i][1], t[i][3]));
                }
            }
}

void cnn_f32_winograd_f23_output_avx2(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, float *Y,
                                      size_t plane_stride, size_t ldo) {
    for (size_t k = 0; k < kout; k++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx += 8) {
                const float *mk = M + k * 16 * ldm + ty * tw + tx;
                __m256 m[16], s[2][4];
                for (int e = 0; e < 16; e++) m[e] = _mm256_loadu_ps(mk + (size_t)e * ldm);
                for (int q = 0; q < 4; q++) {
                    s[0][q] = _mm256_add_ps(_mm256_add_ps(m[q], m[4 + q]), m[8 + q]);
                    s[1][q] = _mm256_sub_ps(_mm256_sub_ps(m[4 + q], m[8 + q]), m[12 + q]);
                }
                float *y = Y + k * plane_stride + 2 * ty * ldo + 2 * tx;
                for (int r = 0; r < 2; r++) {
                    const __m256 o0 = _mm256_add_ps(_mm256_add_ps(s[r][0], s[r][1]), s[r][2]);
                    const __m256 o1 = _mm256_sub_ps(_mm256_sub_ps(s[r][1], s[r][2]), s[r][3]);
                    const __m256 lo = _mm256_unpacklo_ps(o0, o1), hi = _mm256_unpackhi_ps(o0, o1);
                    _mm256_storeu_ps(y + (size_t)r * ldo, _mm256_permute2f128_ps(lo, hi, 0x20));
                    _mm256_storeu_ps(y + (size_t)r * ldo + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
                }
            }
}

void cnn_f32_winograd_f23_dyin_avx2(const float *qp, size_t kout, size_t plane_stride, size_t ldq, size_t tw,
                                    size_t nty, float *D, size_t ldd) {
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (size_t k = 0; k < kout; k++)
        for (size_t ty = 0; ty < nty; ty++)
            for (size_t tx = 0; tx < tw; tx += 8) {
                const float *q = qp + k * plane_stride + 2 * ty * ldq + 2 * tx;
                const __m256 a0 = _mm256_loadu_ps(q), a1 = _mm256_loadu_ps(q + 8);
                const __m256 b0 = _mm256_loadu_ps(q + ldq), b1 = _mm256_loadu_ps(q + ldq + 8);
                const __m256 q00 = even8(a0, a1), q01 = odd8(a0, a1), q10 = even8(b0, b1), q11 = odd8(b0, b1);
                __m256 t[4][2];
                t[0][0] = q00;
                t[0][1] = q01;
                t[1][0] = _mm256_add_ps(q00, q10);
                t[1][1] = _mm256_add_ps(q01, q11);
                t[2][0] = _mm256_sub_ps(q00, q10);
                t[2][1] = _mm256_sub_ps(q01, q11);
                t[3][0] = _mm256_xor_ps(q10, neg);
                t[3][1] = _mm256_xor_ps(q11, neg);
                float *d = D + k * 16 * ldd + ty * tw + tx;
                for (int i = 0; i < 4; i++) {
                    _mm256_storeu_ps(d + (size_t)(4 * i + 0) * ldd, t[i][0]);
                    _mm256_storeu_ps(d + (size_t)(4 * i + 1) * ldd, _mm256_add_ps(t[i][0], t[i][1]));
                    _mm256_storeu_ps(d + (size_t)(4 * i + 2) * ldd, _mm256_sub_ps(t[i][0], t[i][1]));
                    _mm256_storeu_ps(d + (size_t)(4 * i + 3) * ldd, _mm256_xor_ps(t[i][1], neg));
                }
            }
}

#include "f43_avx2.inc"
