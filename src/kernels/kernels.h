/* kernels.h — the kernel table: one function pointer per kernel family, filled once per context from the
 * CPU's features (dispatch.c), widest ISA first, scalar always there. Kernels are pure and
 * single-threaded, allocate nothing and handle every tail; threading happens in the layer drivers. */
#ifndef CNN_KERNELS_H
#define CNN_KERNELS_H

#include <stddef.h>

#include "f32_conv_direct/conv_direct.h"
#include "f32_conv_stem/conv_stem.h"
#include "f32_conv_dw/conv_dw.h"
#include "f32_conv_wgrad/wgrad.h"
#include "f32_winograd/winograd.h"
#include "f32_im2col/im2col.h"
#include "f32_plane/plane.h"

typedef enum cnn_isa { CNN_ISA_SCALAR = 0, CNN_ISA_AVX2 = 1, CNN_ISA_AVX512 = 2 } cnn_isa;

/* Row-major SGEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
 * op(A) = A (lda >= K) or, with trans_a, A^T where A is K x M (lda >= M); likewise op(B) with trans_b
 * (B is K x N, ldb >= N, or N x K, ldb >= K). beta == 0 overwrites C without reading it. */
typedef void (*cnn_sgemm_fn)(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                             size_t ldc);

/* Packed-A SGEMM (f32_gemm/gemm_impl.h), for drivers that multiply one op(A) [M, K] (conv weights) by
 * many B: pack_a writes all of op(A) (trans_a as in cnn_sgemm_fn) into Ap, at most
 * CNN_F32_GEMM_PA_FLOATS(M, K) floats in the ISA's own panel layout (pack and multiply with the same
 * table); packed_a computes C[M,N] = Ap * op(B)[K,N] + beta * C, then with bias (NULL: none)
 * C[i][j] += bias[i], using ws (CNN_F32_GEMM_WS_FLOATS floats, 64-byte aligned;
 * NULL: cnn_f32_gemm_ws_current, else the stack) for the packed B. Bit-identical to the same product
 * through the table's sgemm (alpha 1), the bias added after it; a sub-block of rows (A packed from a row
 * offset) or columns computes the same values as the whole product. */
#define CNN_F32_GEMM_PA_FLOATS(M, K) (((size_t)(M) + 11) * (size_t)(K))
/* The packed rows from row m0 on are a packed matrix of their own at Ap + m0 * K when m0 is a multiple of
 * the table's sgemm_mr (12 avx512, 6 avx2, 4 scalar), so of CNN_F32_GEMM_PA_ROW_ALIGN for every ISA. */
#define CNN_F32_GEMM_PA_ROW_ALIGN 12
typedef void (*cnn_sgemm_pack_a_fn)(int trans_a, size_t M, size_t K, const float *A, size_t lda, float *Ap);
typedef void (*cnn_sgemm_pa_fn)(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B,
                                size_t ldb, float beta, const float *bias, float *C, size_t ldc, float *ws);

typedef struct cnn_kernels {
    cnn_isa isa;
    const char *isa_name;
    cnn_sgemm_fn sgemm;
    cnn_sgemm_pack_a_fn sgemm_pack_a;           /* packed-A SGEMM (gemm-1x1 and batch-1 conv drivers) */
    cnn_sgemm_pa_fn sgemm_pa;
    size_t sgemm_mr;                            /* its tile height: packed rows from a multiple of it are a packing */
    cnn_conv_direct_fwd_fn conv_direct_fwd;     /* conv2d "direct": plane correlation (conv_direct.h) */
    cnn_conv_direct_wgrad_fn conv_direct_wgrad; /* conv2d "direct": per-tap weight-gradient sums */
    cnn_conv_stem_fwd_fn conv_stem_fwd;         /* conv2d "stem": small-channel kernels (conv_stem.h) */
    cnn_conv_stem_wgrad_fn conv_stem_wgrad;
    cnn_conv_dw_fwd_fn conv_dw_fwd;             /* conv2d "depthwise": one plane per call (conv_dw.h) */
    cnn_conv_dw_bwd_fn conv_dw_bwd;
    cnn_conv_dw_wgrad_fn conv_dw_wgrad;
    cnn_wgrad_pack_dy_fn wgrad_pack_dy;         /* conv2d wgrad=blocked (wgrad.h) */
    cnn_wgrad_sums_fn wgrad_sums;
    cnn_winograd_weights_fn winograd_weights;   /* conv2d "winograd" F(2x2,3x3) transforms (winograd.h) */
    cnn_winograd_input_fn winograd_input;
    cnn_winograd_output_fn winograd_output;
    cnn_winograd_dyin_fn winograd_dyin;
    cnn_winograd_wgrad_fn winograd_wgrad;
    cnn_winograd_weights_e_fn winograd_weights_e; /* F(2x2) U through one pointer per tile element */
    cnn_winograd_weights_e_fn winograd4_weights;  /* conv2d "winograd-f4x4" F(4x4,3x3) (winograd.h) */
    cnn_winograd_input_fn winograd4_input;
    cnn_winograd_output_fn winograd4_output;
    cnn_plane_pad_fn plane_pad;            /* conv2d's plane copies (f32_plane/plane.h) */
    cnn_plane_add_fn plane_add;
    cnn_winograd_dyin_fn winograd4_dyin;   /* F(4x4) weight gradient (winograd.h) */
    cnn_winograd_wgrad_fn winograd4_wgrad;
    cnn_im2col_fn im2col;                       /* conv2d "im2col+gemm" lowering (im2col.h) */
    cnn_col2im_fn col2im;
} cnn_kernels;

/* Detect the CPU (cpuid/xgetbv) and fill k with the widest ISA not above `limit`. */
void cnn_kernels_select(cnn_kernels *k, cnn_isa limit);
/* Widest ISA this CPU and OS support. */
cnn_isa cnn_cpu_isa(void);

/* The f32 SGEMM kernels (src/kernels/f32_gemm/, docs/kernels.md). cnn_f32_gemm_blocked_<isa> is a
 * cnn_sgemm_fn that keeps its packing buffers on the stack (avx512, avx2: 656 KiB, scalar: 328 KiB; fine on the
 * 8 MiB main and GOMP/glibc thread stacks, not on a thread with OMP_STACKSIZE below ~1 MiB);
 * cnn_f32_gemm_blocked_ws_<isa> is the same function with the caller's workspace `ws` of
 * CNN_F32_GEMM_WS_FLOATS floats, 64-byte aligned (one per concurrent caller). Results are bit-identical
 * between the two, and a sub-block of a product computed alone is bit-identical to the same block of the
 * whole product (same ISA). */
#define CNN_F32_GEMM_WS_FLOATS ((size_t)(144 * 256 + 256 * 512))
/* The calling thread's SGEMM workspace (CNN_F32_GEMM_WS_FLOATS floats), or NULL. cnn_pool_for and the
 * network's passes point it at the context's per-thread workspace (heap, allocated with the context), so
 * the stack-free path is taken inside the library whatever the thread stack size; the plain entry points
 * fall back to a stack buffer only when it is NULL (direct calls, tests). */
extern _Thread_local float *cnn_f32_gemm_ws_current;
typedef void (*cnn_sgemm_ws_fn)(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                                size_t ldc, float *ws);
void cnn_f32_gemm_blocked_ws_scalar(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                    const float *A, size_t lda, const float *B, size_t ldb, float beta,
                                    float *C, size_t ldc, float *ws);
void cnn_f32_gemm_blocked_ws_avx2(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                  const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                                  size_t ldc, float *ws);
void cnn_f32_gemm_blocked_ws_avx512(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                    const float *A, size_t lda, const float *B, size_t ldb, float beta,
                                    float *C, size_t ldc, float *ws);
void cnn_f32_gemm_blocked_avx512(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                 const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                                 size_t ldc);
void cnn_f32_gemm_pack_a_avx512(int trans_a, size_t M, size_t K, const float *A, size_t lda, float *Ap);
void cnn_f32_gemm_packed_a_avx512(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B,
                                  size_t ldb, float beta, const float *bias, float *C, size_t ldc, float *ws);
void cnn_f32_gemm_blocked_scalar(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                                 const float *A, size_t lda, const float *B, size_t ldb, float beta,
                                 float *C, size_t ldc);
void cnn_f32_gemm_blocked_avx2(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                               const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                               size_t ldc);

void cnn_f32_gemm_pack_a_scalar(int trans_a, size_t M, size_t K, const float *A, size_t lda, float *Ap);
void cnn_f32_gemm_pack_a_avx2(int trans_a, size_t M, size_t K, const float *A, size_t lda, float *Ap);
void cnn_f32_gemm_packed_a_scalar(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B,
                                  size_t ldb, float beta, const float *bias, float *C, size_t ldc, float *ws);
void cnn_f32_gemm_packed_a_avx2(size_t M, size_t N, size_t K, const float *Ap, int trans_b, const float *B,
                                size_t ldb, float beta, const float *bias, float *C, size_t ldc, float *ws);

/* Threaded SGEMM driver (src/core/gemm.c), the contract of cnn_sgemm_fn plus the context: splits C into
 * up to ctx->threads blocks (columns in multiples of 16, or rows in multiples of 6 when N is small) run
 * through ctx->kernels.sgemm on cnn_pool_for. Each C element is computed by exactly one call with the
 * same summation order, so the result is bit-identical for every thread count (and to one
 * ctx->kernels.sgemm call). Allocates nothing. For layers whose batch-level parallelism is too small
 * (dense layers, conv at batch 1) and for `cnn bench gemm`. Do not call it from inside a cnn_pool_for
 * task (it would run single-threaded there: nested regions are serial). */
struct cnn_ctx;
void cnn_f32_gemm_parallel(const struct cnn_ctx *ctx, int trans_a, int trans_b, size_t M, size_t N, size_t K,
                           float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                           float *C, size_t ldc);

#endif
