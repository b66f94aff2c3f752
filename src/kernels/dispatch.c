/* dispatch.c — read the CPU's features once and fill the kernel table, widest ISA first; scalar always. */
#include "kernels.h"

#include <cpuid.h>
#include <stdint.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

_Thread_local float *cnn_f32_gemm_ws_current = NULL;

cnn_isa cnn_cpu_isa(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CNN_ISA_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return CNN_ISA_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return CNN_ISA_SCALAR; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CNN_ISA_SCALAR;
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    cnn_isa isa = CNN_ISA_SCALAR;
    if (avx2 && fma) isa = CNN_ISA_AVX2;
    if (isa == CNN_ISA_AVX2 && f && dq && bw && vl && (xcr0 & 0xe0) == 0xe0) isa = CNN_ISA_AVX512;
    return isa;
}

void cnn_kernels_select(cnn_kernels *k, cnn_isa limit) {
    cnn_isa isa = cnn_cpu_isa();
    if (isa > limit) isa = limit;
    /* AVX-512 machines run the AVX2 kernels with the AVX-512 SGEMM (the kernel that carries the GEMM-based
     * algorithms: im2col, 1x1, Winograd's tile GEMMs, dense) and AVX-512 stem kernels. Their results are
     * bit-identical to the AVX2 ones (the SGEMM: same K slices, same FMA chain per element,
     * f32_gemm/avx512.c; the stem: f32_conv_stem/avx512.c). */
    if (isa >= CNN_ISA_AVX2) {
        k->isa = CNN_ISA_AVX2;
        k->isa_name = "avx2";
        k->sgemm = cnn_f32_gemm_blocked_avx2;
        k->sgemm_pack_a = cnn_f32_gemm_pack_a_avx2;
        k->sgemm_pa = cnn_f32_gemm_packed_a_avx2;
        k->sgemm_mr = 6;
        k->conv_direct_fwd = cnn_f32_conv_direct_fwd_avx2;
        k->conv_direct_wgrad = cnn_f32_conv_direct_wgrad_avx2;
        k->conv_stem_fwd = cnn_f32_conv_stem_fwd_avx2;
        k->conv_stem_wgrad = cnn_f32_conv_stem_wgrad_avx2;
        k->conv_dw_fwd = cnn_f32_conv_dw_fwd_avx2;
        k->conv_dw_bwd = cnn_f32_conv_dw_bwd_avx2;
        k->conv_dw_wgrad = cnn_f32_conv_dw_wgrad_avx2;
        k->wgrad_pack_dy = cnn_f32_wgrad_pack_dy_avx2;
        k->wgrad_sums = cnn_f32_wgrad_sums_avx2;
        k->winograd_weights = cnn_f32_winograd_f23_weights_avx2;
        k->winograd_input = cnn_f32_winograd_f23_input_avx2;
        k->winograd_output = cnn_f32_winograd_f23_output_avx2;
        k->winograd_dyin = cnn_f32_winograd_f23_dyin_avx2;
        k->winograd_wgrad = cnn_f32_winograd_f23_wgrad_avx2;
        k->winograd_weights_e = cnn_f32_winograd_f23_weights_e_avx2;
        k->winograd4_weights = cnn_f32_winograd_f43_weights_avx2;
        k->winograd4_input = cnn_f32_winograd_f43_input_avx2;
        k->winograd4_output = cnn_f32_winograd_f43_output_avx2;
        k->winograd4_dyin = cnn_f32_winograd_f43_dyin_avx2;
        k->plane_pad = cnn_f32_plane_pad_scalar; /* (vectorised by the compiler; no AVX2 version) */
        k->plane_add = cnn_f32_plane_add_scalar;
        k->winograd4_wgrad = cnn_f32_winograd_f43_wgrad_avx2;
        k->im2col = cnn_f32_im2col_avx2;
        k->col2im = cnn_f32_col2im_avx2;
        if (isa >= CNN_ISA_AVX512) {
            k->isa = CNN_ISA_AVX512;
            k->isa_name = "avx512";
            k->sgemm = cnn_f32_gemm_blocked_avx512;
            k->sgemm_pack_a = cnn_f32_gemm_pack_a_avx512;
            k->sgemm_pa = cnn_f32_gemm_packed_a_avx512;
            k->sgemm_mr = 12;
            k->conv_stem_fwd = cnn_f32_conv_stem_fwd_avx512; /* bit-identical to AVX2 (f32_conv_stem/avx512.c) */
            k->conv_stem_wgrad = cnn_f32_conv_stem_wgrad_avx512;
            k->col2im = cnn_f32_col2im_avx512; /* bit-identical to AVX2 and scalar (f32_im2col/avx512.c) */
            k->conv_dw_fwd = cnn_f32_conv_dw_fwd_avx512; /* 3x3 stride 1; bit-identical to AVX2 */
            k->conv_dw_bwd = cnn_f32_conv_dw_bwd_avx512;
            k->wgrad_sums = cnn_f32_wgrad_sums_avx512; /* bit-identical to AVX2 and scalar (wgrad.h) */
            k->winograd4_input = cnn_f32_winograd_f43_input_avx512; /* bit-identical to AVX2 (avx512.c) */
            k->winograd4_output = cnn_f32_winograd_f43_output_avx512;
            k->plane_pad = cnn_f32_plane_pad_avx512; /* same values as scalar (f32_plane/avx512.c) */
            k->plane_add = cnn_f32_plane_add_avx512;
        }
    } else {
        k->isa = CNN_ISA_SCALAR;
        k->isa_name = "scalar";
        k->sgemm = cnn_f32_gemm_blocked_scalar;
        k->sgemm_pack_a = cnn_f32_gemm_pack_a_scalar;
        k->sgemm_pa = cnn_f32_gemm_packed_a_scalar;
        k->sgemm_mr = 4;
        k->conv_direct_fwd = cnn_f32_conv_direct_fwd_scalar;
        k->conv_direct_wgrad = cnn_f32_conv_direct_wgrad_scalar;
        k->conv_stem_fwd = cnn_f32_conv_stem_fwd_scalar;
        k->conv_stem_wgrad = cnn_f32_conv_stem_wgrad_scalar;
        k->conv_dw_fwd = cnn_f32_conv_dw_fwd_scalar;
        k->conv_dw_bwd = cnn_f32_conv_dw_bwd_scalar;
        k->conv_dw_wgrad = cnn_f32_conv_dw_wgrad_scalar;
        k->wgrad_pack_dy = cnn_f32_wgrad_pack_dy_scalar;
        k->wgrad_sums = cnn_f32_wgrad_sums_scalar;
        k->winograd_weights = cnn_f32_winograd_f23_weights_scalar;
        k->winograd_input = cnn_f32_winograd_f23_input_scalar;
        k->winograd_output = cnn_f32_winograd_f23_output_scalar;
        k->winograd_dyin = cnn_f32_winograd_f23_dyin_scalar;
        k->winograd_wgrad = cnn_f32_winograd_f23_wgrad_scalar;
        k->winograd_weights_e = cnn_f32_winograd_f23_weights_e_scalar;
        k->winograd4_weights = cnn_f32_winograd_f43_weights_scalar;
        k->winograd4_input = cnn_f32_winograd_f43_input_scalar;
        k->winograd4_output = cnn_f32_winograd_f43_output_scalar;
        k->winograd4_dyin = cnn_f32_winograd_f43_dyin_scalar;
        k->plane_pad = cnn_f32_plane_pad_scalar;
        k->plane_add = cnn_f32_plane_add_scalar;
        k->winograd4_wgrad = cnn_f32_winograd_f43_wgrad_scalar;
        k->im2col = cnn_f32_im2col_scalar;
        k->col2im = cnn_f32_col2im_scalar;
    }
}
