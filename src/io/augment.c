/* augment.c — data augmentation for training (random crop with zero padding, horizontal flip, random
 * erasing), its text spec, and test-time augmentation by horizontal flip.
 *
 * Math (one (c, h, w) sample, [0,1]-scaled pixels, before normalisation; see augment_internal.h):
 *   crop   pad P zeros on every side (h+2P x w+2P), take the h x w window at (dy, dx), dy, dx ~ U{0..2P}
 *          (torchvision RandomCrop(size, padding=P)).
 *   flip   x[:, :, j] <- x[:, :, w-1-j] with probability p (RandomHorizontalFlip).
 *   erase  with probability p: up to 10 tries of area = h*w*U(a0, a1), aspect ratio r = exp(U(log r0,
 *          log r1)), eh = round(sqrt(area*r)), ew = round(sqrt(area/r)); the first that fits
 *          (1 <= eh <= h, 1 <= ew <= w) is placed at a uniform offset and filled with 0 or with uniform
 *          [0,1) values, one per element (Zhong, Zheng, Kang, Li, Yang, "Random Erasing Data Augmentation",
 *          AAAI 2020, arXiv:1708.04896, Algorithm 1, with torchvision's log-uniform ratio and try limit).
 *          Defaults a = [0.02, 0.4], r = [0.3, 1/0.3], as in the paper.
 *   Normalisation (x - mean) / std, when the loader has one, comes after these.
 * Cost: O(c*h*w) per sample, two passes (crop+flip as one gather, then the erase rectangle).
 *
 * Randomness: every sample's choices come from a private xoshiro256** stream seeded by
 * key = hash(hash(seed, epoch), dataset index) (cnn_hash64, the counter hash the dropout masks use), so
 * they depend neither on the order in which samples are prepared nor on threads or prefetching.
 *
 * TTA (cnn_net_forward_tta): mean of the softmax outputs of x and of x flipped left-right. */
#include "augment_internal.h"
#include "../core/net_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cnn_augment_spec cnn_augment_spec_default(void) {
    cnn_augment_spec s;
    memset(&s, 0, sizeof s);
    s.erase_area_min = 0.02f;
    s.erase_area_max = 0.4f;
    s.erase_ratio_min = 0.3f;
    s.erase_ratio_max = (float)(1.0 / 0.3);
    return s;
}

int cnn_augment_enabled(const cnn_augment_spec *s) {
    return s && (s->crop_pad > 0 || s->flip_p > 0 || s->erase_p > 0);
}

/* ---- the spec text ---- */

static int parse_num(const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (buf[0] == ' ' || buf[0] == '+') return -1;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + len || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_range(const char *s, size_t len, double *a, double *b) {
    const char *colon = memchr(s, ':', len);
    if (!colon) return -1;
    return parse_num(s, (size_t)(colon - s), a) || parse_num(colon + 1, len - (size_t)(colon - s) - 1, b) ? -1 : 0;
}

cnn_status cnn_augment_parse(cnn_ctx *ctx, const char *text, cnn_augment_spec *out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_augment_parse: out is NULL");
    cnn_augment_spec s = cnn_augment_spec_default();
    *out = s;
    if (!text) return CNN_OK;
    enum { K_CROP, K_FLIP, K_ERASE, K_AREA, K_RATIO, K_FILL, K_NONE, K_COUNT };
    static const char *const names[K_COUNT] = {"crop", "flip", "erase", "erase-area", "erase-ratio", "erase-fill",
                                               "none"};
    size_t seen_col[K_COUNT] = {0};
    size_t n_items = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *item = p;
        /* trim spaces */
        while (len && (*item == ' ' || *item == '\t')) item++, len--;
        while (len && (item[len - 1] == ' ' || item[len - 1] == '\t')) len--;
        size_t col = (size_t)(item - text) + 1;
        if (len == 0) {
            if (!comma && n_items == 0) break; /* "" or "   " */
            return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                             "augmentation '%s': column %zu: empty item (items are separated by single commas: "
                             "crop=P, flip[=Q], erase[=Q], erase-area=A:B, erase-ratio=R:S, erase-fill=zero|random, "
                             "none)",
                             text, col);
        }
        n_items++;
        const char *eq = memchr(item, '=', len);
        size_t klen = eq ? (size_t)(eq - item) : len;
        const char *val = eq ? eq + 1 : NULL;
        size_t vlen = eq ? len - klen - 1 : 0;
        int key = -1;
        for (int k = 0; k < K_COUNT; k++)
            if (strlen(names[k]) == klen && memcmp(names[k], item, klen) == 0) key = k;
        if (key < 0)
            return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                             "augmentation '%s': column %zu: unknown item '%.*s' (expected crop=P, flip[=Q], erase[=Q], "
                             "erase-area=A:B, erase-ratio=R:S, erase-fill=zero|random or none)",
                             text, col, (int)len, item);
        if (seen_col[key])
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "augmentation '%s': column %zu: '%s' is given twice (first at column %zu)",
                             text, col, names[key], seen_col[key]);
        seen_col[key] = col;
        double a = 0, b = 0;
        int bad = 0;
        const char *expect = "";
        switch (key) {
        case K_CROP:
            expect = "crop=P with an integer padding P from 0 to 64";
            if (!val || parse_num(val, vlen, &a) || a != floor(a) || a < 0 || a > CNN_AUGMENT_MAX_PAD)
                bad = 1;
            else
                s.crop_pad = (size_t)a;
            break;
        case K_FLIP:
            expect = "flip, or flip=Q with a probability Q from 0 to 1";
            if (!val) s.flip_p = 0.5f;
            else if (parse_num(val, vlen, &a) || a < 0 || a > 1) bad = 1;
            else s.flip_p = (float)a;
            break;
        case K_ERASE:
            expect = "erase, or erase=Q with a probability Q from 0 to 1";
            if (!val) s.erase_p = 0.5f;
            else if (parse_num(val, vlen, &a) || a < 0 || a > 1) bad = 1;
            else s.erase_p = (float)a;
            break;
        case K_AREA:
            expect = "erase-area=A:B, fractions of the image area with 0 < A <= B <= 1";
            if (!val || parse_range(val, vlen, &a, &b) || !(a > 0) || a > b || b > 1) bad = 1;
            else s.erase_area_min = (float)a, s.erase_area_max = (float)b;
            break;
        case K_RATIO:
            expect = "erase-ratio=R:S, aspect ratios (height / width) with 0 < R <= S <= 100";
            if (!val || parse_range(val, vlen, &a, &b) || !(a > 0) || a > b || b > 100) bad = 1;
            else s.erase_ratio_min = (float)a, s.erase_ratio_max = (float)b;
            break;
        case K_FILL:
            expect = "erase-fill=zero or erase-fill=random";
            if (val && vlen == 4 && memcmp(val, "zero", 4) == 0) s.erase_random = 0;
            else if (val && vlen == 6 && memcmp(val, "random", 6) == 0) s.erase_random = 1;
            else bad = 1;
            break;
        case K_NONE:
            expect = "none without a value";
            if (val) bad = 1;
            break;
        }
        if (bad)
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "augmentation '%s': column %zu: '%.*s': expected %s", text, col,
                             (int)len, item, expect);
        if (!comma) break;
        p = comma + 1;
    }
    if (seen_col[K_NONE] && n_items > 1)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "augmentation '%s': column %zu: 'none' cannot be combined with other items",
                         text, seen_col[K_NONE]);
    for (int k = K_AREA; k <= K_FILL; k++)
        if (seen_col[k] && !seen_col[K_ERASE])
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "augmentation '%s': column %zu: '%s' needs erase or erase=Q", text,
                             seen_col[k], names[k]);
    *out = s;
    return CNN_OK;
}

/* The shortest "%.Ng" text that reads back (as a float) to v. */
static void fmt_float(char *buf, size_t n, float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) return;
    }
}

cnn_status cnn_augment_to_text(cnn_ctx *ctx, const cnn_augment_spec *s, char **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_augment_to_text: out is NULL");
    *out = NULL;
    if (!s) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_augment_to_text: spec is NULL");
    char f1[32], f2[32];
    cnn_strbuf b = {0};
    const char *sep = "";
    if (s->crop_pad) {
        cnn_strbuf_printf(&b, "crop=%zu", s->crop_pad);
        sep = ",";
    }
    if (s->flip_p > 0) {
        if (s->flip_p == 0.5f) {
            cnn_strbuf_printf(&b, "%sflip", sep);
        } else {
            fmt_float(f1, sizeof f1, s->flip_p);
            cnn_strbuf_printf(&b, "%sflip=%s", sep, f1);
        }
        sep = ",";
    }
    if (s->erase_p > 0) {
        cnn_augment_spec d = cnn_augment_spec_default();
        fmt_float(f1, sizeof f1, s->erase_p);
        cnn_strbuf_printf(&b, "%serase=%s", sep, f1);
        if (s->erase_area_min != d.erase_area_min || s->erase_area_max != d.erase_area_max) {
            fmt_float(f1, sizeof f1, s->erase_area_min);
            fmt_float(f2, sizeof f2, s->erase_area_max);
            cnn_strbuf_printf(&b, ",erase-area=%s:%s", f1, f2);
        }
        if (s->erase_ratio_min != d.erase_ratio_min || s->erase_ratio_max != d.erase_ratio_max) {
            fmt_float(f1, sizeof f1, s->erase_ratio_min);
            fmt_float(f2, sizeof f2, s->erase_ratio_max);
            cnn_strbuf_printf(&b, ",erase-ratio=%s:%s", f1, f2);
        }
        if (s->erase_random) cnn_strbuf_printf(&b, ",erase-fill=random");
    }
    if (!b.len) cnn_strbuf_printf(&b, "none");
    if (b.failed || !b.data) {
        cnn_strbuf_release(&b);
        return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory");
    }
    size_t n = b.len;
    const char *buf = b.data;
    char *t = cnn_mem_alloc(ctx, n + 1);
    if (t) memcpy(t, buf, n + 1);
    cnn_strbuf_release(&b);
    if (!t) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory");
    *out = t;
    return CNN_OK;
}

/* ---- the per-sample primitive ---- */

uint64_t cnn_augment_sample_key(uint64_t seed, uint64_t epoch, uint64_t index) {
    return cnn_hash64(cnn_hash64(seed, epoch), index);
}

void cnn_augment_draw(const cnn_augment_spec *spec, cnn_shape shape, uint64_t key, cnn_augment_params *p) {
    memset(p, 0, sizeof *p);
    cnn_rng r;
    cnn_rng_seed(&r, key);
    const size_t h = shape.h, w = shape.w;
    if (spec->crop_pad > 0) {
        p->pad = spec->crop_pad;
        p->crop_dy = (size_t)cnn_rng_below(&r, 2 * (uint64_t)spec->crop_pad + 1);
        p->crop_dx = (size_t)cnn_rng_below(&r, 2 * (uint64_t)spec->crop_pad + 1);
    }
    if (spec->flip_p > 0) p->flip = cnn_rng_uniform(&r) < (double)spec->flip_p;
    if (spec->erase_p > 0 && cnn_rng_uniform(&r) < (double)spec->erase_p) {
        const double S = (double)h * (double)w;
        const double a0 = spec->erase_area_min, a1 = spec->erase_area_max;
        const double l0 = log((double)spec->erase_ratio_min), l1 = log((double)spec->erase_ratio_max);
        for (int t = 0; t < 10; t++) {
            double area = S * (a0 + (a1 - a0) * cnn_rng_uniform(&r));
            double ratio = exp(l0 + (l1 - l0) * cnn_rng_uniform(&r));
            double eh = round(sqrt(area * ratio)), ew = round(sqrt(area / ratio));
            if (eh >= 1 && ew >= 1 && eh <= (double)h && ew <= (double)w) {
                p->erase = 1;
                p->erase_h = (size_t)eh;
                p->erase_w = (size_t)ew;
                p->erase_y = (size_t)cnn_rng_below(&r, (uint64_t)(h - p->erase_h + 1));
                p->erase_x = (size_t)cnn_rng_below(&r, (uint64_t)(w - p->erase_w + 1));
                break;
            }
        }
        p->erase_random = spec->erase_random;
    }
    p->fill_seed = cnn_rng_u64(&r);
}

float cnn_augment_fill_value(uint64_t fill_seed, uint64_t j) {
    return (float)(cnn_hash64(fill_seed, j) >> 40) * 0x1.0p-24f;
}

void cnn_augment_apply(const cnn_augment_params *p, cnn_shape shape, const float *x, float *y) {
    const size_t c = shape.c, h = shape.h, w = shape.w;
    /* crop + flip as one gather: y[i][j] = xp[i + dy][(flip ? w-1-j : j) + dx], xp[a][b] = x[a-P][b-P] */
    for (size_t ch = 0; ch < c; ch++) {
        const float *xc = x + ch * h * w;
        float *yc = y + ch * h * w;
        for (size_t i = 0; i < h; i++) {
            float *yr = yc + i * w;
            size_t si = i + p->crop_dy; /* row in the padded image */
            if (si < p->pad || si - p->pad >= h) {
                memset(yr, 0, w * sizeof *yr);
                continue;
            }
            const float *xr = xc + (si - p->pad) * w;
            for (size_t j = 0; j < w; j++) {
                size_t sj = (p->flip ? w - 1 - j : j) + p->crop_dx;
                yr[j] = (sj < p->pad || sj - p->pad >= w) ? 0.0f : xr[sj - p->pad];
            }
        }
    }
    if (p->erase) {
        for (size_t ch = 0; ch < c; ch++)
            for (size_t i = p->erase_y; i < p->erase_y + p->erase_h && i < h; i++)
                for (size_t j = p->erase_x; j < p->erase_x + p->erase_w && j < w; j++) {
                    size_t e = (ch * h + i) * w + j;
                    y[e] = p->erase_random ? cnn_augment_fill_value(p->fill_seed, e) : 0.0f;
                }
    }
}

void cnn_augment_normalize(float *y, cnn_shape shape, const float *mean, const float *std) {
    const size_t plane = shape.h * shape.w;
    for (size_t ch = 0; ch < shape.c; ch++) {
        const float m = mean[ch], s = std[ch];
        float *yc = y + ch * plane;
        for (size_t j = 0; j < plane; j++) yc[j] = (yc[j] - m) / s;
    }
}

void cnn_augment_flip_batch(const float *x, size_t n, cnn_shape shape, float *y) {
    const size_t w = shape.w, rows = n * shape.c * shape.h;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < w; j++) y[r * w + j] = x[r * w + (w - 1 - j)];
}

/* ---- test-time augmentation ---- */

cnn_status cnn_net_forward_tta(cnn_net *net, const float *x, size_t n, float *probs) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (!x || !probs) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_forward_tta: %s is NULL", x ? "probs" : "x");
    if (n == 0) return CNN_OK;
    cnn_shape in = cnn_net_input_shape(net), os = cnn_net_output_shape(net);
    size_t per = 0, outs = 0, bytes = 0;
    if (!cnn_shape_count(in, &per) || !cnn_shape_count(os, &outs) || !cnn_size_mul3(n, per, sizeof(float), &bytes))
        return cnn_error(ctx, CNN_ERR_SHAPE, "cnn_net_forward_tta: a batch of %zu samples is too large", n);
    cnn_status st = CNN_OK;
    float *xf = NULL;
    CNN_TRY(cnn_net_forward(net, x, n, 0));
    size_t got = 0;
    const float *y = cnn_net_output(net, &got);
    if (!y || got != n) CNN_TRY(cnn_error(ctx, CNN_ERR_MISUSE, "cnn_net_forward_tta: the forward gave no output"));
    memcpy(probs, y, n * outs * sizeof(float));
    CNN_TRY(cnn_mem_alloc_checked(ctx, bytes, "the flipped TTA batch", (void **)&xf));
    cnn_augment_flip_batch(x, n, in, xf);
    CNN_TRY(cnn_net_forward(net, xf, n, 0));
    y = cnn_net_output(net, &got);
    for (size_t i = 0; i < n * outs; i++) probs[i] = (probs[i] + y[i]) * 0.5f;
cleanup:
    cnn_mem_free(ctx, xf);
    return st;
}

cnn_status cnn_net_evaluate_tta(cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out) {
    return cnn_net_evaluate_mode(net, ds, batch, 1, out, "cnn_net_evaluate_tta");
}
