/* test_conv2d.c — the conv2d layer against the float64 reference ref_conv2d_forward (tests/ref/ref_conv.c):
 * forward (training and inference) and, through th_check's central differences, the input, weight and
 * bias gradients, over odd shapes: 17x23 inputs, stride 3 with dilation 2 and groups 4 and asymmetric
 * padding, 1x1 (the gemm-1x1 path) and 1x1 with stride/padding (im2col path), rectangular kernels,
 * depthwise (with and without a channel multiplier), pad=same with stride 2 and an even kernel, no bias,
 * windows that lie entirely in the padding, a kernel covering the whole input, products that cross the
 * SGEMM's cache blocks, batch 1 and 3, 1 and 2 threads; a conv whose input gradient is accumulated (two
 * consumers); 1 vs 2 threads bit-identical; some cases again on the scalar SGEMM (CNN_ISA=scalar); the
 * worked example (5x5 ramp, vertical edge filter -> all -6); NaN propagation from a weight; parameter
 * names/layouts, FLOPs, algorithm; print/parse round trip; and bad parameters.
 *
 * Tolerances: forward 1e-5 relative to max(max|y|, 1); gradients 1e-4 relative to max(max|fd|, 1e-2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref/ref_conv.h"
#include "kernels/kernels.h"
#include "kernels/f32_im2col/im2col.h"

typedef struct conv_case {
    ref_conv2d p;
    int bias;
} conv_case;

/* params: weight [k, c/groups, kh, kw], then bias [k] when present. */
static void ref_conv(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const conv_case *c = user;
    ref_conv2d_forward(&c->p, n, x, params[0], c->bias ? params[1] : NULL, y);
}

/* A case from explicit geometry (pads top, bottom, left, right). */
static conv_case mk(size_t c, size_t h, size_t w, size_t k, size_t kh, size_t kw, size_t sh, size_t sw, size_t pt,
                    size_t pb, size_t pl, size_t pr, size_t dh, size_t dw, size_t groups, int bias) {
    conv_case cc = {{c, h, w, k, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups}, bias};
    return cc;
}

/* Build, check the output shape against the reference formula, check forward (training and inference)
 * and all gradients. */
static void run_case(const char *model, size_t n, size_t threads, conv_case cc, size_t fd_points) {
    th_net t;
    th_build(&t, model, n, 1000 + n * 10 + threads, threads);
    const ref_conv2d *p = &cc.p;
    size_t oh = ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh);
    size_t ow = ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw);
    assert_true(oh > 0 && ow > 0);
    assert_int_equal(t.in.c, p->c);
    assert_int_equal(t.in.h, p->h);
    assert_int_equal(t.in.w, p->w);
    assert_int_equal(t.out.c, p->k);
    assert_int_equal(t.out.h, oh);
    assert_int_equal(t.out.w, ow);
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = fd_points};
    th_check(&t, ref_conv, &cc, 1, tol);
    th_check(&t, ref_conv, &cc, 0, tol);
    th_free(&t);
}

/* model with " algo=<algo>" appended to its last line (the conv2d line). */
static const char *with_algo(char *buf, size_t n, const char *model, const char *algo) {
    size_t len = strlen(model);
    assert_true(len > 0 && model[len - 1] == '\n');
    int w = snprintf(buf, n, "%.*s algo=%s\n", (int)(len - 1), model, algo);
    assert_true(w > 0 && (size_t)w < n);
    return buf;
}

/* run_case with the automatic choice, then forced im2col+gemm and (stride 1 only) forced direct. */
static void run_case_algos(const char *model, size_t n, size_t threads, conv_case cc, size_t fd_points) {
    char buf[512];
    run_case(model, n, threads, cc, fd_points);
    run_case(with_algo(buf, sizeof buf, model, "im2col"), n, threads, cc, fd_points);
    if (cc.p.sh == 1 && cc.p.sw == 1) run_case(with_algo(buf, sizeof buf, model, "direct"), n, threads, cc, fd_points);
}

static void test_conv_basic_3x3(void **state) {
    (void)state;
    run_case_algos("input c=3 h=17 w=23\nconv2d k=8 size=3 pad=1\n", 3, 1,
                   mk(3, 17, 23, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
    run_case_algos("input c=3 h=17 w=23\nconv2d k=8 size=3 pad=1\n", 1, 1,
                   mk(3, 17, 23, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
}

static void test_conv_stride_dilation_groups_asym_pad(void **state) {
    (void)state;
    const char *m = "input c=8 h=17 w=23\n"
                    "conv2d k=12 kh=3 kw=5 stride=3 dilation=2 groups=4 pad_top=2 pad_bottom=0 pad_left=1 pad_right=3\n";
    conv_case cc = mk(8, 17, 23, 12, 3, 5, 3, 3, 2, 0, 1, 3, 2, 2, 4, 1);
    run_case(m, 3, 1, cc, 40);
    run_case(m, 3, 2, cc, 40);
    /* per-axis keys */
    run_case("input c=6 h=13 w=11\nconv2d k=4 kh=4 kw=3 stride_h=2 stride_w=3 dilation_h=1 dilation_w=3 groups=2 "
             "pad_h=2 pad_w=1\n",
             2, 2, mk(6, 13, 11, 4, 4, 3, 2, 3, 2, 2, 1, 1, 1, 3, 2, 1), 40);
}

static void test_conv_1x1(void **state) {
    (void)state;
    /* gemm-1x1: no im2col */
    conv_case cc = mk(5, 7, 9, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    run_case("input c=5 h=7 w=9\nconv2d k=6 size=1\n", 3, 1, cc, 0);
    run_case("input c=5 h=7 w=9\nconv2d k=6 size=1\n", 3, 2, cc, 0);
    run_case_algos("input c=6 h=7 w=9\nconv2d k=4 size=1 groups=2 bias=0\n", 3, 2,
                   mk(6, 7, 9, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2, 0), 0);
    /* 1x1 with stride and padding goes through im2col; the border windows lie entirely in the padding */
    run_case("input c=5 h=7 w=9\nconv2d k=4 size=1 stride=2 pad=1\n", 3, 1, mk(5, 7, 9, 4, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1),
             0);
    run_case("input c=1 h=3 w=3\nconv2d k=2 size=1 pad=2\n", 2, 1, mk(1, 3, 3, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1), 0);
}

static void test_conv_rectangular(void **state) {
    (void)state;
    run_case("input c=2 h=11 w=13\nconv2d k=5 kh=2 kw=5 stride_h=1 stride_w=2 pad_h=1 pad_w=0\n", 3, 1,
             mk(2, 11, 13, 5, 2, 5, 1, 2, 1, 1, 0, 0, 1, 1, 1, 1), 40);
    /* the kernel covers the whole (padded) input: a 1x1 output */
    run_case("input c=2 h=5 w=4\nconv2d k=3 kh=5 kw=4\n", 3, 1, mk(2, 5, 4, 3, 5, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), 0);
    run_case("input c=2 h=5 w=6\nconv2d k=3 kh=3 kw=2 dilation=2 pad_w=1\n", 2, 2,
             mk(2, 5, 6, 3, 3, 2, 1, 1, 0, 0, 1, 1, 2, 2, 1, 1), 0);
}

static void test_conv_depthwise(void **state) {
    (void)state;
    run_case_algos("input c=6 h=9 w=11\nconv2d k=6 size=3 pad=1 groups=6\n", 3, 1,
                   mk(6, 9, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1), 40);
    run_case_algos("input c=6 h=9 w=11\nconv2d k=6 size=3 pad=1 groups=6\n", 3, 2,
                   mk(6, 9, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1), 40);
    /* channel multiplier 2, stride 2 */
    run_case("input c=6 h=9 w=11\nconv2d k=12 size=3 stride=2 groups=6\n", 3, 2,
             mk(6, 9, 11, 12, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 6, 1), 40);
}

static void test_conv_pad_same(void **state) {
    (void)state;
    /* stride 2, even kernel: out = ceil(17/2) = 9, ceil(23/2) = 12; total pad 3 = 1 top + 2 bottom */
    size_t pt, pb, pl, pr;
    ref_conv_same_pad(17, 4, 2, 1, &pt, &pb);
    ref_conv_same_pad(23, 4, 2, 1, &pl, &pr);
    assert_int_equal(pt, 1);
    assert_int_equal(pb, 2);
    assert_int_equal(pl, 1);
    assert_int_equal(pr, 2);
    conv_case cc = mk(3, 17, 23, 4, 4, 4, 2, 2, pt, pb, pl, pr, 1, 1, 1, 1);
    assert_int_equal(ref_conv_out_len(17, 4, 2, pt, pb, 1), 9);
    assert_int_equal(ref_conv_out_len(23, 4, 2, pl, pr, 1), 12);
    run_case("input c=3 h=17 w=23\nconv2d k=4 size=4 stride=2 pad=same\n", 3, 1, cc, 40);
    run_case("input c=3 h=17 w=23\nconv2d k=4 size=4 stride=2 pad=same\n", 3, 2, cc, 40);
    /* stride 1 with dilation 2: out = in, total pad 4 = 2 + 2 */
    ref_conv_same_pad(10, 3, 1, 2, &pt, &pb);
    ref_conv_same_pad(7, 2, 1, 2, &pl, &pr);
    run_case("input c=2 h=10 w=7\nconv2d k=3 kh=3 kw=2 dilation=2 pad=same\n", 2, 1,
             mk(2, 10, 7, 3, 3, 2, 1, 1, pt, pb, pl, pr, 2, 2, 1, 1), 0);
    /* stride 3, kernel 2 on 17: out 6, no padding needed */
    ref_conv_same_pad(17, 2, 3, 1, &pt, &pb);
    assert_int_equal(pt + pb, 0);
    /* ... and on 7: out 3, total pad (3-1)*3 + 2 - 7 = 1, all of it at the right */
    ref_conv_same_pad(7, 2, 3, 1, &pl, &pr);
    assert_int_equal(pl, 0);
    assert_int_equal(pr, 1);
    run_case("input c=2 h=17 w=7\nconv2d k=3 size=2 stride=3 pad=same\n", 2, 1,
             mk(2, 17, 7, 3, 2, 2, 3, 3, pt, pb, pl, pr, 1, 1, 1, 1), 0);
}

static void test_conv_no_bias(void **state) {
    (void)state;
    run_case("input c=4 h=12 w=9\nconv2d k=5 size=3 stride=2 bias=0\n", 3, 1, mk(4, 12, 9, 5, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0),
             40);
    run_case("input c=4 h=12 w=9\nconv2d k=6 size=3 pad=1 groups=2 bias=0\n", 3, 2,
             mk(4, 12, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0), 40);
}

/* The direct algorithm (stride 1, plane by plane) forced on shapes that reach every tile of its AVX2
 * kernels: widths 7 (one masked vector), 8 (one full vector), 11, 16, 23 and 25 (16-column tiles, then
 * 7 / 9 remaining columns: one masked vector, or a full plus a masked one), heights 1, 5, 17 (4-row tiles
 * plus single rows); 5x5 and 1x7 filters (25 / 7 taps: the weight-gradient kernel's 9-tap groups and a
 * short last group), 1x1, dilation 2, padding larger than the filter reach (border planes that lie
 * entirely in the padding), groups with 2 input and 3 output channels each, channel multiplier 2, no bias,
 * and one input channel (the stem case). */
static void test_conv_direct(void **state) {
    (void)state;
    run_case("input c=3 h=17 w=25\nconv2d k=5 size=3 pad=1 algo=direct\n", 2, 1,
             mk(3, 17, 25, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
    run_case("input c=2 h=5 w=23\nconv2d k=3 size=5 pad=2 algo=direct\n", 2, 2,
             mk(2, 5, 23, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1), 40);
    run_case("input c=1 h=9 w=16\nconv2d k=4 kh=1 kw=7 pad_w=3 algo=direct\n", 3, 1,
             mk(1, 9, 16, 4, 1, 7, 1, 1, 0, 0, 3, 3, 1, 1, 1, 1), 40);
    run_case("input c=1 h=1 w=8\nconv2d k=2 kh=1 kw=3 pad_w=1 algo=direct\n", 2, 1,
             mk(1, 1, 8, 2, 1, 3, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1), 0);
    run_case("input c=4 h=7 w=7\nconv2d k=6 size=3 dilation=2 pad_top=3 pad_bottom=1 pad_left=0 pad_right=4 "
             "groups=2 bias=0 algo=direct\n",
             3, 2, mk(4, 7, 7, 6, 3, 3, 1, 1, 3, 1, 0, 4, 2, 2, 2, 0), 40);
    run_case("input c=3 h=6 w=11\nconv2d k=6 size=1 pad=2 groups=3 algo=direct\n", 2, 1,
             mk(3, 6, 11, 6, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 3, 1), 0);
    run_case("input c=5 h=5 w=9\nconv2d k=3 size=1 algo=direct\n", 2, 1, mk(5, 5, 9, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
             0);
    /* the stem case (C=1, chosen automatically) and depthwise with a channel multiplier */
    run_case("input c=1 h=28 w=28\nconv2d k=8 size=3 pad=1\n", 2, 2, mk(1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
             40);
    run_case("input c=4 h=13 w=18\nconv2d k=8 size=3 groups=4 pad=1\n", 2, 1,
             mk(4, 13, 18, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1), 40);
}

/* Winograd F(2x2,3x3) forced on small odd shapes, against the float64 reference at the same tolerance as
 * the other algorithms (forward 1e-5 relative to max(max|y|, 1), gradients 1e-4): 19 columns (10 tiles
 * per row: the AVX2 transforms' 8-tile groups spill into the next row), odd heights and widths (partial
 * tiles), no padding (backward-data then pads by 2), padding 3 on one side (backward-data "pads" by -1),
 * a single pixel, no bias, batch 1; all three passes (the weight gradient too is Winograd:
 * G^T [sum over tiles (A dy A^T) .* (B^T d B)] G). */
static void test_conv_winograd(void **state) {
    (void)state;
    run_case("input c=5 h=11 w=19\nconv2d k=7 size=3 pad=1 algo=winograd\n", 3, 2,
             mk(5, 11, 19, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
    run_case("input c=3 h=6 w=5\nconv2d k=4 size=3 algo=winograd\n", 2, 1, mk(3, 6, 5, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
             0);
    run_case("input c=4 h=7 w=9\nconv2d k=5 size=3 pad_top=3 pad_bottom=0 pad_left=0 pad_right=2 bias=0 "
             "algo=winograd\n",
             2, 2, mk(4, 7, 9, 5, 3, 3, 1, 1, 3, 0, 0, 2, 1, 1, 1, 0), 40);
    run_case("input c=2 h=1 w=1\nconv2d k=3 size=3 pad=1 algo=winograd\n", 2, 1, mk(2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
             0);
    run_case("input c=16 h=8 w=8\nconv2d k=16 size=3 pad=1\n", 1, 1, mk(16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
             20);
}

/* Forward output and input gradient of `model` with algo=winograd against algo=im2col on the same
 * weights, input and dy, at shapes too large for the float64 reference: chunks of tile rows that span
 * samples and chunks that split a sample, over 1 and 2 threads; also the weight and bias gradients.
 * Winograd's tolerance: 2e-5 relative to max(max|im2col|, 1). Also 1 vs 2 threads bit-identical. */
static void check_winograd_vs_im2col(const char *model, size_t n) {
    char bw[512], bi[512];
    th_net w1, w2, im;
    th_build(&w1, with_algo(bw, sizeof bw, model, "winograd"), n, 555, 1);
    th_build(&w2, bw, n, 555, 2);
    th_build(&im, with_algo(bi, sizeof bi, model, "im2col"), n, 555, 2);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(w1.net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "winograd-f2x2");
    const size_t ycount = n * w1.out_count, xcount = n * w1.in_count;
    float *dy = malloc(ycount * sizeof(float));
    double *ref = malloc((ycount > xcount ? ycount : xcount) * sizeof(double));
    assert_true(dy && ref);
    th_fill_uniform(dy, ycount, 8, -1, 1);
    th_net *nets[3] = {&w1, &w2, &im};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cnn_net_forward(nets[i]->net, nets[i]->x, n, 1), CNN_OK);
        assert_int_equal(cnn_net_backward(nets[i]->net, dy), CNN_OK);
    }
    size_t got = 0, worst = 0;
    const float *y_im = cnn_net_output(im.net, &got);
    for (size_t i = 0; i < ycount; i++) ref[i] = y_im[i];
    double e = th_rel_err(cnn_net_output(w1.net, &got), ref, ycount, 1.0, &worst);
    if (e > 2e-5) fail_msg("winograd forward differs from im2col by %g at %zu", e, worst);
    const float *dx_im = cnn_net_input_grad(im.net);
    for (size_t i = 0; i < xcount; i++) ref[i] = dx_im[i];
    e = th_rel_err(cnn_net_input_grad(w1.net), ref, xcount, 1.0, &worst);
    if (e > 2e-5) fail_msg("winograd input gradient differs from im2col by %g at %zu", e, worst);
    assert_memory_equal(cnn_net_output(w1.net, &got), cnn_net_output(w2.net, &got), ycount * sizeof(float));
    assert_memory_equal(cnn_net_input_grad(w1.net), cnn_net_input_grad(w2.net), xcount * sizeof(float));
    /* weight and bias gradients (winograd's weight gradient sums 16 GEMMs over all tiles of the batch) */
    for (size_t i = 0; i < cnn_net_num_params(w1.net); i++) {
        cnn_param pw, p2, pi;
        assert_int_equal(cnn_net_param_at(w1.net, i, &pw), CNN_OK);
        assert_int_equal(cnn_net_param_at(w2.net, i, &p2), CNN_OK);
        assert_int_equal(cnn_net_param_at(im.net, i, &pi), CNN_OK);
        if (!pw.trainable) continue;
        double *gr = malloc(pi.count * sizeof(double));
        assert_non_null(gr);
        for (size_t k = 0; k < pi.count; k++) gr[k] = pi.grad[k];
        e = th_rel_err(pw.grad, gr, pi.count, 1.0, &worst);
        if (e > 2e-5) fail_msg("winograd %s gradient differs from im2col by %g at %zu", pw.name, e, worst);
        assert_memory_equal(pw.grad, p2.grad, pw.count * sizeof(float));
        free(gr);
    }
    free(dy);
    free(ref);
    th_free(&w1);
    th_free(&w2);
    th_free(&im);
}

static void test_conv_winograd_large(void **state) {
    (void)state;
    /* 256 tiles per chunk, 10x10 tiles per sample: chunks span samples */
    check_winograd_vs_im2col("input c=64 h=20 w=19\nconv2d k=64 size=3 pad=1\n", 5);
    /* 128 tiles per chunk, 20 tiles per row: 6 tile rows per chunk, 20 per sample */
    check_winograd_vs_im2col("input c=128 h=40 w=40\nconv2d k=128 size=3 pad=1\n", 2);
    check_winograd_vs_im2col("input c=96 h=13 w=30\nconv2d k=160 size=3 pad_top=2 pad_left=0 bias=0\n", 3);
}

/* Rows of the column matrix (32*9 = 288) cross the SGEMM's K block (256); 80 output channels cross its
 * M block (72). */
static void check_threads_bitwise(const char *model, size_t n);

static void test_conv_large_gemm(void **state) {
    (void)state;
    conv_case cc = mk(32, 10, 10, 80, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    run_case("input c=32 h=10 w=10\nconv2d k=80 size=3 pad=1 algo=im2col\n", 2, 2, cc, 8);
    /* im2col+gemm in blocks of output rows (a block of column matrix within 64 Ki floats, >= 256 columns):
     * 23 rows of 40 in blocks of 11 (the last of 1 row); 30 rows of 45 in blocks of 9 (the last of 3) */
    run_case("input c=16 h=45 w=79\nconv2d k=6 size=3 stride=2 pad=1\n", 2, 2,
             mk(16, 45, 79, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 20);
    run_case("input c=3 h=60 w=90\nconv2d k=4 size=7 stride=2 pad=3\n", 2, 1,
             mk(3, 60, 90, 4, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1), 20);
    check_threads_bitwise("input c=3 h=60 w=90\nconv2d k=4 size=7 stride=2 pad=3\n", 3);
}

/* im2col+gemm backward-data (pw_backward_data_im2col): dcol in chunks of input channels (a multiple of
 * 4 for 3x3, of 12 for 5x5, within 64 Ki floats of columns) and, for large outputs, blocks of output rows;
 * tasks own whole images, or, when the images do not split evenly over the threads, ranges of channels. */
static void test_conv_im2col_bwd_chunks(void **state) {
    (void)state;
    /* 15x15 outputs: chunks of 32 channels (32 + 8); 3 images on 2 threads: channels 20 + 20 */
    const char *m40 = "input c=40 h=30 w=30\nconv2d k=12 size=3 stride=2 pad=1 algo=im2col\n";
    run_case(m40, 2, 2, mk(40, 30, 30, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 12);
    run_case(m40, 3, 2, mk(40, 30, 30, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 12);
    check_threads_bitwise(m40, 3);
    /* one image on 2 threads: channels 36 + 36, each in chunks of 32 + 4 */
    run_case("input c=72 h=29 w=30\nconv2d k=5 size=3 stride=2 pad=1 bias=0 algo=im2col\n", 1, 2,
             mk(72, 29, 30, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0), 12);
    /* 46x46 outputs: blocks of 23 output rows, chunks of 4 channels (4 + 1) */
    run_case("input c=5 h=91 w=91\nconv2d k=3 size=3 stride=2 pad=1 algo=im2col\n", 2, 2,
             mk(5, 91, 91, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), 12);
    /* 5x5: chunks of 24 channels (24 + 6) */
    const char *m30 = "input c=30 h=20 w=21\nconv2d k=7 size=5 stride=2 pad=2 algo=im2col\n";
    run_case(m30, 2, 1, mk(30, 20, 21, 7, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1), 12);
    check_threads_bitwise(m30, 3);
}

/* The AVX2 im2col and col2im (and the AVX-512 col2im) against the scalar ones on random data: bit-identical, and nothing outside
 * the output written (guard bands of NaN-free sentinels before and after), at strides 1, 2 and 3, odd
 * widths, padding, dilation and row blocks (oy0 > 0); col2im accumulates into random x. */
static void test_im2col_kernels(void **state) {
    (void)state;
    if (cnn_cpu_isa() < CNN_ISA_AVX2) skip();
    const cnn_conv_geom gs[] = {
        {.c = 3, .h = 13, .w = 29, .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_top = 1, .pad_left = 1,
         .dil_h = 1, .dil_w = 1, .oh = 7, .ow = 15},
        {.c = 2, .h = 9, .w = 8, .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_top = 1, .pad_left = 1,
         .dil_h = 1, .dil_w = 1, .oh = 2, .ow = 4, .oy0 = 2},
        {.c = 2, .h = 40, .w = 47, .kh = 7, .kw = 7, .stride_h = 2, .stride_w = 2, .pad_top = 3, .pad_left = 3,
         .dil_h = 1, .dil_w = 1, .oh = 20, .ow = 24},
        {.c = 4, .h = 11, .w = 37, .kh = 5, .kw = 3, .stride_h = 1, .stride_w = 2, .pad_top = 0, .pad_left = 2,
         .dil_h = 1, .dil_w = 2, .oh = 7, .ow = 19},
        {.c = 3, .h = 10, .w = 23, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_top = 1, .pad_left = 1,
         .dil_h = 1, .dil_w = 1, .oh = 10, .ow = 23},
        {.c = 2, .h = 12, .w = 31, .kh = 3, .kw = 4, .stride_h = 3, .stride_w = 3, .pad_top = 2, .pad_left = 1,
         .dil_h = 1, .dil_w = 1, .oh = 4, .ow = 10},
    };
    const size_t G = 16; /* guard floats on each side */
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        const cnn_conv_geom *g = &gs[t];
        const size_t xn = g->c * g->h * g->w, cn = g->c * g->kh * g->kw * g->oh * g->ow;
        float *x = malloc((xn + 2 * G) * sizeof(float)), *c = malloc((cn + 2 * G) * sizeof(float));
        float *a = malloc((cn + 2 * G) * sizeof(float)), *b = malloc((cn + 2 * G) * sizeof(float));
        float *xa = malloc((xn + 2 * G) * sizeof(float)), *xb = malloc((xn + 2 * G) * sizeof(float));
        assert_true(x && c && a && b && xa && xb);
        th_fill_uniform(x, xn + 2 * G, 11 + t, -1, 1);
        th_fill_uniform(c, cn + 2 * G, 23 + t, -1, 1);
        th_fill_uniform(a, cn + 2 * G, 37 + t, -1, 1);
        memcpy(b, a, (cn + 2 * G) * sizeof(float));
        /* im2col: all rows, then a middle range of rows */
        cnn_f32_im2col_scalar(g, x + G, 0, g->c * g->kh * g->kw, a + G);
        cnn_f32_im2col_avx2(g, x + G, 0, g->c * g->kh * g->kw, b + G);
        assert_memory_equal(a, b, (cn + 2 * G) * sizeof(float));
        const size_t r0 = 1, r1 = g->c * g->kh * g->kw - 1;
        cnn_f32_im2col_scalar(g, x + G, r0, r1, a + G);
        cnn_f32_im2col_avx2(g, x + G, r0, r1, b + G);
        assert_memory_equal(a, b, (cn + 2 * G) * sizeof(float));
        /* col2im into random x (accumulating) */
        memcpy(xa, x, (xn + 2 * G) * sizeof(float));
        memcpy(xb, x, (xn + 2 * G) * sizeof(float));
        cnn_f32_col2im_scalar(g, c + G, xa + G);
        cnn_f32_col2im_avx2(g, c + G, xb + G);
        assert_memory_equal(xa, xb, (xn + 2 * G) * sizeof(float));
        if (cnn_cpu_isa() >= CNN_ISA_AVX512) {
            memcpy(xb, x, (xn + 2 * G) * sizeof(float));
            cnn_f32_col2im_avx512(g, c + G, xb + G);
            assert_memory_equal(xa, xb, (xn + 2 * G) * sizeof(float));
        }
        assert_memory_equal(xa, x, G * sizeof(float));
        assert_memory_equal(xa + G + xn, x + G + xn, G * sizeof(float));
        size_t changed = 0;
        for (size_t i = G; i < G + xn; i++) changed += xa[i] != x[i];
        assert_true(changed > xn / 4); /* the kernels did add something */
        free(x), free(c), free(a), free(b), free(xa), free(xb);
    }
}

/* The plane copies (f32_plane/plane.h) of every ISA the table has against their definition: pad with
 * offsets inside, partly outside and wholly outside the source (rows and columns), widths around 16, and
 * nothing written past C in a row (the ld slack keeps its sentinel); add with and without accumulate. */
typedef struct plane_fns {
    cnn_plane_pad_fn pad;
    cnn_plane_add_fn add;
} plane_fns;

static void test_plane_kernels(void **state) {
    (void)state;
    plane_fns f[2] = {{cnn_f32_plane_pad_scalar, cnn_f32_plane_add_scalar}};
    size_t nf = 1;
    if (cnn_cpu_isa() >= CNN_ISA_AVX512) f[nf++] = (plane_fns){cnn_f32_plane_pad_avx512, cnn_f32_plane_add_avx512};
    static const size_t dims[][4] = {{7, 14, 14, 14}, {9, 33, 5, 17}, {3, 1, 2, 3}, {12, 70, 40, 31}, {5, 16, 4, 16}};
    static const ptrdiff_t offs[][2] = {{0, 0}, {1, 1}, {2, 2}, {-3, -2}, {-1, 5}, {4, -1}, {50, 0}, {0, 80}, {-40, 0}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t oi = 0; oi < sizeof offs / sizeof offs[0]; oi++) {
            const size_t R = dims[di][0], C = dims[di][1], sr = dims[di][2], sc = dims[di][3], ld = C + 3;
            float *src = malloc(sr * sc * sizeof(float)), *dst = malloc(R * ld * sizeof(float));
            float *a = malloc(R * ld * sizeof(float));
            assert_true(src && dst && a);
            th_fill_uniform(src, sr * sc, 700 + di, -1, 1);
            for (size_t v = 0; v < nf; v++) {
                for (size_t i = 0; i < R * ld; i++) dst[i] = 7.0f;
                f[v].pad(dst, R, C, ld, src, sr, sc, offs[oi][0], offs[oi][1]);
                for (size_t r = 0; r < R; r++)
                    for (size_t q = 0; q < ld; q++) {
                        const ptrdiff_t y = (ptrdiff_t)r - offs[oi][0], x = (ptrdiff_t)q - offs[oi][1];
                        float want = q >= C ? 7.0f
                                     : (y >= 0 && y < (ptrdiff_t)sr && x >= 0 && x < (ptrdiff_t)sc) ? src[(size_t)y * sc + (size_t)x]
                                                                                                   : 0.0f;
                        if (memcmp(&dst[r * ld + q], &want, sizeof want))
                            fail_msg("pad %zu (%zu %zu %zu %zu, off %td %td): [%zu][%zu] = %g, want %g", v, R, C, sr, sc,
                                     offs[oi][0], offs[oi][1], r, q, dst[r * ld + q], want);
                    }
                /* add: dst rows (ld) from src rows (sc), rows min(R, sr), cols min(C, sc) */
                const size_t rows = R < sr ? R : sr, cols = C < sc ? C : sc;
                for (int acc = 0; acc < 2; acc++) {
                    th_fill_uniform(dst, R * ld, 800 + di, -1, 1);
                    memcpy(a, dst, R * ld * sizeof(float));
                    f[v].add(dst, ld, src, sc, rows, cols, 0.375f, acc);
                    for (size_t r = 0; r < R; r++)
                        for (size_t q = 0; q < ld; q++) {
                            float want = a[r * ld + q];
                            if (r < rows && q < cols) want = acc ? want + src[r * sc + q] : src[r * sc + q] + 0.375f;
                            if (memcmp(&dst[r * ld + q], &want, sizeof want))
                                fail_msg("add %zu acc %d: [%zu][%zu] = %g, want %g", v, acc, r, q, dst[r * ld + q], want);
                        }
                }
            }
            free(src), free(dst), free(a);
        }
}

/* y = conv_a(x) + conv_b(x): the input has two consumers, so one conv stores its dx and the other adds. */
typedef struct two_conv {
    conv_case a, b;
} two_conv;

static void ref_two_conv(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const two_conv *c = user;
    size_t oh = ref_conv_out_len(c->a.p.h, c->a.p.kh, c->a.p.sh, c->a.p.pt, c->a.p.pb, c->a.p.dh);
    size_t ow = ref_conv_out_len(c->a.p.w, c->a.p.kw, c->a.p.sw, c->a.p.pl, c->a.p.pr, c->a.p.dw);
    size_t count = n * c->a.p.k * oh * ow;
    double *yb = malloc(count * sizeof(double));
    if (!yb) fail_msg("out of memory");
    ref_conv2d_forward(&c->a.p, n, x, params[0], params[1], y);
    ref_conv2d_forward(&c->b.p, n, x, params[2], params[3], yb);
    for (size_t i = 0; i < count; i++) y[i] += yb[i];
    free(yb);
}

static void run_two_conv(const char *model, two_conv tc, size_t threads) {
    th_net t;
    th_build(&t, model, 3, 77, threads);
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 40};
    th_check(&t, ref_two_conv, &tc, 1, tol);
    th_free(&t);
}

static void test_conv_dx_accumulate(void **state) {
    (void)state;
    two_conv tc = {mk(3, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), mk(3, 9, 8, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)};
    run_two_conv("input name=in c=3 h=9 w=8\nconv2d name=a k=4 size=3 pad=1\nconv2d name=b from=in k=4 size=1\n"
                 "add from=a,b\n",
                 tc, 1);
    /* the same with forced algorithms: winograd and direct store / accumulate */
    run_two_conv("input name=in c=3 h=9 w=8\nconv2d name=a k=4 size=3 pad=1 algo=winograd\nconv2d name=b from=in k=4 "
                 "size=3 pad=1 algo=winograd\nadd from=a,b\n",
                 (two_conv){tc.a, tc.a}, 2);
    run_two_conv("input name=in c=3 h=9 w=8\nconv2d name=a k=4 size=3 pad=1 algo=direct\nconv2d name=b from=in k=4 "
                 "size=1 algo=im2col\nadd from=a,b\n",
                 tc, 1);
    two_conv tc2 = {tc.b, tc.a};
    run_two_conv("input name=in c=3 h=9 w=8\nconv2d name=a k=4 size=1\nconv2d name=b from=in k=4 size=3 pad=1\n"
                 "add from=a,b\n",
                 tc2, 2);
}

/* Same weights, input and dy on 1 and 2 threads: output, input gradient and parameter gradients are
 * bit-identical. */
static void check_threads_bitwise(const char *model, size_t n) {
    th_check_threads_bitwise(model, n, 2);
    th_check_threads_bitwise(model, n, 3); /* a team member past regions 0 and 1 */
}

static void test_conv_threads_bitwise(void **state) {
    (void)state;
    check_threads_bitwise("input c=8 h=17 w=23\nconv2d k=12 kh=3 kw=5 stride=3 dilation=2 groups=4 pad_top=2 "
                          "pad_bottom=0 pad_left=1 pad_right=3\n",
                          3);
    check_threads_bitwise("input c=5 h=7 w=9\nconv2d k=6 size=1\n", 3);
    check_threads_bitwise("input c=6 h=9 w=11\nconv2d k=6 size=3 pad=1 groups=6\n", 5);
    check_threads_bitwise("input c=20 h=9 w=9\nconv2d k=24 size=3 pad=same stride=2\n", 3);
    check_threads_bitwise("input c=1 h=19 w=21\nconv2d k=5 size=3 pad=1\n", 3);
    check_threads_bitwise("input c=16 h=9 w=19\nconv2d k=16 size=3 pad=1\n", 3);
    /* Winograd with several chunks (1600 tiles, 256-tile chunks): the weight gradient's team alternates the
     * shared V and D between regions 0 and 1 */
    check_threads_bitwise("input c=32 h=40 w=40\nconv2d k=32 size=3 pad=1 wgrad=algo\n", 4);
    check_threads_bitwise("input c=32 h=40 w=40\nconv2d k=32 size=3 pad=1\n", 4); /* blocked (wgrad=auto) */
    check_threads_bitwise("input c=4 h=7 w=7\nconv2d k=6 size=3 dilation=2 pad=3 groups=2 algo=direct\n", 3);
}

/* Running forward and backward twice on the same net gives bit-identical outputs and gradients (no state
 * leaks between runs through the workspace), for each algorithm. */
static void check_repeat_bitwise(const char *model, size_t n, size_t threads) {
    th_net t;
    th_build(&t, model, n, 99, threads);
    size_t ycount = n * t.out_count, np = cnn_net_num_params(t.net);
    float *y0 = malloc(ycount * sizeof(float)), *dy = malloc(ycount * sizeof(float));
    float *dx0 = malloc(n * t.in_count * sizeof(float));
    float **g0 = calloc(np, sizeof(float *));
    assert_true(y0 && dy && dx0 && g0);
    th_fill_uniform(dy, ycount, 6, -1, 1);
    for (int rep = 0; rep < 2; rep++) {
        assert_int_equal(cnn_net_forward(t.net, t.x, n, 1), CNN_OK);
        size_t got = 0;
        const float *y = cnn_net_output(t.net, &got);
        assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
        const float *dx = cnn_net_input_grad(t.net);
        if (rep == 0) {
            memcpy(y0, y, ycount * sizeof(float));
            memcpy(dx0, dx, n * t.in_count * sizeof(float));
        } else {
            assert_memory_equal(y0, y, ycount * sizeof(float));
            assert_memory_equal(dx0, dx, n * t.in_count * sizeof(float));
        }
        for (size_t i = 0; i < np; i++) {
            cnn_param p;
            assert_int_equal(cnn_net_param_at(t.net, i, &p), CNN_OK);
            if (!p.trainable) continue;
            if (rep == 0) {
                g0[i] = malloc(p.count * sizeof(float));
                assert_non_null(g0[i]);
                memcpy(g0[i], p.grad, p.count * sizeof(float));
            } else {
                assert_memory_equal(g0[i], p.grad, p.count * sizeof(float));
            }
        }
    }
    for (size_t i = 0; i < np; i++) free(g0[i]);
    free(g0);
    free(y0);
    free(dy);
    free(dx0);
    th_free(&t);
}

static void test_conv_repeat_bitwise(void **state) {
    (void)state;
    check_repeat_bitwise("input c=3 h=17 w=23\nconv2d k=8 size=3 pad=1 algo=direct\n", 3, 2);
    check_repeat_bitwise("input c=3 h=17 w=23\nconv2d k=8 size=3 pad=1 algo=im2col\n", 3, 2);
    check_repeat_bitwise("input c=16 h=9 w=9\nconv2d k=16 size=3 pad=1\n", 5, 2);
    check_repeat_bitwise("input c=8 h=9 w=9\nconv2d k=8 size=1\n", 3, 1);
}

/* The cases above run on the widest kernels the CPU has; a few again on the scalar SGEMM (CNN_ISA is read
 * when th_build creates its context). */
static void test_conv_scalar_isa(void **state) {
    (void)state;
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CNN_ISA", "scalar", 1);
    run_case("input c=8 h=17 w=23\n"
             "conv2d k=12 kh=3 kw=5 stride=3 dilation=2 groups=4 pad_top=2 pad_bottom=0 pad_left=1 pad_right=3\n",
             3, 2, mk(8, 17, 23, 12, 3, 5, 3, 3, 2, 0, 1, 3, 2, 2, 4, 1), 40);
    run_case("input c=5 h=7 w=9\nconv2d k=6 size=1\n", 3, 1, mk(5, 7, 9, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), 0);
    run_case("input c=6 h=9 w=11\nconv2d k=6 size=3 pad=1 groups=6\n", 3, 2, mk(6, 9, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1),
             40);
    check_threads_bitwise("input c=20 h=9 w=9\nconv2d k=24 size=3 pad=same stride=2\n", 3);
    run_case("input c=2 h=5 w=23\nconv2d k=3 size=5 pad=2 algo=direct\n", 2, 2,
             mk(2, 5, 23, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1), 40);
    run_case("input c=4 h=7 w=7\nconv2d k=6 size=3 dilation=2 pad_top=3 pad_bottom=1 pad_left=0 pad_right=4 "
             "groups=2 bias=0 algo=direct\n",
             3, 2, mk(4, 7, 7, 6, 3, 3, 1, 1, 3, 1, 0, 4, 2, 2, 2, 0), 40);
    run_case("input c=5 h=11 w=19\nconv2d k=7 size=3 pad=1 algo=winograd\n", 3, 2,
             mk(5, 11, 19, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
    run_case("input c=4 h=7 w=9\nconv2d k=5 size=3 pad_top=3 pad_bottom=0 pad_left=0 pad_right=2 bias=0 "
             "algo=winograd\n",
             2, 2, mk(4, 7, 9, 5, 3, 3, 1, 1, 3, 0, 0, 2, 1, 1, 1, 0), 40);
    check_winograd_vs_im2col("input c=64 h=20 w=19\nconv2d k=64 size=3 pad=1\n", 5);
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}

/* The weight gradient of `model` under CNN_ISA=isa (NULL: the widest), 1 thread, fixed data: the conv
 * weight's and bias's gradients into g (count floats). */
static void wgrad_under_isa(const char *model, size_t n, const char *isa, float *g, size_t count) {
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    if (isa) setenv("CNN_ISA", isa, 1);
    th_net t;
    th_build(&t, model, n, 4242, 1);
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
    float *dy = malloc(n * t.out_count * sizeof(float));
    assert_non_null(dy);
    th_fill_uniform(dy, n * t.out_count, 17, -1, 1);
    assert_int_equal(cnn_net_forward(t.net, t.x, n, 1), CNN_OK);
    assert_int_equal(cnn_net_backward(t.net, dy), CNN_OK);
    cnn_param p, pb;
    assert_int_equal(cnn_net_param_at(t.net, 0, &p), CNN_OK);
    assert_int_equal(cnn_net_param_at(t.net, 1, &pb), CNN_OK); /* the bias (summed as dy is packed) */
    assert_int_equal(p.count + pb.count, count);
    memcpy(g, p.grad, p.count * sizeof(float));
    memcpy(g + p.count, pb.grad, pb.count * sizeof(float));
    free(dy);
    th_free(&t);
}

/* wgrad=blocked (kernels/f32_conv_wgrad): against the float64 reference and finite differences over odd
 * shapes (output channels not a multiple of 16, so the last channel block is partial; more than one
 * k group; tap groups that cross input channels; stride, dilation, asymmetric padding, 1x1, a 7x7
 * stride-2 stem, pieces of a few output rows (a 70-wide output), several piece groups), bit-identical for
 * 1, 2 and 3 threads, and bit-identical on every ISA the CPU has (the kernels' FMA chains). */
static void test_conv_wgrad_blocked(void **state) {
    (void)state;
    run_case("input c=3 h=17 w=23\nconv2d k=8 size=3 pad=1 wgrad=blocked\n", 3, 1,
             mk(3, 17, 23, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 40);
    run_case("input c=5 h=11 w=13\nconv2d k=37 size=3 pad=1 wgrad=blocked\n", 2, 2,
             mk(5, 11, 13, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 60);
    run_case("input c=4 h=15 w=14\nconv2d k=70 kh=3 kw=5 stride_h=2 stride_w=1 dilation_h=1 dilation_w=2 pad_top=2 "
             "pad_bottom=0 pad_left=1 pad_right=3 bias=0 wgrad=blocked\n",
             2, 2, mk(4, 15, 14, 70, 3, 5, 2, 1, 2, 0, 1, 3, 1, 2, 1, 0), 60);
    run_case("input c=11 h=7 w=9\nconv2d k=17 size=1 wgrad=blocked\n", 3, 2, mk(11, 7, 9, 17, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
             60);
    run_case("input c=3 h=29 w=31\nconv2d k=20 size=7 stride=2 pad=3 wgrad=blocked\n", 2, 2,
             mk(3, 29, 31, 20, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1), 60);
    run_case("input c=2 h=9 w=140\nconv2d k=150 size=3 pad=1 wgrad=blocked\n", 2, 2,
             mk(2, 9, 140, 150, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 60);
    run_case("input c=16 h=6 w=6\nconv2d k=24 size=3 wgrad=blocked algo=winograd\n", 9, 2,
             mk(16, 6, 6, 24, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), 40);
    check_threads_bitwise("input c=5 h=11 w=13\nconv2d k=37 size=3 pad=1 wgrad=blocked\n", 3);
    check_threads_bitwise("input c=2 h=9 w=140\nconv2d k=150 size=3 pad=1 wgrad=blocked\n", 3);
    check_threads_bitwise("input c=64 h=14 w=14\nconv2d k=64 size=3 pad=1 wgrad=blocked\n", 20);
    check_repeat_bitwise("input c=5 h=11 w=13\nconv2d k=37 size=3 pad=1 wgrad=blocked\n", 3, 2);
    const char *models[] = {"input c=5 h=11 w=13\nconv2d k=37 size=3 pad=1 wgrad=blocked\n",
                            "input c=3 h=29 w=31\nconv2d k=20 size=7 stride=2 pad=3 wgrad=blocked\n",
                            "input c=2 h=9 w=140\nconv2d k=150 size=3 pad=1 wgrad=blocked\n"};
    const size_t counts[] = {37 * 5 * 9 + 37, 20 * 3 * 49 + 20, 150 * 2 * 9 + 150};
    const char *isas[] = {"scalar", "avx2", NULL};
    for (int m = 0; m < 3; m++) {
        float *g0 = malloc(counts[m] * sizeof(float)), *g1 = malloc(counts[m] * sizeof(float));
        assert_true(g0 && g1);
        wgrad_under_isa(models[m], 2, "scalar", g0, counts[m]);
        for (int i = 1; i < 3; i++) {
            wgrad_under_isa(models[m], 2, isas[i], g1, counts[m]);
            assert_memory_equal(g0, g1, counts[m] * sizeof(float));
        }
        free(g0);
        free(g1);
    }
}

/* input 5x5 = 0..24 row-major, filter [[1,0,-1]] x 3 rows, no bias: every output is
 * sum_rows (x[r][c] - x[r][c+2]) = 3 * (-2) = -6, exactly. */
static void test_conv_worked_example(void **state) {
    (void)state;
    th_net t;
    th_build(&t, "input c=1 h=5 w=5\nconv2d name=edge k=1 size=3 bias=0\n", 1, 1, 1);
    cnn_param w;
    assert_int_equal(cnn_net_param_find(t.net, "edge.weight", &w), CNN_OK);
    assert_int_equal(w.count, 9);
    assert_int_not_equal(cnn_net_param_find(t.net, "edge.bias", &w), CNN_OK);
    assert_int_equal(cnn_net_param_find(t.net, "edge.weight", &w), CNN_OK);
    static const float f[9] = {1, 0, -1, 1, 0, -1, 1, 0, -1};
    memcpy(w.data, f, sizeof f);
    for (int i = 0; i < 25; i++) t.x[i] = (float)i;
    assert_int_equal(cnn_net_forward(t.net, t.x, 1, 0), CNN_OK);
    size_t n = 0;
    const float *y = cnn_net_output(t.net, &n);
    assert_int_equal(n, 1);
    assert_int_equal(t.out.c, 1);
    assert_int_equal(t.out.h, 3);
    assert_int_equal(t.out.w, 3);
    for (int i = 0; i < 9; i++)
        if (y[i] != -6.0f) fail_msg("output %d is %.9g, expected -6 exactly", i, (double)y[i]);
    th_free(&t);
}

/* (The network rejects non-finite inputs, so the NaN goes into a weight.) A NaN tap of output channel 1
 * makes every output of channel 1 NaN, padded border included, and leaves channels 0 and 2 finite. */
static void test_conv_nan_propagates(void **state) {
    (void)state;
    const char *models[] = {"input c=2 h=6 w=7\nconv2d name=c k=3 size=3 pad=1\n",
                            "input c=2 h=6 w=7\nconv2d name=c k=3 size=1\n",
                            "input c=2 h=6 w=7\nconv2d name=c k=3 size=3 pad=1 algo=winograd\n",
                            "input c=2 h=6 w=7\nconv2d name=c k=3 size=3 pad=1 algo=im2col\n",
                            "input c=8 h=6 w=7\nconv2d name=c k=3 size=1\n"};
    for (int m = 0; m < 5; m++) {
        th_net t;
        th_build(&t, models[m], 2, 3, 2);
        cnn_param w;
        assert_int_equal(cnn_net_param_find(t.net, "c.weight", &w), CNN_OK);
        const size_t per_o = w.count / 3;
        w.data[1 * per_o + per_o / 2] = NAN;
        assert_int_equal(cnn_net_forward(t.net, t.x, 2, 0), CNN_OK);
        size_t n = 0;
        const float *y = cnn_net_output(t.net, &n);
        const size_t hw = t.out.h * t.out.w;
        for (size_t s = 0; s < 2; s++)
            for (size_t o = 0; o < 3; o++)
                for (size_t i = 0; i < hw; i++)
                    if ((isnan(y[(s * 3 + o) * hw + i]) != 0) != (o == 1))
                        fail_msg("model %d sample %zu channel %zu pixel %zu: %g", m, s, o, i,
                                 (double)y[(s * 3 + o) * hw + i]);
        th_free(&t);
    }
}

static void test_conv_params_info(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    const char *model = "input c=8 h=17 w=23\n"
                        "conv2d name=c1 k=12 kh=3 kw=5 stride=3 dilation=2 groups=4 pad_top=2 pad_left=1 pad_right=3\n"
                        "conv2d name=c2 k=6 size=1 bias=0\n";
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "t.cnn", &net), CNN_OK);
    cnn_param p;
    assert_int_equal(cnn_net_param_find(net, "c1.weight", &p), CNN_OK);
    assert_int_equal(p.ndim, 4);
    assert_int_equal(p.dims[0], 12);
    assert_int_equal(p.dims[1], 2);
    assert_int_equal(p.dims[2], 3);
    assert_int_equal(p.dims[3], 5);
    assert_int_equal(p.count, 12 * 2 * 3 * 5);
    assert_true(p.trainable);
    assert_int_equal(cnn_net_param_find(net, "c1.bias", &p), CNN_OK);
    assert_int_equal(p.ndim, 1);
    assert_int_equal(p.dims[0], 12);
    assert_int_equal(cnn_net_param_find(net, "c2.weight", &p), CNN_OK);
    assert_int_equal(p.dims[0], 6);
    assert_int_equal(p.dims[1], 12);
    assert_int_not_equal(cnn_net_param_find(net, "c2.bias", &p), CNN_OK);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_string_equal(info.type, "conv2d");
    /* OH = floor((17 + 2 + 0 - 4 - 1)/3) + 1 = 5, OW = floor((23 + 1 + 3 - 8 - 1)/3) + 1 = 7 */
    assert_int_equal(info.out.c, 12);
    assert_int_equal(info.out.h, 5);
    assert_int_equal(info.out.w, 7);
    assert_int_equal(info.params, 12 * 2 * 15 + 12);
    assert_int_equal(info.flops, (uint64_t)2 * 12 * 5 * 7 * 2 * 3 * 5);
    assert_string_equal(info.algorithm, "im2col+gemm");
    assert_int_equal(cnn_net_layer_info(net, 2, &info), CNN_OK);
    assert_int_equal(info.params, 6 * 12);
    assert_int_equal(info.flops, (uint64_t)2 * 6 * 5 * 7 * 12);
    assert_string_equal(info.algorithm, "gemm-1x1");
    cnn_net_free(net);
    /* automatic choices: depthwise (groups = C = K, stride 1 or 2) -> depthwise; few input channels per
     * group -> direct; otherwise im2col+gemm */
    const char *m2 = "input c=16 h=9 w=9\n"
                     "conv2d name=dw k=16 size=3 pad=1 groups=16\n"
                     "conv2d name=few k=8 size=3 pad=1 groups=4\n"
                     "conv2d name=many k=16 size=3 pad=1\n"
                     "conv2d name=wino k=16 size=3 pad=1\n"
                     "conv2d name=forced k=8 size=3 pad=1 groups=8 algo=im2col\n"
                     "conv2d name=s2 k=8 size=3 stride=2 groups=8\n";
    assert_int_equal(cnn_net_parse(ctx, m2, strlen(m2), "t.cnn", &net), CNN_OK);
    static const char *const want[] = {"depthwise", "direct", "im2col+gemm", "winograd-f2x2", "im2col+gemm",
                                       "depthwise"};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(cnn_net_layer_info(net, i + 1, &info), CNN_OK);
        assert_string_equal(info.algorithm, want[i]);
    }
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

/* Printing gives model text that parses to the same layers and prints identically again. */
static void check_round_trip(cnn_ctx *ctx, const char *model, const char *expect) {
    cnn_net *net = NULL, *net2 = NULL;
    char *text = NULL, *text2 = NULL;
    if (cnn_net_parse(ctx, model, strlen(model), "t.cnn", &net) != CNN_OK)
        fail_msg("parse failed: %s", cnn_ctx_last_error(ctx));
    assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
    if (expect && !strstr(text, expect)) fail_msg("printed text lacks '%s':\n%s", expect, text);
    if (cnn_net_parse(ctx, text, strlen(text), "t.cnn", &net2) != CNN_OK)
        fail_msg("printed text does not parse: %s\n%s", cnn_ctx_last_error(ctx), text);
    assert_int_equal(cnn_net_to_text(net2, &text2), CNN_OK);
    assert_string_equal(text, text2);
    assert_int_equal(cnn_net_param_count(net), cnn_net_param_count(net2));
    for (size_t i = 0; i < cnn_net_num_layers(net); i++) {
        cnn_layer_info a, b;
        assert_int_equal(cnn_net_layer_info(net, i, &a), CNN_OK);
        assert_int_equal(cnn_net_layer_info(net2, i, &b), CNN_OK);
        assert_int_equal(a.out.c, b.out.c);
        assert_int_equal(a.out.h, b.out.h);
        assert_int_equal(a.out.w, b.out.w);
        assert_int_equal(a.flops, b.flops);
    }
    cnn_free(ctx, text);
    cnn_free(ctx, text2);
    cnn_net_free(net);
    cnn_net_free(net2);
}

static void test_conv_print_round_trip(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    check_round_trip(ctx, "input c=3 h=28 w=28\nconv2d k=8 size=3\n", "k=8 kh=3 kw=3");
    check_round_trip(ctx, "input c=3 h=28 w=28\nconv2d k=8 size=3 pad=1 stride=2\n", "k=8 kh=3 kw=3 stride=2 pad=1");
    check_round_trip(ctx,
                     "input c=8 h=17 w=23\nconv2d k=12 kh=3 kw=5 stride=3 dilation=2 groups=4 pad_top=2 pad_left=1 "
                     "pad_right=3\n",
                     "k=12 kh=3 kw=5 stride=3 pad_top=2 pad_bottom=0 pad_left=1 pad_right=3 dilation=2 groups=4");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 size=4 stride=2 pad=same bias=0\n",
                     "k=4 kh=4 kw=4 stride=2 pad=same bias=0");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 kh=2 kw=3 stride_h=2 pad_h=1 pad_w=2 dilation_w=2\n",
                     "stride_h=2 stride_w=1 pad_h=1 pad_w=2 dilation_h=1 dilation_w=2");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 size=3 algo=direct\n", "k=4 kh=3 kw=3 algo=direct");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 size=3 algo=auto\n", "k=4 kh=3 kw=3\n");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 size=3 wgrad=blocked\n", "k=4 kh=3 kw=3 wgrad=blocked");
    check_round_trip(ctx, "input c=3 h=17 w=23\nconv2d k=4 size=3 algo=stem wgrad=algo\n", "algo=stem wgrad=algo");
    cnn_ctx_free(ctx);
}

static void test_conv_bad_params(void **state) {
    (void)state;
    const cnn_status F = CNN_ERR_FORMAT, S = CNN_ERR_SHAPE;
    th_expect_error("input c=1 h=5 w=5\nconv2d size=3\n", F, "needs k=");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=0 size=3\n", F, "test.cnn:2:10");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4\n", F, "kernel size");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 kh=3\n", F, "kh= given without kw=");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 kh=3\n", F, "size= and kh= both given");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=0\n", F, "size");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 stride=0\n", F, "stride");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 stride=2 stride_h=1\n", F, "both given");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 dilation=0\n", F, "dilation");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 pad=abc\n", F, "expected an integer or 'same'");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 pad=-1\n", F, "pad");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 pad=1 pad_top=2\n", F, "pad= and pad_top= both given");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 pad=same pad_w=1\n", F, "both given");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 pad_h=1 pad_bottom=2\n", F, "both given");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 bias=maybe\n", F, "bias");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 groups=0\n", F, "groups");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 wgrad=fast\n", F, "wgrad");
    th_expect_error("input c=2 h=5 w=5\nconv2d k=4 size=3 groups=2 wgrad=blocked\n", S, "wgrad=blocked needs groups=1");
    /* k not divisible by groups (known at parse time) */
    th_expect_error("input c=8 h=5 w=5\nconv2d k=6 size=3 groups=4\n", F, "k=6 output channels are not divisible by groups=4");
    /* input channels not divisible by groups */
    th_expect_error("input c=6 h=5 w=5\nconv2d k=4 size=3 groups=4\n", S, "input has 6 channels, not divisible by groups=4");
    /* kernel larger than the (padded) input */
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=7\n", S, "larger than the padded input height 5");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=8 pad=1\n", S, "kernel height 8 (kh=8, dilation 1) is larger than the padded input height 7");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 kh=1 kw=9 pad_w=1\n", S, "larger than the padded input width 7");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 dilation=3\n", S, "kernel height 7");
    /* the message names the layer */
    th_expect_error("input c=1 h=5 w=5\nconv2d name=big k=4 size=9\n", S, "big");
    /* unknown key: file:line:col of the key */
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 strid=2\n", F, "test.cnn:2:19");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 strid=2\n", F, "unknown key 'strid'");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 stride=2 algo=direct\n", S, "algo=direct needs stride 1");
    th_expect_error("input c=1 h=5 w=5\nconv2d k=4 size=3 algo=fast\n", F, "algo");
    th_expect_error("input c=4 h=5 w=5\nconv2d k=4 size=3 groups=2 algo=winograd\n", S, "algo=winograd needs");
    th_expect_error("input c=4 h=5 w=5\nconv2d k=4 size=5 algo=winograd\n", S, "algo=winograd needs");
    th_expect_error("input c=4 h=9 w=9\nconv2d k=4 size=3 dilation=2 algo=winograd\n", S, "algo=winograd needs");
    /* sizes that overflow */
    th_expect_error("input c=4096 h=64 w=64\nconv2d k=16777216 size=65536 pad=40000\n", S, "too many elements");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_basic_3x3),
        cmocka_unit_test(test_conv_stride_dilation_groups_asym_pad),
        cmocka_unit_test(test_conv_1x1),
        cmocka_unit_test(test_conv_rectangular),
        cmocka_unit_test(test_conv_im2col_bwd_chunks),
        cmocka_unit_test(test_im2col_kernels), cmocka_unit_test(test_plane_kernels),
        cmocka_unit_test(test_conv_depthwise),
        cmocka_unit_test(test_conv_pad_same),
        cmocka_unit_test(test_conv_no_bias),
        cmocka_unit_test(test_conv_direct),
        cmocka_unit_test(test_conv_winograd),
        cmocka_unit_test(test_conv_winograd_large),
        cmocka_unit_test(test_conv_repeat_bitwise),
        cmocka_unit_test(test_conv_large_gemm),
        cmocka_unit_test(test_conv_dx_accumulate),
        cmocka_unit_test(test_conv_threads_bitwise),
        cmocka_unit_test(test_conv_scalar_isa),
        cmocka_unit_test(test_conv_wgrad_blocked),
        cmocka_unit_test(test_conv_worked_example),
        cmocka_unit_test(test_conv_nan_propagates),
        cmocka_unit_test(test_conv_params_info),
        cmocka_unit_test(test_conv_print_round_trip),
        cmocka_unit_test(test_conv_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
