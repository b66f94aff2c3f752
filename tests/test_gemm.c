/* test_gemm.c — the SGEMM kernels (cnn_f32_gemm_blocked_scalar and, when the CPU has them,
 * cnn_f32_gemm_blocked_avx2 and _avx512), their workspace entry points (_ws_), and the threaded driver
 * cnn_f32_gemm_parallel with 2 and 3 threads, against the float64 reference ref_gemm
 * (tests/ref/ref_conv.c): all four transpose combinations at sizes around the tiles (MR 4/6/12, NR
 * 8/16/32) and
 * the cache blocks (MC 72/144, NC 256/512, K slices of <= 256), alpha/beta (beta == 0 must not read C: C
 * starts as NaN), K == 0, leading dimensions larger than the rows (padding filled with NaN, so a read of
 * it shows; C's padding must stay untouched), NaN propagation, bit-identical sub-blocks, also across the
 * cache blocks (the conv2d and dense drivers split products over threads and rely on it), the parallel
 * driver bit-identical to one kernel call for 1, 2 and 3 threads, the AVX-512 kernel (and its packed-A
 * entry points) bit-identical to the AVX2 one, and the dispatch table (CNN_ISA=scalar|avx2|avx512).
 *
 * Tolerance, per element: |got - ref| <= 1e-5 * sqrt(K) * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "harness.h"
#include "kernels/kernels.h"
#include "ref/ref_conv.h"

typedef struct gemm_impl {
    const char *name;
    cnn_sgemm_fn fn;
} gemm_impl;

#define MAX_IMPLS 10

/* The workspace entry points and the threaded driver, wrapped as cnn_sgemm_fn. */
static _Alignas(64) float ws_buf[CNN_F32_GEMM_WS_FLOATS];
static void ws_scalar(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    cnn_f32_gemm_blocked_ws_scalar(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws_buf);
}
static void ws_avx2(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                    const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    cnn_f32_gemm_blocked_ws_avx2(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws_buf);
}
static void ws_avx512(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    cnn_f32_gemm_blocked_ws_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws_buf);
}
static int has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && cnn_cpu_isa() >= CNN_ISA_AVX512;
}
static cnn_ctx *par_ctx[4]; /* par_ctx[t]: t threads, the default (widest) ISA */
static cnn_ctx *par_ctx_get(size_t t) {
    if (!par_ctx[t]) {
        cnn_ctx_options o = cnn_ctx_options_default();
        o.threads = t;
        if (cnn_ctx_create(&par_ctx[t], &o) != CNN_OK) fail_msg("cnn_ctx_create failed");
    }
    return par_ctx[t];
}
#define PAR_WRAPPER(t)                                                                                     \
    static void par##t(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, \
                       const float *B, size_t ldb, float beta, float *C, size_t ldc) {                     \
        cnn_f32_gemm_parallel(par_ctx_get(t), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);         \
    }
PAR_WRAPPER(2)
PAR_WRAPPER(3)

/* The variants this CPU can run: each kernel, its workspace entry point, and the threaded driver (2 and 3
 * threads, on the widest kernel) — the driver also goes through every accuracy case. */
static size_t gemm_impls(gemm_impl out[MAX_IMPLS]) {
    size_t n = 0;
    out[n++] = (gemm_impl){"scalar", cnn_f32_gemm_blocked_scalar};
    out[n++] = (gemm_impl){"scalar-ws", ws_scalar};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        out[n++] = (gemm_impl){"avx2", cnn_f32_gemm_blocked_avx2};
        out[n++] = (gemm_impl){"avx2-ws", ws_avx2};
    }
    if (has_avx512()) {
        out[n++] = (gemm_impl){"avx512", cnn_f32_gemm_blocked_avx512};
        out[n++] = (gemm_impl){"avx512-ws", ws_avx512};
    }
    out[n++] = (gemm_impl){"parallel-2", par2};
    out[n++] = (gemm_impl){"parallel-3", par3};
    return n;
}

/* The single-threaded kernel the default context dispatches to. */
static cnn_sgemm_fn widest_kernel(void) { return par_ctx_get(1)->kernels.sgemm; }

static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) fail_msg("out of memory");
    return p;
}

/* rows x ld matrix: the first `cols` of each row uniform in [-1, 1], the padding NaN. */
static float *make_matrix(size_t rows, size_t cols, size_t ld, uint64_t seed) {
    float *m = alloc_floats(rows * ld);
    for (size_t i = 0; i < rows; i++) {
        th_fill_uniform(m + i * ld, cols, seed + i, -1.0f, 1.0f);
        for (size_t j = cols; j < ld; j++) m[i * ld + j] = NAN;
    }
    return m;
}

typedef struct gemm_case {
    int ta, tb;
    size_t M, N, K;
    float alpha, beta;
    size_t pad_a, pad_b, pad_c; /* leading dimension minus the row length */
} gemm_case;

#define C_PAD_SENTINEL 12345.5f

/* Run one case on one implementation and check every element (and that C's padding is untouched). */
static void check_case(const gemm_impl *im, gemm_case c, uint64_t seed) {
    const size_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
    const size_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
    const size_t lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
    float *A = make_matrix(a_rows, a_cols, lda, seed);
    float *B = make_matrix(b_rows, b_cols, ldb, seed + 1000);
    float *C = alloc_floats(c.M * ldc);
    float *C0 = alloc_floats(c.M * ldc);
    for (size_t i = 0; i < c.M; i++) {
        if (c.beta == 0.0f)
            for (size_t j = 0; j < c.N; j++) C[i * ldc + j] = NAN; /* must not be read */
        else
            th_fill_uniform(C + i * ldc, c.N, seed + 2000 + i, -1.0f, 1.0f);
        for (size_t j = c.N; j < ldc; j++) C[i * ldc + j] = C_PAD_SENTINEL;
    }
    memcpy(C0, C, c.M * ldc * sizeof(float));
    const size_t mn = c.M * c.N > 0 ? c.M * c.N : 1;
    double *ref = malloc(mn * sizeof(double));
    double *mag = malloc(mn * sizeof(double));
    if (!ref || !mag) fail_msg("out of memory");
    ref_gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C0, ldc, ref, mag);

    im->fn(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);

    const double tol = 1e-5 * sqrt((double)(c.K ? c.K : 1));
    for (size_t i = 0; i < c.M; i++) {
        for (size_t j = 0; j < c.N; j++) {
            double got = C[i * ldc + j], want = ref[i * c.N + j];
            double err = fabs(got - want), bound = tol * mag[i * c.N + j];
            if (!(err <= bound))
                fail_msg("%s gemm ta=%d tb=%d M=%zu N=%zu K=%zu alpha=%g beta=%g lda=%zu ldb=%zu ldc=%zu: "
                         "C[%zu][%zu] = %.9g, reference %.9g (error %.3g > bound %.3g)",
                         im->name, c.ta, c.tb, c.M, c.N, c.K, (double)c.alpha, (double)c.beta, lda, ldb, ldc, i, j,
                         got, want, err, bound);
        }
        for (size_t j = c.N; j < ldc; j++)
            if (memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float)))
                fail_msg("%s gemm M=%zu N=%zu K=%zu ldc=%zu: wrote C's padding at [%zu][%zu]", im->name, c.M, c.N,
                         c.K, ldc, i, j);
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    free(ref);
    free(mag);
}

static void test_gemm_tile_edges(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    static const size_t Ms[] = {1, 3, 4, 5, 6, 7, 11, 12, 13, 17, 24, 25, 31, 33};
    static const size_t Ns[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 65};
    static const size_t Ks[] = {1, 2, 7, 17};
    uint64_t seed = 1;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++)
            for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
                for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                    for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++) {
                        gemm_case c = {.ta = t & 1, .tb = t >> 1, .M = Ms[a], .N = Ns[b], .K = Ks[k],
                                       .alpha = 1.0f, .beta = 0.0f};
                        check_case(&im[v], c, seed++);
                    }
}

static void test_gemm_cache_blocks(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    /* M around MC (72 scalar, 144 avx2) and 2 MC, N around NC (256 scalar, 512 avx2), K around KC = 256
     * and several K slices (K = 257 runs as 132 + 125, 513 as 172 + 172 + 169, 600 as 200 x 3). */
    static const size_t MNK[][3] = {{7, 33, 255},    {7, 33, 256},    {7, 33, 257},    {73, 65, 300},
                                    {72, 64, 512},   {71, 63, 513},   {130, 130, 600}, {1, 130, 600},
                                    {130, 1, 600},   {145, 129, 97},  {143, 17, 40},   {144, 17, 40},
                                    {145, 17, 40},   {289, 20, 33},   {13, 255, 60},   {13, 257, 60},
                                    {13, 511, 60},   {13, 512, 60},   {13, 513, 60},   {7, 1025, 31},
                                    {150, 520, 260}, {149, 1031, 41}, {6, 16, 769}};
    uint64_t seed = 100;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++)
            for (size_t s = 0; s < sizeof MNK / sizeof *MNK; s++) {
                gemm_case c = {.ta = t & 1, .tb = t >> 1, .M = MNK[s][0], .N = MNK[s][1], .K = MNK[s][2],
                               .alpha = 1.0f, .beta = 0.0f};
                check_case(&im[v], c, seed++);
            }
}

static void test_gemm_alpha_beta(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    static const float AB[][2] = {{1, 1}, {0.5f, 1}, {-1.5f, 0.25f}, {2, -1}, {1, 0}, {-0.75f, 0}, {0, 0}, {0, 0.5f}};
    uint64_t seed = 200;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++)
            for (size_t s = 0; s < sizeof AB / sizeof *AB; s++) {
                gemm_case c = {.ta = t & 1, .tb = t >> 1, .M = 17, .N = 33, .K = 65, .alpha = AB[s][0],
                               .beta = AB[s][1]};
                check_case(&im[v], c, seed++);
                c.M = 75;
                c.N = 70;
                c.K = 270;
                check_case(&im[v], c, seed++);
            }
}

static void test_gemm_k_zero_and_empty(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++) {
            /* K == 0: C = beta * C (beta == 0: zeros although C held NaN) */
            check_case(&im[v], (gemm_case){.ta = t & 1, .tb = t >> 1, .M = 9, .N = 19, .K = 0, .alpha = 1,
                                           .beta = 0, .pad_c = 3},
                       300 + t);
            check_case(&im[v], (gemm_case){.ta = t & 1, .tb = t >> 1, .M = 9, .N = 19, .K = 0, .alpha = 1,
                                           .beta = 2, .pad_c = 3},
                       310 + t);
            /* M == 0 or N == 0: nothing to do, nothing touched */
            check_case(&im[v], (gemm_case){.ta = t & 1, .tb = t >> 1, .M = 0, .N = 5, .K = 3, .alpha = 1},
                       320 + t);
            check_case(&im[v], (gemm_case){.ta = t & 1, .tb = t >> 1, .M = 5, .N = 0, .K = 3, .alpha = 1,
                                           .pad_c = 2},
                       330 + t);
        }
}

static void test_gemm_leading_dims(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    uint64_t seed = 400;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++) {
            gemm_case c = {.ta = t & 1, .tb = t >> 1, .M = 31, .N = 17, .K = 65, .alpha = 1, .beta = 0,
                           .pad_a = 3, .pad_b = 5, .pad_c = 7};
            check_case(&im[v], c, seed++);
            c.beta = 1;
            c.alpha = -0.5f;
            check_case(&im[v], c, seed++);
            c = (gemm_case){.ta = t & 1, .tb = t >> 1, .M = 80, .N = 70, .K = 260, .alpha = 1, .beta = 0.5f,
                            .pad_a = 1, .pad_b = 16, .pad_c = 9};
            check_case(&im[v], c, seed++);
        }
}

/* A NaN in row i of op(A) makes row i of C NaN and leaves the others finite; likewise a NaN in column j
 * of op(B). */
static void test_gemm_nan_propagates(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    const size_t M = 13, N = 21, K = 300, ni_ = 11, nj = 19, np = 270;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++) {
            const int ta = t & 1, tb = t >> 1;
            const size_t lda = ta ? M : K, ldb = tb ? K : N;
            float *A = make_matrix(ta ? K : M, lda, lda, 500 + t);
            float *B = make_matrix(tb ? N : K, ldb, ldb, 600 + t);
            float *C = alloc_floats(M * N);
            A[ta ? np * lda + ni_ : ni_ * lda + np] = NAN;
            B[tb ? nj * ldb + np : np * ldb + nj] = NAN;
            im[v].fn(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) {
                    int want_nan = i == ni_ || j == nj;
                    if (want_nan != (isnan(C[i * N + j]) != 0))
                        fail_msg("%s ta=%d tb=%d: C[%zu][%zu] = %g, expected %s", im[v].name, ta, tb, i, j,
                                 (double)C[i * N + j], want_nan ? "NaN" : "a finite value");
                }
            free(A);
            free(B);
            free(C);
        }
}

/* A block of a product computed alone is bit-identical to the same block of the whole product. */
static void test_gemm_subblock_bitwise(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    const size_t M = 77, N = 70, K = 300, i0 = 5, i1 = 41, j0 = 3, j1 = 60;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t++) {
            const int ta = t & 1, tb = t >> 1;
            const size_t lda = ta ? M : K, ldb = tb ? K : N;
            float *A = make_matrix(ta ? K : M, lda, lda, 700 + t);
            float *B = make_matrix(tb ? N : K, ldb, ldb, 800 + t);
            float *C = alloc_floats(M * N), *D = alloc_floats(M * N);
            for (int beta1 = 0; beta1 < 2; beta1++) {
                const float beta = beta1 ? 1.0f : 0.0f;
                th_fill_uniform(C, M * N, 900, -1, 1);
                memcpy(D, C, M * N * sizeof(float));
                im[v].fn(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C, N);
                const float *As = ta ? A + i0 : A + i0 * lda;
                const float *Bs = tb ? B + j0 * ldb : B + j0;
                im[v].fn(ta, tb, i1 - i0, j1 - j0, K, 0.75f, As, lda, Bs, ldb, beta, D + i0 * N + j0, N);
                for (size_t i = i0; i < i1; i++)
                    for (size_t j = j0; j < j1; j++)
                        if (memcmp(&C[i * N + j], &D[i * N + j], sizeof(float)))
                            fail_msg("%s ta=%d tb=%d beta=%g: block element [%zu][%zu] = %.9g differs from the "
                                     "whole product's %.9g",
                                     im[v].name, ta, tb, (double)beta, i, j, (double)D[i * N + j],
                                     (double)C[i * N + j]);
            }
            free(A);
            free(B);
            free(C);
            free(D);
        }
}

/* A block of a product that crosses the cache blocks (MC, NC, several K slices), computed alone, is
 * bit-identical to the same block of the whole product. */
static void test_gemm_subblock_bitwise_blocks(void **state) {
    (void)state;
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    const size_t M = 301, N = 1100, K = 530, i0 = 7, i1 = 290, j0 = 5, j1 = 1031;
    for (size_t v = 0; v < ni; v++)
        for (int t = 0; t < 4; t += 3) { /* NN and TT */
            const int ta = t & 1, tb = t >> 1;
            const size_t lda = ta ? M : K, ldb = tb ? K : N;
            float *A = make_matrix(ta ? K : M, lda, lda, 710 + t);
            float *B = make_matrix(tb ? N : K, ldb, ldb, 810 + t);
            float *C = alloc_floats(M * N), *D = alloc_floats(M * N);
            th_fill_uniform(C, M * N, 910, -1, 1);
            memcpy(D, C, M * N * sizeof(float));
            im[v].fn(ta, tb, M, N, K, -1.25f, A, lda, B, ldb, 0.5f, C, N);
            const float *As = ta ? A + i0 : A + i0 * lda;
            const float *Bs = tb ? B + j0 * ldb : B + j0;
            im[v].fn(ta, tb, i1 - i0, j1 - j0, K, -1.25f, As, lda, Bs, ldb, 0.5f, D + i0 * N + j0, N);
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0; j < j1; j++)
                    if (memcmp(&C[i * N + j], &D[i * N + j], sizeof(float)))
                        fail_msg("%s ta=%d tb=%d: block element [%zu][%zu] = %.9g differs from the whole "
                                 "product's %.9g",
                                 im[v].name, ta, tb, i, j, (double)D[i * N + j], (double)C[i * N + j]);
            free(A);
            free(B);
            free(C);
            free(D);
        }
}

/* cnn_f32_gemm_parallel with 1, 2 and 3 threads is bit-identical to one call of the context's kernel,
 * for shapes that split by columns, by rows, unevenly, and below the parallel threshold; every
 * transpose combination, alpha/beta, padded leading dimensions. */
static void test_gemm_parallel_bitwise(void **state) {
    (void)state;
    static const size_t MNK[][3] = {{77, 70, 300}, {200, 33, 300}, {7, 500, 301}, {300, 10, 400},
                                    {1, 4000, 300}, {5000, 1, 250}, {8, 8, 8},    {64, 130, 3136},
                                    {577, 49, 64}, {61, 1000, 9}};
    cnn_sgemm_fn ref_fn = widest_kernel();
    uint64_t seed = 1000;
    for (size_t s = 0; s < sizeof MNK / sizeof *MNK; s++)
        for (int t = 0; t < 4; t++) {
            const int ta = t & 1, tb = t >> 1;
            const size_t M = MNK[s][0], N = MNK[s][1], K = MNK[s][2];
            const size_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 5;
            const float alpha = s % 2 ? -0.5f : 1.0f, beta = s % 3 == 0 ? 0.0f : s % 3 == 1 ? 1.0f : 0.75f;
            float *A = make_matrix(ta ? K : M, ta ? M : K, lda, seed++);
            float *B = make_matrix(tb ? N : K, tb ? K : N, ldb, seed++);
            float *C0 = alloc_floats(M * ldc), *C = alloc_floats(M * ldc);
            th_fill_uniform(C0, M * ldc, seed++, -1, 1);
            if (beta == 0.0f)
                for (size_t i = 0; i < M * ldc; i++) C0[i] = NAN;
            float *R = alloc_floats(M * ldc);
            memcpy(R, C0, M * ldc * sizeof(float));
            ref_fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
            for (size_t T = 1; T <= 3; T++) {
                memcpy(C, C0, M * ldc * sizeof(float));
                cnn_f32_gemm_parallel(par_ctx_get(T), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                for (size_t i = 0; i < M; i++)
                    for (size_t j = 0; j < ldc; j++)
                        if (memcmp(&C[i * ldc + j], &R[i * ldc + j], sizeof(float)))
                            fail_msg("parallel T=%zu ta=%d tb=%d M=%zu N=%zu K=%zu: C[%zu][%zu] = %.9g, the "
                                     "single call gave %.9g",
                                     T, ta, tb, M, N, K, i, j, (double)C[i * ldc + j], (double)R[i * ldc + j]);
            }
            free(A);
            free(B);
            free(C0);
            free(C);
            free(R);
        }
}

/* The AVX-512 kernel sums every element in the AVX2 kernel's order (same K slices, one FMA chain), so
 * the two agree bit for bit, through the plain, workspace and packed-A entry points, on shapes with
 * partial tiles of both, several K slices and alpha/beta variants. */
static void test_gemm_avx512_matches_avx2(void **state) {
    (void)state;
    if (!has_avx512()) skip();
    static const size_t MNK[][3] = {{1, 1, 1}, {13, 37, 300}, {145, 530, 257}, {50, 196, 1152}, {7, 33, 769},
                                    {128, 210, 256}, {300, 17, 64}};
    static const float AB[][2] = {{1, 0}, {1, 1}, {-0.5f, 0.75f}};
    uint64_t seed = 5000;
    for (size_t s = 0; s < sizeof MNK / sizeof *MNK; s++)
        for (int t = 0; t < 4; t++) {
            const int ta = t & 1, tb = t >> 1;
            const size_t M = MNK[s][0], N = MNK[s][1], K = MNK[s][2];
            const float alpha = AB[s % 3][0], beta = AB[s % 3][1];
            const size_t lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
            float *A = make_matrix(ta ? K : M, ta ? M : K, lda, seed++);
            float *B = make_matrix(tb ? N : K, tb ? K : N, ldb, seed++);
            float *C0 = alloc_floats(M * ldc), *C1 = alloc_floats(M * ldc), *C2 = alloc_floats(M * ldc);
            th_fill_uniform(C0, M * ldc, seed++, -1, 1);
            memcpy(C1, C0, M * ldc * sizeof(float));
            memcpy(C2, C0, M * ldc * sizeof(float));
            cnn_f32_gemm_blocked_avx2(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
            cnn_f32_gemm_blocked_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
            assert_memory_equal(C0, C1, M * ldc * sizeof(float));
            if (alpha == 1.0f) { /* packed A (alpha 1): the same values, and from a 12-row offset on */
                float *Ap = alloc_floats(CNN_F32_GEMM_PA_FLOATS(M, K));
                cnn_f32_gemm_pack_a_avx512(ta, M, K, A, lda, Ap);
                cnn_f32_gemm_packed_a_avx512(M, N, K, Ap, tb, B, ldb, beta, NULL, C2, ldc, ws_buf);
                assert_memory_equal(C0, C2, M * ldc * sizeof(float));
                if (M > 12) {
                    memcpy(C2, C0, M * ldc * sizeof(float));
                    cnn_f32_gemm_packed_a_avx512(M - 12, N, K, Ap + 12 * K, tb, B, ldb, 1.0f, NULL, C2 + 12 * ldc,
                                                 ldc, ws_buf);
                    cnn_f32_gemm_pack_a_avx2(ta, M, K, A, lda, Ap);
                    memcpy(C1, C0, M * ldc * sizeof(float));
                    cnn_f32_gemm_packed_a_avx2(M - 12, N, K, Ap + 12 * K, tb, B, ldb, 1.0f, NULL, C1 + 12 * ldc,
                                               ldc, ws_buf);
                    assert_memory_equal(C1, C2, M * ldc * sizeof(float));
                }
                free(Ap);
            }
            free(A), free(B), free(C0), free(C1), free(C2);
        }
}

/* CNN_ISA=scalar gives the scalar kernel; the default context gets the AVX2 one on an AVX2+FMA CPU and
 * the AVX-512 one where the CPU has AVX-512 (F, DQ, BW, VL). */
static void test_gemm_dispatch(void **state) {
    (void)state;
    __builtin_cpu_init();
    const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    cnn_ctx *ctx = NULL;
    setenv("CNN_ISA", "scalar", 1);
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    assert_string_equal(cnn_ctx_isa(ctx), "scalar");
    assert_ptr_equal(ctx->kernels.sgemm, cnn_f32_gemm_blocked_scalar);
    cnn_ctx_free(ctx);
    if (has_avx2) {
        setenv("CNN_ISA", "avx2", 1);
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        assert_string_equal(cnn_ctx_isa(ctx), "avx2");
        assert_ptr_equal(ctx->kernels.sgemm, cnn_f32_gemm_blocked_avx2);
        cnn_ctx_free(ctx);
    }
    if (has_avx512()) {
        setenv("CNN_ISA", "avx512", 1);
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        assert_string_equal(cnn_ctx_isa(ctx), "avx512");
        assert_ptr_equal(ctx->kernels.sgemm, cnn_f32_gemm_blocked_avx512);
        assert_int_equal(ctx->kernels.sgemm_mr, 12);
        cnn_ctx_free(ctx);
        unsetenv("CNN_ISA");
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        assert_string_equal(cnn_ctx_isa(ctx), "avx512");
        cnn_ctx_free(ctx);
    }
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}

int main(void) {
    gemm_impl im[MAX_IMPLS];
    size_t ni = gemm_impls(im);
    printf("gemm variants tested:");
    for (size_t i = 0; i < ni; i++) printf(" %s", im[i].name);
    printf("\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_tile_edges),       cmocka_unit_test(test_gemm_cache_blocks),
        cmocka_unit_test(test_gemm_alpha_beta),       cmocka_unit_test(test_gemm_k_zero_and_empty),
        cmocka_unit_test(test_gemm_leading_dims),     cmocka_unit_test(test_gemm_nan_propagates),
        cmocka_unit_test(test_gemm_subblock_bitwise), cmocka_unit_test(test_gemm_subblock_bitwise_blocks),
        cmocka_unit_test(test_gemm_parallel_bitwise), cmocka_unit_test(test_gemm_avx512_matches_avx2),
        cmocka_unit_test(test_gemm_dispatch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (size_t t = 0; t < sizeof par_ctx / sizeof *par_ctx; t++) cnn_ctx_free(par_ctx[t]);
    return rc;
}
