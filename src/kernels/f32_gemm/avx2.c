/* f32_gemm/avx2.c — cnn_f32_gemm_blocked_avx2 (and _ws_avx2): the cache-blocked SGEMM of gemm_impl.h
 * with an AVX2+FMA register-blocked microkernel and AVX2 packing (compiled with -mavx2 -mfma; call only
 * when the CPU has both).
 *
 * Contract: cnn_sgemm_fn in kernels.h. Loop nest, K slices, determinism: gemm_impl.h. Measurements and
 * block-size choices: docs/kernels.md.
 *
 * Blocks (Zen 3: L1d 32 KiB, L2 512 KiB per core, L3 32 MiB shared):
 *   KC 256   one B micro-panel (KC x NR = 16 KiB) stays in L1 while the A micro-panels stream past it
 *   MC 144   Ap = MC x KC = 144 KiB in L2
 *   NC 512   Bp = KC x NC = 512 KiB (L2/L3); the stack buffer of cnn_f32_gemm_blocked_avx2 is
 *            Ap + Bp = 656 KiB (glibc/GOMP threads get 8 MiB, or 2 MiB when ulimit -s is unlimited;
 *            callers on smaller stacks use cnn_f32_gemm_blocked_ws_avx2 with their own workspace).
 *
 * Microkernel 6x16: acc[6,16] = sum_p a[p][0..6) (x) b[p][0..16), then C = alpha*acc + beta*C.
 *   Registers: 12 ymm accumulators (6 rows x 2 vectors of 8), 2 ymm for the B row, 1-2 for broadcast A
 *   values: 15-16 of 16. Per p: 2 aligned loads of B, 6 broadcasts of A, 12 FMAs (192 FLOPs); the
 *   p loop is unrolled by 4. Ap and Bp are 64-byte aligned (workspace contract); C is accessed
 *   unaligned. No over-read: the panels are zero-padded to MR x kc and kc x NR, and a partial tile
 *   (mr < 6 or nr < 16) is written back from a spilled copy with scalar fmaf, the same rounding as the
 *   vector FMA, so a C element gets bit-identical arithmetic in a full or a partial tile.
 * FLOPs: 2*M*N*K. References: Goto & van de Geijn (TOMS 2008); BLIS's haswell 6x16 sgemm kernel.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "transpose8.h"

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256
#define GEMM_MC 144
#define GEMM_NC 512

static inline __attribute__((always_inline)) void gemm_wb_row(float *c, __m256 lo, __m256 hi, __m256 va,
                                                               float beta) {
    if (beta == 0.0f) {
        _mm256_storeu_ps(c, _mm256_mul_ps(va, lo));
        _mm256_storeu_ps(c + 8, _mm256_mul_ps(va, hi));
    } else if (beta == 1.0f) {
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, lo, _mm256_loadu_ps(c)));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, hi, _mm256_loadu_ps(c + 8)));
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, lo, _mm256_mul_ps(vb, _mm256_loadu_ps(c))));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, hi, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8))));
    }
}

static void gemm_ukernel_6x16_avx2(size_t kc, const float *restrict a, const float *restrict b,
                                   float *restrict c, size_t ldc, float alpha, float beta, size_t mr,
                                   size_t nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (size_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
    }
#define GEMM_STEP(u)                                                                                       \
    do {                                                                                                   \
        const __m256 b0 = _mm256_load_ps(b + 16 * (u));                                                    \
        const __m256 b1 = _mm256_load_ps(b + 16 * (u) + 8);                                                \
        __m256 ai;                                                                                         \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 0);                                                         \
        c00 = _mm256_fmadd_ps(ai, b0, c00);                                                                \
        c01 = _mm256_fmadd_ps(ai, b1, c01);                                                                \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 1);                                                         \
        c10 = _mm256_fmadd_ps(ai, b0, c10);                                                                \
        c11 = _mm256_fmadd_ps(ai, b1, c11);                                                                \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 2);                                                         \
        c20 = _mm256_fmadd_ps(ai, b0, c20);                                                                \
        c21 = _mm256_fmadd_ps(ai, b1, c21);                                                                \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 3);                                                         \
        c30 = _mm256_fmadd_ps(ai, b0, c30);                                                                \
        c31 = _mm256_fmadd_ps(ai, b1, c31);                                                                \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 4);                                                         \
        c40 = _mm256_fmadd_ps(ai, b0, c40);                                                                \
        c41 = _mm256_fmadd_ps(ai, b1, c41);                                                                \
        ai = _mm256_broadcast_ss(a + 6 * (u) + 5);                                                         \
        c50 = _mm256_fmadd_ps(ai, b0, c50);                                                                \
        c51 = _mm256_fmadd_ps(ai, b1, c51);                                                                \
    } while (0)
    size_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(b + 16 * 8), _MM_HINT_T0);
        GEMM_STEP(0);
        GEMM_STEP(1);
        GEMM_STEP(2);
        GEMM_STEP(3);
        a += 24;
        b += 64;
    }
    for (; p < kc; p++) {
        GEMM_STEP(0);
        a += 6;
        b += 16;
    }
#undef GEMM_STEP
    const __m256 va = _mm256_set1_ps(alpha);
    if (mr == GEMM_MR && nr == GEMM_NR) {
        gemm_wb_row(c + 0 * ldc, c00, c01, va, beta);
        gemm_wb_row(c + 1 * ldc, c10, c11, va, beta);
        gemm_wb_row(c + 2 * ldc, c20, c21, va, beta);
        gemm_wb_row(c + 3 * ldc, c30, c31, va, beta);
        gemm_wb_row(c + 4 * ldc, c40, c41, va, beta);
        gemm_wb_row(c + 5 * ldc, c50, c51, va, beta);
        return;
    }
    /* Partial tile: spill, then the same rounding per element in scalar code (fmaf is fused too). */
    _Alignas(32) float t[GEMM_MR][GEMM_NR];
    _mm256_store_ps(t[0], c00), _mm256_store_ps(t[0] + 8, c01);
    _mm256_store_ps(t[1], c10), _mm256_store_ps(t[1] + 8, c11);
    _mm256_store_ps(t[2], c20), _mm256_store_ps(t[2] + 8, c21);
    _mm256_store_ps(t[3], c30), _mm256_store_ps(t[3] + 8, c31);
    _mm256_store_ps(t[4], c40), _mm256_store_ps(t[4] + 8, c41);
    _mm256_store_ps(t[5], c50), _mm256_store_ps(t[5] + 8, c51);
    for (size_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            for (size_t j = 0; j < nr; j++) ci[j] = alpha * t[i][j];
        else if (beta == 1.0f)
            for (size_t j = 0; j < nr; j++) ci[j] = fmaf(alpha, t[i][j], ci[j]);
        else
            for (size_t j = 0; j < nr; j++) {
                const float bc = beta * ci[j];
                ci[j] = fmaf(alpha, t[i][j], bc);
            }
    }
}

/* Pack op(A)[i0:+mc, p0:+kc] into 6-row panels: out[(i/6)*kc*6 + p*6 + i%6], rows past mc zero.
 * Not transposed, full panels: 6 rows x 8 p loaded, transposed in registers (2 zero rows), stored as
 * 8 overlapping 8-float stores at stride 6 (each overwrites the previous one's 2 junk floats; the last
 * one stores 6 floats exactly), so nothing past the panel is written. */
static void gemm_pack_a_avx2(int trans_a, const float *A, size_t lda, size_t i0, size_t mc, size_t p0,
                             size_t kc, float *restrict out) {
    for (size_t ir = 0; ir < mc; ir += GEMM_MR) {
        const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
        float *panel = out + ir * kc;
        size_t p = 0;
        if (!trans_a) {
            const float *src = A + (i0 + ir) * lda + p0;
            if (mr == GEMM_MR)
                for (; p + 8 <= kc; p += 8) {
                    __m256 r[8];
                    for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lda + p);
                    r[6] = r[7] = _mm256_setzero_ps();
                    gemm_transpose8(r);
                    float *d = panel + p * GEMM_MR;
                    for (int q = 0; q < 7; q++) _mm256_storeu_ps(d + 6 * q, r[q]);
                    _mm_storeu_ps(d + 42, _mm256_castps256_ps128(r[7]));
                    _mm_storel_pi((__m64 *)(d + 46), _mm256_extractf128_ps(r[7], 1));
                }
            for (; p < kc; p++) {
                float *d = panel + p * GEMM_MR;
                size_t i = 0;
                for (; i < mr; i++) d[i] = src[i * lda + p];
                for (; i < GEMM_MR; i++) d[i] = 0.0f;
            }
        } else {
            const float *src = A + p0 * lda + i0 + ir;
            for (; p < kc; p++) {
                const float *s = src + p * lda;
                float *d = panel + p * GEMM_MR;
                size_t i = 0;
                for (; i < mr; i++) d[i] = s[i];
                for (; i < GEMM_MR; i++) d[i] = 0.0f;
            }
        }
    }
}

/* Pack op(B)[p0:+kc, j0:+nc] into 16-column panels: out[(j/16)*kc*16 + p*16 + j%16], columns past nc
 * zero. Not transposed: row by row, 2 loads and 2 aligned stores per panel row. Transposed (B is N x K):
 * 16 rows x 8 p loaded and transposed as two 8x8 blocks. */
static void gemm_pack_b_avx2(int trans_b, const float *B, size_t ldb, size_t p0, size_t kc, size_t j0,
                             size_t nc, float *restrict out) {
    if (!trans_b) {
        const size_t nfull = nc / GEMM_NR * GEMM_NR;
        for (size_t p = 0; p < kc; p++) {
            const float *src = B + (p0 + p) * ldb + j0;
            float *dst = out + p * GEMM_NR;
            for (size_t jr = 0; jr < nfull; jr += GEMM_NR) {
                _mm256_store_ps(dst + jr * kc, _mm256_loadu_ps(src + jr));
                _mm256_store_ps(dst + jr * kc + 8, _mm256_loadu_ps(src + jr + 8));
            }
            if (nfull < nc) {
                float *d = dst + nfull * kc;
                size_t j = 0;
                for (; nfull + j < nc; j++) d[j] = src[nfull + j];
                for (; j < GEMM_NR; j++) d[j] = 0.0f;
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
                __m256 lo[8], hi[8];
                for (int j = 0; j < 8; j++) {
                    lo[j] = _mm256_loadu_ps(src + (size_t)j * ldb + p);
                    hi[j] = _mm256_loadu_ps(src + (size_t)(j + 8) * ldb + p);
                }
                gemm_transpose8(lo);
                gemm_transpose8(hi);
                float *d = panel + p * GEMM_NR;
                for (int q = 0; q < 8; q++) {
                    _mm256_store_ps(d + 16 * q, lo[q]);
                    _mm256_store_ps(d + 16 * q + 8, hi[q]);
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

#define GEMM_FN cnn_f32_gemm_blocked_avx2
#define GEMM_FN_WS cnn_f32_gemm_blocked_ws_avx2
#define GEMM_UKERNEL gemm_ukernel_6x16_avx2
#define GEMM_PACK_A gemm_pack_a_avx2
#define GEMM_PACK_B gemm_pack_b_avx2
#define GEMM_FN_PACK_A cnn_f32_gemm_pack_a_avx2
#define GEMM_FN_PA cnn_f32_gemm_packed_a_avx2
#include "gemm_impl.h"

_Static_assert(GEMM_WS_FLOATS <= CNN_F32_GEMM_WS_FLOATS, "CNN_F32_GEMM_WS_FLOATS too small");
