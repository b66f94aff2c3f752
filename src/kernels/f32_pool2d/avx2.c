/* f32_pool2d/avx2.c — 2x2 stride-2 max pooling with AVX2 (compiled with -mavx2 -mfma; call only when the
 * CPU has AVX2). Contract, register budget and tails: pool2d_kernels.h. Results are bit-identical to
 * scalar.c (the same comparisons in the same order, the same selects).
 *
 * Forward, 8 outputs per step: the 16 inputs of each row are split into even and odd columns with
 * shuffle_ps, which leaves the lanes in the order 0 1 4 5 2 3 6 7 (of the 8 outputs); the maximum and the
 * argmax are computed in that order and put back with one permute4x64 each. */
#include "pool2d_kernels.h"

#include <immintrin.h>
#include <math.h>

/* Lanes i < n set (n in 0..8). */
static inline __m256i lanes_below(size_t n) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), iota);
}

/* take v into (m, idx) when v > m || v != v */
#define TAKE(v, iv)                                                                                         \
    do {                                                                                                    \
        const __m256 t_ = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); \
        m = _mm256_blendv_ps(m, v, t_);                                                                     \
        idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(idx), _mm256_castsi256_ps(iv), t_)); \
    } while (0)

void cnn_f32_maxpool2x2_fwd_avx2(const float *x, size_t w, size_t ow, size_t rows, int relu, float *y,
                                 int32_t *arg) {
    /* column offsets of the even inputs in the shuffled lane order 0 1 4 5 2 3 6 7 */
    const __m256i off = _mm256_setr_epi32(0, 2, 8, 10, 4, 6, 12, 14);
    const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32((int)w);
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        const float *x0 = x + 2 * r * w, *x1 = x0 + w;
        float *yr = y + r * ow;
        int32_t *ar = arg ? arg + r * ow : NULL;
        for (size_t j = 0; j < ow; j += 8) {
            const size_t n = ow - j < 8 ? ow - j : 8;
            /* a tail may load and store whole vectors while they stay inside this call's plane: the extra
             * lanes read the next rows and write outputs that later rows overwrite (rows go in order) */
            const int full = n == 8 || ((2 * r + 1) * w + 2 * j + 16 <= 2 * rows * w && r * ow + j + 8 <= rows * ow);
            __m256 a0, a1, b0, b1;
            if (full) {
                a0 = _mm256_loadu_ps(x0 + 2 * j);
                a1 = _mm256_loadu_ps(x0 + 2 * j + 8);
                b0 = _mm256_loadu_ps(x1 + 2 * j);
                b1 = _mm256_loadu_ps(x1 + 2 * j + 8);
            } else {
                const __m256i mlo = lanes_below(2 * n), mhi = lanes_below(2 * n > 8 ? 2 * n - 8 : 0);
                a0 = _mm256_maskload_ps(x0 + 2 * j, mlo);
                a1 = _mm256_maskload_ps(x0 + 2 * j + 8, mhi);
                b0 = _mm256_maskload_ps(x1 + 2 * j, mlo);
                b1 = _mm256_maskload_ps(x1 + 2 * j + 8, mhi);
            }
            const __m256 ea = _mm256_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 oa = _mm256_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m256 eb = _mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 ob = _mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32((int)(2 * r * w + 2 * j)), off);
            const __m256i i1 = _mm256_add_epi32(i0, one), i2 = _mm256_add_epi32(i0, wv);
            const __m256i i3 = _mm256_add_epi32(i2, one);
            __m256 m = ea;
            __m256i idx = i0;
            TAKE(oa, i1);
            TAKE(eb, i2);
            TAKE(ob, i3);
            if (relu) m = _mm256_and_ps(m, _mm256_cmp_ps(m, zero, _CMP_NLE_UQ)); /* m > 0 or NaN: keep */
            m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0)));
            idx = _mm256_permute4x64_epi64(idx, _MM_SHUFFLE(3, 1, 2, 0));
            if (full) {
                _mm256_storeu_ps(yr + j, m);
                if (ar) _mm256_storeu_si256((__m256i *)(ar + j), idx);
            } else {
                const __m256i mk = lanes_below(n);
                _mm256_maskstore_ps(yr + j, mk, m);
                if (ar) _mm256_maskstore_epi32((int *)(ar + j), mk, idx);
            }
        }
    }
}
#undef TAKE

void cnn_f32_maxpool2x2_bwd_avx2(const float *dy, const int32_t *arg, const float *y, size_t w, size_t ow,
                                 size_t rows, int relu, int acc, float *dx) {
    const __m256i off = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32((int)w);
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        float *d0 = dx + 2 * r * w, *d1 = d0 + w;
        const float *dyr = dy + r * ow;
        const int32_t *ar = arg + r * ow;
        const float *yr = y ? y + r * ow : NULL;
        for (size_t j = 0; j < ow; j += 8) {
            const size_t n = ow - j < 8 ? ow - j : 8;
            const __m256i mk = lanes_below(n);
            /* whole-vector loads of a tail while inside the plane (the extra lanes are never stored, see
             * below); without acc, whole-vector stores where what they spill is rewritten later: row 2r+1
             * spills into rows >= 2r+2 (later row pairs, or the driver's clearing), row 2r into row 2r+1
             * only when j == 0 (its row 2r+1 store at the same j covers the spill) */
            const int full_in = n == 8 || r * ow + j + 8 <= rows * ow;
            __m256 g = full_in ? _mm256_loadu_ps(dyr + j) : _mm256_maskload_ps(dyr + j, mk);
            const __m256i at = full_in ? _mm256_loadu_si256((const __m256i *)(ar + j))
                                       : _mm256_maskload_epi32((const int *)(ar + j), mk);
            if (relu) {
                const __m256 yv = full_in ? _mm256_loadu_ps(yr + j) : _mm256_maskload_ps(yr + j, mk);
                g = _mm256_and_ps(g, _mm256_cmp_ps(yv, zero, _CMP_GT_OQ));
            }
            const __m256i p0 = _mm256_add_epi32(_mm256_set1_epi32((int)(2 * r * w + 2 * j)), off);
            const __m256i p1 = _mm256_add_epi32(p0, one), p2 = _mm256_add_epi32(p0, wv);
            const __m256i p3 = _mm256_add_epi32(p2, one);
            const __m256 v0 = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p0)));
            const __m256 v1 = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p1)));
            const __m256 v2 = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p2)));
            const __m256 v3 = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p3)));
            /* interleave (v0, v1) -> row 2r, (v2, v3) -> row 2r+1, 16 columns each */
            const __m256 l01 = _mm256_unpacklo_ps(v0, v1), h01 = _mm256_unpackhi_ps(v0, v1);
            const __m256 l23 = _mm256_unpacklo_ps(v2, v3), h23 = _mm256_unpackhi_ps(v2, v3);
            __m256 r0a = _mm256_permute2f128_ps(l01, h01, 0x20), r0b = _mm256_permute2f128_ps(l01, h01, 0x31);
            __m256 r1a = _mm256_permute2f128_ps(l23, h23, 0x20), r1b = _mm256_permute2f128_ps(l23, h23, 0x31);
            float *q0 = d0 + 2 * j, *q1 = d1 + 2 * j;
            if (n == 8) {
                if (acc) {
                    r0a = _mm256_add_ps(_mm256_loadu_ps(q0), r0a);
                    r0b = _mm256_add_ps(_mm256_loadu_ps(q0 + 8), r0b);
                    r1a = _mm256_add_ps(_mm256_loadu_ps(q1), r1a);
                    r1b = _mm256_add_ps(_mm256_loadu_ps(q1 + 8), r1b);
                } else {
                    r0a = _mm256_add_ps(zero, r0a);
                    r0b = _mm256_add_ps(zero, r0b);
                    r1a = _mm256_add_ps(zero, r1a);
                    r1b = _mm256_add_ps(zero, r1b);
                }
                _mm256_storeu_ps(q0, r0a);
                _mm256_storeu_ps(q0 + 8, r0b);
                _mm256_storeu_ps(q1, r1a);
                _mm256_storeu_ps(q1 + 8, r1b);
            } else {
                const __m256i mlo = lanes_below(2 * n), mhi = lanes_below(2 * n > 8 ? 2 * n - 8 : 0);
                if (!acc) {
                    const int full0 = j == 0 && 2 * r * w + 2 * j + 16 <= 2 * rows * w;
                    const int full1 = (2 * r + 1) * w + 2 * j + 16 <= 2 * rows * w;
                    r0a = _mm256_add_ps(zero, r0a);
                    r0b = _mm256_add_ps(zero, r0b);
                    r1a = _mm256_add_ps(zero, r1a);
                    r1b = _mm256_add_ps(zero, r1b);
                    if (full0) {
                        _mm256_storeu_ps(q0, r0a);
                        _mm256_storeu_ps(q0 + 8, r0b);
                    } else {
                        _mm256_maskstore_ps(q0, mlo, r0a);
                        _mm256_maskstore_ps(q0 + 8, mhi, r0b);
                    }
                    if (full1) {
                        _mm256_storeu_ps(q1, r1a);
                        _mm256_storeu_ps(q1 + 8, r1b);
                    } else {
                        _mm256_maskstore_ps(q1, mlo, r1a);
                        _mm256_maskstore_ps(q1 + 8, mhi, r1b);
                    }
                    continue;
                }
                {
                    r0a = _mm256_add_ps(_mm256_maskload_ps(q0, mlo), r0a);
                    r0b = _mm256_add_ps(_mm256_maskload_ps(q0 + 8, mhi), r0b);
                    r1a = _mm256_add_ps(_mm256_maskload_ps(q1, mlo), r1a);
                    r1b = _mm256_add_ps(_mm256_maskload_ps(q1 + 8, mhi), r1b);
                }
                _mm256_maskstore_ps(q0, mlo, r0a);
                _mm256_maskstore_ps(q0 + 8, mhi, r0b);
                _mm256_maskstore_ps(q1, mlo, r1a);
                _mm256_maskstore_ps(q1 + 8, mhi, r1b);
            }
        }
    }
}

/* ---- 3x3 stride 2, inference (pool2d_kernels.h) ---- */

static inline __m256 mp3_even(__m256 a, __m256 b) { /* a0 a2 a4 a6 b0 b2 b4 b6 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}
static inline __m256 mp3_odd(__m256 a, __m256 b) { /* a1 a3 a5 a7 b1 b3 b5 b7 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
#define MP3_TAKE(v)                                                                                          \
    m = _mm256_blendv_ps(m, (v), _mm256_or_ps(_mm256_cmp_ps((v), m, _CMP_GT_OQ), _mm256_cmp_ps((v), (v), _CMP_UNORD_Q)))

void cnn_f32_maxpool3x3s2_infer_avx2(const float *x, size_t h, size_t w, ptrdiff_t pt, ptrdiff_t pl, size_t oh,
                                     size_t ow, int relu, float *y) {
    /* vectors of 8 outputs from ox0: input columns c .. c + 17, c = 2*ox0 - pl. Inside the row they are
     * loaded in place; at the edges (and for a last partial vector) the row's part is copied into a
     * buffer of 18 floats with -inf outside [0, w), which no maximum takes (the skipped taps of the rule;
     * a window of -inf only stays -inf, as in the rule) */
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (size_t oy = 0; oy < oh; oy++) {
        float *yr = y + oy * ow;
        for (size_t ox = 0; ox < ow; ox += 8) {
            const ptrdiff_t c = 2 * (ptrdiff_t)ox - pl;
            const int inside = c >= 0 && c + 18 <= (ptrdiff_t)w;
            __m256 m = ninf;
            for (ptrdiff_t i = 0; i < 3; i++) {
                const ptrdiff_t q = 2 * (ptrdiff_t)oy - pt + i;
                if (q < 0 || q >= (ptrdiff_t)h) continue;
                const float *row = x + (size_t)q * w;
                float buf[24];
                const float *s = row + c;
                if (!inside) {
                    for (ptrdiff_t k = 0; k < 18; k++)
                        buf[k] = c + k >= 0 && c + k < (ptrdiff_t)w ? row[c + k] : -INFINITY;
                    s = buf;
                }
                const __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + 8);
                const __m256 b0 = _mm256_loadu_ps(s + 2), b1 = _mm256_loadu_ps(s + 10);
                const __m256 v0 = mp3_even(a0, a1), v1 = mp3_odd(a0, a1), v2 = mp3_even(b0, b1);
                MP3_TAKE(v0);
                MP3_TAKE(v1);
                MP3_TAKE(v2);
            }
            if (relu) /* (m > 0 || m is NaN) ? m : +0 */
                m = _mm256_and_ps(m, _mm256_or_ps(_mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ),
                                                  _mm256_cmp_ps(m, m, _CMP_UNORD_Q)));
            if (ox + 8 <= ow) {
                _mm256_storeu_ps(yr + ox, m);
            } else {
                float t[8];
                _mm256_storeu_ps(t, m);
                for (size_t l = 0; ox + l < ow; l++) yr[ox + l] = t[l];
            }
        }
    }
}
