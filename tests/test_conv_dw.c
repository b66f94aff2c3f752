/* test_conv_dw.c — conv2d's "depthwise" algorithm (groups = C = K, kernels/f32_conv_dw).
 *
 * Kernels: every kernel of every ISA the CPU has (avx512, avx2, scalar) called directly on random planes of random
 * geometry (kernel 1..5 per side, 3x3 in half the cases, strides 1, 2 and 3 (3: the AVX2 entry points run
 * the scalar code), paddings 0 .. k-1 on each side independently, widths 1..70 so that every row has
 * masked left/right edge vectors and tails, heights 1..40), against a float64 reference written from the
 * definition here (forward as a gather, the input gradient as a scatter, the weight gradient as a sum over
 * outputs), with NaN guard zones around every plane and NaN in the input elements no output reads (a kernel
 * writing outside its plane or letting an unread element reach a sum fails) and with accumulate on and off. Tolerances: forward and input gradient 1e-5 absolute (inputs in
 * [-1, 1], at most 25 taps), weight gradient 2e-6 * (number of outputs) absolute.
 * Layer: forward (training and inference) against ref_conv2d_forward (tests/ref) and, through th_check's
 * central differences in float64, the input, weight and bias gradients, for 3x3 stride 1 and 2, padding
 * 0, 1, 2, asymmetric and 'same', odd channel counts, widths 1 .. 70, 5x5 and 7x7 and a 3x5 kernel, on the
 * widest ISA and with CNN_ISA=scalar; an accumulated input gradient (two consumers); a batchnorm folded
 * into a depthwise conv for inference; 1 vs 2 threads bit-identical (output, input and weight gradients);
 * the automatic choice and the errors of a forced algo=depthwise. Layer tolerances: forward 1e-5 relative
 * to max(max|y|, 1); gradients 1e-4 relative to max(max|fd|, 1e-2) (as test_conv_stem.c). */
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
#include "kernels/kernels.h"
#include "ref/ref_conv.h"
#include "ref/ref_dense.h"

/* ---- kernels against a float64 reference ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}
static size_t urange(size_t n) { return (size_t)((urand() + 1.0) * 0.5 * (double)n) % n; }

/* input element (iy, ix) of output (oy, ox), tap (i, j), or -1 when it is padding */
static ptrdiff_t in_index(const cnn_dw_geom *g, size_t oy, size_t ox, size_t i, size_t j) {
    const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride + i) - g->pad_top;
    const ptrdiff_t ix = (ptrdiff_t)(ox * g->stride + j) - g->pad_left;
    if (iy < 0 || ix < 0 || iy >= (ptrdiff_t)g->ih || ix >= (ptrdiff_t)g->iw) return -1;
    return iy * (ptrdiff_t)g->iw + ix;
}

static void ref_fwd(const cnn_dw_geom *g, const float *x, const float *w, double b, double *y) {
    for (size_t oy = 0; oy < g->oh; oy++)
        for (size_t ox = 0; ox < g->ow; ox++) {
            double s = b;
            for (size_t i = 0; i < g->kh; i++)
                for (size_t j = 0; j < g->kw; j++) {
                    const ptrdiff_t e = in_index(g, oy, ox, i, j);
                    if (e >= 0) s += (double)w[i * g->kw + j] * x[e];
                }
            y[oy * g->ow + ox] = s;
        }
}

/* dx as a scatter of every output's taps (the kernels gather) */
static void ref_bwd(const cnn_dw_geom *g, const float *dy, const float *w, double *dx) {
    memset(dx, 0, g->ih * g->iw * sizeof *dx);
    for (size_t oy = 0; oy < g->oh; oy++)
        for (size_t ox = 0; ox < g->ow; ox++)
            for (size_t i = 0; i < g->kh; i++)
                for (size_t j = 0; j < g->kw; j++) {
                    const ptrdiff_t e = in_index(g, oy, ox, i, j);
                    if (e >= 0) dx[e] += (double)w[i * g->kw + j] * dy[oy * g->ow + ox];
                }
}

static void ref_wgrad(const cnn_dw_geom *g, const float *x, const float *dy, double *out) {
    memset(out, 0, (g->kh * g->kw + 1) * sizeof *out);
    for (size_t oy = 0; oy < g->oh; oy++)
        for (size_t ox = 0; ox < g->ow; ox++) {
            const double d = dy[oy * g->ow + ox];
            out[g->kh * g->kw] += d;
            for (size_t i = 0; i < g->kh; i++)
                for (size_t j = 0; j < g->kw; j++) {
                    const ptrdiff_t e = in_index(g, oy, ox, i, j);
                    if (e >= 0) out[i * g->kw + j] += d * x[e];
                }
        }
}

#define GUARD 40
/* a plane of n floats between two NaN guard zones */
static float *guarded(size_t n) {
    float *p = malloc((n + 2 * GUARD) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n + 2 * GUARD; i++) p[i] = NAN;
    return p + GUARD;
}
static void check_guards(const float *p, size_t n, const char *what) {
    for (size_t i = 0; i < GUARD; i++)
        if (!isnan(p[-1 - (ptrdiff_t)i]) || !isnan(p[n + i])) fail_msg("%s wrote outside its plane", what);
}
static void unguard(float *p) { free(p - GUARD); }

static void fail_geom(const char *what, const char *isa, const cnn_dw_geom *g, double err, int acc) {
    fail_msg("%s (%s): error %g, in %zux%zu out %zux%zu kernel %zux%zu stride %zu pad %td,%td accumulate %d",
             what, isa, err, g->ih, g->iw, g->oh, g->ow, g->kh, g->kw, g->stride, g->pad_top, g->pad_left, acc);
}

/* the larger error; NaN once either is NaN */
static double worse(double e, double d) { return isnan(e) || isnan(d) ? NAN : d > e ? d : e; }

static __attribute__((noinline)) double *dalloc(size_t n) {
    double *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

typedef struct dw_isa {
    const char *name;
    cnn_conv_dw_fwd_fn fwd;
    cnn_conv_dw_bwd_fn bwd;
    cnn_conv_dw_wgrad_fn wgrad;
} dw_isa;

static void kernel_case(const dw_isa *k, const cnn_dw_geom *g, int acc, int bias) {
    const size_t nx = g->ih * g->iw, ny = g->oh * g->ow, taps = g->kh * g->kw;
    float *x = guarded(nx), *y = guarded(ny), *dx = guarded(nx), w[CNN_DW_MAX_K * CNN_DW_MAX_K];
    double *ry = dalloc(ny), *rdx = dalloc(nx), ro[CNN_DW_MAX_K * CNN_DW_MAX_K + 1];
    for (size_t i = 0; i < nx; i++) x[i] = (float)urand();
    /* input elements that no output reads (stride 2 and 3 skip some at the bottom / right) are NaN: a
     * kernel that lets them reach a sum (e.g. through the lanes past ow) fails */
    {
        unsigned char *used = calloc(nx ? nx : 1, 1);
        assert_non_null(used);
        for (size_t oy = 0; oy < g->oh; oy++)
            for (size_t ox = 0; ox < g->ow; ox++)
                for (size_t i = 0; i < g->kh; i++)
                    for (size_t j = 0; j < g->kw; j++) {
                        const ptrdiff_t e = in_index(g, oy, ox, i, j);
                        if (e >= 0) used[e] = 1;
                    }
        for (size_t i = 0; i < nx; i++)
            if (!used[i]) x[i] = NAN;
        free(used);
    }
    for (size_t t = 0; t < taps; t++) w[t] = (float)urand();
    const float b = (float)urand(), y0 = (float)urand(), dx0 = (float)urand();
    /* forward */
    for (size_t i = 0; i < ny; i++) y[i] = acc ? y0 : NAN;
    k->fwd(g, x, w, b, acc, y);
    check_guards(y, ny, "fwd");
    ref_fwd(g, x, w, acc ? y0 : b, ry);
    double e = 0.0;
    for (size_t i = 0; i < ny; i++) {
        const double d = fabs(y[i] - ry[i]);
        e = worse(e, d);
    }
    if (!(e <= 1e-5)) fail_geom("fwd", k->name, g, e, acc);
    /* input gradient, dy = new random values in y's plane */
    for (size_t i = 0; i < ny; i++) y[i] = (float)urand();
    for (size_t i = 0; i < nx; i++) dx[i] = acc ? dx0 : NAN;
    k->bwd(g, y, w, acc, dx);
    check_guards(dx, nx, "bwd");
    ref_bwd(g, y, w, rdx);
    e = 0.0;
    for (size_t i = 0; i < nx; i++) {
        const double d = fabs(dx[i] - (rdx[i] + (acc ? dx0 : 0.0)));
        e = worse(e, d);
    }
    if (!(e <= 1e-5)) fail_geom("bwd", k->name, g, e, acc);
    /* weight gradient (the guard zones and the unused elements of x are NaN) */
    float out[CNN_DW_MAX_K * CNN_DW_MAX_K + 1];
    out[taps] = -12345.0f;
    k->wgrad(g, x, y, bias, out);
    ref_wgrad(g, x, y, ro);
    e = 0.0;
    for (size_t t = 0; t < taps + (size_t)(bias != 0); t++) {
        const double d = fabs(out[t] - ro[t]);
        e = worse(e, d);
    }
    if (!bias && out[taps] != -12345.0f) fail_geom("wgrad wrote the bias slot", k->name, g, 0, 0);
    if (!(e <= 2e-6 * (double)(ny + 1))) fail_geom("wgrad", k->name, g, e, bias);
    unguard(x);
    unguard(y);
    unguard(dx);
    free(ry);
    free(rdx);
}

static size_t n_isas(dw_isa *k) {
    k[0] = (dw_isa){"scalar", cnn_f32_conv_dw_fwd_scalar, cnn_f32_conv_dw_bwd_scalar, cnn_f32_conv_dw_wgrad_scalar};
    if (cnn_cpu_isa() < CNN_ISA_AVX2) return 1;
    k[1] = (dw_isa){"avx2", cnn_f32_conv_dw_fwd_avx2, cnn_f32_conv_dw_bwd_avx2, cnn_f32_conv_dw_wgrad_avx2};
    if (cnn_cpu_isa() < CNN_ISA_AVX512) return 2;
    k[2] = (dw_isa){"avx512", cnn_f32_conv_dw_fwd_avx512, cnn_f32_conv_dw_bwd_avx512, cnn_f32_conv_dw_wgrad_avx2};
    return 3;
}

/* The AVX-512 forward and input gradient (3x3 stride 1; the rest delegates to AVX2) bitwise equal to the
 * AVX2 ones on random planes, widths 1..70 (1..5 vectors of 16, masked edges and tails), paddings 0..2,
 * with accumulate on and off. */
static void test_kernels_avx512_bitwise(void **state) {
    (void)state;
    if (cnn_cpu_isa() < CNN_ISA_AVX512) skip();
    for (int it = 0; it < 300; it++) {
        cnn_dw_geom g = {.kh = 3, .kw = 3, .stride = it % 10 == 0 ? 2 : 1};
        g.ih = 1 + urange(40);
        g.iw = 1 + urange(70);
        const size_t pt = urange(3), pb = urange(3), pl = urange(3), pr = urange(3);
        if (g.ih + pt + pb < 3 || g.iw + pl + pr < 3) continue;
        g.pad_top = (ptrdiff_t)pt;
        g.pad_left = (ptrdiff_t)pl;
        g.oh = (g.ih + pt + pb - 3) / g.stride + 1;
        g.ow = (g.iw + pl + pr - 3) / g.stride + 1;
        const size_t xn = g.ih * g.iw, yn = g.oh * g.ow;
        float w[9], *x = malloc(xn * sizeof(float)), *y0 = malloc(yn * sizeof(float)), *y1 = malloc(yn * sizeof(float));
        float *dx0 = malloc(xn * sizeof(float)), *dx1 = malloc(xn * sizeof(float));
        assert_true(x && y0 && y1 && dx0 && dx1);
        for (int t = 0; t < 9; t++) w[t] = (float)urand();
        for (size_t i = 0; i < xn; i++) x[i] = (float)urand();
        for (size_t i = 0; i < yn; i++) y0[i] = y1[i] = (float)urand();
        for (size_t i = 0; i < xn; i++) dx0[i] = dx1[i] = (float)urand();
        const int acc = it % 3 == 0;
        cnn_f32_conv_dw_fwd_avx2(&g, x, w, 0.25f, acc, y0);
        cnn_f32_conv_dw_fwd_avx512(&g, x, w, 0.25f, acc, y1);
        assert_memory_equal(y0, y1, yn * sizeof(float));
        cnn_f32_conv_dw_bwd_avx2(&g, y0, w, acc, dx0);
        cnn_f32_conv_dw_bwd_avx512(&g, y0, w, acc, dx1);
        assert_memory_equal(dx0, dx1, xn * sizeof(float));
        free(x), free(y0), free(y1), free(dx0), free(dx1);
    }
}

static void test_kernels_random(void **state) {
    (void)state;
    dw_isa k[3];
    const size_t nk = n_isas(k);
    size_t done = 0;
    for (int it = 0; done < 600; it++) {
        cnn_dw_geom g = {0};
        g.kh = 1 + urange(5);
        g.kw = 1 + urange(5);
        if (it % 2) g.kh = g.kw = 3;
        g.stride = it % 9 == 0 ? 3 : 1 + urange(2);
        g.ih = 1 + urange(40);
        g.iw = 1 + urange(70);
        const size_t pt = urange(g.kh), pb = urange(g.kh), pl = urange(g.kw), pr = urange(g.kw);
        if (g.ih + pt + pb < g.kh || g.iw + pl + pr < g.kw) continue;
        g.pad_top = (ptrdiff_t)pt;
        g.pad_left = (ptrdiff_t)pl;
        g.oh = (g.ih + pt + pb - g.kh) / g.stride + 1;
        g.ow = (g.iw + pl + pr - g.kw) / g.stride + 1;
        for (size_t i = 0; i < nk; i++) kernel_case(&k[i], &g, it % 3 == 0, it % 4 < 2);
        done++;
    }
}

/* The shapes of B1 row c7 and MobileNet's stride-2 layers, plus widths around the vector size. */
static void test_kernels_fixed(void **state) {
    (void)state;
    dw_isa k[3];
    const size_t nk = n_isas(k);
    const size_t shapes[][5] = {/* ih iw stride pad k */ {56, 56, 1, 1, 3}, {28, 28, 2, 1, 3}, {14, 14, 2, 1, 3},
                                {7, 7, 1, 1, 3},    {9, 8, 1, 1, 3},    {9, 16, 2, 1, 3},  {5, 17, 1, 2, 3},
                                {6, 33, 2, 2, 3},   {4, 1, 1, 0, 1},    {3, 2, 2, 1, 3},   {11, 64, 1, 3, 7},
                                /* stride 2 with an unread last column */ {3, 10, 2, 0, 3}, {5, 20, 2, 0, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t *v = shapes[s];
        cnn_dw_geom g = {.ih = v[0], .iw = v[1], .kh = v[4], .kw = v[4], .stride = v[2],
                         .pad_top = (ptrdiff_t)v[3], .pad_left = (ptrdiff_t)v[3]};
        g.oh = (g.ih + 2 * v[3] - g.kh) / g.stride + 1;
        g.ow = (g.iw + 2 * v[3] - g.kw) / g.stride + 1;
        for (size_t i = 0; i < nk; i++)
            for (int acc = 0; acc < 2; acc++) kernel_case(&k[i], &g, acc, 1 - acc);
    }
}

/* ---- the layer ---- */

typedef struct conv_case {
    ref_conv2d p;
    int bias;
} conv_case;

static void ref_conv(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const conv_case *c = user;
    ref_conv2d_forward(&c->p, n, x, params[0], c->bias ? params[1] : NULL, y);
}

/* depthwise geometry: c h w kh kw stride pt pb pl pr (k = groups = c, dilation 1) */
static conv_case mk(size_t c, size_t h, size_t w, size_t kh, size_t kw, size_t s, size_t pt, size_t pb, size_t pl,
                    size_t pr, int bias) {
    conv_case cc = {{c, h, w, c, kh, kw, s, s, pt, pb, pl, pr, 1, 1, c}, bias};
    return cc;
}

static void run_case(const char *model, size_t n, size_t threads, conv_case cc, size_t fd_points) {
    th_net t;
    th_build(&t, model, n, 5000 + n * 10 + threads, threads);
    const ref_conv2d *p = &cc.p;
    assert_int_equal(t.out.c, p->k);
    assert_int_equal(t.out.h, ref_conv_out_len(p->h, p->kh, p->sh, p->pt, p->pb, p->dh));
    assert_int_equal(t.out.w, ref_conv_out_len(p->w, p->kw, p->sw, p->pl, p->pr, p->dw));
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
    assert_string_equal(info.algorithm, "depthwise");
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = fd_points};
    th_check(&t, ref_conv, &cc, 1, tol);
    th_check(&t, ref_conv, &cc, 0, tol);
    th_free(&t);
}

static void layer_cases(void) {
    /* B1 c7's geometry, small: 3x3 stride 1 pad 1, 5 channels, OW 13 (8 + a masked 5) */
    run_case("input c=5 h=9 w=13\nconv2d k=5 size=3 pad=1 groups=5\n", 2, 2, mk(5, 9, 13, 3, 3, 1, 1, 1, 1, 1, 1), 40);
    /* MobileNet's downsample: 3x3 stride 2 pad 1, odd sizes, batch 3 */
    run_case("input c=3 h=17 w=23\nconv2d k=3 size=3 stride=2 pad=1 groups=3\n", 3, 2,
             mk(3, 17, 23, 3, 3, 2, 1, 1, 1, 1, 1), 40);
    /* no padding, no bias, OW 17 */
    run_case("input c=4 h=8 w=19\nconv2d k=4 size=3 groups=4 bias=0\n", 2, 1, mk(4, 8, 19, 3, 3, 1, 0, 0, 0, 0, 0), 40);
    /* padding 2 = kernel - 1, stride 1 and 2, widths 37 and 33 */
    run_case("input c=3 h=11 w=37\nconv2d k=3 size=3 pad=2 groups=3\n", 2, 2, mk(3, 11, 37, 3, 3, 1, 2, 2, 2, 2, 1), 40);
    run_case("input c=2 h=12 w=33\nconv2d k=2 size=3 stride=2 pad=2 groups=2\n", 2, 1,
             mk(2, 12, 33, 3, 3, 2, 2, 2, 2, 2, 1), 40);
    /* asymmetric padding, stride 2, width 41 */
    run_case("input c=3 h=10 w=41\nconv2d k=3 size=3 stride=2 pad_top=0 pad_bottom=2 pad_left=2 pad_right=1 "
             "groups=3\n",
             2, 2, mk(3, 10, 41, 3, 3, 2, 0, 2, 2, 1, 1), 40);
    /* pad=same with stride 2 on an even input (padding 0 top/left, 1 bottom/right) */
    run_case("input c=3 h=16 w=24\nconv2d k=3 size=3 stride=2 pad=same groups=3\n", 2, 2,
             mk(3, 16, 24, 3, 3, 2, 0, 1, 0, 1, 1), 40);
    /* wide (several unmasked vectors per row) and narrow (masked only) planes */
    run_case("input c=3 h=6 w=70\nconv2d k=3 size=3 pad=1 groups=3\n", 2, 2, mk(3, 6, 70, 3, 3, 1, 1, 1, 1, 1, 1), 40);
    run_case("input c=3 h=7 w=2\nconv2d k=3 size=3 pad=1 groups=3\n", 3, 2, mk(3, 7, 2, 3, 3, 1, 1, 1, 1, 1, 1), 0);
    run_case("input c=2 h=5 w=1\nconv2d k=2 size=3 stride=2 pad=1 groups=2\n", 2, 1,
             mk(2, 5, 1, 3, 3, 2, 1, 1, 1, 1, 1), 0);
    /* other kernels: 5x5 stride 1 and 2, 7x7 stride 2, 3x5, 1x1 */
    run_case("input c=3 h=13 w=29\nconv2d k=3 size=5 pad=2 groups=3\n", 2, 2, mk(3, 13, 29, 5, 5, 1, 2, 2, 2, 2, 1), 40);
    run_case("input c=2 h=14 w=31\nconv2d k=2 size=5 stride=2 pad=2 groups=2\n", 2, 1,
             mk(2, 14, 31, 5, 5, 2, 2, 2, 2, 2, 1), 40);
    run_case("input c=2 h=15 w=40\nconv2d k=2 size=7 stride=2 pad=3 groups=2\n", 2, 2,
             mk(2, 15, 40, 7, 7, 2, 3, 3, 3, 3, 1), 40);
    run_case("input c=3 h=9 w=27\nconv2d k=3 kh=3 kw=5 pad_h=1 pad_w=2 groups=3\n", 2, 2,
             mk(3, 9, 27, 3, 5, 1, 1, 1, 2, 2, 1), 40);
    run_case("input c=5 h=4 w=11\nconv2d k=5 size=1 groups=5\n", 2, 2, mk(5, 4, 11, 1, 1, 1, 0, 0, 0, 0, 1), 0);
}

static void with_scalar(void (*fn)(void)) {
    const char *old = getenv("CNN_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CNN_ISA", "scalar", 1);
    fn();
    if (saved) {
        setenv("CNN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("CNN_ISA");
    }
}

static void test_layer(void **state) {
    (void)state;
    layer_cases();
}
static void test_layer_scalar(void **state) {
    (void)state;
    with_scalar(layer_cases);
}

/* y = dw_a(x) + dw_b(x): the input has two consumers, so one conv stores its dx and the other adds (stride 1
 * runs the flipped forward with accumulate, stride 2 the phase gather with accumulate). */
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
    th_tolerance tol = {.forward = 1e-5, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 40};
    for (size_t s = 1; s <= 2; s++) {
        th_net t;
        char m[256];
        snprintf(m, sizeof m,
                 "input name=in c=3 h=9 w=19\nconv2d name=a k=3 size=3 stride=%zu pad=1 groups=3\n"
                 "conv2d name=b from=in k=3 size=3 stride=%zu pad=1 groups=3\nadd from=a,b\n",
                 s, s);
        two_conv tc = {mk(3, 9, 19, 3, 3, s, 1, 1, 1, 1, 1), mk(3, 9, 19, 3, 3, s, 1, 1, 1, 1, 1)};
        th_build(&t, m, 2, 78 + s, 2);
        th_check(&t, ref_two_conv, &tc, 1, tol);
        th_free(&t);
    }
}

static void test_accumulate(void **state) {
    (void)state;
    accumulate_cases();
    with_scalar(accumulate_cases);
}

/* Same weights, input and dy on 1 and 2 threads: output, input gradient and parameter gradients are
 * bit-identical. */
static void check_threads_bitwise(const char *model, size_t n) { th_check_threads_bitwise(model, n, 2); }

static void bitwise_cases(void) {
    check_threads_bitwise("input c=7 h=13 w=21\nconv2d k=7 size=3 pad=1 groups=7\n", 3);
    check_threads_bitwise("input c=5 h=15 w=18\nconv2d k=5 size=3 stride=2 pad=1 groups=5\n", 3);
    check_threads_bitwise("input c=3 h=9 w=30\nconv2d k=3 size=5 pad=2 groups=3 bias=0\n", 2);
}

static void test_threads_bitwise(void **state) {
    (void)state;
    bitwise_cases();
    with_scalar(bitwise_cases);
}

/* depthwise conv (no bias) + batchnorm compiled for inference: the batchnorm is folded into the conv's
 * inference weight block (MobileNet's dw + bn). params: conv weight, bn weight, bn bias, running_mean,
 * running_var. */
static const conv_case FOLD_CASE = {{6, 11, 13, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 6}, 0};
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
        th_build(&t, "input c=6 h=11 w=13\nconv2d k=6 size=3 stride=2 pad=1 groups=6 bias=0\nbatchnorm\nflatten\n",
                 3, 300 + threads, threads);
        assert_int_equal(cnn_net_compile(t.net, 3, 0), CNN_OK);
        cnn_layer_info info;
        assert_int_equal(cnn_net_layer_info(t.net, 1, &info), CNN_OK);
        assert_string_equal(info.algorithm, "depthwise");
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

static void expect_algo(cnn_ctx *ctx, const char *model, size_t layer, const char *want) {
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "t.cnn", &net), CNN_OK);
    cnn_layer_info info;
    assert_int_equal(cnn_net_layer_info(net, layer, &info), CNN_OK);
    if (strcmp(info.algorithm, want)) fail_msg("%s: layer %zu runs %s, expected %s", model, layer, info.algorithm, want);
    cnn_net_free(net);
}

/* The automatic choice: depthwise wherever it applies; the other layers keep their algorithms. */
static void test_auto_choice(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    expect_algo(ctx, "input c=128 h=56 w=56\nconv2d k=128 size=3 pad=1 groups=128\n", 1, "depthwise"); /* c7 */
    expect_algo(ctx, "input c=64 h=28 w=28\nconv2d k=64 size=3 stride=2 pad=1 groups=64 bias=0\n", 1, "depthwise");
    expect_algo(ctx, "input c=8 h=9 w=9\nconv2d k=8 size=3 stride=2 pad=same groups=8\n", 1, "depthwise");
    expect_algo(ctx, "input c=8 h=9 w=9\nconv2d k=8 size=3 stride=3 groups=8\n", 1, "im2col+gemm");   /* stride 3 */
    expect_algo(ctx, "input c=8 h=9 w=9\nconv2d k=8 size=3 dilation=2 groups=8\n", 1, "direct");    /* dilation */
    expect_algo(ctx, "input c=8 h=9 w=9\nconv2d k=16 size=3 pad=1 groups=8\n", 1, "direct");        /* K = 2C */
    expect_algo(ctx, "input c=8 h=9 w=9\nconv2d k=8 size=3 pad=3 groups=8\n", 1, "direct");         /* pad 3 */
    cnn_ctx_free(ctx);
    th_expect_error("input c=8 h=9 w=9\nconv2d k=8 size=3 algo=depthwise\n", CNN_ERR_SHAPE,
                    "algo=depthwise needs groups = input channels = k");
    th_expect_error("input c=8 h=9 w=9\nconv2d k=8 size=3 groups=8 stride_h=1 stride_w=2 algo=depthwise\n",
                    CNN_ERR_SHAPE, "algo=depthwise");
    th_expect_error("input c=8 h=19 w=19\nconv2d k=8 size=9 groups=8 algo=depthwise\n", CNN_ERR_SHAPE,
                    "a kernel of at most 7x7");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_random),
        cmocka_unit_test(test_kernels_fixed), cmocka_unit_test(test_kernels_avx512_bitwise),
        cmocka_unit_test(test_layer),
        cmocka_unit_test(test_layer_scalar),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_auto_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
