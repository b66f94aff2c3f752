/* test_onnx.c — the layers the ONNX importer added and the importer / exporter themselves.
 *
 * Layers (th_check: forward against float64 references written here, dx by central differences, odd
 *   shapes, 1 and 2 threads): clip, log_softmax, pad (constant / reflect / edge, asymmetric), const_op
 *   (every op, per scalar / channel / element), reshape; NaN propagates through clip and const_op.
 * Import of models built here with protobuf-c: Conv (groups, dilation, asymmetric pads) + BatchNorm + Relu
 *   + MaxPool + GlobalAveragePool + Flatten + Gemm(transB, alpha, beta) against the same net built from model
 *   text with the same weights; Mul/Sub by per-channel and scalar constants, Softmax, LogSoftmax, Clip, Pad,
 *   Reshape, Transpose of an initializer (folded), MatMul + Add against float64 references; old opsets
 *   (Pad and Clip by attributes).
 * Bad files: empty, random bytes, truncated at many lengths, an unsupported op (the message names the node
 *   and the op), an unsupported attribute, external data, a cycle, a dangling input, two data inputs.
 * Export: a net with every exportable layer -> ONNX -> import gives the same outputs; the file passes
 *   onnx.checker when /usr/bin/python3 has onnx. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#if CNN_HAVE_ONNX
#include "cnn_onnx.pb-c.h"
#endif

/* ---------------- layers ---------------- */

typedef struct shape_case {
    size_t c, h, w;
} shape_case;

static const th_tolerance TOL = {.forward = 1e-6, .grad = 1e-4, .fd_step = 1e-6, .fd_points = 0};

typedef struct clip_ref {
    double lo, hi;
} clip_ref;

static void ref_clip(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params, (void)training;
    const clip_ref *c = user;
    (void)n;
    for (size_t i = 0; i < n * 30; i++) y[i] = x[i] < c->lo ? c->lo : x[i] > c->hi ? c->hi : x[i];
}

static void test_clip_layer(void **state) {
    (void)state;
    clip_ref c = {-0.3, 0.45};
    for (size_t threads = 1; threads <= 2; threads++) {
        th_net t;
        th_build(&t, "input c=5 h=3 w=2\nclip min=-0.3 max=0.45\n", 7, 11, threads);
        /* keep samples away from the kinks so central differences are clean */
        for (size_t i = 0; i < t.n * t.in_count; i++)
            if (fabsf(t.x[i] + 0.3f) < 1e-3f || fabsf(t.x[i] - 0.45f) < 1e-3f) t.x[i] += 0.01f;
        th_check(&t, ref_clip, &c, 1, TOL);
        th_check(&t, ref_clip, &c, 0, TOL);
        th_free(&t);
    }
    /* NaN stays NaN; one-sided bounds */
    cnn_ctx *ctx;
    cnn_net *net;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    /* the network refuses non-finite inputs: make them with x / 0 (0/0 = NaN, +-1/0 = +-inf) */
    const char *m = "input c=4 h=1 w=1\nconst_op op=div value=0\nclip min=0\n";
    assert_int_equal(cnn_net_parse(ctx, m, strlen(m), "t", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 1, 0), CNN_OK);
    float x[4] = {0.0f, -2.0f, 3.0f, -1.0f};
    assert_int_equal(cnn_net_forward(net, x, 1, 0), CNN_OK);
    const float *y = cnn_net_output(net, NULL);
    assert_true(isnan(y[0]));
    assert_true(y[1] == 0.0f && y[2] == INFINITY && y[3] == 0.0f);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    th_expect_error("input c=4 h=1 w=1\nclip min=2 max=1\n", CNN_ERR_FORMAT, "max");
}

static void ref_lsm(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params, (void)training;
    const shape_case *s = user;
    size_t hw = s->h * s->w;
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < hw; p++) {
            const double *xr = x + i * s->c * hw + p;
            double *yr = y + i * s->c * hw + p, sum = 0;
            for (size_t k = 0; k < s->c; k++) sum += exp(xr[k * hw]);
            for (size_t k = 0; k < s->c; k++) yr[k * hw] = xr[k * hw] - log(sum);
        }
}

static void test_log_softmax_layer(void **state) {
    (void)state;
    static const struct {
        const char *model;
        shape_case s;
        size_t n, threads;
    } cases[] = {
        {"input c=7 h=1 w=1\nlog_softmax\n", {7, 1, 1}, 5, 1},
        {"input c=5 h=3 w=2\nlog_softmax\n", {5, 3, 2}, 3, 2},
        {"input c=1 h=1 w=3\nlog_softmax\n", {1, 1, 3}, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_net t;
        th_build(&t, cases[i].model, cases[i].n, 70 + i, cases[i].threads);
        for (size_t k = 0; k < t.n * t.in_count; k++) t.x[k] *= 3.0f;
        th_check(&t, ref_lsm, (void *)&cases[i].s, 1, TOL);
        th_free(&t);
    }
}

typedef struct pad_ref {
    size_t c, h, w, t, b, l, r;
    int mode; /* 0 constant 1 reflect 2 edge */
    double value;
} pad_ref;

static long src_of(long i, long n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == 0) return -1;
    if (mode == 2) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

static void ref_pad(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params, (void)training;
    const pad_ref *p = user;
    size_t oh = p->h + p->t + p->b, ow = p->w + p->l + p->r;
    for (size_t pl = 0; pl < n * p->c; pl++)
        for (size_t oy = 0; oy < oh; oy++)
            for (size_t ox = 0; ox < ow; ox++) {
                long sy = src_of((long)oy - (long)p->t, (long)p->h, p->mode), sx = src_of((long)ox - (long)p->l, (long)p->w, p->mode);
                y[(pl * oh + oy) * ow + ox] = sy < 0 || sx < 0 ? p->value : x[(pl * p->h + (size_t)sy) * p->w + (size_t)sx];
            }
}

static void test_pad_layer(void **state) {
    (void)state;
    static const struct {
        const char *model;
        pad_ref p;
        size_t threads;
    } cases[] = {
        {"input c=3 h=4 w=5\npad top=1 bottom=2 left=0 right=3 value=0.5\n", {3, 4, 5, 1, 2, 0, 3, 0, 0.5}, 1},
        {"input c=2 h=4 w=3\npad top=3 bottom=1 left=2 right=1 mode=reflect\n", {2, 4, 3, 3, 1, 2, 1, 1, 0}, 2},
        {"input c=2 h=3 w=3\npad top=2 bottom=0 left=4 right=1 mode=edge\n", {2, 3, 3, 2, 0, 4, 1, 2, 0}, 1},
        {"input c=1 h=1 w=7\npad left=2 right=2\n", {1, 1, 7, 0, 0, 2, 2, 0, 0}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_net t;
        th_build(&t, cases[i].model, 3, 90 + i, cases[i].threads);
        th_check(&t, ref_pad, (void *)&cases[i].p, 1, TOL);
        th_free(&t);
    }
    th_expect_error("input c=1 h=2 w=2\npad top=2 mode=reflect\n", CNN_ERR_SHAPE, "reflect");
    th_expect_error("input c=1 h=2 w=2\npad mode=wrap\n", CNN_ERR_FORMAT, "mode");
}

typedef struct cop_ref {
    int op;  /* 0 add 1 sub 2 rsub 3 mul 4 div 5 rdiv */
    int per; /* 0 scalar 1 channel 2 element */
    double value;
    size_t c, hw;
} cop_ref;

static void ref_cop(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)training;
    const cop_ref *p = user;
    for (size_t i = 0; i < n * p->c * p->hw; i++) {
        size_t e = i % (p->c * p->hw);
        double k = p->per == 0 ? p->value : p->per == 1 ? params[0][e / p->hw] : params[0][e];
        double v = x[i];
        switch (p->op) {
        case 0: y[i] = v + k; break;
        case 1: y[i] = v - k; break;
        case 2: y[i] = k - v; break;
        case 3: y[i] = v * k; break;
        case 4: y[i] = v / k; break;
        default: y[i] = k / v; break;
        }
    }
}

static void test_const_op_layer(void **state) {
    (void)state;
    static const char *const ops[] = {"add", "sub", "rsub", "mul", "div", "rdiv"};
    static const char *const pers[] = {"scalar", "channel", "element"};
    for (int op = 0; op < 6; op++)
        for (int per = 0; per < 3; per++) {
            char model[256];
            if (per == 0)
                snprintf(model, sizeof model, "input c=3 h=2 w=5\nconst_op op=%s value=1.75\n", ops[op]);
            else
                snprintf(model, sizeof model, "input c=3 h=2 w=5\nconst_op op=%s per=%s\n", ops[op], pers[per]);
            th_net t;
            th_build(&t, model, 3, 200 + (uint64_t)(op * 3 + per), 1 + (size_t)(op & 1));
            /* keep divisors away from 0: x for rdiv, the buffer for div (th_build perturbed it) */
            cnn_param p;
            for (size_t i = 0; i < t.n * t.in_count; i++) t.x[i] = t.x[i] < 0 ? t.x[i] - 0.5f : t.x[i] + 0.5f;
            if (per && cnn_net_param_at(t.net, 0, &p) == CNN_OK)
                for (size_t i = 0; i < p.count; i++) p.data[i] = p.data[i] < 0 ? p.data[i] - 0.5f : p.data[i] + 0.5f;
            cop_ref r = {op, per, 1.75, 3, 10};
            th_check(&t, ref_cop, &r, 1, TOL);
            th_free(&t);
        }
    th_expect_error("input c=3 h=1 w=1\nconst_op value=2\n", CNN_ERR_FORMAT, "op");
    th_expect_error("input c=3 h=1 w=1\nconst_op op=mul per=channel value=2\n", CNN_ERR_FORMAT, "value");
}

typedef struct rs_ref {
    size_t count;
} rs_ref;

static void ref_copy(void *user, size_t n, const double *x, const double *const *params, double *y, int training) {
    (void)params, (void)training;
    const rs_ref *r = user;
    memcpy(y, x, n * r->count * sizeof *y);
}

static void test_reshape_layer(void **state) {
    (void)state;
    rs_ref r = {30};
    th_net t;
    th_build(&t, "input c=5 h=3 w=2\nreshape c=2 h=1 w=15\nrelu\n", 3, 5, 2);
    assert_int_equal(t.out.c, 2);
    assert_int_equal(t.out.w, 15);
    th_free(&t);
    th_build(&t, "input c=5 h=3 w=2\nreshape c=30\n", 3, 5, 1);
    th_check(&t, ref_copy, &r, 1, TOL);
    th_free(&t);
    th_expect_error("input c=5 h=3 w=2\nreshape c=7\n", CNN_ERR_SHAPE, "reshape");
}

#if CNN_HAVE_ONNX
/* ---------------- building ONNX models with protobuf-c ---------------- */

typedef struct mb {
    CnnOnnx__ModelProto m;
    CnnOnnx__GraphProto g;
    CnnOnnx__OperatorSetIdProto os, *osl[1];
    CnnOnnx__NodeProto *nodes[64];
    CnnOnnx__TensorProto *inits[64];
    CnnOnnx__ValueInfoProto *ins[8], *outs[4];
    void *allocs[4096];
    size_t n_allocs;
} mb;

static void *mb_alloc(mb *b, size_t n) {
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    assert_true(b->n_allocs < 4096);
    b->allocs[b->n_allocs++] = p;
    return p;
}

static char *mb_str(mb *b, const char *s) {
    char *p = mb_alloc(b, strlen(s) + 1);
    strcpy(p, s);
    return p;
}

static mb *mb_new(int64_t opset) {
    mb *b = calloc(1, sizeof *b);
    assert_non_null(b);
    cnn_onnx__model_proto__init(&b->m);
    cnn_onnx__graph_proto__init(&b->g);
    cnn_onnx__operator_set_id_proto__init(&b->os);
    b->os.domain = mb_str(b, "");
    b->os.has_version = 1, b->os.version = opset;
    b->osl[0] = &b->os;
    b->m.has_ir_version = 1, b->m.ir_version = 7;
    b->m.opset_import = b->osl, b->m.n_opset_import = 1;
    b->m.graph = &b->g;
    b->g.name = mb_str(b, "t");
    b->g.node = b->nodes, b->g.initializer = b->inits, b->g.input = b->ins, b->g.output = b->outs;
    return b;
}

static void mb_free(mb *b) {
    for (size_t i = 0; i < b->n_allocs; i++) free(b->allocs[i]);
    free(b);
}

static CnnOnnx__ValueInfoProto *mb_vi(mb *b, const char *name, const int64_t *dims, size_t nd) {
    CnnOnnx__ValueInfoProto *v = mb_alloc(b, sizeof *v);
    CnnOnnx__TypeProto *tp = mb_alloc(b, sizeof *tp);
    CnnOnnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt);
    CnnOnnx__TensorShapeProto *sh = mb_alloc(b, sizeof *sh);
    cnn_onnx__value_info_proto__init(v);
    cnn_onnx__type_proto__init(tp);
    cnn_onnx__type_proto__tensor__init(tt);
    cnn_onnx__tensor_shape_proto__init(sh);
    sh->dim = mb_alloc(b, (nd ? nd : 1) * sizeof *sh->dim);
    for (size_t i = 0; i < nd; i++) {
        sh->dim[i] = mb_alloc(b, sizeof *sh->dim[i]);
        cnn_onnx__tensor_shape_proto__dimension__init(sh->dim[i]);
        sh->dim[i]->value_case = CNN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        sh->dim[i]->dim_value = dims[i];
    }
    sh->n_dim = nd;
    tt->has_elem_type = 1, tt->elem_type = 1, tt->shape = sh;
    tp->value_case = CNN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    v->name = mb_str(b, name), v->type = tp;
    return v;
}

static void mb_input(mb *b, const char *name, const int64_t *dims, size_t nd) { b->ins[b->g.n_input++] = mb_vi(b, name, dims, nd); }
static void mb_output(mb *b, const char *name, const int64_t *dims, size_t nd) { b->outs[b->g.n_output++] = mb_vi(b, name, dims, nd); }

/* A FLOAT initializer (float_data when raw == 0, raw_data otherwise). */
static CnnOnnx__TensorProto *mb_tensor(mb *b, const char *name, const int64_t *dims, size_t nd, const float *data, int raw) {
    CnnOnnx__TensorProto *t = mb_alloc(b, sizeof *t);
    cnn_onnx__tensor_proto__init(t);
    size_t n = 1;
    t->dims = mb_alloc(b, (nd ? nd : 1) * sizeof *t->dims);
    for (size_t i = 0; i < nd; i++) t->dims[i] = dims[i], n *= (size_t)dims[i];
    t->n_dims = nd;
    t->name = mb_str(b, name);
    t->has_data_type = 1, t->data_type = 1;
    if (raw) {
        t->has_raw_data = 1;
        t->raw_data.len = n * 4;
        t->raw_data.data = mb_alloc(b, n * 4);
        memcpy(t->raw_data.data, data, n * 4); /* little-endian host */
    } else {
        t->float_data = mb_alloc(b, n * sizeof(float));
        memcpy(t->float_data, data, n * sizeof(float));
        t->n_float_data = n;
    }
    b->inits[b->g.n_initializer++] = t;
    return t;
}

static void mb_i64(mb *b, const char *name, const int64_t *v, size_t n) {
    CnnOnnx__TensorProto *t = mb_alloc(b, sizeof *t);
    cnn_onnx__tensor_proto__init(t);
    t->dims = mb_alloc(b, sizeof *t->dims);
    t->dims[0] = (int64_t)n, t->n_dims = 1;
    t->name = mb_str(b, name);
    t->has_data_type = 1, t->data_type = 7;
    t->int64_data = mb_alloc(b, (n ? n : 1) * sizeof(int64_t));
    memcpy(t->int64_data, v, n * sizeof *v);
    t->n_int64_data = n;
    b->inits[b->g.n_initializer++] = t;
}

/* inputs: comma-separated ("" entries allowed: "x,,b") */
static CnnOnnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *inputs, const char *output) {
    CnnOnnx__NodeProto *n = mb_alloc(b, sizeof *n);
    cnn_onnx__node_proto__init(n);
    n->op_type = mb_str(b, op), n->name = mb_str(b, name);
    n->input = mb_alloc(b, 8 * sizeof *n->input);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", inputs);
    char *p = buf;
    for (;;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        n->input[n->n_input++] = mb_str(b, p);
        if (!c) break;
        p = c + 1;
    }
    n->output = mb_alloc(b, sizeof *n->output);
    n->output[0] = mb_str(b, output), n->n_output = 1;
    n->attribute = mb_alloc(b, 16 * sizeof *n->attribute);
    b->nodes[b->g.n_node++] = n;
    return n;
}

static CnnOnnx__AttributeProto *mb_attr(mb *b, CnnOnnx__NodeProto *n, const char *name, CnnOnnx__AttributeProto__AttributeType type) {
    CnnOnnx__AttributeProto *a = mb_alloc(b, sizeof *a);
    cnn_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name), a->has_type = 1, a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}
static void mb_int(mb *b, CnnOnnx__NodeProto *n, const char *name, int64_t v) {
    CnnOnnx__AttributeProto *a = mb_attr(b, n, name, CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1, a->i = v;
}
static void mb_float(mb *b, CnnOnnx__NodeProto *n, const char *name, float v) {
    CnnOnnx__AttributeProto *a = mb_attr(b, n, name, CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1, a->f = v;
}
static void mb_ints(mb *b, CnnOnnx__NodeProto *n, const char *name, const int64_t *v, size_t k) {
    CnnOnnx__AttributeProto *a = mb_attr(b, n, name, CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = mb_alloc(b, k * sizeof *v);
    memcpy(a->ints, v, k * sizeof *v);
    a->n_ints = k;
}
static void mb_str_attr(mb *b, CnnOnnx__NodeProto *n, const char *name, const char *v) {
    CnnOnnx__AttributeProto *a = mb_attr(b, n, name, CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1, a->s.data = (uint8_t *)mb_str(b, v), a->s.len = strlen(v);
}

static uint8_t *mb_pack(mb *b, size_t *len) {
    *len = cnn_onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    cnn_onnx__model_proto__pack(&b->m, buf);
    return buf;
}

static cnn_status mb_import(cnn_ctx *ctx, mb *b, cnn_net **net) {
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    cnn_status st = cnn_net_import_onnx_memory(ctx, buf, len, "t.onnx", NULL, net);
    free(buf);
    return st;
}

static void fill(float *p, size_t n, uint64_t seed) { th_fill_uniform(p, n, seed, -1.0f, 1.0f); }

static void expect_close(const float *got, const float *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1.0 + fabs(want[i]))))
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
}

/* Conv(groups=2, dilation, asymmetric pads) BN Relu MaxPool GAP Flatten Gemm vs model text + same weights */
static void test_import_cnn(void **state) {
    (void)state;
    enum { N = 3, C = 4, H = 9, W = 8, K = 6, F = 5 };
    float wc[K * (C / 2) * 3 * 2], bc[K], sc[K], bb[K], mean[K], var[K], wg[K * F], bg[F];
    fill(wc, sizeof wc / 4, 1), fill(bc, K, 2), fill(sc, K, 3), fill(bb, K, 4), fill(mean, K, 5), fill(var, K, 6);
    fill(wg, K * F, 7), fill(bg, F, 8);
    for (size_t i = 0; i < K; i++) var[i] = 0.5f + fabsf(var[i]);
    mb *b = mb_new(13);
    int64_t xd[4] = {N, C, H, W}, yd[2] = {N, F};
    mb_input(b, "x", xd, 4);
    mb_output(b, "y", yd, 2);
    int64_t wd[4] = {K, C / 2, 3, 2}, kd[1] = {K}, gd[2] = {K, F}, fd[1] = {F};
    mb_tensor(b, "w", wd, 4, wc, 1), mb_tensor(b, "b", kd, 1, bc, 0);
    mb_tensor(b, "s", kd, 1, sc, 0), mb_tensor(b, "bb", kd, 1, bb, 1), mb_tensor(b, "m", kd, 1, mean, 0);
    mb_tensor(b, "v", kd, 1, var, 0), mb_tensor(b, "wg", gd, 2, wg, 1), mb_tensor(b, "bg", fd, 1, bg, 0);
    CnnOnnx__NodeProto *n = mb_node(b, "Conv", "conv", "x,w,b", "c");
    int64_t pads[4] = {2, 0, 1, 1}, dil[2] = {2, 1}, strides[2] = {1, 2};
    mb_ints(b, n, "pads", pads, 4), mb_ints(b, n, "dilations", dil, 2), mb_ints(b, n, "strides", strides, 2);
    mb_int(b, n, "group", 2);
    n = mb_node(b, "BatchNormalization", "bn", "c,s,bb,m,v", "d");
    mb_float(b, n, "epsilon", 1e-3f);
    mb_node(b, "Relu", "relu", "d", "e");
    n = mb_node(b, "MaxPool", "pool", "e", "f");
    int64_t ks[2] = {2, 2}, ps[2] = {1, 1};
    mb_ints(b, n, "kernel_shape", ks, 2), mb_ints(b, n, "strides", ps, 2);
    mb_node(b, "GlobalAveragePool", "gap", "f", "g");
    mb_node(b, "Flatten", "flat", "g", "h");
    n = mb_node(b, "Gemm", "fc", "h,wg,bg", "y");
    mb_float(b, n, "alpha", 0.5f), mb_float(b, n, "beta", 2.0f);
    cnn_ctx *ctx;
    cnn_net *net, *ref;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    cnn_status st = mb_import(ctx, b, &net);
    if (st != CNN_OK) fail_msg("import: %s", cnn_ctx_last_error(ctx));
    const char *text = "input c=4 h=9 w=8\n"
                       "conv2d name=conv k=6 kh=3 kw=2 stride_h=1 stride_w=2 pad_top=2 pad_bottom=1 pad_left=0 "
                       "pad_right=1 dilation_h=2 groups=2\n"
                       "batchnorm name=bn eps=1e-3\nrelu\nmaxpool2d size=2 stride=1\nglobal_avgpool\ndense name=fc out=5\n";
    assert_int_equal(cnn_net_parse(ctx, text, strlen(text), "ref", &ref), CNN_OK);
    assert_int_equal(cnn_net_compile(ref, N, 0), CNN_OK);
    float wg2[F * K], bg2[F];
    for (size_t f = 0; f < F; f++) {
        bg2[f] = 2.0f * bg[f];
        for (size_t k = 0; k < K; k++) wg2[f * K + k] = 0.5f * wg[k * F + f];
    }
    struct { const char *name; const float *d; } ps2[] = {{"conv.weight", wc}, {"conv.bias", bc}, {"bn.weight", sc}, {"bn.bias", bb},
        {"bn.running_mean", mean}, {"bn.running_var", var}, {"fc.weight", wg2}, {"fc.bias", bg2}};
    for (size_t i = 0; i < sizeof ps2 / sizeof ps2[0]; i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_find(ref, ps2[i].name, &p), CNN_OK);
        memcpy(p.data, ps2[i].d, p.count * sizeof(float));
    }
    float x[N * C * H * W];
    fill(x, N * C * H * W, 9);
    assert_int_equal(cnn_net_forward(net, x, N, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(ref, x, N, 0), CNN_OK);
    cnn_shape os = cnn_net_output_shape(net);
    assert_int_equal(os.c, F);
    expect_close(cnn_net_output(net, NULL), cnn_net_output(ref, NULL), N * F, 1e-6);
    cnn_net_free(net);
    cnn_net_free(ref);
    cnn_ctx_free(ctx);
    mb_free(b);
}

/* x [N, 3, 2, 2]: Sub(mean per channel) Div(scalar) Pad Clip Reshape(-> [N, 48]) MatMul(Transpose(W)) Add
 * LogSoftmax, and Softmax over channels, against float64 */
static void test_import_elementwise(void **state) {
    (void)state;
    enum { N = 2, C = 3, H = 2, W = 2, OH = 4, OW = 4, FEAT = C * OH * OW, F = 7 };
    for (int opset = 9; opset <= 13; opset += 4) {
        float mean[C] = {0.1f, -0.2f, 0.3f}, div = 0.25f, wt[F * FEAT], bias[F];
        fill(wt, F * FEAT, 11), fill(bias, F, 12);
        mb *b = mb_new(opset);
        int64_t xd[4] = {N, C, H, W}, yd[2] = {N, F};
        mb_input(b, "x", xd, 4);
        mb_output(b, "y", yd, 2);
        int64_t md[4] = {1, C, 1, 1}, sd[1] = {1}, wd[2] = {F, FEAT}, bd[1] = {F};
        mb_tensor(b, "mean", md, 4, mean, 0), mb_tensor(b, "div", sd, 0, &div, 1);
        mb_tensor(b, "wt", wd, 2, wt, 1), mb_tensor(b, "bias", bd, 1, bias, 0);
        mb_node(b, "Sub", "sub", "x,mean", "a");
        mb_node(b, "Div", "div", "a,div", "b2");
        CnnOnnx__NodeProto *n;
        int64_t pads[8] = {0, 0, 1, 0, 0, 0, 1, 2};
        if (opset < 11) {
            n = mb_node(b, "Pad", "pad", "b2", "c");
            mb_ints(b, n, "pads", pads, 8);
            mb_str_attr(b, n, "mode", "constant");
            mb_float(b, n, "value", 0.5f);
            n = mb_node(b, "Clip", "clip", "c", "d");
            mb_float(b, n, "min", -1.5f), mb_float(b, n, "max", 1.0f);
        } else {
            float pv = 0.5f, lo = -1.5f, hi = 1.0f;
            mb_i64(b, "pads", pads, 8);
            mb_tensor(b, "pv", sd, 0, &pv, 0), mb_tensor(b, "lo", sd, 0, &lo, 0), mb_tensor(b, "hi", sd, 0, &hi, 0);
            n = mb_node(b, "Pad", "pad", "b2,pads,pv", "c");
            mb_node(b, "Clip", "clip", "c,lo,hi", "d");
        }
        int64_t shape[2] = {0, -1};
        mb_i64(b, "shape", shape, 2);
        mb_node(b, "Reshape", "reshape", "d,shape", "e");
        n = mb_node(b, "Transpose", "tw", "wt", "w");
        int64_t perm[2] = {1, 0};
        mb_ints(b, n, "perm", perm, 2);
        mb_node(b, "MatMul", "mm", "e,w", "f");
        mb_node(b, "Add", "add", "f,bias", "g");
        n = mb_node(b, "LogSoftmax", "lsm", "g", "y");
        mb_int(b, n, "axis", 1);
        cnn_ctx *ctx;
        cnn_net *net;
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        if (mb_import(ctx, b, &net) != CNN_OK) fail_msg("opset %d: %s", opset, cnn_ctx_last_error(ctx));
        float x[N * C * H * W];
        fill(x, N * C * H * W, 13);
        x[5] = 9.0f; /* clipped */
        assert_int_equal(cnn_net_forward(net, x, N, 0), CNN_OK);
        float want[N * F];
        for (size_t i = 0; i < N; i++) {
            double feat[FEAT], logits[F], mx = -INFINITY, sum = 0;
            for (size_t c = 0; c < C; c++)
                for (size_t y = 0; y < OH; y++)
                    for (size_t xx = 0; xx < OW; xx++) {
                        double v = 0.5;
                        if (y >= 1 && y < 1 + H && xx < W) v = ((double)x[((i * C + c) * H + y - 1) * W + xx] - mean[c]) / div;
                        v = v < -1.5 ? -1.5 : v > 1.0 ? 1.0 : v;
                        feat[(c * OH + y) * OW + xx] = v;
                    }
            for (size_t f = 0; f < F; f++) {
                double s = bias[f];
                for (size_t k = 0; k < FEAT; k++) s += feat[k] * wt[f * FEAT + k];
                logits[f] = s;
                if (s > mx) mx = s;
            }
            for (size_t f = 0; f < F; f++) sum += exp(logits[f] - mx);
            for (size_t f = 0; f < F; f++) want[i * F + f] = (float)(logits[f] - mx - log(sum));
        }
        expect_close(cnn_net_output(net, NULL), want, N * F, 1e-5);
        cnn_net_free(net);
        cnn_ctx_free(ctx);
        mb_free(b);
    }
}

static void expect_import_error(mb *b, cnn_status want, const char *needle1, const char *needle2) {
    cnn_ctx *ctx;
    cnn_net *net = (cnn_net *)1;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    cnn_status st = mb_import(ctx, b, &net);
    const char *msg = cnn_ctx_last_error(ctx);
    if (st != want) fail_msg("status %d, want %d: %s", (int)st, (int)want, msg);
    assert_null(net);
    if (needle1 && !strstr(msg, needle1)) fail_msg("'%s' not in: %s", needle1, msg);
    if (needle2 && !strstr(msg, needle2)) fail_msg("'%s' not in: %s", needle2, msg);
    cnn_ctx_free(ctx);
}

static mb *relu_model(void) {
    mb *b = mb_new(13);
    int64_t d[2] = {2, 3};
    mb_input(b, "x", d, 2);
    mb_output(b, "y", d, 2);
    return b;
}

static void test_import_errors(void **state) {
    (void)state;
    mb *b = relu_model();
    mb_node(b, "FancyOp", "weird_node", "x", "y");
    expect_import_error(b, CNN_ERR_UNSUPPORTED, "weird_node", "FancyOp");
    mb_free(b);

    b = relu_model();
    CnnOnnx__NodeProto *n = mb_node(b, "LeakyRelu", "lr", "x", "y");
    mb_int(b, n, "bogus", 1);
    expect_import_error(b, CNN_ERR_UNSUPPORTED, "'lr' (LeakyRelu)", "bogus");
    mb_free(b);

    b = relu_model(); /* cycle: a = relu(b), b = relu(a) */
    mb_node(b, "Relu", "r1", "x", "p");
    mb_node(b, "Add", "r2", "p,q", "a");
    mb_node(b, "Relu", "r3", "a", "q");
    mb_node(b, "Relu", "r4", "a", "y");
    expect_import_error(b, CNN_ERR_FORMAT, "cycle", NULL);
    mb_free(b);

    b = relu_model();
    mb_node(b, "Add", "adder", "x,nowhere", "y");
    expect_import_error(b, CNN_ERR_FORMAT, "'nowhere'", "dangling");
    mb_free(b);

    b = relu_model();
    int64_t d[2] = {2, 3};
    mb_input(b, "z", d, 2);
    mb_node(b, "Add", "adder", "x,z", "y");
    expect_import_error(b, CNN_ERR_UNSUPPORTED, "2 inputs", NULL);
    mb_free(b);

    b = relu_model(); /* external data */
    float w = 1.0f;
    int64_t sd[1] = {1};
    CnnOnnx__TensorProto *t = mb_tensor(b, "k", sd, 0, &w, 0);
    t->has_data_location = 1, t->data_location = CNN_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    mb_node(b, "Mul", "m", "x,k", "y");
    expect_import_error(b, CNN_ERR_UNSUPPORTED, "external data", NULL);
    mb_free(b);

    b = relu_model(); /* a float_data count that does not match the dims */
    t = mb_tensor(b, "k", sd, 1, &w, 0);
    t->dims[0] = 2;
    mb_node(b, "Mul", "m", "x,k", "y");
    expect_import_error(b, CNN_ERR_FORMAT, "'k'", NULL);
    mb_free(b);

    b = relu_model(); /* a transpose that moves data */
    n = mb_node(b, "Transpose", "tr", "x", "y");
    expect_import_error(b, CNN_ERR_UNSUPPORTED, "'tr' (Transpose)", NULL);
    mb_free(b);

    /* bytes: empty, garbage, every truncation of a valid model */
    cnn_ctx *ctx;
    cnn_net *net;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    assert_int_equal(cnn_net_import_onnx_memory(ctx, "", 0, "e.onnx", NULL, &net), CNN_ERR_FORMAT);
    uint8_t junk[512];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(cnn_version_string()[0] * 31 + i * 131 + (i >> 3));
    assert_true(cnn_net_import_onnx_memory(ctx, junk, sizeof junk, "j.onnx", NULL, &net) != CNN_OK);
    assert_null(net);
    b = relu_model();
    mb_node(b, "Relu", "r", "x", "y");
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    assert_int_equal(cnn_net_import_onnx_memory(ctx, buf, len, "ok.onnx", NULL, &net), CNN_OK);
    cnn_net_free(net);
    /* a cut at a field boundary can still be a valid (smaller) model: no crash, no half-built net */
    size_t failed = 0;
    for (size_t cut = 1; cut < len; cut++) {
        cnn_status st = cnn_net_import_onnx_memory(ctx, buf, cut, "cut.onnx", NULL, &net);
        if (st != CNN_OK) {
            assert_null(net);
            failed++;
        }
        cnn_net_free(net);
    }
    assert_true(failed > len / 2);
    free(buf);
    mb_free(b);
    assert_int_equal(cnn_net_import_onnx(ctx, "/nonexistent/m.onnx", &net), CNN_ERR_IO);
    cnn_ctx_free(ctx);
}

/* export -> import: same outputs; onnx.checker where available */
static void test_export_roundtrip(void **state) {
    (void)state;
    static const char *const models[] = {
        "input c=3 h=9 w=9\n"
        "conv2d name=c1 k=4 size=3 pad=same stride=2\nbatchnorm\nrelu name=r1\nconv2d name=c2 k=4 size=3 pad=1\n"
        "add from=c2,r1\nleaky_relu slope=0.2\nmaxpool2d size=2\n"
        "conv2d k=4 kh=3 kw=1 pad_top=1 groups=2 bias=0\navgpool2d size=2 stride=1 pad=1 count_include_pad=0\n"
        "pad top=1 left=2 value=0.25\nclip min=-2 max=3\nconst_op op=mul per=channel\nconst_op op=rsub value=0.5\n"
        "flatten\ndense out=5\ndropout p=0.3\nsoftmax_ce\n",
        "input c=2 h=4 w=4\nconv2d name=a k=3 size=1\nconv2d name=b from=input k=2 size=3 pad=1\nconcat from=a,b\n"
        "global_maxpool\nsigmoid\ndense out=6\ntanh\nconst_op op=add per=element\nlog_softmax\n",
    };
    char dir[] = "/tmp/cnn_onnx_XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        cnn_ctx *ctx;
        cnn_net *net, *back;
        assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
        assert_int_equal(cnn_net_parse(ctx, models[mi], strlen(models[mi]), "m.cnn", &net), CNN_OK);
        assert_int_equal(cnn_net_compile(net, 4, 0), CNN_OK);
        assert_int_equal(cnn_net_init_params(net, 7 + mi, CNN_INIT_DEFAULT), CNN_OK);
        for (size_t i = 0; i < cnn_net_num_params(net); i++) { /* make buffers non-trivial */
            cnn_param p;
            assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
            if (!p.trainable)
                for (size_t k = 0; k < p.count; k++) p.data[k] = 0.5f + 0.25f * (float)((k * 7 + i) % 5);
        }
        char path[128];
        snprintf(path, sizeof path, "%s/m%zu.onnx", dir, mi);
        if (cnn_net_export_onnx(net, path) != CNN_OK) fail_msg("export: %s", cnn_ctx_last_error(ctx));
        if (cnn_net_import_onnx(ctx, path, &back) != CNN_OK) fail_msg("re-import: %s", cnn_ctx_last_error(ctx));
        assert_int_equal(cnn_net_compile(back, 4, 0), CNN_OK);
        cnn_shape is = cnn_net_input_shape(net);
        size_t nin = 4 * is.c * is.h * is.w;
        float *x = malloc(nin * sizeof(float));
        fill(x, nin, 21);
        assert_int_equal(cnn_net_forward(net, x, 4, 0), CNN_OK);
        assert_int_equal(cnn_net_forward(back, x, 4, 0), CNN_OK);
        cnn_shape os = cnn_net_output_shape(net), ob = cnn_net_output_shape(back);
        assert_int_equal(os.c * os.h * os.w, ob.c * ob.h * ob.w);
        expect_close(cnn_net_output(back, NULL), cnn_net_output(net, NULL), 4 * os.c * os.h * os.w, 1e-5);
        free(x);
        /* the standard checker, where Debian's python3-onnx is installed */
        if (access("/usr/bin/python3", X_OK) == 0 &&
            system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") == 0) {
            char cmd[512];
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import onnx; onnx.checker.check_model(onnx.load('%s'), full_check=True)\"", path);
            if (system(cmd) != 0) fail_msg("onnx.checker rejected %s", path);
        }
        remove(path);
        cnn_net_free(back);
        cnn_net_free(net);
        cnn_ctx_free(ctx);
    }
    rmdir(dir);
}

static void test_tensor_io(void **state) {
    (void)state;
    cnn_ctx *ctx;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    char path[] = "/tmp/cnn_tensor_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    float d[6] = {1.5f, -2.0f, NAN, INFINITY, 0.0f, 3.25f};
    cnn_onnx_tensor t = {.name = "t", .dtype = 1, .ndim = 2, .dims = {2, 3}, .count = 6, .data = d}, r;
    assert_int_equal(cnn_onnx_tensor_write(ctx, path, &t), CNN_OK);
    assert_int_equal(cnn_onnx_tensor_read(ctx, path, &r), CNN_OK);
    assert_int_equal(r.ndim, 2);
    assert_int_equal(r.dims[1], 3);
    assert_string_equal(r.name, "t");
    assert_memory_equal(r.data, d, sizeof d);
    cnn_onnx_tensor_release(ctx, &r);
    cnn_onnx_tensor_release(ctx, &r);
    FILE *f = fopen(path, "wb");
    fputs("\x0a\xff\xff", f); /* a dims field whose varint runs off the end */
    fclose(f);
    assert_int_equal(cnn_onnx_tensor_read(ctx, path, &r), CNN_ERR_FORMAT);
    assert_null(r.data);
    remove(path);
    cnn_ctx_free(ctx);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_layer),
        cmocka_unit_test(test_log_softmax_layer),
        cmocka_unit_test(test_pad_layer),
        cmocka_unit_test(test_const_op_layer),
        cmocka_unit_test(test_reshape_layer),
#if CNN_HAVE_ONNX
        cmocka_unit_test(test_import_cnn),
        cmocka_unit_test(test_import_elementwise),
        cmocka_unit_test(test_import_errors),
        cmocka_unit_test(test_export_roundtrip),
        cmocka_unit_test(test_tensor_io),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
