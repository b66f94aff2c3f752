/* f32_winograd/scalar.c — the F(2x2, 3x3) transforms (winograd.h) for the baseline ISA; the code is
 * winograd_impl.h. */
#define WINO_SUFFIX(name) name##_scalar
#include "winograd_impl.h"
