/* test_bench.c — what the benchmarks rely on: the roof kernels of src/kernels/f32_peak/ (FLOP count,
 * finite result, every ISA the CPU has), cnn_bench_peak (a positive figure, argument checks) and the public
 * threaded SGEMM cnn_sgemm against a float64 reference at odd sizes and every transpose combination, with
 * 1 and 3 threads giving bit-identical results, and its argument checks. Never asserts timings.
 *
 * Tolerance, per element: |got - ref| <= 1e-5 * sqrt(K) * (sum_p |a_ip b_pj| + |beta c_ij|) + 1e-30. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kernels/f32_peak/peak.h"

static void test_peak_kernels(void **state) {
    (void)state;
    float sink = NAN;
    assert_true(cnn_f32_peak_fma_scalar(1000, &sink) == 1000 * CNN_F32_PEAK_FLOPS_PER_ITER_SCALAR);
    assert_true(isfinite(sink) && sink > 0);
    sink = NAN;
    assert_true(cnn_f32_peak_fma_scalar(0, &sink) == 0);
    assert_true(isfinite(sink));
    if (cnn_cpu_isa() >= CNN_ISA_AVX2) {
        sink = NAN;
        assert_true(cnn_f32_peak_fma_avx2(1001, &sink) == 1001 * CNN_F32_PEAK_FLOPS_PER_ITER_AVX2);
        assert_true(isfinite(sink) && sink > 0);
        /* Many iterations converge to a fixed point, never overflow. */
        assert_true(cnn_f32_peak_fma_avx2(3000000, &sink) > 0);
        assert_true(isfinite(sink));
    }
    assert_true(cnn_f32_peak_fma_scalar(3000000, &sink) > 0);
    assert_true(isfinite(sink));
}

static void test_bench_peak(void **state) {
    (void)state;
    cnn_ctx *ctx;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = 2;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    double g = -1;
    assert_int_equal(cnn_bench_peak(ctx, 1, 0.02, &g), CNN_OK);
    assert_true(g > 0 && isfinite(g));
    assert_int_equal(cnn_bench_peak(ctx, 0, 0.02, &g), CNN_OK);
    assert_true(g > 0 && isfinite(g));
    assert_int_equal(cnn_bench_peak(ctx, 3, 0.02, &g), CNN_OK); /* more threads than the context's */
    assert_true(g > 0);
    assert_int_equal(cnn_bench_peak(ctx, 1, 0, &g), CNN_ERR_INVALID_ARG);
    assert_true(g == 0);
    assert_int_equal(cnn_bench_peak(ctx, 1, NAN, &g), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_bench_peak(ctx, 5000, 0.01, &g), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_bench_peak(NULL, 1, 0.01, &g), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_bench_peak(ctx, 1, 0.01, NULL), CNN_ERR_INVALID_ARG);
    cnn_ctx_free(ctx);
}

static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / (double)(1ull << 23) - 1.0);
}

/* C = alpha op(A) op(B) + beta C in double; also the per-element error bound. */
static void ref_gemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                     const float *B, size_t ldb, float beta, const float *C0, size_t ldc, double *ref, double *bound) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (size_t p = 0; p < K; p++) {
                double a = ta ? A[p * lda + i] : A[i * lda + p];
                double b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double c = beta != 0 ? (double)beta * C0[i * ldc + j] : 0;
            ref[i * N + j] = alpha * s + c;
            bound[i * N + j] = 1e-5 * sqrt((double)K + 1) * (fabs(alpha) * mag + fabs(c)) + 1e-30;
        }
}

static void test_sgemm(void **state) {
    (void)state;
    cnn_ctx *c1, *c3;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = 1;
    assert_int_equal(cnn_ctx_create(&c1, &o), CNN_OK);
    o.threads = 3;
    assert_int_equal(cnn_ctx_create(&c3, &o), CNN_OK);
    const size_t sizes[][3] = {{1, 1, 1}, {7, 17, 5}, {13, 33, 31}, {6, 16, 8}, {50, 70, 300}, {97, 5, 11}};
    uint64_t seed = 1;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t M = sizes[si][0], N = sizes[si][1], K = sizes[si][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                size_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
                size_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
                float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
                float *C0 = malloc(nc * sizeof *C0), *Ca = malloc(nc * sizeof *Ca), *Cb = malloc(nc * sizeof *Cb);
                double *ref = malloc(M * N * sizeof *ref), *bound = malloc(M * N * sizeof *bound);
                assert_non_null(A);
                assert_non_null(B);
                assert_non_null(C0);
                assert_non_null(Ca);
                assert_non_null(Cb);
                assert_non_null(ref);
                assert_non_null(bound);
                for (size_t i = 0; i < na; i++) A[i] = urand(&seed);
                for (size_t i = 0; i < nb; i++) B[i] = urand(&seed);
                for (size_t i = 0; i < nc; i++) C0[i] = urand(&seed);
                const float betas[2] = {0.0f, 0.5f};
                for (int bi = 0; bi < 2; bi++) {
                    float alpha = 1.25f, beta = betas[bi];
                    memcpy(Ca, C0, nc * sizeof *Ca);
                    memcpy(Cb, C0, nc * sizeof *Cb);
                    if (beta == 0) /* beta 0 must not read C */
                        for (size_t i = 0; i < M; i++)
                            for (size_t j = 0; j < N; j++) Ca[i * ldc + j] = Cb[i * ldc + j] = NAN;
                    assert_int_equal(cnn_sgemm(c1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Ca, ldc), CNN_OK);
                    assert_int_equal(cnn_sgemm(c3, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cb, ldc), CNN_OK);
                    assert_memory_equal(Ca, Cb, nc * sizeof *Ca); /* threads: bit-identical, padding untouched */
                    ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc, ref, bound);
                    for (size_t i = 0; i < M; i++) {
                        for (size_t j = 0; j < N; j++) {
                            double d = fabs(Ca[i * ldc + j] - ref[i * N + j]);
                            if (!(d <= bound[i * N + j]))
                                fail_msg("cnn_sgemm %zux%zux%zu ta=%d tb=%d beta=%g: C[%zu][%zu] = %g, ref %g", M, N,
                                         K, ta, tb, beta, i, j, Ca[i * ldc + j], ref[i * N + j]);
                        }
                        for (size_t j = N; j < ldc; j++) assert_true(Ca[i * ldc + j] == C0[i * ldc + j]);
                    }
                }
                free(A);
                free(B);
                free(C0);
                free(Ca);
                free(Cb);
                free(ref);
                free(bound);
            }
    }
    float x[4] = {1, 2, 3, 4}, y[4];
    assert_int_equal(cnn_sgemm(c1, 0, 0, 2, 2, 2, 1, x, 1, x, 2, 0, y, 2), CNN_ERR_INVALID_ARG); /* lda < K */
    assert_int_equal(cnn_sgemm(c1, 0, 0, 2, 2, 2, 1, x, 2, x, 2, 0, y, 1), CNN_ERR_INVALID_ARG); /* ldc < N */
    assert_int_equal(cnn_sgemm(c1, 0, 0, 2, 2, 2, 1, NULL, 2, x, 2, 0, y, 2), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_sgemm(c1, 0, 0, 0, 2, 2, 1, NULL, 2, NULL, 2, 0, NULL, 2), CNN_OK); /* empty */
    assert_int_equal(cnn_sgemm(NULL, 0, 0, 2, 2, 2, 1, x, 2, x, 2, 0, y, 2), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_sgemm(c1, 0, 0, 2, 2, 2, 1, x, 2, x, 2, 0, y, 2), CNN_OK);
    assert_true(y[0] == 7 && y[1] == 10 && y[2] == 15 && y[3] == 22);
    cnn_ctx_free(c1);
    cnn_ctx_free(c3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peak_kernels),
        cmocka_unit_test(test_bench_peak),
        cmocka_unit_test(test_sgemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
