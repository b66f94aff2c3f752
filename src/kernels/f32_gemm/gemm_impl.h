/* gemm_impl.h — the cache-blocked SGEMM driver shared by every ISA variant (included, not compiled alone).
 *
 * Math: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, the contract of cnn_sgemm_fn in
 * kernels.h (beta == 0 writes C without reading it, so C may hold NaN garbage; alpha == 0 or K == 0 only
 * scales C).
 *
 * Algorithm: the Goto/BLIS loop nest (Goto & van de Geijn, "Anatomy of High-Performance Matrix
 * Multiplication", TOMS 2008; BLIS's haswell/zen sgemm), single-threaded:
 *   for jc in N by NC:                          (5th loop)
 *     for pc in K by kc:                        (4th loop; kc = the K slice, see gemm_kc)
 *       pack op(B)[pc:+kc, jc:+NC] into Bp:     NR-column micro-panels, p-major (Bp[panel][p][0..NR)),
 *                                               columns past N zero-filled           -> lives in L2/L3
 *       for ic in M by MC:                      (3rd loop)
 *         pack op(A)[ic:+MC, pc:+kc] into Ap:   MR-row micro-panels, p-major (Ap[panel][p][0..MR)),
 *                                               rows past M zero-filled              -> lives in L2
 *         for jr in NC by NR:                   (2nd loop; one B micro-panel, kc*NR floats, stays in L1)
 *           for ir in MC by MR:                 (1st loop; A micro-panels stream from L2)
 *                                               (GEMM_IR_OUTER: the two swapped, see GEMM_TILES_BEGIN)
 *             microkernel: acc[MR][NR] = sum_p Ap[p][i] * Bp[p][j]  (p ascending from 0)
 *                          C[tile] = alpha*acc + (pc == 0 ? beta*C : C)   (valid mr x nr part only;
 *                          beta == 0 on the first slice: C is not read)
 * Packing turns all four transpose combinations into the same contiguous microkernel loop.
 *
 * K slices: K is cut into ceil(K / GEMM_KC) slices of equal length (rounded up to a multiple of 4; the
 * last one takes the rest), so K = 288 runs as 2 x 144, not 256 + 32. The cut depends on K only.
 *
 * Determinism: every C element is summed in the same order (p ascending within a K slice, slices
 * ascending, the slice cut a function of K alone, partial tiles through the same arithmetic as full
 * ones) whatever M, N, the block sizes or its position in a tile, so a sub-block of a product computed
 * alone is bit-identical to the same block of the whole product. The conv2d and dense drivers and
 * cnn_f32_gemm_parallel (src/core/gemm.c) rely on this to split products over threads.
 *
 * Buffers: the packed panels live in the caller's workspace (GEMM_FN_WS: GEMM_WS_FLOATS floats, 64-byte
 * aligned) or, for GEMM_FN, on the stack: Ap = MC*KC floats, Bp = KC*NC floats (sizes in the includer;
 * see docs/kernels.md). No allocation, no threads, no over-read of A, B or C.
 *
 * The includer defines, before including:
 *   GEMM_FN, GEMM_FN_WS   names of the exported functions (cnn_sgemm_fn, and the same with a workspace)
 *   GEMM_MR, GEMM_NR      the microkernel tile
 *   GEMM_KC, GEMM_MC, GEMM_NC   the cache blocks (MR divides MC, NR divides NC, 4 divides KC)
 *   GEMM_IR_OUTER  optional: the tile loops' order (GEMM_TILES_BEGIN)
 *   GEMM_UKERNEL   optional: void f(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc,
 *                                   float alpha, float beta, size_t mr, size_t nr)
 *                  C[0:mr, 0:nr] = alpha * (Ap^T Bp)[0:mr, 0:nr] + beta * C (beta == 0: C not read;
 *                  beta == 1: C + alpha*acc). Ap and Bp are full, zero-padded MR x kc / kc x NR panels. The same arithmetic for
 *                  every mr, nr.
 *   GEMM_FN_PACK_A, GEMM_FN_PA   optional: names of the packed-A entry points (cnn_sgemm_pack_a_fn,
 *                  cnn_sgemm_pa_fn in kernels.h), defined at the end of this file.
 *   GEMM_PACK_A, GEMM_PACK_B   optional: faster versions of gemm_pack_a / gemm_pack_b (same layout).
 */
#include <stddef.h>
#include <string.h>

#include "../kernels.h"

#ifndef GEMM_FN
#error "define GEMM_FN before including gemm_impl.h"
#endif

#if GEMM_MC % GEMM_MR != 0 || GEMM_NC % GEMM_NR != 0 || GEMM_KC % 4 != 0
#error "GEMM_MR must divide GEMM_MC, GEMM_NR must divide GEMM_NC and 4 must divide GEMM_KC"
#endif

#define GEMM_WS_FLOATS (GEMM_MC * GEMM_KC + GEMM_KC * GEMM_NC)

#ifndef GEMM_UKERNEL
/* Portable microkernel: acc[MR][NR] with fixed trip counts so the compiler keeps it in vector registers
 * (GEMM_MR x GEMM_NR = 4 x 8: 8 SSE registers); the j loop is the contiguous axpy the compiler
 * vectorises. Write-back of the valid part with the contract's beta rules. */
static void gemm_ukernel_portable(size_t kc, const float *restrict a, const float *restrict b,
                                  float *restrict c, size_t ldc, float alpha, float beta, size_t mr,
                                  size_t nr) {
    float acc[GEMM_MR][GEMM_NR];
    for (size_t i = 0; i < GEMM_MR; i++)
        for (size_t j = 0; j < GEMM_NR; j++) acc[i][j] = 0.0f;
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * GEMM_NR, *ap = a + p * GEMM_MR;
#pragma GCC unroll 8
        for (size_t i = 0; i < GEMM_MR; i++) {
            const float ai = ap[i];
#pragma GCC unroll 16
            for (size_t j = 0; j < GEMM_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (size_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            for (size_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j];
        else if (beta == 1.0f)
            for (size_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + ci[j];
        else
            for (size_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
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

#ifndef GEMM_PACK_A
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
#define GEMM_PACK_A gemm_pack_a
#endif

#ifndef GEMM_PACK_B
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
#define GEMM_PACK_B gemm_pack_b
#endif

/* The two inner loops over the tiles of an (mc x nc) block, binding ir, mr, jr, nr. Default: jr outer, so
 * one B micro-panel (kc x NR) stays in L1 while the A micro-panels stream from L2. GEMM_IR_OUTER: ir
 * outer, so one A micro-panel (MR x kc) stays in L1 and the B micro-panels stream from L2 (BLIS's order
 * for its skx kernel, whose A panel is our B). The order changes no sum. */
#ifdef GEMM_IR_OUTER
#define GEMM_TILES_BEGIN                                                                                   \
    for (size_t ir = 0; ir < mc; ir += GEMM_MR) {                                                          \
        const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;                                           \
        for (size_t jr = 0; jr < nc; jr += GEMM_NR) {                                                      \
            const size_t nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
#else
#define GEMM_TILES_BEGIN                                                                                   \
    for (size_t jr = 0; jr < nc; jr += GEMM_NR) {                                                          \
        const size_t nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;                                           \
        for (size_t ir = 0; ir < mc; ir += GEMM_MR) {                                                      \
            const size_t mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
#endif
#define GEMM_TILES_END                                                                                     \
    }                                                                                                      \
    }

/* The K slice length: ceil(K / slices) rounded up to a multiple of 4 (a function of K alone). */
static size_t gemm_kc(size_t K) {
    const size_t slices = (K + GEMM_KC - 1) / GEMM_KC;
    size_t kc = (K + slices - 1) / slices;
    kc = (kc + 3) & ~(size_t)3;
    return kc < GEMM_KC ? kc : GEMM_KC;
}

void GEMM_FN_WS(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc, float *ws) {
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        gemm_scale_c(M, N, beta, C, ldc);
        return;
    }
    float *Ap = ws, *Bp = ws + GEMM_MC * GEMM_KC;
    const size_t kc_full = gemm_kc(K);

    for (size_t jc = 0; jc < N; jc += GEMM_NC) {
        const size_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (size_t pc = 0; pc < K; pc += kc_full) {
            const size_t kc = K - pc < kc_full ? K - pc : kc_full;
            const float beta_eff = pc == 0 ? beta : 1.0f;
            GEMM_PACK_B(trans_b, B, ldb, pc, kc, jc, nc, Bp);
            for (size_t ic = 0; ic < M; ic += GEMM_MC) {
                const size_t mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
                GEMM_PACK_A(trans_a, A, lda, ic, mc, pc, kc, Ap);
                GEMM_TILES_BEGIN
                GEMM_UKERNEL(kc, Ap + ir * kc, Bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta_eff, mr,
                             nr);
                GEMM_TILES_END
            }
        }
    }
}

/* The stack fallback lives in its own frame so that the common path (a thread workspace set) does not
 * reserve GEMM_WS_FLOATS floats of stack. */
static __attribute__((noinline)) void gemm_on_stack(int trans_a, int trans_b, size_t M, size_t N, size_t K,
                                                    float alpha, const float *A, size_t lda, const float *B,
                                                    size_t ldb, float beta, float *C, size_t ldc) {
    _Alignas(64) float ws[GEMM_WS_FLOATS];
    GEMM_FN_WS(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws);
}

void GEMM_FN(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
             const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    float *cur = cnn_f32_gemm_ws_current;
    if (cur) GEMM_FN_WS(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, cur);
    else gemm_on_stack(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#ifdef GEMM_FN_PACK_A
/* ---- packed-A entry points (kernels.h: cnn_sgemm_pack_a_fn, cnn_sgemm_pa_fn) ----
 * Ap holds all of op(A) [M, K] as MR-row panels, panel-major: the panel of rows [ir, ir + MR) starts at
 * Ap + ir * K and holds op(A)[ir + i][p] at [p * MR + i] (rows past M zero), so the K slices of
 * GEMM_FN_WS (gemm_kc) are contiguous runs of it and the rows from any multiple of MR on are again a
 * packed matrix (Ap + m0 * K). GEMM_FN_PA runs GEMM_FN_WS's loop nest on it, so a product through Ap is
 * bit-identical to the same product through GEMM_FN (alpha 1), and with bias to that product followed by
 * C += bias[i]. */
void GEMM_FN_PACK_A(int trans_a, size_t M, size_t K, const float *A, size_t lda, float *Ap) {
    if (M == 0 || K == 0) return;
    const size_t kc_full = gemm_kc(K);
    for (size_t ir = 0; ir < M; ir += GEMM_MR) {
        const size_t mr = M - ir < GEMM_MR ? M - ir : GEMM_MR;
        for (size_t pc = 0; pc < K; pc += kc_full) {
            const size_t kc = K - pc < kc_full ? K - pc : kc_full;
            GEMM_PACK_A(trans_a, A, lda, ir, mr, pc, kc, Ap + ir * K + pc * GEMM_MR);
        }
    }
}

static void gemm_pa_ws(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B, size_t ldb,
                       float beta, const float *bias, float *C, size_t ldc, float *ws) {
    float *Bp = ws + GEMM_MC * GEMM_KC;
    const size_t kc_full = gemm_kc(K);
    for (size_t jc = 0; jc < N; jc += GEMM_NC) {
        const size_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (size_t pc = 0; pc < K; pc += kc_full) {
            const size_t kc = K - pc < kc_full ? K - pc : kc_full;
            const float beta_eff = pc == 0 ? beta : 1.0f;
            const float *bias_eff = pc + kc >= K ? bias : NULL; /* after the last slice's sum */
            GEMM_PACK_B(trans_b, B, ldb, pc, kc, jc, nc, Bp);
            for (size_t ic = 0; ic < M; ic += GEMM_MC) {
                const size_t mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
                const float *ap = Ap + ic * K + pc * GEMM_MR;
                GEMM_TILES_BEGIN
                float *c = C + (ic + ir) * ldc + jc + jr;
                GEMM_UKERNEL(kc, ap + ir * K, Bp + jr * kc, c, ldc, 1.0f, beta_eff, mr, nr);
                if (bias_eff) /* the tile is in L1: add the bias after the last slice's sum */
                    for (size_t i = 0; i < mr; i++) {
                        const float bi = bias_eff[ic + ir + i];
                        float *restrict ci = c + i * ldc;
                        for (size_t j = 0; j < nr; j++) ci[j] += bi;
                    }
                GEMM_TILES_END
            }
        }
    }
}

static __attribute__((noinline)) void gemm_pa_on_stack(size_t M, size_t N, size_t K, const float *Ap,
                                                       int trans_b, const float *B, size_t ldb, float beta,
                                                       const float *bias, float *C, size_t ldc) {
    _Alignas(64) float ws[GEMM_WS_FLOATS];
    gemm_pa_ws(M, N, K, Ap, trans_b, B, ldb, beta, bias, C, ldc, ws);
}

void GEMM_FN_PA(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B, size_t ldb,
                float beta, const float *bias, float *C, size_t ldc, float *ws) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        gemm_scale_c(M, N, beta, C, ldc);
        if (bias)
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) C[i * ldc + j] += bias[i];
        return;
    }
    if (!ws) ws = cnn_f32_gemm_ws_current;
    if (ws) gemm_pa_ws(M, N, K, Ap, trans_b, B, ldb, beta, bias, C, ldc, ws);
    else gemm_pa_on_stack(M, N, K, Ap, trans_b, B, ldb, beta, bias, C, ldc);
}
#endif
