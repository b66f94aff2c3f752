/* test_augment.c — augmentation and the batch loader (src/io/augment.c, src/io/loader.c):
 *   - crop (every offset), flip, erase (zero and random fill), their composition and normalisation against a
 *     naive reference written here (explicit padded copy, then crop, then flip, then the rectangle);
 *   - the random draws: ranges (offsets in 0..2P, erase rectangles inside the image with area and aspect
 *     ratio in range up to rounding), frequencies (flip ~ 0.5, erase ~ p), determinism by key, keys that
 *     differ by seed, epoch and index;
 *   - the spec parser: every item, the canonical text round trip, errors naming the item and its column;
 *   - the loader: every batch of 3 epochs against an independent composition of shuffle + gather + draw +
 *     apply + normalise; prefetch depths 0, 1, 3 and 1 vs 2 context threads byte-identical; seek (resume)
 *     equal to the uninterrupted stream; an error on the background thread reported by next(); bad options;
 *     a sample list;
 *   - TTA: cnn_net_forward_tta equals the mean of two plain forwards of x and of x flipped (flipped here),
 *     and cnn_net_evaluate_tta's loss, accuracy and confusion against the same computed by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "io/augment_internal.h"

static void fill(float *p, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = 0.05f + (float)((s >> 40) & 0xFFFFFF) / 16777216.0f; /* never 0: a zero means padding/erased */
    }
}

static cnn_ctx *new_ctx(size_t threads) {
    cnn_ctx *ctx = NULL;
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    return ctx;
}

/* naive reference: explicit padded image, crop, flip, erase */
static void ref_augment(const cnn_augment_params *p, cnn_shape s, const float *x, float *y) {
    size_t P = p->pad, H = s.h + 2 * P, W = s.w + 2 * P;
    float *xp = calloc(s.c * H * W, sizeof *xp);
    float *z = malloc(s.c * s.h * s.w * sizeof *z);
    assert_non_null(xp);
    assert_non_null(z);
    for (size_t c = 0; c < s.c; c++)
        for (size_t i = 0; i < s.h; i++)
            for (size_t j = 0; j < s.w; j++) xp[(c * H + i + P) * W + j + P] = x[(c * s.h + i) * s.w + j];
    for (size_t c = 0; c < s.c; c++)
        for (size_t i = 0; i < s.h; i++)
            for (size_t j = 0; j < s.w; j++) z[(c * s.h + i) * s.w + j] = xp[(c * H + i + p->crop_dy) * W + j + p->crop_dx];
    for (size_t c = 0; c < s.c; c++)
        for (size_t i = 0; i < s.h; i++)
            for (size_t j = 0; j < s.w; j++)
                y[(c * s.h + i) * s.w + j] = p->flip ? z[(c * s.h + i) * s.w + (s.w - 1 - j)] : z[(c * s.h + i) * s.w + j];
    if (p->erase)
        for (size_t c = 0; c < s.c; c++)
            for (size_t i = p->erase_y; i < p->erase_y + p->erase_h; i++)
                for (size_t j = p->erase_x; j < p->erase_x + p->erase_w; j++) {
                    size_t e = (c * s.h + i) * s.w + j;
                    /* the documented fill: (hash >> 40) * 2^-24 */
                    y[e] = p->erase_random ? (float)((double)(cnn_hash64(p->fill_seed, e) >> 40) / 16777216.0) : 0.0f;
                }
    free(xp);
    free(z);
}

static void test_crop_flip_exact(void **state) {
    (void)state;
    cnn_shape s = {2, 5, 7};
    size_t n = 2 * 5 * 7;
    float x[70], y[70], r[70];
    fill(x, n, 1);
    for (size_t P = 0; P <= 3; P++)
        for (size_t dy = 0; dy <= 2 * P; dy++)
            for (size_t dx = 0; dx <= 2 * P; dx++)
                for (int flip = 0; flip < 2; flip++) {
                    cnn_augment_params p;
                    memset(&p, 0, sizeof p);
                    p.pad = P;
                    p.crop_dy = dy;
                    p.crop_dx = dx;
                    p.flip = flip;
                    cnn_augment_apply(&p, s, x, y);
                    ref_augment(&p, s, x, r);
                    assert_memory_equal(y, r, sizeof y);
                }
    /* two hand-checked values: pad 2, offset (0, 4), no flip: y[0][0][0] is padding, y[0][2][0] = x[0][0][2] */
    cnn_augment_params p;
    memset(&p, 0, sizeof p);
    p.pad = 2;
    p.crop_dy = 0;
    p.crop_dx = 4;
    cnn_augment_apply(&p, s, x, y);
    assert_true(y[0] == 0.0f);
    assert_true(y[2 * 7 + 0] == x[2]);
    assert_true(y[2 * 7 + 4] == x[6]);
    assert_true(y[2 * 7 + 5] == 0.0f);
    /* flip only: y[c][i][j] = x[c][i][w-1-j] */
    memset(&p, 0, sizeof p);
    p.flip = 1;
    cnn_augment_apply(&p, s, x, y);
    for (size_t c = 0; c < 2; c++)
        for (size_t i = 0; i < 5; i++)
            for (size_t j = 0; j < 7; j++) assert_true(y[(c * 5 + i) * 7 + j] == x[(c * 5 + i) * 7 + 6 - j]);
}

static void test_erase_exact(void **state) {
    (void)state;
    cnn_shape s = {3, 6, 5};
    float x[90], y[90], r[90];
    fill(x, 90, 2);
    cnn_augment_params p;
    memset(&p, 0, sizeof p);
    p.erase = 1;
    p.erase_y = 1;
    p.erase_x = 2;
    p.erase_h = 4;
    p.erase_w = 3;
    cnn_augment_apply(&p, s, x, y);
    size_t zeros = 0;
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < 6; i++)
            for (size_t j = 0; j < 5; j++) {
                size_t e = (c * 6 + i) * 5 + j;
                int in = i >= 1 && i < 5 && j >= 2 && j < 5;
                assert_true(y[e] == (in ? 0.0f : x[e]));
                zeros += in;
            }
    assert_int_equal(zeros, 3 * 4 * 3);
    /* random fill: values in [0,1), not all equal, the documented hash */
    p.erase_random = 1;
    p.fill_seed = 0x1234567890abcdefull;
    cnn_augment_apply(&p, s, x, y);
    ref_augment(&p, s, x, r);
    assert_memory_equal(y, r, sizeof y);
    float lo = 1, hi = 0;
    for (size_t i = 1; i < 5; i++)
        for (size_t j = 2; j < 5; j++) {
            float v = y[i * 5 + j];
            assert_true(v >= 0.0f && v < 1.0f);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            assert_true(v == cnn_augment_fill_value(p.fill_seed, i * 5 + j));
        }
    assert_true(hi - lo > 0.1f);
    /* everything at once, against the reference */
    p.pad = 2;
    p.crop_dy = 3;
    p.crop_dx = 1;
    p.flip = 1;
    cnn_augment_apply(&p, s, x, y);
    ref_augment(&p, s, x, r);
    assert_memory_equal(y, r, sizeof y);
    /* normalisation per channel, in float, after the rest */
    const float mean[3] = {0.25f, -0.5f, 0.125f}, sd[3] = {0.5f, 2.0f, 0.3f};
    float yn[90];
    memcpy(yn, y, sizeof y);
    cnn_augment_normalize(yn, s, mean, sd);
    for (size_t e = 0; e < 90; e++) assert_true(yn[e] == (y[e] - mean[e / 30]) / sd[e / 30]);
}

static void test_draw(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    cnn_augment_spec sp;
    assert_int_equal(cnn_augment_parse(ctx, "crop=3,flip,erase=0.6,erase-area=0.05:0.3,erase-ratio=0.5:2", &sp), CNN_OK);
    cnn_shape s = {1, 28, 28};
    const size_t N = 6000;
    size_t flips = 0, erases = 0, crop_hist[7] = {0};
    double S = 28.0 * 28.0;
    for (size_t i = 0; i < N; i++) {
        cnn_augment_params p, q;
        uint64_t key = cnn_augment_sample_key(7, i % 3, i);
        cnn_augment_draw(&sp, s, key, &p);
        cnn_augment_draw(&sp, s, key, &q);
        assert_memory_equal(&p, &q, sizeof p); /* a function of the key */
        assert_int_equal(p.pad, 3);
        assert_true(p.crop_dy <= 6 && p.crop_dx <= 6);
        crop_hist[p.crop_dy]++;
        flips += p.flip != 0;
        if (p.erase) {
            erases++;
            assert_true(p.erase_h >= 1 && p.erase_w >= 1);
            assert_true(p.erase_y + p.erase_h <= 28 && p.erase_x + p.erase_w <= 28);
            /* eh = round(sqrt(A r)), ew = round(sqrt(A / r)): eh*ew within rounding of A, eh/ew of r */
            double a_lo = (double)(p.erase_h - 0.5 < 0 ? 0 : p.erase_h - 0.5) * (p.erase_w - 0.5) / S;
            double a_hi = (p.erase_h + 0.5) * (p.erase_w + 0.5) / S;
            assert_true(a_hi >= 0.05 - 1e-9 && a_lo <= 0.3 + 1e-9);
            double r_lo = (p.erase_h - 0.5) / (p.erase_w + 0.5), r_hi = (p.erase_h + 0.5) / (p.erase_w - 0.5);
            assert_true(r_hi >= 0.5 - 1e-9 && r_lo <= 2.0 + 1e-9);
        }
    }
    for (size_t k = 0; k < 7; k++) assert_true(crop_hist[k] > N / 7 / 2); /* every offset occurs */
    assert_true(fabs((double)flips / N - 0.5) < 0.03);
    assert_true(fabs((double)erases / N - 0.6) < 0.03); /* these ranges always fit in 28x28 */
    /* keys differ by seed, epoch and index */
    uint64_t k0 = cnn_augment_sample_key(1, 0, 5);
    assert_true(k0 != cnn_augment_sample_key(2, 0, 5));
    assert_true(k0 != cnn_augment_sample_key(1, 1, 5));
    assert_true(k0 != cnn_augment_sample_key(1, 0, 6));
    assert_true(k0 == cnn_augment_sample_key(1, 0, 5));
    /* nothing enabled: identity parameters */
    cnn_augment_spec none = cnn_augment_spec_default();
    cnn_augment_params p;
    cnn_augment_draw(&none, s, k0, &p);
    assert_int_equal(p.pad, 0);
    assert_int_equal(p.flip, 0);
    assert_int_equal(p.erase, 0);
    /* an erase range that can never fit (ratio 50..100 on 4x4 needs eh ~ 7+): no erase, never out of bounds */
    assert_int_equal(cnn_augment_parse(ctx, "erase=1,erase-area=0.9:1,erase-ratio=50:100", &sp), CNN_OK);
    cnn_shape small = {1, 4, 4};
    for (size_t i = 0; i < 200; i++) {
        cnn_augment_draw(&sp, small, cnn_augment_sample_key(3, 0, i), &p);
        assert_int_equal(p.erase, 0);
    }
    cnn_ctx_free(ctx);
}

static void expect_parse_error(cnn_ctx *ctx, const char *text, const char *n1, const char *n2) {
    cnn_augment_spec sp;
    cnn_status st = cnn_augment_parse(ctx, text, &sp);
    if (st != CNN_ERR_INVALID_ARG) fail_msg("'%s': status %d, expected an error", text, (int)st);
    const char *m = cnn_ctx_last_error(ctx);
    if (!strstr(m, n1) || (n2 && !strstr(m, n2))) fail_msg("'%s': message '%s' lacks '%s' / '%s'", text, m, n1, n2 ? n2 : "");
    assert_false(cnn_augment_enabled(&sp)); /* *out is the default on failure */
}

static void test_parse(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    cnn_augment_spec sp;
    assert_int_equal(cnn_augment_parse(ctx, "crop=4,flip,erase=0.5", &sp), CNN_OK);
    assert_int_equal(sp.crop_pad, 4);
    assert_true(sp.flip_p == 0.5f);
    assert_true(sp.erase_p == 0.5f);
    assert_true(sp.erase_area_min == 0.02f && sp.erase_area_max == 0.4f);
    assert_true(sp.erase_ratio_min == 0.3f && sp.erase_ratio_max == (float)(1 / 0.3));
    assert_int_equal(sp.erase_random, 0);
    assert_int_equal(cnn_augment_parse(ctx, " flip=0.25 , erase , erase-fill=random,erase-area=0.1:0.2,erase-ratio=1:4", &sp),
                     CNN_OK);
    assert_int_equal(sp.crop_pad, 0);
    assert_true(sp.flip_p == 0.25f && sp.erase_p == 0.5f && sp.erase_random == 1);
    assert_true(sp.erase_area_min == 0.1f && sp.erase_area_max == 0.2f);
    assert_true(sp.erase_ratio_min == 1.0f && sp.erase_ratio_max == 4.0f);
    char *t = NULL;
    assert_int_equal(cnn_augment_to_text(ctx, &sp, &t), CNN_OK);
    assert_string_equal(t, "flip=0.25,erase=0.5,erase-area=0.1:0.2,erase-ratio=1:4,erase-fill=random");
    cnn_augment_spec back;
    assert_int_equal(cnn_augment_parse(ctx, t, &back), CNN_OK);
    assert_memory_equal(&sp, &back, sizeof sp);
    cnn_free(ctx, t);
    assert_int_equal(cnn_augment_parse(ctx, "crop=2,flip", &sp), CNN_OK);
    assert_int_equal(cnn_augment_to_text(ctx, &sp, &t), CNN_OK);
    assert_string_equal(t, "crop=2,flip");
    cnn_free(ctx, t);
    for (int k = 0; k < 3; k++) {
        const char *empty[3] = {"", "none", NULL};
        assert_int_equal(cnn_augment_parse(ctx, empty[k], &sp), CNN_OK);
        assert_false(cnn_augment_enabled(&sp));
    }
    assert_int_equal(cnn_augment_to_text(ctx, &sp, &t), CNN_OK);
    assert_string_equal(t, "none");
    cnn_free(ctx, t);

    expect_parse_error(ctx, "crop=x", "column 1", "'crop=x'");
    expect_parse_error(ctx, "crop=65", "column 1", "from 0 to 64");
    expect_parse_error(ctx, "crop=2.5", "column 1", "integer");
    expect_parse_error(ctx, "crop", "column 1", "crop=P");
    expect_parse_error(ctx, "flip,crop=4,blur", "column 13", "unknown item 'blur'");
    expect_parse_error(ctx, "crop=4,,flip", "column 8", "empty item");
    expect_parse_error(ctx, "flip,", "column 6", "empty item");
    expect_parse_error(ctx, "flip=1.5", "column 1", "probability");
    expect_parse_error(ctx, "flip=nan", "column 1", "probability");
    expect_parse_error(ctx, "erase=-0.1", "column 1", "probability");
    expect_parse_error(ctx, "flip,flip", "column 6", "given twice");
    expect_parse_error(ctx, "erase,erase-area=0.5:0.2", "column 7", "0 < A <= B <= 1");
    expect_parse_error(ctx, "erase,erase-area=0.5", "column 7", "erase-area=A:B");
    expect_parse_error(ctx, "erase,erase-ratio=0:2", "column 7", "erase-ratio=R:S");
    expect_parse_error(ctx, "erase,erase-fill=gray", "column 7", "zero or erase-fill=random");
    expect_parse_error(ctx, "crop=2,erase-fill=zero", "column 8", "needs erase");
    expect_parse_error(ctx, "none,flip", "column 1", "cannot be combined");
    expect_parse_error(ctx, "none=1", "column 1", "none");
    cnn_ctx_free(ctx);
}

/* ---- the loader ---- */

enum { LN = 103, LC = 3, LH = 9, LW = 11, LB = 10, LCLS = 5 };
#define LPER (LC * LH * LW)

typedef struct ldata {
    float *x;
    int32_t *labels;
    cnn_dataset *ds;
} ldata;

static void make_data(cnn_ctx *ctx, ldata *d) {
    d->x = malloc((size_t)LN * LPER * sizeof *d->x);
    d->labels = malloc(LN * sizeof *d->labels);
    assert_non_null(d->x);
    assert_non_null(d->labels);
    fill(d->x, (size_t)LN * LPER, 3);
    for (size_t i = 0; i < LN; i++) d->labels[i] = (int32_t)((i * 7 + 3) % LCLS);
    cnn_shape s = {LC, LH, LW};
    assert_int_equal(cnn_dataset_from_memory(ctx, d->x, d->labels, LN, s, LCLS, &d->ds), CNN_OK);
}

static void free_data(ldata *d) {
    cnn_dataset_free(d->ds);
    free(d->x);
    free(d->labels);
}

static const float g_mean[LC] = {0.4f, 0.5f, 0.3f}, g_std[LC] = {0.25f, 0.2f, 0.5f};

static cnn_loader_options lopts(const cnn_augment_spec *sp, size_t prefetch) {
    cnn_loader_options o = cnn_loader_options_default();
    o.batch = LB;
    o.seed = 42;
    o.augment = *sp;
    o.mean = g_mean;
    o.std = g_std;
    o.channels = LC;
    o.prefetch = prefetch;
    return o;
}

/* every batch of `epochs` epochs: x and labels in one buffer each */
static void run_loader(cnn_loader *ld, size_t epochs, float *x, int32_t *labels) {
    size_t bpe = cnn_loader_batches_per_epoch(ld), off = 0;
    for (size_t e = 0; e < epochs; e++)
        for (size_t b = 0; b < bpe; b++) {
            size_t n = 0;
            uint64_t te, tb;
            cnn_loader_tell(ld, &te, &tb);
            assert_int_equal(te, e);
            assert_int_equal(tb, b);
            assert_int_equal(cnn_loader_next(ld, x + off * LPER, labels + off, &n), CNN_OK);
            assert_int_equal(n, b + 1 < bpe ? (size_t)LB : (size_t)(LN - (bpe - 1) * LB));
            off += n;
        }
}

static void test_loader(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(2);
    ldata d;
    make_data(ctx, &d);
    cnn_augment_spec sp;
    assert_int_equal(cnn_augment_parse(ctx, "crop=2,flip,erase=0.7,erase-fill=random", &sp), CNN_OK);
    const size_t E = 3, total = E * LN;
    float *want = malloc(total * LPER * sizeof(float)), *got = malloc(total * LPER * sizeof(float));
    int32_t *wl = malloc(total * sizeof(int32_t)), *gl = malloc(total * sizeof(int32_t));
    assert_true(want && got && wl && gl);
    /* independent composition: shuffle, then per sample draw + apply + normalise */
    size_t perm[LN];
    float y[LPER];
    for (size_t e = 0; e < E; e++) {
        cnn_shuffle_indices(perm, LN, cnn_loader_epoch_seed(42, e));
        for (size_t i = 0; i < LN; i++) {
            size_t s = perm[i];
            cnn_augment_params p;
            cnn_augment_draw(&sp, (cnn_shape){LC, LH, LW}, cnn_augment_sample_key(42, e, s), &p);
            ref_augment(&p, (cnn_shape){LC, LH, LW}, d.x + s * LPER, y);
            for (size_t k = 0; k < LPER; k++) y[k] = (y[k] - g_mean[k / (LH * LW)]) / g_std[k / (LH * LW)];
            memcpy(want + (e * LN + i) * LPER, y, sizeof y);
            wl[e * LN + i] = d.labels[s];
        }
    }
    assert_int_equal(cnn_loader_epoch_seed(42, 0), cnn_loader_epoch_seed(42, 0));
    assert_true(cnn_loader_epoch_seed(42, 0) != cnn_loader_epoch_seed(42, 1));
    size_t depths[3] = {0, 1, 3};
    for (size_t k = 0; k < 3; k++) {
        cnn_loader_options o = lopts(&sp, depths[k]);
        cnn_loader *ld = NULL;
        assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_OK);
        assert_int_equal(cnn_loader_batches_per_epoch(ld), 11);
        assert_int_equal(cnn_loader_size(ld), LN);
        memset(got, 0, total * LPER * sizeof(float));
        run_loader(ld, E, got, gl);
        assert_memory_equal(got, want, total * LPER * sizeof(float));
        assert_memory_equal(gl, wl, total * sizeof(int32_t));
        cnn_loader_free(ld);
    }
    /* a context with 1 thread: the same bytes */
    cnn_ctx *ctx1 = new_ctx(1);
    ldata d1;
    make_data(ctx1, &d1);
    cnn_loader_options o = lopts(&sp, 2);
    cnn_loader *ld = NULL;
    assert_int_equal(cnn_loader_create(ctx1, d1.ds, &o, &ld), CNN_OK);
    run_loader(ld, E, got, gl);
    assert_memory_equal(got, want, total * LPER * sizeof(float));
    cnn_loader_free(ld);
    free_data(&d1);
    cnn_ctx_free(ctx1);

    /* seek = resume: from (1, 4) the stream continues as the uninterrupted one, prefetching or not;
     * also a seek back on a running prefetch loader, and a free with batches pending */
    for (size_t k = 0; k < 2; k++) {
        o = lopts(&sp, k ? 2 : 0);
        assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_OK);
        float xb[LB * LPER];
        int32_t lb[LB];
        size_t n;
        for (int r = 0; r < 3; r++) assert_int_equal(cnn_loader_next(ld, xb, lb, &n), CNN_OK);
        assert_int_equal(cnn_loader_seek(ld, 1, 4), CNN_OK);
        size_t pos = LN + 4 * LB;
        for (size_t b = 4; b < 11 + 5; b++) { /* to batch 4 of epoch 2 */
            assert_int_equal(cnn_loader_next(ld, xb, lb, &n), CNN_OK);
            assert_memory_equal(xb, want + pos * LPER, n * LPER * sizeof(float));
            assert_memory_equal(lb, wl + pos, n * sizeof(int32_t));
            pos += n;
        }
        assert_int_equal(cnn_loader_seek(ld, 0, 0), CNN_OK);
        assert_int_equal(cnn_loader_next(ld, xb, lb, &n), CNN_OK);
        assert_memory_equal(xb, want, n * LPER * sizeof(float));
        assert_int_equal(cnn_loader_seek(ld, 0, 11), CNN_ERR_INVALID_ARG);
        assert_non_null(strstr(cnn_ctx_last_error(ctx), "11 batches"));
        cnn_loader_free(ld);
    }
    free(want);
    free(got);
    free(wl);
    free(gl);
    free_data(&d);
    cnn_ctx_free(ctx);
}

static void test_loader_plain_and_list(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    ldata d;
    make_data(ctx, &d);
    /* no augmentation, no normalisation, no shuffle: exactly the dataset in order */
    cnn_loader_options o = cnn_loader_options_default();
    o.batch = 16;
    o.shuffle = 0;
    cnn_loader *ld = NULL;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_OK);
    float xb[16 * LPER];
    int32_t lb[16];
    size_t n, off = 0;
    for (size_t b = 0; b < 7; b++) {
        assert_int_equal(cnn_loader_next(ld, xb, lb, &n), CNN_OK);
        assert_memory_equal(xb, d.x + off * LPER, n * LPER * sizeof(float));
        assert_memory_equal(lb, d.labels + off, n * sizeof(int32_t));
        off += n;
    }
    assert_int_equal(off, LN);
    cnn_loader_free(ld);
    /* a sample list: only those samples, each once per epoch, shuffled */
    size_t list[9] = {100, 3, 57, 12, 0, 99, 41, 8, 77};
    o = cnn_loader_options_default();
    o.batch = 4;
    o.indices = list;
    o.n_indices = 9;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_OK);
    assert_int_equal(cnn_loader_batches_per_epoch(ld), 3);
    int seen[LN] = {0};
    size_t pos = 0, perm[9];
    cnn_shuffle_indices(perm, 9, cnn_loader_epoch_seed(1, 0));
    for (size_t b = 0; b < 3; b++) {
        assert_int_equal(cnn_loader_next(ld, xb, lb, &n), CNN_OK);
        for (size_t i = 0; i < n; i++, pos++) {
            size_t s = list[perm[pos]];
            assert_memory_equal(xb + i * LPER, d.x + s * LPER, LPER * sizeof(float));
            seen[s]++;
        }
    }
    for (size_t i = 0; i < 9; i++) assert_int_equal(seen[list[i]], 1);
    cnn_loader_free(ld);
    cnn_loader_free(NULL);
    free_data(&d);
    cnn_ctx_free(ctx);
}

static void test_loader_errors(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    ldata d;
    make_data(ctx, &d);
    cnn_augment_spec sp;
    assert_int_equal(cnn_augment_parse(ctx, "crop=1,flip", &sp), CNN_OK);
    /* a failure while preparing batch 5 (background thread or not): next() returns it, with its message,
     * and keeps returning it until a seek */
    for (size_t depth = 0; depth <= 2; depth += 2) {
        cnn_loader_options o = lopts(&sp, depth);
        cnn_loader *ld = NULL;
        assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_OK);
        cnn_loader_test_fail_at(ld, 5);
        float xb[LB * LPER];
        size_t n;
        for (int b = 0; b < 5; b++) assert_int_equal(cnn_loader_next(ld, xb, NULL, &n), CNN_OK);
        for (int r = 0; r < 2; r++) {
            assert_int_equal(cnn_loader_next(ld, xb, NULL, &n), CNN_ERR_IO);
            assert_int_equal(n, 0);
            assert_non_null(strstr(cnn_ctx_last_error(ctx), "injected failure preparing batch 5 of epoch 0"));
        }
        assert_int_equal(cnn_loader_seek(ld, 0, 6), CNN_OK);
        assert_int_equal(cnn_loader_next(ld, xb, NULL, &n), CNN_OK);
        uint64_t e, b;
        cnn_loader_tell(ld, &e, &b);
        assert_int_equal(e, 0);
        assert_int_equal(b, 7);
        cnn_loader_free(ld);
    }
    /* bad options */
    cnn_loader *ld = (cnn_loader *)&d; /* must be set to NULL */
    cnn_loader_options o = cnn_loader_options_default();
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_ERR_INVALID_ARG);
    assert_null(ld);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "batch is 0"));
    o.batch = 8;
    size_t bad[2] = {3, 103};
    o.indices = bad;
    o.n_indices = 2;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "indices[1] = 103"));
    o.indices = NULL;
    o.prefetch = 65;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_ERR_INVALID_ARG);
    o.prefetch = 2;
    o.mean = g_mean;
    o.std = g_std;
    o.channels = 2;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "2 normalisation channels"));
    o.channels = 3;
    o.augment.crop_pad = 65;
    assert_int_equal(cnn_loader_create(ctx, d.ds, &o, &ld), CNN_ERR_INVALID_ARG);
    assert_null(ld);
    free_data(&d);
    cnn_ctx_free(ctx);
}

/* ---- TTA ---- */

static void test_tta(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(2);
    const char *model = "input c=2 h=5 w=6\n"
                        "conv2d name=c1 k=3 kh=3 kw=3 pad=1\n"
                        "relu\n"
                        "flatten\n"
                        "dense name=fc out=4\n"
                        "softmax_ce\n";
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "tta.cnn", &net), CNN_OK);
    const size_t N = 7, per = 60, K = 4;
    assert_int_equal(cnn_net_compile(net, N, 0), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 5, CNN_INIT_DEFAULT), CNN_OK);
    float x[7 * 60], xf[7 * 60], a[7 * 4], b[7 * 4], p[7 * 4];
    fill(x, N * per, 9);
    for (size_t i = 0; i < N * per; i++) x[i] = 2 * x[i] - 1;
    for (size_t r = 0; r < N * 2 * 5; r++) /* rows of 6 */
        for (size_t j = 0; j < 6; j++) xf[r * 6 + j] = x[r * 6 + 5 - j];
    size_t got;
    assert_int_equal(cnn_net_forward(net, x, N, 0), CNN_OK);
    memcpy(a, cnn_net_output(net, &got), sizeof a);
    assert_int_equal(cnn_net_forward(net, xf, N, 0), CNN_OK);
    memcpy(b, cnn_net_output(net, &got), sizeof b);
    assert_int_equal(cnn_net_forward_tta(net, x, N, p), CNN_OK);
    double diff = 0;
    for (size_t i = 0; i < N * K; i++) {
        assert_true(p[i] == (a[i] + b[i]) * 0.5f);
        diff += fabs((double)a[i] - b[i]);
    }
    assert_true(diff > 1e-3); /* the net is not flip-invariant: the test can tell */
    /* evaluate_tta over a dataset of 7 samples in batches of 3 */
    int32_t lab[7] = {0, 3, 1, 2, 3, 0, 1};
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_from_memory(ctx, x, lab, N, (cnn_shape){2, 5, 6}, 4, &ds), CNN_OK);
    cnn_eval_result ev;
    assert_int_equal(cnn_net_evaluate_tta(net, ds, 3, &ev), CNN_OK);
    double loss = 0;
    size_t correct = 0, conf[16] = {0};
    for (size_t i = 0; i < N; i++) {
        size_t best = 0;
        for (size_t c = 1; c < K; c++)
            if (p[i * K + c] > p[i * K + best]) best = c;
        correct += best == (size_t)lab[i];
        conf[lab[i] * 4 + best]++;
        loss += -log((double)p[i * K + lab[i]]);
    }
    assert_int_equal(ev.n, N);
    assert_int_equal(ev.classes, K);
    assert_true(fabs(ev.loss - loss / N) < 1e-12);
    assert_true(ev.accuracy == (double)correct / N);
    for (size_t i = 0; i < 16; i++) assert_int_equal(ev.confusion[i], conf[i]);
    cnn_free(ctx, ev.confusion);
    /* misuse */
    assert_int_equal(cnn_net_forward_tta(net, NULL, N, p), CNN_ERR_INVALID_ARG);
    cnn_dataset_free(ds);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crop_flip_exact),
        cmocka_unit_test(test_erase_exact),
        cmocka_unit_test(test_draw),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_loader),
        cmocka_unit_test(test_loader_plain_and_list),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_tta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
