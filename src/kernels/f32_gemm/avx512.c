/* f32_gemm/avx512.c — cnn_f32_gemm_blocked_avx512 (and _ws_avx512, the packed-A entry points): the
 * cache-blocked SGEMM of gemm_impl.h with an AVX-512 register-blocked microkernel and AVX-512 packing
 * (compiled with -mavx512f -mavx512vl -mavx512dq -mavx512bw -mfma; call only when the CPU has them).
 *
 * Contract: cnn_sgemm_fn in kernels.h. Loop nest, K slices, determinism: gemm_impl.h.
 *
 * Blocks: the AVX2 kernel's (KC 256, MC 144, NC 512), so the K slices are cut the same way and every C
 * element is the same chain of fused multiply-adds, p ascending, as in the AVX2 kernel: the two give
 * bit-identical results. Zen 5 / Skylake-SP: one B micro-panel (KC x NR = 32 KiB) in L1d (48 KiB on
 * Zen 5; 32 KiB on Skylake, where it still streams from L2 at one line per FMA pair), Ap = MC x KC =
 * 144 KiB in L2 (1 MiB), Bp = KC x NC = 512 KiB in L2. The tile loops run ir outer (GEMM_IR_OUTER):
 * the 12 KiB A micro-panel stays in L1 and the B micro-panels stream from L2 (128 bytes per 24 FMAs).
 *
 * Microkernel 12x32: acc[12,32] = sum_p a[p][0..12) (x) b[p][0..32), then C = alpha*acc + beta*C.
 *   Registers: 24 zmm accumulators (12 rows x 2 vectors of 16), 2 zmm for the B row, broadcasts of A from
 *   memory: 27 of 32. Per p: 2 aligned 64-byte loads of B, 12 broadcasts, 24 FMAs (768 FLOPs); p unrolled
 *   by 4. FMA latency 4 with 2 pipes needs 8 chains; 24 hide it. The tile's write-back uses masked loads
 *   and stores for partial tiles (mr < 12 rows, nr < 32 columns), with the same arithmetic as full ones;
 *   tiles with mr <= 8 or nr <= 16 run gemm_ukernel_edge_avx512 (4/8/12 rows x 16/32 columns, the same
 *   FMA chains).
 * FLOPs: 2*M*N*K. References: Goto & van de Geijn (TOMS 2008); BLIS's skx 32x12 sgemm kernel (the same
 *   tile seen from column-major C).
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "transpose8.h"

#define GEMM_MR 12
#define GEMM_NR 32
#define GEMM_KC 256
#define GEMM_MC 144
#define GEMM_NC 512
/* A micro-panel (12 x 256 floats, 12 KiB) in L1, B micro-panels (32 KiB: all of the Zen 4's L1d) from L2:
 * 2048^3 SGEMM 96 -> 99 GFLOP/s on one Zen 4 core, 184 -> 193 on two (alternating runs, 2026-12-02) */
#define GEMM_IR_OUTER

static inline __attribute__((always_inline)) void gemm_wb_row512(float *c, __m512 lo, __m512 hi, __m512 va,
                                                                  float beta, __mmask16 m0, __mmask16 m1) {
    if (beta == 0.0f) {
        _mm512_mask_storeu_ps(c, m0, _mm512_mul_ps(va, lo));
        _mm512_mask_storeu_ps(c + 16, m1, _mm512_mul_ps(va, hi));
    } else if (beta == 1.0f) {
        _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(va, lo, _mm512_maskz_loadu_ps(m0, c)));
        _mm512_mask_storeu_ps(c + 16, m1, _mm512_fmadd_ps(va, hi, _mm512_maskz_loadu_ps(m1, c + 16)));
    } else {
        const __m512 vb = _mm512_set1_ps(beta);
        _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(va, lo, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, c))));
        _mm512_mask_storeu_ps(c + 16, m1,
                              _mm512_fmadd_ps(va, hi, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16))));
    }
}

/* Edge tiles: the 12x32 kernel's chain of FMAs for every element it computes (p ascending from 0, the
 * same broadcasts and loads), on only R of the 12 packed rows (R = 4 or 8, mr <= R) and/or only the first
 * 16 of the 32 packed columns (W = 1, nr <= 16), so a tile of the matrix's edge costs its valid part
 * rounded up to 4 rows and 16 columns instead of a full 12x32: M = 64 (c1, c2 output channels) ran as
 * 6 x 12 = 72 rows, an image row block of 196 columns (c5) as 7 x 32 = 224. The values are the full
 * kernel's, bit for bit (the rows and columns left out are the zero padding of the panels). */
static inline __attribute__((always_inline)) void gemm_ukernel_edge(size_t kc, const float *restrict a,
                                                                   const float *restrict b, float *restrict c,
                                                                   size_t ldc, float alpha, float beta,
                                                                   size_t mr, size_t nr, const int R,
                                                                   const int W) {
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        acc[r][0] = _mm512_setzero_ps();
        acc[r][1] = _mm512_setzero_ps();
    }
    for (size_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        if (W == 2) _mm_prefetch((const char *)(c + i * ldc + 31), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        if (!(p & 3)) _mm_prefetch((const char *)(b + 32 * p + 32 * 8), _MM_HINT_T0);
        const __m512 b0 = _mm512_load_ps(b + 32 * p);
        const __m512 b1 = W == 2 ? _mm512_load_ps(b + 32 * p + 16) : b0;
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            const __m512 ai = _mm512_set1_ps(a[12 * p + (size_t)r]);
            acc[r][0] = _mm512_fmadd_ps(ai, b0, acc[r][0]);
            if (W == 2) acc[r][1] = _mm512_fmadd_ps(ai, b1, acc[r][1]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = W == 1 || nr <= 16 ? (__mmask16)0
                         : nr >= 32         ? (__mmask16)0xFFFF
                                            : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
        if ((size_t)r < mr) gemm_wb_row512(c + (size_t)r * ldc, acc[r][0], acc[r][1], va, beta, m0, m1);
}

static __attribute__((noinline)) void gemm_ukernel_edge_avx512(size_t kc, const float *restrict a,
                                                               const float *restrict b, float *restrict c,
                                                               size_t ldc, float alpha, float beta, size_t mr,
                                                               size_t nr) {
    if (nr <= 16) {
        if (mr <= 4) gemm_ukernel_edge(kc, a, b, c, ldc, alpha, beta, mr, nr, 4, 1);
        else if (mr <= 8) gemm_ukernel_edge(kc, a, b, c, ldc, alpha, beta, mr, nr, 8, 1);
        else gemm_ukernel_edge(kc, a, b, c, ldc, alpha, beta, mr, nr, 12, 1);
    } else if (mr <= 4) gemm_ukernel_edge(kc, a, b, c, ldc, alpha, beta, mr, nr, 4, 2);
    else gemm_ukernel_edge(kc, a, b, c, ldc, alpha, beta, mr, nr, 8, 2);
}

static void gemm_ukernel_12x32_avx512(size_t kc, const float *restrict a, const float *restrict b,
                                      float *restrict c, size_t ldc, float alpha, float beta, size_t mr,
                                      size_t nr) {
    if (nr <= 16 || mr <= 8) {
        gemm_ukernel_edge_avx512(kc, a, b, c, ldc, alpha, beta, mr, nr);
        return;
    }
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
    __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps();
    __m512 c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
    __m512 ca0 = _mm512_setzero_ps(), ca1 = _mm512_setzero_ps();
    __m512 cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
    for (size_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 31), _MM_HINT_T0);
    }
#define GEMM_ROW(r, x0, x1)                                                                                \
    do {                                                                                                   \
        const __m512 ai = _mm512_set1_ps(a[12 * (u) + (r)]);                                               \
        x0 = _mm512_fmadd_ps(ai, b0, x0);                                                                  \
        x1 = _mm512_fmadd_ps(ai, b1, x1);                                                                  \
    } while (0)
#define GEMM_STEP(uu)                                                                                      \
    do {                                                                                                   \
        const size_t u = (uu);                                                                             \
        const __m512 b0 = _mm512_load_ps(b + 32 * u);                                                      \
        const __m512 b1 = _mm512_load_ps(b + 32 * u + 16);                                                 \
        GEMM_ROW(0, c00, c01);                                                                             \
        GEMM_ROW(1, c10, c11);                                                                             \
        GEMM_ROW(2, c20, c21);                                                                             \
        GEMM_ROW(3, c30, c31);                                                                             \
        GEMM_ROW(4, c40, c41);                                                                             \
        GEMM_ROW(5, c50, c51);                                                                             \
        GEMM_ROW(6, c60, c61);                                                                             \
        GEMM_ROW(7, c70, c71);                                                                             \
        GEMM_ROW(8, c80, c81);                                                                             \
        GEMM_ROW(9, c90, c91);                                                                             \
        GEMM_ROW(10, ca0, ca1);                                                                            \
        GEMM_ROW(11, cb0, cb1);                                                                            \
    } while (0)
    size_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(b + 32 * 8), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 32 * 8 + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 32 * 9), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 32 * 9 + 16), _MM_HINT_T0);
        GEMM_STEP(0);
        GEMM_STEP(1);
        GEMM_STEP(2);
        GEMM_STEP(3);
        a += 48;
        b += 128;
    }
    for (; p < kc; p++) {
        GEMM_STEP(0);
        a += 12;
        b += 32;
    }
#undef GEMM_STEP
#undef GEMM_ROW
    const __m512 va = _mm512_set1_ps(alpha);
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
    /* rows past mr are not written (nor read) */
    switch (mr) {
    default:
    case 12: gemm_wb_row512(c + 11 * ldc, cb0, cb1, va, beta, m0, m1); /* fall through */
    case 11: gemm_wb_row512(c + 10 * ldc, ca0, ca1, va, beta, m0, m1); /* fall through */
    case 10: gemm_wb_row512(c + 9 * ldc, c90, c91, va, beta, m0, m1);  /* fall through */
    case 9: gemm_wb_row512(c + 8 * ldc, c80, c81, va, beta, m0, m1);   /* fall through */
    case 8: gemm_wb_row512(c + 7 * ldc, c70, c71, va, beta, m0, m1);   /* fall through */
    case 7: gemm_wb_row512(c + 6 * ldc, c60, c61, va, beta, m0, m1);   /* fall through */
    case 6: gemm_wb_row512(c + 5 * ldc, c50, c51, va, beta, m0, m1);   /* fall through */
    case 5: gemm_wb_row512(c + 4 * ldc, c40, c41, va, beta, m0, m1);   /* fall through */
    case 4: gemm_wb_row512(c + 3 * ldc, c30, c31, va, beta, m0, m1);   /* fall through */
    case 3: gemm_wb_row512(c + 2 * ldc, c20, c21, va, beta, m0, m1);   /* fall through */
    case 2: gemm_wb_row512(c + 1 * ldc, c10, c11, va, beta, m0, m1);   /* fall through */
    case 1: gemm_wb_row512(c + 0 * ldc, c00, c01, va, beta, m0, m1);   /* fall through */
    case 0: break;
    }
}

/* Pack op(A)[i0:+mc, p0:+kc] into 12-row panels: out[(i/12)*kc*12 + p*12 + i%12], rows past mc zero.
 * Not transposed, full panels: rows 0-7 and 8-11 (with 4 zero rows) as two 8x8 register transposes per 8
 * values of p; transposed: one masked 12-float copy per p (zero-filled past mr). */
static void gemm_pack_a_avx512(int trans_a, const float *A, size_t lda, size_t i0, size_t mc, size_t p0,
                               size_t kc, float *restrict out) {
    for (size_t ir = 0; ir < mc; ir += GEMM_MR) {
        const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
        float *panel = out + ir * kc;
        size_t p = 0;
        if (!trans_a) {
            const float *src = A + (i0 + ir) * lda + p0;
            if (mr == GEMM_MR)
                for (; p + 8 <= kc; p += 8) {
                    __m256 r[8], s[8];
                    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lda + p);
                    for (int i = 0; i < 4; i++) s[i] = _mm256_loadu_ps(src + (size_t)(i + 8) * lda + p);
                    s[4] = s[5] = s[6] = s[7] = _mm256_setzero_ps();
                    gemm_transpose8(r);
                    gemm_transpose8(s);
                    float *d = panel + p * GEMM_MR;
                    for (int q = 0; q < 8; q++) {
                        _mm256_storeu_ps(d + 12 * q, r[q]);
                        _mm_storeu_ps(d + 12 * q + 8, _mm256_castps256_ps128(s[q]));
                    }
                }
            for (; p < kc; p++) {
                float *d = panel + p * GEMM_MR;
                size_t i = 0;
                for (; i < mr; i++) d[i] = src[i * lda + p];
                for (; i < GEMM_MR; i++) d[i] = 0.0f;
            }
        } else {
            const float *src = A + p0 * lda + i0 + ir;
            const __mmask16 m = (__mmask16)((1u << mr) - 1);
            for (; p < kc; p++)
                _mm512_mask_storeu_ps(panel + p * GEMM_MR, (__mmask16)0x0FFF,
                                      _mm512_maskz_loadu_ps(m, src + p * lda));
        }
    }
}

/* Pack op(B)[p0:+kc, j0:+nc] into 32-column panels: out[(j/32)*kc*32 + p*32 + j%32], columns past nc
 * zero. Not transposed: row by row, two 16-float loads and aligned stores per panel row (masked,
 * zero-filled loads for the last panel). Transposed (B is N x K): 32 rows x 8 p as four 8x8 transposes,
 * with a software prefetch of each row's line after next (c4 backward-weights, whose B is X_i: +7% on the
 * Zen 4, 2026-12-02). */
static void gemm_pack_b_avx512(int trans_b, const float *B, size_t ldb, size_t p0, size_t kc, size_t j0,
                               size_t nc, float *restrict out) {
    if (!trans_b) {
        const size_t nfull = nc / GEMM_NR * GEMM_NR, rest = nc - nfull;
        const __mmask16 t0 = rest >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rest) - 1);
        const __mmask16 t1 = rest <= 16 ? (__mmask16)0 : (__mmask16)((1u << (rest - 16)) - 1);
        for (size_t p = 0; p < kc; p++) {
            const float *src = B + (p0 + p) * ldb + j0;
            float *dst = out + p * GEMM_NR;
            for (size_t jr = 0; jr < nfull; jr += GEMM_NR) {
                _mm512_store_ps(dst + jr * kc, _mm512_loadu_ps(src + jr));
                _mm512_store_ps(dst + jr * kc + 16, _mm512_loadu_ps(src + jr + 16));
            }
            if (rest) {
                _mm512_store_ps(dst + nfull * kc, _mm512_maskz_loadu_ps(t0, src + nfull));
                _mm512_store_ps(dst + nfull * kc + 16, _mm512_maskz_loadu_ps(t1, src + nfull + 16));
            }
        }
        return;
    }
    for (size_t jr = 0; jr < nc; jr += GEMM_NR) {
        const size_t nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
        const float *src = B + (j0 + jr) * ldb + p0;
        float *panel = out + jr * kc;
        size_t p = 0;
        if (nr == GEMM_NR)
            for (; p + 8 <= kc; p += 8) {
                float *d = panel + p * GEMM_NR;
                if (!(p & 15)) /* the line after next of each row: 32 rows outrun the hardware prefetcher */
                    for (int j = 0; j < 32; j++) _mm_prefetch((const char *)(src + (size_t)j * ldb + p + 32), _MM_HINT_T0);
                for (int blk = 0; blk < 4; blk++) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (size_t)(8 * blk + j) * ldb + p);
                    gemm_transpose8(r);
                    for (int q = 0; q < 8; q++) _mm256_store_ps(d + 32 * q + 8 * blk, r[q]);
                }
            }
        for (; p < kc; p++) {
            float *d = panel + p * GEMM_NR;
            size_t j = 0;
            for (; j < nr; j++) d[j] = src[j * ldb + p];
            for (; j < GEMM_NR; j++) d[j] = 0.0f;
        }
    }
}

#define GEMM_FN cnn_f32_gemm_blocked_avx512
#define GEMM_FN_WS cnn_f32_gemm_blocked_ws_avx512
#define GEMM_UKERNEL gemm_ukernel_12x32_avx512
#define GEMM_PACK_A gemm_pack_a_avx512
#define GEMM_PACK_B gemm_pack_b_avx512
#define GEMM_FN_PACK_A cnn_f32_gemm_pack_a_avx512
#define GEMM_FN_PA cnn_f32_gemm_packed_a_avx512
#include "gemm_impl.h"

_Static_assert(GEMM_WS_FLOATS <= CNN_F32_GEMM_WS_FLOATS, "CNN_F32_GEMM_WS_FLOATS too small");
