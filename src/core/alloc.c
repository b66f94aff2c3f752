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

void *cnn_mem_alloc(cnn_ctx *ctx, size_t size) {
    if (size > (SIZE_MAX >> 1)) return NULL;
    size = cnn_round_up(size ? size : 1, CNN_ALIGN);
    return ctx->alloc.alloc(ctx->alloc.user, size, CNN_ALIGN);
}

void *cnn_mem_calloc(cnn_ctx *ctx, size_t n, size_t sz) {
    size_t bytes;
    if (!cnn_size_mul(n, sz, &bytes)) return NULL;
    void *p = cnn_mem_alloc(ctx, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cnn_mem_free(cnn_ctx *ctx, void *p) {
    if (p) ctx->alloc.free(ctx->alloc.user, p);
}

cnn_status cnn_mem_alloc_checked(cnn_ctx *ctx, size_t size, const char *what, void **out) {
    *out = cnn_mem_alloc(ctx, size);
    if (!*out) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating %s (%zu bytes)", what, size);
    return CNN_OK;
}

void *cnn_alloc(cnn_ctx *ctx, size_t size) { return ctx ? cnn_mem_alloc(ctx, size) : NULL; }
void cnn_free(cnn_ctx *ctx, void *p) {
    if (ctx) cnn_mem_free(ctx, p);
}
