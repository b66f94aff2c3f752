/* onnx_export.c — a network -> an ONNX model (opset 13, IR version 7), the inference graph.
 *
 * The layers and their keys are read back from the network's own model text (cnn_net_to_text: one source of
 * truth) and cnn_net_layer_info (inputs, shapes); weights and buffers become FLOAT initializers named as the
 * parameters ("conv1.weight", ...). Values are [N, c, h, w] (N symbolic "N"), except after dense and flatten
 * ([N, F]); a layer that needs 4-D input gets a Reshape [0, c, h, w] first.
 *   conv2d Conv · dense Flatten+Gemm(transB=1) · maxpool2d MaxPool · avgpool2d AveragePool · global_* Global*
 *   batchnorm BatchNormalization (momentum 1 - m) · relu leaky_relu sigmoid tanh · softmax / softmax_ce
 *   Softmax(axis=1) · log_softmax LogSoftmax(axis=1) · gelu 0.5x(1+erf(x/sqrt2)) (Div, Erf, Add, Mul; the
 *   tanh form with Pow/Tanh) · flatten Flatten · add chained Add · concat Concat(axis=1) · dropout, mse,
 *   reshape Identity/Reshape · clip Clip · pad Pad · const_op Add/Sub/Mul/Div with an initializer.
 * The graph output is "output"; the input "input". */
#include "onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(CNN_HAVE_ONNX) && CNN_HAVE_ONNX

#define VNAME 256

typedef struct exporter {
    cnn_ctx *ctx;
    void **allocs;
    size_t n_allocs, cap_allocs;
    int failed;
    CnnOnnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    CnnOnnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    unsigned counter;
} exporter;

/* Remember p (from cnn_mem_alloc) to free it with the exporter; frees p and fails on no memory. */
static void *track(exporter *ex, void *p) {
    if (!p || ex->failed) {
        if (p) cnn_mem_free(ex->ctx, p);
        ex->failed = 1;
        return NULL;
    }
    if (ex->n_allocs == ex->cap_allocs) {
        size_t cap = ex->cap_allocs ? ex->cap_allocs * 2 : 256;
        void **na = cnn_mem_calloc(ex->ctx, cap, sizeof *na);
        if (!na) {
            cnn_mem_free(ex->ctx, p);
            ex->failed = 1;
            return NULL;
        }
        if (ex->n_allocs) memcpy(na, ex->allocs, ex->n_allocs * sizeof *na);
        cnn_mem_free(ex->ctx, ex->allocs);
        ex->allocs = na;
        ex->cap_allocs = cap;
    }
    ex->allocs[ex->n_allocs++] = p;
    return p;
}

static void *xalloc(exporter *ex, size_t n) {
    if (ex->failed) return NULL;
    return track(ex, cnn_mem_calloc(ex->ctx, 1, n ? n : 1));
}

static char *xstr(exporter *ex, const char *s) {
    size_t l = strlen(s);
    char *p = xalloc(ex, l + 1);
    if (p) memcpy(p, s, l + 1);
    return p;
}

static int push(exporter *ex, void ***arr, size_t *n, size_t *cap, void *item) {
    if (!item || ex->failed) return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **na = xalloc(ex, nc * sizeof *na);
        if (!na) return 0;
        if (*n) memcpy(na, *arr, *n * sizeof *na);
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = item;
    return 1;
}

/* ---- attributes ---- */
static CnnOnnx__AttributeProto *a_int(exporter *ex, const char *name, int64_t v) {
    CnnOnnx__AttributeProto *a = xalloc(ex, sizeof *a);
    if (!a) return NULL;
    cnn_onnx__attribute_proto__init(a);
    a->name = xstr(ex, name);
    a->has_type = 1, a->type = CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
    return a;
}
static CnnOnnx__AttributeProto *a_float(exporter *ex, const char *name, float v) {
    CnnOnnx__AttributeProto *a = xalloc(ex, sizeof *a);
    if (!a) return NULL;
    cnn_onnx__attribute_proto__init(a);
    a->name = xstr(ex, name);
    a->has_type = 1, a->type = CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
    return a;
}
static CnnOnnx__AttributeProto *a_ints(exporter *ex, const char *name, const int64_t *v, size_t n) {
    CnnOnnx__AttributeProto *a = xalloc(ex, sizeof *a);
    if (!a) return NULL;
    cnn_onnx__attribute_proto__init(a);
    a->name = xstr(ex, name);
    a->has_type = 1, a->type = CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->ints = xalloc(ex, n * sizeof *a->ints);
    if (a->ints) memcpy(a->ints, v, n * sizeof *v);
    a->n_ints = n;
    return a;
}
static CnnOnnx__AttributeProto *a_str(exporter *ex, const char *name, const char *v) {
    CnnOnnx__AttributeProto *a = xalloc(ex, sizeof *a);
    if (!a) return NULL;
    cnn_onnx__attribute_proto__init(a);
    a->name = xstr(ex, name);
    a->has_type = 1, a->type = CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.data = (uint8_t *)xstr(ex, v);
    a->s.len = strlen(v);
    return a;
}

/* A node; inputs/outputs NULL-terminated lists; attrs n_attrs entries. */
static CnnOnnx__NodeProto *node(exporter *ex, const char *op, const char *name, const char *const *in, size_t n_in,
                                const char *out, CnnOnnx__AttributeProto **attrs, size_t n_attrs) {
    CnnOnnx__NodeProto *n = xalloc(ex, sizeof *n);
    if (!n) return NULL;
    cnn_onnx__node_proto__init(n);
    n->op_type = xstr(ex, op);
    n->name = xstr(ex, name);
    n->input = xalloc(ex, (n_in ? n_in : 1) * sizeof *n->input);
    n->output = xalloc(ex, sizeof *n->output);
    if (!n->input || !n->output) return NULL;
    for (size_t i = 0; i < n_in; i++) n->input[i] = xstr(ex, in[i]);
    n->n_input = n_in;
    n->output[0] = xstr(ex, out);
    n->n_output = 1;
    if (n_attrs) {
        n->attribute = xalloc(ex, n_attrs * sizeof *n->attribute);
        if (!n->attribute) return NULL;
        for (size_t i = 0; i < n_attrs; i++) {
            if (!attrs[i]) ex->failed = 1;
            n->attribute[i] = attrs[i];
        }
        n->n_attribute = n_attrs;
    }
    push(ex, (void ***)&ex->nodes, &ex->n_nodes, &ex->cap_nodes, n);
    return n;
}

static int init_tensor(exporter *ex, const char *name, const int64_t *dims, size_t nd, const float *data,
                       size_t count) {
    CnnOnnx__TensorProto *t = xalloc(ex, sizeof *t);
    int64_t *d = xalloc(ex, (nd ? nd : 1) * sizeof *d);
    if (!t || !d) return 0;
    memcpy(d, dims, nd * sizeof *d);
    uint8_t *raw;
    if (cnn_onnx_tensor_to_proto(ex->ctx, xstr(ex, name), d, nd, data, count, t, &raw) != CNN_OK) {
        ex->failed = 1;
        return 0;
    }
    track(ex, raw); /* owned through the alloc list */
    return push(ex, (void ***)&ex->inits, &ex->n_inits, &ex->cap_inits, t);
}

/* int64 initializer (shapes, pads) */
static int init_i64(exporter *ex, const char *name, const int64_t *v, size_t n) {
    CnnOnnx__TensorProto *t = xalloc(ex, sizeof *t);
    int64_t *d = xalloc(ex, sizeof *d), *data = xalloc(ex, (n ? n : 1) * sizeof *data);
    if (!t || !d || !data) return 0;
    cnn_onnx__tensor_proto__init(t);
    t->name = xstr(ex, name);
    d[0] = (int64_t)n;
    t->dims = d, t->n_dims = 1;
    t->has_data_type = 1, t->data_type = CNN_ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    memcpy(data, v, n * sizeof *v);
    t->int64_data = data, t->n_int64_data = n;
    return push(ex, (void ***)&ex->inits, &ex->n_inits, &ex->cap_inits, t);
}

static CnnOnnx__ValueInfoProto *value_info(exporter *ex, const char *name, const int64_t *dims, size_t nd) {
    CnnOnnx__ValueInfoProto *v = xalloc(ex, sizeof *v);
    CnnOnnx__TypeProto *tp = xalloc(ex, sizeof *tp);
    CnnOnnx__TypeProto__Tensor *tt = xalloc(ex, sizeof *tt);
    CnnOnnx__TensorShapeProto *sh = xalloc(ex, sizeof *sh);
    CnnOnnx__TensorShapeProto__Dimension **dd = xalloc(ex, nd * sizeof *dd);
    if (!v || !tp || !tt || !sh || !dd) return NULL;
    cnn_onnx__value_info_proto__init(v);
    cnn_onnx__type_proto__init(tp);
    cnn_onnx__type_proto__tensor__init(tt);
    cnn_onnx__tensor_shape_proto__init(sh);
    for (size_t i = 0; i < nd; i++) {
        dd[i] = xalloc(ex, sizeof *dd[i]);
        if (!dd[i]) return NULL;
        cnn_onnx__tensor_shape_proto__dimension__init(dd[i]);
        if (i == 0) {
            dd[i]->value_case = CNN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dd[i]->dim_param = xstr(ex, "N");
        } else {
            dd[i]->value_case = CNN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dd[i]->dim_value = dims[i];
        }
    }
    sh->dim = dd, sh->n_dim = nd;
    tt->has_elem_type = 1, tt->elem_type = 1;
    tt->shape = sh;
    tp->value_case = CNN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = xstr(ex, name);
    v->type = tp;
    return v;
}

/* ---- model text keys of one line ---- */
typedef struct keys {
    char k[32][32];
    char v[32][64];
    size_t n;
} keys;

static void parse_keys(const char *line, size_t len, keys *K) {
    K->n = 0;
    size_t i = 0;
    while (i < len && line[i] != ' ' && line[i] != '\t') i++; /* the type */
    while (i < len && K->n < 32) {
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i >= len || line[i] == '#') break;
        size_t b = i;
        while (i < len && line[i] != ' ' && line[i] != '\t') i++;
        const char *eq = memchr(line + b, '=', i - b);
        if (!eq) continue;
        size_t kl = (size_t)(eq - (line + b)), vl = i - b - kl - 1;
        snprintf(K->k[K->n], sizeof K->k[0], "%.*s", (int)kl, line + b);
        snprintf(K->v[K->n], sizeof K->v[0], "%.*s", (int)vl, eq + 1);
        K->n++;
    }
}

static const char *key(const keys *K, const char *name) {
    for (size_t i = 0; i < K->n; i++)
        if (!strcmp(K->k[i], name)) return K->v[i];
    return NULL;
}

static long key_int(const keys *K, const char *name, long def) {
    const char *v = key(K, name);
    return v ? strtol(v, NULL, 10) : def;
}

/* a key with _h/_w variants: (h, w) */
static void key_pair(const keys *K, const char *base, long def, long *h, long *w) {
    char b[48];
    long all = key_int(K, base, def);
    snprintf(b, sizeof b, "%s_h", base);
    *h = key_int(K, b, all);
    snprintf(b, sizeof b, "%s_w", base);
    *w = key_int(K, b, all);
}

static void key_pads(const keys *K, long *t, long *b, long *l, long *r) {
    long all = 0;
    const char *p = key(K, "pad");
    if (p && strcmp(p, "same")) all = strtol(p, NULL, 10);
    long ph = key_int(K, "pad_h", all), pw = key_int(K, "pad_w", all);
    *t = key_int(K, "pad_top", ph);
    *b = key_int(K, "pad_bottom", ph);
    *l = key_int(K, "pad_left", pw);
    *r = key_int(K, "pad_right", pw);
}

/* ---- per-value state ---- */
typedef struct evalue {
    char name[VNAME];
    size_t rank; /* 2 or 4 */
    cnn_shape s;
} evalue;

static cnn_status export_error(cnn_ctx *ctx, const char *path, const char *layer, const char *type, const char *msg) {
    return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: cannot export %s '%s': %s", path, type, layer, msg);
}

/* v as a 4-D value (a Reshape when it is 2-D). */
static const char *as4d(exporter *ex, evalue *v) {
    if (v->rank == 4) return v->name;
    char nm[VNAME + 16], sh[VNAME + 16];
    snprintf(nm, sizeof nm, "%.200s/4d", v->name);
    snprintf(sh, sizeof sh, "%.200s/4d_shape", v->name);
    int64_t d[4] = {0, (int64_t)v->s.c, (int64_t)v->s.h, (int64_t)v->s.w};
    init_i64(ex, sh, d, 4);
    const char *in[2] = {v->name, sh};
    node(ex, "Reshape", nm, in, 2, nm, NULL, 0);
    snprintf(v->name, sizeof v->name, "%.240s", nm);
    v->rank = 4;
    return v->name;
}

static const char *as2d(exporter *ex, evalue *v) {
    if (v->rank == 2) return v->name;
    char nm[VNAME + 16];
    snprintf(nm, sizeof nm, "%.200s/flat", v->name);
    const char *in[1] = {v->name};
    CnnOnnx__AttributeProto *a[1] = {a_int(ex, "axis", 1)};
    node(ex, "Flatten", nm, in, 1, nm, a, 1);
    snprintf(v->name, sizeof v->name, "%.240s", nm);
    v->rank = 2;
    return v->name;
}

static cnn_status param(cnn_net *net, const char *layer, const char *suffix, cnn_param *p) {
    char nm[CNN_NAME_MAX + 32];
    snprintf(nm, sizeof nm, "%s.%s", layer, suffix);
    return cnn_net_param_find(net, nm, p);
}

static int init_param(exporter *ex, const cnn_param *p, const int64_t *dims, size_t nd) {
    int64_t d[4];
    if (!dims) {
        for (size_t i = 0; i < p->ndim; i++) d[i] = (int64_t)p->dims[i];
        dims = d;
        nd = p->ndim;
    }
    return init_tensor(ex, p->name, dims, nd, p->data, p->count);
}

static cnn_status export_net(exporter *ex, cnn_net *net, const char *path, CnnOnnx__ModelProto *model) {
    cnn_ctx *ctx = ex->ctx;
    cnn_status st = CNN_OK;
    char *text = NULL;
    size_t nl = cnn_net_num_layers(net);
    evalue *vals = cnn_mem_calloc(ctx, nl ? nl : 1, sizeof *vals);
    if (!vals) return cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path);
    CNN_TRY(cnn_net_to_text(net, &text));
    const char *line = text;
    for (size_t li = 0; li < nl; li++) {
        /* the next layer line (skip comments and blanks) */
        while (*line == '#' || *line == '\n') {
            const char *e = strchr(line, '\n');
            line = e ? e + 1 : line + strlen(line);
        }
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        keys K;
        parse_keys(line, len, &K);
        line = eol ? eol + 1 : line + len;
        cnn_layer_info info;
        CNN_TRY(cnn_net_layer_info(net, li, &info));
        const char *t = info.type, *nm = info.name;
        evalue *out = &vals[li];
        snprintf(out->name, sizeof out->name, "%s", nm);
        out->s = info.out;
        out->rank = 4;
        evalue x = {{0}, 4, {0, 0, 0}};
        if (info.n_inputs) {
            size_t src = SIZE_MAX; /* vals[k].name may carry a suffix: match by layer name */
            for (size_t k = 0; k < li; k++) {
                cnn_layer_info ik;
                if (cnn_net_layer_info(net, k, &ik) == CNN_OK && !strcmp(ik.name, info.inputs[0])) src = k;
            }
            if (src == SIZE_MAX) {
                st = cnn_error(ctx, CNN_ERR_INVALID_ARG, "%s: internal: input '%s' of '%s' not found", path, info.inputs[0], nm);
                goto cleanup;
            }
            x = vals[src];
        }
        if (!strcmp(t, "input")) {
            snprintf(out->name, sizeof out->name, "input");
            continue;
        }
        const char *xin[1];
        if (!strcmp(t, "conv2d")) {
            long k = key_int(&K, "k", 1), kh = key_int(&K, "kh", 1), kw = key_int(&K, "kw", 1), sh, sw, dh, dw, pt,
                 pb, pl, pr, groups = key_int(&K, "groups", 1);
            key_pair(&K, "stride", 1, &sh, &sw);
            key_pair(&K, "dilation", 1, &dh, &dw);
            key_pads(&K, &pt, &pb, &pl, &pr);
            const char *pv = key(&K, "pad");
            if (pv && !strcmp(pv, "same")) {
                long ext_h = dh * (kh - 1) + 1, ext_w = dw * (kw - 1) + 1;
                long th = ((long)out->s.h - 1) * sh + ext_h - (long)x.s.h, tw = ((long)out->s.w - 1) * sw + ext_w - (long)x.s.w;
                if (th < 0) th = 0;
                if (tw < 0) tw = 0;
                pt = th / 2, pb = th - pt, pl = tw / 2, pr = tw - pl;
            }
            cnn_param w, b;
            CNN_TRY(param(net, nm, "weight", &w));
            int has_b = param(net, nm, "bias", &b) == CNN_OK;
            cnn_clear_error(ctx);
            init_param(ex, &w, NULL, 0);
            if (has_b) init_param(ex, &b, NULL, 0);
            int64_t ks[2] = {kh, kw}, st2[2] = {sh, sw}, dl[2] = {dh, dw}, pads[4] = {pt, pl, pb, pr};
            const char *in[3] = {as4d(ex, &x), w.name, has_b ? b.name : ""};
            CnnOnnx__AttributeProto *a[5] = {a_ints(ex, "kernel_shape", ks, 2), a_ints(ex, "strides", st2, 2),
                                             a_ints(ex, "dilations", dl, 2), a_ints(ex, "pads", pads, 4),
                                             a_int(ex, "group", groups)};
            (void)k;
            node(ex, "Conv", nm, in, has_b ? 3 : 2, nm, a, 5);
        } else if (!strcmp(t, "dense")) {
            cnn_param w, b;
            CNN_TRY(param(net, nm, "weight", &w));
            int has_b = param(net, nm, "bias", &b) == CNN_OK;
            cnn_clear_error(ctx);
            init_param(ex, &w, NULL, 0);
            if (has_b) init_param(ex, &b, NULL, 0);
            const char *in[3] = {as2d(ex, &x), w.name, has_b ? b.name : ""};
            CnnOnnx__AttributeProto *a[1] = {a_int(ex, "transB", 1)};
            node(ex, "Gemm", nm, in, has_b ? 3 : 2, nm, a, 1);
            out->rank = 2;
        } else if (!strcmp(t, "maxpool2d") || !strcmp(t, "avgpool2d")) {
            int is_max = t[0] == 'm';
            long size = key_int(&K, "size", 0), kh = key_int(&K, "kh", size), kw = key_int(&K, "kw", size);
            long sall = key_int(&K, "stride", 0), sh = key_int(&K, "stride_h", sall ? sall : kh),
                 sw = key_int(&K, "stride_w", sall ? sall : kw), dh, dw, pt, pb, pl, pr;
            key_pair(&K, "dilation", 1, &dh, &dw);
            key_pads(&K, &pt, &pb, &pl, &pr);
            long ceil_mode = key_int(&K, "ceil", 0);
            const char *cv = key(&K, "ceil");
            if (cv && (!strcmp(cv, "true") || !strcmp(cv, "yes") || !strcmp(cv, "on"))) ceil_mode = 1;
            const char *ci = key(&K, "count_include_pad");
            long cip = ci ? (!strcmp(ci, "1") || !strcmp(ci, "true") || !strcmp(ci, "yes") || !strcmp(ci, "on")) : 1;
            if (ceil_mode) { /* ONNX keeps a last window that starts in the end padding; PyTorch drops it */
                long eh = dh * (kh - 1) + 1, ew = dw * (kw - 1) + 1;
                long oh = ((long)x.s.h + pt + pb - eh + sh - 1) / sh + 1, ow = ((long)x.s.w + pl + pr - ew + sw - 1) / sw + 1;
                if (oh != (long)out->s.h || ow != (long)out->s.w) {
                    st = export_error(ctx, path, nm, t, "ceil mode drops a last window here (PyTorch's rule), ONNX would not");
                    goto cleanup;
                }
            }
            int64_t ks[2] = {kh, kw}, s2[2] = {sh, sw}, dl[2] = {dh, dw}, pads[4] = {pt, pl, pb, pr};
            xin[0] = as4d(ex, &x);
            CnnOnnx__AttributeProto *a[5] = {a_ints(ex, "kernel_shape", ks, 2), a_ints(ex, "strides", s2, 2),
                                             a_ints(ex, "pads", pads, 4), a_int(ex, "ceil_mode", ceil_mode),
                                             is_max ? a_ints(ex, "dilations", dl, 2) : a_int(ex, "count_include_pad", cip)};
            node(ex, is_max ? "MaxPool" : "AveragePool", nm, xin, 1, nm, a, 5);
        } else if (!strcmp(t, "global_avgpool") || !strcmp(t, "global_maxpool")) {
            xin[0] = as4d(ex, &x);
            node(ex, t[7] == 'a' ? "GlobalAveragePool" : "GlobalMaxPool", nm, xin, 1, nm, NULL, 0);
        } else if (!strcmp(t, "batchnorm")) {
            double eps = key(&K, "eps") ? strtod(key(&K, "eps"), NULL) : 1e-5;
            double mom = key(&K, "momentum") ? strtod(key(&K, "momentum"), NULL) : 0.1;
            cnn_param w, b, m, v;
            CNN_TRY(param(net, nm, "running_mean", &m));
            CNN_TRY(param(net, nm, "running_var", &v));
            int affine = param(net, nm, "weight", &w) == CNN_OK && param(net, nm, "bias", &b) == CNN_OK;
            cnn_clear_error(ctx);
            char sn[CNN_NAME_MAX + 16], bn[CNN_NAME_MAX + 16];
            int64_t d1[1] = {(int64_t)x.s.c};
            if (affine) {
                init_param(ex, &w, NULL, 0);
                init_param(ex, &b, NULL, 0);
                snprintf(sn, sizeof sn, "%s", w.name);
                snprintf(bn, sizeof bn, "%s", b.name);
            } else {
                float *ones = xalloc(ex, x.s.c * sizeof(float)), *zeros = xalloc(ex, x.s.c * sizeof(float));
                if (!ones || !zeros) goto oom;
                for (size_t i = 0; i < x.s.c; i++) ones[i] = 1.0f;
                snprintf(sn, sizeof sn, "%s.weight", nm);
                snprintf(bn, sizeof bn, "%s.bias", nm);
                init_tensor(ex, sn, d1, 1, ones, x.s.c);
                init_tensor(ex, bn, d1, 1, zeros, x.s.c);
            }
            init_param(ex, &m, NULL, 0);
            init_param(ex, &v, NULL, 0);
            const char *in[5] = {x.name, sn, bn, m.name, v.name};
            CnnOnnx__AttributeProto *a[2] = {a_float(ex, "epsilon", (float)eps), a_float(ex, "momentum", (float)(1.0 - mom))};
            node(ex, "BatchNormalization", nm, in, 5, nm, a, 2);
            out->rank = x.rank;
        } else if (!strcmp(t, "relu") || !strcmp(t, "sigmoid") || !strcmp(t, "tanh")) {
            xin[0] = x.name;
            node(ex, t[0] == 'r' ? "Relu" : t[0] == 's' ? "Sigmoid" : "Tanh", nm, xin, 1, nm, NULL, 0);
            out->rank = x.rank;
        } else if (!strcmp(t, "leaky_relu")) {
            double slope = key(&K, "slope") ? strtod(key(&K, "slope"), NULL) : 0.01;
            xin[0] = x.name;
            CnnOnnx__AttributeProto *a[1] = {a_float(ex, "alpha", (float)slope)};
            node(ex, "LeakyRelu", nm, xin, 1, nm, a, 1);
            out->rank = x.rank;
        } else if (!strcmp(t, "gelu")) {
            const char *ap = key(&K, "approximate");
            int tanh_form = ap && !strcmp(ap, "tanh");
            char n1[VNAME + 16], n2[VNAME + 16], n3[VNAME + 16], n4[VNAME + 16], c1[VNAME + 16], c2[VNAME + 16],
                c3[VNAME + 16];
            int64_t d0[1] = {0};
            snprintf(c1, sizeof c1, "%s/c1", nm), snprintf(c2, sizeof c2, "%s/c2", nm), snprintf(c3, sizeof c3, "%s/c3", nm);
            snprintf(n1, sizeof n1, "%s/t1", nm), snprintf(n2, sizeof n2, "%s/t2", nm);
            snprintf(n3, sizeof n3, "%s/t3", nm), snprintf(n4, sizeof n4, "%s/t4", nm);
            float one = 1.0f, half = 0.5f;
            if (!tanh_form) { /* 0.5 * x * (1 + erf(x / sqrt 2)) */
                float r2 = 1.41421356237f;
                init_tensor(ex, c1, d0, 0, &r2, 1);
                init_tensor(ex, c2, d0, 0, &one, 1);
                init_tensor(ex, c3, d0, 0, &half, 1);
                const char *i1[2] = {x.name, c1}, *i2[1] = {n1}, *i3[2] = {n2, c2}, *i4[2] = {x.name, n3}, *i5[2] = {n4, c3};
                node(ex, "Div", n1, i1, 2, n1, NULL, 0);
                node(ex, "Erf", n2, i2, 1, n2, NULL, 0);
                node(ex, "Add", n3, i3, 2, n3, NULL, 0);
                node(ex, "Mul", n4, i4, 2, n4, NULL, 0);
                node(ex, "Mul", nm, i5, 2, nm, NULL, 0);
            } else { /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
                char n5[VNAME + 16], n6[VNAME + 16], n7[VNAME + 16], c4[VNAME + 16], c5[VNAME + 16];
                snprintf(n5, sizeof n5, "%s/t5", nm), snprintf(n6, sizeof n6, "%s/t6", nm), snprintf(n7, sizeof n7, "%s/t7", nm);
                snprintf(c4, sizeof c4, "%s/c4", nm), snprintf(c5, sizeof c5, "%s/c5", nm);
                float three = 3.0f, k1 = 0.044715f, k2 = 0.7978845608f;
                init_tensor(ex, c1, d0, 0, &three, 1);
                init_tensor(ex, c2, d0, 0, &k1, 1);
                init_tensor(ex, c3, d0, 0, &k2, 1);
                init_tensor(ex, c4, d0, 0, &one, 1);
                init_tensor(ex, c5, d0, 0, &half, 1);
                const char *i1[2] = {x.name, c1}, *i2[2] = {n1, c2}, *i3[2] = {x.name, n2}, *i4[2] = {n3, c3},
                           *i5[1] = {n4}, *i6[2] = {n5, c4}, *i7[2] = {x.name, n6}, *i8[2] = {n7, c5};
                node(ex, "Pow", n1, i1, 2, n1, NULL, 0);
                node(ex, "Mul", n2, i2, 2, n2, NULL, 0);
                node(ex, "Add", n3, i3, 2, n3, NULL, 0);
                node(ex, "Mul", n4, i4, 2, n4, NULL, 0);
                node(ex, "Tanh", n5, i5, 1, n5, NULL, 0);
                node(ex, "Add", n6, i6, 2, n6, NULL, 0);
                node(ex, "Mul", n7, i7, 2, n7, NULL, 0);
                node(ex, "Mul", nm, i8, 2, nm, NULL, 0);
            }
            out->rank = x.rank;
        } else if (!strcmp(t, "softmax") || !strcmp(t, "softmax_ce") || !strcmp(t, "log_softmax")) {
            xin[0] = x.name;
            CnnOnnx__AttributeProto *a[1] = {a_int(ex, "axis", 1)};
            node(ex, t[0] == 'l' ? "LogSoftmax" : "Softmax", nm, xin, 1, nm, a, 1);
            out->rank = x.rank;
        } else if (!strcmp(t, "flatten")) {
            xin[0] = x.name;
            CnnOnnx__AttributeProto *a[1] = {a_int(ex, "axis", 1)};
            node(ex, "Flatten", nm, xin, 1, nm, a, 1);
            out->rank = 2;
        } else if (!strcmp(t, "dropout") || !strcmp(t, "mse")) {
            xin[0] = x.name;
            node(ex, "Identity", nm, xin, 1, nm, NULL, 0);
            out->rank = x.rank;
        } else if (!strcmp(t, "reshape")) {
            char sh[VNAME + 16];
            snprintf(sh, sizeof sh, "%s/shape", nm);
            int64_t d[4] = {0, (int64_t)out->s.c, (int64_t)out->s.h, (int64_t)out->s.w};
            init_i64(ex, sh, d, 4);
            const char *in[2] = {x.name, sh};
            node(ex, "Reshape", nm, in, 2, nm, NULL, 0);
        } else if (!strcmp(t, "add") || !strcmp(t, "concat")) {
            evalue ins[CNN_MAX_INPUTS];
            int any4 = 0;
            for (size_t i = 0; i < info.n_inputs; i++) {
                for (size_t k = 0; k < li; k++) {
                    cnn_layer_info ik;
                    if (cnn_net_layer_info(net, k, &ik) == CNN_OK && !strcmp(ik.name, info.inputs[i])) ins[i] = vals[k];
                }
                if (ins[i].rank == 4) any4 = 1;
            }
            for (size_t i = 0; i < info.n_inputs; i++)
                if (any4) as4d(ex, &ins[i]);
            out->rank = any4 ? 4 : 2;
            if (t[0] == 'c') {
                const char *in[CNN_MAX_INPUTS];
                for (size_t i = 0; i < info.n_inputs; i++) in[i] = ins[i].name;
                CnnOnnx__AttributeProto *a[1] = {a_int(ex, "axis", 1)};
                node(ex, "Concat", nm, in, info.n_inputs, nm, a, 1);
            } else {
                char acc[VNAME + 16];
                snprintf(acc, sizeof acc, "%s", ins[0].name);
                for (size_t i = 1; i < info.n_inputs; i++) {
                    char o[VNAME + 16];
                    if (i + 1 == info.n_inputs) snprintf(o, sizeof o, "%s", nm);
                    else snprintf(o, sizeof o, "%s/sum%zu", nm, i);
                    const char *in[2] = {acc, ins[i].name};
                    node(ex, "Add", o, in, 2, o, NULL, 0);
                    snprintf(acc, sizeof acc, "%s", o);
                }
            }
        } else if (!strcmp(t, "clip")) {
            char lo[VNAME + 16] = "", hi[VNAME + 16] = "";
            int64_t d0[1] = {0};
            if (key(&K, "min")) {
                float v = (float)strtod(key(&K, "min"), NULL);
                snprintf(lo, sizeof lo, "%s/min", nm);
                init_tensor(ex, lo, d0, 0, &v, 1);
            }
            if (key(&K, "max")) {
                float v = (float)strtod(key(&K, "max"), NULL);
                snprintf(hi, sizeof hi, "%s/max", nm);
                init_tensor(ex, hi, d0, 0, &v, 1);
            }
            const char *in[3] = {x.name, lo, hi};
            node(ex, "Clip", nm, in, hi[0] ? 3 : lo[0] ? 2 : 1, nm, NULL, 0);
            out->rank = x.rank;
        } else if (!strcmp(t, "pad")) {
            long all = key_int(&K, "pad", 0);
            int64_t pads[8] = {0, 0, key_int(&K, "top", all), key_int(&K, "left", all), 0, 0, key_int(&K, "bottom", all),
                               key_int(&K, "right", all)};
            float v = key(&K, "value") ? (float)strtod(key(&K, "value"), NULL) : 0.0f;
            const char *mode = key(&K, "mode") ? key(&K, "mode") : "constant";
            char pn[VNAME + 16], vn[VNAME + 16];
            snprintf(pn, sizeof pn, "%s/pads", nm);
            snprintf(vn, sizeof vn, "%s/value", nm);
            int64_t d0[1] = {0};
            init_i64(ex, pn, pads, 8);
            init_tensor(ex, vn, d0, 0, &v, 1);
            const char *in[3] = {as4d(ex, &x), pn, vn};
            CnnOnnx__AttributeProto *a[1] = {a_str(ex, "mode", mode)};
            node(ex, "Pad", nm, in, 3, nm, a, 1);
        } else if (!strcmp(t, "const_op")) {
            const char *op = key(&K, "op") ? key(&K, "op") : "add";
            const char *per = key(&K, "per") ? key(&K, "per") : "scalar";
            char kn[VNAME + 16];
            snprintf(kn, sizeof kn, "%s.value", nm);
            if (!strcmp(per, "scalar")) {
                float v = key(&K, "value") ? (float)strtod(key(&K, "value"), NULL) : (op[0] == 'a' || op[0] == 's' || !strcmp(op, "rsub") ? 0.0f : 1.0f);
                int64_t d0[1] = {0};
                init_tensor(ex, kn, d0, 0, &v, 1);
            } else {
                cnn_param p;
                CNN_TRY(param(net, nm, "value", &p));
                int chan = !strcmp(per, "channel");
                int64_t d[4] = {1, (int64_t)x.s.c, chan ? 1 : (int64_t)x.s.h, chan ? 1 : (int64_t)x.s.w};
                if (x.rank == 2 && (chan || (x.s.h == 1 && x.s.w == 1))) init_tensor(ex, kn, d, 2, p.data, p.count);
                else {
                    as4d(ex, &x);
                    init_tensor(ex, kn, d, 4, p.data, p.count);
                }
            }
            int rev = op[0] == 'r';
            const char *onnx_op = !strcmp(op, "add") ? "Add" : !strcmp(op, "sub") || !strcmp(op, "rsub") ? "Sub"
                                : !strcmp(op, "mul") ? "Mul" : "Div";
            const char *in[2] = {rev ? kn : x.name, rev ? x.name : kn};
            node(ex, onnx_op, nm, in, 2, nm, NULL, 0);
            out->rank = x.rank;
        } else {
            st = export_error(ctx, path, nm, t, "no ONNX mapping for this layer type");
            goto cleanup;
        }
        if (ex->failed) goto oom;
    }
    /* graph: input, output, nodes, initializers */
    {
        cnn_shape is = cnn_net_input_shape(net);
        evalue *last = &vals[nl - 1];
        if (nl < 2) {
            st = export_error(ctx, path, "input", "input", "the network has no layers");
            goto cleanup;
        }
        const char *in[1] = {last->name};
        node(ex, "Identity", "output", in, 1, "output", NULL, 0);
        CnnOnnx__GraphProto *g = xalloc(ex, sizeof *g);
        if (!g) goto oom;
        cnn_onnx__graph_proto__init(g);
        g->name = xstr(ex, "cnn");
        int64_t idims[4] = {0, (int64_t)is.c, (int64_t)is.h, (int64_t)is.w};
        int64_t odims[4] = {0, (int64_t)last->s.c, (int64_t)last->s.h, (int64_t)last->s.w};
        g->input = xalloc(ex, sizeof *g->input);
        g->output = xalloc(ex, sizeof *g->output);
        if (!g->input || !g->output) goto oom;
        g->input[0] = value_info(ex, "input", idims, 4);
        g->output[0] = value_info(ex, "output", odims, last->rank);
        g->n_input = g->n_output = 1;
        g->node = ex->nodes, g->n_node = ex->n_nodes;
        g->initializer = ex->inits, g->n_initializer = ex->n_inits;
        CnnOnnx__OperatorSetIdProto *os = xalloc(ex, sizeof *os);
        CnnOnnx__OperatorSetIdProto **osl = xalloc(ex, sizeof *osl);
        if (!os || !osl || ex->failed) goto oom;
        cnn_onnx__operator_set_id_proto__init(os);
        os->domain = xstr(ex, "");
        os->has_version = 1, os->version = 13;
        osl[0] = os;
        model->has_ir_version = 1, model->ir_version = 7;
        model->opset_import = osl, model->n_opset_import = 1;
        model->producer_name = xstr(ex, "cnn");
        model->producer_version = xstr(ex, cnn_version_string());
        model->graph = g;
        if (ex->failed) goto oom;
    }
    goto cleanup;
oom:
    st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path);
cleanup:
    if (text) cnn_free(ctx, text);
    cnn_mem_free(ctx, vals);
    return st;
}

cnn_status cnn_net_export_onnx(cnn_net *net, const char *path) {
    if (!net || !path) return cnn_error(net ? cnn_net_ctx(net) : NULL, CNN_ERR_INVALID_ARG, "cnn_net_export_onnx: NULL argument");
    cnn_ctx *ctx = cnn_net_ctx(net);
    exporter ex;
    memset(&ex, 0, sizeof ex);
    ex.ctx = ctx;
    CnnOnnx__ModelProto model;
    cnn_onnx__model_proto__init(&model);
    cnn_param p;
    cnn_status st;
    if (cnn_net_num_params(net) && cnn_net_param_at(net, 0, &p) == CNN_OK && !p.data) {
        st = cnn_error(ctx, CNN_ERR_MISUSE, "%s: compile the network before exporting it", path);
        goto cleanup;
    }
    st = export_net(&ex, net, path, &model);
    if (st == CNN_OK) {
        size_t n = cnn_onnx__model_proto__get_packed_size(&model);
        uint8_t *buf = cnn_mem_alloc(ctx, n ? n : 1);
        if (!buf) {
            st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, n);
        } else {
            cnn_onnx__model_proto__pack(&model, buf);
            st = cnn_onnx_write_file(ctx, path, buf, n);
            cnn_mem_free(ctx, buf);
        }
    }
cleanup:
    for (size_t i = 0; i < ex.n_allocs; i++) cnn_mem_free(ctx, ex.allocs[i]);
    cnn_mem_free(ctx, ex.allocs);
    return st;
}

#else

cnn_status cnn_net_export_onnx(cnn_net *net, const char *path) {
    (void)path;
    return cnn_error(net ? cnn_net_ctx(net) : NULL, CNN_ERR_UNSUPPORTED,
                     "ONNX support was not built (needs protobuf-c and onnx.proto)");
}

#endif
