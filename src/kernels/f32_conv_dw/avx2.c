/* f32_conv_dw/avx2.c — depthwise kernels with AVX2+FMA (compiled with -mavx2 -mfma; call only when the CPU
 * has both). Contract: conv_dw.h.
 *
 * fwd: output tiles of R rows x 8 columns, R = 8 for stride 1 (4 for stride 2, whose deinterleaving needs
 *   registers), then 4, 2, 1 for the last rows. A tile walks its input rows u = 0 .. (R-1)*s + kh - 1
 *   once (rows outside the plane, the top / bottom padding, are skipped by one test per row): per row the
 *   kw tap vectors (s = 1: kw shifted unaligned loads; s = 2: pairs of loads deinterleaved into the even
 *   and odd columns, one pair per two taps), each FMA'd into the accumulators of the output rows that use
 *   it. 3x3/s1: 30 loads + 72 FMAs per 8 x 8 outputs; 8 independent FMA chains (with R = 4 the chains of 9
 *   dependent FMAs left the pipes half idle); 8 accumulators + 9 broadcast weights, a few of which GCC
 *   keeps on the stack as FMA memory operands. Each output still sums its taps in the order i, j
 *   ascending. The vectors of a row whose loads stay inside the row (computed once per call) run
 *   unmasked; in the edge vectors (left padding, right padding, width tail) the loads that leave the row
 *   use vmaskmovps with a column mask (lanes outside [0, iw) read as zero and are never touched), and the
 *   store is masked only where the 8 columns pass ow.
 * bwd: stride 1 is fwd on dy with the flipped filter (conv_dw.h). Stride 2: per dx row and block of 16 dx
 *   columns two phase accumulators (even / odd dx columns), each tap FMA'd into the phase it reaches from
 *   a contiguous (shifted) dy load, then interleaved (unpacklo/hi + permute2f128) and stored.
 * wgrad: one accumulator per tap (9 for 3x3) + one for the dy sum, tiles of 2 output rows x 8 columns:
 *   2 dy loads, and per input row of the tile the kw tap vectors, each FMA'd with the dy of the rows that
 *   use it (3x3/s1: 14 loads for 18 FMAs). The tail vector also clears the x lanes past ow (the dy lanes
 *   there read as zero, but x may hold anything, NaN included). Lanes added in a fixed tree at the end.
 * Other kernel sizes up to CNN_DW_MAX_K run the same code with loops instead of unrolling (weights read
 * from a stack array); strides above 2 run the scalar kernels.
 */
#include "conv_dw.h"

#include <immintrin.h>
#include <stdint.h>

/* Forced inlining turns the tile loops into straight-line code for each (rows, kernel, stride) a caller
 * fixes. Sanitizer builds do without it: clang with ASan + UBSan + the fuzzer's instrumentation spent over
 * 7 minutes (and 1.9 GB) on this file with it, 7 s without. */
#if defined(__SANITIZE_ADDRESS__)
#define CNN_DW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CNN_DW_SANITIZED 1
#endif
#endif
#ifdef CNN_DW_SANITIZED
#define AI static inline
#else
#define AI static inline __attribute__((always_inline))
#endif
#define MAXT (CNN_DW_MAX_K * CNN_DW_MAX_K)

/* lanes l with 0 <= c + l < n */
AI __m256i colmask(ptrdiff_t c, ptrdiff_t n) {
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i ge = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1));
    const __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
    return _mm256_and_si256(ge, lt);
}

AI __m256 ld(const float *p, int masked, __m256i m) { return masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p); }

/* even / odd lanes of the 16 floats lo:hi */
AI __m256 even16(__m256 lo, __m256 hi) {
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), 0xd8));
}
AI __m256 odd16(__m256 lo, __m256 hi) {
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), 0xd8));
}

/* Column masks of one output vector whose tap 0 of lane 0 reads column c0: s = 1: m[j] for the load at
 * c0 + j; s = 2: m[2p] / m[2p+1] for the loads at c0 + 2p and c0 + 2p + 8 (pair p of taps 2p, 2p+1). */
AI void tap_masks(ptrdiff_t c0, ptrdiff_t iw, __m256i *m, const size_t KW, const size_t S) {
    if (S == 1) {
#pragma GCC unroll 8
        for (size_t j = 0; j < KW; j++) m[j] = colmask(c0 + (ptrdiff_t)j, iw);
    } else {
#pragma GCC unroll 8
        for (size_t p = 0; p < (KW + 1) / 2; p++) {
            m[2 * p] = colmask(c0 + 2 * (ptrdiff_t)p, iw);
            m[2 * p + 1] = colmask(c0 + 2 * (ptrdiff_t)p + 8, iw);
        }
    }
}

/* 8 floats of `row` from column c; in an edge vector (masked) the loads that leave [0, iw) use the mask m
 * (lanes outside the row read as zero and are not accessed) */
AI __m256 ld_col(const float *row, ptrdiff_t c, ptrdiff_t iw, const int masked, __m256i m) {
    if (masked && (c < 0 || c + 8 > iw)) return _mm256_maskload_ps(row + c, m);
    return _mm256_loadu_ps(row + c);
}

/* The kw tap vectors of input row `row` for the output vector whose tap 0 reads column c0. */
AI void tap_vecs(const float *row, ptrdiff_t c0, ptrdiff_t iw, int masked, const __m256i *m, __m256 *v,
                 const size_t KW, const size_t S) {
    if (S == 1) {
#pragma GCC unroll 8
        for (size_t j = 0; j < KW; j++) v[j] = ld_col(row, c0 + (ptrdiff_t)j, iw, masked, m[j]);
    } else {
#pragma GCC unroll 8
        for (size_t p = 0; p < (KW + 1) / 2; p++) {
            const __m256 lo = ld_col(row, c0 + 2 * (ptrdiff_t)p, iw, masked, m[2 * p]);
            const __m256 hi = ld_col(row, c0 + 2 * (ptrdiff_t)p + 8, iw, masked, m[2 * p + 1]);
            v[2 * p] = even16(lo, hi);
            if (2 * p + 1 < KW) v[2 * p + 1] = odd16(lo, hi);
        }
    }
}

/* Columns read right of c0 by the tap vectors of one output vector: the load span minus 1. */
static size_t load_span(size_t kw, size_t s) { return s == 1 ? kw + 6 : 2 * ((kw + 1) / 2 - 1) + 15; }

/* Output vectors [vlo, vhi) of a row (ox = 8v) whose loads lie inside [0, iw) and whose 8 outputs are all
 * < ow: they run unmasked. */
static void interior_vectors(size_t iw, size_t ow, size_t kw, size_t s, ptrdiff_t pl, size_t *vlo, size_t *vhi) {
    const size_t nv = (ow + 7) / 8;
    size_t lo = pl > 0 ? ((size_t)pl + 8 * s - 1) / (8 * s) : 0;
    if (lo > nv) lo = nv;
    const ptrdiff_t num = (ptrdiff_t)iw - 1 - (ptrdiff_t)load_span(kw, s) + pl; /* 8*v*s <= num */
    size_t hi = num >= 0 ? (size_t)num / (8 * s) + 1 : 0;
    if (hi > ow / 8) hi = ow / 8;
    if (hi < lo) hi = lo;
    *vlo = lo;
    *vhi = hi;
}

/* ---- forward ---- */

typedef struct fargs {
    const float *x;
    float *y;
    size_t ih, iw, ow;
    ptrdiff_t pt, pl;
    float bias;
    int accumulate;
} fargs;

/* R output rows from oy, the 8 columns from ox. Input rows outside the plane (top / bottom padding) are
 * skipped by a test per input row, so u, i, j stay constants after unrolling (the weights stay in
 * registers). masked: an edge vector (per-tap column masks; the store is masked when the 8 columns pass
 * ow). Per input row u, each tap vector is loaded once and FMA'd into every output row that uses it. */
AI void fwd_tile(const fargs *a, const __m256 *wv, size_t oy, size_t ox, const int R, const int masked,
                 const size_t KH, const size_t KW, const size_t S) {
    __m256 acc[8];
    __m256i m[2 * ((CNN_DW_MAX_K + 1) / 2)];
    const ptrdiff_t c0 = (ptrdiff_t)(ox * S) - a->pl, iw = (ptrdiff_t)a->iw;
    const int tail = masked && ox + 8 > a->ow;
    const __m256i sm = tail ? colmask((ptrdiff_t)ox, (ptrdiff_t)a->ow) : _mm256_setzero_si256();
    if (masked) tap_masks(c0, iw, m, KW, S);
    float *yt = a->y + oy * a->ow + ox;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        acc[r] = a->accumulate ? ld(yt + (size_t)r * a->ow, tail, sm) : _mm256_set1_ps(a->bias);
    const ptrdiff_t b = (ptrdiff_t)(oy * S) - a->pt; /* input row of u = 0 */
    const size_t U = (size_t)(R - 1) * S + KH;
#pragma GCC unroll 24
    for (size_t u = 0; u < U; u++) {
        const ptrdiff_t q = b + (ptrdiff_t)u;
        if (q < 0 || q >= (ptrdiff_t)a->ih) continue;
        const float *row = a->x + (size_t)q * a->iw;
        if (S == 1) {
#pragma GCC unroll 8
            for (size_t j = 0; j < KW; j++) {
                const __m256 v = ld_col(row, c0 + (ptrdiff_t)j, iw, masked, m[j]);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const ptrdiff_t i = (ptrdiff_t)u - (ptrdiff_t)r;
                    if (i >= 0 && i < (ptrdiff_t)KH) acc[r] = _mm256_fmadd_ps(wv[(size_t)i * KW + j], v, acc[r]);
                }
            }
        } else {
#pragma GCC unroll 8
            for (size_t p = 0; p < (KW + 1) / 2; p++) {
                const ptrdiff_t c = c0 + 2 * (ptrdiff_t)p;
                const __m256 lo = ld_col(row, c, iw, masked, m[2 * p]);
                const __m256 hi = ld_col(row, c + 8, iw, masked, m[2 * p + 1]);
                const __m256 ve = even16(lo, hi), vo = odd16(lo, hi);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const ptrdiff_t i = (ptrdiff_t)u - (ptrdiff_t)(r * S);
                    if (i < 0 || i >= (ptrdiff_t)KH) continue;
                    acc[r] = _mm256_fmadd_ps(wv[(size_t)i * KW + 2 * p], ve, acc[r]);
                    if (2 * p + 1 < KW) acc[r] = _mm256_fmadd_ps(wv[(size_t)i * KW + 2 * p + 1], vo, acc[r]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (tail)
            _mm256_maskstore_ps(yt + (size_t)r * a->ow, sm, acc[r]);
        else
            _mm256_storeu_ps(yt + (size_t)r * a->ow, acc[r]);
    }
}

#ifndef CNN_DW_NO_PREFETCH
/* Prefetch chunk v of nv of the cache lines [p, p + bytes): spread over the vectors of a row block. The
 * range may pass the plane's end (in NCHW that is the next plane); prefetches never fault. */
AI void prefetch_part(const char *p, size_t bytes, size_t v, size_t nv, const int write) {
    const size_t lines = (bytes + 63) / 64, l0 = lines * v / nv, l1 = lines * (v + 1) / nv;
    for (size_t l = l0; l < l1; l++) {
        if (write)
            __builtin_prefetch(p + 64 * l, 1, 3);
        else
            __builtin_prefetch(p + 64 * l, 0, 3);
    }
}
#endif

/* One block of R output rows. While it runs, the input rows the next block adds and the next block's
 * output rows are prefetched, spread over the block's vectors: the hardware prefetchers do not follow
 * the tiles' column-major walk over 10 rows well (c7 forward on one thread, 1024 planes from memory:
 * 3.1 -> 2.35 ms; the same for wgrad, which only reads, measured no gain and is not done). */
AI void fwd_rows(const fargs *a, const __m256 *wv, size_t oy, const int R, size_t vlo, size_t vhi, size_t nv,
                 const size_t KH, const size_t KW, const size_t S) {
#ifndef CNN_DW_NO_PREFETCH
    const ptrdiff_t q1 = (ptrdiff_t)((oy + (size_t)R - 1) * S + KH) - a->pt; /* first row the next block adds */
#ifndef CNN_DW_PF_AHEAD
#define CNN_DW_PF_AHEAD 1
#endif
    const size_t ah = (CNN_DW_PF_AHEAD - 1) * (size_t)R; /* rows further ahead */
    const char *px = (const char *)(a->x + ((q1 > 0 ? (size_t)q1 : 0) + ah * S) * a->iw);
    const char *py = (const char *)(a->y + (oy + (size_t)R + ah) * a->ow);
    const size_t bx = (size_t)R * S * a->iw * sizeof(float), by = (size_t)R * a->ow * sizeof(float);
#define PF(v)                                                                                                  \
    do {                                                                                                       \
        prefetch_part(px, bx, (v), nv, 0);                                                                     \
        prefetch_part(py, by, (v), nv, 1);                                                                     \
    } while (0)
#else
#define PF(v) (void)0
#endif
    size_t v = 0;
    for (; v < vlo; v++) {
        fwd_tile(a, wv, oy, 8 * v, R, 1, KH, KW, S);
        PF(v);
    }
    for (; v < vhi; v++) {
        fwd_tile(a, wv, oy, 8 * v, R, 0, KH, KW, S);
        PF(v);
    }
    for (; v < nv; v++) {
        fwd_tile(a, wv, oy, 8 * v, R, 1, KH, KW, S);
        PF(v);
    }
#undef PF
}

/* Tiles of 8 output rows (stride 1; 4 for stride 2, whose deinterleaving needs more registers), then 4, 2
 * and 1; the top and bottom tiles skip their padding rows. 8 rows x 1 vector keeps 8 FMA chains in flight
 * (4 rows left the FMA pipes half idle: each chain is 9 dependent FMAs) and loads 10 x 3 tap vectors for
 * 72 FMAs; 8 accumulators + 9 weights exceed the 16 ymm by a few, which GCC keeps on the stack as FMA
 * memory operands. */
AI void fwd_plane(const cnn_dw_geom *g, const float *x, const __m256 *wv, float bias, int accumulate, float *y,
                  const size_t KH, const size_t KW, const size_t S) {
    const fargs a = {.x = x, .y = y, .ih = g->ih, .iw = g->iw, .ow = g->ow, .pt = g->pad_top, .pl = g->pad_left,
                     .bias = bias, .accumulate = accumulate};
    size_t vlo, vhi;
    const size_t nv = (g->ow + 7) / 8;
    interior_vectors(g->iw, g->ow, KW, S, g->pad_left, &vlo, &vhi);
    size_t oy = 0;
    if (S == 1)
        for (; oy + 8 <= g->oh; oy += 8) fwd_rows(&a, wv, oy, 8, vlo, vhi, nv, KH, KW, S);
    for (; oy + 4 <= g->oh; oy += 4) fwd_rows(&a, wv, oy, 4, vlo, vhi, nv, KH, KW, S);
    if (oy + 2 <= g->oh) {
        fwd_rows(&a, wv, oy, 2, vlo, vhi, nv, KH, KW, S);
        oy += 2;
    }
    if (oy < g->oh) fwd_rows(&a, wv, oy, 1, vlo, vhi, nv, KH, KW, S);
}

static void fwd_3x3_s1(const cnn_dw_geom *g, const float *x, const float *w, float bias, int acc, float *y) {
    __m256 wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) wv[t] = _mm256_set1_ps(w[t]);
    fwd_plane(g, x, wv, bias, acc, y, 3, 3, 1);
}
static void fwd_3x3_s2(const cnn_dw_geom *g, const float *x, const float *w, float bias, int acc, float *y) {
    __m256 wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) wv[t] = _mm256_set1_ps(w[t]);
    fwd_plane(g, x, wv, bias, acc, y, 3, 3, 2);
}
static void fwd_any(const cnn_dw_geom *g, const float *x, const float *w, float bias, int acc, float *y,
                    const size_t S) {
    __m256 wv[MAXT];
    for (size_t t = 0; t < g->kh * g->kw; t++) wv[t] = _mm256_set1_ps(w[t]);
    fwd_plane(g, x, wv, bias, acc, y, g->kh, g->kw, S);
}

void cnn_f32_conv_dw_fwd_avx2(const cnn_dw_geom *g, const float *x, const float *w, float bias, int accumulate,
                              float *y) {
    if (g->stride > 2 || g->kh > CNN_DW_MAX_K || g->kw > CNN_DW_MAX_K) {
        cnn_f32_conv_dw_fwd_scalar(g, x, w, bias, accumulate, y);
    } else if (g->kh == 3 && g->kw == 3) {
        if (g->stride == 1)
            fwd_3x3_s1(g, x, w, bias, accumulate, y);
        else
            fwd_3x3_s2(g, x, w, bias, accumulate, y);
    } else {
        if (g->stride == 1)
            fwd_any(g, x, w, bias, accumulate, y, 1);
        else
            fwd_any(g, x, w, bias, accumulate, y, 2);
    }
}

/* ---- backward data ---- */

/* Stride 2: dx row iy, blocks of 16 dx columns (8 per phase). */
AI void bwd_s2_plane(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx,
                     const size_t KH, const size_t KW) {
    const ptrdiff_t pl = g->pad_left, pt = g->pad_top, ow = (ptrdiff_t)g->ow, iw = (ptrdiff_t)g->iw;
    /* tap j reaches phase q[j] from dy column 8u + t + d[j] */
    int q[CNN_DW_MAX_K];
    ptrdiff_t d[CNN_DW_MAX_K], dmin = 0, dmax = 0;
    for (size_t j = 0; j < KW; j++) {
        const ptrdiff_t e = (ptrdiff_t)j - pl;
        q[j] = (int)(((e % 2) + 2) % 2);
        d[j] = ((ptrdiff_t)q[j] + pl - (ptrdiff_t)j) / 2;
        if (j == 0 || d[j] < dmin) dmin = d[j];
        if (j == 0 || d[j] > dmax) dmax = d[j];
    }
    __m256 wv[MAXT];
    for (size_t t = 0; t < KH * KW; t++) wv[t] = _mm256_set1_ps(w[t]);
    const size_t nb = (g->iw + 15) / 16;
    /* unmasked blocks u: 8u + dmin >= 0, 8u + dmax + 7 < ow, 16u + 16 <= iw */
    size_t ulo = dmin < 0 ? (size_t)(-dmin + 7) / 8 : 0, uhi;
    {
        const ptrdiff_t num = ow - 8 - dmax; /* 8u <= num */
        uhi = num >= 0 ? (size_t)num / 8 + 1 : 0;
        if (uhi > g->iw / 16) uhi = g->iw / 16;
        if (ulo > nb) ulo = nb;
        if (uhi < ulo) uhi = ulo;
    }
    for (size_t iy = 0; iy < g->ih; iy++) {
        size_t ti[CNN_DW_MAX_K], nt = 0; /* valid tap rows, ascending, and their dy rows */
        const float *rows[CNN_DW_MAX_K];
        for (size_t i = 0; i < KH; i++) {
            const ptrdiff_t n = (ptrdiff_t)iy + pt - (ptrdiff_t)i;
            if (n < 0 || n % 2 || n / 2 >= (ptrdiff_t)g->oh) continue;
            ti[nt] = i;
            rows[nt++] = dy + (size_t)(n / 2) * g->ow;
        }
        float *dr = dx + iy * g->iw;
        for (size_t u = 0; u < nb; u++) {
            const int masked = u < ulo || u >= uhi;
            __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
            const ptrdiff_t c = 8 * (ptrdiff_t)u;
            for (size_t k = 0; k < nt; k++) {
                const size_t i = ti[k];
                for (size_t j = 0; j < KW; j++) {
                    const __m256i m = masked ? colmask(c + d[j], ow) : _mm256_setzero_si256();
                    const __m256 v = ld(rows[k] + c + d[j], masked, m);
                    if (q[j])
                        p1 = _mm256_fmadd_ps(wv[i * KW + j], v, p1);
                    else
                        p0 = _mm256_fmadd_ps(wv[i * KW + j], v, p0);
                }
            }
            const __m256 lo = _mm256_unpacklo_ps(p0, p1), hi = _mm256_unpackhi_ps(p0, p1);
            __m256 o0 = _mm256_permute2f128_ps(lo, hi, 0x20), o1 = _mm256_permute2f128_ps(lo, hi, 0x31);
            float *dp = dr + 16 * u;
            if (masked) {
                const __m256i m0 = colmask(16 * (ptrdiff_t)u, iw), m1 = colmask(16 * (ptrdiff_t)u + 8, iw);
                if (accumulate) {
                    o0 = _mm256_add_ps(_mm256_maskload_ps(dp, m0), o0);
                    o1 = _mm256_add_ps(_mm256_maskload_ps(dp + 8, m1), o1);
                }
                _mm256_maskstore_ps(dp, m0, o0);
                _mm256_maskstore_ps(dp + 8, m1, o1);
            } else {
                if (accumulate) {
                    o0 = _mm256_add_ps(_mm256_loadu_ps(dp), o0);
                    o1 = _mm256_add_ps(_mm256_loadu_ps(dp + 8), o1);
                }
                _mm256_storeu_ps(dp, o0);
                _mm256_storeu_ps(dp + 8, o1);
            }
        }
    }
}

static void bwd_s2_3x3(const cnn_dw_geom *g, const float *dy, const float *w, int acc, float *dx) {
    bwd_s2_plane(g, dy, w, acc, dx, 3, 3);
}
static void bwd_s2_any(const cnn_dw_geom *g, const float *dy, const float *w, int acc, float *dx) {
    bwd_s2_plane(g, dy, w, acc, dx, g->kh, g->kw);
}

void cnn_f32_conv_dw_bwd_avx2(const cnn_dw_geom *g, const float *dy, const float *w, int accumulate, float *dx) {
    if (g->stride > 2 || g->kh > CNN_DW_MAX_K || g->kw > CNN_DW_MAX_K) {
        cnn_f32_conv_dw_bwd_scalar(g, dy, w, accumulate, dx);
    } else if (g->stride == 1) {
        float wf[MAXT];
        const size_t taps = g->kh * g->kw;
        for (size_t t = 0; t < taps; t++) wf[t] = w[taps - 1 - t];
        const cnn_dw_geom f = {.ih = g->oh, .iw = g->ow, .oh = g->ih, .ow = g->iw, .kh = g->kh, .kw = g->kw,
                               .stride = 1, .pad_top = (ptrdiff_t)g->kh - 1 - g->pad_top,
                               .pad_left = (ptrdiff_t)g->kw - 1 - g->pad_left};
        cnn_f32_conv_dw_fwd_avx2(&f, dy, wf, 0.0f, accumulate, dx);
    } else if (g->kh == 3 && g->kw == 3) {
        bwd_s2_3x3(g, dy, w, accumulate, dx);
    } else {
        bwd_s2_any(g, dy, w, accumulate, dx);
    }
}

/* ---- weight gradient ---- */

AI float hsum(__m256 v) { /* fixed order: (lo + hi), then pairs */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Output rows oy .. oy+R-1 (R = 1 or 2), the 8 columns from ox: one dy load per row, and per input row u
 * of the tile (skipped when outside the plane) the kw tap vectors, each FMA'd with the dy of every row
 * that uses it (2 rows: 2 + 4*3 loads for 18 FMAs instead of 2 * 10). */
AI void wgrad_tile(const cnn_dw_geom *g, const float *x, const float *dy, size_t oy, size_t ox, const int R,
                   const int masked, __m256 *acc, __m256 *bsum, const int bias, const size_t KH, const size_t KW,
                   const size_t S) {
    __m256i m[2 * ((CNN_DW_MAX_K + 1) / 2)];
    const ptrdiff_t c0 = (ptrdiff_t)(ox * S) - g->pad_left;
    const int tail = masked && ox + 8 > g->ow; /* lanes past ow: dy reads as 0, x is cleared */
    const __m256i lm = tail ? colmask((ptrdiff_t)ox, (ptrdiff_t)g->ow) : _mm256_setzero_si256();
    if (masked) tap_masks(c0, (ptrdiff_t)g->iw, m, KW, S);
    __m256 dv[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        dv[r] = ld(dy + (oy + (size_t)r) * g->ow + ox, tail, lm);
        if (bias) *bsum = _mm256_add_ps(*bsum, dv[r]);
    }
    const ptrdiff_t b = (ptrdiff_t)(oy * S) - g->pad_top;
    const size_t U = (size_t)(R - 1) * S + KH;
#pragma GCC unroll 16
    for (size_t u = 0; u < U; u++) { /* constant indices after unrolling: acc stays in registers */
        const ptrdiff_t q = b + (ptrdiff_t)u;
        if (q < 0 || q >= (ptrdiff_t)g->ih) continue;
        const float *row = x + (size_t)q * g->iw;
        __m256 v[CNN_DW_MAX_K + 1] = {0};
        tap_vecs(row, c0, (ptrdiff_t)g->iw, masked, m, v, KW, S);
#pragma GCC unroll 8
        for (size_t j = 0; j < KW; j++) {
            const __m256 xv = tail ? _mm256_and_ps(_mm256_castsi256_ps(lm), v[j]) : v[j];
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                const ptrdiff_t i = (ptrdiff_t)u - (ptrdiff_t)(r * S);
                if (i >= 0 && i < (ptrdiff_t)KH) acc[(size_t)i * KW + j] = _mm256_fmadd_ps(dv[r], xv, acc[(size_t)i * KW + j]);
            }
        }
    }
}

AI void wgrad_rows(const cnn_dw_geom *g, const float *x, const float *dy, size_t oy, const int R, size_t vlo,
                   size_t vhi, size_t nv, __m256 *acc, __m256 *bsum, const int bias, const size_t KH,
                   const size_t KW, const size_t S) {
    size_t v = 0;
    for (; v < vlo; v++) wgrad_tile(g, x, dy, oy, 8 * v, R, 1, acc, bsum, bias, KH, KW, S);
    for (; v < vhi; v++) wgrad_tile(g, x, dy, oy, 8 * v, R, 0, acc, bsum, bias, KH, KW, S);
    for (; v < nv; v++) wgrad_tile(g, x, dy, oy, 8 * v, R, 1, acc, bsum, bias, KH, KW, S);
}

/* Per-lane partial sums per tap over pairs of output rows (then a last single row), the vectors of a
 * pair in order; the lanes added in a fixed tree: the order depends only on the shape. */
AI void wgrad_plane(const cnn_dw_geom *g, const float *x, const float *dy, const int bias, float *out,
                    const size_t KH, const size_t KW, const size_t S) {
    __m256 acc[MAXT], bsum = _mm256_setzero_ps();
#pragma GCC unroll 9
    for (size_t t = 0; t < KH * KW; t++) acc[t] = _mm256_setzero_ps();
    size_t vlo, vhi;
    const size_t nv = (g->ow + 7) / 8;
    interior_vectors(g->iw, g->ow, KW, S, g->pad_left, &vlo, &vhi);
    size_t oy = 0;
    for (; oy + 2 <= g->oh; oy += 2) wgrad_rows(g, x, dy, oy, 2, vlo, vhi, nv, acc, &bsum, bias, KH, KW, S);
    if (oy < g->oh) wgrad_rows(g, x, dy, oy, 1, vlo, vhi, nv, acc, &bsum, bias, KH, KW, S);
#pragma GCC unroll 9
    for (size_t t = 0; t < KH * KW; t++) out[t] = hsum(acc[t]);
    if (bias) out[KH * KW] = hsum(bsum);
}

static void wgrad_3x3_s1(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out) {
    if (bias)
        wgrad_plane(g, x, dy, 1, out, 3, 3, 1);
    else
        wgrad_plane(g, x, dy, 0, out, 3, 3, 1);
}
static void wgrad_3x3_s2(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out) {
    wgrad_plane(g, x, dy, bias, out, 3, 3, 2);
}
static void wgrad_any(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out, const size_t S) {
    wgrad_plane(g, x, dy, bias, out, g->kh, g->kw, S);
}

void cnn_f32_conv_dw_wgrad_avx2(const cnn_dw_geom *g, const float *x, const float *dy, int bias, float *out) {
    if (g->stride > 2 || g->kh > CNN_DW_MAX_K || g->kw > CNN_DW_MAX_K)
        cnn_f32_conv_dw_wgrad_scalar(g, x, dy, bias, out);
    else if (g->kh == 3 && g->kw == 3 && g->stride == 1)
        wgrad_3x3_s1(g, x, dy, bias, out);
    else if (g->kh == 3 && g->kw == 3)
        wgrad_3x3_s2(g, x, dy, bias, out);
    else if (g->stride == 1)
        wgrad_any(g, x, dy, bias, out, 1);
    else
        wgrad_any(g, x, dy, bias, out, 2);
}
