/* bench.c — what the benchmarks need from the library: the roof (cnn_bench_peak) and a threaded SGEMM on the
 * context's kernels (cnn_sgemm). Nothing here is used by forward/backward.
 *
 * cnn_bench_peak  one copy of the register-resident FMA loop of src/kernels/f32_peak/ per thread, through
 *                 cnn_pool_for (one task per thread). The iteration count is calibrated on one thread so
 *                 that a round takes about seconds/5; after one untimed warm-up round (OpenMP starts its
 *                 threads, the core leaves any low-power state) five rounds are timed and the best is
 *                 reported: the roof is what the hardware can do, so noise from other processes is dropped.
 *                 FLOPs = threads * iterations * FLOPs per iteration of the kernel (peak.h).
 * cnn_sgemm       argument checks, then the library's threaded SGEMM driver cnn_f32_gemm_parallel
 *                 (src/core/gemm.c: C split by columns or rows over the context's threads, each block one
 *                 ctx->kernels.sgemm call), so `cnn bench gemm` measures what the layers run. The result is
 *                 bit-identical for every thread count (gemm_impl.h's fixed summation order).
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include "../kernels/f32_peak/peak.h"

#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- peak ---- */

typedef double (*peak_fn)(size_t iters, float *sink);

#define PEAK_MAX_THREADS 1024
#define PEAK_ROUNDS 5

typedef struct peak_arg {
    peak_fn fn;
    size_t iters;
    double flops[PEAK_MAX_THREADS];
    float sink[PEAK_MAX_THREADS];
} peak_arg;

static void peak_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    peak_arg *p = arg;
    p->flops[task] = p->fn(p->iters, &p->sink[task]);
}

/* One round on T threads: GFLOP/s over the wall time of the whole round. */
static double peak_round(const cnn_ctx *pctx, size_t T, peak_arg *p) {
    double t0 = now_seconds();
    cnn_pool_for(pctx, T, peak_task, p);
    double dt = now_seconds() - t0, flops = 0;
    for (size_t i = 0; i < T; i++) flops += p->flops[i];
    return dt > 0 ? flops / dt * 1e-9 : 0;
}

cnn_status cnn_bench_peak(cnn_ctx *ctx, size_t threads, double seconds, double *gflops) {
    if (gflops) *gflops = 0;
    if (!ctx || !gflops) return CNN_ERR_INVALID_ARG;
    if (!(seconds > 0) || seconds > 3600)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_bench_peak: seconds must be in (0, 3600], got %g", seconds);
    size_t T = threads ? threads : ctx->threads;
    if (T > PEAK_MAX_THREADS)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_bench_peak: at most %d threads, got %zu", PEAK_MAX_THREADS, T);
    peak_arg *p = NULL;
    cnn_status st = cnn_mem_alloc_checked(ctx, sizeof *p, "peak benchmark state", (void **)&p);
    if (st) return st;
    memset(p, 0, sizeof *p);
    p->fn = ctx->kernels.isa >= CNN_ISA_AVX512 ? cnn_f32_peak_fma_avx512
            : ctx->kernels.isa >= CNN_ISA_AVX2 ? cnn_f32_peak_fma_avx2 : cnn_f32_peak_fma_scalar;
    /* A context like ctx but with T threads (cnn_pool_for reads only the thread count). */
    cnn_ctx *pctx = NULL;
    st = cnn_mem_alloc_checked(ctx, sizeof *pctx, "peak benchmark context", (void **)&pctx);
    if (st) {
        cnn_mem_free(ctx, p);
        return st;
    }
    memcpy(pctx, ctx, sizeof *pctx);
    pctx->threads = T;
    /* Calibrate on one thread: double the iterations until a call takes >= 10 ms (or a tenth of the budget). */
    double target_cal = seconds / 10 < 0.01 ? seconds / 10 : 0.01, dt = 0;
    size_t iters = 1024;
    for (;;) {
        double t0 = now_seconds();
        p->fn(iters, &p->sink[0]);
        dt = now_seconds() - t0;
        if (dt >= target_cal || iters > ((size_t)1 << 40)) break;
        iters *= 2;
    }
    double per_round = seconds / (PEAK_ROUNDS + 1);
    double scaled = dt > 0 ? (double)iters * per_round / dt : (double)iters;
    p->iters = scaled < 1 ? 1 : (size_t)scaled;
    peak_round(pctx, T, p); /* warm-up */
    double best = 0;
    for (int r = 0; r < PEAK_ROUNDS; r++) {
        double g = peak_round(pctx, T, p);
        if (g > best) best = g;
    }
    *gflops = best;
    cnn_mem_free(ctx, pctx);
    cnn_mem_free(ctx, p);
    return CNN_OK;
}

/* ---- threaded SGEMM ---- */

cnn_status cnn_sgemm(cnn_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                     const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (m == 0 || n == 0) return CNN_OK;
    if (!c || (k && (!a || !b)))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_sgemm: NULL matrix");
    size_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    if (lda < a_cols || ldb < b_cols || ldc < n)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                         "cnn_sgemm: leading dimensions too small (lda %zu < %zu, ldb %zu < %zu or ldc %zu < %zu)",
                         lda, a_cols, ldb, b_cols, ldc, n);
    size_t t;
    if (!cnn_size_mul(m, ldc, &t) || !cnn_size_mul(trans_a ? k : m, lda, &t) ||
        !cnn_size_mul(trans_b ? n : k, ldb, &t))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_sgemm: matrix sizes overflow");
    cnn_f32_gemm_parallel(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return CNN_OK;
}
