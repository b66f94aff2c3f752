/* f32_gemm/scalar.c — cnn_f32_gemm_blocked_scalar: the portable cache-blocked SGEMM (baseline x86-64 /
 * any C11 target).
 *
 * Contract: cnn_sgemm_fn in kernels.h (row-major, all four transpose combinations, alpha/beta, beta == 0
 * does not read C). Algorithm, packing and determinism: gemm_impl.h.
 * Tile: MR x NR = 4 x 8 accumulators in plain C (8 SSE registers on baseline x86-64); the compiler
 * vectorises the contiguous 8-wide axpy. Blocks: KC 256, MC 72, NC 256: Ap 72 KiB + Bp 256 KiB of
 * workspace (on the stack for cnn_f32_gemm_blocked_scalar). No alignment requirement on A, B, C; no
 * over-read. FLOPs: 2*M*N*K.
 */
#define GEMM_FN cnn_f32_gemm_blocked_scalar
#define GEMM_FN_WS cnn_f32_gemm_blocked_ws_scalar
#define GEMM_MR 4
#define GEMM_NR 8
#define GEMM_KC 256
#define GEMM_MC 72
#define GEMM_NC 256
#define GEMM_FN_PACK_A cnn_f32_gemm_pack_a_scalar
#define GEMM_FN_PA cnn_f32_gemm_packed_a_scalar
#include "gemm_impl.h"

_Static_assert(GEMM_WS_FLOATS <= CNN_F32_GEMM_WS_FLOATS, "CNN_F32_GEMM_WS_FLOATS too small");
