/* f32_winograd/avx2.c — the F(2x2, 3x3) transforms (winograd.h) compiled with -mavx2 -mfma (call only when
 * the CPU has both); the code is winograd_impl.h, vectorised by the compiler. */
#define WINO_SUFFIX(name) name##_avx2
#include "winograd_impl.h"
