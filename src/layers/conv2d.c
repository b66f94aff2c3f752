/* conv2d.c — 2-D convolution (PyTorch nn.Conv2d: cross-correlation, groups, dilation, zero padding).
 *
 * Math      per sample, group g (G groups, Cg = C/G input and Kg = K/G output channels per group):
 *             y[o][oy][ox] = b[o] + sum_{c<Cg, i<kh, j<kw} W[o][c][i][j] *
 *                            x[g*Cg + c][oy*sh + i*dh - pt][ox*sw + j*dw - pl]      (o in group g)
 *           with x = 0 outside the image (padding). Output size
 *             OH = floor((H + pt + pb - dh*(kh-1) - 1) / sh) + 1     (OW likewise)
 *           pad=same: OH = ceil(H / sh), total padding max((OH-1)*sh + dh*(kh-1) + 1 - H, 0) split
 *           top = total/2, bottom = the rest (the extra row at the bottom/right, as TF and PyTorch).
 *           In GEMM form with col = im2col(x_g) ([Cg*kh*kw, OH*OW]) and W_g viewed as [Kg, Cg*kh*kw]:
 *             forward         Y_g  = W_g * col + b
 *             backward_data   dx_g = col2im(W_g^T * dY_g)
 *             backward_wts    dW_g = sum_n dY_g * col^T,   db[o] = sum_{n,oy,ox} dy[o][oy][ox]
 * Layouts   x [n, C, H, W], y [n, K, OH, OW] (NCHW); weight [K, C/G, kh, kw] (OIHW, PyTorch), bias [K].
 *           Parameter names <layer>.weight, <layer>.bias.
 * FLOPs     2 * K * OH * OW * (C/G) * kh * kw per sample (forward; the bias add is not counted).
 * Algorithm chosen per layer when it is built (conv_dims_of; `cnn info` shows it), or forced with the
 *           model-text key algo=auto|im2col|direct|winograd (tests, benchmarks; a forced algorithm that
 *           cannot run the layer is a shape error):
 *           (algo=stem forces the stem algorithm below; the other names as listed in algo_names)
 *           "stem"          groups 1, dilation 1, any stride/padding, with C <= STEM_MAX_C = 4 and
 *                           K >= STEM_MIN_K = 8 (ResNet's 3 -> 64 7x7/2, M1's 1 -> 32 3x3): the input rows
 *                           a block needs are copied into column-phase planes (kernels/f32_conv_stem), so
 *                           every tap reads a contiguous run of output columns; forward tiles of 6 output
 *                           channels x 16 columns (the filter packed in blocks of 6, 3.5 KiB for 147
 *                           taps), weight gradient tiles of 4 channels x 3 taps summed over the batch.
 *                           Backward-data runs im2col+gemm. See stem_forward_task and
 *                           stem_backward_weights_task.
 *           "depthwise"     groups = C = K, dilation 1, stride 1 or 2 (both axes), kernels up to 7x7, padding
 *                           below the kernel size (dw_possible; auto picks it wherever it applies): one
 *                           kernel call per (sample, channel) plane (kernels/f32_conv_dw), reading and
 *                           writing the NCHW planes in place, vectorised along the width. Backward-data is
 *                           the full correlation with the flipped filter (stride 1) or a per-column-phase
 *                           gather (stride 2); backward-weights: tasks = channels, the per-plane tap sums
 *                           added over the samples in order in double. No workspace.
 *           "direct"        stride 1 and at most DIRECT_MAX_CG = 4 input channels per group (depthwise,
 *                           groups > 1 or fewer than 8 output channels): plane-by-plane correlation
 *                           (kernels/f32_conv_direct) on zero-padded planes in the workspace.
 *             forward       tasks = (sample, group): pad the group's Cg planes once, then per output
 *                           channel y[o] = b[o] + sum_c corr(xp[c], W[o][c]) (one call per (o, c)).
 *             backward_data tasks = (sample, input channel): with stride 1 the input gradient is the full
 *                           correlation of dy with the flipped filter: dx[c] (+)= sum_o corr(dyP[o],
 *                           flip(W[o][c])), dyP = dy placed at ((kh-1)*dh - pt, (kw-1)*dw - pl). When
 *                           direct was chosen automatically and a group has more than 4 output channels
 *                           (one pass over dx each), backward_data runs im2col+gemm instead (faster).
 *             backward_wts  tasks = output channels: per sample (in order) the kernel's per-tap plane sums
 *                           (and the dy sum for the bias), accumulated in double.
 *           "winograd-f2x2" 3x3, stride 1, dilation 1, groups 1, with C >= 16 and K >= 16: Winograd
 *                           F(2x2,3x3) (kernels/f32_winograd) in all three passes: backward-data is the
 *                           same algorithm on dy with the flipped, transposed filter and padding 2 - pad;
 *                           backward-weights is dW = G^T [sum over tiles (A dy A^T) .* (B^T d B)] G, 16
 *                           GEMMs over the batch's tiles. 2.25x fewer multiplications; the GEMMs are
 *                           ctx->kernels.sgemm. See wino_task and wino_wgrad_team.
 *           "winograd-f4x4" the same layers with C >= 32, K >= 32 and at least 16 4x4 output tiles per
 *                           sample (wino_tile): Winograd F(4x4,3x3) (6x6 tiles, 36 GEMMs, 2.25x fewer
 *                           multiplications than F(2x2), about one decimal digit less accurate; see
 *                           kernels/f32_winograd/winograd.h for its matrices) in forward and backward-data;
 *                           backward-weights runs F(4x4) too (36 GEMMs, 4x fewer multiplications than
 *                           direct) when forced or when K*C >= 256 x 256, else F(2x2) (wino_wgrad_tile).
 *                           algo=winograd forces F(2x2); algo=winograd-f2x2 / winograd-f4x4 force a tile
 *                           size (for all three passes).
 *           "gemm-1x1"      kh = kw = 1, no padding (and more than 4 channels per group), stride 1 (x_g
 *                           itself is the column matrix and im2col is skipped) or, with groups 1, any
 *                           stride (the strided columns are gathered): groups 1 runs the packed-A driver
 *                           (pw_run: weights packed once per pass and task, or pre-packed in an inference
 *                           compile; bias in the GEMM's store; whole column blocks per task, or output
 *                           channels per task for small images) in forward and backward-data, and the
 *                           batch in two fixed parts of images in backward-weights (stride 1). The same
 *                           driver runs im2col+gemm's forward for groups 1.
 *           "im2col+gemm"   everything else. The SGEMM is ctx->kernels.sgemm (row-major); im2col / col2im
 *                           are ctx->kernels.im2col / col2im.
 *             (all passes)  the column matrix is built and multiplied in blocks of output rows (brows
 *                           rows, about 64 Ki floats but at least 256 columns; one block for small
 *                           images), so that it stays in L2 (c6: 7.4 MB per sample unblocked).
 *             forward       tasks = (sample, group, row block) over the threads; im2col of the block into
 *                           the thread's workspace, Y_g[:, block] = W_g * col (beta 0), then + bias.
 *             backward_data tasks = (sample, group): dx_g zeroed unless accumulating, then per row block
 *                           dcol = W_g^T * dY_g[:, block] (sgemm trans_a) into the workspace and
 *                           dx_g += col2im(dcol). gemm-1x1 writes dx_g (+)= W_g^T * dY_g directly.
 *             backward_wts  every dW element is produced by exactly one task, so no cross-thread reduction
 *                           is needed and the result does not depend on the thread count: the G*Cg*kh*kw
 *                           columns of dW (rows of the column matrices, over all groups) are split into
 *                           one contiguous range per thread (aligned to 16). A task loops over the samples
 *                           in order (and the row blocks in order), builds only its rows of col (im2col
 *                           of a row range) and accumulates dW_g[:, its rows] += dY_g[:, block] *
 *                           col_rows^T (beta 0 for the first block of the first sample, then 1).
 *                           The SGEMM sums each element in an order independent of the block it is in, so
 *                           any split gives bit-identical results. db is split over output channels and
 *                           summed in double, per sample, of 8 interleaved float partial sums.
 *           Determinism: every algorithm gives bit-identical results for any thread count (each output
 *           element has one owner and a summation order fixed by the shape).
 *           Workspace per thread: im2col+gemm one block of the column matrix, Cg*kh*kw*brows*OW floats
 *           (none for gemm-1x1); direct see direct_ws; winograd see wino_ws. Nothing is saved from forward to
 *           backward (x is kept by the network).
 * References PyTorch torch.nn.Conv2d; Chellapilla, Puri, Simard, "High Performance Convolutional Neural
 *           Networks for Document Processing" (2006) for im2col; Lavin & Gray, "Fast Algorithms for
 *           Convolutional Neural Networks" (CVPR 2016) for Winograd F(2x2,3x3); Dumoulin & Visin, "A guide
 *           to convolution arithmetic for deep learning", arXiv:1603.07285, for the output-size formulas.
 */
#include "layer.h"
#include "fold.h"

#include "../kernels/f32_im2col/im2col.h"

#include <stdatomic.h>
#include <string.h>

#define MAX_CHANNELS ((size_t)1 << 24)
#define MAX_KERNEL ((size_t)1 << 16)

typedef struct conv_params {
    size_t k;                 /* output channels */
    size_t kh, kw;
    size_t stride_h, stride_w;
    size_t dil_h, dil_w;
    size_t pad_top, pad_bottom, pad_left, pad_right; /* explicit padding (ignored with same) */
    size_t groups;
    int same;                 /* pad=same: padding computed from the input in shape */
    int bias;
    int algo;                 /* algo=: ALGO_AUTO (0) or a forced algorithm (tests, benchmarks) */
    int wgrad;                /* wgrad=: WGRAD_AUTO (0), WGRAD_BLOCKED or WGRAD_ALGO (the algorithm's own) */
    /* set by an inference compile (fold.h; never parsed or printed): the forward reads cnn_layer_run.w as
     * the inference weight block, and with infer_fold adds the folded bias even when bias=0 */
    int infer_block, infer_fold;
    /* set by every compile (never parsed or printed): the batch it was compiled for (0: not compiled yet),
     * which the automatic Winograd tile size looks at (wino_tile) */
    size_t batch_hint;
} conv_params;

/* algo= values (index = value); "im2col" means im2col+gemm, or gemm-1x1 where that applies. */
enum { ALGO_AUTO = 0, ALGO_IM2COL, ALGO_DIRECT, ALGO_WINOGRAD, ALGO_WINO2, ALGO_WINO4, ALGO_STEM, ALGO_DEPTHWISE };
static const char *const algo_names[] = {"auto", "im2col", "direct", "winograd", "winograd-f2x2", "winograd-f4x4",
                                         "stem", "depthwise", NULL};
/* wgrad= values: the weight gradient's algorithm (blk_wgrad_team) */
enum { WGRAD_AUTO = 0, WGRAD_BLOCKED, WGRAD_ALGO };
static const char *const wgrad_names[] = {"auto", "blocked", "algo", NULL};
/* algo=winograd forces Winograd F(2x2) (as before F(4x4) existed); -f2x2 / -f4x4 force a tile size */
static int algo_is_wino(int algo) { return algo == ALGO_WINOGRAD || algo == ALGO_WINO2 || algo == ALGO_WINO4; }

/* The algorithm a layer runs (conv_dims.algo). */
typedef enum conv_algo {
    CONV_IM2COL = 0, CONV_GEMM_1X1, CONV_DIRECT, CONV_WINOGRAD, CONV_STEM, CONV_DEPTHWISE
} conv_algo;

/* Everything a pass needs, derived from the params and the input shape. */
typedef struct conv_dims {
    size_t C, H, W, K, G, Cg, Kg;
    size_t OH, OW;
    size_t rows;   /* Cg*kh*kw: rows of a column matrix, columns of W_g */
    size_t hw, ohw;
    int gemm_1x1;  /* kh = kw = 1, stride 1, no padding: x_g is the column matrix */
    conv_algo algo;
    cnn_conv_geom geom; /* one group of one sample */
    /* direct: the padded input plane is PR x PC (forward, weight gradient), the padded output-gradient
     * plane QR x QC (input gradient); taps = kh*kw */
    size_t PR, PC, QR, QC, taps;
    cnn_plane_geom pg_fwd, pg_bwd;
    int direct_bwd_gemm; /* direct chosen automatically, but backward-data runs im2col+gemm (Kg > 4) */
    /* im2col+gemm: the column matrix is built and multiplied in blocks of brows output rows (nblocks
     * blocks), so that a block (rows * brows * OW floats) stays in L2 for large images */
    size_t brows, nblocks;
    /* stem: phase-plane rows of stem_ldp floats; forward blocks of stem_rbf output rows (planes
     * stem_psf floats apart), weight-gradient chunks of stem_rbw rows (stem_psw) */
    size_t stem_ldp, stem_rbf, stem_rbw, stem_psf, stem_psw;
    size_t wino_m; /* winograd: output tile side, 2 (F(2x2,3x3)) or 4 (F(4x4,3x3)); see wino_tile */
    size_t wino_mw; /* winograd: the tile of backward-weights (wino_wgrad_tile) */
    cnn_dw_geom dwg; /* depthwise: the geometry of one plane (conv_dw.h) */
    int wgrad_blocked; /* backward-weights runs the blocked weight gradient (blk_wgrad_team) */
} conv_dims;

/* ---- parse / print ---- */

static cnn_status conflict(struct cnn_kv *kv, const char *key, int given, const char *other, int other_given) {
    if (given && other_given)
        return cnn_kv_error(kv, key, "%s= and %s= both given; use one of them", other, key);
    return CNN_OK;
}

static cnn_status conv_parse(struct cnn_kv *kv, void *params) {
    conv_params *p = params;
    cnn_status st = CNN_OK;
    memset(p, 0, sizeof *p);
    p->stride_h = p->stride_w = 1;
    p->dil_h = p->dil_w = 1;
    p->groups = 1;
    p->bias = 1;

    int has_k = 0, has_size = 0, has_kh = 0, has_kw = 0;
    CNN_TRY(cnn_kv_size(kv, "k", 1, MAX_CHANNELS, &p->k, &has_k));
    if (!has_k) return cnn_kv_error(kv, NULL, "conv2d needs k=<output channels>");

    size_t size = 0;
    CNN_TRY(cnn_kv_size(kv, "size", 1, MAX_KERNEL, &size, &has_size));
    CNN_TRY(cnn_kv_size(kv, "kh", 1, MAX_KERNEL, &p->kh, &has_kh));
    CNN_TRY(cnn_kv_size(kv, "kw", 1, MAX_KERNEL, &p->kw, &has_kw));
    CNN_TRY(conflict(kv, "kh", has_kh, "size", has_size));
    CNN_TRY(conflict(kv, "kw", has_kw, "size", has_size));
    if (has_size) {
        p->kh = p->kw = size;
    } else if (!has_kh && !has_kw) {
        return cnn_kv_error(kv, NULL, "conv2d needs a kernel size: size=<n> or kh=<n> kw=<n>");
    } else if (!has_kh || !has_kw) {
        return cnn_kv_error(kv, has_kh ? "kh" : "kw", "%s= given without %s=", has_kh ? "kh" : "kw",
                            has_kh ? "kw" : "kh");
    }

    int has_s = 0, has_sh = 0, has_sw = 0;
    size_t s = 1;
    CNN_TRY(cnn_kv_size(kv, "stride", 1, MAX_KERNEL, &s, &has_s));
    CNN_TRY(cnn_kv_size(kv, "stride_h", 1, MAX_KERNEL, &p->stride_h, &has_sh));
    CNN_TRY(cnn_kv_size(kv, "stride_w", 1, MAX_KERNEL, &p->stride_w, &has_sw));
    CNN_TRY(conflict(kv, "stride_h", has_sh, "stride", has_s));
    CNN_TRY(conflict(kv, "stride_w", has_sw, "stride", has_s));
    if (has_s) p->stride_h = p->stride_w = s;

    int has_d = 0, has_dh = 0, has_dw = 0;
    size_t d = 1;
    CNN_TRY(cnn_kv_size(kv, "dilation", 1, MAX_KERNEL, &d, &has_d));
    CNN_TRY(cnn_kv_size(kv, "dilation_h", 1, MAX_KERNEL, &p->dil_h, &has_dh));
    CNN_TRY(cnn_kv_size(kv, "dilation_w", 1, MAX_KERNEL, &p->dil_w, &has_dw));
    CNN_TRY(conflict(kv, "dilation_h", has_dh, "dilation", has_d));
    CNN_TRY(conflict(kv, "dilation_w", has_dw, "dilation", has_d));
    if (has_d) p->dil_h = p->dil_w = d;

    /* Padding: pad=<n>|same for all sides, pad_h / pad_w per axis, pad_top ... per side; one level per
     * side. */
    int has_pad = 0, has_ph = 0, has_pw = 0, has_pt = 0, has_pb = 0, has_pl = 0, has_pr = 0;
    const char *pv = NULL;
    size_t pvlen = 0;
    CNN_TRY(cnn_kv_str(kv, "pad", &pv, &pvlen, &has_pad));
    if (has_pad && pvlen == 4 && !memcmp(pv, "same", 4)) {
        p->same = 1;
    } else if (has_pad) {
        size_t v = 0;
        if (!pvlen || pv[0] < '0' || pv[0] > '9')
            return cnn_kv_error(kv, "pad", "pad: expected an integer or 'same', got '%.*s'", (int)pvlen, pv);
        CNN_TRY(cnn_kv_size(kv, "pad", 0, MAX_KERNEL, &v, NULL));
        p->pad_top = p->pad_bottom = p->pad_left = p->pad_right = v;
    }
    size_t ph = 0, pw = 0;
    CNN_TRY(cnn_kv_size(kv, "pad_h", 0, MAX_KERNEL, &ph, &has_ph));
    CNN_TRY(cnn_kv_size(kv, "pad_w", 0, MAX_KERNEL, &pw, &has_pw));
    CNN_TRY(cnn_kv_size(kv, "pad_top", 0, MAX_KERNEL, &p->pad_top, &has_pt));
    CNN_TRY(cnn_kv_size(kv, "pad_bottom", 0, MAX_KERNEL, &p->pad_bottom, &has_pb));
    CNN_TRY(cnn_kv_size(kv, "pad_left", 0, MAX_KERNEL, &p->pad_left, &has_pl));
    CNN_TRY(cnn_kv_size(kv, "pad_right", 0, MAX_KERNEL, &p->pad_right, &has_pr));
    CNN_TRY(conflict(kv, "pad_h", has_ph, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_w", has_pw, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_top", has_pt, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_bottom", has_pb, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_left", has_pl, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_right", has_pr, "pad", has_pad));
    CNN_TRY(conflict(kv, "pad_top", has_pt, "pad_h", has_ph));
    CNN_TRY(conflict(kv, "pad_bottom", has_pb, "pad_h", has_ph));
    CNN_TRY(conflict(kv, "pad_left", has_pl, "pad_w", has_pw));
    CNN_TRY(conflict(kv, "pad_right", has_pr, "pad_w", has_pw));
    if (has_ph) p->pad_top = p->pad_bottom = ph;
    if (has_pw) p->pad_left = p->pad_right = pw;

    int has_g = 0;
    CNN_TRY(cnn_kv_size(kv, "groups", 1, MAX_CHANNELS, &p->groups, &has_g));
    if (p->k % p->groups)
        return cnn_kv_error(kv, "groups", "k=%zu output channels are not divisible by groups=%zu", p->k,
                            p->groups);
    CNN_TRY(cnn_kv_bool(kv, "bias", &p->bias, NULL));
    CNN_TRY(cnn_kv_enum(kv, "algo", algo_names, &p->algo, NULL));
    CNN_TRY(cnn_kv_enum(kv, "wgrad", wgrad_names, &p->wgrad, NULL));
cleanup:
    return st;
}

/* " <base>=v" when both axes agree, else " <base>_h=a <base>_w=b"; nothing when both equal def. */
static void print_pair(cnn_strbuf *out, const char *base, size_t a, size_t b, size_t def) {
    if (a == b) {
        if (a != def) cnn_strbuf_printf(out, " %s=%zu", base, a);
    } else {
        cnn_strbuf_printf(out, " %s_h=%zu %s_w=%zu", base, a, base, b);
    }
}

static void conv_print(const void *params, cnn_strbuf *out) {
    const conv_params *p = params;
    cnn_strbuf_printf(out, " k=%zu kh=%zu kw=%zu", p->k, p->kh, p->kw);
    print_pair(out, "stride", p->stride_h, p->stride_w, 1);
    if (p->same) {
        cnn_strbuf_printf(out, " pad=same");
    } else if (p->pad_top == p->pad_bottom && p->pad_left == p->pad_right) {
        if (p->pad_top == p->pad_left) {
            if (p->pad_top) cnn_strbuf_printf(out, " pad=%zu", p->pad_top);
        } else {
            cnn_strbuf_printf(out, " pad_h=%zu pad_w=%zu", p->pad_top, p->pad_left);
        }
    } else {
        cnn_strbuf_printf(out, " pad_top=%zu pad_bottom=%zu pad_left=%zu pad_right=%zu", p->pad_top,
                          p->pad_bottom, p->pad_left, p->pad_right);
    }
    print_pair(out, "dilation", p->dil_h, p->dil_w, 1);
    if (p->groups != 1) cnn_strbuf_printf(out, " groups=%zu", p->groups);
    if (!p->bias) cnn_strbuf_printf(out, " bias=0");
    if (p->algo != ALGO_AUTO) cnn_strbuf_printf(out, " algo=%s", algo_names[p->algo]);
    if (p->wgrad != WGRAD_AUTO) cnn_strbuf_printf(out, " wgrad=%s", wgrad_names[p->wgrad]);
}

/* ---- shape ---- */

/* One spatial axis: resolve same-padding, check the kernel fits, compute the output size. Returns 0 on
 * success, 1 when the dilated kernel is larger than the padded input, 2 on overflow. *ext is the dilated
 * kernel extent and *padded the padded input size (for messages). */
static int conv_axis(size_t in, size_t k, size_t stride, size_t dil, int same, size_t pa, size_t pb,
                     size_t *pa_out, size_t *pb_out, size_t *out, size_t *ext, size_t *padded) {
    size_t e, t;
    if (!cnn_size_mul(dil, k - 1, &e) || !cnn_size_add(e, 1, &e)) return 2;
    *ext = e;
    if (same) {
        size_t o = in / stride + (in % stride != 0), need;
        if (!cnn_size_mul(o - 1, stride, &need) || !cnn_size_add(need, e, &need)) return 2;
        size_t total = need > in ? need - in : 0;
        pa = total / 2;
        pb = total - pa;
    }
    if (!cnn_size_add(in, pa, &t) || !cnn_size_add(t, pb, &t)) return 2;
    *padded = t;
    *pa_out = pa;
    *pb_out = pb;
    if (e > t) return 1;
    *out = (t - e) / stride + 1;
    return 0;
}

/* The direct algorithm handles stride 1 (any kernel, padding, dilation, groups); auto picks it when a
 * group has at most DIRECT_MAX_CG input channels (depthwise layers, small-channel stems), where the
 * column matrix would have only Cg*kh*kw rows and the GEMM would be short and inefficient. */
#define DIRECT_MAX_CG 4
static int direct_possible(const conv_params *p) { return p->stride_h == 1 && p->stride_w == 1; }

/* Winograd F(2x2,3x3) handles 3x3 kernels with stride 1, dilation 1 and one group (any padding), in
 * all three passes; auto picks it when both channel counts are at least WINO_MIN_CH, so that the 16
 * GEMMs are large next to the transforms. */
#define WINO_MIN_CH 16
static int winograd_possible(const conv_params *p) {
    return p->kh == 3 && p->kw == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 &&
           p->groups == 1;
}

/* The winograd tile: F(4x4,3x3) (2.25x fewer multiplications than F(2x2), about one decimal digit less
 * accurate) when forced, or automatically when both channel counts are at least WINO4_MIN_CH (the 36
 * GEMMs large next to the transforms) and a sample has at least WINO4_MIN_TILES 4x4 tiles (13x13 outputs
 * and up: with fewer tiles per GEMM, e.g. ResNet's 7x7 layer4 at batch 1, packing the 36 U_e of K*C
 * floats dominates and F(2x2) packs 16); else F(2x2,3x3). Measured (1 thread, CPU time per pass,
 * F(2x2) -> F(4x4)): c1 5.1 -> 5.4 ms fwd and 5.7 -> 5.5 bwd_data, c2 18.6 -> 13.9 and 19.6 -> 14.4,
 * c3 23.7 -> 18.8 and 22.9 -> 22.6. */
#define WINO4_MIN_CH 32
#define WINO4_MIN_TILES 16
/* ... and, once compiled, when the compiled batch has at least WINO4_MIN_BATCH_TILES 4x4 tiles in all: with
 * fewer, the pass is bound by streaming the weights, which F(4x4) makes 36/9 the plain ones and F(2x2) 16/9
 * (ResNet-18 inference at batch 1 on the Intel Xeon, 2026-12-02: 24.5 -> 22.5 ms with its 28x28 and 14x14
 * layers in F(2x2); c3, 14x14 at batch 8, stays F(4x4), 25% faster there). */
#define WINO4_MIN_BATCH_TILES 64
static size_t wino_tile(const conv_params *p, const conv_dims *d) {
    if (p->algo == ALGO_WINO4) return 4;
    const size_t tiles = (d->OH + 3) / 4 * ((d->OW + 3) / 4);
    if (p->algo == ALGO_AUTO && d->C >= WINO4_MIN_CH && d->K >= WINO4_MIN_CH && tiles >= WINO4_MIN_TILES &&
        (p->batch_hint == 0 || tiles * p->batch_hint >= WINO4_MIN_BATCH_TILES))
        return 4;
    return 2;
}

/* The tile of backward-weights: F(4x4) where the layer's passes run F(4x4) and either it was forced
 * (algo=winograd-f4x4: all three passes) or K*C >= WINO4_WGRAD_MIN_KC, where the 36 GEMMs Macc_e += D_e V_e^T
 * carry the pass (c3, 256 -> 256: 4x fewer multiplications than direct against F(2x2)'s 2.25x); else F(2x2),
 * the more accurate, with which the zoo's models (K*C <= 128 x 256) were trained and measured. */
#ifndef WINO4_WGRAD_MIN_KC
#define WINO4_WGRAD_MIN_KC ((size_t)256 * 256)
#endif
static size_t wino_wgrad_tile(const conv_params *p, const conv_dims *d) {
    if (d->wino_m != 4) return 2;
    return p->algo == ALGO_WINO4 || d->K * d->C >= WINO4_WGRAD_MIN_KC ? 4 : 2;
}

/* The stem algorithm handles groups 1 and dilation 1 (any stride, padding, channel count); auto picks it
 * for at most STEM_MAX_C input channels and at least STEM_MIN_K output channels (ResNet's 3 -> 64 7x7/2,
 * M1's 1 -> 32 3x3), where im2col+gemm multiplies a tall column matrix by a short filter. */
#define STEM_MAX_C 4
#define STEM_MIN_K 8
static int stem_possible(const conv_params *p) { return p->groups == 1 && p->dil_h == 1 && p->dil_w == 1; }

/* The depthwise algorithm (kernels/f32_conv_dw) handles groups = C = K (one input and one output channel
 * per group), dilation 1, the same stride 1 or 2 on both axes, kernels up to CNN_DW_MAX_K (7) per side and
 * padding below the kernel size on every side; auto picks it wherever it applies (MobileNet's depthwise
 * layers, B1 row c7). */
static int dw_possible(const conv_params *p, cnn_shape in) {
    if (p->groups != in.c || p->k != in.c || p->dil_h != 1 || p->dil_w != 1 || p->stride_h != p->stride_w ||
        p->stride_h > 2 || p->kh > CNN_DW_MAX_K || p->kw > CNN_DW_MAX_K || in.h >= ((size_t)1 << 30) ||
        in.w >= ((size_t)1 << 30))
        return 0;
    size_t pt, pb, pl, pr, o, e, t;
    if (conv_axis(in.h, p->kh, p->stride_h, 1, p->same, p->pad_top, p->pad_bottom, &pt, &pb, &o, &e, &t) ||
        conv_axis(in.w, p->kw, p->stride_w, 1, p->same, p->pad_left, p->pad_right, &pl, &pr, &o, &e, &t))
        return 0;
    return pt < p->kh && pb < p->kh && pl < p->kw && pr < p->kw;
}

/* The blocked weight gradient (blk_wgrad_team) handles groups 1 (any kernel, stride, dilation, padding). */
static int blk_possible(const conv_params *p) { return p->groups == 1; }
/* wgrad=auto takes it where the layer's algorithm was chosen automatically (algo=auto) and is Winograd with
 * the F(2x2) weight gradient or the stem: measured on the Intel Xeon (AVX-512, 2 threads, 2026-12-02),
 * c1 bwd_weights 156 -> 243 GFLOP/s, c2 228 -> 285, c6 186 -> 210; training steps (`cnn bench train`,
 * alternately) fmnist-small x1.12, fmnist-fast x1.14, resnet20 x1.34, vgg-fmnist x1.15; with CNN_ISA=avx2
 * 0.98-1.11x (c2 200 -> 160, c6 168 -> 129, c1 142 -> 145: the AVX2 kernel's 16 ymm hold 12 sums). The
 * choice does not depend on the ISA (AVX2 and AVX-512 agree bit for bit). Not taken for F(4x4) weight
 * gradients (c3: 454 vs 278), gemm-1x1 (c4: 258 vs 226) and im2col (c5: 268 vs 255-270). */
static int blk_auto(const conv_params *p, const conv_dims *d) {
    return blk_possible(p) && p->algo == ALGO_AUTO &&
           ((d->algo == CONV_WINOGRAD && d->wino_mw == 2) || d->algo == CONV_STEM);
}

/* Fill d from params and input shape (shape has validated them). */
static void conv_dims_of(const conv_params *p, cnn_shape in, conv_dims *d) {
    size_t pt = 0, pb = 0, pl = 0, pr = 0, ext, padded;
    memset(d, 0, sizeof *d);
    d->C = in.c;
    d->H = in.h;
    d->W = in.w;
    d->K = p->k;
    d->G = p->groups;
    d->Cg = in.c / p->groups;
    d->Kg = p->k / p->groups;
    (void)conv_axis(in.h, p->kh, p->stride_h, p->dil_h, p->same, p->pad_top, p->pad_bottom, &pt, &pb, &d->OH,
                    &ext, &padded);
    (void)conv_axis(in.w, p->kw, p->stride_w, p->dil_w, p->same, p->pad_left, p->pad_right, &pl, &pr, &d->OW,
                    &ext, &padded);
    d->rows = d->Cg * p->kh * p->kw;
    d->hw = d->H * d->W;
    d->ohw = d->OH * d->OW;
    d->gemm_1x1 = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && !pt && !pb && !pl && !pr;
    d->geom = (cnn_conv_geom){.c = d->Cg, .h = d->H, .w = d->W, .kh = p->kh, .kw = p->kw,
                              .stride_h = p->stride_h, .stride_w = p->stride_w, .pad_top = pt, .pad_left = pl,
                              .dil_h = p->dil_h, .dil_w = p->dil_w, .oh = d->OH, .ow = d->OW};
    d->taps = p->kh * p->kw;
    {
        /* about 64 Ki floats (256 KiB) per block, but at least 256 columns; whole planes when small */
        const size_t per_row = d->rows * d->OW, min_rows = (256 + d->OW - 1) / d->OW;
        size_t br = ((size_t)1 << 16) / (per_row ? per_row : 1);
        if (br < min_rows) br = min_rows;
        if (br < 1) br = 1;
        if (br > d->OH) br = d->OH;
        d->brows = br;
        d->nblocks = (d->OH + br - 1) / br;
    }
    d->PR = d->OH + p->dil_h * (p->kh - 1);
    d->PC = d->OW + p->dil_w * (p->kw - 1);
    d->QR = d->H + p->dil_h * (p->kh - 1);
    d->QC = d->W + p->dil_w * (p->kw - 1);
    d->pg_fwd = (cnn_plane_geom){.oh = d->OH, .ow = d->OW, .kh = p->kh, .kw = p->kw, .dh = p->dil_h,
                                 .dw = p->dil_w, .ldx = d->PC + 8, .ldy = d->OW};
    d->pg_bwd = (cnn_plane_geom){.oh = d->H, .ow = d->W, .kh = p->kh, .kw = p->kw, .dh = p->dil_h,
                                 .dw = p->dil_w, .ldx = d->QC + 8, .ldy = d->W};
    const int direct_ok = direct_possible(p);
    if (p->algo == ALGO_DEPTHWISE || (p->algo == ALGO_AUTO && dw_possible(p, in))) {
        d->algo = CONV_DEPTHWISE;
        d->dwg = (cnn_dw_geom){.ih = d->H, .iw = d->W, .oh = d->OH, .ow = d->OW, .kh = p->kh, .kw = p->kw,
                               .stride = p->stride_h, .pad_top = (ptrdiff_t)pt, .pad_left = (ptrdiff_t)pl};
    }
    else if (p->algo == ALGO_STEM || (p->algo == ALGO_AUTO && stem_possible(p) && d->C <= STEM_MAX_C && d->K >= STEM_MIN_K)) {
        d->algo = CONV_STEM;
        const size_t sh = p->stride_h, sw = p->stride_w;
        d->stem_ldp = cnn_round_up(cnn_round_up(d->OW, 16) + (p->kw - 1) / sw, 8);
        d->stem_rbf = d->OH < 8 ? d->OH : 8;
        size_t rbw = 4096 / (4 * d->OW);
        if (rbw < 1) rbw = 1;
        if (rbw > d->OH) rbw = d->OH;
        d->stem_rbw = rbw;
        d->stem_psf = cnn_round_up(((d->stem_rbf - 1) * sh + p->kh) * d->stem_ldp, 16);
        d->stem_psw = cnn_round_up(((d->stem_rbw - 1) * sh + p->kh) * d->stem_ldp, 16);
    }
    else if (p->algo == ALGO_DIRECT || (p->algo == ALGO_AUTO && direct_ok && d->Cg <= DIRECT_MAX_CG)) {
        d->algo = CONV_DIRECT;
        /* the direct input gradient makes one pass over a dx plane per output channel of the group; with
         * many of them (a stem: C=1 -> 32) the GEMM form is faster (measured: M1 conv1 30 vs 21 GFLOP/s) */
        d->direct_bwd_gemm = p->algo == ALGO_AUTO && d->Kg > DIRECT_MAX_CG;
    }
    else if (algo_is_wino(p->algo) ||
             (p->algo == ALGO_AUTO && winograd_possible(p) && d->C >= WINO_MIN_CH && d->K >= WINO_MIN_CH))
        d->algo = CONV_WINOGRAD, d->wino_m = wino_tile(p, d), d->wino_mw = wino_wgrad_tile(p, d);
    else
        d->algo = d->gemm_1x1 || (p->kh == 1 && p->kw == 1 && !pt && !pb && !pl && !pr && d->G == 1)
                      ? CONV_GEMM_1X1 : CONV_IM2COL; /* 1x1 without padding: pw_run (strided too) */
    d->wgrad_blocked = p->wgrad == WGRAD_BLOCKED || (p->wgrad == WGRAD_AUTO && blk_auto(p, d));
}

static cnn_status conv_shape(cnn_layer *L) {
    const conv_params *p = L->params;
    const cnn_shape in = L->in[0];
    if (in.c == 0 || in.h == 0 || in.w == 0)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input %zux%zux%zu is empty", in.c, in.h, in.w);
    if (in.c % p->groups)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input has %zu channels, not divisible by groups=%zu", in.c,
                               p->groups);
    size_t pa, pb, oh = 0, ow = 0, ext, padded, padded_h = 0;
    int rc = conv_axis(in.h, p->kh, p->stride_h, p->dil_h, p->same, p->pad_top, p->pad_bottom, &pa, &pb, &oh,
                       &ext, &padded);
    padded_h = padded;
    if (rc == 1)
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "kernel height %zu (kh=%zu, dilation %zu) is larger than the padded input height "
                               "%zu (h=%zu + pad %zu + %zu)",
                               ext, p->kh, p->dil_h, padded, in.h, pa, pb);
    if (rc == 0)
        rc = conv_axis(in.w, p->kw, p->stride_w, p->dil_w, p->same, p->pad_left, p->pad_right, &pa, &pb, &ow,
                       &ext, &padded);
    if (rc == 1)
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "kernel width %zu (kw=%zu, dilation %zu) is larger than the padded input width "
                               "%zu (w=%zu + pad %zu + %zu)",
                               ext, p->kw, p->dil_w, padded, in.w, pa, pb);
    if (rc == 2) return cnn_layer_error(L, CNN_ERR_SHAPE, "kernel, padding or dilation too large");
    /* Every product used later: weights (with bias), one column matrix, the output, the FLOP count. */
    size_t rows, wcount, col, outc, flops, t;
    if (!cnn_size_mul3(in.c / p->groups, p->kh, p->kw, &rows) || !cnn_size_mul(rows, p->k, &wcount) ||
        !cnn_size_add(wcount, p->k, &t) || !cnn_size_mul(t, 2 * sizeof(float), &t))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "weight [%zu, %zu, %zu, %zu] has too many elements", p->k,
                               in.c / p->groups, p->kh, p->kw);
    if (!cnn_size_mul3(rows, oh, ow, &col) || !cnn_size_mul(col, sizeof(float), &t) ||
        !cnn_size_mul3(p->k, oh, ow, &outc) || !cnn_size_mul(outc, rows, &flops) ||
        !cnn_size_mul(flops, 2, &flops))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "output %zux%zux%zu is too large for the kernel", p->k, oh, ow);
    if (p->algo == ALGO_DIRECT && !direct_possible(p))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "algo=direct needs stride 1 (stride is %zux%zu)", p->stride_h,
                               p->stride_w);
    if (p->algo == ALGO_STEM && !stem_possible(p))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "algo=stem needs groups=1 and dilation 1");
    if (p->algo == ALGO_DEPTHWISE && !dw_possible(p, in))
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "algo=depthwise needs groups = input channels = k, dilation 1, stride 1 or 2 (the "
                               "same on both axes), a kernel of at most %dx%d and padding below the kernel size",
                               CNN_DW_MAX_K, CNN_DW_MAX_K);
    if (stem_possible(p) && (in.c <= STEM_MAX_C || p->algo == ALGO_STEM)) {
        /* the stem algorithm's phase planes and packed filter (see conv_sizes) */
        size_t ldp, pr, a, b2;
        if (!cnn_size_add(ow, 16 + p->kw / p->stride_w + 16, &ldp) || !cnn_size_mul(p->stride_h, 8, &pr) ||
            !cnn_size_add(pr, p->kh + 1, &pr) || !cnn_size_mul3(pr, ldp, in.c, &a) ||
            !cnn_size_mul(a, p->stride_w, &a) || !cnn_size_mul(rows, p->k, &b2) || !cnn_size_mul(b2, 2, &b2) ||
            !cnn_size_add(a, b2 + 64, &a) || !cnn_size_mul(a, sizeof(float), &a))
            return cnn_layer_error(L, CNN_ERR_SHAPE, "stem workspace for %zux%zux%zu is too large", in.c, in.h,
                                   in.w);
    }
    if (p->wgrad == WGRAD_BLOCKED && !blk_possible(p))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "wgrad=blocked needs groups=1");
    if (blk_possible(p)) {
        /* the blocked weight gradient's padded planes (at most the padded input) and packed dy rows */
        size_t a, b2;
        if (!cnn_size_mul3(in.c, padded_h, padded + 16, &a) || !cnn_size_mul3(p->k + 16, ow, 2 * sizeof(float), &b2) ||
            !cnn_size_add(a, b2, &a) || !cnn_size_mul(a, 2 * sizeof(float), &a))
            return cnn_layer_error(L, CNN_ERR_SHAPE, "blocked weight-gradient planes of %zux%zu are too large", in.h,
                                   in.w);
    }
    if (algo_is_wino(p->algo) && !winograd_possible(p))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "algo=%s needs a 3x3 kernel, stride 1, dilation 1 and groups=1",
                               algo_names[p->algo]);
    if (winograd_possible(p)) {
        /* U, V and M of the winograd algorithm (see wino_ws) */
        size_t u, vm, a;
        if (!cnn_size_mul3(36, p->k, in.c, &u) || !cnn_size_mul(in.c + p->k, (size_t)36 * 1024, &vm) ||
            !cnn_size_add(u, vm + 64, &a) || !cnn_size_mul(a, sizeof(float), &a))
            return cnn_layer_error(L, CNN_ERR_SHAPE, "winograd workspace for %zu -> %zu channels is too large",
                                   in.c, p->k);
    }
    if (direct_possible(p)) {
        /* the direct algorithm's padded planes (see direct_ws) */
        size_t eh, ew, qr, qc, pr, pc, a, b2;
        if (!cnn_size_mul(p->dil_h, p->kh - 1, &eh) || !cnn_size_mul(p->dil_w, p->kw - 1, &ew) ||
            !cnn_size_add(oh, eh, &pr) || !cnn_size_add(ow, ew + 8, &pc) || !cnn_size_add(in.h, eh, &qr) ||
            !cnn_size_add(in.w, ew + 8, &qc) || !cnn_size_mul3(pr, pc, in.c / p->groups + 1, &a) ||
            !cnn_size_mul(qr, qc, &b2) || !cnn_size_add(a, b2, &a) || !cnn_size_add(a, 4 * rows, &a) ||
            !cnn_size_mul(a, sizeof(float), &a))
            return cnn_layer_error(L, CNN_ERR_SHAPE, "padded planes of %zux%zu are too large", in.h, in.w);
    }
    L->out = (cnn_shape){p->k, oh, ow};
    return CNN_OK;
}

/* ---- the direct algorithm's workspace (floats per thread, each region a multiple of 16) ----
 *   forward:          Cg padded input planes, PR rows of PC + 8 floats
 *   backward data:    one padded dy plane, QR rows of QC + 8 floats, then the flipped filter (taps)
 *   backward weights: Cg*taps doubles (the batch sums), one padded input plane, taps + 1 floats */
static size_t ws16(size_t n) { return cnn_round_up(n, 16); }
static size_t blk_ws(const conv_dims *d);
static size_t direct_ws(const conv_dims *d) {
    const size_t pp = d->PR * d->pg_fwd.ldx, qq = d->QR * d->pg_bwd.ldx;
    size_t f = d->Cg * ws16(pp);
    size_t b = ws16(qq) + ws16(d->taps);
    size_t w = ws16(2 * d->Cg * d->taps) + ws16(pp) + ws16(d->taps + 1);
    size_t m = f > b ? f : b;
    return m > w ? m : w;
}

static size_t wino_ws(const conv_dims *d, size_t threads);
static size_t pw_ws(const conv_dims *d);
static int pw_forward_ok(const conv_dims *d);
static size_t wino_upacked(const conv_dims *d);

static void conv_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const conv_params *p = L->params;
    conv_dims d;
    conv_dims_of(p, L->in[0], &d);
    memset(s, 0, sizeof *s);
    const size_t fan_in = d.rows, fan_out = d.Kg * p->kh * p->kw;
    s->tensors[0] = (cnn_tensor_desc){.suffix = "weight", .ndim = 4, .dims = {d.K, d.Cg, p->kh, p->kw},
                                      .trainable = 1, .role = CNN_ROLE_WEIGHT, .fan_in = fan_in,
                                      .fan_out = fan_out};
    s->n_tensors = 1;
    if (p->bias) {
        s->tensors[1] = (cnn_tensor_desc){.suffix = "bias", .ndim = 1, .dims = {d.K}, .trainable = 1,
                                          .role = CNN_ROLE_BIAS, .fan_in = fan_in, .fan_out = fan_out};
        s->n_tensors = 2;
    }
    s->flops = (uint64_t)2 * d.K * d.ohw * d.rows;
    switch (d.algo) {
    case CONV_DIRECT: {
        size_t w = direct_ws(&d), c = d.direct_bwd_gemm && !d.gemm_1x1 ? d.rows * d.brows * d.OW : 0;
        s->ws_per_thread = w > c ? w : c;
        s->algorithm = "direct";
        break;
    }
    case CONV_WINOGRAD:
        s->ws_per_thread = wino_ws(&d, L->ctx ? L->ctx->threads : 1);
        s->algorithm = d.wino_m == 4 ? "winograd-f4x4" : "winograd-f2x2";
        break;
    case CONV_GEMM_1X1:
        s->ws_per_thread = pw_forward_ok(&d) ? pw_ws(&d) : 0;
        s->algorithm = "gemm-1x1";
        break;
    case CONV_DEPTHWISE:
        s->ws_per_thread = 0; /* the kernels read and write the planes in place */
        s->algorithm = "depthwise";
        break;
    case CONV_STEM: {
        /* forward: packed filter + planes; weights: double sums + planes; data: one im2col block */
        const size_t f = ws16(d.rows * cnn_round_up(d.K, CNN_STEM_KB)) + d.C * d.geom.stride_w * d.stem_psf;
        const size_t w = ws16(2 * d.K * (d.rows + 1)) + d.C * d.geom.stride_w * d.stem_psw;
        const size_t c = d.rows * d.brows * d.OW;
        s->ws_per_thread = f > w ? (f > c ? f : c) : (w > c ? w : c);
        s->algorithm = "stem";
        break;
    }
    default:
        s->ws_per_thread = pw_forward_ok(&d) ? pw_ws(&d) : d.rows * d.brows * d.OW;
        s->algorithm = "im2col+gemm";
        break;
    }
    if (d.wgrad_blocked) {
        const size_t w = blk_ws(&d);
        if (w > s->ws_per_thread) s->ws_per_thread = w;
        s->wgrad_algorithm = "blocked";
    }
}

/* ---- passes ---- */

typedef struct conv_job {
    const cnn_layer_run *r;
    conv_dims d;
    size_t parts; /* backward_weights: tasks */
} conv_job;

static void conv_job_init(conv_job *j, const cnn_layer_run *r) {
    j->r = r;
    conv_dims_of(r->L->params, r->L->in[0], &j->d);
    j->parts = r->ctx->threads ? r->ctx->threads : 1;
}

static float *thread_ws(const cnn_layer_run *r, size_t thread) { return r->ws + thread * r->ws_stride; }

/* Geometry of output-row block b (rows [b*brows, ...) of the output) of one group of one sample. */
static cnn_conv_geom block_geom(const conv_dims *d, size_t b, size_t *oy0, size_t *nrows) {
    cnn_conv_geom g = d->geom;
    *oy0 = b * d->brows;
    *nrows = d->OH - *oy0 < d->brows ? d->OH - *oy0 : d->brows;
    g.oy0 = *oy0;
    g.oh = *nrows;
    return g;
}

static void split_aligned(size_t n, size_t parts, size_t i, size_t align, size_t *b, size_t *e);
/* ---- the packed-A GEMM driver: gemm-1x1 (groups 1, kh = kw = 1, no padding, any stride) forward and
 * backward-data, and im2col+gemm forward (groups 1) ----
 * Per image Y_i[K, P] = W[K, rows] * B_i[rows, P] + b (P = OH*OW) where B_i is x_i itself (1x1, stride
 * 1), its strided columns gathered into the workspace (1x1 strided) or its im2col columns (im2col), and
 * dX_i[C, HW] (+)= W^T * dY_i (1x1; with a stride computed into the workspace and scattered into the
 * strided positions of the dx rows the unit owns, the others zeroed). op(A) (W or W^T) is packed once per
 * pass and task (ctx->kernels.sgemm_pack_a into the task's workspace), or not at all in an inference
 * compile, whose weight block keeps W' packed (fold.h), and reused for every image (sgemm_pa; the bias
 * is added in the GEMM's store). Units of work: 1x1 stride 1, blocks of nb columns (a multiple of 16,
 * about PW_NB) of one image; otherwise blocks of rb output rows of one image (rb * OW columns built in the
 * workspace), rb lowered at small batches so that the units split evenly over the tasks. Either each task
 * runs a contiguous range of units with all M rows (many columns: c4, c5), or, when the units do not
 * split evenly over the tasks or M > N*P (batch-1 layers on small images, where every task packing or
 * reading all of A costs more than every task building all of B), each task owns a range of M (multiples
 * of the SGEMM's tile height) and runs every unit. Each output element is one sum of the same products
 * in the same order wherever it falls (the SGEMM's sub-block property), so results are identical for any
 * thread count. Backward-weights runs backward_weights_task, im2col backward-data backward_data_task. */
#ifndef PW_NB
#define PW_NB 256
#endif

enum { PW_DIRECT = 0, PW_GATHER, PW_IM2COL };

typedef struct pw_plan {
    int kind;        /* PW_DIRECT: 1x1 stride 1; PW_GATHER: 1x1 strided; PW_IM2COL */
    size_t M, Kd, P; /* GEMM rows and depth (forward K, rows; backward-data C, K), columns per image */
    size_t nb, cb;   /* PW_DIRECT: columns per unit, else output rows per unit; units per image */
    size_t units;    /* n * cb */
    int by_rows;     /* task p owns rows range p (and runs every unit); else units range p */
    size_t parts;
} pw_plan;

typedef struct pw_job {
    const cnn_layer_run *r;
    const conv_dims *d;
    pw_plan q;
    const float *ap;   /* pre-packed op(A) (inference weight block), or NULL: each task packs its rows */
    const float *bias; /* forward: b (or b'), or NULL */
} pw_job;

/* Whether the driver runs this layer's forward (and, for gemm-1x1, backward-data). */
static int pw_forward_ok(const conv_dims *d) {
    return d->G == 1 && (d->algo == CONV_GEMM_1X1 || d->algo == CONV_IM2COL);
}
static int pw_kind(const conv_dims *d) {
    return d->algo == CONV_GEMM_1X1 ? (d->gemm_1x1 ? PW_DIRECT : PW_GATHER) : PW_IM2COL;
}
/* Output rows per unit of PW_GATHER / PW_IM2COL (the workspace holds one unit's columns). */
static size_t pw_rb(const conv_dims *d) {
    if (pw_kind(d) == PW_IM2COL) return d->brows;
    size_t rb = PW_NB / d->OW;
    if (rb < 1) rb = 1;
    return rb < d->OH ? rb : d->OH;
}
/* Workspace floats: op(A) packed for either pass, then one unit's columns; at least what
 * backward_data_task / backward_weights_task need (one im2col block). */
static size_t pw_a_floats(const conv_dims *d) {
    const size_t a = CNN_F32_GEMM_PA_FLOATS(d->K, d->rows), b = CNN_F32_GEMM_PA_FLOATS(d->C, d->K);
    const size_t c = pw_kind(d) == PW_IM2COL ? CNN_F32_GEMM_PA_FLOATS(d->rows, d->K) : 0; /* W^T [rows, K] */
    const size_t m = a > b ? a : b;
    return ws16(m > c ? m : c);
}
/* im2col backward-data blocks: output rows per block (whole images unless even pw_bd_align(d) channels of
 * a block would exceed PW_BD_FLOATS) and input channels per chunk (a multiple of pw_bd_align(d), so that
 * every chunk's packed rows start at a multiple of CNN_F32_GEMM_PA_ROW_ALIGN), so that a chunk's columns
 * (chunk * taps rows of block columns) stay in L2 between the GEMM that writes them and the col2im that
 * reads them. */
#define PW_BD_FLOATS ((size_t)1 << 16)
static size_t pw_bd_align(const conv_dims *d) {
    size_t a = CNN_F32_GEMM_PA_ROW_ALIGN, b = d->taps; /* ROW_ALIGN / gcd(taps, ROW_ALIGN) */
    while (b) {
        const size_t t = a % b;
        a = b, b = t;
    }
    return CNN_F32_GEMM_PA_ROW_ALIGN / a;
}
static size_t pw_bd_rows(const conv_dims *d) {
    size_t br = d->OH;
    while (br > 1 && pw_bd_align(d) * d->taps * br * d->OW > PW_BD_FLOATS) br = (br + 1) / 2;
    return br;
}
static size_t pw_bd_chunk(const conv_dims *d) {
    const size_t a = pw_bd_align(d), per = d->taps * pw_bd_rows(d) * d->OW;
    size_t c = PW_BD_FLOATS / per / a * a;
    if (c < a) c = a;
    return c < d->C ? c : d->C;
}
static size_t pw_ws(const conv_dims *d) {
    if (pw_kind(d) == PW_DIRECT) return pw_a_floats(d);
    size_t f = pw_a_floats(d) + ws16(d->rows * pw_rb(d) * d->OW), w = d->rows * d->brows * d->OW;
    if (pw_kind(d) == PW_IM2COL) { /* backward-data: W^T packed, then one chunk's columns */
        const size_t b = pw_a_floats(d) + ws16(pw_bd_chunk(d) * d->taps * pw_bd_rows(d) * d->OW);
        if (b > f) f = b;
    }
    return f > w ? f : w;
}

static void pw_plan_of(const conv_dims *d, size_t n, size_t T, int bwd, pw_plan *q) {
    memset(q, 0, sizeof *q);
    q->kind = pw_kind(d);
    q->M = bwd ? d->C : d->K;
    q->Kd = bwd ? d->K : d->rows;
    q->P = d->ohw;
    q->parts = T ? T : 1;
    if (q->kind == PW_DIRECT) {
        size_t cb = (q->P + PW_NB - 1) / PW_NB;
        if (n * cb < 8 * q->parts) { /* few units: a multiple of the task count, for balance */
            const size_t u = cnn_round_up(n * cb, q->parts);
            cb = (u + n - 1) / n;
        }
        q->nb = cnn_round_up((q->P + cb - 1) / cb, 16);
        q->cb = (q->P + q->nb - 1) / q->nb;
    } else {
        size_t rb = pw_rb(d);
        rb = (d->OH + (d->OH + rb - 1) / rb - 1) / ((d->OH + rb - 1) / rb); /* equal blocks: 28 = 4 x 7 */
        /* few units that do not split evenly: fewer rows per unit if that makes them split evenly */
        for (size_t t = rb; n * ((d->OH + rb - 1) / rb) < 8 * q->parts && t > (rb + 1) / 2; t--)
            if (n * ((d->OH + t - 1) / t) % q->parts == 0) {
                rb = t;
                break;
            }
        q->nb = rb;
        q->cb = (d->OH + rb - 1) / rb;
    }
    if (bwd && q->kind == PW_IM2COL) { /* whole images: neighbouring row blocks add into shared dx rows */
        q->M = d->rows;
        q->nb = d->OH;
        q->cb = 1;
    }
    q->units = n * q->cb;
    q->by_rows = q->parts > 1 && (q->M > n * q->P || (q->units < 8 * q->parts && q->units % q->parts));
}

/* The rows [m0, m1) and units [u0, u1) of task `part`. */
static void pw_range(const pw_plan *q, size_t mr, size_t part, size_t *m0, size_t *m1, size_t *u0, size_t *u1) {
    *m0 = 0, *m1 = q->M, *u0 = 0, *u1 = q->units;
    if (q->by_rows) split_aligned(q->M, q->parts, part, mr, m0, m1);
    else cnn_split_range(q->units, q->parts, part, u0, u1);
}

static void pw_forward_task(void *arg, size_t part, size_t thread) {
    const pw_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = j->d;
    const pw_plan *q = &j->q;
    const cnn_kernels *kn = &r->ctx->kernels;
    size_t m0, m1, u0, u1;
    pw_range(q, kn->sgemm_mr, part, &m0, &m1, &u0, &u1);
    if (m0 >= m1 || u0 >= u1) return;
    const size_t mr = m1 - m0;
    float *ws = thread_ws(r, thread), *buf = ws + pw_a_floats(d);
    const float *ap = j->ap ? j->ap + m0 * d->rows : ws;
    if (!j->ap) kn->sgemm_pack_a(0, mr, d->rows, r->w + m0 * d->rows, d->rows, ws);
    const float *bias = j->bias ? j->bias + m0 : NULL;
    const size_t sh = d->geom.stride_h, sw = d->geom.stride_w;
    for (size_t u = u0; u < u1; u++) {
        const size_t s = u / q->cb, b = u % q->cb;
        const float *x = r->x[0] + s * d->C * d->hw;
        float *y = r->y + (s * d->K + m0) * d->ohw;
        if (q->kind == PW_DIRECT) {
            const size_t c0 = b * q->nb, nc = q->P - c0 < q->nb ? q->P - c0 : q->nb;
            /* y[m0:m1, c0:+nc] = W[m0:m1, :] * x[:, c0:+nc] + b */
            kn->sgemm_pa(mr, nc, d->C, ap, 0, x + c0, d->hw, 0.0f, bias, y + c0, d->ohw, NULL);
            continue;
        }
        const size_t oy0 = b * q->nb, nr = d->OH - oy0 < q->nb ? d->OH - oy0 : q->nb, nc = nr * d->OW;
        if (q->kind == PW_GATHER) {
            /* buf[c][t*OW + ox] = x[c][(oy0 + t)*sh][ox*sw] */
            for (size_t c = 0; c < d->C; c++)
                for (size_t t = 0; t < nr; t++) {
                    const float *src = x + c * d->hw + (oy0 + t) * sh * d->W;
                    float *dst = buf + c * nc + t * d->OW;
                    for (size_t ox = 0; ox < d->OW; ox++) dst[ox] = src[ox * sw];
                }
        } else {
            cnn_conv_geom bg = d->geom;
            bg.oy0 = oy0;
            bg.oh = nr;
            kn->im2col(&bg, x, 0, d->rows, buf);
        }
        kn->sgemm_pa(mr, nc, d->rows, ap, 0, buf, nc, 0.0f, bias, y + oy0 * d->OW, d->ohw, NULL);
    }
}

/* im2col backward-data (groups 1) of task `part`: dx_i (+)= col2im(W^T * dY_i) for its images (or, when
 * the images do not split evenly, for its range of input channels of every image). W^T [rows, K] (rows of
 * the task's channels) is packed once; then per image, output-row block and channel chunk, the chunk's
 * columns are computed into the workspace and added into its dx planes at once, while they are in L2. */
static void pw_backward_data_im2col(const cnn_layer_run *r, const conv_dims *d, const pw_plan *q, size_t part,
                                    size_t thread) {
    const cnn_kernels *kn = &r->ctx->kernels;
    const int acc = r->dx_accumulate[0];
    const size_t T = d->taps, align = pw_bd_align(d);
    size_t c0 = 0, c1 = d->C, u0 = 0, u1 = q->units;
    if (q->by_rows) split_aligned(d->C, q->parts, part, align, &c0, &c1);
    else cnn_split_range(q->units, q->parts, part, &u0, &u1);
    if (c0 >= c1 || u0 >= u1) return;
    float *ap = thread_ws(r, thread), *buf = ap + pw_a_floats(d);
    /* op(A) = W^T [rows, K]: columns c0*T..c1*T of W [K, rows] */
    kn->sgemm_pack_a(1, (c1 - c0) * T, d->K, r->w + c0 * T, d->rows, ap);
    const size_t br = pw_bd_rows(d), chunk = pw_bd_chunk(d);
    for (size_t s = u0; s < u1; s++) {
        const float *dy = r->dy + s * d->K * d->ohw;
        float *dx = r->dx[0] + s * d->C * d->hw;
        if (!acc) memset(dx + c0 * d->hw, 0, (c1 - c0) * d->hw * sizeof(float));
        for (size_t oy0 = 0; oy0 < d->OH; oy0 += br) {
            const size_t nr = d->OH - oy0 < br ? d->OH - oy0 : br, nc = nr * d->OW;
            for (size_t cc = c0; cc < c1; cc += chunk) {
                const size_t ncc = c1 - cc < chunk ? c1 - cc : chunk;
                /* buf[ncc*T, nc] = W^T[cc*T.., :] * dY[:, block] */
                kn->sgemm_pa(ncc * T, nc, d->K, ap + (cc - c0) * T * d->K, 0, dy + oy0 * d->OW, d->ohw, 0.0f,
                             NULL, buf, nc, NULL);
                cnn_conv_geom g = d->geom;
                g.c = ncc;
                g.oy0 = oy0;
                g.oh = nr;
                kn->col2im(&g, buf, dx + cc * d->hw);
            }
        }
    }
}

static void pw_backward_data_task(void *arg, size_t part, size_t thread) {
    const pw_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = j->d;
    const pw_plan *q = &j->q;
    const cnn_kernels *kn = &r->ctx->kernels;
    const int acc = r->dx_accumulate[0];
    size_t m0, m1, u0, u1;
    if (q->kind == PW_IM2COL) {
        pw_backward_data_im2col(r, d, q, part, thread);
        return;
    }
    pw_range(q, kn->sgemm_mr, part, &m0, &m1, &u0, &u1);
    if (m0 >= m1 || u0 >= u1) return;
    const size_t mr = m1 - m0;
    float *ap = thread_ws(r, thread), *buf = ap + pw_a_floats(d);
    /* op(A) = W^T [C, K]: columns m0..m1 of W [K, C] */
    kn->sgemm_pack_a(1, mr, d->K, r->w + m0, d->rows, ap);
    const size_t sh = d->geom.stride_h, sw = d->geom.stride_w;
    for (size_t u = u0; u < u1; u++) {
        const size_t s = u / q->cb, b = u % q->cb;
        const float *dy = r->dy + s * d->K * d->ohw;
        float *dx = r->dx[0] + (s * d->C + m0) * d->hw;
        if (q->kind == PW_DIRECT) {
            const size_t c0 = b * q->nb, nc = q->P - c0 < q->nb ? q->P - c0 : q->nb;
            /* dx[m0:m1, c0:+nc] (+)= W^T[m0:m1, :] * dy[:, c0:+nc] */
            kn->sgemm_pa(mr, nc, d->K, ap, 0, dy + c0, d->ohw, acc ? 1.0f : 0.0f, NULL, dx + c0, d->hw, NULL);
            continue;
        }
        const size_t oy0 = b * q->nb, nr = d->OH - oy0 < q->nb ? d->OH - oy0 : q->nb, nc = nr * d->OW;
        kn->sgemm_pa(mr, nc, d->K, ap, 0, dy + oy0 * d->OW, d->ohw, 0.0f, NULL, buf, nc, NULL);
        /* this unit owns dx rows [oy0*sh, yend): the strided positions get buf, the others 0 (or stay) */
        const size_t yend = oy0 + nr == d->OH ? d->H : (oy0 + nr) * sh;
        for (size_t c = 0; c < mr; c++)
            for (size_t yy = oy0 * sh; yy < yend; yy++) {
                float *row = dx + c * d->hw + yy * d->W;
                const int hit = yy % sh == 0 && yy / sh < oy0 + nr;
                if (!acc && (!hit || sw > 1)) memset(row, 0, d->W * sizeof(float));
                if (!hit) continue;
                const float *src = buf + c * nc + (yy / sh - oy0) * d->OW;
                if (acc)
                    for (size_t ox = 0; ox < d->OW; ox++) row[ox * sw] += src[ox];
                else
                    for (size_t ox = 0; ox < d->OW; ox++) row[ox * sw] = src[ox];
            }
    }
}

/* Offset of the packed W' in a GEMM layer's inference weight block (fold.h): after W' and b'. */
static size_t pw_block_off(const conv_dims *d) { return ws16(d->K * d->rows + d->K); }

static void pw_run(const cnn_layer_run *r, const conv_dims *d, int bwd) {
    const conv_params *p = r->L->params;
    pw_job j = {.r = r, .d = d};
    pw_plan_of(d, r->n, r->ctx->threads, bwd, &j.q);
    if (!j.q.units) return;
    if (!bwd) {
        if (p->infer_block) j.ap = r->w + pw_block_off(d);
        if (p->bias || p->infer_fold) j.bias = r->w + d->K * d->rows;
    }
    cnn_pool_for(r->ctx, j.q.parts, bwd ? pw_backward_data_task : pw_forward_task, &j);
}

/* Task = (sample s, group g, output-row block b): Y_g[:, block] = W_g * col(x_g)[:, block] + b_g. The
 * SGEMM computes each column independently of the others, so blocking does not change the results. */
static void forward_task(void *arg, size_t task, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    const size_t nbk = d->gemm_1x1 ? 1 : d->nblocks;
    const size_t s = task / (d->G * nbk), g = task / nbk % d->G, b = task % nbk;
    const float *x = r->x[0] + s * d->C * d->hw + g * d->Cg * d->hw;
    float *y = r->y + s * d->K * d->ohw + g * d->Kg * d->ohw;
    const float *w = r->w + g * d->Kg * d->rows;
    const float *col = x;
    size_t oy0 = 0, nrows = d->OH;
    if (!d->gemm_1x1) {
        float *ws = thread_ws(r, thread);
        const cnn_conv_geom bg = block_geom(d, b, &oy0, &nrows);
        r->ctx->kernels.im2col(&bg, x, 0, d->rows, ws);
        col = ws;
    }
    const size_t cols = nrows * d->OW;
    y += oy0 * d->OW;
    /* y_g[Kg, block] = W_g[Kg, rows] * col[rows, block] */
    r->ctx->kernels.sgemm(0, 0, d->Kg, cols, d->rows, 1.0f, w, d->rows, col, cols, 0.0f, y, d->ohw);
    if (p->bias || p->infer_fold) {
        const float *bias = r->w + d->K * d->rows + g * d->Kg;
        for (size_t o = 0; o < d->Kg; o++) {
            float *yo = y + o * d->ohw;
            const float bo = bias[o];
            for (size_t i = 0; i < cols; i++) yo[i] += bo;
        }
    }
}

/* ---- the direct algorithm ---- */

/* Sum of n floats: 8 interleaved float partial sums (independent chains, so not latency-bound), added in
 * a fixed order; the order depends only on n. */
static double plane_sum(const float *v, size_t n) {
    float a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++) a[k] += v[i + k];
    for (size_t k = 0; i < n; i++, k++) a[k] += v[i];
    return (double)((a[0] + a[1]) + (a[2] + a[3])) + (double)((a[4] + a[5]) + (a[6] + a[7]));
}

/* Padded planes: R rows of ld >= Cc + 8 floats; the kernels may read up to 7 floats past column Cc - 1
 * of a row (conv_direct.h), which stay inside the row. zero_plane clears a whole plane once per task;
 * copy_plane then writes only the part of the plane that comes from src, so the zero border survives
 * any number of copies with the same offsets. */
static void zero_plane(float *dst, size_t R, size_t ld) { memset(dst, 0, R * ld * sizeof(float)); }

/* dst[r][q] = src[r - off_r][q - off_c] for the (r < R, q < Cc) that fall inside src (sr x sc,
 * contiguous); other elements untouched. */
static void copy_plane(float *dst, size_t R, size_t Cc, size_t ld, const float *src, size_t sr, size_t sc,
                       ptrdiff_t off_r, ptrdiff_t off_c) {
    const ptrdiff_t c0 = off_c > 0 ? off_c : 0, ce = (ptrdiff_t)sc + off_c;
    const ptrdiff_t c1 = ce < (ptrdiff_t)Cc ? ce : (ptrdiff_t)Cc;
    const ptrdiff_t r0 = off_r > 0 ? off_r : 0, re = (ptrdiff_t)sr + off_r;
    const ptrdiff_t r1 = re < (ptrdiff_t)R ? re : (ptrdiff_t)R;
    if (c1 <= c0) return;
    for (ptrdiff_t r = r0; r < r1; r++)
        memcpy(dst + (size_t)r * ld + (size_t)c0, src + (size_t)(r - off_r) * sc + (size_t)(c0 - off_c),
               (size_t)(c1 - c0) * sizeof(float));
}

/* Task = (sample s, group g): pad the group's Cg input planes once, then per output channel o of the
 * group y[o] = b[o] + sum_c corr(xp[c], W[o][c]) (one kernel call per (o, c), accumulating over c). */
static void direct_forward_task(void *arg, size_t task, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    const size_t s = task / d->G, g = task % d->G;
    const size_t plane = ws16(d->PR * d->pg_fwd.ldx);
    float *xp = thread_ws(r, thread);
    for (size_t c = 0; c < d->Cg; c++) {
        zero_plane(xp + c * plane, d->PR, d->pg_fwd.ldx);
        copy_plane(xp + c * plane, d->PR, d->PC, d->pg_fwd.ldx, r->x[0] + (s * d->C + g * d->Cg + c) * d->hw, d->H,
                   d->W, (ptrdiff_t)d->geom.pad_top, (ptrdiff_t)d->geom.pad_left);
    }
    const float *bias = p->bias || p->infer_fold ? r->w + d->K * d->rows : NULL;
    for (size_t ko = 0; ko < d->Kg; ko++) {
        const size_t o = g * d->Kg + ko;
        float *y = r->y + (s * d->K + o) * d->ohw;
        for (size_t c = 0; c < d->Cg; c++)
            r->ctx->kernels.conv_direct_fwd(&d->pg_fwd, xp + c * plane, r->w + (o * d->Cg + c) * d->taps,
                                            bias ? bias[o] : 0.0f, c > 0, y);
    }
}

/* Task = (sample s, input channel ci): dx[ci] (+)= sum_{o in the group} corr(dyP[o], flip(W[o][c])), where
 * dyP is dy[o] placed at offset ((kh-1)*dh - pt, (kw-1)*dw - pl) in a zero QR x QC plane (stride 1: the
 * input gradient is the "full" correlation with the flipped filter). */
static void direct_backward_data_task(void *arg, size_t task, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const size_t s = task / d->C, ci = task % d->C, g = ci / d->Cg, c = ci % d->Cg;
    float *dyp = thread_ws(r, thread), *wf = dyp + ws16(d->QR * d->pg_bwd.ldx);
    float *dx = r->dx[0] + (s * d->C + ci) * d->hw;
    const ptrdiff_t er = (ptrdiff_t)(d->geom.dil_h * (d->geom.kh - 1)) - (ptrdiff_t)d->geom.pad_top;
    const ptrdiff_t ec = (ptrdiff_t)(d->geom.dil_w * (d->geom.kw - 1)) - (ptrdiff_t)d->geom.pad_left;
    const int acc = r->dx_accumulate[0];
    zero_plane(dyp, d->QR, d->pg_bwd.ldx);
    for (size_t ko = 0; ko < d->Kg; ko++) {
        const size_t o = g * d->Kg + ko;
        copy_plane(dyp, d->QR, d->QC, d->pg_bwd.ldx, r->dy + (s * d->K + o) * d->ohw, d->OH, d->OW, er, ec);
        const float *w = r->w + (o * d->Cg + c) * d->taps;
        for (size_t t = 0; t < d->taps; t++) wf[t] = w[d->taps - 1 - t];
        r->ctx->kernels.conv_direct_fwd(&d->pg_bwd, dyp, wf, 0.0f, acc || ko > 0, dx);
    }
}

/* Task = output channel o: dW[o][c][tap] = sum over samples (in order, in double) of the kernel's per-plane
 * sums; db[o] likewise. Every element has one owner and a fixed order: identical for any thread count. */
static void direct_backward_weights_task(void *arg, size_t o, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    const size_t g = o / d->Kg;
    float *ws = thread_ws(r, thread);
    double *acc = (double *)ws;
    float *xp = ws + ws16(2 * d->Cg * d->taps), *part = xp + ws16(d->PR * d->pg_fwd.ldx);
    for (size_t t = 0; t < d->Cg * d->taps; t++) acc[t] = 0.0;
    zero_plane(xp, d->PR, d->pg_fwd.ldx);
    double bsum = 0.0;
    for (size_t s = 0; s < r->n; s++) {
        const float *dy = r->dy + (s * d->K + o) * d->ohw;
        for (size_t c = 0; c < d->Cg; c++) {
            copy_plane(xp, d->PR, d->PC, d->pg_fwd.ldx, r->x[0] + (s * d->C + g * d->Cg + c) * d->hw, d->H, d->W,
                       (ptrdiff_t)d->geom.pad_top, (ptrdiff_t)d->geom.pad_left);
            /* the first input channel's call also sums dy into part[taps] for the bias */
            const int b = p->bias && c == 0;
            r->ctx->kernels.conv_direct_wgrad(&d->pg_fwd, xp, dy, b, part);
            for (size_t t = 0; t < d->taps; t++) acc[c * d->taps + t] += part[t];
            if (b) bsum += part[d->taps];
        }
    }
    float *dw = r->dw + o * d->Cg * d->taps;
    for (size_t t = 0; t < d->Cg * d->taps; t++) dw[t] = (float)acc[t];
    if (p->bias) r->dw[d->K * d->rows + o] = (float)bsum;
}

/* ---- the winograd algorithm ----
 * F(m x m, 3x3) with m = 2 (4x4 tiles, E = 16 tile elements, kernels winograd_*) or m = 4 (6x6 tiles,
 * E = 36, kernels winograd4_*; conv_dims.wino_m, see wino_tile). One pass (forward: x -> y with W;
 * backward-data: dy -> dx with W flipped and transposed and "padding" 2 - pad, which gives the full
 * correlation) over the batch's tile rows (m x m output tiles, tw per row, th rows per sample), in chunks
 * of rpc tile rows: per piece of a chunk (the part of it in one sample) the input planes are zero-padded
 * into P and transformed into V; then E GEMMs M_e[kout, cols] = U_e[kout, cin] * V_e[cin, cols]; then per
 * piece the output transform into Y and the copy of its valid part into the output (bias added, or
 * accumulated). The weights are transformed once per pass (first pool_for, split over output channels)
 * into ONE shared U, packed for ctx->kernels.sgemm_pa (so the 16 or 36 GEMMs of every chunk read it as it
 * is instead of packing U_e again per chunk: that packing was 5% of fmnist-fast's training step): the E
 * matrices U_e (wino_ue_floats each) are spread over the tails of the threads' workspace regions,
 * cap = ceil(E / threads) per region after the private buffers (wino_uoff), so the workspace holds U once,
 * not once per thread; then task p of `parts` runs a contiguous range of chunks.
 * (Should the context run on fewer threads than the layer was sized for, the tails cannot hold U: each
 * task then transforms U_e per chunk, cap elements at a time, into its own tail; same values.) Every output
 * element comes from the same transforms and the same GEMM sum over cin wherever its tile falls, so
 * results are identical for any thread count. Backward-weights runs the tile conv_dims.wino_mw
 * (wino_wgrad_team). */
typedef struct wino_plan {
    size_t m, E; /* output tile side and (m + 2)^2 tile elements */
    size_t cin, kout, ih, iw, oh, ow, th, tw, rpc, nb, ld, ldp, ldo, pstride, ystride;
    ptrdiff_t pt, pl;
} wino_plan;

/* V and M of one chunk, E * (cin + kout) * cols floats, within about WINO_CHUNK floats (2 MiB). The chunk cut
 * also orders the weight gradient's sums over tiles, so changing it changes every trained model's last bits
 * (and the zoo's measured accuracies in the README). Half of it (1 MiB) measured 3-8% faster in 20 of 27
 * alternating pass timings of c1..c3 on the Intel Xeon (2 MiB L2, 2026-12-02): not taken for that reason;
 * a later change of the numbers could take it with re-measured zoo rows. */
#define WINO_CHUNK ((size_t)1 << 19)
/* but at least WINO4_MIN_COLS tiles per chunk for F(4x4): each of the 36 GEMMs packs its U_e (K*C floats)
 * once per chunk, which costs more than the chunk's V and M falling out of L2 when K*C is large (c3:
 * 256 x 256, where 28 tiles per chunk ran 1.5x slower than F(2x2)) */
#ifndef WINO4_MIN_COLS
#define WINO4_MIN_COLS 128
#endif
/* Forward and backward-data, whose results do not depend on the chunking, take smaller chunks when the
 * transformed weights are small (E*K*C floats <= WINO_SMALL_U: they then stay in L2 across chunks):
 * V and M within WINO_CHUNK_SMALL floats (512 KiB), so that they too stay in L2 (2 MiB on the Intel Xeon,
 * 1 MiB on Zen 4) between the transforms and the GEMMs; the chunk's columns a multiple of 32 (the SGEMM
 * microkernel's width) where that costs at most a quarter of them. c1 forward on the Intel Xeon (2 MiB L2,
 * 2026-12-02, 2 threads): 128 -> 64 -> 32 columns per chunk 297 -> 336 -> 351 GFLOP/s (24 or 48: 330, 328).
 * c2 (U 590 KB) the same at 28 columns as at 126; c3 (U 9.4 MB) keeps the large chunks (32 columns: 0.9x). */
#define WINO_CHUNK_SMALL ((size_t)1 << 17)
#define WINO_SMALL_U ((size_t)1 << 18)

static size_t wino_rows_per_chunk(const conv_dims *d, size_t m, size_t E, size_t tw, int wgrad) {
    const size_t target_cols = WINO_CHUNK / (E * (d->C + d->K));
    if (wgrad || E * d->K * d->C > WINO_SMALL_U) {
        const size_t t = m == 4 && target_cols < WINO4_MIN_COLS ? WINO4_MIN_COLS : target_cols;
        return t / tw ? t / tw : 1;
    }
    const size_t rmax = WINO_CHUNK_SMALL / (E * (d->C + d->K)) / tw;
    if (!rmax) return 1;
    for (size_t rr = rmax; 4 * rr >= 3 * rmax; rr--)
        if (rr * tw % 32 == 0) return rr;
    return rmax;
}

/* wgrad: the plan of the weight gradient (its chunks order the sums: WINO_CHUNK) */
static void wino_plan_of(const conv_dims *d, int backward, size_t m, int wgrad, wino_plan *w) {
    memset(w, 0, sizeof *w);
    w->m = m;
    w->E = (m + 2) * (m + 2);
    if (!backward) {
        w->cin = d->C, w->kout = d->K, w->ih = d->H, w->iw = d->W, w->oh = d->OH, w->ow = d->OW;
        w->pt = (ptrdiff_t)d->geom.pad_top, w->pl = (ptrdiff_t)d->geom.pad_left;
    } else {
        w->cin = d->K, w->kout = d->C, w->ih = d->OH, w->iw = d->OW, w->oh = d->H, w->ow = d->W;
        w->pt = 2 - (ptrdiff_t)d->geom.pad_top, w->pl = 2 - (ptrdiff_t)d->geom.pad_left;
    }
    w->th = (w->oh + m - 1) / m;
    w->tw = (w->ow + m - 1) / m;
    const size_t tw8 = cnn_round_up(w->tw, 8);
    w->rpc = wino_rows_per_chunk(d, m, w->E, w->tw, wgrad);
    w->nb = w->rpc * w->tw;
    w->ld = w->nb + 8; /* the kernels' 7 columns of slack */
    const size_t rows = w->rpc < w->th ? w->rpc : w->th; /* tile rows of one piece */
    /* the input kernels' column reach: F(2x2)'s AVX2 kernel reads whole groups of 8 tiles of a row, the
     * F(4x4) kernels only the valid tiles (winograd.h); a narrow F(4x4) plane (c1: 20 floats, not 36) is
     * less to pad and to keep in cache */
    w->ldp = m == 4 ? 4 * w->tw + 4 : m * tw8 + 2;
    w->pstride = ws16((m * rows + 2) * w->ldp);
    w->ldo = m == 4 ? 4 * w->tw : m * tw8;
    w->ystride = ws16(m * rows * w->ldo);
}

/* A pass's private buffers: V [cin][E][ld], M [kout][E][ld], P (cin padded planes), Y (kout planes) */
static size_t wino_ws_plan(const wino_plan *w) {
    return ws16(w->E * w->cin * w->ld) + ws16(w->E * w->kout * w->ld) + w->cin * w->pstride +
           w->kout * w->ystride;
}

/* Backward-weights (forward plan f): V [C][E][ld], D [K][E][ld], P (C padded input planes), Q (K padded
 * dy planes, qstride each), Macc [E][K][C] (E = 16 or 36) (a thread's k range uses its first rows). */
static size_t wino_qstride(const wino_plan *f) {
    const size_t rows = f->rpc < f->th ? f->rpc : f->th;
    return ws16(f->m * rows * f->ldo);
}
static size_t wino_ws_wgrad(const conv_dims *d, const wino_plan *f) {
    return ws16(f->E * d->C * f->ld) + ws16(f->E * d->K * f->ld) + d->C * f->pstride + d->K * wino_qstride(f) +
           ws16(f->E * d->K * d->C);
}

/* Floats of one U_e in the workspace: packed for ctx->kernels.sgemm_pa (K x C forward, C x K backward). */
static size_t wino_ue_floats(const conv_dims *d) {
    const size_t f = CNN_F32_GEMM_PA_FLOATS(d->K, d->C), b = CNN_F32_GEMM_PA_FLOATS(d->C, d->K);
    return ws16(f > b ? f : b);
}

/* The weight transform's scratch at the start of a thread's region: E x 12 rows of U (wino_weights_task). */
static size_t wino_uscratch(const conv_dims *d) {
    const size_t E = (d->wino_m + 2) * (d->wino_m + 2), mx = d->K > d->C ? d->K : d->C;
    return ws16(E * CNN_F32_GEMM_PA_ROW_ALIGN * mx);
}

/* Floats of a thread's region before its share of U: the largest private need of the three passes (and
 * of the weight transform's scratch). */
static size_t wino_uoff(const conv_dims *d) {
    wino_plan f, b, f2;
    wino_plan_of(d, 0, d->wino_m, 0, &f);
    wino_plan_of(d, 1, d->wino_m, 0, &b);
    wino_plan_of(d, 0, d->wino_mw, 1, &f2);
    size_t a = wino_ws_plan(&f), c = wino_ws_plan(&b), g = wino_ws_wgrad(d, &f2), u = wino_uscratch(d);
    a = a > c ? a : c;
    a = a > u ? a : u;
    return a > g ? a : g;
}

/* Workspace per thread for `threads` threads: the private part, then ceil(E / threads) of the U_e. */
static size_t wino_ws(const conv_dims *d, size_t threads) {
    const size_t E = (d->wino_m + 2) * (d->wino_m + 2), t = threads ? threads : 1;
    return wino_uoff(d) + (E + t - 1) / t * wino_ue_floats(d);
}

/* Backward-weights, a team of T threads (cnn_pool_team). Over all chunks of the batch in order: the input
 * transform V and the dy transform D of the chunk, both shared by the team (thread t transforms input
 * channels range t into V and output channels range t into D; the V and D of even chunks lie in region
 * 0's V and D areas, of odd ones in region 1's, so one barrier per chunk suffices: a thread writes chunk
 * ch + 2's V and D only after every thread has passed chunk ch + 1's barrier, i.e. finished chunk ch's
 * GEMMs); then thread t runs the GEMMs of tile elements range t of the E (16 or 36), Macc_e[K, C] (+)= D_e[K, cols] *
 * V_e[C, cols]^T, into one Macc in region 0; thread t computes the bias sums db[k] of its output channels
 * (double, per sample) and, after a last barrier, dW = G^T Macc G of the same channels. Each Macc element has one
 * owner, the chunks are summed in a fixed order and V, D do not depend on who transformed them: identical
 * for any thread count. (Splitting the GEMMs by output channels instead, each thread packed all of V_e
 * for its half of the rows: c2 backward-weights 169 -> 191-201 GFLOP/s with the split by tile element on
 * the Intel Xeon, 2026-12-02; c1, whose GEMMs are the smallest, read 130-141 against 143-151: D now
 * crosses cores.) */
typedef struct wino_wjob {
    const cnn_layer_run *r;
    const conv_dims *d;
    wino_plan w;
} wino_wjob;

static void wino_wgrad_team(void *arg, size_t t, size_t T) {
    const wino_wjob *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = j->d;
    const conv_params *p = r->L->params;
    const wino_plan *w = &j->w;
    const cnn_kernels *kn = &r->ctx->kernels;
    size_t k0, k1, c0, c1, e0, e1;
    cnn_split_range(d->K, T, t, &k0, &k1);
    cnn_split_range(d->C, T, t, &c0, &c1);
    cnn_split_range(w->E, T, t, &e0, &e1);
    const size_t m = w->m, E = w->E;
    const cnn_winograd_input_fn input = m == 4 ? kn->winograd4_input : kn->winograd_input;
    const cnn_winograd_dyin_fn dyin = m == 4 ? kn->winograd4_dyin : kn->winograd_dyin;
    const cnn_winograd_wgrad_fn wgrad = m == 4 ? kn->winograd4_wgrad : kn->winograd_wgrad;
    const size_t qs = wino_qstride(w), doff = ws16(E * d->C * w->ld), poff = doff + ws16(E * d->K * w->ld);
    float *P = thread_ws(r, t) + poff, *Q = P + d->C * w->pstride;
    /* the team's Macc [E][K][C]: region 0's (thread t sums the tile elements [e0, e1) into it) */
    float *Macc = thread_ws(r, 0) + poff + d->C * w->pstride + d->K * qs;
    const size_t rows_total = r->n * w->th, chunks = (rows_total + w->rpc - 1) / w->rpc;
    for (size_t ch = 0; ch < chunks; ch++) {
        const size_t r0 = ch * w->rpc, r1 = r0 + w->rpc < rows_total ? r0 + w->rpc : rows_total;
        float *Vc = thread_ws(r, T > 1 ? ch & 1 : 0), *Dc = Vc + doff; /* the team's V and D of this chunk */
        for (size_t gr = r0; gr < r1;) {
            const size_t s = gr / w->th, ty0 = gr % w->th;
            const size_t nty = w->th - ty0 < r1 - gr ? w->th - ty0 : r1 - gr;
            for (size_t c = c0; c < c1; c++) {
                kn->plane_pad(P + (c - c0) * w->pstride, m * nty + 2, w->ldp, w->ldp, r->x[0] + (s * d->C + c) * d->hw,
                              d->H, d->W, w->pt - (ptrdiff_t)(m * ty0), w->pl);
            }
            if (c0 < c1)
                input(P, c1 - c0, w->pstride, w->ldp, w->tw, nty, Vc + c0 * E * w->ld + (gr - r0) * w->tw, w->ld);
            for (size_t k = k0; k < k1; k++) {
                kn->plane_pad(Q + (k - k0) * qs, m * nty, w->ldo, w->ldo, r->dy + (s * d->K + k) * d->ohw, d->OH, d->OW,
                              -(ptrdiff_t)(m * ty0), 0);
            }
            if (k0 < k1)
                dyin(Q, k1 - k0, qs, w->ldo, w->tw, nty, Dc + k0 * E * w->ld + (gr - r0) * w->tw, w->ld);
            gr += nty;
        }
        cnn_pool_barrier(T); /* the chunk's V and D are whole */
        const size_t cols = (r1 - r0) * w->tw;
        for (size_t e = e0; e < e1; e++)
            kn->sgemm(0, 1, d->K, d->C, cols, 1.0f, Dc + e * w->ld, E * w->ld, Vc + e * w->ld, E * w->ld,
                      ch ? 1.0f : 0.0f, Macc + e * d->K * d->C, d->C);
    }
    if (p->bias) {
        float *db = r->dw + d->K * d->rows;
        for (size_t k = k0; k < k1; k++) {
            double sum = 0.0;
            for (size_t s = 0; s < r->n; s++) sum += plane_sum(r->dy + (s * d->K + k) * d->ohw, d->ohw);
            db[k] = (float)sum;
        }
    }
    cnn_pool_barrier(T); /* every tile element's sums are whole */
    if (k0 < k1) /* dW rows [k0, k1) of this thread (c3: Macc is 4 MiB; thread 0 alone took 10% of the pass) */
        wgrad(Macc + k0 * d->C, k1 - k0, d->C, d->K * d->C, r->dw + k0 * d->C * 9);
}

typedef struct wino_job {
    const cnn_layer_run *r;
    wino_plan w;
    float *U[36];   /* U_e, written packed by wino_weights_task (shared mode) */
    const float *Ur[36]; /* U_e as the GEMMs read them: U, or the pre-transformed inference block */
    int packed;          /* Ur[e] are packed for sgemm_pa (the inference block, or the shared U of a pass) */
    int by_rows;         /* packed only: task p owns output channels range p (multiples of MR) of every chunk */
    size_t ucap;    /* 0: shared U; else the fallback: ucap elements at a time in the task's own tail */
    size_t uoff;    /* floats before the tail in each region */
    const float *in;
    float *out;
    int flip;
    const float *bias;
    int accumulate;
    size_t parts;
} wino_job;

static cnn_winograd_weights_e_fn wino_weights_fn(const cnn_kernels *kn, size_t m) {
    return m == 4 ? kn->winograd4_weights : kn->winograd_weights_e;
}

/* Part p of the weight transform: output channels (of this pass) in range p (aligned to 12 rows), all E
 * elements, packed for sgemm_pa: 12 rows at a time transformed into the scratch at the start of this
 * thread's region (free before wino_task), then each U_e's rows packed into place. Rows packed 12 at a
 * time from a multiple of 12 are the packing of the whole matrix (kernels.h), so every thread count gives
 * the same U, and the GEMMs give what the plain sgemm on the unpacked U gave (kernels.h: bit-identical). */
static void wino_weights_task(void *arg, size_t part, size_t thread) {
    const wino_job *j = arg;
    const cnn_layer_run *r = j->r;
    const cnn_kernels *kn = &r->ctx->kernels;
    const size_t E = j->w.E, kout = j->w.kout, cin = j->w.cin, G = CNN_F32_GEMM_PA_ROW_ALIGN;
    size_t k0, k1;
    split_aligned(kout, j->parts, part, G, &k0, &k1);
    if (k0 >= k1) return;
    float *scr = thread_ws(r, thread), *Us[36];
    for (size_t e = 0; e < E; e++) Us[e] = scr + e * G * cin;
    for (size_t g0 = k0; g0 < k1; g0 += G) {
        const size_t nr = k1 - g0 < G ? k1 - g0 : G;
        /* rows g0.. of U: the filters of output channel g0 on (forward: W + g0 * cin * 9; flipped and
         * transposed: channel g0 of W's input channels, W + g0 * 9, with W's K = this pass's cin) */
        const float *w = r->w + (j->flip ? g0 * 9 : g0 * cin * 9);
        wino_weights_fn(kn, j->w.m)(w, kout, cin, j->flip, 0, nr, 0, E, Us);
        for (size_t e = 0; e < E; e++) kn->sgemm_pack_a(0, nr, cin, Us[e], cin, j->U[e] + g0 * cin);
    }
}

static void wino_task(void *arg, size_t part, size_t thread) {
    const wino_job *j = arg;
    const cnn_layer_run *r = j->r;
    const wino_plan *w = &j->w;
    const cnn_kernels *kn = &r->ctx->kernels;
    const size_t E = w->E;
    const cnn_winograd_input_fn input = w->m == 4 ? kn->winograd4_input : kn->winograd_input;
    const cnn_winograd_output_fn output = w->m == 4 ? kn->winograd4_output : kn->winograd_output;
    const size_t rows_total = r->n * w->th, chunks = (rows_total + w->rpc - 1) / w->rpc;
    size_t cb = 0, ce = chunks, k0 = 0, k1 = w->kout;
    if (j->by_rows) split_aligned(w->kout, j->parts, part, kn->sgemm_mr, &k0, &k1);
    else cnn_split_range(chunks, j->parts, part, &cb, &ce);
    if (cb >= ce || k0 >= k1) return;
    float *V = thread_ws(r, thread), *M = V + ws16(E * w->cin * w->ld);
    float *P = M + ws16(E * w->kout * w->ld), *Y = P + w->cin * w->pstride;
    const size_t in_n = w->cin * w->ih * w->iw, out_n = w->kout * w->oh * w->ow, ohw = w->oh * w->ow;
    for (size_t ch = cb; ch < ce; ch++) {
        const size_t r0 = ch * w->rpc, r1 = r0 + w->rpc < rows_total ? r0 + w->rpc : rows_total;
        for (size_t gr = r0; gr < r1;) {
            const size_t s = gr / w->th, ty0 = gr % w->th;
            const size_t nty = w->th - ty0 < r1 - gr ? w->th - ty0 : r1 - gr;
            for (size_t c = 0; c < w->cin; c++) {
                kn->plane_pad(P + c * w->pstride, w->m * nty + 2, w->ldp, w->ldp, j->in + s * in_n + c * w->ih * w->iw,
                              w->ih, w->iw, w->pt - (ptrdiff_t)(w->m * ty0), w->pl);
            }
            input(P, w->cin, w->pstride, w->ldp, w->tw, nty, V + (gr - r0) * w->tw, w->ld);
            gr += nty;
        }
        const size_t cols = (r1 - r0) * w->tw;
        if (j->packed) { /* rows k0..k1 of M (all of them unless by_rows) */
            for (size_t e = 0; e < E; e++)
                kn->sgemm_pa(k1 - k0, cols, w->cin, j->Ur[e] + k0 * w->cin, 0, V + e * w->ld, E * w->ld, 0.0f,
                             NULL, M + (k0 * E + e) * w->ld, E * w->ld, NULL);
        } else { /* fallback: U_e for ucap elements at a time in this thread's tail */
            float *tail = thread_ws(r, thread) + j->uoff, *Ul[36];
            for (size_t e0 = 0; e0 < E; e0 += j->ucap) {
                const size_t e1 = e0 + j->ucap < E ? e0 + j->ucap : E;
                for (size_t e = e0; e < e1; e++) Ul[e] = tail + (e - e0) * ws16(w->kout * w->cin);
                wino_weights_fn(kn, w->m)(r->w, w->kout, w->cin, j->flip, 0, w->kout, e0, e1, Ul);
                for (size_t e = e0; e < e1; e++)
                    kn->sgemm(0, 0, w->kout, cols, w->cin, 1.0f, Ul[e], w->cin, V + e * w->ld, E * w->ld, 0.0f,
                              M + e * w->ld, E * w->ld);
            }
        }
        for (size_t gr = r0; gr < r1;) {
            const size_t s = gr / w->th, ty0 = gr % w->th;
            const size_t nty = w->th - ty0 < r1 - gr ? w->th - ty0 : r1 - gr;
            output(M + k0 * E * w->ld + (gr - r0) * w->tw, k1 - k0, w->ld, w->tw, nty, Y, w->ystride, w->ldo);
            const size_t oy0 = w->m * ty0, oy1 = w->m * (ty0 + nty) < w->oh ? w->m * (ty0 + nty) : w->oh;
            for (size_t k = k0; k < k1; k++) /* the valid part of Y, bias added (or accumulated) */
                kn->plane_add(j->out + s * out_n + k * ohw + oy0 * w->ow, w->ow, Y + (k - k0) * w->ystride, w->ldo,
                              oy1 - oy0, w->ow, j->bias ? j->bias[k] : 0.0f, j->accumulate);
            gr += nty;
        }
    }
}

/* inference forward: split the output channels over the tasks when there are fewer tiles than this per
 * task (wino_job.by_rows) */
#ifndef WINO_ROWS_MIN_TILES
#define WINO_ROWS_MIN_TILES 64
#endif

static void wino_run(const cnn_layer_run *r, const conv_dims *d, int backward) {
    const conv_params *p = r->L->params;
    wino_job j = {.r = r, .parts = r->ctx->threads ? r->ctx->threads : 1};
    wino_plan_of(d, backward, d->wino_m, 0, &j.w);
    /* balance: a multiple of `parts` chunks of (nearly) equal size, so that every thread gets the same
     * number (the buffers, sized for rpc, still fit; the results do not depend on the chunking) */
    const size_t rows_total = r->n * j.w.th, E = j.w.E;
    if (rows_total) {
        size_t chunks = (rows_total + j.w.rpc - 1) / j.w.rpc;
        chunks = cnn_round_up(chunks, j.parts);
        const size_t rpc = (rows_total + chunks - 1) / chunks;
        if (rpc && rpc < j.w.rpc) j.w.rpc = rpc;
    }
    if (!backward && p->infer_block) { /* fold.h: b' [round16(K)] then U_e [K][C] packed for sgemm_pa */
        j.in = r->x[0];
        j.out = r->y;
        j.bias = p->bias || p->infer_fold ? r->w : NULL;
        j.packed = 1;
        for (size_t e = 0; e < E; e++) j.Ur[e] = r->w + ws16(d->K) + e * wino_upacked(d);
        /* few tiles (batch 1, small images: ResNet's layer3/4 have 16 tiles per image): every task reads
         * U_e once per chunk, so split the output channels instead of the chunks (each task then reads
         * 1/parts of U and fills whole 16-column tiles; it transforms the whole input, which is small) */
        if (j.parts > 1 && rows_total * j.w.tw < WINO_ROWS_MIN_TILES * j.parts && d->K >= 2 * CNN_F32_GEMM_PA_ROW_ALIGN) {
            wino_plan_of(d, 0, d->wino_m, 0, &j.w);
            j.by_rows = 1;
        }
        cnn_pool_for(r->ctx, j.parts, wino_task, &j);
        return;
    }
    if (!backward) {
        j.in = r->x[0];
        j.out = r->y;
        j.bias = p->bias ? r->w + d->K * d->rows : NULL;
    } else {
        j.in = r->dy;
        j.out = r->dx[0];
        j.flip = 1;
        j.accumulate = r->dx_accumulate[0];
    }
    const size_t uoff = wino_uoff(d), ukc = wino_ue_floats(d);
    const size_t cap = r->ws_stride > uoff ? (r->ws_stride - uoff) / ukc : 0;
    CNN_ASSERT(cap >= 1); /* wino_ws reserves at least one U_e per region */
    /* the regions that exist, not only this run's threads: batch lane 0 runs a net compiled for T threads on a
     * one-thread context, and transforming U once per chunk instead (the fallback) made ResNet-18's training
     * step 2x slower with two lanes than with one */
    const size_t regions = r->ws_regions > j.parts ? r->ws_regions : j.parts;
    if ((E + cap - 1) / cap <= regions) { /* one shared U, packed: no GEMM packs it again per chunk */
        for (size_t e = 0; e < E; e++) {
            j.U[e] = r->ws + (e / cap) * r->ws_stride + uoff + (e % cap) * ukc;
            j.Ur[e] = j.U[e];
        }
        j.packed = 1;
        cnn_pool_for(r->ctx, j.parts, wino_weights_task, &j);
    } else {
        j.ucap = cap;
        j.uoff = uoff;
    }
    cnn_pool_for(r->ctx, j.parts, wino_task, &j);
}

static void stem_forward_task(void *arg, size_t part, size_t thread);

/* ---- the depthwise algorithm (kernels/f32_conv_dw; groups = C = K) ----
 * Forward and backward-data: tasks = (sample, channel) planes, one kernel call each, reading and writing
 * the NCHW planes in place (no padded copies, no workspace). Backward-weights: tasks = channels; each loops
 * over the samples in order and adds the kernel's per-plane float sums in double, so every dW / db element
 * has one owner and a fixed order: identical for any thread count. */
static void dw_forward_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    const size_t c = task % d->C;
    const float b = p->bias || p->infer_fold ? r->w[d->K * d->rows + c] : 0.0f;
    r->ctx->kernels.conv_dw_fwd(&d->dwg, r->x[0] + task * d->hw, r->w + c * d->taps, b, 0, r->y + task * d->ohw);
}

static void dw_backward_data_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    r->ctx->kernels.conv_dw_bwd(&d->dwg, r->dy + task * d->ohw, r->w + task % d->C * d->taps,
                                r->dx_accumulate[0], r->dx[0] + task * d->hw);
}

static void dw_backward_weights_task(void *arg, size_t c, size_t thread) {
    (void)thread;
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    double acc[CNN_DW_MAX_K * CNN_DW_MAX_K + 1] = {0};
    float part[CNN_DW_MAX_K * CNN_DW_MAX_K + 1];
    for (size_t s = 0; s < r->n; s++) {
        const size_t pl = s * d->C + c;
        r->ctx->kernels.conv_dw_wgrad(&d->dwg, r->x[0] + pl * d->hw, r->dy + pl * d->ohw, p->bias, part);
        for (size_t t = 0; t < d->taps + (p->bias ? 1 : 0); t++) acc[t] += part[t];
    }
    for (size_t t = 0; t < d->taps; t++) r->dw[c * d->taps + t] = (float)acc[t];
    if (p->bias) r->dw[d->K * d->rows + c] = (float)acc[d->taps];
}

static void conv_forward(const cnn_layer_run *r) {
    conv_job j;
    conv_job_init(&j, r);
    if (j.d.algo == CONV_DEPTHWISE) {
        cnn_pool_for(r->ctx, r->n * j.d.C, dw_forward_task, &j);
        return;
    }
    if (j.d.algo == CONV_STEM) {
        cnn_pool_for(r->ctx, j.parts, stem_forward_task, &j);
        return;
    }
    if (j.d.algo == CONV_DIRECT) {
        cnn_pool_for(r->ctx, r->n * j.d.G, direct_forward_task, &j);
        return;
    }
    if (j.d.algo == CONV_WINOGRAD) {
        wino_run(r, &j.d, 0);
        return;
    }
    if (pw_forward_ok(&j.d)) {
        pw_run(r, &j.d, 0);
        return;
    }
    cnn_pool_for(r->ctx, r->n * j.d.G * (j.d.gemm_1x1 ? 1 : j.d.nblocks), forward_task, &j);
}

/* Task = (sample s, group g): dx_g (+)= col2im(W_g^T * dY_g). */
static void backward_data_task(void *arg, size_t task, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const size_t s = task / d->G, g = task % d->G;
    float *dx = r->dx[0] + s * d->C * d->hw + g * d->Cg * d->hw;
    const float *dy = r->dy + s * d->K * d->ohw + g * d->Kg * d->ohw;
    const float *w = r->w + g * d->Kg * d->rows;
    const int acc = r->dx_accumulate[0];
    if (d->gemm_1x1) {
        /* dx_g[Cg, HW] (+)= W_g[Kg, Cg]^T * dY_g[Kg, HW] */
        r->ctx->kernels.sgemm(1, 0, d->Cg, d->hw, d->Kg, 1.0f, w, d->rows, dy, d->ohw, acc ? 1.0f : 0.0f, dx,
                              d->hw);
        return;
    }
    float *dcol = thread_ws(r, thread);
    if (!acc) memset(dx, 0, d->Cg * d->hw * sizeof(float));
    for (size_t b = 0; b < d->nblocks; b++) {
        size_t oy0, nrows;
        const cnn_conv_geom bg = block_geom(d, b, &oy0, &nrows);
        const size_t cols = nrows * d->OW;
        /* dcol[rows, block] = W_g[Kg, rows]^T * dY_g[Kg, block] */
        r->ctx->kernels.sgemm(1, 0, d->rows, cols, d->Kg, 1.0f, w, d->rows, dy + oy0 * d->OW, d->ohw, 0.0f, dcol,
                              cols);
        r->ctx->kernels.col2im(&bg, dcol, dx);
    }
}

static void conv_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    conv_job j;
    conv_job_init(&j, r);
    if (j.d.algo == CONV_DEPTHWISE) {
        cnn_pool_for(r->ctx, r->n * j.d.C, dw_backward_data_task, &j);
        return;
    }
    if (j.d.algo == CONV_DIRECT && !j.d.direct_bwd_gemm) {
        cnn_pool_for(r->ctx, r->n * j.d.C, direct_backward_data_task, &j);
        return;
    }
    if (j.d.algo == CONV_WINOGRAD) {
        wino_run(r, &j.d, 1);
        return;
    }
    if (pw_forward_ok(&j.d)) { /* groups 1: gemm-1x1, im2col+gemm */
        pw_run(r, &j.d, 1);
        return;
    }
    cnn_pool_for(r->ctx, r->n * j.d.G, backward_data_task, &j);
}

/* Range i of `parts` over [0, n) in blocks of `align` (the last block takes the tail). */
static void split_aligned(size_t n, size_t parts, size_t i, size_t align, size_t *b, size_t *e) {
    size_t blocks = (n + align - 1) / align, bb, be;
    cnn_split_range(blocks, parts, i, &bb, &be);
    *b = bb * align < n ? bb * align : n;
    *e = be * align < n ? be * align : n;
}

/* Task t owns the dW columns [R0, R1) of the G*rows columns over all groups (column R = g*rows + rr of
 * group g's dW_g[Kg, rows]) and the bias entries [o0, o1). */
static void backward_weights_task(void *arg, size_t task, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    size_t R0, R1, o0, o1;
    split_aligned(d->G * d->rows, j->parts, task, 16, &R0, &R1);
    for (size_t g = R0 / d->rows; R0 < R1 && g < d->G && g * d->rows < R1; g++) {
        const size_t gb = g * d->rows;
        const size_t rr0 = R0 > gb ? R0 - gb : 0;
        const size_t rr1 = R1 - gb < d->rows ? R1 - gb : d->rows;
        if (rr0 >= rr1) continue;
        float *dw = r->dw + g * d->Kg * d->rows + rr0;
        const size_t nbk = d->gemm_1x1 ? 1 : d->nblocks;
        for (size_t s = 0; s < r->n; s++) {
            const float *x = r->x[0] + s * d->C * d->hw + g * d->Cg * d->hw;
            const float *dy = r->dy + s * d->K * d->ohw + g * d->Kg * d->ohw;
            for (size_t b = 0; b < nbk; b++) {
                const float *col;
                size_t oy0 = 0, nrows = d->OH;
                if (d->gemm_1x1) {
                    col = x + rr0 * d->hw;
                } else {
                    float *ws = thread_ws(r, thread);
                    const cnn_conv_geom bg = block_geom(d, b, &oy0, &nrows);
                    r->ctx->kernels.im2col(&bg, x, rr0, rr1, ws);
                    col = ws;
                }
                const size_t cols = nrows * d->OW;
                /* dW_g[Kg, rr0:rr1] (+)= dY_g[Kg, block] * col[rr0:rr1, block]^T */
                r->ctx->kernels.sgemm(0, 1, d->Kg, rr1 - rr0, cols, 1.0f, dy + oy0 * d->OW, d->ohw, col, cols,
                                      s || b ? 1.0f : 0.0f, dw, d->rows);
            }
        }
    }
    if (p->bias) {
        float *db = r->dw + d->K * d->rows;
        cnn_split_range(d->K, j->parts, task, &o0, &o1);
        for (size_t o = o0; o < o1; o++) {
            double sum = 0.0;
            for (size_t s = 0; s < r->n; s++) sum += plane_sum(r->dy + (s * d->K + o) * d->ohw, d->ohw);
            db[o] = (float)sum;
        }
    }
}

/* gemm-1x1 (stride 1) backward-weights: dW = sum_i dY_i X_i^T with the batch cut into PW_WG_PARTS parts
 * of consecutive images (fewer for small batches; a function of n only): part 0 sums into dW, part 1 into
 * a buffer in the first workspace region, and the unit that finishes last (an atomic count) adds the
 * buffer into dW, so the pass is one parallel region (a second one cost a scheduler time slice per pass
 * on the loaded shared machine). Unit (part, column block of dW) is one chain of sgemm calls over the
 * part's images (beta 0, then 1); unit u also sums db for its range of channels. Against splitting dW's
 * columns over the threads with every thread walking the whole batch, each dY_i is packed once instead of
 * once per thread. The sum order depends on n only: identical results for any thread count. */
#define PW_WG_PARTS 2

typedef struct pw_wjob {
    const cnn_layer_run *r;
    const conv_dims *d;
    size_t parts, cs; /* image parts, column blocks per part */
    float *buf;       /* part 1's sum */
    atomic_size_t done;
} pw_wjob;

static void pw_wgrad_task(void *arg, size_t unit, size_t thread) {
    (void)thread;
    pw_wjob *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = j->d;
    const conv_params *p = r->L->params;
    const size_t part = unit / j->cs, units = j->parts * j->cs;
    size_t s0, s1, c0, c1;
    cnn_split_range(r->n, j->parts, part, &s0, &s1);
    split_aligned(d->C, j->cs, unit % j->cs, 16, &c0, &c1);
    float *dst = part == 0 ? r->dw : j->buf;
    for (size_t s = s0; s < s1 && c0 < c1; s++)
        /* dst[:, c0:c1] (+)= dY_s [K, HW] * X_s[c0:c1, HW]^T */
        r->ctx->kernels.sgemm(0, 1, d->K, c1 - c0, d->hw, 1.0f, r->dy + s * d->K * d->ohw, d->ohw,
                              r->x[0] + (s * d->C + c0) * d->hw, d->hw, s > s0 ? 1.0f : 0.0f, dst + c0, d->C);
    if (p->bias) {
        float *db = r->dw + d->K * d->rows;
        size_t o0, o1;
        cnn_split_range(d->K, units, unit, &o0, &o1);
        for (size_t o = o0; o < o1; o++) {
            double sum = 0.0;
            for (size_t s = 0; s < r->n; s++) sum += plane_sum(r->dy + (s * d->K + o) * d->ohw, d->ohw);
            db[o] = (float)sum;
        }
    }
    /* the last unit to finish (every other unit's writes visible through the acq_rel count) adds part 1 */
    if (atomic_fetch_add_explicit(&j->done, 1, memory_order_acq_rel) + 1 == units && j->parts > 1)
        for (size_t i = 0; i < d->K * d->C; i++) r->dw[i] += j->buf[i];
}

static void pw_backward_weights(const cnn_layer_run *r, const conv_dims *d) {
    const size_t T = r->ctx->threads ? r->ctx->threads : 1;
    pw_wjob j = {.r = r, .d = d, .parts = r->n < PW_WG_PARTS ? r->n : PW_WG_PARTS, .buf = r->ws};
    j.cs = (T + j.parts - 1) / j.parts;
    atomic_init(&j.done, 0);
    cnn_pool_for(r->ctx, j.parts * j.cs, pw_wgrad_task, &j);
}

/* ---- the stem algorithm (small-channel inputs: kernels/f32_conv_stem) ----
 * The input rows a block of output rows needs are copied into column-phase planes (conv_stem.h: plane
 * (ci, q) row r column t = xpad[ci][row0 + r][t*sw + q]), so that every tap reads a contiguous run of
 * output columns. Forward: tasks = `parts` contiguous ranges of (sample, block of stem_rbf output rows)
 * units; each packs the filter transposed to [taps][K] once, then per unit builds the planes and runs the
 * kernel over all K. Backward-weights: part p owns output channels [k0, k1) (blocks of 4), loops over the
 * samples and chunks of stem_rbw output rows in order and accumulates dW[k][tap] and db[k] in double
 * (each kernel call's float sums added once; the kernel sums dy for db while it is in L1). Each output element has one owner and an order
 * fixed by the shape: identical for any thread count. Backward-data runs im2col+gemm. */

/* Phase planes of sample x (C planes of H x W) for output rows [oy0, oy0 + nr): prows rows each. */
static void stem_planes(const conv_dims *d, const float *x, size_t oy0, size_t nr, size_t pstride, float *xp) {
    const size_t sh = d->geom.stride_h, sw = d->geom.stride_w, pt = d->geom.pad_top, pl = d->geom.pad_left;
    const size_t prows = (nr - 1) * sh + d->geom.kh, ldp = d->stem_ldp;
    for (size_t ci = 0; ci < d->C; ci++) {
        const float *xc = x + ci * d->hw;
        for (size_t q = 0; q < sw; q++) {
            float *pl_ = xp + (ci * sw + q) * pstride;
            /* columns t with 0 <= t*sw + q - pl < W */
            size_t t0 = q >= pl ? 0 : (pl - q + sw - 1) / sw;
            size_t t1 = d->W + pl > q ? (d->W + pl - q + sw - 1) / sw : 0;
            if (t1 > ldp) t1 = ldp;
            if (t0 > t1) t0 = t1;
            for (size_t r = 0; r < prows; r++) {
                float *dst = pl_ + r * ldp;
                const size_t R = oy0 * sh + r;
                if (R < pt || R - pt >= d->H) {
                    memset(dst, 0, ldp * sizeof(float));
                    continue;
                }
                const float *src = xc + (R - pt) * d->W + (t0 * sw + q - pl);
                memset(dst, 0, t0 * sizeof(float));
                if (sw == 1)
                    memcpy(dst + t0, src, (t1 - t0) * sizeof(float));
                else
                    for (size_t t = 0; t < t1 - t0; t++) dst[t0 + t] = src[t * sw];
                memset(dst + t1, 0, (ldp - t1) * sizeof(float));
            }
        }
    }
}

static cnn_stem_geom stem_geom(const conv_dims *d, size_t pstride) {
    return (cnn_stem_geom){.c = d->C, .kh = d->geom.kh, .kw = d->geom.kw, .sh = d->geom.stride_h,
                           .sw = d->geom.stride_w, .ow = d->OW, .ldp = d->stem_ldp, .pstride = pstride};
}

static void stem_forward_task(void *arg, size_t part, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    const size_t nrb = (d->OH + d->stem_rbf - 1) / d->stem_rbf;
    size_t u0, u1;
    cnn_split_range(r->n * nrb, j->parts, part, &u0, &u1);
    if (u0 >= u1) return;
    const size_t kp = cnn_round_up(d->K, CNN_STEM_KB);
    float *wp = thread_ws(r, thread), *xp = wp + ws16(d->rows * kp);
    /* W[k][t] -> wp[((k / KB)*rows + t)*KB + k % KB], the padding channels of the last block zero */
    for (size_t k = 0; k < kp; k++)
        for (size_t t = 0; t < d->rows; t++)
            wp[((k / CNN_STEM_KB) * d->rows + t) * CNN_STEM_KB + k % CNN_STEM_KB] =
                k < d->K ? r->w[k * d->rows + t] : 0.0f;
    const float *bias = p->bias || p->infer_fold ? r->w + d->K * d->rows : NULL;
    const cnn_stem_geom g = stem_geom(d, d->stem_psf);
    for (size_t u = u0; u < u1; u++) {
        const size_t s = u / nrb, oy0 = u % nrb * d->stem_rbf;
        const size_t nr = d->OH - oy0 < d->stem_rbf ? d->OH - oy0 : d->stem_rbf;
        stem_planes(d, r->x[0] + s * d->C * d->hw, oy0, nr, d->stem_psf, xp);
        r->ctx->kernels.conv_stem_fwd(&g, xp, nr, wp, d->K, bias, r->y + s * d->K * d->ohw + oy0 * d->OW,
                                      d->ohw);
    }
}

static void stem_backward_weights_task(void *arg, size_t part, size_t thread) {
    const conv_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = &j->d;
    const conv_params *p = r->L->params;
    size_t k0, k1;
    split_aligned(d->K, j->parts, part, 4, &k0, &k1);
    if (k0 >= k1) return;
    float *ws = thread_ws(r, thread);
    double *acc = (double *)ws, *bacc = acc + d->K * d->rows; /* dW rows k0..k1, then the bias sums */
    float *xp = ws + ws16(2 * d->K * (d->rows + 1));
    for (size_t t = 0; t < (k1 - k0) * d->rows; t++) acc[t] = 0.0;
    for (size_t k = 0; k < k1 - k0; k++) bacc[k] = 0.0;
    const cnn_stem_geom g = stem_geom(d, d->stem_psw);
    for (size_t s = 0; s < r->n; s++)
        for (size_t oy0 = 0; oy0 < d->OH; oy0 += d->stem_rbw) {
            const size_t nr = d->OH - oy0 < d->stem_rbw ? d->OH - oy0 : d->stem_rbw;
            stem_planes(d, r->x[0] + s * d->C * d->hw, oy0, nr, d->stem_psw, xp);
            r->ctx->kernels.conv_stem_wgrad(&g, xp, nr, r->dy + (s * d->K + k0) * d->ohw + oy0 * d->OW, d->ohw,
                                            k1 - k0, acc, p->bias ? bacc : NULL);
        }
    float *dw = r->dw + k0 * d->rows;
    for (size_t t = 0; t < (k1 - k0) * d->rows; t++) dw[t] = (float)acc[t];
    if (p->bias)
        for (size_t o = k0; o < k1; o++) r->dw[d->K * d->rows + o] = (float)bacc[o - k0];
}

/* ---- the blocked weight gradient (wgrad=blocked; kernels/f32_conv_wgrad, wgrad.h) ----
 * dW[k][q] = sum over the batch's output pixels of dy[k][pixel] * x(q, pixel) for the rows q = (c, i, j)
 * of the filter, with 16 output channels in the vector lanes and the pixels the loop (oneDNN's direct
 * weight gradient, on NCHW data: dy is packed per piece into blocks of 16 channels, x zero-padded).
 * Pieces: (sample, block of rb output rows), rb such that a piece's packed dy is at most BLK_PIECE floats;
 * a group of pieces (together at most BLK_GROUP floats of packed dy and padded x) is prepared by the team
 * (thread t packs dy blocks and pads x planes range t of the group), then after a barrier every thread
 * runs its tasks on the group's pieces, piece by piece: task = (k group of at most 4 blocks, tap group of
 * nt consecutive rows q, nt = min(9, 27 / the largest group's blocks)), thread t owning tasks range t of
 * them for the whole pass. The bias gradient comes from the per-piece dy sums of the packing, added in
 * piece order by the owner of the channel block. A task's per-piece float
 * sums (the kernel's FMA chains over the piece's pixels in order) are added to the double accumulator of
 * its entries in piece order, so each dW element has one owner and an order fixed by the shape: identical
 * for any thread count, and (wgrad.h) on every ISA. Groups alternate between the buffers of regions 0 and
 * 1 (as wino_wgrad_team's chunks), so one barrier per group suffices. The FMA work is 2 * K16 * rows * P
 * flops per sample (K16: K rounded up to 16), at 10 loads per 24 FMAs (4 x 6) or 12 per 27 (3 x 9). */
#define BLK_PIECE ((size_t)1 << 16)
#define BLK_GROUP ((size_t)1 << 18)

typedef struct blk_plan {
    size_t KB, ngk;        /* blocks of 16 output channels, k groups (of at most CNN_WGRAD_MAX_KB blocks) */
    size_t nt, ntg;        /* rows q per tap group (the last may have fewer), tap groups */
    size_t rb, ppp;        /* output rows per piece, pieces per sample */
    size_t prow, ldp, pstride; /* a piece's padded input: prow rows of ldp floats per channel plane */
    size_t dyt;            /* packed dy floats of a full piece (KB * rb * OW * 16) */
    size_t set;            /* floats of one group's buffers: gp pieces of dyt + C * pstride */
    size_t gp;             /* pieces per group */
} blk_plan;

static void blk_plan_of(const conv_dims *d, blk_plan *b) {
    const cnn_conv_geom *g = &d->geom;
    memset(b, 0, sizeof *b);
    b->KB = (d->K + 15) / 16;
    b->ngk = (b->KB + CNN_WGRAD_MAX_KB - 1) / CNN_WGRAD_MAX_KB;
    const size_t kbmax = (b->KB + b->ngk - 1) / b->ngk; /* the largest k group */
    b->nt = CNN_WGRAD_MAX_ACC / kbmax < CNN_WGRAD_MAX_TAPS ? CNN_WGRAD_MAX_ACC / kbmax : CNN_WGRAD_MAX_TAPS;
    b->ntg = (d->rows + b->nt - 1) / b->nt;
    const size_t per_row = b->KB * 16 * d->OW;
    size_t rbmax = BLK_PIECE / (per_row ? per_row : 1);
    if (rbmax < 1) rbmax = 1;
    b->ppp = (d->OH + rbmax - 1) / rbmax;
    b->rb = (d->OH + b->ppp - 1) / b->ppp;
    b->ppp = (d->OH + b->rb - 1) / b->rb;
    b->prow = (b->rb - 1) * g->stride_h + (g->kh - 1) * g->dil_h + 1;
    b->ldp = (d->OW - 1) * g->stride_w + (g->kw - 1) * g->dil_w + 1;
    b->pstride = ws16(b->prow * b->ldp);
    b->dyt = ws16(b->KB * b->rb * d->OW * 16);
    const size_t piece = b->dyt + d->C * b->pstride + b->KB * 16; /* packed dy, padded x, dy sums */
    b->gp = BLK_GROUP / piece;
    if (b->gp < 1) b->gp = 1;
    b->set = b->gp * piece;
}

/* Per region: one group's buffers, then (region 0's used) the double sums of the tasks (BLK_ACC each, in
 * the kernel's order) and of the bias gradient (KB*16), then the thread's table of the filter rows' input
 * offsets (rows ptrdiff_t). */
#define BLK_ACC (CNN_WGRAD_MAX_ACC * 16)
static size_t blk_ws(const conv_dims *d) {
    blk_plan b;
    blk_plan_of(d, &b);
    return b.set + ws16(2 * BLK_ACC * b.ngk * b.ntg) + ws16(2 * b.KB * 16) + ws16(2 * d->rows);
}

typedef struct blk_job {
    const cnn_layer_run *r;
    const conv_dims *d;
    blk_plan b;
} blk_job;

static void blk_wgrad_team(void *arg, size_t t, size_t T) {
    const blk_job *j = arg;
    const cnn_layer_run *r = j->r;
    const conv_dims *d = j->d;
    const blk_plan *b = &j->b;
    const conv_params *p = r->L->params;
    const cnn_kernels *kn = &r->ctx->kernels;
    const cnn_conv_geom *g = &d->geom;
    const size_t pieces = r->n * b->ppp, groups = (pieces + b->gp - 1) / b->gp, ntasks = b->ngk * b->ntg;
    double *accs = (double *)(thread_ws(r, 0) + b->set); /* BLK_ACC per task */
    double *dbs = (double *)(thread_ws(r, 0) + b->set + ws16(2 * BLK_ACC * ntasks)); /* KB*16 */
    /* the padded-input offset of every filter row q = (c, i, j), in this thread's region */
    ptrdiff_t *offq = (ptrdiff_t *)(thread_ws(r, t) + b->set + ws16(2 * BLK_ACC * ntasks) + ws16(2 * b->KB * 16));
    size_t d0, d1; /* this thread's channel blocks of the bias gradient */
    cnn_split_range(b->KB, T, t, &d0, &d1);
    for (size_t q = 0; q < d->rows; q++) {
        const size_t c = q / d->taps, ki = q % d->taps / g->kw, kj = q % g->kw;
        offq[q] = (ptrdiff_t)(c * b->pstride + ki * g->dil_h * b->ldp + kj * g->dil_w);
    }
    size_t t0, t1;
    cnn_split_range(ntasks, T, t, &t0, &t1);
    for (size_t gi = 0; gi < groups; gi++) {
        const size_t p0 = gi * b->gp, p1 = p0 + b->gp < pieces ? p0 + b->gp : pieces, np = p1 - p0;
        float *set = thread_ws(r, T > 1 ? gi & 1 : 0);
        float *xps = set + np * b->dyt; /* the pieces' padded planes after their packed dy */
        float *bss = xps + np * d->C * b->pstride; /* then their dy sums, KB*16 each */
        /* prepare: dy blocks (piece, block) and x planes (piece, channel), range t of each */
        size_t u0, u1;
        cnn_split_range(np * b->KB, T, t, &u0, &u1);
        for (size_t u = u0; u < u1;) {
            const size_t pc = p0 + u / b->KB, s = pc / b->ppp, oy0 = pc % b->ppp * b->rb;
            const size_t nr = d->OH - oy0 < b->rb ? d->OH - oy0 : b->rb, kb0 = u % b->KB;
            const size_t kb1 = b->KB < kb0 + (u1 - u) ? b->KB : kb0 + (u1 - u);
            kn->wgrad_pack_dy(r->dy + s * d->K * d->ohw + oy0 * d->OW, d->K, nr * d->OW, d->ohw, kb0, kb1,
                              set + (pc - p0) * b->dyt + kb0 * nr * d->OW * 16,
                              p->bias ? bss + (pc - p0) * b->KB * 16 + kb0 * 16 : NULL);
            u += kb1 - kb0;
        }
        cnn_split_range(np * d->C, T, t, &u0, &u1);
        for (size_t u = u0; u < u1; u++) {
            const size_t pc = p0 + u / d->C, c = u % d->C, s = pc / b->ppp, oy0 = pc % b->ppp * b->rb;
            kn->plane_pad(xps + u * b->pstride, b->prow, b->ldp, b->ldp, r->x[0] + (s * d->C + c) * d->hw, d->H,
                          d->W, (ptrdiff_t)g->pad_top - (ptrdiff_t)(oy0 * g->stride_h), (ptrdiff_t)g->pad_left);
        }
        cnn_pool_barrier(T); /* the group's pieces are ready */
        if (p->bias) /* the bias gradient of this thread's channel blocks, piece by piece in order */
            for (size_t pc = p0; pc < p1; pc++)
                for (size_t k = d0 * 16; k < d1 * 16; k++)
                    dbs[k] = (pc == 0 ? 0.0 : dbs[k]) + (double)bss[(pc - p0) * b->KB * 16 + k];
        /* piece by piece, every task of this thread on it (the piece's dy blocks stay in L1/L2) */
        for (size_t pc = p0; pc < p1; pc++) {
            const size_t oy0 = pc % b->ppp * b->rb, nr = d->OH - oy0 < b->rb ? d->OH - oy0 : b->rb;
            for (size_t task = t0; task < t1; task++) {
                const size_t gk = task / b->ntg, q0 = task % b->ntg * b->nt;
                size_t kb0, kb1;
                cnn_split_range(b->KB, b->ngk, gk, &kb0, &kb1);
                cnn_wgrad_args a = {.ldp = b->ldp, .sh = g->stride_h, .sw = g->stride_w, .oh = nr, .ow = d->OW,
                                    .kb = kb1 - kb0, .ntap = d->rows - q0 < b->nt ? d->rows - q0 : b->nt};
                for (size_t i = 0; i < a.ntap; i++) a.off[i] = offq[q0 + i];
                a.dyT = set + (pc - p0) * b->dyt + kb0 * nr * d->OW * 16;
                a.xp = xps + (pc - p0) * d->C * b->pstride;
                kn->wgrad_sums(&a, accs + task * BLK_ACC, pc == 0);
            }
        }
    }
    /* dW of this thread's tasks (their entries are whole: this thread summed every piece into them) */
    for (size_t task = t0; task < t1; task++) {
        const size_t gk = task / b->ntg, q0 = task % b->ntg * b->nt;
        const size_t nq = q0 + b->nt < d->rows ? b->nt : d->rows - q0;
        size_t kb0, kb1;
        cnn_split_range(b->KB, b->ngk, gk, &kb0, &kb1);
        const double *acc = accs + task * BLK_ACC;
        for (size_t k = kb0 * 16; k < kb1 * 16 && k < d->K; k++)
            for (size_t i = 0; i < nq; i++) r->dw[k * d->rows + q0 + i] = (float)acc[((k / 16 - kb0) * nq + i) * 16 + k % 16];
    }
    if (p->bias)
        for (size_t k = d0 * 16; k < d1 * 16 && k < d->K; k++) r->dw[d->K * d->rows + k] = (float)dbs[k];
}

static void conv_backward_weights(const cnn_layer_run *r) {
    if (!r->dw) return;
    conv_job j;
    conv_job_init(&j, r);
    if (r->n == 0) {
        const conv_params *p = r->L->params;
        memset(r->dw, 0, (j.d.K * j.d.rows + (p->bias ? j.d.K : 0)) * sizeof(float));
        return;
    }
    if (j.d.wgrad_blocked) {
        blk_job bj = {.r = r, .d = &j.d};
        blk_plan_of(&j.d, &bj.b);
        cnn_pool_team(r->ctx, r->ctx->threads ? r->ctx->threads : 1, blk_wgrad_team, &bj);
        return;
    }
    if (j.d.algo == CONV_STEM) {
        cnn_pool_for(r->ctx, j.parts, stem_backward_weights_task, &j);
        return;
    }
    if (j.d.algo == CONV_DEPTHWISE) {
        cnn_pool_for(r->ctx, j.d.C, dw_backward_weights_task, &j);
        return;
    }
    if (j.d.algo == CONV_DIRECT) {
        cnn_pool_for(r->ctx, j.d.K, direct_backward_weights_task, &j);
        return;
    }
    if (j.d.algo == CONV_WINOGRAD) {
        wino_wjob wj = {.r = r, .d = &j.d};
        wino_plan_of(&j.d, 0, j.d.wino_mw, 1, &wj.w);
        cnn_pool_team(r->ctx, r->ctx->threads ? r->ctx->threads : 1, wino_wgrad_team, &wj);
        return;
    }
    if (j.d.algo == CONV_GEMM_1X1 && pw_kind(&j.d) == PW_DIRECT && pw_forward_ok(&j.d)) {
        pw_backward_weights(r, &j.d);
        return;
    }
    cnn_pool_for(r->ctx, j.parts, backward_weights_task, &j);
}

/* ---- the inference weight block (fold.h) ---- */

/* The winograd inference block (fold.h): b' [ws16(K)], the E matrices U_e [K, C] each packed for
 * ctx->kernels.sgemm_pa (wino_upacked floats apart), then per fill task a scratch of E x 12 rows of U
 * (fill_task transforms 12 output channels at a time and packs them). */
static size_t wino_upacked(const conv_dims *d) { return ws16(CNN_F32_GEMM_PA_FLOATS(d->K, d->C)); }
static size_t wino_fill_scratch(const conv_dims *d) {
    return ws16((d->wino_m + 2) * (d->wino_m + 2) * CNN_F32_GEMM_PA_ROW_ALIGN * d->C);
}
static size_t wino_block_floats(const conv_dims *d, size_t parts) {
    const size_t E = (d->wino_m + 2) * (d->wino_m + 2);
    return ws16(d->K) + E * wino_upacked(d) + (parts ? parts : 1) * wino_fill_scratch(d);
}

size_t cnn_conv2d_infer_block_floats(const cnn_layer *L, int fold) {
    const conv_params *p = L->params;
    conv_dims d;
    conv_dims_of(p, L->in[0], &d);
    if (d.algo == CONV_WINOGRAD) return wino_block_floats(&d, L->ctx ? L->ctx->threads : 1);
    /* the packed-A driver: W', b', then W' packed for ctx->kernels.sgemm_pa (pw_block_off) */
    if (pw_forward_ok(&d)) return pw_block_off(&d) + CNN_F32_GEMM_PA_FLOATS(d.K, d.rows);
    return fold ? d.K * d.rows + d.K : 0;
}

void cnn_conv2d_set_batch(cnn_layer *L, size_t batch) {
    conv_params *p = L->params;
    p->batch_hint = batch;
}

void cnn_conv2d_set_infer_block(cnn_layer *L, int block, int fold) {
    conv_params *p = L->params;
    p->infer_block = block != 0;
    p->infer_fold = block && fold;
}

typedef struct fill_job {
    const cnn_layer *L;
    const cnn_kernels *kn;
    conv_dims d;
    const float *w;
    const double *scale, *shift;
    float *block;
    size_t parts;
} fill_job;

/* Part `part` of the output channels: their b' and W' (or U). */
static void fill_task(void *arg, size_t part, size_t thread) {
    (void)thread;
    const fill_job *j = arg;
    const conv_params *p = j->L->params;
    const conv_dims *d = &j->d;
    size_t k0, k1;
    const int wino = d->algo == CONV_WINOGRAD;
    if (wino) split_aligned(d->K, j->parts, part, CNN_F32_GEMM_PA_ROW_ALIGN, &k0, &k1);
    else cnn_split_range(d->K, j->parts, part, &k0, &k1);
    if (k0 >= k1) return;
    const float *bias = p->bias ? j->w + d->K * d->rows : NULL;
    float *b_out = wino ? j->block : j->block + d->K * d->rows;
    for (size_t k = k0; k < k1; k++) {
        const double b = bias ? bias[k] : 0.0;
        b_out[k] = (float)(j->scale ? b * j->scale[k] + j->shift[k] : b);
    }
    if (wino) {
        /* per group of 12 output channels: U of the unfolded weights into this task's scratch, row k of
         * every U_e times scale[k] (the transform is linear), then each U_e's rows packed into place */
        const size_t E = (d->wino_m + 2) * (d->wino_m + 2), G12 = CNN_F32_GEMM_PA_ROW_ALIGN;
        float *U = j->block + ws16(d->K), *Ue[36];
        float *scr = U + E * wino_upacked(d) + part * wino_fill_scratch(d);
        for (size_t e = 0; e < E; e++) Ue[e] = scr + e * G12 * d->C;
        for (size_t g0 = k0; g0 < k1; g0 += G12) {
            const size_t nr = k1 - g0 < G12 ? k1 - g0 : G12;
            wino_weights_fn(j->kn, d->wino_m)(j->w + g0 * d->rows, nr, d->C, 0, 0, nr, 0, E, Ue);
            for (size_t e = 0; e < E; e++) {
                if (j->scale)
                    for (size_t k = 0; k < nr; k++) {
                        float *u = Ue[e] + k * d->C;
                        const double sc = j->scale[g0 + k];
                        for (size_t c = 0; c < d->C; c++) u[c] = (float)(u[c] * sc);
                    }
                j->kn->sgemm_pack_a(0, nr, d->C, Ue[e], d->C, U + e * wino_upacked(d) + g0 * d->C);
            }
        }
        return;
    }
    for (size_t k = k0; k < k1; k++) {
        const float *src = j->w + k * d->rows;
        float *dst = j->block + k * d->rows;
        const double sc = j->scale ? j->scale[k] : 1.0;
        for (size_t i = 0; i < d->rows; i++) dst[i] = (float)(src[i] * sc);
    }
}

/* Part `part` of the packed W' (rows in multiples of CNN_F32_GEMM_PA_ROW_ALIGN, each a packed matrix of
 * its own at Ap + k0 * rows): packed from the W' that fill_task wrote. */
static void fill_pack_task(void *arg, size_t part, size_t thread) {
    (void)thread;
    const fill_job *j = arg;
    const conv_dims *d = &j->d;
    size_t k0, k1;
    split_aligned(d->K, j->parts, part, CNN_F32_GEMM_PA_ROW_ALIGN, &k0, &k1);
    if (k0 < k1)
        j->kn->sgemm_pack_a(0, k1 - k0, d->rows, j->block + k0 * d->rows, d->rows,
                            j->block + pw_block_off(d) + k0 * d->rows);
}

void cnn_conv2d_fill_infer_block(const cnn_layer *L, cnn_ctx *ctx, const float *w, const double *scale,
                                 const double *shift, float *block) {
    fill_job j = {.L = L, .kn = &ctx->kernels, .w = w, .scale = scale, .shift = shift, .block = block,
                  .parts = ctx->threads ? ctx->threads : 1};
    conv_dims_of(L->params, L->in[0], &j.d);
    /* winograd: no more tasks than the block has scratch regions (sized with the threads at compile) */
    const size_t sized = L->ctx && L->ctx->threads ? L->ctx->threads : 1;
    if (j.d.algo == CONV_WINOGRAD && j.parts > sized) j.parts = sized;
    cnn_pool_for(ctx, j.parts, fill_task, &j);
    if (pw_forward_ok(&j.d)) cnn_pool_for(ctx, j.parts, fill_pack_task, &j);
}

const struct cnn_layer_ops cnn_layer_conv2d = {
    .name = "conv2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(conv_params),
    .parse = conv_parse,
    .print = conv_print,
    .shape = conv_shape,
    .sizes = conv_sizes,
    .forward = conv_forward,
    .backward_data = conv_backward_data,
    .backward_weights = conv_backward_weights,
};
