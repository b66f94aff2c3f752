/* winograd.h — Winograd F(2x2, 3x3) transforms for conv2d's "winograd" algorithm (3x3, stride 1,
 * dilation 1, one group), forward and backward-data (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", CVPR 2016). Every 2x2 output tile is A^T [ (G g G^T) .* (B^T d B) ] A with d the 4x4
 * input tile at (2*ty - pad_top, 2*tx - pad_left) (zero outside the image) and
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * The sum over input channels of the 16 element-wise products is 16 GEMMs (done by the driver with the
 * SGEMM): M[e][k][j] = sum_c U[e][k][c] * V[e][c][j], e = 4*row + column of the 4x4 tile, j = tile.
 * Layouts: U [16][kout][cin]; V element (e, c, j) at V[(c*16 + e)*ldv + j]; M element (e, k, j) at
 * M[(k*16 + e)*ldm + j] (a channel's 16 rows together, so a tile's 16 values lie in 16 nearby rows, not
 * 16 far-apart matrices; the GEMM of element e reads V and writes M with leading dimension 16*ld).
 * Tiles of one sample are numbered t = ty*tw + tx.
 * Pure, single-threaded, no allocation; reads and writes only inside the given planes (border tiles are
 * bounds-checked). The transforms are plain C compiled per ISA (winograd_impl.h).
 */
#ifndef CNN_WINOGRAD_H
#define CNN_WINOGRAD_H

#include <stddef.h>

/* U[e][k][c] = (G g G^T)[e] for g = w[k][c] (w: [kout][cin][3][3]); with flip_transpose, w is [cin][kout]
 * [3][3] (a forward weight read for backward-data) and g = w[c][k] rotated by 180 degrees. */
typedef void (*cnn_winograd_weights_fn)(const float *w, size_t kout, size_t cin, int flip_transpose, float *U);
/* V columns [0, nt) = B^T d B of tiles t0 .. t0+nt-1 of one sample x [cin][ih][iw]. */
typedef void (*cnn_winograd_input_fn)(const float *x, size_t cin, size_t ih, size_t iw, ptrdiff_t pad_top,
                                      ptrdiff_t pad_left, size_t tw, size_t t0, size_t nt, float *V, size_t ldv);
/* y[k] tiles t0 .. t0+nt-1 (=|+=) A^T M A (+ bias[k] when bias != NULL and !accumulate); y is one sample
 * [kout][oh][ow]; outputs past oh, ow are dropped. */
typedef void (*cnn_winograd_output_fn)(const float *M, size_t kout, size_t ldm, size_t oh, size_t ow, size_t tw,
                                       size_t t0, size_t nt, const float *bias, int accumulate, float *y);

#define CNN_WINOGRAD_DECL(isa)                                                                             \
    void cnn_f32_winograd_f23_weights_##isa(const float *w, size_t kout, size_t cin, int flip_transpose,   \
                                            float *U);                                                     \
    void cnn_f32_winograd_f23_input_##isa(const float *x, size_t cin, size_t ih, size_t iw,                \
                                          ptrdiff_t pad_top, ptrdiff_t pad_left, size_t tw, size_t t0,     \
                                          size_t nt, float *V, size_t ldv);                                \
    void cnn_f32_winograd_f23_output_##isa(const float *M, size_t kout, size_t ldm, size_t oh, size_t ow,  \
                                           size_t tw, size_t t0, size_t nt, const float *bias,             \
                                           int accumulate, float *y);
CNN_WINOGRAD_DECL(scalar)
CNN_WINOGRAD_DECL(avx2)
#undef CNN_WINOGRAD_DECL

#endif
