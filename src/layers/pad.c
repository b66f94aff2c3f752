/* pad.c — pad: grow each (h, w) plane by rows and columns (ONNX Pad on the two spatial axes,
 * torch.nn.functional.pad with mode constant / reflect / replicate).
 *
 * Math      out (c, h + top + bottom, w + left + right); y[oy][ox] = x[src(oy - top)][src(ox - left)] where
 *           src(i) is i inside [0, n), and outside:
 *             constant   the value= constant (default 0)
 *             reflect    mirror without repeating the edge: -i, 2(n-1)-i      (needs pad < n)
 *             edge       the nearest edge element (clamp)
 *           Backward: dx[src] += dy for every output element that reads x (constant padding reads nothing).
 * Keys      top=, bottom=, left=, right= (>= 0, default 0), pad= (all four), value= (finite float),
 *           mode=constant|reflect|edge.
 * Layouts   x, dx: n x c x h x w; y, dy: n x c x oh x ow (NCHW).
 * FLOPs     0. Algorithm: one task per (sample, channel) plane over threads; the backward of a plane
 *           gathers into its own dx plane in a fixed order, so results do not depend on threads.
 * References ONNX Pad-13 (constant, reflect, edge); torch.nn.ReflectionPad2d, ReplicationPad2d.
 */
#include "layer.h"

#include <string.h>

typedef enum pad_mode { PAD_CONSTANT = 0, PAD_REFLECT, PAD_EDGE } pad_mode;
static const char *const pad_mode_names[] = {"constant", "reflect", "edge", NULL};

typedef struct pad_params {
    size_t top, bottom, left, right;
    double value;
    int mode;
} pad_params;

#define PAD_MAX ((size_t)1 << 20)

static cnn_status pad_parse(struct cnn_kv *kv, void *params) {
    pad_params *p = params;
    cnn_status st;
    size_t all = 0;
    int has_all = 0;
    if ((st = cnn_kv_size(kv, "pad", 0, PAD_MAX, &all, &has_all)) != CNN_OK) return st;
    p->top = p->bottom = p->left = p->right = all;
    if ((st = cnn_kv_size(kv, "top", 0, PAD_MAX, &p->top, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_size(kv, "bottom", 0, PAD_MAX, &p->bottom, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_size(kv, "left", 0, PAD_MAX, &p->left, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_size(kv, "right", 0, PAD_MAX, &p->right, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_float(kv, "value", -3.4e38, 3.4e38, &p->value, NULL)) != CNN_OK) return st;
    if ((st = cnn_kv_enum(kv, "mode", pad_mode_names, &p->mode, NULL)) != CNN_OK) return st;
    return CNN_OK;
}

static void pad_print(const void *params, cnn_strbuf *out) {
    const pad_params *p = params;
    char buf[64];
    cnn_strbuf_printf(out, " top=%zu bottom=%zu left=%zu right=%zu", p->top, p->bottom, p->left, p->right);
    if (p->mode != PAD_CONSTANT) cnn_strbuf_printf(out, " mode=%s", pad_mode_names[p->mode]);
    if (p->value != 0.0) {
        cnn_format_float(buf, sizeof buf, p->value);
        cnn_strbuf_printf(out, " value=%s", buf);
    }
}

static cnn_status pad_shape(cnn_layer *L) {
    const pad_params *p = L->params;
    cnn_shape s = L->in[0];
    if (p->mode == PAD_REFLECT && (p->top >= s.h || p->bottom >= s.h || p->left >= s.w || p->right >= s.w))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "reflect padding must be smaller than the input (%zux%zu)", s.h,
                               s.w);
    if (p->mode == PAD_EDGE && (s.h == 0 || s.w == 0))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "edge padding of an empty input");
    cnn_shape o = {s.c, s.h + p->top + p->bottom, s.w + p->left + p->right};
    size_t count;
    if (!cnn_shape_count(o, &count)) return cnn_layer_error(L, CNN_ERR_SHAPE, "output has too many elements");
    L->out = o;
    return CNN_OK;
}

static void pad_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    memset(s, 0, sizeof *s);
}

/* Source index of padded position i (already shifted by the leading pad) in [0, n), or -1 for none. */
static inline long src_index(long i, long n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_EDGE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i; /* reflect; pad < n keeps it in range */
}

typedef struct pad_job {
    const cnn_layer_run *r;
    const pad_params *p;
    size_t h, w, oh, ow;
} pad_job;

static void pad_fwd_task(void *arg, size_t plane, size_t thread) {
    (void)thread;
    const pad_job *j = arg;
    const float *x = j->r->x[0] + plane * j->h * j->w;
    float *y = j->r->y + plane * j->oh * j->ow;
    float v = (float)j->p->value;
    int mode = j->p->mode;
    for (size_t oy = 0; oy < j->oh; oy++) {
        long sy = src_index((long)oy - (long)j->p->top, (long)j->h, mode);
        float *yr = y + oy * j->ow;
        for (size_t ox = 0; ox < j->ow; ox++) {
            long sx = src_index((long)ox - (long)j->p->left, (long)j->w, mode);
            yr[ox] = (sy < 0 || sx < 0) ? v : x[(size_t)sy * j->w + (size_t)sx];
        }
    }
}

static void pad_bwd_task(void *arg, size_t plane, size_t thread) {
    (void)thread;
    const pad_job *j = arg;
    const float *dy = j->r->dy + plane * j->oh * j->ow;
    float *dx = j->r->dx[0] + plane * j->h * j->w;
    int mode = j->p->mode;
    if (!j->r->dx_accumulate[0]) memset(dx, 0, j->h * j->w * sizeof(float));
    for (size_t oy = 0; oy < j->oh; oy++) {
        long sy = src_index((long)oy - (long)j->p->top, (long)j->h, mode);
        if (sy < 0) continue;
        for (size_t ox = 0; ox < j->ow; ox++) {
            long sx = src_index((long)ox - (long)j->p->left, (long)j->w, mode);
            if (sx >= 0) dx[(size_t)sy * j->w + (size_t)sx] += dy[oy * j->ow + ox];
        }
    }
}

static pad_job make_job(const cnn_layer_run *r) {
    pad_job j = {r, r->L->params, r->L->in[0].h, r->L->in[0].w, r->L->out.h, r->L->out.w};
    return j;
}

static void pad_forward(const cnn_layer_run *r) {
    pad_job j = make_job(r);
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, pad_fwd_task, &j);
}

static void pad_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    pad_job j = make_job(r);
    cnn_pool_for(r->ctx, r->n * r->L->in[0].c, pad_bwd_task, &j);
}

const struct cnn_layer_ops cnn_layer_pad = {
    .name = "pad",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(pad_params),
    .parse = pad_parse,
    .print = pad_print,
    .shape = pad_shape,
    .sizes = pad_sizes,
    .forward = pad_forward,
    .backward_data = pad_backward_data,
};
