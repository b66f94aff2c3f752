/* conv_stem.h — small-channel ("stem") convolution kernels (f32_conv_stem/{scalar,avx2,avx512}.c), used by
 * conv2d's "stem" algorithm: groups 1, dilation 1, any stride and padding, few input channels (C = 1..4:
 * ResNet's 3 -> 64 7x7/2, M1's 1 -> 32 3x3/1), where im2col+gemm is a short GEMM over a large column
 * matrix.
 *
 * Input layout: the driver copies the rows a call needs into column-phase planes. For input channel ci
 * and column phase q < sw, plane (ci, q) starts at xp + (ci*sw + q)*pstride; its row r, column t holds
 * the zero-padded input xpad[ci][r][t*sw + q] (r counted from the block's first padded row). A tap
 * (ci, i, j) of output (r, ox) then reads plane (ci, j % sw), row r*sh + i, column ox + j / sw: a
 * contiguous run along ox, so both kernels vectorise over output columns without gathers.
 * Taps are numbered tap = (ci*kh + i)*kw + j (the OIHW order of one output channel's filter).
 *
 * fwd:   y[k*ldy_k + r*ow + ox] = bias[k] (0 without bias) + sum_tap W[k][tap] * x(tap, r, ox)
 *        for k < kb, r < nrows, ox < ow. wp is the filter packed in blocks of CNN_STEM_KB output
 *        channels: W[k][tap] at wp[((k / KB)*taps + tap)*KB + k % KB] (CNN_STEM_KB = 6; the last block
 *        zero-padded), so the filter of one block is contiguous. Each output is bias + the taps in
 *        ascending order, one rounding per multiply-add (FMA in avx2 and avx512, mul + add in scalar).
 *        Reads plane rows [0, (nrows-1)*sh + kh) and, in the AVX2 kernel, columns up to
 *        round_up(ow, 16) - 1 + (kw-1)/sw (the caller gives ldp >= round_up(ow, 16) + (kw-1)/sw; the
 *        lanes past ow are never stored; the AVX-512 kernel masks its loads and reads no column past
 *        ow - 1 + (kw-1)/sw). Writes only the ow columns of y (masked tails).
 * wgrad: acc[k*taps + tap] += sum_{r < nrows, ox < ow} dy[k*ldy_k + r*ow + ox] * x(tap, r, ox) for
 *        k < kb, every tap, and with bsum != NULL also bsum[k] += sum_{r, ox} dy[...] (the bias
 *        gradient's share, summed the same way). The sum over the call is kept in float (8 lanes of partial sums in avx2 and avx512, in
 *        the order r, ox ascending), reduced in a fixed order and added to the double acc once per call:
 *        the result depends only on the shape and on how the driver cuts the rows into calls. Reads
 *        columns [0, ow + (kw-1)/sw) of the planes (tails masked: the slack is never read).
 * Pure, single-threaded, no allocation, no alignment requirement.
 */
#ifndef CNN_CONV_STEM_H
#define CNN_CONV_STEM_H

#include <stddef.h>

typedef struct cnn_stem_geom {
    size_t c, kh, kw; /* input channels, filter */
    size_t sh, sw;    /* stride */
    size_t ow;        /* output columns */
    size_t ldp;       /* floats per phase-plane row */
    size_t pstride;   /* floats between phase planes */
} cnn_stem_geom;

#define CNN_STEM_KB 6

/* The offset in the phase planes of tap (ci, i, j) for output (0, 0): plane (ci, j % sw), row i, column
 * j / sw; and the same by tap number, tap = (ci*kh + i)*kw + j. */
static inline size_t cnn_stem_plane_offset(const cnn_stem_geom *g, size_t ci, size_t i, size_t j) {
    return (ci * g->sw + j % g->sw) * g->pstride + i * g->ldp + j / g->sw;
}
static inline size_t cnn_stem_tap_offset(const cnn_stem_geom *g, size_t tap) {
    const size_t khw = g->kh * g->kw;
    return cnn_stem_plane_offset(g, tap / khw, tap % khw / g->kw, tap % g->kw);
}

/* The kernels tabulate the tap offsets once per call when there are at most CNN_STEM_MAX_TAB taps (ResNet's
 * 147, M1's 9): tab[tap] = cnn_stem_tap_offset(g, tap) for every tap, returning 1; with more taps, 0 and
 * tab untouched. */
#define CNN_STEM_MAX_TAB 512
static inline int cnn_stem_tap_table(const cnn_stem_geom *g, size_t tab[CNN_STEM_MAX_TAB]) {
    if (g->c * g->kh * g->kw > CNN_STEM_MAX_TAB) return 0;
    size_t t = 0;
    for (size_t ci = 0; ci < g->c; ci++)
        for (size_t i = 0; i < g->kh; i++)
            for (size_t j = 0; j < g->kw; j++) tab[t++] = cnn_stem_plane_offset(g, ci, i, j);
    return 1;
}

typedef void (*cnn_conv_stem_fwd_fn)(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                     size_t kb, const float *bias, float *y, size_t ldy_k);
typedef void (*cnn_conv_stem_wgrad_fn)(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                       size_t ldy_k, size_t kb, double *acc, double *bsum);

void cnn_f32_conv_stem_fwd_scalar(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                  size_t kb, const float *bias, float *y, size_t ldy_k);
void cnn_f32_conv_stem_fwd_avx2(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                size_t kb, const float *bias, float *y, size_t ldy_k);
void cnn_f32_conv_stem_fwd_avx512(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *wp,
                                  size_t kb, const float *bias, float *y, size_t ldy_k);
void cnn_f32_conv_stem_wgrad_scalar(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                    size_t ldy_k, size_t kb, double *acc, double *bsum);
void cnn_f32_conv_stem_wgrad_avx2(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                  size_t ldy_k, size_t kb, double *acc, double *bsum);
void cnn_f32_conv_stem_wgrad_avx512(const cnn_stem_geom *g, const float *xp, size_t nrows, const float *dy,
                                    size_t ldy_k, size_t kb, double *acc, double *bsum);

#endif
