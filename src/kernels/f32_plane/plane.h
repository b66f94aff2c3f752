/* plane.h — plane copies of the convolution drivers (src/layers/conv2d.c): padding a plane into a
 * workspace and adding a computed plane (with its bias) into the output. Pure data movement and one
 * addition per element, so every ISA gives the same values bit for bit (tests/test_conv2d.c).
 *
 * pad:  dst[r][q] = src[r - off_r][q - off_c] where that falls inside src (sr x sc floats, contiguous),
 *       0 elsewhere, for r < R, q < C (dst rows ld >= C floats apart; dst[r][C .. ld) untouched). One pass
 *       over dst (the drivers' memset of the plane and memcpy per row was two, with a libc call per row of
 *       14 floats: 7.5% of c1's forward on the Zen 4).
 * add:  dst[r][q] = src[r][q] + b (accumulate: dst[r][q] += src[r][q]) for r < rows, q < cols; dst rows
 *       ldd apart, src rows lds apart.
 * Sizes below 2^30 floats per row. */
#ifndef CNN_F32_PLANE_H
#define CNN_F32_PLANE_H

#include <stddef.h>

typedef void (*cnn_plane_pad_fn)(float *dst, size_t R, size_t C, size_t ld, const float *src, size_t sr, size_t sc,
                                 ptrdiff_t off_r, ptrdiff_t off_c);
typedef void (*cnn_plane_add_fn)(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols,
                                 float b, int accumulate);

void cnn_f32_plane_pad_scalar(float *dst, size_t R, size_t C, size_t ld, const float *src, size_t sr, size_t sc,
                              ptrdiff_t off_r, ptrdiff_t off_c);
void cnn_f32_plane_add_scalar(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols,
                              float b, int accumulate);
void cnn_f32_plane_pad_avx512(float *dst, size_t R, size_t C, size_t ld, const float *src, size_t sr, size_t sc,
                              ptrdiff_t off_r, ptrdiff_t off_c);
void cnn_f32_plane_add_avx512(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols,
                              float b, int accumulate);

#endif
