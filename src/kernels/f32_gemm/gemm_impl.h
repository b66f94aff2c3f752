/* gemm_impl.h — the cache-blocked SGEMM driver shared by every ISA variant (included, not compiled alone).
 *
 * Math: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, the contract of cnn_sgemm_fn in
 * kernels.h (beta == 0 writes C without reading it, so C may hold NaN garbage; alpha == 0 or K == 0 only
 * scales C).
 *
 * Algorithm (the Goto/BLIS loop nest, without threads):
 *   1. C *= beta (C = 0 when beta == 0).
 *   2. for pc in K by KC:                      a KC slice of the sum
 *        for ic in M by MC:   pack op(A)[ic:+MC, pc:+KC] into Ap: MR-row panels, p-major
 *                             (Ap[panel][p][0..MR)), rows past M zero-filled
 *          for jc in N by NC: pack op(B)[pc:+KC, jc:+NC] into Bp: NR-column panels, p-major
 *                             (Bp[panel][p][0..NR)), columns past N zero-filled
 *            for each NR panel, each MR panel: acc[MR][NR] = sum_p Ap[p][i] * Bp[p][j]   (microkernel)
 *                                              C[tile] += alpha * acc (only the valid mr x nr part)
 *   Packing turns all four transpose combinations into the same contiguous microkernel loop; the
 *   microkernel's innermost loop is a contiguous axpy over NR columns that the compiler vectorises (or,
 *   when the includer defines GEMM_UKERNEL, an ISA-specific register-blocked version of the same loop).
 *
 * Buffers: Ap (MC*KC floats) and Bp (KC*NC floats) live on the stack, 64-byte aligned:
 *   Bp = 256*64*4 = 64 KiB (fits L2, one NR panel of 16 KiB streams through L1), Ap = 72*256*4 = 72 KiB.
 *   No allocation, no threads, no over-read of A, B or C.
 *
 * Determinism: every C element is summed in the same order (p ascending within a KC slice, slices
 * ascending) whatever M, N or its position in a tile, so a sub-block of a product computed alone is
 * bit-identical to the same block of the full product (the conv2d drivers rely on this).
 *
 * The includer defines, before including:
 *   GEMM_FN       name of the exported function
 *   GEMM_MR       rows of the microkernel tile (divides GEMM_MC)
 *   GEMM_NR       columns of the microkernel tile (divides GEMM_NC)
 *   GEMM_UKERNEL  optional: name of a function
 *                   void f(size_t kc, const float *Ap, const float *Bp, float alpha, float *C, size_t ldc)
 *                 that does C[0:MR, 0:NR] += alpha * Ap^T Bp for a full tile; partial tiles go through
 *                 a local copy of the valid part (ldc = GEMM_NR), so they get the same arithmetic.
 */
#include <stddef.h>
#include <string.h>

#include "../kernels.h"

#ifndef GEMM_FN
#error "define GEMM_FN before including gemm_impl.h"
#endif

#define GEMM_KC 256
#define GEMM_MC 72
#define GEMM_NC 64

#if GEMM_MC % GEMM_MR != 0 || GEMM_NC % GEMM_NR != 0
#error "GEMM_MR must divide GEMM_MC and GEMM_NR must divide GEMM_NC"
#endif

#ifndef GEMM_UKERNEL
#if GEMM_MR != 4
#error "the portable microkernel is written for GEMM_MR == 4"
#endif
/* Portable microkernel: C[0:4, 0:NR] += alpha * sum_p a[p][i] * b[p][j]. Four accumulator rows with fixed
 * trip counts so the compiler keeps them in vector registers; the j loop is the contiguous axpy. */
static void gemm_ukernel_portable(size_t kc, const float *restrict a, const float *restrict b, float alpha,
                                  float *restrict c, size_t ldc) {
    float acc0[GEMM_NR], acc1[GEMM_NR], acc2[GEMM_NR], acc3[GEMM_NR];
    for (size_t j = 0; j < GEMM_NR; j++) acc0[j] = acc1[j] = acc2[j] = acc3[j] = 0.0f;
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * GEMM_NR;
        const float a0 = a[p * 4 + 0], a1 = a[p * 4 + 1], a2 = a[p * 4 + 2], a3 = a[p * 4 + 3];
#pragma GCC unroll 16
        for (size_t j = 0; j < GEMM_NR; j++) {
            const float bj = bp[j];
            acc0[j] += a0 * bj;
            acc1[j] += a1 * bj;
            acc2[j] += a2 * bj;
            acc3[j] += a3 * bj;
        }
    }
    for (size_t j = 0; j < GEMM_NR; j++) {
        c[0 * ldc + j] += alpha * acc0[j];
        c[1 * ldc + j] += alpha * acc1[j];
        c[2 * ldc + j] += alpha * acc2[j];
        c[3 * ldc + j] += alpha * acc3[j];
    }
}
#define GEMM_UKERNEL gemm_ukernel_portable
#endif

/* C[0:M, 0:N] *= beta; beta == 0 stores zeros without reading C. */
static void gemm_scale_c(size_t M, size_t N, float beta, float *C, size_t ldc) {
    if (beta == 1.0f) return;
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, N * sizeof(float));
        else
            for (size_t j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Pack op(A)[i0:i0+mc, p0:p0+kc] into MR-row panels: out[(i/MR)*kc*MR + p*MR + i%MR]. */
static void gemm_pack_a(int trans_a, const float *A, size_t lda, size_t i0, size_t mc, size_t p0, size_t kc,
                        float *restrict out) {
    for (size_t ir = 0; ir < mc; ir += GEMM_MR) {
        const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
        float *panel = out + ir * kc;
        if (!trans_a) {
            /* op(A)[i][p] = A[i*lda + p]: rows are contiguous in p. */
            for (size_t i = 0; i < mr; i++) {
                const float *src = A + (i0 + ir + i) * lda + p0;
                for (size_t p = 0; p < kc; p++) panel[p * GEMM_MR + i] = src[p];
            }
        } else {
            /* op(A)[i][p] = A[p*lda + i]: a panel row p is contiguous in i. */
            for (size_t p = 0; p < kc; p++) {
                const float *src = A + (p0 + p) * lda + i0 + ir;
                for (size_t i = 0; i < mr; i++) panel[p * GEMM_MR + i] = src[i];
            }
        }
        if (mr < GEMM_MR)
            for (size_t p = 0; p < kc; p++)
                for (size_t i = mr; i < GEMM_MR; i++) panel[p * GEMM_MR + i] = 0.0f;
    }
}

/* Pack op(B)[p0:p0+kc, j0:j0+nc] into NR-column panels: out[(j/NR)*kc*NR + p*NR + j%NR]. */
static void gemm_pack_b(int trans_b, const float *B, size_t ldb, size_t p0, size_t kc, size_t j0, size_t nc,
                        float *restrict out) {
    for (size_t jr = 0; jr < nc; jr += GEMM_NR) {
        const size_t nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
        float *panel = out + jr * kc;
        if (!trans_b) {
            /* op(B)[p][j] = B[p*ldb + j]: contiguous in j. */
            for (size_t p = 0; p < kc; p++) {
                const float *src = B + (p0 + p) * ldb + j0 + jr;
                float *dst = panel + p * GEMM_NR;
                size_t j = 0;
                for (; j < nr; j++) dst[j] = src[j];
                for (; j < GEMM_NR; j++) dst[j] = 0.0f;
            }
        } else {
            /* op(B)[p][j] = B[j*ldb + p]: contiguous in p. */
            for (size_t j = 0; j < nr; j++) {
                const float *src = B + (j0 + jr + j) * ldb + p0;
                for (size_t p = 0; p < kc; p++) panel[p * GEMM_NR + j] = src[p];
            }
            if (nr < GEMM_NR)
                for (size_t p = 0; p < kc; p++)
                    for (size_t j = nr; j < GEMM_NR; j++) panel[p * GEMM_NR + j] = 0.0f;
        }
    }
}

void GEMM_FN(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
             const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    gemm_scale_c(M, N, beta, C, ldc);
    if (K == 0 || alpha == 0.0f) return;

    _Alignas(64) float Ap[GEMM_MC * GEMM_KC];
    _Alignas(64) float Bp[GEMM_KC * GEMM_NC];
    _Alignas(64) float tile[GEMM_MR * GEMM_NR];

    for (size_t pc = 0; pc < K; pc += GEMM_KC) {
        const size_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
        for (size_t ic = 0; ic < M; ic += GEMM_MC) {
            const size_t mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
            gemm_pack_a(trans_a, A, lda, ic, mc, pc, kc, Ap);
            for (size_t jc = 0; jc < N; jc += GEMM_NC) {
                const size_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
                gemm_pack_b(trans_b, B, ldb, pc, kc, jc, nc, Bp);
                for (size_t jr = 0; jr < nc; jr += GEMM_NR) {
                    const size_t nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
                    const float *bp = Bp + jr * kc;
                    for (size_t ir = 0; ir < mc; ir += GEMM_MR) {
                        const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                        const float *ap = Ap + ir * kc;
                        float *c = C + (ic + ir) * ldc + jc + jr;
                        if (mr == GEMM_MR && nr == GEMM_NR) {
                            GEMM_UKERNEL(kc, ap, bp, alpha, c, ldc);
                        } else {
                            /* Partial tile: run the same kernel on a local copy of the valid part
                             * (same arithmetic as a full tile), then copy it back. */
                            for (size_t i = 0; i < GEMM_MR; i++)
                                for (size_t j = 0; j < GEMM_NR; j++)
                                    tile[i * GEMM_NR + j] = i < mr && j < nr ? c[i * ldc + j] : 0.0f;
                            GEMM_UKERNEL(kc, ap, bp, alpha, tile, GEMM_NR);
                            for (size_t i = 0; i < mr; i++)
                                for (size_t j = 0; j < nr; j++) c[i * ldc + j] = tile[i * GEMM_NR + j];
                        }
                    }
                }
            }
        }
    }
}
