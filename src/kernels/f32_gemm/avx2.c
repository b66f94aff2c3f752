/* f32_gemm/avx2.c — cnn_f32_gemm_blocked_avx2: the cache-blocked SGEMM of gemm_impl.h with an AVX2+FMA
 * register-blocked microkernel (compiled with -mavx2 -mfma; call only when the CPU has both).
 *
 * Contract: cnn_sgemm_fn in kernels.h. Algorithm, packing and buffer sizes: gemm_impl.h.
 * Microkernel 6x16: C[6,16] += alpha * sum_p a[p][0..6) (x) b[p][0..16).
 *   Registers: 12 ymm accumulators (6 rows x 2 vectors of 8), 2 ymm for the B row, 1 for the broadcast A
 *   value: 15 of 16. Per p: 2 aligned loads of B, 6 broadcasts of A, 12 FMAs (192 FLOPs).
 *   Alignment: the packed panels are 64-byte aligned (stack buffers in gemm_impl.h); C is accessed
 *   unaligned. No over-read: partial tiles go through gemm_impl.h's local tile.
 * FLOPs: 2*M*N*K. Reference for the loop nest and tile shape: Goto & van de Geijn, "Anatomy of
 * High-Performance Matrix Multiplication" (TOMS 2008); BLIS's haswell 6x16 sgemm kernel.
 */
#include <immintrin.h>
#include <stddef.h>

static void gemm_ukernel_6x16_avx2(size_t kc, const float *a, const float *b, float alpha, float *c,
                                   size_t ldc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (size_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = _mm256_load_ps(b + 8);
        __m256 ai;
        ai = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(ai, b0, c10);
        c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(ai, b0, c20);
        c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(ai, b0, c30);
        c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(ai, b0, c40);
        c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(ai, b0, c50);
        c51 = _mm256_fmadd_ps(ai, b1, c51);
        a += 6;
        b += 16;
    }
    const __m256 va = _mm256_set1_ps(alpha);
#define GEMM_STORE_ROW(i, lo, hi)                                                                          \
    do {                                                                                                   \
        float *ci = c + (size_t)(i) * ldc;                                                                 \
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, lo, _mm256_loadu_ps(ci)));                                \
        _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, hi, _mm256_loadu_ps(ci + 8)));                        \
    } while (0)
    GEMM_STORE_ROW(0, c00, c01);
    GEMM_STORE_ROW(1, c10, c11);
    GEMM_STORE_ROW(2, c20, c21);
    GEMM_STORE_ROW(3, c30, c31);
    GEMM_STORE_ROW(4, c40, c41);
    GEMM_STORE_ROW(5, c50, c51);
#undef GEMM_STORE_ROW
}

#define GEMM_FN cnn_f32_gemm_blocked_avx2
#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_UKERNEL gemm_ukernel_6x16_avx2
#include "gemm_impl.h"
