/* elementwise_const.c — const_op: one elementwise arithmetic operation between the input and a constant
 * (ONNX Add / Sub / Mul / Div where one operand is an initializer: input normalisation, scaling, a bias
 * that was not folded).
 *
 * Math      y = x + k (op=add), x - k (sub), k - x (rsub), x * k (mul), x / k (div), k / x (rdiv), where k is
 *             per=scalar   the value= key (default 0 for add/sub/rsub, 1 for mul/div/rdiv)
 *             per=channel  a buffer tensor <name>.value [c], k = value[channel]
 *             per=element  a buffer tensor <name>.value [c, h, w], one value per element of a sample
 *           Backward (dx only; k is a constant, not trained): add/sub dy, rsub -dy, mul dy*k, div dy/k,
 *           rdiv -dy*k/x^2. IEEE semantics throughout: NaN propagates, x/0 is +-inf or NaN.
 * Layouts   x, y, dx, dy: n x c x h x w (NCHW); out = in.
 * FLOPs     1 per element.
 * Algorithm one task per (sample, channel) plane over threads; plain loops the compiler vectorises.
 * References ONNX Add/Sub/Mul/Div-14 with unidirectional broadcasting of a constant.
 */
#include "layer.h"

#include <string.h>

typedef enum cop_op { COP_ADD = 0, COP_SUB, COP_RSUB, COP_MUL, COP_DIV, COP_RDIV } cop_op;
static const char *const cop_op_names[] = {"add", "sub", "rsub", "mul", "div", "rdiv", NULL};
typedef enum cop_per { PER_SCALAR = 0, PER_CHANNEL, PER_ELEMENT } cop_per;
static const char *const cop_per_names[] = {"scalar", "channel", "element", NULL};

typedef struct cop_params {
    int op, per;
    int has_value;
    double value;
} cop_params;

#if defined(_OPENMP)
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

static int op_is_mul(int op) { return op == COP_MUL || op == COP_DIV || op == COP_RDIV; }

static cnn_status cop_parse(struct cnn_kv *kv, void *params) {
    cop_params *p = params;
    cnn_status st;
    int has_op = 0;
    if ((st = cnn_kv_enum(kv, "op", cop_op_names, &p->op, &has_op)) != CNN_OK) return st;
    if (!has_op) return cnn_kv_error(kv, NULL, "missing key 'op' (add|sub|rsub|mul|div|rdiv)");
    if ((st = cnn_kv_enum(kv, "per", cop_per_names, &p->per, NULL)) != CNN_OK) return st;
    p->value = op_is_mul(p->op) ? 1.0 : 0.0;
    if ((st = cnn_kv_float(kv, "value", -3.4e38, 3.4e38, &p->value, &p->has_value)) != CNN_OK) return st;
    if (p->has_value && p->per != PER_SCALAR)
        return cnn_kv_error(kv, "value", "value= is for per=scalar; per=%s reads the tensor <name>.value",
                            cop_per_names[p->per]);
    return CNN_OK;
}

static void cop_print(const void *params, cnn_strbuf *out) {
    const cop_params *p = params;
    char buf[64];
    cnn_strbuf_printf(out, " op=%s", cop_op_names[p->op]);
    if (p->per != PER_SCALAR) cnn_strbuf_printf(out, " per=%s", cop_per_names[p->per]);
    else {
        cnn_format_float(buf, sizeof buf, p->value);
        cnn_strbuf_printf(out, " value=%s", buf);
    }
}

static cnn_status cop_shape(cnn_layer *L) {
    L->out = L->in[0];
    return CNN_OK;
}

static void cop_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    const cop_params *p = L->params;
    cnn_shape in = L->in[0];
    memset(s, 0, sizeof *s);
    cnn_tensor_role role = op_is_mul(p->op) ? CNN_ROLE_ONES : CNN_ROLE_ZEROS;
    if (p->per == PER_CHANNEL) {
        s->tensors[0] = (cnn_tensor_desc){.suffix = "value", .ndim = 1, .dims = {in.c}, .trainable = 0,
                                          .role = role, .fan_in = 1, .fan_out = 1};
        s->n_tensors = 1;
    } else if (p->per == PER_ELEMENT) {
        s->tensors[0] = (cnn_tensor_desc){.suffix = "value", .ndim = 3, .dims = {in.c, in.h, in.w},
                                          .trainable = 0, .role = role, .fan_in = 1, .fan_out = 1};
        s->n_tensors = 1;
    }
    s->flops = (uint64_t)in.c * in.h * in.w;
}

typedef struct cop_job {
    const cnn_layer_run *r;
    const cop_params *p;
    size_t c, hw;
} cop_job;

/* The constant for plane (sample, channel): k[0..hw) with stride ks (0: one value). */
static const float *plane_k(const cop_job *j, size_t plane, float *scalar, size_t *ks) {
    size_t ch = plane % j->c;
    if (j->p->per == PER_SCALAR) {
        *scalar = (float)j->p->value;
        *ks = 0;
        return scalar;
    }
    if (j->p->per == PER_CHANNEL) {
        *ks = 0;
        return j->r->buf + ch;
    }
    *ks = 1;
    return j->r->buf + ch * j->hw;
}

static void cop_fwd_task(void *arg, size_t plane, size_t thread) {
    (void)thread;
    const cop_job *j = arg;
    float sc;
    size_t ks, hw = j->hw;
    const float *k = plane_k(j, plane, &sc, &ks);
    const float *x = j->r->x[0] + plane * hw;
    float *y = j->r->y + plane * hw;
    switch (j->p->op) {
    case COP_ADD: SIMD for (size_t i = 0; i < hw; i++) y[i] = x[i] + k[i * ks]; break;
    case COP_SUB: SIMD for (size_t i = 0; i < hw; i++) y[i] = x[i] - k[i * ks]; break;
    case COP_RSUB: SIMD for (size_t i = 0; i < hw; i++) y[i] = k[i * ks] - x[i]; break;
    case COP_MUL: SIMD for (size_t i = 0; i < hw; i++) y[i] = x[i] * k[i * ks]; break;
    case COP_DIV: SIMD for (size_t i = 0; i < hw; i++) y[i] = x[i] / k[i * ks]; break;
    default: SIMD for (size_t i = 0; i < hw; i++) y[i] = k[i * ks] / x[i]; break;
    }
}

static void cop_bwd_task(void *arg, size_t plane, size_t thread) {
    (void)thread;
    const cop_job *j = arg;
    float sc;
    size_t ks, hw = j->hw;
    const float *k = plane_k(j, plane, &sc, &ks);
    const float *x = j->r->x[0] + plane * hw, *dy = j->r->dy + plane * hw;
    float *dx = j->r->dx[0] + plane * hw;
    /* Stored or accumulated; every iteration reads dy[i] (and x[i]) before writing dx[i], so dx may alias dy. */
#define COP_BWD(expr)                                                                                      \
    do {                                                                                                   \
        if (j->r->dx_accumulate[0]) {                                                                      \
            SIMD for (size_t i = 0; i < hw; i++) dx[i] += (expr);                                          \
        } else {                                                                                           \
            SIMD for (size_t i = 0; i < hw; i++) dx[i] = (expr);                                           \
        }                                                                                                  \
    } while (0)
    switch (j->p->op) {
    case COP_ADD:
    case COP_SUB: COP_BWD(dy[i]); break;
    case COP_RSUB: COP_BWD(-dy[i]); break;
    case COP_MUL: COP_BWD(dy[i] * k[i * ks]); break;
    case COP_DIV: COP_BWD(dy[i] / k[i * ks]); break;
    default: COP_BWD(-dy[i] * k[i * ks] / (x[i] * x[i])); break;
    }
#undef COP_BWD
}

static cop_job make_job(const cnn_layer_run *r) {
    cop_job j = {r, r->L->params, r->L->in[0].c, r->L->in[0].h * r->L->in[0].w};
    return j;
}

static void cop_forward(const cnn_layer_run *r) {
    cop_job j = make_job(r);
    cnn_pool_for(r->ctx, r->n * j.c, cop_fwd_task, &j);
}

static void cop_backward_data(const cnn_layer_run *r) {
    if (!r->dx[0]) return;
    cop_job j = make_job(r);
    cnn_pool_for(r->ctx, r->n * j.c, cop_bwd_task, &j);
}

const struct cnn_layer_ops cnn_layer_const_op = {
    .name = "const_op",
    .min_inputs = 1,
    .max_inputs = 1,
    .params_size = sizeof(cop_params),
    .parse = cop_parse,
    .print = cop_print,
    .shape = cop_shape,
    .sizes = cop_sizes,
    .forward = cop_forward,
    .backward_data = cop_backward_data,
};
