/* activations.c — elementwise activation layers: relu, leaky_relu, sigmoid, tanh, gelu.
 *
 * Math (per element, y = f(x), dx = f'(x) * dy):
 *   relu        y = max(0, x)                      dx = dy if x > 0 else 0
 *   leaky_relu  y = x if x > 0 else slope * x      dx = dy if x > 0 else slope * dy      (key slope=0.01)
 *   sigmoid     y = 1 / (1 + exp(-x))              dx = dy * y * (1 - y)
 *   tanh        y = tanh(x)                        dx = dy * (1 - y^2)
 *   gelu        approximate=none (default, PyTorch's exact form):
 *                 y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
 *                 dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
 *               approximate=tanh:
 *                 u = sqrt(2/pi) (x + 0.044715 x^3),  t = tanh(u),  y = 0.5 x (1 + t)
 *                 dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
 *   The derivatives at the kinks (relu, leaky_relu at x = 0) follow PyTorch: the x <= 0 branch.
 *
 * NaN: every forward maps NaN to NaN (relu is written so that NaN is kept, never max(0, NaN) = 0).
 *
 * Layouts: x, y, dx, dy are n * c*h*w floats, NCHW (the shape is kept: out = in). Any shape is accepted.
 * FLOPs per output element: relu 1, leaky_relu 2, sigmoid / tanh / gelu 4 (a nominal count; the
 * transcendental calls are counted as one).
 *
 * Algorithm: plain loops over contiguous chunks of CHUNK elements, the chunks spread over the context's
 * threads with cnn_pool_for (one task per chunk; a tensor below one chunk runs on the calling thread).
 * relu / leaky_relu and the sigmoid / tanh backward loops are selects and products that the compiler
 * vectorises (`omp simd`); sigmoid / tanh forward call expf / tanhf; gelu computes in double per element (erf, and x^3 without overflow for huge |x|).
 * Backward of sigmoid and tanh reads the saved output y; the others read x. Nothing is allocated and no
 * scratch or saved memory is needed (x and y are kept by the network in training).
 *
 * References: PyTorch torch.nn.ReLU / LeakyReLU / Sigmoid / Tanh / GELU (approximate='none'|'tanh');
 * Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415.
 */
#include "layer.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define CHUNK ((size_t)16384)

/* The simple loops are vectorised on request (-O2 alone only vectorises loops without a tail). In-place use
 * (y == x, dx == dy) is fine: each iteration reads and writes only element i. */
#if defined(_OPENMP)
#define CNN_SIMD _Pragma("omp simd")
#else
#define CNN_SIMD
#endif
/* leaky_relu's select between v and slope * v is only if-converted when the multiply may be speculated;
 * FP exception flags are not part of the library's contract (values, NaN included, are unchanged). */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_TRAP __attribute__((optimize("no-trapping-math")))
#else
#define NO_TRAP
#endif

extern const struct cnn_layer_ops cnn_layer_relu, cnn_layer_leaky_relu, cnn_layer_sigmoid, cnn_layer_tanh,
    cnn_layer_gelu;

typedef enum act_kind { ACT_RELU = 0, ACT_LEAKY, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_GELU_TANH } act_kind;

typedef struct act_params {
    double slope;    /* leaky_relu */
    int approximate; /* gelu: 0 none (erf), 1 tanh */
} act_params;

static const char *const gelu_approx_names[] = {"none", "tanh", NULL};

#define LEAKY_DEFAULT_SLOPE 0.01

/* ---- elementwise loops on [b, e) ---- */

static void relu_fwd(const float *x, float *y, size_t b, size_t e) {
    CNN_SIMD
    for (size_t i = b; i < e; i++) {
        float v = x[i];
        y[i] = (v > 0.0f || v != v) ? v : 0.0f;
    }
}

static void relu_bwd(const float *x, const float *dy, float *dx, size_t b, size_t e, int acc) {
    if (acc) {
        CNN_SIMD
        for (size_t i = b; i < e; i++) {
            float g = dy[i];
            dx[i] += x[i] > 0.0f ? g : 0.0f;
        }
    } else {
        CNN_SIMD
        for (size_t i = b; i < e; i++) {
            float g = dy[i];
            dx[i] = x[i] > 0.0f ? g : 0.0f;
        }
    }
}

NO_TRAP static void leaky_fwd(const float *x, float *y, size_t b, size_t e, float slope) {
    CNN_SIMD
    for (size_t i = b; i < e; i++) {
        float v = x[i];
        y[i] = v > 0.0f ? v : slope * v; /* NaN: slope * NaN = NaN */
    }
}

NO_TRAP static void leaky_bwd(const float *x, const float *dy, float *dx, size_t b, size_t e, int acc, float slope) {
    if (acc) {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] += x[i] > 0.0f ? dy[i] : slope * dy[i];
    } else {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
    }
}

static void sigmoid_fwd(const float *x, float *y, size_t b, size_t e) {
    for (size_t i = b; i < e; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_bwd(const float *y, const float *dy, float *dx, size_t b, size_t e, int acc) {
    if (acc) {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] += dy[i] * (y[i] * (1.0f - y[i]));
    } else {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
    }
}

static void tanh_fwd(const float *x, float *y, size_t b, size_t e) {
    for (size_t i = b; i < e; i++) y[i] = tanhf(x[i]);
}

static void tanh_bwd(const float *y, const float *dy, float *dx, size_t b, size_t e, int acc) {
    if (acc) {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
    } else {
        CNN_SIMD
        for (size_t i = b; i < e; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
    }
}

#define SQRT1_2 0.70710678118654752440  /* 1 / sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define SQRT_2_PI 0.79788456080286535588 /* sqrt(2 / pi) */
#define GELU_C 0.044715

static void gelu_fwd(const float *x, float *y, size_t b, size_t e) {
    for (size_t i = b; i < e; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + erf(v * SQRT1_2)));
    }
}

static void gelu_bwd(const float *x, const float *dy, float *dx, size_t b, size_t e, int acc) {
    for (size_t i = b; i < e; i++) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v * SQRT1_2));
        double pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
        float g = (float)((double)dy[i] * (cdf + v * pdf));
        dx[i] = acc ? dx[i] + g : g;
    }
}

static void gelu_tanh_fwd(const float *x, float *y, size_t b, size_t e) {
    for (size_t i = b; i < e; i++) {
        double v = x[i];
        double t = tanh(SQRT_2_PI * (v + GELU_C * v * v * v));
        y[i] = (float)(0.5 * v * (1.0 + t));
    }
}

static void gelu_tanh_bwd(const float *x, const float *dy, float *dx, size_t b, size_t e, int acc) {
    for (size_t i = b; i < e; i++) {
        double v = x[i];
        double t = tanh(SQRT_2_PI * (v + GELU_C * v * v * v));
        double d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_PI * (1.0 + 3.0 * GELU_C * v * v);
        float g = (float)((double)dy[i] * d);
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* ---- drivers ---- */

typedef struct act_job {
    act_kind kind;
    float slope;
    const float *x, *y, *dy;
    float *out; /* y (forward) or dx (backward) */
    size_t total;
    int backward, acc;
} act_job;

static void act_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    const act_job *j = arg;
    size_t b = task * CHUNK;
    size_t e = b + CHUNK < j->total ? b + CHUNK : j->total;
    if (!j->backward) {
        switch (j->kind) {
        case ACT_RELU: relu_fwd(j->x, j->out, b, e); break;
        case ACT_LEAKY: leaky_fwd(j->x, j->out, b, e, j->slope); break;
        case ACT_SIGMOID: sigmoid_fwd(j->x, j->out, b, e); break;
        case ACT_TANH: tanh_fwd(j->x, j->out, b, e); break;
        case ACT_GELU: gelu_fwd(j->x, j->out, b, e); break;
        case ACT_GELU_TANH: gelu_tanh_fwd(j->x, j->out, b, e); break;
        }
    } else {
        switch (j->kind) {
        case ACT_RELU: relu_bwd(j->x, j->dy, j->out, b, e, j->acc); break;
        case ACT_LEAKY: leaky_bwd(j->x, j->dy, j->out, b, e, j->acc, j->slope); break;
        case ACT_SIGMOID: sigmoid_bwd(j->y, j->dy, j->out, b, e, j->acc); break;
        case ACT_TANH: tanh_bwd(j->y, j->dy, j->out, b, e, j->acc); break;
        case ACT_GELU: gelu_bwd(j->x, j->dy, j->out, b, e, j->acc); break;
        case ACT_GELU_TANH: gelu_tanh_bwd(j->x, j->dy, j->out, b, e, j->acc); break;
        }
    }
}

static act_kind kind_of(const cnn_layer_run *r, float *slope) {
    const struct cnn_layer_ops *ops = r->L->ops;
    const act_params *p = r->L->params;
    *slope = 0.0f;
    if (ops == &cnn_layer_relu) return ACT_RELU;
    if (ops == &cnn_layer_leaky_relu) {
        *slope = (float)p->slope;
        return ACT_LEAKY;
    }
    if (ops == &cnn_layer_sigmoid) return ACT_SIGMOID;
    if (ops == &cnn_layer_tanh) return ACT_TANH;
    return p->approximate ? ACT_GELU_TANH : ACT_GELU;
}

static void act_run(const cnn_layer_run *r, int backward) {
    act_job j;
    memset(&j, 0, sizeof j);
    j.kind = kind_of(r, &j.slope);
    j.total = r->n * r->L->in[0].c * r->L->in[0].h * r->L->in[0].w;
    j.x = r->x[0];
    j.y = r->y;
    j.backward = backward;
    if (backward) {
        if (!r->dx[0]) return;
        j.dy = r->dy;
        j.out = r->dx[0];
        j.acc = r->dx_accumulate[0];
    } else {
        j.out = r->y;
    }
    if (j.total == 0) return;
    cnn_pool_for(r->ctx, (j.total + CHUNK - 1) / CHUNK, act_task, &j);
}

static void act_forward(const cnn_layer_run *r) { act_run(r, 0); }
static void act_backward_data(const cnn_layer_run *r) { act_run(r, 1); }

/* ---- parse / print / shape / sizes ---- */

static cnn_status act_parse_none(struct cnn_kv *kv, void *params) {
    (void)kv;
    (void)params;
    return CNN_OK;
}

static cnn_status leaky_parse(struct cnn_kv *kv, void *params) {
    act_params *p = params;
    p->slope = LEAKY_DEFAULT_SLOPE;
    return cnn_kv_float(kv, "slope", -FLT_MAX, FLT_MAX, &p->slope, NULL);
}

static cnn_status gelu_parse(struct cnn_kv *kv, void *params) {
    act_params *p = params;
    p->approximate = 0;
    return cnn_kv_enum(kv, "approximate", gelu_approx_names, &p->approximate, NULL);
}

static void act_print_none(const void *params, cnn_strbuf *out) {
    (void)params;
    (void)out;
}

static void leaky_print(const void *params, cnn_strbuf *out) {
    const act_params *p = params;
    if (p->slope != LEAKY_DEFAULT_SLOPE) {
        char buf[64];
        cnn_format_float(buf, sizeof buf, p->slope);
        cnn_strbuf_printf(out, " slope=%s", buf);
    }
}

static void gelu_print(const void *params, cnn_strbuf *out) {
    const act_params *p = params;
    if (p->approximate) cnn_strbuf_printf(out, " approximate=%s", gelu_approx_names[p->approximate]);
}

static cnn_status act_shape(cnn_layer *L) {
    L->out = L->in[0];
    return CNN_OK;
}

static void act_sizes_flops(cnn_layer_sizes *s, const cnn_layer *L, uint64_t per_elem) {
    size_t count = 0;
    (void)cnn_shape_count(L->out, &count); /* the network has checked the total */
    memset(s, 0, sizeof *s);
    s->flops = (uint64_t)count * per_elem;
}

static void relu_sizes(const cnn_layer *L, cnn_layer_sizes *s) { act_sizes_flops(s, L, 1); }
static void leaky_sizes(const cnn_layer *L, cnn_layer_sizes *s) { act_sizes_flops(s, L, 2); }
static void act4_sizes(const cnn_layer *L, cnn_layer_sizes *s) { act_sizes_flops(s, L, 4); }

#define ACT_OPS(sym, kw, parse_fn, print_fn, sizes_fn)                                                     \
    const struct cnn_layer_ops sym = {                                                                     \
        .name = kw,                                                                                        \
        .min_inputs = 1,                                                                                   \
        .max_inputs = 1,                                                                                   \
        .params_size = sizeof(act_params),                                                                 \
        .parse = parse_fn,                                                                                 \
        .print = print_fn,                                                                                 \
        .shape = act_shape,                                                                                \
        .sizes = sizes_fn,                                                                                 \
        .forward = act_forward,                                                                            \
        .backward_data = act_backward_data,                                                                \
    }

ACT_OPS(cnn_layer_relu, "relu", act_parse_none, act_print_none, relu_sizes);
ACT_OPS(cnn_layer_leaky_relu, "leaky_relu", leaky_parse, leaky_print, leaky_sizes);
ACT_OPS(cnn_layer_sigmoid, "sigmoid", act_parse_none, act_print_none, act4_sizes);
ACT_OPS(cnn_layer_tanh, "tanh", act_parse_none, act_print_none, act4_sizes);
ACT_OPS(cnn_layer_gelu, "gelu", gelu_parse, gelu_print, act4_sizes);
