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

size_t cnn_pool_team_size(const cnn_ctx *ctx, size_t max_threads) {
    size_t T = ctx->threads ? ctx->threads : 1;
    if (T > max_threads) T = max_threads;
    if (T > ctx->gemm_ws_threads) T = ctx->gemm_ws_threads;
    return T ? T : 1;
}

/* fn(arg, t, T) on each of T threads of one OpenMP region, thread t's SGEMM workspace slot t of ws (NULL:
 * none, each call enters its own context's). Returns whether OpenMP gave all T threads; when it did not,
 * `alone` says whether thread 0 runs the whole work as fn(arg, 0, 1) (else nothing runs). */
static int run_team(size_t T, float *ws, int alone, cnn_team_fn fn, void *arg) {
    int all = 0;
#pragma omp parallel num_threads((int)T)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        float *prev = cnn_f32_gemm_ws_current;
        cnn_f32_gemm_ws_current = ws ? ws + t * CNN_F32_GEMM_WS_FLOATS : NULL;
        if (nt == T) {
            fn(arg, t, T);
            if (t == 0) all = 1;
        } else if (t == 0 && alone) {
            fn(arg, 0, 1);
        }
        cnn_f32_gemm_ws_current = prev;
    }
    return all;
}

void cnn_pool_team(const cnn_ctx *ctx, size_t max_threads, cnn_team_fn fn, void *arg) {
    const size_t T = cnn_pool_team_size(ctx, max_threads);
    if (T <= 1) {
        float *prev = cnn_gemm_ws_enter(ctx);
        fn(arg, 0, 1);
        cnn_gemm_ws_leave(prev);
        return;
    }
    run_team(T, ctx->gemm_ws, 1, fn, arg); /* (fewer threads than asked: the whole team's work alone) */
}

void cnn_pool_barrier(size_t T) {
    if (T > 1) {
#pragma omp barrier
    }
}

int cnn_pool_lanes(size_t T, cnn_team_fn fn, void *arg) {
    if (T < 2) return -1;
    return run_team(T, NULL, 0, fn, arg) ? 0 : -1; /* each lane's net enters its own context's workspace */
}
