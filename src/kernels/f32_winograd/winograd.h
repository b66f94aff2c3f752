/* winograd.h — Winograd F(2x2, 3x3) transforms for conv2d's "winograd" algorithm (3x3, stride 1,
 * dilation 1, one group), forward and backward-data (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", CVPR 2016). Every 2x2 output tile is A^T [ (G g G^T) .* (B^T d B) ] A with d the 4x4
 * input tile at rows 2*ty.., columns 2*tx.. of the zero-padded input plane and
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * The sum over input channels of the 16 element-wise products is 16 GEMMs (done by the driver with the
 * SGEMM): M[e][k][j] = sum_c U[e][k][c] * V[e][c][j], e = 4*row + column within the 4x4 tile, j = tile.
 * Layouts: U [16][kout][cin]; V element (e, c, j) at V[(c*16 + e)*ldv + j]; M element (e, k, j) at
 * M[(k*16 + e)*ldm + j] (a channel's 16 rows together, so a tile's 16 values lie in 16 nearby rows; the
 * GEMM of element e reads V and writes M with leading dimension 16*ld).
 * A call covers nty whole rows of tiles, tw tiles each: tile (ty, tx) is column j = ty*tw + tx.
 * Let TW8 = tw rounded up to a multiple of 8.
 *   input:  xp holds cin padded planes (plane_stride floats apart, rows of ldp floats); tile (ty, tx)
 *           reads xp rows 2*ty .. 2*ty+3, columns 2*tx .. 2*tx+3. The caller gives 2*nty + 2 rows and
 *           ldp >= 2*TW8 + 2 with zeros past the image (the AVX2 kernel reads 8 tiles at a time, up to
 *           column 2*TW8 + 1). Writes V columns [0, nty*tw); the AVX2 kernel also writes up to 7 columns
 *           past that (so ldv >= nty*tw + 7); columns a later row rewrites come out right.
 *   output: Y gets kout planes (plane_stride floats apart, rows of ldo >= 2*TW8 floats) of 2*nty rows:
 *           Y[k][2*ty + r][2*tx + q] = (A^T m A)[r][q]. The AVX2 kernel reads M columns up to nty*tw + 6
 *           (ldm >= nty*tw + 7; the extra lanes only reach Y columns >= 2*tw) and writes Y columns up to
 *           2*TW8 - 1. The driver copies the valid part (adding the bias or accumulating).
 * Both ISAs evaluate the same expressions in the same order (additions only), so they agree bitwise.
 * Pure, single-threaded, no allocation.
 */
#ifndef CNN_WINOGRAD_H
#define CNN_WINOGRAD_H

#include <stddef.h>

/* U[e][k][c] = (G g G^T)[e] for k in [k0, k1), all c, with g = w[k][c] (w: [kout][cin][3][3]); with
 * flip_transpose, w is [cin][kout][3][3] (a forward weight read for backward-data) and g = w[c][k]
 * rotated by 180 degrees. Other rows of U are not touched (threads split k). */
typedef void (*cnn_winograd_weights_fn)(const float *w, size_t kout, size_t cin, int flip_transpose, size_t k0,
                                        size_t k1, float *U);
typedef void (*cnn_winograd_input_fn)(const float *xp, size_t cin, size_t plane_stride, size_t ldp, size_t tw,
                                      size_t nty, float *V, size_t ldv);
typedef void (*cnn_winograd_output_fn)(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, float *Y,
                                       size_t plane_stride, size_t ldo);

/* Weight gradient (dL/dU[k][c] = sum over tiles of (A dy A^T) .* V[c], then dL/dg = G^T (dL/dU) G):
 * dyin: D element (e, k, j) at D[(k*16 + e)*ldd + j] = (A dy A^T)[e] of the 2x2 tile (ty, tx) of
 *       output-gradient plane k; qp holds kout planes (plane_stride apart, rows of ldq >= 2*TW8 floats,
 *       2*nty rows, zeros past the output). Like input, the AVX2 kernel writes up to 7 columns past
 *       nty*tw (ldd >= nty*tw + 7).
 * wgrad: dw[k][c][3][3] = G^T Mk G with Mk[e] = Macc[e*ldm + k*cin + c], for k < kout, c < cin (ldm >=
 *   kout*cin: the tile elements' stride, so that rows [k0, k1) of a [16][K][C] Macc are Macc + k0*cin). */
typedef void (*cnn_winograd_dyin_fn)(const float *qp, size_t kout, size_t plane_stride, size_t ldq, size_t tw,
                                     size_t nty, float *D, size_t ldd);
typedef void (*cnn_winograd_wgrad_fn)(const float *Macc, size_t kout, size_t cin, size_t ldm, float *dw);

/* ---- F(4x4, 3x3) (6x6 tiles, 36 tile elements; Lavin & Gray's points 0, 1, -1, 2, -2, infinity) ----
 * Every 4x4 output tile is A^T [ (G g G^T) .* (B^T d B) ] A with d the 6x6 input tile at rows 4*ty..,
 * columns 4*tx.. of the zero-padded input plane and
 *   B^T = [4  0 -5  0  1  0;      G = [ 1/4     0     0  ;      A^T = [1  1  1  1  1  0;
 *          0 -4 -4  1  1  0;            -1/6  -1/6  -1/6 ;             0  1 -1  2 -2  0;
 *          0  4 -4 -1  1  0;            -1/6   1/6  -1/6 ;             0  1  1  4  4  0;
 *          0 -2 -1  2  1  0;             1/24  1/12  1/6 ;             0  1 -1  8 -8  1]
 *          0  2 -1 -2  1  0;             1/24 -1/12  1/6 ;
 *          0  4  0 -5  0  1]              0     0     1  ]
 * 36 GEMMs M_e[kout][cols] = U_e[kout][cin] * V_e[cin][cols], e = 6*row + column. Layouts as F(2x2) with
 * 36 for 16: V element (e, c, j) at V[(c*36 + e)*ldv + j], M element (e, k, j) at M[(k*36 + e)*ldm + j].
 *   input:  tile (ty, tx) reads xp rows 4*ty .. 4*ty+5, columns 4*tx .. 4*tx+5; the caller gives 4*nty + 2
 *           rows and ldp >= 4*tw + 4 with zeros past the image (the AVX2 and AVX-512 kernels read
 *           columns 4*tx .. 4*tx+7 of valid tiles only: up to column 4*tw + 3). Writes V columns
 *           [0, nty*tw) and, AVX2, up to 7 past (ldv >= nty*tw + 7).
 *   output: Y[k][4*ty + r][4*tx + q] = (A^T m A)[r][q], 4*nty rows of ldo >= 4*tw floats per plane; the
 *           AVX2 kernel reads M columns up to nty*tw + 6; every kernel writes Y columns < 4*tw only.
 * Same signatures as the F(2x2) input / output functions above. Both ISAs agree bitwise (f43_*.inc).
 * Weight gradient, as F(2x2)'s with 36 for 16 (dL/dU = sum over tiles of (A dy A^T) .* V, dL/dg =
 * G^T (dL/dU) G, A = (A^T)^T 6x4, G 6x3 above):
 *   dyin:  D element (e, k, j) at D[(k*36 + e)*ldd + j] = (A q A^T)[e] of the 4x4 dy tile at rows 4*ty..,
 *          columns 4*tx.. of plane k (4*nty rows of ldq >= 4*tw floats, zeros past the output); AVX2
 *          writes up to 7 columns past nty*tw (ldd >= nty*tw + 7).
 *   wgrad: dw[k][c][3][3] = G^T Mk G with Mk[e] = Macc[e*ldm + k*cin + c] (e < 36), in double. */

/* U_e[k*cin + c] = (G g G^T)[e] for k in [k0, k1), all c and e in [e0, e1), g as in
 * cnn_winograd_weights_fn (flip_transpose: backward-data). One pointer per tile element, so that the U_e
 * may lie in different buffers (conv2d spreads them over the threads' workspace regions). F(2x2): the
 * values of cnn_f32_winograd_f23_weights; F(4x4): computed in double, rounded once. */
typedef void (*cnn_winograd_weights_e_fn)(const float *w, size_t kout, size_t cin, int flip_transpose, size_t k0,
                                          size_t k1, size_t e0, size_t e1, float *const *Ue);

#define CNN_WINOGRAD_DECL(isa)                                                                             \
    void cnn_f32_winograd_f23_weights_##isa(const float *w, size_t kout, size_t cin, int flip_transpose,   \
                                            size_t k0, size_t k1, float *U);                               \
    void cnn_f32_winograd_f23_input_##isa(const float *xp, size_t cin, size_t plane_stride, size_t ldp,    \
                                          size_t tw, size_t nty, float *V, size_t ldv);                    \
    void cnn_f32_winograd_f23_output_##isa(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, \
                                           float *Y, size_t plane_stride, size_t ldo);                    \
    void cnn_f32_winograd_f23_dyin_##isa(const float *qp, size_t kout, size_t plane_stride, size_t ldq,    \
                                         size_t tw, size_t nty, float *D, size_t ldd);                     \
    void cnn_f32_winograd_f23_wgrad_##isa(const float *Macc, size_t kout, size_t cin, size_t ldm, float *dw);     \
    void cnn_f32_winograd_f23_weights_e_##isa(const float *w, size_t kout, size_t cin, int flip_transpose, \
                                              size_t k0, size_t k1, size_t e0, size_t e1, float *const *Ue); \
    void cnn_f32_winograd_f43_weights_##isa(const float *w, size_t kout, size_t cin, int flip_transpose,   \
                                            size_t k0, size_t k1, size_t e0, size_t e1, float *const *Ue); \
    void cnn_f32_winograd_f43_input_##isa(const float *xp, size_t cin, size_t plane_stride, size_t ldp,    \
                                          size_t tw, size_t nty, float *V, size_t ldv);                    \
    void cnn_f32_winograd_f43_output_##isa(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, \
                                           float *Y, size_t plane_stride, size_t ldo);                    \
    void cnn_f32_winograd_f43_dyin_##isa(const float *qp, size_t kout, size_t plane_stride, size_t ldq,    \
                                         size_t tw, size_t nty, float *D, size_t ldd);                     \
    void cnn_f32_winograd_f43_wgrad_##isa(const float *Macc, size_t kout, size_t cin, size_t ldm, float *dw);
CNN_WINOGRAD_DECL(scalar)
CNN_WINOGRAD_DECL(avx2)
#undef CNN_WINOGRAD_DECL
/* AVX-512 (f32_winograd/avx512.c): the F(4x4) input and output transforms, 16 tiles per step, bitwise the
 * AVX2 ones; they write no V column past nty*tw and read no M column past it. */
void cnn_f32_winograd_f43_input_avx512(const float *xp, size_t cin, size_t plane_stride, size_t ldp, size_t tw,
                                       size_t nty, float *V, size_t ldv);
void cnn_f32_winograd_f43_output_avx512(const float *M, size_t kout, size_t ldm, size_t tw, size_t nty, float *Y,
                                        size_t plane_stride, size_t ldo);

#endif
