/* clip.c — clip: clamp every element to [min, max] (ONNX Clip, torch.clamp).
 *
 * Math      y = min if x < min, max if x > max, else x. NaN stays NaN (both comparisons are false).
 *           Backward (torch.clamp's): dx = dy where min <= x <= max, else 0 (0 for NaN x).
 * Keys      min=, max= (finite floats; absent: no bound on that side); min <= max.
 * Layouts   x, y, dx, dy: n * c*h*w floats, NCHW; out = in.
 * FLOPs     2 per element. Algorithm: vectorisable select loops, chunks over threads.
 * References ONNX Clip-13; torch.clamp.
 */
#include "layer.h"

#include <math.h>
#include <string.h>

#define CHUNK ((size_t)16384)

typedef struct clip_params {
    int has_min, has_max;
    double min, max;
} clip_params;

#if defined(_OPENMP)
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

static cnn_status clip_parse(struct cnn_kv *kv, void *params) {
    clip_params *p = params;
    cnn_status st;
    if ((st = cnn_kv_float(kv, "min", -HUGE_VAL, HUGE_VAL, &p->min, &p->has_min)) != CNN_OK) return st;
    if ((st = cnn_kv_float(kv, "max", -HUGE_VAL, HUGE_VAL, &p->max, &p->has_max)) != CNN_OK) return st;
    if (p->has_min && p->has_max && p->min > p->max)
        return cnn_kv_error(kv, "max", "max (%g) is below min (%g)", p->max, p->min);
    return CNN_OK;
}

static void clip_print(const void *params, cnn_strbuf *out) {
    const clip_params *p = params;
    char buf[64];
    if (p->has_min) {
        cnn_format_float(buf, sizeof buf, p->min);
        cnn_strbuf_printf(out, " min=%s", buf);
    }
    if (p->has_max) {
        cnn_format_float(buf, sizeof buf, p->max);
        cnn_strbuf_printf(out, " max=%s", buf);
    }
}

static cnn_status clip_shape(cnn_layer *L) {
    L->out = L->in[0];
    return CNN_OK;
}

static void clip_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    memset(s, 0, sizeof *s);
    s->flops = (uint64_t)2 * L->in[0].c * L->in[0].h * L->in[0].w;
}

typedef struct clip_job {
    const cnn_layer_run *r;
    size_t total;
    float lo, hi;
} clip_job;

static void clip_fwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const clip_job *j = arg;
    size_t b = task * CHUNK, e = b + CHUNK < j->total ? b + CHUNK : j->total;
    const float *x = j->r->x[0];
    float *y = j->r->y, lo = j->lo, hi = j->hi;
    SIMD
    for (size_t i = b; i < e; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

static void clip_bwd_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const clip_job *j = arg;
    size_t b = task * CHUNK, e = b + CHUNK < j->total ? b + CHUNK : j->total;
    const float *x = j->r->x[0], *dy = j->r->dy;
    float *dx = j->r->dx[0], lo = j->lo, hi = j->hi;
    if (j->r->dx_accumulate[0]) {
        SIMD
        for (size_t i = b; i < e; i++) dx[i] += (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.0f;
    } else {
        SIMD
        for (size_t i = b; i < e; i++) dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.0f;
    }
}

static clip_job make_job(const cnn_layer_run *r) {
    const clip_params *p = r->L->params;
    clip_job j = {r, r->n * r->L->out.c * r->L->out.h * r->L->out.w, p->has_min ? (float)p->min : -INFINITY,
                  p->has_max ? (float)p->max : INFINITY};
    return j;
}

static void clip_forward(const cnn_layer_run *r) {
    clip_job j = make_job(r);
    if (j.total) cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, clip_fwd_task, &j);
}

static void clip_backward_data(const cnn_layer_run *r) {
    clip_job j = make_job(r);
    if (j.total && r->dx[0]) cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, clip_bwd_task, &j);
}

const struct cnn_layer_ops cnn_layer_clip = {
    .name = "clip",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(clip_params),
    .parse = clip_parse,
    .print = clip_print,
    .shape = clip_shape,
    .sizes = clip_sizes,
    .forward = clip_forward,
    .backward_data = clip_backward_data,
};
