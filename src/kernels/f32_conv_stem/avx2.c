/* f32_conv_stem/avx2.c — stem kernels with AVX2+FMA (compiled with -mavx2 -mfma; call only when the CPU
 * has both). Contract, including the over-read of the phase planes: conv_stem.h.
 *
 * fwd: tiles of up to 6 output channels x 16 output columns (12 ymm accumulators: 6 channels x 2
 *   vectors), the GEMM microkernel's shape with the B panel read straight from the phase planes: per tap,
 *   2 unaligned loads of x (16 consecutive output columns of one plane row), 6 broadcasts of the
 *   packed filter (the block's [taps][6], contiguous: 3.5 KiB for 147 taps), 12 FMAs (8 loads per 12 FMAs; 12 independent chains hide the
 *   FMA latency). Registers: 12 accumulators + 2 x + 1 weight = 15 ymm. Accumulators start from the
 *   bias; the taps are summed in ascending order wherever the tile falls, so each output has one value
 *   whatever the tiling. Channel tails use the same code with fewer accumulators (KB < 6), column tails
 *   one or two vectors, the valid lanes of the last one stored with 4/2/1-float stores (vmaskmovps
 *   stores measured slower); their x loads may read the caller's slack (lanes never stored).
 * wgrad: tiles of up to 4 output channels x 3 taps (12 ymm accumulators of 8 column-lane partial sums):
 *   per 8 output columns, 3 loads of x (one per tap) and 4 of dy, 12 FMAs; registers 12 + 3 + 1 = 16
 *   ymm. The column tail loads both dy and x with vmaskmovps (zero lanes past ow, nothing read past the
 *   row), so the slack never reaches a sum. At the end of the call the accumulators' 8 lanes are added
 *   in a fixed hadd tree (8 accumulators per tree) and each float sum is added to the double acc. The dy
 *   sums for the bias run over the K block's rows after its taps, while they are in L1.
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

#define FWD_TAP(xs)                                                                                       \
    do {                                                                                                  \
        const __m256 x0 = _mm256_loadu_ps(xs);                                                            \
        const __m256 x1 = NV > 1 ? _mm256_loadu_ps((xs) + 8) : x0;                                        \
        _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {                                            \
            const __m256 wk = _mm256_broadcast_ss(wt + k);                                                \
            acc[k][0] = _mm256_fmadd_ps(wk, x0, acc[k][0]);                                               \
            if (NV > 1) acc[k][1] = _mm256_fmadd_ps(wk, x1, acc[k][1]);                                   \
        }                                                                                                 \
        wt += CNN_STEM_KB;                                                                                \
    } while (0)

/* The first n (1..7) lanes of v to p: 4-, 2- and 1-float stores (vmaskmovps stores are slow on Zen 3). */
static inline void store_part(float *p, __m256 v, size_t n) {
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps(v, 1);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
        n -= 2;
    }
    if (n) _mm_store_ss(p, h);
}

/* One tile: KB channels x NV vectors at x (the planes at the tile's row and first column); masked: only
 * the first m (1..7) columns of the last vector are stored. */
AI void fwd_tile(const fwd_args *a, const float *x, const float *w, const float *bias, float *y, const int KB,
                 const int NV, const int masked, size_t m) {
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {
        const __m256 b = bias ? _mm256_broadcast_ss(bias + k) : _mm256_setzero_ps();
        acc[k][0] = b;
        acc[k][1] = b;
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
        if (NV > 1) {
            _mm256_storeu_ps(yk, acc[k][0]);
            if (masked)
                store_part(yk + 8, acc[k][1], m);
            else
                _mm256_storeu_ps(yk + 8, acc[k][1]);
        } else if (masked) {
            store_part(yk, acc[k][0], m);
        } else {
            _mm256_storeu_ps(yk, acc[k][0]);
        }
    }
}

#define FWD_KB(NV, MASKED)                                                                                \
    switch (kb) {                                                                                         \
    case 6: fwd_tile(a, x, w, bias, y, 6, NV, MASKED, m); break;                                          \
    case 5: fwd_tile(a, x, w, bias, y, 5, NV, MASKED, m); break;                                          \
    case 4: fwd_tile(a, x, w, bias, y, 4, NV, MASKED, m); break;                                          \
    case 3: fwd_tile(a, x, w, bias, y, 3, NV, MASKED, m); break;                                          \
    case 2: fwd_tile(a, x, w, bias, y, 2, NV, MASKED, m); break;                                          \
    default: fwd_tile(a, x, w, bias, y, 1, NV, MASKED, m); break;                                         \
    }

static void fwd_full(const fwd_args *a, const float *x, const float *w, const float *bias, float *y, size_t kb) {
    const size_t m = 0;
    FWD_KB(2, 0)
}
/* rem = columns left, 0 < rem < 16 */
static void fwd_edge(const fwd_args *a, const float *x, const float *w, const float *bias, float *y, size_t kb,
                     size_t rem) {
    if (rem > 8) {
        const size_t m = rem - 8;
        FWD_KB(2, 1)
    } else if (rem == 8) {
        const size_t m = 0;
        FWD_KB(1, 0)
    } else {
        const size_t m = rem;
        FWD_KB(1, 1)
    }
}

void cnn_f32_conv_stem_fwd_avx2(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
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
            size_t ox = 0;
            for (; ox + 16 <= ow; ox += 16) fwd_full(&a, xr + ox, wb, bk, yk + ox, n);
            if (ox < ow) fwd_edge(&a, xr + ox, wb, bk, yk + ox, n, ow - ox);
        }
    }
}

/* ---- wgrad ---- */

typedef struct wg_args {
    size_t sh, ldp, ow, ldy_k, taps;
} wg_args;

/* KB channels x TB taps (plane offsets off[]) over the call's rows; sums added to acc[k*taps + tap0 + t]. */
AI void wg_tile(const wg_args *a, const float *xp, size_t nrows, const float *dy, const size_t *off,
                size_t tap0, double *acc, const int KB, const int TB) {
    __m256 s[4][3];
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++)
        _Pragma("GCC unroll 3") for (int t = 0; t < TB; t++) s[k][t] = _mm256_setzero_ps();
    const size_t ow = a->ow, ow8 = ow & ~(size_t)7, ldy = a->ldy_k;
    const __m256i m = ow8 < ow ? stem_tail_mask(ow - ow8) : _mm256_setzero_si256();
    for (size_t r = 0; r < nrows; r++) {
        const float *xr = xp + r * a->sh * a->ldp;
        const float *x0 = xr + off[0], *x1 = xr + off[TB > 1 ? 1 : 0], *x2 = xr + off[TB > 2 ? 2 : 0];
        const float *dr = dy + r * ow;
        size_t ox = 0;
        for (; ox < ow8; ox += 8) {
            __m256 xv[3];
            xv[0] = _mm256_loadu_ps(x0 + ox);
            if (TB > 1) xv[1] = _mm256_loadu_ps(x1 + ox);
            if (TB > 2) xv[2] = _mm256_loadu_ps(x2 + ox);
            _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {
                const __m256 d = _mm256_loadu_ps(dr + k * ldy + ox);
                _Pragma("GCC unroll 3") for (int t = 0; t < TB; t++) s[k][t] = _mm256_fmadd_ps(d, xv[t], s[k][t]);
            }
        }
        if (ox < ow) {
            __m256 xv[3];
            xv[0] = _mm256_maskload_ps(x0 + ox, m);
            if (TB > 1) xv[1] = _mm256_maskload_ps(x1 + ox, m);
            if (TB > 2) xv[2] = _mm256_maskload_ps(x2 + ox, m);
            _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++) {
                const __m256 d = _mm256_maskload_ps(dr + k * ldy + ox, m);
                _Pragma("GCC unroll 3") for (int t = 0; t < TB; t++) s[k][t] = _mm256_fmadd_ps(d, xv[t], s[k][t]);
            }
        }
    }
    /* the KB*TB accumulators in order (k, t), zero-padded to 16, reduced 8 at a time */
    __m256 v[16];
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) v[i] = _mm256_setzero_ps();
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++)
        _Pragma("GCC unroll 3") for (int t = 0; t < TB; t++) v[k * TB + t] = s[k][t];
    float sum[16];
    _mm256_storeu_ps(sum, stem_reduce8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]));
    if (KB * TB > 8) _mm256_storeu_ps(sum + 8, stem_reduce8(v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]));
    _Pragma("GCC unroll 6") for (int k = 0; k < KB; k++)
        _Pragma("GCC unroll 3") for (int t = 0; t < TB; t++) acc[k * a->taps + tap0 + t] += (double)sum[k * TB + t];
}

#define WG_TB(KB)                                                                                         \
    switch (tb) {                                                                                         \
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

void cnn_f32_conv_stem_wgrad_avx2(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                  size_t ldy_k, size_t kb, double *acc, double *bsum) {
    const size_t taps = g->c * g->kh * g->kw;
    const wg_args a = {.sh = g->sh, .ldp = g->ldp, .ow = g->ow, .ldy_k = ldy_k, .taps = taps};
    size_t tab[CNN_STEM_MAX_TAB];
    const int tabbed = cnn_stem_tap_table(g, tab);
    for (size_t k0 = 0; k0 < kb; k0 += 4) {
        const size_t n = kb - k0 < 4 ? kb - k0 : 4;
        for (size_t tap0 = 0; tap0 < taps; tap0 += 3) {
            const size_t tb = taps - tap0 < 3 ? taps - tap0 : 3;
            size_t own[3];
            const size_t *off = tab + tap0;
            if (!tabbed) {
                for (size_t t = 0; t < tb; t++) own[t] = cnn_stem_tap_offset(g, tap0 + t);
                off = own;
            }
            wg_dispatch(&a, xp, nrows, dy + k0 * ldy_k, off, tap0, acc + k0 * taps, n, tb);
        }
        if (bsum) stem_dy_sums(dy + k0 * ldy_k, nrows, g->ow, ldy_k, n, bsum + k0); /* dy still in L1 */
    }
}
