/* fuzz_common.h — shared helpers of the libFuzzer targets (fuzz/fuzz_*.c; docs/fuzz.md).
 * The loaders that only take a path get the input through an anonymous memory file (memfd) named by its
 * /proc/self/fd path: nothing is written to disk and nothing is left behind when a target is killed. */
#ifndef CNN_FUZZ_COMMON_H
#define CNN_FUZZ_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cnn.h"

/* An anonymous file holding data[0..size); *path receives its name. Returns the fd (close it), -1 on error. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char path[64]) {
    int fd = memfd_create("cnn-fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            perror("write");
            abort();
        }
        off += (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* One context for the whole run, single-threaded (deterministic, and libFuzzer runs one input at a time). */
static inline cnn_ctx *fuzz_ctx(void) {
    static cnn_ctx *ctx;
    if (!ctx) {
        cnn_ctx_options o = cnn_ctx_options_default();
        o.threads = 1;
        if (cnn_ctx_create(&ctx, &o) != CNN_OK) abort();
        /* A text may declare any number of parameters, which parse allocates and initialises: a memory
         * budget turns a huge declaration into a fast, clean CNN_ERR_NOMEM instead of a timeout. */
        cnn_ctx_set_memory_limit(ctx, (size_t)256 << 20);
    }
    return ctx;
}

/* A loader that fails must say why. */
static inline void fuzz_check_error(cnn_ctx *ctx, cnn_status st) {
    if (st == CNN_OK) return;
    const char *m = cnn_ctx_last_error(ctx);
    if (!m || !*m) {
        fprintf(stderr, "status %d without an error message\n", (int)st);
        abort();
    }
}
#endif
