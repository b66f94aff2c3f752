/* pool.c — cnn_pool_for on OpenMP: a static partition of tasks over the context's threads. Thread t runs
 * tasks [n*t/T, n*(t+1)/T), so which thread does what depends only on n_tasks and T. */
#include "internal.h"

#include <omp.h>

float *cnn_gemm_ws_enter(const cnn_ctx *ctx) {
    float *prev = cnn_f32_gemm_ws_current;
    if (!prev) cnn_f32_gemm_ws_current = ctx->gemm_ws; /* inside a pool task the thread already has its own */
    return prev;
}

void cnn_gemm_ws_leave(float *prev) { cnn_f32_gemm_ws_current = prev; }

void cnn_pool_for(const cnn_ctx *ctx, size_t n_tasks, cnn_task_fn fn, void *arg) {
    size_t T = ctx->threads ? ctx->threads : 1;
    if (T > n_tasks) T = n_tasks;
    if (T > ctx->gemm_ws_threads) T = ctx->gemm_ws_threads; /* never more threads than workspaces */
    if (T <= 1) {
        float *prev = cnn_gemm_ws_enter(ctx);
        for (size_t i = 0; i < n_tasks; i++) fn(arg, i, 0);
        cnn_gemm_ws_leave(prev);
        return;
    }
#pragma omp parallel num_threads((int)T)
    {
        size_t t = (size_t)omp_get_thread_num();
        size_t nt = (size_t)omp_get_num_threads();
        size_t b, e;
        float *prev = cnn_f32_gemm_ws_current;
        cnn_f32_gemm_ws_current = ctx->gemm_ws + t * CNN_F32_GEMM_WS_FLOATS;
        cnn_split_range(n_tasks, nt, t, &b, &e);
        for (size_t i = b; i < e; i++) fn(arg, i, t);
        cnn_f32_gemm_ws_current = prev;
    }
}
