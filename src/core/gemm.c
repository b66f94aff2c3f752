/* gemm.c — cnn_f32_gemm_parallel: the threaded SGEMM driver (contract in src/kernels/kernels.h).
 *
 * C is cut into ctx->threads blocks and each block is one ctx->kernels.sgemm call on cnn_pool_for:
 *   - by columns, in multiples of 32 (the AVX-512 tile width, two AVX2 tiles), when M <= N or M has too
 *     few 12-row blocks:
 *     each thread packs its own columns of B and all of A (the duplicated packing is M*K per thread);
 *   - else by rows, in multiples of 12 (the AVX-512 tile height, two AVX2 tiles): each thread packs all
 *     of B (K*N).
 * The kernels sum every C element in an order that does not depend on the block it is computed in
 * (gemm_impl.h), so the result is bit-identical for every thread count. Products under ~1 MFLOP run
 * as one call: a parallel region costs a few microseconds. No allocation, no threads created here (the
 * pool's), no error paths. */
#include "internal.h"

typedef struct gemm_job {
    cnn_sgemm_fn fn;
    int ta, tb, by_rows;
    size_t M, N, K, lda, ldb, ldc, parts;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

#define GEMM_PAR_COL_BLOCK 32
#define GEMM_PAR_ROW_BLOCK 12
#define GEMM_PAR_MIN_FLOPS 1e6

static void gemm_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const gemm_job *j = arg;
    const size_t unit = j->by_rows ? GEMM_PAR_ROW_BLOCK : GEMM_PAR_COL_BLOCK, n = j->by_rows ? j->M : j->N;
    size_t b, e;
    cnn_split_range((n + unit - 1) / unit, j->parts, task, &b, &e);
    b *= unit;
    e = e * unit < n ? e * unit : n;
    if (b >= e) return;
    if (j->by_rows) {
        const float *A = j->ta ? j->A + b : j->A + b * j->lda;
        j->fn(j->ta, j->tb, e - b, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + b * j->ldc,
              j->ldc);
    } else {
        const float *B = j->tb ? j->B + b * j->ldb : j->B + b;
        j->fn(j->ta, j->tb, j->M, e - b, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + b, j->ldc);
    }
}

void cnn_f32_gemm_parallel(const cnn_ctx *ctx, int trans_a, int trans_b, size_t M, size_t N, size_t K,
                           float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                           float *C, size_t ldc) {
    const size_t T = ctx->threads ? ctx->threads : 1;
    const size_t col_blocks = (N + GEMM_PAR_COL_BLOCK - 1) / GEMM_PAR_COL_BLOCK;
    const size_t row_blocks = (M + GEMM_PAR_ROW_BLOCK - 1) / GEMM_PAR_ROW_BLOCK;
    if (T <= 1 || 2.0 * (double)M * (double)N * (double)K < GEMM_PAR_MIN_FLOPS ||
        (col_blocks < 2 && row_blocks < 2)) {
        float *prev = cnn_gemm_ws_enter(ctx);
        ctx->kernels.sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        cnn_gemm_ws_leave(prev);
        return;
    }
    gemm_job j = {.fn = ctx->kernels.sgemm, .ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K,
                  .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    if (M > N)
        j.by_rows = row_blocks >= T || row_blocks > col_blocks;
    else
        j.by_rows = col_blocks < T && row_blocks > col_blocks;
    const size_t blocks = j.by_rows ? row_blocks : col_blocks;
    j.parts = T < blocks ? T : blocks;
    cnn_pool_for(ctx, j.parts, gemm_task, &j);
}
