/* kernels.h — the kernel table: one function pointer per kernel family, filled once per context from the
 * CPU's features (dispatch.c), widest ISA first, scalar always there. Kernels are pure and
 * single-threaded, allocate nothing and handle every tail; threading happens in the layer drivers. */
#ifndef CNN_KERNELS_H
#define CNN_KERNELS_H

#include <stddef.h>

typedef enum cnn_isa { CNN_ISA_SCALAR = 0, CNN_ISA_AVX2 = 1, CNN_ISA_AVX512 = 2 } cnn_isa;

/* Row-major SGEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * op(A) = A (lda >= K) or, with trans_a, A^T where A is K x M (lda >= M); likewise op(B) with trans_b
 * (B is K x N, ldb >= N, or N x K, ldb >= K). beta == 0 overwrites C without reading it. */
typedef void (*cnn_sgemm_fn)(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                             size_t ldc);

typedef struct cnn_kernels {
    cnn_isa isa;
    const char *isa_name;
    cnn_sgemm_fn sgemm;
} cnn_kernels;

/* Detect the CPU (cpuid/xgetbv) and fill k with the widest ISA not above `limit`. */
void cnn_kernels_select(cnn_kernels *k, cnn_isa limit);
/* Widest ISA this CPU and OS support. */
cnn_isa cnn_cpu_isa(void);

void cnn_f32_gemm_blocked_scalar(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                 const float *A, size_t lda, const float *B, size_t ldb, float beta,
                                 float *C, size_t ldc);
void cnn_f32_gemm_blocked_avx2(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                               size_t ldc);

#endif
