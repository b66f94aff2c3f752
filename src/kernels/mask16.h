/* mask16.h — the k-mask of AVX-512 lanes l with lo <= l < hi (clamped to 0..16), shared by the AVX-512
 * kernels that load and store partial rows (f32_im2col, f32_conv_dw, f32_plane). Include only from files
 * compiled with -mavx512f. */
#ifndef CNN_MASK16_H
#define CNN_MASK16_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

static inline __mmask16 cnn_mask16(ptrdiff_t lo, ptrdiff_t hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)((hi >= 16 ? 0xFFFFu : (1u << hi) - 1) & ~((1u << lo) - 1));
}

#endif
