/* internal.h — what every library source file shares: the context, errors, allocation, overflow-checked
 * sizes, the thread pool and the RNG. Not installed. */
#ifndef CNN_INTERNAL_H
#define CNN_INTERNAL_H

#include "cnn.h"
#include "../kernels/kernels.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CNN_ALIGN 64
#define CNN_MAX_INPUTS 8
#define CNN_NAME_MAX 64

struct cnn_ctx {
    cnn_allocator alloc;
    size_t threads;
    cnn_kernels kernels;
    float *gemm_ws;        /* threads * CNN_F32_GEMM_WS_FLOATS floats: each pool thread's SGEMM packing buffers */
    size_t gemm_ws_threads;
    size_t mem_limit, mem_live, mem_peak; /* bytes through cnn_mem_alloc; limit 0 = none */
    int mem_limit_hit;
    char error[1024];
};

/* ---- errors ---- */
#if defined(__GNUC__)
#define CNN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CNN_PRINTF(a, b)
#endif
/* Record a message in ctx and return s. ctx may be NULL. */
cnn_status cnn_error(cnn_ctx *ctx, cnn_status s, const char *fmt, ...) CNN_PRINTF(3, 4);
cnn_status cnn_verror(cnn_ctx *ctx, cnn_status s, const char *fmt, va_list ap);
void cnn_clear_error(cnn_ctx *ctx);

#define CNN_TRY(expr)                                                                                      \
    do {                                                                                                   \
        cnn_status try_st_ = (expr);                                                                       \
        if (try_st_ != CNN_OK) {                                                                           \
            st = try_st_;                                                                                  \
            goto cleanup;                                                                                  \
        }                                                                                                  \
    } while (0)

/* A broken internal invariant is a bug: abort through a hook (never used for bad input). */
void cnn_assert_fail(const char *expr, const char *file, int line);
#define CNN_ASSERT(e) ((e) ? (void)0 : cnn_assert_fail(#e, __FILE__, __LINE__))

/* ---- allocation (64-byte aligned, through the context's allocator) ---- */
void *cnn_mem_alloc(cnn_ctx *ctx, size_t size);          /* NULL on failure, no message */
void *cnn_mem_calloc(cnn_ctx *ctx, size_t n, size_t sz); /* zeroed; NULL on failure or overflow */
void cnn_mem_free(cnn_ctx *ctx, void *p);
/* Allocation that records "out of memory allocating <what> (<bytes> bytes)" on failure. */
cnn_status cnn_mem_alloc_checked(cnn_ctx *ctx, size_t size, const char *what, void **out);

/* At most this many class names on a net or in a file's "cnn.classes" metadata. */
#define CNN_MAX_CLASS_NAMES 65536u

/* ---- overflow-checked sizes: return false on overflow ---- */
static inline bool cnn_size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool cnn_size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool cnn_size_mul3(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    return cnn_size_mul(a, b, &t) && cnn_size_mul(t, c, out);
}
static inline bool cnn_size_mul4(size_t a, size_t b, size_t c, size_t d, size_t *out) {
    size_t t;
    return cnn_size_mul3(a, b, c, &t) && cnn_size_mul(t, d, out);
}
static inline size_t cnn_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
/* Elements of a per-sample shape; false on overflow. */
static inline bool cnn_shape_count(cnn_shape s, size_t *out) { return cnn_size_mul3(s.c, s.h, s.w, out); }

/* ---- thread pool ----
 * cnn_pool_for runs fn(arg, task, thread) for task in [0, n_tasks) on up to ctx->threads threads with a
 * static partition: thread t runs a contiguous range of tasks, so work assignment depends only on n_tasks
 * and the thread count. `thread` < ctx->threads indexes per-thread workspace. */
typedef void (*cnn_task_fn)(void *arg, size_t task, size_t thread);
void cnn_pool_for(const cnn_ctx *ctx, size_t n_tasks, cnn_task_fn fn, void *arg);
/* A team: fn(arg, t, T) runs once on each of T threads (T <= cnn_pool_team_size(ctx, max_threads)), all at
 * once, so that they may meet at cnn_pool_barrier(T) (every one of the T calls must reach each barrier the
 * same number of times). T == 1 (one thread, or OpenMP giving fewer threads than asked) runs the whole
 * work in one call, where the barrier is a no-op. Thread t has SGEMM workspace slot t. */
typedef void (*cnn_team_fn)(void *arg, size_t t, size_t T);
size_t cnn_pool_team_size(const cnn_ctx *ctx, size_t max_threads);
void cnn_pool_team(const cnn_ctx *ctx, size_t max_threads, cnn_team_fn fn, void *arg);
void cnn_pool_barrier(size_t T);
/* Batch lanes (lanes.c): fn(arg, t, T) once on each of exactly T threads, each thread with no SGEMM
 * workspace of its own (each lane's calls enter their own context's); the calls may meet at
 * cnn_pool_barrier(T). Returns 0, or -1 (nothing ran) when OpenMP gives fewer than T threads or T < 2. */
int cnn_pool_lanes(size_t T, cnn_team_fn fn, void *arg);
/* Point the calling thread's SGEMM workspace at the context's slot 0 for the duration of a library call,
 * unless it already has one (a pool task); returns the previous value for cnn_gemm_ws_leave. */
float *cnn_gemm_ws_enter(const cnn_ctx *ctx);
void cnn_gemm_ws_leave(float *prev);
/* Split [0, n) into `parts` contiguous ranges; range i is [*begin, *end). */
static inline void cnn_split_range(size_t n, size_t parts, size_t i, size_t *begin, size_t *end) {
    *begin = n * i / parts;
    *end = n * (i + 1) / parts;
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 (the library's own, never rand()) ---- */
typedef struct cnn_rng {
    uint64_t s[4];
} cnn_rng;
void cnn_rng_seed(cnn_rng *r, uint64_t seed);
uint64_t cnn_rng_u64(cnn_rng *r);
double cnn_rng_uniform(cnn_rng *r);                 /* [0, 1) */
double cnn_rng_normal(cnn_rng *r);                  /* N(0, 1) */
uint64_t cnn_rng_below(cnn_rng *r, uint64_t bound); /* uniform in [0, bound), bound > 0 */
/* Counter-based: a well-mixed 64-bit value from (seed, counter), for parallel deterministic draws
 * (splitmix64's finaliser of seed ^ counter * odd constant). Inline: per-element callers (dropout) are loops. */
static inline uint64_t cnn_hash64(uint64_t seed, uint64_t counter) {
    uint64_t z = (seed ^ (counter * 0xd1b54a32d192ed03ull)) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- small string buffer (for model text output) ---- */
typedef struct cnn_strbuf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed; contents truncated */
} cnn_strbuf;
void cnn_strbuf_printf(cnn_strbuf *b, const char *fmt, ...) CNN_PRINTF(2, 3);
void cnn_strbuf_release(cnn_strbuf *b);

/* Printing a float so that it parses back to the same value ("%.9g" trimmed). */
void cnn_format_float(char *buf, size_t n, double v);

/* ---- network internals used by optimizers, IO and tests ---- */
/* The contiguous trainable parameter and gradient arenas of a compiled net (count floats each; gradients
 * in the same layout). */
cnn_status cnn_net_arenas(cnn_net *net, float **params, float **grads, size_t *count);
cnn_ctx *cnn_net_ctx(const cnn_net *net);

#endif
