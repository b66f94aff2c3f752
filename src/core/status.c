/* status.c — status strings, the per-context error message, the assertion hook. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cnn_status_string(cnn_status s) {
    switch (s) {
#define CNN_STATUS(sym, val, text) \
    case sym:                      \
        return text;
#include "cnn_status.inc"
#undef CNN_STATUS
    default:
        return "unknown status";
    }
}

const char *cnn_version_string(void) { return "0.1.0"; }

cnn_status cnn_verror(cnn_ctx *ctx, cnn_status s, const char *fmt, va_list ap) {
    if (ctx) vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    return s;
}

cnn_status cnn_error(cnn_ctx *ctx, cnn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cnn_verror(ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

void cnn_clear_error(cnn_ctx *ctx) {
    if (ctx) ctx->error[0] = '\0';
}

const char *cnn_ctx_last_error(const cnn_ctx *ctx) { return ctx ? ctx->error : "no context"; }

void cnn_assert_fail(const char *expr, const char *file, int line) {
    /* A broken invariant inside the library: a bug, never bad input. */
    fprintf(stderr, "libcnn: internal error: %s at %s:%d\n", expr, file, line);
    abort();
}
