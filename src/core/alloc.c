/* alloc.c — 64-byte aligned allocation through the context's allocator. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static void *default_alloc(void *user, size_t size, size_t alignment) {
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : 1) != 0) return NULL;
    return p;
}

static void default_free(void *user, void *p) {
    (void)user;
    free(p);
}

const cnn_allocator cnn_default_allocator = {default_alloc, default_free, NULL};

/* Every block carries a 64-byte header holding its size, so the context can keep the bytes in use, the
 * peak, and refuse what would pass its memory limit (cnn_ctx_set_memory_limit). */
#define HDR CNN_ALIGN

void *cnn_mem_alloc(cnn_ctx *ctx, size_t size) {
    if (size > (SIZE_MAX >> 1)) return NULL;
    size = cnn_round_up(size ? size : 1, CNN_ALIGN);
    if (ctx->mem_limit && (size > ctx->mem_limit || ctx->mem_live > ctx->mem_limit - size)) {
        ctx->mem_limit_hit = 1;
        return NULL;
    }
    char *p = ctx->alloc.alloc(ctx->alloc.user, size + HDR, CNN_ALIGN);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    ctx->mem_live += size;
    if (ctx->mem_live > ctx->mem_peak) ctx->mem_peak = ctx->mem_live;
    return p + HDR;
}

void *cnn_mem_calloc(cnn_ctx *ctx, size_t n, size_t sz) {
    size_t bytes;
    if (!cnn_size_mul(n, sz, &bytes)) return NULL;
    void *p = cnn_mem_alloc(ctx, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cnn_mem_free(cnn_ctx *ctx, void *p) {
    if (!p) return;
    char *base = (char *)p - HDR;
    size_t size;
    memcpy(&size, base, sizeof size);
    ctx->mem_live -= size;
    ctx->alloc.free(ctx->alloc.user, base);
}

cnn_status cnn_mem_alloc_checked(cnn_ctx *ctx, size_t size, const char *what, void **out) {
    ctx->mem_limit_hit = 0;
    *out = cnn_mem_alloc(ctx, size);
    if (!*out && ctx->mem_limit_hit)
        return cnn_error(ctx, CNN_ERR_NOMEM,
                         "allocating %s (%zu bytes) would pass the memory limit of %zu bytes (%zu in use)", what,
                         size, ctx->mem_limit, ctx->mem_live);
    if (!*out) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating %s (%zu bytes)", what, size);
    return CNN_OK;
}

cnn_status cnn_ctx_set_memory_limit(cnn_ctx *ctx, size_t bytes) {
    if (!ctx) return CNN_ERR_INVALID_ARG;
    ctx->mem_limit = bytes;
    return CNN_OK;
}

size_t cnn_ctx_memory_in_use(const cnn_ctx *ctx) { return ctx ? ctx->mem_live : 0; }
size_t cnn_ctx_memory_peak(const cnn_ctx *ctx) { return ctx ? ctx->mem_peak : 0; }

void *cnn_alloc(cnn_ctx *ctx, size_t size) { return ctx ? cnn_mem_alloc(ctx, size) : NULL; }
void cnn_free(cnn_ctx *ctx, void *p) {
    if (ctx) cnn_mem_free(ctx, p);
}
