/* pool.c — cnn_pool_for on OpenMP: a static partition of tasks over the context's threads. Thread t runs
 * tasks [n*t/T, n*(t+1)/T), so which thread does what depends only on n_tasks and T. */
#include "internal.h"

#include <omp.h>

void cnn_pool_for(const cnn_ctx *ctx, size_t n_tasks, cnn_task_fn fn, void *arg) {
    size_t T = ctx->threads ? ctx->threads : 1;
    if (T > n_tasks) T = n_tasks;
    if (T <= 1) {
        for (size_t i = 0; i < n_tasks; i++) fn(arg, i, 0);
        return;
    }
#pragma omp parallel num_threads((int)T)
    {
        size_t t = (size_t)omp_get_thread_num();
        size_t nt = (size_t)omp_get_num_threads();
        size_t b, e;
        cnn_split_range(n_tasks, nt, t, &b, &e);
        for (size_t i = b; i < e; i++) fn(arg, i, t);
    }
}
