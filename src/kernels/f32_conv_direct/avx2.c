/* f32_conv_direct/avx2.c — plane correlation kernels with AVX2+FMA (compiled with -mavx2 -mfma; call only
 * when the CPU has both). Contract, including the over-read of xp: conv_direct.h.
 *
 * fwd: output tiles of 4 rows x 16 columns (8 ymm accumulators: 4 rows x 2 vectors), tap-major: for each
 *   tap (i, j) ascending, one broadcast weight and 8 unaligned loads of xp (folded into the FMAs) feed 8
 *   independent FMAs, so the 8 dependency chains hide the FMA latency and a tap costs 9 loads + 8 FMAs.
 *   Registers: 8 accumulators + 1 weight + 1 mask <= 10 ymm.
 *   Edge tiles: remaining rows one at a time; the 1..15 columns after the last 16-column tile as one
 *   tile of one or two vectors whose last vector is stored with vmaskmovps (and, with accumulate, loaded
 *   with it). Its xp loads are plain: they may read up to 7 floats past the row's last used column (the
 *   caller's slack), and those lanes are never stored.
 *   Each output element is bias (or y) + the taps in (i, j) order, one rounding per FMA, whatever tile
 *   it falls in.
 * wgrad: per group of up to 9 taps, 9 ymm accumulators (one per tap) + 1 for the dy sum; per 8 columns
 *   one load of dy and one load of xp per tap (10 loads for 9 FMAs); 9 independent chains. The column
 *   tail loads dy with vmaskmovps (zeros past ow, never reading past the row) and clears the xp lanes
 *   past ow with an AND, so the slack's contents (even NaN) never reach a sum. The 8 lanes are added in
 *   a fixed tree order: the result depends only on the shape.
 */
#include "conv_direct.h"

#include <immintrin.h>
#include <stdint.h>

static inline __m256i tail_mask(size_t n) { /* first n lanes set, 0 < n < 8 */
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

/* The geometry in locals (so stores through y do not force reloads of *g). */
typedef struct fwd_args {
    const float *xp, *w;
    float *y;
    size_t ldx, ldy, kh, kw, dh, dw, ow;
    float bias;
    int accumulate;
} fwd_args;

/* Tile of R rows x V vectors at (oy, ox); with `masked`, the last vector holds only the
 * ow - ox - 8*(V-1) (< 8) remaining columns. */
static inline __attribute__((always_inline)) void fwd_tile(const fwd_args a, size_t oy, size_t ox, const int R,
                                                           const int V, const int masked) {
    __m256 acc[4][2];
    const __m256i m = masked ? tail_mask(a.ow - ox - 8 * (size_t)(V - 1)) : _mm256_setzero_si256();
    float *yt = a.y + oy * a.ldy + ox;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            if (!a.accumulate)
                acc[r][v] = _mm256_set1_ps(a.bias);
            else if (masked && v == V - 1)
                acc[r][v] = _mm256_maskload_ps(yt + r * a.ldy + 8 * v, m);
            else
                acc[r][v] = _mm256_loadu_ps(yt + r * a.ldy + 8 * v);
        }
    const float *xt = a.xp + oy * a.ldx + ox;
    const float *wt = a.w;
    for (size_t i = 0; i < a.kh; i++) {
        const float *xi = xt + i * a.dh * a.ldx;
        for (size_t j = 0; j < a.kw; j++) {
            const __m256 wv = _mm256_broadcast_ss(wt++);
            const float *xs = xi + j * a.dw;
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 2
                for (int v = 0; v < V; v++)
                    acc[r][v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs + r * a.ldx + 8 * v), acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            if (masked && v == V - 1)
                _mm256_maskstore_ps(yt + r * a.ldy + 8 * v, m, acc[r][v]);
            else
                _mm256_storeu_ps(yt + r * a.ldy + 8 * v, acc[r][v]);
        }
}

/* All column tiles of R rows starting at oy: 16-column tiles, then the 1..15 remaining columns as one
 * tile of one or two vectors (the last one masked unless the rest is exactly 8). */
static inline __attribute__((always_inline)) void fwd_rows(const fwd_args a, size_t oy, const int R) {
    size_t ox = 0;
    for (; ox + 16 <= a.ow; ox += 16) fwd_tile(a, oy, ox, R, 2, 0);
    const size_t rest = a.ow - ox;
    if (rest > 8)
        fwd_tile(a, oy, ox, R, 2, 1);
    else if (rest == 8)
        fwd_tile(a, oy, ox, R, 1, 0);
    else if (rest)
        fwd_tile(a, oy, ox, R, 1, 1);
}

void cnn_f32_conv_direct_fwd_avx2(const cnn_plane_geom *g, const float *xp, const float *w, float bias,
                                  int accumulate, float *y) {
    const fwd_args a = {.xp = xp, .w = w, .y = y, .ldx = g->ldx, .ldy = g->ldy, .kh = g->kh, .kw = g->kw,
                        .dh = g->dh, .dw = g->dw, .ow = g->ow, .bias = bias, .accumulate = accumulate};
    const size_t oh = g->oh;
    size_t oy = 0;
    for (; oy + 4 <= oh; oy += 4) fwd_rows(a, oy, 4);
    for (; oy < oh; oy++) fwd_rows(a, oy, 1);
}

static inline float hsum(__m256 v) { /* fixed order: (lo + hi), then pairs */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Taps [t0, t0 + T) of the filter, T <= 9: out[t] = sum over the plane of dy * shifted xp; with `bias`,
 * also out[kh*kw] = sum over the plane of dy (one more accumulator). */
static inline __attribute__((always_inline)) void wgrad_group(const cnn_plane_geom *g, const float *xp,
                                                              const float *dy, float *out, size_t t0,
                                                              const int T, const int bias) {
    const size_t ldx = g->ldx, ldy = g->ldy, oh = g->oh, ow = g->ow;
    size_t off[9];
    __m256 acc[9], bsum = _mm256_setzero_ps();
#pragma GCC unroll 9
    for (int t = 0; t < T; t++) {
        const size_t i = (t0 + (size_t)t) / g->kw, j = (t0 + (size_t)t) % g->kw;
        off[t] = i * g->dh * ldx + j * g->dw;
        acc[t] = _mm256_setzero_ps();
    }
    const size_t full = ow & ~(size_t)7, rest = ow - full;
    const __m256i m = rest ? tail_mask(rest) : _mm256_setzero_si256();
    const __m256 mf = _mm256_castsi256_ps(m);
    for (size_t oy = 0; oy < oh; oy++) {
        const float *d = dy + oy * ldy;
        const float *xr = xp + oy * ldx;
        for (size_t ox = 0; ox < full; ox += 8) {
            const __m256 dv = _mm256_loadu_ps(d + ox);
            if (bias) bsum = _mm256_add_ps(bsum, dv);
#pragma GCC unroll 9
            for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(xr + off[t] + ox), acc[t]);
        }
        if (rest) {
            const __m256 dv = _mm256_maskload_ps(d + full, m);
            if (bias) bsum = _mm256_add_ps(bsum, dv);
#pragma GCC unroll 9
            for (int t = 0; t < T; t++)
                acc[t] = _mm256_fmadd_ps(dv, _mm256_and_ps(mf, _mm256_loadu_ps(xr + off[t] + full)), acc[t]);
        }
    }
#pragma GCC unroll 9
    for (int t = 0; t < T; t++) out[t0 + (size_t)t] = hsum(acc[t]);
    if (bias) out[g->kh * g->kw] = hsum(bsum);
}

void cnn_f32_conv_direct_wgrad_avx2(const cnn_plane_geom *g, const float *xp, const float *dy, int bias,
                                    float *out) {
    const size_t taps = g->kh * g->kw;
    for (size_t t0 = 0; t0 < taps; t0 += 9) {
        const int b = bias && t0 == 0; /* the first group also sums dy */
        switch (taps - t0 >= 9 ? 9 : taps - t0) {
#define CASE(n)                                                                                            \
    case n:                                                                                                \
        if (b)                                                                                             \
            wgrad_group(g, xp, dy, out, t0, n, 1);                                                         \
        else                                                                                               \
            wgrad_group(g, xp, dy, out, t0, n, 0);                                                         \
        break;
            CASE(9) CASE(8) CASE(7) CASE(6) CASE(5) CASE(4) CASE(3) CASE(2)
#undef CASE
        default:
            if (b)
                wgrad_group(g, xp, dy, out, t0, 1, 1);
            else
                wgrad_group(g, xp, dy, out, t0, 1, 0);
            break;
        }
    }
}
