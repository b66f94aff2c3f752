/* f32_conv_stem/avx512.c — stem kernels with AVX-512 (F/VL/DQ/BW; compiled with those flags, call only
 * when the CPU has them). Contract: conv_stem.h. Both kernels give results bit-identical to the AVX2
 * ones (f32_conv_stem/avx2.c), so CNN_ISA=avx2 and avx512 train the same weights:
 *
 * fwd: tiles of up to 6 output channels x 64 output columns (24 zmm accumulators: 6 channels x 4
 *   vectors), per tap 4 loads of x (64 consecutive output columns of one plane row), 6 broadcasts of the
 *   packed filter, 24 FMAs; registers 24 + 4 + 1 = 29 zmm. Each output is the bias plus the taps in
 *   ascending order, one FMA each: the AVX2 kernel's chain, whatever the tile width. The last vector of
 *   a row is loaded and stored under a mask of the valid columns, so nothing past column ow + (kw-1)/sw
 *   is read (less than the AVX2 kernel's slack) and nothing past ow is written. Rows of 1..64 columns
 *   left run the same code with 1..4 vectors.
 * wgrad: the AVX2 kernel sums each (channel, tap) in 8 lanes, lane l holding the columns ox = l mod 8 in
 *   ascending order, then a fixed tree. Here a zmm holds two such 8-lane sums: lanes 0..7 channel k,
 *   lanes 8..15 channel k+1, of one tap. Per 8 output columns: the dy rows of a channel pair are loaded
 *   as one zmm (a 256-bit load and a 256-bit insert), the 8 x values of each tap are broadcast to both
 *   halves (vbroadcastf32x8, a load), and one FMA updates both channels' partial sums exactly as the
 *   AVX2 kernel's two ymm FMAs would. Tiles of up to 4 channels (2 pairs) x 12 taps: 24 accumulators,
 *   per 8 columns 2 + 2 dy loads (2 inserts), 12 broadcasts, 24 FMAs; registers 24 + 2 + 1 = 27 zmm.
 *   The column tail loads under a mask (zero lanes past ow, nothing read past the row); an odd channel
 *   count leaves the upper half of the last pair zero. At the end each 8-lane half goes through the AVX2
 *   kernel's hadd tree and is added to the double acc once per call.
 */
#include "conv_stem.h"
#include "sums8.h"

#include <immintrin.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))


typedef struct fwd_args {
    size_t c, kh, kw, sw, ldp, pstride, ldy_k, taps;
    const size_t *off; /* tap offsets in the planes, or NULL */
} fwd_args;

/* One tap of a tile: NV vectors of x (the last one under mask m), KB broadcasts, KB*NV FMAs. */
#define FWD_TAP(xs)                                                                                       \
    do {                                                                                                  \
        const float *xs_ = (xs);                                                                          \
        __m512 xv[4];                                                                                     \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) xv[v] =                                      \
            v == NV - 1 ? _mm512_maskz_loadu_ps(m, xs_ + 16 * v) : _mm512_loadu_ps(xs_ + 16 * v);         \
        _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {                                            \
            const __m512 wk = _mm512_set1_ps(wt[k]);                                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[k][v] =                              \
                _mm512_fmadd_ps(wk, xv[v], acc[k][v]);                                                    \
        }                                                                                                 \
        wt += CNN_STEM_KB;                                                                                \
    } while (0)

/* One tile: KB channels x NV vectors at x (the planes at the tile's row and first column); the last vector
 * holds the columns of mask m. */
AI void fwd_tile(const fwd_args *a, const float *x, const float *w, const float *bias, float *y, const int KB,
                 const int NV, __mmask16 m) {
    __m512 acc[6][4];
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {
        const __m512 b = bias ? _mm512_set1_ps(bias[k]) : _mm512_setzero_ps();
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[k][v] = b;
    }
    const float *wt = w;
    if (a->off) {
        const size_t *off = a->off;
        for (size_t t = 0; t < a->taps; t++) FWD_TAP(x + off[t]);
    } else {
        const size_t sw = a->sw, ps = a->pstride, kw = a->kw;
        for (size_t ci = 0; ci < a->c; ci++)
            for (size_t i = 0; i < a->kh; i++) {
                const float *xr = x + ci * sw * ps + i * a->ldp;
                size_t q = 0, d = 0;
                for (size_t j = 0; j < kw; j++) {
                    FWD_TAP(xr + q * ps + d);
                    if (++q == sw) {
                        q = 0;
                        d++;
                    }
                }
            }
    }
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {
        float *yk = y + k * a->ldy_k;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
            if (v == NV - 1)
                _mm512_mask_storeu_ps(yk + 16 * v, m, acc[k][v]);
            else
                _mm512_storeu_ps(yk + 16 * v, acc[k][v]);
        }
    }
}

#define FWD_KB(NV)                                                                                        \
    switch (kb) {                                                                                         \
    case 6: fwd_tile(a, x, w, bias, y, 6, NV, m); break;                                                  \
    case 5: fwd_tile(a, x, w, bias, y, 5, NV, m); break;                                                  \
    case 4: fwd_tile(a, x, w, bias, y, 4, NV, m); break;                                                  \
    case 3: fwd_tile(a, x, w, bias, y, 3, NV, m); break;                                                  \
    case 2: fwd_tile(a, x, w, bias, y, 2, NV, m); break;                                                  \
    default: fwd_tile(a, x, w, bias, y, 1, NV, m); break;                                                 \
    }

/* cols = columns of the tile, 1..64 */
static void fwd_cols(const fwd_args *a, const float *x, const float *w, const float *bias, float *y, size_t kb,
                     size_t cols) {
    const size_t nv = (cols + 15) / 16, last = cols - 16 * (nv - 1);
    const __mmask16 m = (__mmask16)(last == 16 ? 0xffff : (1u << last) - 1);
    switch (nv) {
    case 4: FWD_KB(4) break;
    case 3: FWD_KB(3) break;
    case 2: FWD_KB(2) break;
    default: FWD_KB(1) break;
    }
}

void cnn_f32_conv_stem_fwd_avx512(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                  size_t kb, const float *bias, float *y, size_t ldy_k) {
    const size_t ow = g->ow, taps = g->c * g->kh * g->kw;
    size_t tab[CNN_STEM_MAX_TAB];
    const int tabbed = cnn_stem_tap_table(g, tab);
    const fwd_args a = {.c = g->c, .kh = g->kh, .kw = g->kw, .sw = g->sw, .ldp = g->ldp, .pstride = g->pstride,
                        .ldy_k = ldy_k, .taps = taps, .off = tabbed ? tab : NULL};
    for (size_t r = 0; r < nrows; r++) {
        const float *xr = xp + r * g->sh * g->ldp;
        for (size_t k0 = 0; k0 < kb; k0 += CNN_STEM_KB) {
            const size_t n = kb - k0 < CNN_STEM_KB ? kb - k0 : CNN_STEM_KB;
            const float *wb = wp + k0 * taps; /* block k0 / KB: [taps][KB] */
            const float *bk = bias ? bias + k0 : NULL;
            float *yk = y + k0 * ldy_k + r * ow;
            for (size_t ox = 0; ox < ow; ox += 64)
                fwd_cols(&a, xr + ox, wb, bk, yk + ox, n, ow - ox < 64 ? ow - ox : 64);
        }
    }
}

/* ---- wgrad ---- */

typedef struct wg_args {
    size_t sh, ldp, ow, ldy_k, taps;
} wg_args;

/* The dy of channels (k, k+1) at columns [ox, ox+8) as one zmm (k+1 absent: zero), under mask m. */
AI __m512 dy_pair(const float *d0, const float *d1, int two, __mmask8 m) {
    const __m256 lo = _mm256_maskz_loadu_ps(m, d0);
    if (!two) return _mm512_zextps256_ps512(lo);
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), _mm256_maskz_loadu_ps(m, d1), 1);
}

/* KB (1..4) channels x TB (1..12) taps (plane offsets off[]) over the call's rows; sums added to
 * acc[k*taps + tap0 + t]. NP = channel pairs = (KB + 1) / 2. */
AI void wg_tile(const wg_args *a, const float *xp, size_t nrows, const float *dy, const size_t *off,
                size_t tap0, double *acc, const int KB, const int TB) {
    const int NP = (KB + 1) / 2;
    __m512 s[2][12];
    _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++)
        _Pragma("GCC unroll 12") for (int t = 0; t < TB; t++) s[p][t] = _mm512_setzero_ps();
    const size_t ow = a->ow, ldy = a->ldy_k;
    const size_t ow8 = ow & ~(size_t)7;
    const __mmask8 full = 0xff, tail = (__mmask8)((1u << (ow - ow8)) - 1);
    for (size_t r = 0; r < nrows; r++) {
        const float *xr = xp + r * a->sh * a->ldp;
        const float *dr = dy + r * ow;
        for (size_t ox = 0; ox < ow; ox += 8) {
            const __mmask8 m = ox < ow8 ? full : tail;
            __m512 d[2];
            _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) d[p] =
                dy_pair(dr + 2 * p * ldy + ox, dr + (2 * p + 1) * ldy + ox, 2 * p + 1 < KB, m);
            _Pragma("GCC unroll 12") for (int t = 0; t < TB; t++) {
                const __m512 xv = m == full ? _mm512_broadcast_f32x8(_mm256_loadu_ps(xr + off[t] + ox))
                                            : _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(m, xr + off[t] + ox));
                _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) s[p][t] = _mm512_fmadd_ps(d[p], xv, s[p][t]);
            }
        }
    }
    /* the 8-lane sums in order (k, t), k = 2p (lower half) and 2p+1 (upper), reduced 8 at a time */
    float sum[4 * 12 + 8];
    __m256 v[4 * 12 + 8];
    int n = 0;
    _Pragma("GCC unroll 4") for (int k = 0; k < KB; k++)
        _Pragma("GCC unroll 12") for (int t = 0; t < TB; t++) v[n++] =
            k % 2 ? _mm512_extractf32x8_ps(s[k / 2][t], 1) : _mm512_castps512_ps256(s[k / 2][t]);
    for (int i = n; i < (n + 7) / 8 * 8; i++) v[i] = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(sum + i, stem_reduce8(v[i], v[i + 1], v[i + 2], v[i + 3], v[i + 4], v[i + 5], v[i + 6], v[i + 7]));
    _Pragma("GCC unroll 4") for (int k = 0; k < KB; k++)
        _Pragma("GCC unroll 12") for (int t = 0; t < TB; t++) acc[k * a->taps + tap0 + t] += (double)sum[k * TB + t];
}

#define WG_TB(KB)                                                                                         \
    switch (tb) {                                                                                         \
    case 12: wg_tile(a, xp, nrows, dy, off, tap0, acc, KB, 12); break;                                    \
    case 6: wg_tile(a, xp, nrows, dy, off, tap0, acc, KB, 6); break;                                      \
    case 3: wg_tile(a, xp, nrows, dy, off, tap0, acc, KB, 3); break;                                      \
    case 2: wg_tile(a, xp, nrows, dy, off, tap0, acc, KB, 2); break;                                      \
    default: wg_tile(a, xp, nrows, dy, off, tap0, acc, KB, 1); break;                                     \
    }

static void wg_dispatch(const wg_args *a, const float *xp, size_t nrows, const float *dy, const size_t *off,
                        size_t tap0, double *acc, size_t kb, size_t tb) {
    switch (kb) {
    case 4: WG_TB(4) break;
    case 3: WG_TB(3) break;
    case 2: WG_TB(2) break;
    default: WG_TB(1) break;
    }
}

void cnn_f32_conv_stem_wgrad_avx512(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                    size_t ldy_k, size_t kb, double *acc, double *bsum) {
    const size_t taps = g->c * g->kh * g->kw;
    const wg_args a = {.sh = g->sh, .ldp = g->ldp, .ow = g->ow, .ldy_k = ldy_k, .taps = taps};
    size_t tab[CNN_STEM_MAX_TAB];
    const int tabbed = cnn_stem_tap_table(g, tab);
    for (size_t k0 = 0; k0 < kb; k0 += 4) {
        const size_t n = kb - k0 < 4 ? kb - k0 : 4;
        for (size_t tap0 = 0; tap0 < taps;) {
            const size_t left = taps - tap0;
            const size_t tb = left >= 12 ? 12 : left >= 6 ? 6 : left >= 3 ? 3 : left;
            size_t own[12];
            const size_t *off = tab + tap0;
            if (!tabbed) {
                for (size_t t = 0; t < tb; t++) own[t] = cnn_stem_tap_offset(g, tap0 + t);
                off = own;
            }
            wg_dispatch(&a, xp, nrows, dy + k0 * ldy_k, off, tap0, acc + k0 * taps, n, tb);
            tap0 += tb;
        }
        if (bsum) stem_dy_sums(dy + k0 * ldy_k, nrows, g->ow, ldy_k, n, bsum + k0); /* dy still in L1 */
    }
}
