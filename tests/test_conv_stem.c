/* test_conv_stem.c — conv2d's "stem" algorithm (small-channel inputs, kernels/f32_conv_stem) against the
 * float64 reference ref_conv2d_forward (tests/ref/ref_conv.c): forward (training and inference) and, through th_check's
 * central differences, the input, weight and bias gradients. Shapes reach every tile of the AVX2
 * kernels: output channels not a multiple of 6 (forward tiles) or 4 (weight-gradient tiles), taps not a
 * multiple of 3, output widths of 8, 16, 15, 33 and 1 (full, one-vector and masked tails), odd H/W,
 * strides 1, 2, 3 and mixed, asymmetric and 'same' padding, windows lying wholly in the padding, C = 1..5,
 * batch 1 and 3, 1 and 2 threads, an accumulated input gradient (two consumers) and a batchnorm folded
 * into the stem conv for inference (ResNet-18's conv1 + bn1). Every case runs
 * on the widest ISA and again with CNN_ISA=scalar (and CNN_ISA=avx2 where the CPU has AVX-512); 1 vs 2
 * threads bit-identical; the automatic choice. The AVX-512 kernels are also called directly against the
 * AVX2 ones on random planes: bit-identical outputs and sums, nothing written past a row's ow columns.
 *
 * Tolerances: forward 1e-5 relative to max(max|y|, 1); gradients 1e-4 relative to max(max|fd|, 1e-2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref/ref_conv.h"
#include "ref/ref_dense.h"
#include "kernels/kernels.h"

typedef struct conv_case {
    ref_conv2d p;
    int bias;
} conv_case;

static void ref_conv(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const conv_case *c = user;
    ref_conv2d_forward(&c->p, n, x, params[0], c->bias ? params[1] : NULL, y);
}

/* geometry: c h w k kh kw sh sw pt pb pl pr (dilation 1, groups 1) */
static conv_case mk(size_t c, size_t h, size_t w, size_t k, size_t kh, size_t kw, size_t sh, size_t sw, size_t pt,
                    size_t pb, size_t pl, size_t pr, int bias) {
    conv_case cc = {{c, h, w, k, kh, kw, sh, sw, pt, pb, pl, pr, 1, 1, 1}, bias};
    return cc;
}

/* Build `model` (its conv2d is layer 1), check the algorithm it runs, the output shape, forward and all
 * gradients. */
static void run_case1(const char *model, const char *algorithm, size_t n, size_t threads, conv_case cc,
                      size_t fd_points) {
    th_net t;
    th_build(&t, model, n, 2000 + n * 10 + threads, threads);
    const ref_conv2d *p = &cc.p;
    assert_int_equal(t.out.c, p->k);
    assert_int_equal(t.out.h, ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh));
    assert_int_equal(t.out.w, ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw));
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, algorithm);
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = fd_points};
    th_check(&t, ref_conv, &cc, 1, tol);
    th_check(&t, ref_conv, &cc, 0, tol);
    th_free(&t);
}

/* run_case1 as given (an automatic stem's weight gradient is conv2d's blocked one) and with wgrad=algo
 * (the stem's own weight-gradient kernels). */
static void run_case(const char *model, const char *algorithm, size_t n, size_t threads, conv_case cc,
                     size_t fd_points) {
    run_case1(model, algorithm, n, threads, cc, fd_points);
    char buf[512];
    const size_t len = strlen(model);
    assert_true(len > 0 && model[len - 1] == '\n');
    const int w = snprintf(buf, sizeof buf, "%.*s wgrad=algo\n", (int)(len - 1), model);
    assert_true(w > 0 && (size_t)w < sizeof buf);
    run_case1(buf, algorithm, n, threads, cc, fd_points);
}

/* Same weights, input and dy on 1 and 2 threads: output, input gradient and parameter gradients are
 * bit-identical. */
static void check_threads_bitwise(const char *model, size_t n) { th_check_threads_bitwise(model, n, 2); }

static void stem_cases(void) {
    /* ResNet-like 7x7/2 pad 3: 19 channels (3 tiles of 6 + 1; 4 tiles of 4 + 3), 147 taps, OW 15 */
    run_case("input c=3 h=23 w=29\nconv2d k=19 size=7 stride=2 pad=3\n", "stem", 2, 2,
             mk(3, 23, 29, 19, 7, 7, 2, 2, 3, 3, 3, 3, 1), 40);
    /* M1's first layer: 1 -> 32, 3x3 pad 1, OW 28 (16 + a masked 12), batch 3 */
    run_case("input c=1 h=28 w=28\nconv2d k=32 size=3 pad=1\n", "stem", 3, 2,
             mk(1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1), 40);
    /* rectangular kernel, stride 1 x 3, asymmetric padding, no bias, 2 channels, OW 13 */
    run_case("input c=2 h=11 w=37\nconv2d k=7 kh=3 kw=5 stride_h=1 stride_w=3 pad_top=2 pad_bottom=0 pad_left=1 "
             "pad_right=3 bias=0 algo=stem\n",
             "stem", 3, 1, mk(2, 11, 37, 7, 3, 5, 1, 3, 2, 0, 1, 3, 0), 40);
    /* even kernel with pad=same and stride 2 (extra padding bottom/right), 4 channels, OW 9 */
    run_case("input c=4 h=9 w=17\nconv2d k=13 size=4 stride=2 pad=same\n", "stem", 2, 2,
             mk(4, 9, 17, 13, 4, 4, 2, 2, 1, 2, 1, 2, 1), 40);
    /* output widths 16, 8 and 33 (full tiles, one vector, two tiles + a 1-column tail), 1x1 and 1x2 */
    run_case("input c=1 h=5 w=16\nconv2d k=6 size=1 algo=stem\n", "stem", 2, 1, mk(1, 5, 16, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1),
             0);
    run_case("input c=3 h=3 w=8\nconv2d k=5 size=1 algo=stem\n", "stem", 1, 2, mk(3, 3, 8, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1),
             0);
    run_case("input c=2 h=4 w=34\nconv2d k=9 kh=1 kw=2 algo=stem\n", "stem", 2, 2,
             mk(2, 4, 34, 9, 1, 2, 1, 1, 0, 0, 0, 0, 1), 40);
    /* windows wholly in the padding (pad 3 > extent), output 4x4 from 4x5 */
    run_case("input c=2 h=4 w=5\nconv2d k=9 size=3 stride=2 pad=3\n", "stem", 3, 2,
             mk(2, 4, 5, 9, 3, 3, 2, 2, 3, 3, 3, 3, 1), 40);
    /* forced with 5 channels and one output channel, 1x1 output */
    run_case("input c=5 h=7 w=6\nconv2d k=1 size=5 stride=3 algo=stem\n", "stem", 3, 1,
             mk(5, 7, 6, 1, 5, 5, 3, 3, 0, 0, 0, 0, 1), 0);
    /* many output rows (several forward blocks of 8, weight chunks), OW 45 */
    run_case("input c=3 h=41 w=90\nconv2d k=10 size=3 stride=2 pad=1\n", "stem", 2, 2,
             mk(3, 41, 90, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1), 20);
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

static void accumulate_cases(void) {
    th_net t;
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 40};
    two_conv tc2 = {mk(3, 9, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1), mk(3, 9, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1)};
    th_build(&t, "input name=in c=3 h=9 w=8\nconv2d name=a k=8 size=3 stride=2 pad=1\nconv2d name=b from=in k=8 "
                 "size=3 stride=2 pad=1\nadd from=a,b\n",
             2, 78, 1);
    th_check(&t, ref_two_conv, &tc2, 1, tol);
    th_free(&t);
}

static void bitwise_cases(void) {
    check_threads_bitwise("input c=3 h=37 w=41\nconv2d k=20 size=7 stride=2 pad=3\n", 3);
    check_threads_bitwise("input c=3 h=37 w=41\nconv2d k=20 size=7 stride=2 pad=3 wgrad=algo\n", 3);
    check_threads_bitwise("input c=1 h=28 w=28\nconv2d k=32 size=3 pad=1\n", 5);
    check_threads_bitwise("input c=2 h=10 w=35\nconv2d k=9 kh=3 kw=4 stride_h=2 stride_w=3 pad=1\n", 3);
}

static void with_isa(const char *isa, void (*fn)(void)) {
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CNN_ISA", isa, 1);
    fn();
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}
static void with_scalar(void (*fn)(void)) { with_isa("scalar", fn); }


/* ---- the AVX-512 kernels against the AVX2 ones, called directly (f32_conv_stem/avx512.c promises
 * bit-identical results). Geometries reach every tile: output widths 1..130 (1..4 vectors of 16 with a
 * masked last one; 8-column groups with a masked tail), kb 1..13 (channel blocks of 6 and pairs of 2 with
 * an odd one), taps not a multiple of 12, 6 or 3 and more than the 512 of the offset table. Planes,
 * filter, dy and the double sums start random; y has guard values around each row's ow columns. */
typedef struct stem_kcase {
    size_t c, kh, kw, sh, sw, ow, nrows, kb;
} stem_kcase;

static void stem_kernel_case(const stem_kcase *kc, unsigned seed) {
    const size_t taps = kc->c * kc->kh * kc->kw, ldp = (kc->ow + 15) / 16 * 16 + (kc->kw - 1) / kc->sw + 3;
    const size_t prows = (kc->nrows - 1) * kc->sh + kc->kh, pstride = prows * ldp + 5;
    const size_t np = kc->c * kc->sw * pstride, kp = (kc->kb + 5) / 6 * 6;
    const cnn_stem_geom g = {.c = kc->c, .kh = kc->kh, .kw = kc->kw, .sh = kc->sh, .sw = kc->sw, .ow = kc->ow,
                             .ldp = ldp, .pstride = pstride};
    const size_t G = 16, ldy = kc->nrows * kc->ow + 2 * G, ny = kc->kb * ldy;
    float *xp = malloc(np * sizeof(float)), *wp = malloc(kp * taps * sizeof(float));
    float *bias = malloc(kc->kb * sizeof(float)), *dy = malloc(ny * sizeof(float));
    float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
    double *a1 = malloc(kc->kb * taps * sizeof(double)), *a2 = malloc(kc->kb * taps * sizeof(double));
    double *b1 = malloc(kc->kb * sizeof(double)), *b2 = malloc(kc->kb * sizeof(double));
    assert_true(xp && wp && bias && dy && y1 && y2 && a1 && a2 && b1 && b2);
    th_fill_uniform(xp, np, seed, -1, 1);
    th_fill_uniform(wp, kp * taps, seed + 1, -1, 1);
    th_fill_uniform(bias, kc->kb, seed + 2, -1, 1);
    th_fill_uniform(dy, ny, seed + 3, -1, 1);
    th_fill_uniform(y1, ny, seed + 4, -1, 1);
    memcpy(y2, y1, ny * sizeof(float));
    for (size_t i = 0; i < kc->kb * taps; i++) a1[i] = a2[i] = (double)(i % 7) - 3.25;
    for (size_t i = 0; i < kc->kb; i++) b1[i] = b2[i] = 0.5 * (double)i;
    /* rows of y start at G in each channel's stretch; the guard floats before and after stay as they were */
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        cnn_f32_conv_stem_fwd_avx2(&g, xp, kc->nrows, wp, kc->kb, with_bias ? bias : NULL, y1 + G, ldy);
        cnn_f32_conv_stem_fwd_avx512(&g, xp, kc->nrows, wp, kc->kb, with_bias ? bias : NULL, y2 + G, ldy);
        assert_memory_equal(y1, y2, ny * sizeof(float));
    }
    float *yref = malloc(ny * sizeof(float));
    assert_non_null(yref);
    th_fill_uniform(yref, ny, seed + 4, -1, 1); /* the untouched guard values */
    for (size_t k = 0; k < kc->kb; k++) {
        assert_memory_equal(y2 + k * ldy, yref + k * ldy, G * sizeof(float));
        assert_memory_equal(y2 + k * ldy + G + kc->nrows * kc->ow, yref + k * ldy + G + kc->nrows * kc->ow,
                            G * sizeof(float));
        /* and the outputs are not the guard values (the kernel wrote them) */
        assert_true(memcmp(y2 + k * ldy + G, yref + k * ldy + G, kc->nrows * kc->ow * sizeof(float)) != 0);
    }
    free(yref);
    cnn_f32_conv_stem_wgrad_avx2(&g, xp, kc->nrows, dy + G, ldy, kc->kb, a1, b1);
    cnn_f32_conv_stem_wgrad_avx512(&g, xp, kc->nrows, dy + G, ldy, kc->kb, a2, b2);
    assert_memory_equal(a1, a2, kc->kb * taps * sizeof(double));
    assert_memory_equal(b1, b2, kc->kb * sizeof(double));
    cnn_f32_conv_stem_wgrad_avx512(&g, xp, kc->nrows, dy + G, ldy, kc->kb, a2, NULL); /* no bias sums */
    cnn_f32_conv_stem_wgrad_avx2(&g, xp, kc->nrows, dy + G, ldy, kc->kb, a1, NULL);
    assert_memory_equal(a1, a2, kc->kb * taps * sizeof(double));
    assert_memory_equal(b1, b2, kc->kb * sizeof(double));
    free(xp), free(wp), free(bias), free(dy), free(y1), free(y2), free(a1), free(a2), free(b1), free(b2);
}

static void test_stem_kernels_avx512(void **state) {
    (void)state;
    if (cnn_cpu_isa() < CNN_ISA_AVX512) skip();
    static const stem_kcase cases[] = {
        {3, 7, 7, 2, 2, 112, 3, 13}, /* ResNet's stem: 147 taps, 64 + 48 columns */
        {1, 3, 3, 1, 1, 28, 4, 32},  /* M1's first layer */
        {2, 3, 5, 1, 3, 13, 2, 7},   {4, 4, 4, 2, 2, 9, 3, 11}, {1, 1, 1, 1, 1, 1, 5, 1},
        {3, 1, 1, 1, 1, 8, 2, 5},    {2, 1, 2, 1, 1, 34, 2, 9}, {5, 5, 5, 3, 3, 2, 3, 4},
        {1, 2, 3, 1, 1, 64, 1, 6},   {2, 3, 3, 2, 1, 65, 2, 3}, {3, 3, 3, 1, 2, 130, 2, 2},
        {1, 3, 3, 1, 1, 17, 1, 12},  {3, 2, 2, 1, 1, 63, 2, 8}, {4, 11, 12, 1, 1, 7, 2, 5}, /* 528 taps */
        {1, 4, 4, 1, 1, 15, 3, 10},  {2, 2, 3, 2, 2, 16, 2, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) stem_kernel_case(&cases[i], 100 + (unsigned)i * 7);
}

static void test_stem(void **state) {
    (void)state;
    stem_cases();
}
static void test_stem_scalar(void **state) {
    (void)state;
    with_scalar(stem_cases);
}
static void test_stem_avx2(void **state) { /* the AVX2 kernels where the widest ISA is AVX-512 */
    (void)state;
    if (cnn_cpu_isa() < CNN_ISA_AVX512) skip();
    with_isa("avx2", stem_cases);
    with_isa("avx2", bitwise_cases);
}
static void test_accumulate(void **state) {
    (void)state;
    accumulate_cases();
    with_scalar(accumulate_cases);
}
static void test_threads_bitwise(void **state) {
    (void)state;
    bitwise_cases();
    with_scalar(bitwise_cases);
}

/* conv (stem, no bias) + batchnorm compiled for inference: the batchnorm is folded into the stem conv's
 * inference weight block (ResNet-18's conv1 + bn1). params: conv weight, bn weight, bn bias, running_mean,
 * running_var. */
static const conv_case FOLD_CASE = {{3, 13, 11, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1}, 0};
static void ref_conv_bn(void *user, size_t n, const double *x, const double *const *params, double *y,
                        int training) {
    (void)user;
    const ref_conv2d *p = &FOLD_CASE.p;
    const size_t oh = ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh);
    const size_t ow = ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw);
    double *t = malloc(n * p->k * oh * ow * sizeof *t);
    if (!t) fail_msg("out of memory");
    ref_conv2d_forward(p, n, x, params[0], NULL, t);
    ref_batchnorm_forward(n, p->k, oh * ow, t, params[1], params[2], params[3], params[4], 1e-5, training, y);
    free(t);
}

static void fold_case(void) {
    for (size_t threads = 1; threads <= 2; threads++) {
        th_net t;
        th_build(&t, "input c=3 h=13 w=11\nconv2d k=10 size=3 stride=2 pad=1 bias=0\nbatchnorm\nflatten\n", 3,
                 300 + threads, threads);
        assert_int_equal(cnn_net_compile(t.net, 3, 0), CNN_OK);
        cnn_layer_info info;
        assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
        assert_string_equal(info.algorithm, "stem");
        assert_int_equal(cnn_net_layer_info(t.net, 2, &info), CNN_OK);
        assert_string_equal(info.algorithm, "folded into the conv");
        th_tolerance tol = {.forward = 1e-5};
        th_check(&t, ref_conv_bn, NULL, 0, tol);
        th_free(&t);
    }
}

static void test_fold(void **state) {
    (void)state;
    fold_case();
    with_scalar(fold_case);
}

/* The automatic choice: stem for 1..4 input channels, >= 8 output channels, groups 1, dilation 1. */
static void test_auto_choice(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    const char *m = "input c=3 h=32 w=32\n"
                    "conv2d name=stem k=64 size=7 stride=2 pad=3\n"
                    "conv2d name=few k=16 size=3 pad=1 groups=2\n";
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, m, strlen(m), "t.cnn", &net), CNN_OK);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "stem");
    cnn_net_free(net);
    const char *m2 = "input c=1 h=28 w=28\nconv2d k=32 size=3 pad=1\nconv2d k=4 size=3\n";
    assert_int_equal(cnn_net_parse(ctx, m2, strlen(m2), "t.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "stem");
    cnn_net_free(net);
    const char *m4 = "input c=4 h=9 w=9\nconv2d k=5 size=3 stride=2\n";
    assert_int_equal(cnn_net_parse(ctx, m4, strlen(m4), "t.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_layer_info(net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "im2col+gemm"); /* k = 5 < 8 */
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    th_expect_error("input c=4 h=9 w=9\nconv2d k=8 size=3 groups=2 algo=stem\n", CNN_ERR_SHAPE,
                    "algo=stem needs groups=1 and dilation 1");
    th_expect_error("input c=4 h=9 w=9\nconv2d k=8 size=3 dilation=2 algo=stem\n", CNN_ERR_SHAPE, "algo=stem");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stem),
        cmocka_unit_test(test_stem_scalar),
        cmocka_unit_test(test_stem_avx2),
        cmocka_unit_test(test_stem_kernels_avx512),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_auto_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
