/* f32_gemm/scalar.c — cnn_f32_gemm_blocked_scalar: the portable cache-blocked SGEMM (baseline x86-64 /
 * any C11 target).
 *
 * Contract: cnn_sgemm_fn in kernels.h (row-major, all four transpose combinations, alpha/beta, beta == 0
 * does not read C). Algorithm, packing and buffer sizes: gemm_impl.h.
 * Tile: MR x NR = 4 x 8 accumulators in plain C (8 SSE registers on baseline x86-64, 2 for B, 1 for the
 * broadcast A value); the compiler vectorises the contiguous 8-wide axpy. No alignment requirement on
 * A, B, C; no over-read. FLOPs: 2*M*N*K.
 */
#define GEMM_FN cnn_f32_gemm_blocked_scalar
#define GEMM_MR 4
#define GEMM_NR 8
#include "gemm_impl.h"
