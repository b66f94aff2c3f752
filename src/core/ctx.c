/* ctx.c — the context: allocator, thread count, kernel table, last error. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const cnn_allocator cnn_default_allocator;

#define CNN_MAX_THREADS 1024

cnn_ctx_options cnn_ctx_options_default(void) {
    cnn_ctx_options o = {0, NULL};
    return o;
}

static size_t online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

/* Per-thread SGEMM packing buffers on the heap, so no kernel needs a large thread stack. */
static cnn_status alloc_gemm_ws(cnn_ctx *ctx, size_t threads) {
    size_t bytes;
    if (!cnn_size_mul3(threads, CNN_F32_GEMM_WS_FLOATS, sizeof(float), &bytes)) return CNN_ERR_NOMEM;
    float *ws = cnn_mem_alloc(ctx, bytes);
    if (!ws) return CNN_ERR_NOMEM;
    cnn_mem_free(ctx, ctx->gemm_ws);
    ctx->gemm_ws = ws;
    ctx->gemm_ws_threads = threads;
    return CNN_OK;
}

cnn_status cnn_ctx_create(cnn_ctx **out, const cnn_ctx_options *opt) {
    if (!out) return CNN_ERR_INVALID_ARG;
    *out = NULL;
    cnn_ctx_options o = opt ? *opt : cnn_ctx_options_default();
    const cnn_allocator *a = o.allocator ? o.allocator : &cnn_default_allocator;
    if (!a->alloc || !a->free) return CNN_ERR_INVALID_ARG;
    if (o.threads > CNN_MAX_THREADS) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = a->alloc(a->user, cnn_round_up(sizeof *ctx, CNN_ALIGN), CNN_ALIGN);
    if (!ctx) return CNN_ERR_NOMEM;
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = *a;
    ctx->threads = o.threads ? o.threads : online_cpus();
    cnn_isa limit = CNN_ISA_AVX512;
    const char *env = getenv("CNN_ISA");
    if (env && *env) {
        if (!strcmp(env, "scalar")) limit = CNN_ISA_SCALAR;
        else if (!strcmp(env, "avx2")) limit = CNN_ISA_AVX2;
        else if (!strcmp(env, "avx512")) limit = CNN_ISA_AVX512;
        else {
            a->free(a->user, ctx);
            return CNN_ERR_INVALID_ARG;
        }
    }
    cnn_kernels_select(&ctx->kernels, limit);
    if (alloc_gemm_ws(ctx, ctx->threads) != CNN_OK) {
        a->free(a->user, ctx);
        return CNN_ERR_NOMEM;
    }
    *out = ctx;
    return CNN_OK;
}

void cnn_ctx_free(cnn_ctx *ctx) {
    if (!ctx) return;
    cnn_allocator a = ctx->alloc;
    cnn_mem_free(ctx, ctx->gemm_ws);
    a.free(a.user, ctx);
}

size_t cnn_ctx_threads(const cnn_ctx *ctx) { return ctx ? ctx->threads : 0; }

cnn_status cnn_ctx_set_threads(cnn_ctx *ctx, size_t threads) {
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (threads > CNN_MAX_THREADS)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "threads must be at most %d, got %zu", CNN_MAX_THREADS, threads);
    size_t t = threads ? threads : online_cpus();
    if (t > ctx->gemm_ws_threads && alloc_gemm_ws(ctx, t) != CNN_OK)
        return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating workspace for %zu threads", t);
    ctx->threads = t;
    return CNN_OK;
}

const char *cnn_ctx_isa(const cnn_ctx *ctx) { return ctx ? ctx->kernels.isa_name : ""; }
