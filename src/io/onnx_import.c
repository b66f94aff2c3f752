/* onnx_import.c — ONNX model -> a network of the library's own layers (not an interpreter).
 *
 * How
 *   1. protobuf-c parses the ModelProto (code generated from Debian's onnx.proto at build time).
 *   2. Values: initializers, Constant nodes and graph inputs bound by the caller (options.constants) are
 *      constants (float32 in memory); the one graph input left is the network's input; every other value is
 *      the output of a library layer, with its ONNX dims [N, d1, ...] and the per-sample shape (c, h, w) it
 *      maps to:  [N] -> (1,1,1), [N,F] -> (F,1,1), [N,C,L] -> (C,1,L), [N,C,H,W] -> (C,H,W),
 *      [N,C,D...,W] -> (C, D*...*H, W) (only for layers that do not look at h and w separately).
 *   3. Nodes are sorted topologically (Kahn; a cycle or an input nobody produces is an error naming the node)
 *      and only those the graph output depends on are mapped, each to model text lines (conv2d, dense,
 *      maxpool2d, ...), with the weights kept aside by parameter name. Ops on constants only are folded
 *      (Transpose, Reshape, Flatten, Identity, Squeeze/Unsqueeze, elementwise arithmetic).
 *   4. The model text is parsed (cnn_net_parse: one source of truth for layers), the net compiled for the
 *      input's batch, and every parameter set by name (cnn_net_param_find).
 * Batch is the first dimension and stays the first dimension: an op that mixes samples (a Softmax over
 *   axis 0, a Reshape that changes dim 0, a Concat on axis 0, a constant that varies along dim 0) is
 *   unsupported, and the message says so. See docs/onnx.md for the op list and the attributes. */
#include "onnx_internal.h"
#include "../layers/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(CNN_HAVE_ONNX) && CNN_HAVE_ONNX

#define MAXD CNN_ONNX_MAX_DIMS

typedef enum vkind { V_NONE = 0, V_CONST, V_DATA } vkind;

typedef struct value {
    const char *name;   /* points into the model */
    vkind kind;
    size_t ndim;
    int64_t dims[MAXD]; /* ONNX dims; data: dims[0] is the batch */
    /* constants */
    float *data;        /* count floats (cnn_mem_alloc), owned */
    size_t count;
    int32_t dtype;
    /* data */
    char layer[CNN_NAME_MAX]; /* the library layer that produces it */
    cnn_shape s;              /* per-sample shape of that layer's output */
} value;

typedef struct pending_param {
    char name[CNN_NAME_MAX + 32];
    float *data; /* owned */
    size_t count;
} pending_param;

typedef struct importer {
    cnn_ctx *ctx;
    const char *origin;
    int64_t opset;
    value *vals;
    size_t n_vals, cap_vals;
    cnn_strbuf text;
    pending_param *params;
    size_t n_params, cap_params;
    char (*names)[CNN_NAME_MAX]; /* layer names used */
    size_t n_names, cap_names;
    int64_t batch; /* the data input's dims[0] (0 when symbolic) */
    const CnnOnnx__NodeProto *node; /* the node being mapped (messages) */
    const CnnOnnx__GraphProto *graph;
} importer;

/* ---- messages ---- */

static const char *node_label(const CnnOnnx__NodeProto *n) {
    return n->name && n->name[0] ? n->name : (n->n_output && n->output[0][0] ? n->output[0] : "?");
}

CNN_PRINTF(3, 4)
static cnn_status node_error(importer *im, cnn_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const CnnOnnx__NodeProto *n = im->node;
    return cnn_error(im->ctx, s, "%s: node '%s' (%s): %s", im->origin, node_label(n), n->op_type ? n->op_type : "?",
                     msg);
}

/* ---- values ---- */

static value *find_value(importer *im, const char *name) {
    for (size_t i = im->n_vals; i-- > 0;)
        if (strcmp(im->vals[i].name, name) == 0) return &im->vals[i];
    return NULL;
}

static cnn_status add_value(importer *im, const char *name, value **out) {
    if (im->n_vals == im->cap_vals) {
        size_t cap = im->cap_vals ? im->cap_vals * 2 : 64;
        value *nv = cnn_mem_calloc(im->ctx, cap, sizeof *nv);
        if (!nv) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        if (im->n_vals) memcpy(nv, im->vals, im->n_vals * sizeof *nv);
        cnn_mem_free(im->ctx, im->vals);
        im->vals = nv;
        im->cap_vals = cap;
    }
    value *v = &im->vals[im->n_vals++];
    memset(v, 0, sizeof *v);
    v->name = name;
    *out = v;
    return CNN_OK;
}

static size_t dims_count(const int64_t *d, size_t n) {
    size_t c = 1;
    for (size_t i = 0; i < n; i++) c *= (size_t)d[i];
    return c;
}

/* A constant value from float data (copied). */
static cnn_status add_const(importer *im, const char *name, const int64_t *dims, size_t ndim, const float *data,
                            size_t count, int32_t dtype) {
    value *v;
    cnn_status st = add_value(im, name, &v);
    if (st != CNN_OK) return st;
    v->kind = V_CONST;
    v->ndim = ndim;
    memcpy(v->dims, dims, ndim * sizeof *dims);
    v->count = count;
    v->dtype = dtype;
    if (count) {
        v->data = cnn_mem_alloc(im->ctx, count * sizeof(float));
        if (!v->data) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        memcpy(v->data, data, count * sizeof(float));
    }
    return CNN_OK;
}

/* Per-sample shape of ONNX dims [N, ...]. */
static cnn_shape map_shape(const int64_t *d, size_t nd) {
    cnn_shape s = {1, 1, 1};
    if (nd >= 2) s.c = (size_t)d[1];
    if (nd == 3) s.w = (size_t)d[2];
    if (nd == 4) s.h = (size_t)d[2], s.w = (size_t)d[3];
    if (nd >= 5) {
        s.w = (size_t)d[nd - 1];
        for (size_t i = 2; i + 1 < nd; i++) s.h *= (size_t)d[i];
    }
    return s;
}

/* ---- layer names and model text ---- */

static int name_used(importer *im, const char *n) {
    for (size_t i = 0; i < im->n_names; i++)
        if (strcmp(im->names[i], n) == 0) return 1;
    return 0;
}

/* A unique valid layer name derived from `base` (letters, digits, _ and -, starting with a letter or _). */
static cnn_status make_name(importer *im, const char *base, const char *fallback, char *out) {
    char b[CNN_NAME_MAX];
    size_t k = 0;
    for (const char *p = base; *p && k < 40; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        b[k++] = ok ? c : '_';
    }
    b[k] = 0;
    if (!k || !((b[0] >= 'a' && b[0] <= 'z') || (b[0] >= 'A' && b[0] <= 'Z') || b[0] == '_')) {
        char t[CNN_NAME_MAX];
        snprintf(t, sizeof t, "%s_%s", fallback, b);
        snprintf(b, sizeof b, "%.40s", t);
    }
    char cand[CNN_NAME_MAX];
    snprintf(cand, sizeof cand, "%s", b);
    for (unsigned i = 1; name_used(im, cand) || strcmp(cand, "input") == 0; i++)
        snprintf(cand, sizeof cand, "%s_%u", b, i);
    if (im->n_names == im->cap_names) {
        size_t cap = im->cap_names ? im->cap_names * 2 : 64;
        char(*nn)[CNN_NAME_MAX] = cnn_mem_calloc(im->ctx, cap, CNN_NAME_MAX);
        if (!nn) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        if (im->n_names) memcpy(nn, im->names, im->n_names * CNN_NAME_MAX);
        cnn_mem_free(im->ctx, im->names);
        im->names = nn;
        im->cap_names = cap;
    }
    snprintf(im->names[im->n_names++], CNN_NAME_MAX, "%s", cand);
    snprintf(out, CNN_NAME_MAX, "%s", cand);
    return CNN_OK;
}

static cnn_status add_param(importer *im, const char *layer, const char *suffix, const float *data, size_t count,
                            float scale) {
    if (im->n_params == im->cap_params) {
        size_t cap = im->cap_params ? im->cap_params * 2 : 32;
        pending_param *np = cnn_mem_calloc(im->ctx, cap, sizeof *np);
        if (!np) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        if (im->n_params) memcpy(np, im->params, im->n_params * sizeof *np);
        cnn_mem_free(im->ctx, im->params);
        im->params = np;
        im->cap_params = cap;
    }
    pending_param *p = &im->params[im->n_params];
    snprintf(p->name, sizeof p->name, "%s.%s", layer, suffix);
    p->count = count;
    p->data = cnn_mem_alloc(im->ctx, (count ? count : 1) * sizeof(float));
    if (!p->data) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
    for (size_t i = 0; i < count; i++) p->data[i] = data ? data[i] * scale : 0.0f;
    im->n_params++;
    return CNN_OK;
}

/* The output value of the current node becomes data produced by `layer` with these dims. */
static cnn_status set_data_output(importer *im, const char *oname, const char *layer, const int64_t *dims,
                                  size_t nd) {
    value *v;
    cnn_status st = add_value(im, oname, &v);
    if (st != CNN_OK) return st;
    v->kind = V_DATA;
    v->ndim = nd;
    memcpy(v->dims, dims, nd * sizeof *dims);
    snprintf(v->layer, sizeof v->layer, "%s", layer);
    v->s = map_shape(dims, nd);
    return CNN_OK;
}

/* Start a model text line "<type> name=<new> from=<x>" for the current node; *layer gets the name. */
static cnn_status begin_layer(importer *im, const char *type, const value *x, char *layer) {
    const CnnOnnx__NodeProto *n = im->node;
    cnn_status st = make_name(im, n->name && n->name[0] ? n->name : n->output[0], type, layer);
    if (st != CNN_OK) return st;
    cnn_strbuf_printf(&im->text, "%s name=%s from=%s", type, layer, x->layer);
    return CNN_OK;
}

static void end_layer(importer *im) { cnn_strbuf_printf(&im->text, "\n"); }

/* Make `x` available with per-sample shape s (a reshape layer when its layer has another shape). */
static cnn_status reshape_to(importer *im, value *x, cnn_shape s, char *layer_out) {
    if (x->s.c == s.c && x->s.h == s.h && x->s.w == s.w) {
        snprintf(layer_out, CNN_NAME_MAX, "%s", x->layer);
        return CNN_OK;
    }
    char name[CNN_NAME_MAX];
    cnn_status st = make_name(im, x->layer, "reshape", name);
    if (st != CNN_OK) return st;
    cnn_strbuf_printf(&im->text, "reshape name=%s from=%s c=%zu h=%zu w=%zu\n", name, x->layer, s.c, s.h, s.w);
    snprintf(layer_out, CNN_NAME_MAX, "%s", name);
    return CNN_OK;
}

/* ---- attributes ---- */

static const CnnOnnx__AttributeProto *attr(const CnnOnnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
    return NULL;
}

/* Every attribute of the node is in `allowed` (space separated), else unsupported. */
static cnn_status check_attrs(importer *im, const char *allowed) {
    const CnnOnnx__NodeProto *n = im->node;
    for (size_t i = 0; i < n->n_attribute; i++) {
        const char *a = n->attribute[i]->name ? n->attribute[i]->name : "";
        size_t la = strlen(a);
        int ok = 0;
        for (const char *p = allowed; *p;) {
            while (*p == ' ') p++;
            const char *e = p;
            while (*e && *e != ' ') e++;
            if ((size_t)(e - p) == la && la && strncmp(p, a, la) == 0) ok = 1;
            p = e;
        }
        if (!ok) return node_error(im, CNN_ERR_UNSUPPORTED, "unsupported attribute '%s'", a);
        if (n->attribute[i]->ref_attr_name && n->attribute[i]->ref_attr_name[0])
            return node_error(im, CNN_ERR_UNSUPPORTED, "attribute '%s' refers to a function attribute", a);
    }
    return CNN_OK;
}

static cnn_status attr_int(importer *im, const char *name, int64_t def, int64_t *out) {
    const CnnOnnx__AttributeProto *a = attr(im->node, name);
    *out = def;
    if (!a) return CNN_OK;
    if (!a->has_i && !(a->has_type && a->type == CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
        return node_error(im, CNN_ERR_FORMAT, "attribute '%s' is not an integer", name);
    *out = a->i;
    return CNN_OK;
}

static cnn_status attr_float(importer *im, const char *name, double def, double *out) {
    const CnnOnnx__AttributeProto *a = attr(im->node, name);
    *out = def;
    if (!a) return CNN_OK;
    if (!a->has_f && !(a->has_type && a->type == CNN_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
        return node_error(im, CNN_ERR_FORMAT, "attribute '%s' is not a float", name);
    *out = a->f;
    return CNN_OK;
}

/* Integer list; *n = 0 and *present = 0 when absent. At most `max` entries. */
static cnn_status attr_ints(importer *im, const char *name, int64_t *out, size_t max, size_t *n, int *present) {
    const CnnOnnx__AttributeProto *a = attr(im->node, name);
    *n = 0;
    if (present) *present = a != NULL;
    if (!a) return CNN_OK;
    if (a->n_ints > max) return node_error(im, CNN_ERR_UNSUPPORTED, "attribute '%s' has %zu values (at most %zu)", name, a->n_ints, max);
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    *n = a->n_ints;
    return CNN_OK;
}

/* String attribute compared to `def` when absent; copies into buf. */
static void attr_string(importer *im, const char *name, const char *def, char *buf, size_t bn) {
    const CnnOnnx__AttributeProto *a = attr(im->node, name);
    if (!a || !a->has_s) {
        snprintf(buf, bn, "%s", def);
        return;
    }
    size_t l = a->s.len < bn - 1 ? a->s.len : bn - 1;
    memcpy(buf, a->s.data, l);
    buf[l] = 0;
}

/* ---- node inputs ---- */

static const char *in_name(const CnnOnnx__NodeProto *n, size_t i) {
    return i < n->n_input && n->input[i] && n->input[i][0] ? n->input[i] : NULL;
}

/* Input i as a value (NULL when absent and optional). */
static cnn_status input_value(importer *im, size_t i, int required, value **out) {
    const char *nm = in_name(im->node, i);
    *out = NULL;
    if (!nm) {
        if (required) return node_error(im, CNN_ERR_FORMAT, "missing input %zu", i);
        return CNN_OK;
    }
    value *v = find_value(im, nm);
    if (!v) return node_error(im, CNN_ERR_FORMAT, "input '%s' is not defined", nm); /* not reached: sorted */
    *out = v;
    return CNN_OK;
}

static cnn_status data_input(importer *im, size_t i, value **out) {
    cnn_status st = input_value(im, i, 1, out);
    if (st != CNN_OK) return st;
    if ((*out)->kind != V_DATA)
        return node_error(im, CNN_ERR_UNSUPPORTED,
                          "input %zu ('%s') is a constant where the library needs the network's data", i,
                          (*out)->name);
    return CNN_OK;
}

static cnn_status const_input(importer *im, size_t i, int required, value **out) {
    cnn_status st = input_value(im, i, required, out);
    if (st != CNN_OK || !*out) return st;
    if ((*out)->kind != V_CONST)
        return node_error(im, CNN_ERR_UNSUPPORTED,
                          "input %zu ('%s') must be a constant (an initializer) for the library's layers", i,
                          (*out)->name);
    return CNN_OK;
}

/* Integers from a constant (exact, rounded-trip checked). */
static cnn_status const_ints(importer *im, const value *v, int64_t *out, size_t max, size_t *n) {
    if (v->count > max) return node_error(im, CNN_ERR_UNSUPPORTED, "'%s' has %zu values (at most %zu)", v->name, v->count, max);
    for (size_t i = 0; i < v->count; i++) {
        float f = v->data[i];
        if (!(f == floorf(f)) || fabsf(f) > 16777216.0f)
            return node_error(im, CNN_ERR_UNSUPPORTED, "'%s' holds %g, not a small integer", v->name, (double)f);
        out[i] = (int64_t)f;
    }
    *n = v->count;
    return CNN_OK;
}

static int is_output_used(importer *im, size_t i);

/* The node has one output that matters: further outputs must be absent or unused. */
static cnn_status single_output(importer *im) {
    for (size_t i = 1; i < im->node->n_output; i++)
        if (im->node->output[i][0] && is_output_used(im, i))
            return node_error(im, CNN_ERR_UNSUPPORTED, "output %zu ('%s') is not supported (only the first output)",
                              i, im->node->output[i]);
    return CNN_OK;
}

static int is_output_used(importer *im, size_t i) {
    const char *name = im->node->output[i];
    const CnnOnnx__GraphProto *g = im->graph;
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t j = 0; j < g->node[k]->n_input; j++)
            if (strcmp(g->node[k]->input[j], name) == 0) return 1;
    for (size_t k = 0; k < g->n_output; k++)
        if (g->output[k]->name && strcmp(g->output[k]->name, name) == 0) return 1;
    return 0;
}

/* The node's output i is an alias of v (Identity, Dropout, layout no-op reshapes). */
static cnn_status alias_output(importer *im, size_t i, const value *v, const int64_t *dims, size_t nd) {
    value *o;
    value copy = *v; /* add_value may move the array */
    cnn_status st = add_value(im, im->node->output[i], &o);
    if (st != CNN_OK) return st;
    const char *nm = o->name;
    *o = copy;
    o->name = nm;
    if (copy.kind == V_CONST) {
        o->data = NULL; /* constants are copied so that each value owns its data */
        if (copy.count) {
            o->data = cnn_mem_alloc(im->ctx, copy.count * sizeof(float));
            if (!o->data) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
            memcpy(o->data, copy.data, copy.count * sizeof(float));
        }
    }
    o->ndim = nd;
    memcpy(o->dims, dims, nd * sizeof *dims);
    if (copy.kind == V_DATA) {
        cnn_shape s = map_shape(dims, nd);
        if (s.c != copy.s.c || s.h != copy.s.h || s.w != copy.s.w) {
            /* the layout is the same, the per-sample shape differs: a reshape layer */
            char layer[CNN_NAME_MAX];
            value tmp = copy;
            st = reshape_to(im, &tmp, s, layer);
            if (st != CNN_OK) return st;
            o = find_value(im, nm);
            snprintf(o->layer, sizeof o->layer, "%s", layer);
            o->s = s;
        }
    }
    return CNN_OK;
}

static int64_t norm_axis(int64_t a, size_t r) { return a < 0 ? a + (int64_t)r : a; }

/* ---- windows (Conv, MaxPool, AveragePool) ---- */

typedef struct win {
    size_t k[2], s[2], d[2], pb[2], pe[2], in[2], out[2]; /* [0] height, [1] width */
    size_t spatial;                                        /* 1 or 2 ONNX spatial axes */
} win;

static cnn_status window(importer *im, const value *x, const int64_t *kernel, size_t nk, int ceil_mode,
                         int allow_dilation, win *w) {
    cnn_status st;
    memset(w, 0, sizeof *w);
    if (x->ndim != 3 && x->ndim != 4)
        return node_error(im, CNN_ERR_UNSUPPORTED, "input has %zu dimensions; 1-D and 2-D (3 or 4 dims) are supported",
                          x->ndim);
    size_t sp = x->ndim - 2;
    w->spatial = sp;
    if (nk != sp) return node_error(im, CNN_ERR_FORMAT, "kernel has %zu spatial dims, the input %zu", nk, sp);
    int64_t strides[4], dil[4], pads[8];
    size_t ns, nd, np;
    int hp;
    if ((st = attr_ints(im, "strides", strides, 4, &ns, NULL)) != CNN_OK) return st;
    if ((st = attr_ints(im, "dilations", dil, 4, &nd, NULL)) != CNN_OK) return st;
    if ((st = attr_ints(im, "pads", pads, 8, &np, &hp)) != CNN_OK) return st;
    if ((ns && ns != sp) || (nd && nd != sp) || (np && np != 2 * sp))
        return node_error(im, CNN_ERR_FORMAT, "strides/dilations/pads do not match %zu spatial dims", sp);
    char autopad[32];
    attr_string(im, "auto_pad", "NOTSET", autopad, sizeof autopad);
    int mode = 0; /* 0 NOTSET, 1 VALID, 2 SAME_UPPER, 3 SAME_LOWER */
    if (strcmp(autopad, "NOTSET") == 0) mode = 0;
    else if (strcmp(autopad, "VALID") == 0) mode = 1;
    else if (strcmp(autopad, "SAME_UPPER") == 0) mode = 2;
    else if (strcmp(autopad, "SAME_LOWER") == 0) mode = 3;
    else return node_error(im, CNN_ERR_UNSUPPORTED, "auto_pad '%s'", autopad);
    for (size_t a = 0; a < 2; a++) {
        w->k[a] = w->s[a] = w->d[a] = 1;
        w->in[a] = 1;
    }
    for (size_t j = 0; j < sp; j++) {
        size_t a = sp == 1 ? 1 : j; /* 1-D maps to the width axis */
        w->in[a] = (size_t)x->dims[2 + j];
        if (kernel[j] < 1) return node_error(im, CNN_ERR_FORMAT, "kernel size %lld", (long long)kernel[j]);
        w->k[a] = (size_t)kernel[j];
        if (ns) {
            if (strides[j] < 1) return node_error(im, CNN_ERR_FORMAT, "stride %lld", (long long)strides[j]);
            w->s[a] = (size_t)strides[j];
        }
        if (nd) {
            if (dil[j] < 1) return node_error(im, CNN_ERR_FORMAT, "dilation %lld", (long long)dil[j]);
            w->d[a] = (size_t)dil[j];
            if (w->d[a] != 1 && !allow_dilation) return node_error(im, CNN_ERR_UNSUPPORTED, "dilations other than 1");
        }
        if (mode == 0 && np) {
            if (pads[j] < 0 || pads[j + sp] < 0) return node_error(im, CNN_ERR_UNSUPPORTED, "negative pads");
            w->pb[a] = (size_t)pads[j];
            w->pe[a] = (size_t)pads[j + sp];
        }
        size_t ext = (w->k[a] - 1) * w->d[a] + 1, in = w->in[a];
        if (mode >= 2) {
            size_t out = (in + w->s[a] - 1) / w->s[a];
            size_t need = (out - 1) * w->s[a] + ext;
            size_t total = need > in ? need - in : 0;
            w->pb[a] = mode == 2 ? total / 2 : total - total / 2;
            w->pe[a] = total - w->pb[a];
        }
        size_t padded = in + w->pb[a] + w->pe[a];
        if (padded < ext)
            return node_error(im, CNN_ERR_UNSUPPORTED, "window %zu is larger than the padded input %zu", ext, padded);
        w->out[a] = ceil_mode ? (padded - ext + w->s[a] - 1) / w->s[a] + 1 : (padded - ext) / w->s[a] + 1;
    }
    (void)hp;
    return CNN_OK;
}

static void print_window(importer *im, const win *w, int pool) {
    cnn_strbuf_printf(&im->text, " kh=%zu kw=%zu stride_h=%zu stride_w=%zu pad_top=%zu pad_bottom=%zu pad_left=%zu pad_right=%zu",
                      w->k[0], w->k[1], w->s[0], w->s[1], w->pb[0], w->pe[0], w->pb[1], w->pe[1]);
    if (!pool || w->d[0] != 1 || w->d[1] != 1)
        cnn_strbuf_printf(&im->text, " dilation_h=%zu dilation_w=%zu", w->d[0], w->d[1]);
}

static void window_out_dims(const value *x, size_t k, const win *w, int64_t *dims) {
    dims[0] = x->dims[0];
    dims[1] = (int64_t)k;
    if (w->spatial == 1) dims[2] = (int64_t)w->out[1];
    else dims[2] = (int64_t)w->out[0], dims[3] = (int64_t)w->out[1];
}

/* ---- op handlers: each maps im->node ---- */

static cnn_status op_conv(importer *im) {
    cnn_status st;
    value *x, *wv, *b;
    if ((st = check_attrs(im, "auto_pad dilations group kernel_shape pads strides")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    if ((st = const_input(im, 1, 1, &wv)) != CNN_OK) return st;
    if ((st = const_input(im, 2, 0, &b)) != CNN_OK) return st;
    int64_t group;
    if ((st = attr_int(im, "group", 1, &group)) != CNN_OK) return st;
    if (wv->ndim != x->ndim) return node_error(im, CNN_ERR_FORMAT, "weight has %zu dims, the input %zu", wv->ndim, x->ndim);
    int64_t ks[4], kattr[4];
    size_t nk;
    int hk;
    for (size_t j = 2; j < wv->ndim; j++) ks[j - 2] = wv->dims[j];
    if ((st = attr_ints(im, "kernel_shape", kattr, 4, &nk, &hk)) != CNN_OK) return st;
    if (hk && (nk != wv->ndim - 2 || memcmp(kattr, ks, nk * sizeof *ks) != 0))
        return node_error(im, CNN_ERR_FORMAT, "kernel_shape does not match the weight's dims");
    win w;
    if ((st = window(im, x, ks, wv->ndim - 2, 0, 1, &w)) != CNN_OK) return st;
    size_t K = (size_t)wv->dims[0], C = x->s.c;
    if (group < 1 || C % (size_t)group || K % (size_t)group || (size_t)wv->dims[1] * (size_t)group != C)
        return node_error(im, CNN_ERR_FORMAT, "weight [%lld, %lld, ...] does not fit %zu input channels in %lld groups",
                          (long long)wv->dims[0], (long long)wv->dims[1], C, (long long)group);
    if (b && b->count != K) return node_error(im, CNN_ERR_FORMAT, "bias has %zu values for %zu output channels", b->count, K);
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, "conv2d", x, layer)) != CNN_OK) return st;
    cnn_strbuf_printf(&im->text, " k=%zu", K);
    print_window(im, &w, 0);
    cnn_strbuf_printf(&im->text, " groups=%lld bias=%d", (long long)group, b ? 1 : 0);
    end_layer(im);
    if ((st = add_param(im, layer, "weight", wv->data, wv->count, 1.0f)) != CNN_OK) return st;
    if (b && (st = add_param(im, layer, "bias", b->data, b->count, 1.0f)) != CNN_OK) return st;
    int64_t od[4];
    window_out_dims(x, K, &w, od);
    return set_data_output(im, im->node->output[0], layer, od, x->ndim);
}

static cnn_status op_pool(importer *im, int is_max) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, is_max ? "auto_pad ceil_mode dilations kernel_shape pads storage_order strides"
                                     : "auto_pad ceil_mode count_include_pad kernel_shape pads strides")) != CNN_OK)
        return st;
    if ((st = single_output(im)) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    int64_t ks[4], ceil_mode, cip;
    size_t nk;
    int hk;
    if ((st = attr_ints(im, "kernel_shape", ks, 4, &nk, &hk)) != CNN_OK) return st;
    if (!hk) return node_error(im, CNN_ERR_FORMAT, "missing kernel_shape");
    if ((st = attr_int(im, "ceil_mode", 0, &ceil_mode)) != CNN_OK) return st;
    if ((st = attr_int(im, "count_include_pad", 0, &cip)) != CNN_OK) return st;
    win w;
    if ((st = window(im, x, ks, nk, ceil_mode != 0, is_max, &w)) != CNN_OK) return st;
    for (size_t a = 0; a < 2; a++) {
        size_t ext = (w.k[a] - 1) * w.d[a] + 1;
        if ((w.pb[a] == w.pe[a] && w.pb[a] > ext / 2) || (w.pb[a] != w.pe[a] && (w.pb[a] >= ext || w.pe[a] >= ext)))
            return node_error(im, CNN_ERR_UNSUPPORTED, "pads %zu,%zu with a window of %zu (the library follows PyTorch: pad <= window/2)",
                              w.pb[a], w.pe[a], ext);
        if (ceil_mode) { /* PyTorch drops a last window that starts in the end padding; ONNX keeps it */
            size_t o = w.out[a];
            if ((o - 1) * w.s[a] >= w.in[a] + w.pb[a])
                return node_error(im, CNN_ERR_UNSUPPORTED, "ceil_mode with a last window that starts in the padding");
        }
    }
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, is_max ? "maxpool2d" : "avgpool2d", x, layer)) != CNN_OK) return st;
    print_window(im, &w, 1);
    if (ceil_mode) cnn_strbuf_printf(&im->text, " ceil=1");
    if (!is_max) cnn_strbuf_printf(&im->text, " count_include_pad=%d", cip ? 1 : 0);
    end_layer(im);
    int64_t od[4];
    window_out_dims(x, x->s.c, &w, od);
    return set_data_output(im, im->node->output[0], layer, od, x->ndim);
}

static cnn_status op_global_pool(importer *im, int is_max) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, "")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    if (x->ndim < 3) return node_error(im, CNN_ERR_FORMAT, "input has %zu dims (needs N, C and spatial dims)", x->ndim);
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, is_max ? "global_maxpool" : "global_avgpool", x, layer)) != CNN_OK) return st;
    end_layer(im);
    int64_t od[MAXD];
    od[0] = x->dims[0];
    od[1] = x->dims[1];
    for (size_t i = 2; i < x->ndim; i++) od[i] = 1;
    return set_data_output(im, im->node->output[0], layer, od, x->ndim);
}

static cnn_status op_batchnorm(importer *im) {
    cnn_status st;
    value *x, *sc, *bi, *mean, *var;
    if ((st = check_attrs(im, "epsilon momentum spatial is_test consumed_inputs training_mode")) != CNN_OK) return st;
    if ((st = single_output(im)) != CNN_OK) return st;
    int64_t spatial, training;
    double eps;
    if ((st = attr_int(im, "spatial", 1, &spatial)) != CNN_OK) return st;
    if ((st = attr_int(im, "training_mode", 0, &training)) != CNN_OK) return st;
    if ((st = attr_float(im, "epsilon", 1e-5, &eps)) != CNN_OK) return st;
    if (!spatial) return node_error(im, CNN_ERR_UNSUPPORTED, "spatial=0 (per-element statistics)");
    if (training) return node_error(im, CNN_ERR_UNSUPPORTED, "training_mode=1 (inference only)");
    if (!(eps > 0.0 && eps <= 1.0)) return node_error(im, CNN_ERR_UNSUPPORTED, "epsilon %g (the library takes (0, 1])", eps);
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    if ((st = const_input(im, 1, 1, &sc)) != CNN_OK) return st;
    if ((st = const_input(im, 2, 1, &bi)) != CNN_OK) return st;
    if ((st = const_input(im, 3, 1, &mean)) != CNN_OK) return st;
    if ((st = const_input(im, 4, 1, &var)) != CNN_OK) return st;
    if (x->ndim < 2) return node_error(im, CNN_ERR_FORMAT, "input has no channel dimension");
    size_t c = x->s.c;
    if (sc->count != c || bi->count != c || mean->count != c || var->count != c)
        return node_error(im, CNN_ERR_FORMAT, "scale, B, mean and var must have %zu values", c);
    char layer[CNN_NAME_MAX], e[64];
    if ((st = begin_layer(im, "batchnorm", x, layer)) != CNN_OK) return st;
    cnn_format_float(e, sizeof e, (double)(float)eps);
    cnn_strbuf_printf(&im->text, " eps=%s", e);
    end_layer(im);
    if ((st = add_param(im, layer, "weight", sc->data, c, 1.0f)) != CNN_OK) return st;
    if ((st = add_param(im, layer, "bias", bi->data, c, 1.0f)) != CNN_OK) return st;
    if ((st = add_param(im, layer, "running_mean", mean->data, c, 1.0f)) != CNN_OK) return st;
    if ((st = add_param(im, layer, "running_var", var->data, c, 1.0f)) != CNN_OK) return st;
    return set_data_output(im, im->node->output[0], layer, x->dims, x->ndim);
}

static cnn_status op_activation(importer *im, const char *type) {
    cnn_status st;
    value *x;
    int leaky = strcmp(type, "leaky_relu") == 0;
    if ((st = check_attrs(im, leaky ? "alpha" : "")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, type, x, layer)) != CNN_OK) return st;
    if (leaky) {
        double alpha;
        char b[64];
        if ((st = attr_float(im, "alpha", 0.01, &alpha)) != CNN_OK) return st;
        cnn_format_float(b, sizeof b, (double)(float)alpha);
        cnn_strbuf_printf(&im->text, " slope=%s", b);
    }
    end_layer(im);
    return set_data_output(im, im->node->output[0], layer, x->dims, x->ndim);
}

static cnn_status op_softmax(importer *im, int is_log) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, "axis")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    int64_t axis;
    if ((st = attr_int(im, "axis", im->opset >= 13 ? -1 : 1, &axis)) != CNN_OK) return st;
    size_t r = x->ndim;
    axis = norm_axis(axis, r);
    if (axis < 0 || axis >= (int64_t)r) return node_error(im, CNN_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    if (axis == 0) return node_error(im, CNN_ERR_UNSUPPORTED, "axis 0 is the batch");
    /* groups: outer dims (1..axis-1), the softmax dims, inner dims */
    size_t outer = 1, g = 1, inner = 1;
    for (size_t i = 1; i < (size_t)axis; i++) outer *= (size_t)x->dims[i];
    if (im->opset >= 13) {
        g = (size_t)x->dims[axis];
        for (size_t i = (size_t)axis + 1; i < r; i++) inner *= (size_t)x->dims[i];
    } else {
        for (size_t i = (size_t)axis; i < r; i++) g *= (size_t)x->dims[i];
    }
    if (outer != 1)
        return node_error(im, CNN_ERR_UNSUPPORTED,
                          "axis %lld: the library's softmax runs over the channel axis (dims before the axis, batch excepted, must be 1)",
                          (long long)axis);
    char from[CNN_NAME_MAX], layer[CNN_NAME_MAX];
    cnn_shape s = {g, 1, inner};
    if ((st = reshape_to(im, x, s, from)) != CNN_OK) return st;
    value tmp = *x;
    snprintf(tmp.layer, sizeof tmp.layer, "%s", from);
    if ((st = begin_layer(im, is_log ? "log_softmax" : "softmax", &tmp, layer)) != CNN_OK) return st;
    end_layer(im);
    tmp.s = s;
    snprintf(tmp.layer, sizeof tmp.layer, "%s", layer);
    cnn_shape back = map_shape(x->dims, x->ndim);
    char out[CNN_NAME_MAX];
    if ((st = reshape_to(im, &tmp, back, out)) != CNN_OK) return st;
    return set_data_output(im, im->node->output[0], out, x->dims, x->ndim);
}

/* dense from data x [N, K] and weight [F, K] (already laid out), bias [F] or NULL. */
static cnn_status emit_dense(importer *im, value *x, const float *w, size_t F, const float *bias, float bscale) {
    cnn_status st;
    char layer[CNN_NAME_MAX];
    size_t K = (size_t)x->dims[1];
    if ((st = begin_layer(im, "dense", x, layer)) != CNN_OK) return st;
    cnn_strbuf_printf(&im->text, " out=%zu bias=%d", F, bias ? 1 : 0);
    end_layer(im);
    if ((st = add_param(im, layer, "weight", w, F * K, 1.0f)) != CNN_OK) return st;
    if (bias && (st = add_param(im, layer, "bias", bias, F, bscale)) != CNN_OK) return st;
    int64_t od[2] = {x->dims[0], (int64_t)F};
    return set_data_output(im, im->node->output[0], layer, od, 2);
}

static cnn_status op_gemm(importer *im, int matmul) {
    cnn_status st;
    value *x, *bv, *cv = NULL;
    if ((st = check_attrs(im, matmul ? "" : "alpha beta transA transB broadcast")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    if ((st = const_input(im, 1, 1, &bv)) != CNN_OK) return st;
    if (!matmul && (st = const_input(im, 2, 0, &cv)) != CNN_OK) return st;
    int64_t ta = 0, tb = 0;
    double alpha = 1.0, beta = 1.0;
    if (!matmul) {
        if ((st = attr_int(im, "transA", 0, &ta)) != CNN_OK) return st;
        if ((st = attr_int(im, "transB", 0, &tb)) != CNN_OK) return st;
        if ((st = attr_float(im, "alpha", 1.0, &alpha)) != CNN_OK) return st;
        if ((st = attr_float(im, "beta", 1.0, &beta)) != CNN_OK) return st;
    }
    if (ta) return node_error(im, CNN_ERR_UNSUPPORTED, "transA=1 (the batch must stay the first dimension)");
    if (x->ndim != 2) return node_error(im, CNN_ERR_UNSUPPORTED, "input has %zu dims (2-D only)", x->ndim);
    if (bv->ndim != 2) return node_error(im, CNN_ERR_UNSUPPORTED, "B has %zu dims (2-D only)", bv->ndim);
    size_t K = (size_t)x->dims[1];
    size_t bk = (size_t)(tb ? bv->dims[1] : bv->dims[0]), F = (size_t)(tb ? bv->dims[0] : bv->dims[1]);
    if (bk != K) return node_error(im, CNN_ERR_FORMAT, "B has %zu rows for %zu input features", bk, K);
    float *w = cnn_mem_alloc(im->ctx, (F * K > 0 ? F * K : 1) * sizeof(float));
    float *bias = NULL;
    if (!w) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
    for (size_t f = 0; f < F; f++)
        for (size_t k = 0; k < K; k++)
            w[f * K + k] = (float)alpha * (tb ? bv->data[f * K + k] : bv->data[k * F + f]);
    if (cv) {
        /* C broadcasts to [N, F]: it may not vary along the batch */
        int ok = cv->count == 1 || (cv->count == F && (cv->ndim == 1 || (cv->ndim == 2 && cv->dims[0] == 1 && (size_t)cv->dims[1] == F)));
        if (!ok) {
            cnn_mem_free(im->ctx, w);
            return node_error(im, CNN_ERR_UNSUPPORTED, "C must broadcast along the batch ([F], [1, F] or a scalar)");
        }
        bias = cnn_mem_alloc(im->ctx, F * sizeof(float));
        if (!bias) {
            cnn_mem_free(im->ctx, w);
            return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        }
        for (size_t f = 0; f < F; f++) bias[f] = cv->data[cv->count == 1 ? 0 : f];
    }
    st = emit_dense(im, x, w, F, bias, (float)beta);
    cnn_mem_free(im->ctx, w);
    cnn_mem_free(im->ctx, bias);
    return st;
}

/* Index into a tensor of dims `in` (aligned to rank r by leading 1s, broadcast where 1) for flat index i of
 * a tensor of dims `out`. */
static size_t bcast_index(size_t i, const int64_t *out, const int64_t *in, size_t r) {
    size_t idx = 0, stride = 1;
    for (size_t k = r; k-- > 0;) {
        size_t o = (size_t)out[k], d = i % o;
        i /= o;
        if (in[k] != 1) idx += d * stride;
        stride *= (size_t)in[k];
    }
    return idx;
}

static float apply_op(int op, float a, float b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    default: return a / b;
    }
}

static cnn_status op_arith(importer *im, int op /* 0 add 1 sub 2 mul 3 div */) {
    static const char *const names[] = {"add", "sub", "mul", "div"};
    cnn_status st;
    value *a, *b;
    if ((st = check_attrs(im, "axis broadcast consumed_inputs")) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &a)) != CNN_OK) return st;
    if ((st = input_value(im, 1, 1, &b)) != CNN_OK) return st;
    if (attr(im->node, "axis")) return node_error(im, CNN_ERR_UNSUPPORTED, "legacy 'axis' broadcasting");
    if (a->kind == V_DATA && b->kind == V_DATA) {
        if (op != 0) return node_error(im, CNN_ERR_UNSUPPORTED, "%s of two non-constant tensors (only Add is)", names[op]);
        if (a->ndim != b->ndim || memcmp(a->dims + 1, b->dims + 1, (a->ndim - 1) * sizeof(int64_t)) != 0)
            return node_error(im, CNN_ERR_UNSUPPORTED, "Add of two tensors needs equal shapes (no broadcasting)");
        char layer[CNN_NAME_MAX], bl[CNN_NAME_MAX];
        if ((st = reshape_to(im, b, a->s, bl)) != CNN_OK) return st;
        if ((st = begin_layer(im, "add", a, layer)) != CNN_OK) return st;
        cnn_strbuf_printf(&im->text, ",%s", bl);
        end_layer(im);
        return set_data_output(im, im->node->output[0], layer, a->dims, a->ndim);
    }
    /* broadcast shapes */
    size_t r = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t da[MAXD], db[MAXD], dout[MAXD];
    for (size_t i = 0; i < r; i++) {
        da[i] = i < r - a->ndim ? 1 : a->dims[i - (r - a->ndim)];
        db[i] = i < r - b->ndim ? 1 : b->dims[i - (r - b->ndim)];
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1)
            return node_error(im, CNN_ERR_FORMAT, "shapes do not broadcast (axis %zu: %lld vs %lld)", i,
                              (long long)da[i], (long long)db[i]);
        dout[i] = da[i] == 1 ? db[i] : da[i];
    }
    if (a->kind == V_CONST && b->kind == V_CONST) { /* fold */
        size_t n = dims_count(dout, r);
        float *d = cnn_mem_alloc(im->ctx, (n ? n : 1) * sizeof(float));
        if (!d) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        for (size_t i = 0; i < n; i++)
            d[i] = apply_op(op, a->data[bcast_index(i, dout, da, r)], b->data[bcast_index(i, dout, db, r)]);
        st = add_const(im, im->node->output[0], dout, r, d, n, 1);
        cnn_mem_free(im->ctx, d);
        return st;
    }
    value *x = a->kind == V_DATA ? a : b, *k = a->kind == V_DATA ? b : a;
    int rev = x == b; /* k op x */
    const int64_t *dk = rev ? da : db;
    if (k->ndim > x->ndim) return node_error(im, CNN_ERR_UNSUPPORTED, "the constant has more dims than the data");
    for (size_t i = 0; i < r; i++)
        if (dout[i] != x->dims[i])
            return node_error(im, CNN_ERR_UNSUPPORTED, "the constant broadcasts the data to a larger shape");
    if (dk[0] != 1 || (x->ndim == 1 && k->count != 1))
        return node_error(im, CNN_ERR_UNSUPPORTED, "the constant varies along the batch dimension");
    static const char *const fwd[] = {"add", "sub", "mul", "div"}, *const rv[] = {"add", "rsub", "mul", "rdiv"};
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, "const_op", x, layer)) != CNN_OK) return st;
    cnn_strbuf_printf(&im->text, " op=%s", rev ? rv[op] : fwd[op]);
    int per_channel = r >= 2;
    for (size_t i = 0; i < r; i++)
        if (i != 1 && dk[i] != 1) per_channel = 0;
    if (k->count == 1) {
        char v[64];
        if (!isfinite(k->data[0])) return node_error(im, CNN_ERR_UNSUPPORTED, "a constant that is not finite");
        cnn_format_float(v, sizeof v, (double)k->data[0]);
        cnn_strbuf_printf(&im->text, " value=%s", v);
        end_layer(im);
    } else if (per_channel) {
        cnn_strbuf_printf(&im->text, " per=channel");
        end_layer(im);
        if ((st = add_param(im, layer, "value", k->data, k->count, 1.0f)) != CNN_OK) return st;
    } else {
        cnn_strbuf_printf(&im->text, " per=element");
        end_layer(im);
        /* materialise one sample's worth: dims dout[1..r) */
        int64_t ds[MAXD];
        size_t n = dims_count(dout + 1, r - 1);
        for (size_t i = 1; i < r; i++) ds[i - 1] = dk[i];
        float *d = cnn_mem_alloc(im->ctx, n * sizeof(float));
        if (!d) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        for (size_t i = 0; i < n; i++) d[i] = k->data[bcast_index(i, dout + 1, ds, r - 1)];
        st = add_param(im, layer, "value", d, n, 1.0f);
        cnn_mem_free(im->ctx, d);
        if (st != CNN_OK) return st;
    }
    return set_data_output(im, im->node->output[0], layer, x->dims, x->ndim);
}

static cnn_status op_concat(importer *im) {
    cnn_status st;
    if ((st = check_attrs(im, "axis")) != CNN_OK) return st;
    int64_t axis;
    if ((st = attr_int(im, "axis", 1, &axis)) != CNN_OK) return st;
    const CnnOnnx__NodeProto *n = im->node;
    if (n->n_input < 1) return node_error(im, CNN_ERR_FORMAT, "no inputs");
    if (n->n_input > CNN_MAX_INPUTS) return node_error(im, CNN_ERR_UNSUPPORTED, "%zu inputs (at most %d)", n->n_input, CNN_MAX_INPUTS);
    value *x0;
    if ((st = input_value(im, 0, 1, &x0)) != CNN_OK) return st;
    int all_const = 1;
    for (size_t i = 0; i < n->n_input; i++) {
        value *v;
        if ((st = input_value(im, i, 1, &v)) != CNN_OK) return st;
        if (v->kind != V_CONST) all_const = 0;
    }
    axis = norm_axis(axis, x0->ndim);
    if (axis < 0 || axis >= (int64_t)x0->ndim) return node_error(im, CNN_ERR_FORMAT, "axis out of range");
    if (all_const) return node_error(im, CNN_ERR_UNSUPPORTED, "Concat of constants");
    if (axis != 1) return node_error(im, CNN_ERR_UNSUPPORTED, "axis %lld (only the channel axis 1)", (long long)axis);
    int64_t od[MAXD];
    memcpy(od, x0->dims, x0->ndim * sizeof *od);
    od[1] = 0;
    char froms[CNN_MAX_INPUTS][CNN_NAME_MAX];
    for (size_t i = 0; i < n->n_input; i++) {
        value *v;
        if ((st = data_input(im, i, &v)) != CNN_OK) return st;
        if (v->ndim != x0->ndim) return node_error(im, CNN_ERR_FORMAT, "inputs differ in rank");
        for (size_t j = 2; j < v->ndim; j++)
            if (v->dims[j] != x0->dims[j]) return node_error(im, CNN_ERR_FORMAT, "inputs differ outside the axis");
        od[1] += v->dims[1];
        snprintf(froms[i], CNN_NAME_MAX, "%s", v->layer);
    }
    if (n->n_input == 1) return alias_output(im, 0, x0, x0->dims, x0->ndim);
    char layer[CNN_NAME_MAX];
    if ((st = begin_layer(im, "concat", x0, layer)) != CNN_OK) return st;
    for (size_t i = 1; i < n->n_input; i++) cnn_strbuf_printf(&im->text, ",%s", froms[i]);
    end_layer(im);
    return set_data_output(im, im->node->output[0], layer, od, x0->ndim);
}

/* Reshape-like: data keeps its memory order; dims [N, ...] -> nd (nd[0] must be the batch). */
static cnn_status reshape_value(importer *im, value *x, const int64_t *nd, size_t r) {
    if (x->kind == V_CONST) {
        if (dims_count(nd, r) != x->count) return node_error(im, CNN_ERR_FORMAT, "element count changes");
        return alias_output(im, 0, x, nd, r);
    }
    if (r < 1 || nd[0] != x->dims[0])
        return node_error(im, CNN_ERR_UNSUPPORTED, "the new shape changes the batch dimension");
    if (dims_count(nd + 1, r - 1) != dims_count(x->dims + 1, x->ndim - 1))
        return node_error(im, CNN_ERR_FORMAT, "element count changes");
    return alias_output(im, 0, x, nd, r);
}

static cnn_status op_flatten(importer *im) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, "axis")) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &x)) != CNN_OK) return st;
    int64_t axis;
    if ((st = attr_int(im, "axis", 1, &axis)) != CNN_OK) return st;
    axis = norm_axis(axis, x->ndim);
    if (axis < 0 || axis > (int64_t)x->ndim) return node_error(im, CNN_ERR_FORMAT, "axis out of range");
    int64_t nd[2] = {(int64_t)dims_count(x->dims, (size_t)axis), (int64_t)dims_count(x->dims + axis, x->ndim - (size_t)axis)};
    if (x->kind == V_DATA && nd[0] != x->dims[0])
        return node_error(im, CNN_ERR_UNSUPPORTED, "axis %lld merges the batch with other dims", (long long)axis);
    if (x->kind == V_DATA && x->ndim > 2 && (x->s.h != 1 || x->s.w != 1)) { /* the library's flatten */
        char layer[CNN_NAME_MAX];
        if ((st = begin_layer(im, "flatten", x, layer)) != CNN_OK) return st;
        end_layer(im);
        return set_data_output(im, im->node->output[0], layer, nd, 2);
    }
    return reshape_value(im, x, nd, 2);
}

static cnn_status op_reshape(importer *im) {
    cnn_status st;
    value *x, *sv;
    if ((st = check_attrs(im, "allowzero shape")) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &x)) != CNN_OK) return st;
    int64_t shp[MAXD], allowzero;
    size_t r;
    if ((st = attr_int(im, "allowzero", 0, &allowzero)) != CNN_OK) return st;
    if (im->opset < 5) {
        int has;
        if ((st = attr_ints(im, "shape", shp, MAXD, &r, &has)) != CNN_OK) return st;
        if (!has) return node_error(im, CNN_ERR_FORMAT, "missing shape");
    } else {
        if ((st = const_input(im, 1, 1, &sv)) != CNN_OK) return st;
        if ((st = const_ints(im, sv, shp, MAXD, &r)) != CNN_OK) return st;
    }
    int64_t nd[MAXD];
    size_t known = 1;
    int infer = -1;
    for (size_t i = 0; i < r; i++) {
        if (shp[i] == 0 && !allowzero) {
            if (i >= x->ndim) return node_error(im, CNN_ERR_FORMAT, "0 copies a dimension the input lacks");
            nd[i] = x->dims[i];
        } else if (shp[i] == -1) {
            if (infer >= 0) return node_error(im, CNN_ERR_FORMAT, "two -1 dims");
            infer = (int)i;
            nd[i] = 1;
        } else if (shp[i] < 0 || (shp[i] == 0 && allowzero)) {
            return node_error(im, CNN_ERR_UNSUPPORTED, "dimension %lld", (long long)shp[i]);
        } else {
            nd[i] = shp[i];
        }
        if (i != (size_t)infer) known *= (size_t)nd[i];
    }
    size_t total = x->kind == V_CONST ? x->count : dims_count(x->dims, x->ndim);
    if (infer >= 0) {
        if (!known || total % known) return node_error(im, CNN_ERR_FORMAT, "cannot infer the -1 dimension");
        nd[infer] = (int64_t)(total / known);
    }
    if (dims_count(nd, r) != total) return node_error(im, CNN_ERR_FORMAT, "element count changes");
    return reshape_value(im, x, nd, r);
}

static cnn_status op_transpose(importer *im) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, "perm")) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &x)) != CNN_OK) return st;
    int64_t perm[MAXD];
    size_t np;
    int has;
    if ((st = attr_ints(im, "perm", perm, MAXD, &np, &has)) != CNN_OK) return st;
    size_t r = x->ndim;
    if (!has) {
        np = r;
        for (size_t i = 0; i < r; i++) perm[i] = (int64_t)(r - 1 - i);
    }
    if (np != r) return node_error(im, CNN_ERR_FORMAT, "perm has %zu entries for %zu dims", np, r);
    int seen[MAXD] = {0};
    for (size_t i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= (int64_t)r || seen[perm[i]]) return node_error(im, CNN_ERR_FORMAT, "perm is not a permutation");
        seen[perm[i]] = 1;
    }
    int64_t nd[MAXD];
    for (size_t i = 0; i < r; i++) nd[i] = x->dims[perm[i]];
    if (x->kind == V_CONST) {
        float *d = cnn_mem_alloc(im->ctx, (x->count ? x->count : 1) * sizeof(float));
        if (!d) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        size_t in_stride[MAXD], s = 1;
        for (size_t k = r; k-- > 0;) in_stride[k] = s, s *= (size_t)x->dims[k];
        for (size_t i = 0; i < x->count; i++) {
            size_t rem = i, src = 0;
            for (size_t k = r; k-- > 0;) {
                size_t c = rem % (size_t)nd[k];
                rem /= (size_t)nd[k];
                src += c * in_stride[perm[k]];
            }
            d[i] = x->data[src];
        }
        st = add_const(im, im->node->output[0], nd, r, d, x->count, x->dtype);
        cnn_mem_free(im->ctx, d);
        return st;
    }
    /* data: only a permutation that keeps the order of the dims larger than 1 (memory unchanged) */
    int64_t last = -1;
    for (size_t i = 0; i < r; i++) {
        if (x->dims[perm[i]] == 1) continue;
        if (perm[i] < last) return node_error(im, CNN_ERR_UNSUPPORTED, "a transpose that moves data (only layout no-ops)");
        last = perm[i];
    }
    return reshape_value(im, x, nd, r);
}

static cnn_status op_squeeze(importer *im, int unsq) {
    cnn_status st;
    value *x, *av = NULL;
    if ((st = check_attrs(im, "axes")) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &x)) != CNN_OK) return st;
    int64_t axes[MAXD];
    size_t na = 0;
    int has = 0;
    if (im->opset >= 13) {
        if ((st = const_input(im, 1, unsq, &av)) != CNN_OK) return st;
        if (av && (st = const_ints(im, av, axes, MAXD, &na)) != CNN_OK) return st;
        has = av != NULL;
    } else if ((st = attr_ints(im, "axes", axes, MAXD, &na, &has)) != CNN_OK) {
        return st;
    }
    int64_t nd[MAXD];
    size_t r = 0;
    if (unsq) {
        size_t out_r = x->ndim + na;
        if (out_r > MAXD) return node_error(im, CNN_ERR_UNSUPPORTED, "more than %d dims", MAXD);
        int mark[MAXD] = {0};
        for (size_t i = 0; i < na; i++) {
            int64_t a = norm_axis(axes[i], out_r);
            if (a < 0 || a >= (int64_t)out_r || mark[a]) return node_error(im, CNN_ERR_FORMAT, "bad axes");
            mark[a] = 1;
        }
        for (size_t i = 0, j = 0; i < out_r; i++) nd[r++] = mark[i] ? 1 : x->dims[j++];
    } else {
        int mark[MAXD] = {0};
        for (size_t i = 0; i < na; i++) {
            int64_t a = norm_axis(axes[i], x->ndim);
            if (a < 0 || a >= (int64_t)x->ndim || x->dims[a] != 1) return node_error(im, CNN_ERR_FORMAT, "bad axes");
            mark[a] = 1;
        }
        for (size_t i = 0; i < x->ndim; i++) {
            if (has ? mark[i] : (x->dims[i] == 1 && !(x->kind == V_DATA && i == 0))) continue;
            nd[r++] = x->dims[i];
        }
    }
    return reshape_value(im, x, nd, r);
}

static cnn_status op_identity(importer *im, int dropout) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, dropout ? "ratio is_test seed" : "")) != CNN_OK) return st;
    if ((st = single_output(im)) != CNN_OK) return st;
    if ((st = input_value(im, 0, 1, &x)) != CNN_OK) return st;
    if (dropout) {
        value *t = NULL;
        if ((st = const_input(im, 2, 0, &t)) != CNN_OK) return st;
        if (t && t->count && t->data[0] != 0.0f)
            return node_error(im, CNN_ERR_UNSUPPORTED, "training_mode=true (inference only)");
        int64_t is_test = 1;
        if ((st = attr_int(im, "is_test", 1, &is_test)) != CNN_OK) return st;
    }
    value copy = *x;
    return alias_output(im, 0, &copy, copy.dims, copy.ndim);
}

static cnn_status op_constant(importer *im) {
    cnn_status st;
    const CnnOnnx__NodeProto *n = im->node;
    if (n->n_attribute != 1) return node_error(im, CNN_ERR_FORMAT, "needs exactly one attribute");
    const CnnOnnx__AttributeProto *a = n->attribute[0];
    const char *an = a->name ? a->name : "";
    int64_t d[1];
    if (strcmp(an, "value") == 0 && a->t) {
        cnn_onnx_tensor t;
        char what[256];
        snprintf(what, sizeof what, "%s: node '%s' (Constant)", im->origin, node_label(n));
        if ((st = cnn_onnx_tensor_from_proto(im->ctx, a->t, what, &t)) != CNN_OK) return st;
        st = add_const(im, n->output[0], t.dims, t.ndim, t.data, t.count, t.dtype);
        cnn_onnx_tensor_release(im->ctx, &t);
        return st;
    }
    if (strcmp(an, "value_float") == 0) {
        float f = a->f;
        return add_const(im, n->output[0], d, 0, &f, 1, 1);
    }
    if (strcmp(an, "value_int") == 0) {
        float f = (float)a->i;
        return add_const(im, n->output[0], d, 0, &f, 1, 7);
    }
    if (strcmp(an, "value_floats") == 0 || strcmp(an, "value_ints") == 0) {
        int fl = an[6] == 'f';
        size_t cnt = fl ? a->n_floats : a->n_ints;
        float *buf = cnn_mem_alloc(im->ctx, (cnt ? cnt : 1) * sizeof(float));
        if (!buf) return cnn_error(im->ctx, CNN_ERR_NOMEM, "%s: out of memory", im->origin);
        for (size_t i = 0; i < cnt; i++) buf[i] = fl ? a->floats[i] : (float)a->ints[i];
        d[0] = (int64_t)cnt;
        st = add_const(im, n->output[0], d, 1, buf, cnt, fl ? 1 : 7);
        cnn_mem_free(im->ctx, buf);
        return st;
    }
    return node_error(im, CNN_ERR_UNSUPPORTED, "unsupported attribute '%s'", an);
}

static cnn_status op_pad(importer *im) {
    cnn_status st;
    value *x, *pv = NULL, *cv = NULL;
    if ((st = check_attrs(im, im->opset < 11 ? "mode pads value paddings" : "mode")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    int64_t pads[2 * MAXD];
    size_t np;
    double value = 0.0;
    if (im->opset < 11) {
        int has;
        if ((st = attr_ints(im, attr(im->node, "paddings") ? "paddings" : "pads", pads, 2 * MAXD, &np, &has)) != CNN_OK)
            return st;
        if ((st = attr_float(im, "value", 0.0, &value)) != CNN_OK) return st;
    } else {
        if ((st = const_input(im, 1, 1, &pv)) != CNN_OK) return st;
        if ((st = const_ints(im, pv, pads, 2 * MAXD, &np)) != CNN_OK) return st;
        if ((st = const_input(im, 2, 0, &cv)) != CNN_OK) return st;
        if (cv && cv->count) value = cv->data[0];
        if (in_name(im->node, 3)) return node_error(im, CNN_ERR_UNSUPPORTED, "the axes input");
    }
    char mode[32];
    attr_string(im, "mode", "constant", mode, sizeof mode);
    if (strcmp(mode, "constant") && strcmp(mode, "reflect") && strcmp(mode, "edge"))
        return node_error(im, CNN_ERR_UNSUPPORTED, "mode '%s'", mode);
    size_t r = x->ndim;
    if (np != 2 * r) return node_error(im, CNN_ERR_FORMAT, "pads has %zu values for %zu dims", np, r);
    for (size_t i = 0; i < 2 * r; i++)
        if (pads[i] < 0) return node_error(im, CNN_ERR_UNSUPPORTED, "negative pads (cropping)");
    for (size_t i = 0; i < r && i < 2; i++)
        if (pads[i] || pads[i + r]) return node_error(im, CNN_ERR_UNSUPPORTED, "padding of the batch or channel axis");
    if (r != 3 && r != 4) {
        for (size_t i = 0; i < 2 * r; i++)
            if (pads[i]) return node_error(im, CNN_ERR_UNSUPPORTED, "padding of a %zu-D tensor (3-D and 4-D only)", r);
        return alias_output(im, 0, x, x->dims, r);
    }
    if (!isfinite(value)) return node_error(im, CNN_ERR_UNSUPPORTED, "a constant_value that is not finite");
    size_t top = r == 4 ? (size_t)pads[2] : 0, bottom = r == 4 ? (size_t)pads[6] : 0;
    size_t left = (size_t)pads[r - 1], right = (size_t)pads[2 * r - 1];
    if (!strcmp(mode, "reflect") &&
        (top >= x->s.h || bottom >= x->s.h || left >= x->s.w || right >= x->s.w))
        return node_error(im, CNN_ERR_UNSUPPORTED, "reflect pads as large as the input");
    char layer[CNN_NAME_MAX], v[64];
    if ((st = begin_layer(im, "pad", x, layer)) != CNN_OK) return st;
    cnn_format_float(v, sizeof v, (double)(float)value);
    cnn_strbuf_printf(&im->text, " top=%zu bottom=%zu left=%zu right=%zu mode=%s value=%s", top, bottom, left,
                      right, mode, v);
    end_layer(im);
    int64_t od[4];
    memcpy(od, x->dims, r * sizeof *od);
    od[r - 1] += (int64_t)(left + right);
    if (r == 4) od[2] += (int64_t)(top + bottom);
    return set_data_output(im, im->node->output[0], layer, od, r);
}

static cnn_status op_clip(importer *im) {
    cnn_status st;
    value *x;
    if ((st = check_attrs(im, im->opset < 11 ? "min max consumed_inputs" : "")) != CNN_OK) return st;
    if ((st = data_input(im, 0, &x)) != CNN_OK) return st;
    int has_min = 0, has_max = 0;
    double lo = 0, hi = 0;
    if (im->opset < 11) {
        has_min = attr(im->node, "min") != NULL;
        has_max = attr(im->node, "max") != NULL;
        if ((st = attr_float(im, "min", 0, &lo)) != CNN_OK) return st;
        if ((st = attr_float(im, "max", 0, &hi)) != CNN_OK) return st;
    } else {
        value *mn, *mx;
        if ((st = const_input(im, 1, 0, &mn)) != CNN_OK) return st;
        if ((st = const_input(im, 2, 0, &mx)) != CNN_OK) return st;
        if ((mn && mn->count != 1) || (mx && mx->count != 1)) return node_error(im, CNN_ERR_FORMAT, "min and max must be scalars");
        if (mn) has_min = 1, lo = mn->data[0];
        if (mx) has_max = 1, hi = mx->data[0];
    }
    if ((has_min && !isfinite(lo)) || (has_max && !isfinite(hi)))
        return node_error(im, CNN_ERR_UNSUPPORTED, "bounds that are not finite");
    char layer[CNN_NAME_MAX], b[64];
    if ((st = begin_layer(im, "clip", x, layer)) != CNN_OK) return st;
    if (has_min && has_max && lo > hi) {
        /* ONNX: min > max gives max everywhere (numpy.clip) — as min = max = max */
        lo = hi;
    }
    if (has_min) {
        cnn_format_float(b, sizeof b, (double)(float)lo);
        cnn_strbuf_printf(&im->text, " min=%s", b);
    }
    if (has_max) {
        cnn_format_float(b, sizeof b, (double)(float)hi);
        cnn_strbuf_printf(&im->text, " max=%s", b);
    }
    end_layer(im);
    return set_data_output(im, im->node->output[0], layer, x->dims, x->ndim);
}

static int str_in(const char *const *list, size_t n, const char *s);

static cnn_status map_node(importer *im) {
    const CnnOnnx__NodeProto *n = im->node;
    const char *op = n->op_type ? n->op_type : "";
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return node_error(im, CNN_ERR_UNSUPPORTED, "unsupported op '%s::%s'", n->domain, op);
    static const char *const known[] = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                                        "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax",
                                        "LogSoftmax", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Concat",
                                        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Dropout",
                                        "Identity", "Constant", "Pad", "Clip"};
    if (!str_in(known, sizeof known / sizeof known[0], op))
        return node_error(im, CNN_ERR_UNSUPPORTED, "unsupported op '%s'", op);
    if (n->n_output < 1 || !n->output[0][0]) return node_error(im, CNN_ERR_FORMAT, "no output");
    if (!strcmp(op, "Conv")) return op_conv(im);
    if (!strcmp(op, "MaxPool")) return op_pool(im, 1);
    if (!strcmp(op, "AveragePool")) return op_pool(im, 0);
    if (!strcmp(op, "GlobalAveragePool")) return op_global_pool(im, 0);
    if (!strcmp(op, "GlobalMaxPool")) return op_global_pool(im, 1);
    if (!strcmp(op, "BatchNormalization")) return op_batchnorm(im);
    if (!strcmp(op, "Relu")) return op_activation(im, "relu");
    if (!strcmp(op, "LeakyRelu")) return op_activation(im, "leaky_relu");
    if (!strcmp(op, "Sigmoid")) return op_activation(im, "sigmoid");
    if (!strcmp(op, "Tanh")) return op_activation(im, "tanh");
    if (!strcmp(op, "Softmax")) return op_softmax(im, 0);
    if (!strcmp(op, "LogSoftmax")) return op_softmax(im, 1);
    if (!strcmp(op, "Gemm")) return op_gemm(im, 0);
    if (!strcmp(op, "MatMul")) return op_gemm(im, 1);
    if (!strcmp(op, "Add")) return op_arith(im, 0);
    if (!strcmp(op, "Sub")) return op_arith(im, 1);
    if (!strcmp(op, "Mul")) return op_arith(im, 2);
    if (!strcmp(op, "Div")) return op_arith(im, 3);
    if (!strcmp(op, "Concat")) return op_concat(im);
    if (!strcmp(op, "Flatten")) return op_flatten(im);
    if (!strcmp(op, "Reshape")) return op_reshape(im);
    if (!strcmp(op, "Transpose")) return op_transpose(im);
    if (!strcmp(op, "Squeeze")) return op_squeeze(im, 0);
    if (!strcmp(op, "Unsqueeze")) return op_squeeze(im, 1);
    if (!strcmp(op, "Dropout")) return op_identity(im, 1);
    if (!strcmp(op, "Identity")) return op_identity(im, 0);
    if (!strcmp(op, "Constant")) return op_constant(im);
    if (!strcmp(op, "Pad")) return op_pad(im);
    if (!strcmp(op, "Clip")) return op_clip(im);
    return node_error(im, CNN_ERR_UNSUPPORTED, "unsupported op '%s'", op);
}

/* ---- the driver ---- */

static int str_in(const char *const *list, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return 1;
    return 0;
}

static void importer_free(importer *im) {
    for (size_t i = 0; i < im->n_vals; i++) cnn_mem_free(im->ctx, im->vals[i].data);
    cnn_mem_free(im->ctx, im->vals);
    for (size_t i = 0; i < im->n_params; i++) cnn_mem_free(im->ctx, im->params[i].data);
    cnn_mem_free(im->ctx, im->params);
    cnn_mem_free(im->ctx, im->names);
    cnn_strbuf_release(&im->text);
}

static cnn_status value_info_dims(importer *im, const CnnOnnx__ValueInfoProto *vi, int32_t *elem, int64_t *dims,
                                  size_t *nd, int *has_shape) {
    *nd = 0;
    *has_shape = 0;
    *elem = 0;
    const CnnOnnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != CNN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return cnn_error(im->ctx, CNN_ERR_UNSUPPORTED, "%s: graph value '%s' is not a tensor (sequence, map or optional types are not supported)",
                         im->origin, vi->name ? vi->name : "?");
    const CnnOnnx__TypeProto__Tensor *tt = tp->tensor_type;
    *elem = tt->has_elem_type ? tt->elem_type : 0;
    if (!tt->shape) return CNN_OK;
    *has_shape = 1;
    if (tt->shape->n_dim > MAXD)
        return cnn_error(im->ctx, CNN_ERR_UNSUPPORTED, "%s: '%s' has %zu dims (at most %d)", im->origin, vi->name,
                         tt->shape->n_dim, MAXD);
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const CnnOnnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        dims[i] = d->value_case == CNN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : 0;
        if (dims[i] < 0) return cnn_error(im->ctx, CNN_ERR_FORMAT, "%s: '%s' has a negative dim", im->origin, vi->name);
    }
    *nd = tt->shape->n_dim;
    return CNN_OK;
}

static cnn_status import_model(cnn_ctx *ctx, const CnnOnnx__ModelProto *m, const char *origin,
                               const cnn_onnx_import_options *opt, cnn_net **out) {
    importer im;
    memset(&im, 0, sizeof im);
    im.ctx = ctx;
    im.origin = origin;
    cnn_status st = CNN_OK;
    cnn_net *net = NULL;
    const CnnOnnx__GraphProto *g = m->graph;
    size_t nn = 0, *order = NULL, n_order = 0;
    unsigned char *done = NULL, *live = NULL;
    const char **avail = NULL, **needed = NULL;
    size_t n_avail = 0, n_needed = 0, cap_avail = 0;
    if (!g) {
        st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: the model has no graph", origin);
        goto cleanup;
    }
    im.graph = g;
    nn = g->n_node;
    /* opset of the default domain */
    im.opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const CnnOnnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) im.opset = o->has_version ? o->version : 1;
    }
    if (im.opset == 0) im.opset = 1;
    if (im.opset > 17) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: opset %lld (the importer knows opsets 1 to 17)", origin,
                       (long long)im.opset);
        goto cleanup;
    }
    if (g->n_sparse_initializer) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: sparse initializers are not supported", origin);
        goto cleanup;
    }
    /* constants: initializers, then bound inputs */
    for (size_t i = 0; i < g->n_initializer; i++) {
        const CnnOnnx__TensorProto *tp = g->initializer[i];
        if (!tp->name || !tp->name[0]) {
            st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: initializer %zu has no name", origin, i);
            goto cleanup;
        }
        cnn_onnx_tensor t;
        char what[512];
        snprintf(what, sizeof what, "%s: initializer '%s'", origin, tp->name);
        CNN_TRY(cnn_onnx_tensor_from_proto(ctx, tp, what, &t));
        st = add_const(&im, tp->name, t.dims, t.ndim, t.data, t.count, t.dtype);
        cnn_onnx_tensor_release(ctx, &t);
        if (st != CNN_OK) goto cleanup;
    }
    /* graph inputs */
    const CnnOnnx__ValueInfoProto *data_in = NULL;
    size_t n_data = 0, pos = 0;
    char names_list[512] = "";
    for (size_t i = 0; i < g->n_input; i++) {
        const CnnOnnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !vi->name[0]) {
            st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: graph input %zu has no name", origin, i);
            goto cleanup;
        }
        if (find_value(&im, vi->name)) continue; /* an initializer (old models list them as inputs) */
        const cnn_onnx_tensor *bound = NULL;
        for (size_t k = 0; opt && k < opt->n_constants; k++)
            if (strcmp(opt->constants[k].name, vi->name) == 0) bound = &opt->constants[k];
        /* unnamed constants bind by position: constants[k] is non-initializer input k + 1 */
        if (!bound && opt && pos >= 1 && pos - 1 < opt->n_constants && !opt->constants[pos - 1].name[0])
            bound = &opt->constants[pos - 1];
        pos++;
        if (bound) {
            CNN_TRY(add_const(&im, vi->name, bound->dims, bound->ndim, bound->data, bound->count, bound->dtype));
            continue;
        }
        n_data++;
        data_in = vi;
        size_t l = strlen(names_list);
        snprintf(names_list + l, sizeof names_list - l, "%s'%s'", l ? ", " : "", vi->name);
    }
    if (n_data != 1) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                       n_data ? "%s: the graph has %zu inputs (%s); the library's networks take one (the others can be bound as constants)"
                              : "%s: the graph has %zu data inputs%s; the library's networks take one",
                       origin, n_data, names_list);
        goto cleanup;
    }
    if (g->n_output != 1) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: the graph has %zu outputs; the library's networks have one", origin,
                       g->n_output);
        goto cleanup;
    }
    /* the data input's type and dims */
    int32_t elem;
    int64_t idims[MAXD];
    size_t ind;
    int has_shape;
    CNN_TRY(value_info_dims(&im, data_in, &elem, idims, &ind, &has_shape));
    if (elem != 1) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: input '%s' has element type %d; the library computes in FLOAT (1)",
                       origin, data_in->name, (int)elem);
        goto cleanup;
    }
    if (opt && opt->input) {
        const cnn_onnx_tensor *s = opt->input;
        if (has_shape && s->ndim != ind) {
            st = cnn_error(ctx, CNN_ERR_SHAPE, "%s: input '%s' has %zu dims, the sample %zu", origin, data_in->name, ind,
                           s->ndim);
            goto cleanup;
        }
        for (size_t i = 0; has_shape && i < ind; i++)
            if (idims[i] && idims[i] != s->dims[i]) {
                st = cnn_error(ctx, CNN_ERR_SHAPE, "%s: input '%s' dim %zu is %lld, the sample's %lld", origin,
                               data_in->name, i, (long long)idims[i], (long long)s->dims[i]);
                goto cleanup;
            }
        ind = s->ndim;
        memcpy(idims, s->dims, ind * sizeof *idims);
        has_shape = 1;
    }
    if (!has_shape || ind < 1) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: input '%s' has %s; the library needs [N, ...] with fixed dims", origin,
                       data_in->name, has_shape ? "no dimensions (a scalar)" : "no shape");
        goto cleanup;
    }
    for (size_t i = 1; i < ind; i++)
        if (idims[i] <= 0) {
            st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: input '%s' dim %zu is %s; only the batch (dim 0) may be open",
                           origin, data_in->name, i, idims[i] ? "negative" : "symbolic or 0");
            goto cleanup;
        }
    im.batch = idims[0];
    {
        value *v;
        CNN_TRY(add_value(&im, data_in->name, &v));
        v->kind = V_DATA;
        v->ndim = ind;
        memcpy(v->dims, idims, ind * sizeof *idims);
        snprintf(v->layer, sizeof v->layer, "input");
        v->s = map_shape(idims, ind);
        cnn_strbuf_printf(&im.text, "input c=%zu h=%zu w=%zu\n", v->s.c, v->s.h, v->s.w);
    }
    /* topological order (Kahn over names; the file order when already sorted) */
    order = cnn_mem_calloc(ctx, nn ? nn : 1, sizeof *order);
    done = cnn_mem_calloc(ctx, nn ? nn : 1, 1);
    live = cnn_mem_calloc(ctx, nn ? nn : 1, 1);
    cap_avail = im.n_vals + 1;
    for (size_t i = 0; i < nn; i++) cap_avail += g->node[i]->n_output;
    avail = cnn_mem_calloc(ctx, cap_avail, sizeof *avail);
    needed = cnn_mem_calloc(ctx, cap_avail + 1, sizeof *needed);
    if (!order || !done || !live || !avail || !needed) {
        st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", origin);
        goto cleanup;
    }
    for (size_t i = 0; i < im.n_vals; i++) avail[n_avail++] = im.vals[i].name;
    while (n_order < nn) {
        size_t before = n_order;
        for (size_t i = 0; i < nn; i++) {
            if (done[i]) continue;
            const CnnOnnx__NodeProto *n = g->node[i];
            int ready = 1;
            for (size_t j = 0; j < n->n_input && ready; j++)
                if (n->input[j][0] && !str_in(avail, n_avail, n->input[j])) ready = 0;
            if (!ready) continue;
            done[i] = 1;
            order[n_order++] = i;
            for (size_t j = 0; j < n->n_output; j++) {
                if (!n->output[j][0]) continue;
                if (str_in(avail, n_avail, n->output[j])) {
                    im.node = n;
                    st = node_error(&im, CNN_ERR_FORMAT, "output '%s' is defined twice", n->output[j]);
                    goto cleanup;
                }
                avail[n_avail++] = n->output[j];
            }
        }
        if (n_order == before) { /* stuck: a dangling input or a cycle */
            for (size_t i = 0; i < nn; i++) {
                if (done[i]) continue;
                const CnnOnnx__NodeProto *n = g->node[i];
                for (size_t j = 0; j < n->n_input; j++) {
                    if (!n->input[j][0] || str_in(avail, n_avail, n->input[j])) continue;
                    int produced = 0;
                    for (size_t k = 0; k < nn && !produced; k++)
                        for (size_t o = 0; o < g->node[k]->n_output; o++)
                            if (!strcmp(g->node[k]->output[o], n->input[j])) produced = 1;
                    if (!produced) {
                        im.node = n;
                        st = node_error(&im, CNN_ERR_FORMAT, "input '%s' is not produced by any node, initializer or graph input (dangling)",
                                        n->input[j]);
                        goto cleanup;
                    }
                }
            }
            for (size_t i = 0; i < nn; i++)
                if (!done[i]) {
                    im.node = g->node[i];
                    st = node_error(&im, CNN_ERR_FORMAT, "the graph has a cycle through this node");
                    goto cleanup;
                }
        }
    }
    /* the nodes the output depends on */
    const char *oname = g->output[0]->name ? g->output[0]->name : "";
    if (!str_in(avail, n_avail, oname)) {
        st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: graph output '%s' is not produced by any node", origin, oname);
        goto cleanup;
    }
    needed[n_needed++] = oname;
    for (size_t k = nn; k-- > 0;) {
        const CnnOnnx__NodeProto *n = g->node[order[k]];
        int need = 0;
        for (size_t j = 0; j < n->n_output && !need; j++)
            if (n->output[j][0] && str_in(needed, n_needed, n->output[j])) need = 1;
        if (!need) continue;
        live[order[k]] = 1;
        for (size_t j = 0; j < n->n_input; j++)
            if (n->input[j][0] && !str_in(needed, n_needed, n->input[j]) && n_needed < cap_avail)
                needed[n_needed++] = n->input[j];
    }
    /* map */
    for (size_t k = 0; k < nn; k++) {
        if (!live[order[k]]) continue;
        im.node = g->node[order[k]];
        CNN_TRY(map_node(&im));
        if (im.text.failed) {
            st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", origin);
            goto cleanup;
        }
    }
    value *ov = find_value(&im, oname);
    if (!ov || ov->kind != V_DATA) {
        st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: graph output '%s' is a constant (it does not depend on the input)",
                       origin, oname);
        goto cleanup;
    }
    /* the output's layer must be the last line (and not the input itself) */
    {
        const char *text = im.text.data ? im.text.data : "";
        size_t len = im.text.len;
        size_t ls = len ? len - 1 : 0;
        while (ls > 0 && text[ls - 1] != '\n') ls--;
        char want[CNN_NAME_MAX + 8];
        snprintf(want, sizeof want, " name=%s ", ov->layer);
        const char *nl = memchr(text + ls, '\n', len - ls);
        size_t ll = nl ? (size_t)(nl - (text + ls)) : len - ls;
        int last = 0;
        for (size_t i = 0; i + strlen(want) <= ll; i++)
            if (!memcmp(text + ls + i, want, strlen(want))) last = 1;
        if (!last) {
            char layer[CNN_NAME_MAX];
            CNN_TRY(make_name(&im, "output", "output", layer));
            cnn_strbuf_printf(&im.text, "reshape name=%s from=%s c=%zu h=%zu w=%zu\n", layer, ov->layer, ov->s.c,
                              ov->s.h, ov->s.w);
        }
    }
    if (im.text.failed) {
        st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", origin);
        goto cleanup;
    }
    /* build, compile, set the weights */
    char porigin[600];
    snprintf(porigin, sizeof porigin, "%s (as model text)", origin);
    st = cnn_net_parse(ctx, im.text.data, im.text.len, porigin, &net);
    if (st != CNN_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cnn_ctx_last_error(ctx));
        st = cnn_error(ctx, st == CNN_ERR_NOMEM ? st : CNN_ERR_UNSUPPORTED, "%s: the library cannot build this graph: %s",
                       origin, msg);
        goto cleanup;
    }
    size_t batch = im.batch > 0 ? (size_t)im.batch : 1;
    CNN_TRY(cnn_net_compile(net, batch, 0));
    for (size_t i = 0; i < im.n_params; i++) {
        cnn_param p;
        if (cnn_net_param_find(net, im.params[i].name, &p) != CNN_OK || p.count != im.params[i].count) {
            st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: internal: parameter '%s' (%zu values) does not fit the network",
                           origin, im.params[i].name, im.params[i].count);
            goto cleanup;
        }
        memcpy(p.data, im.params[i].data, p.count * sizeof(float));
    }
    {
        cnn_shape os = cnn_net_output_shape(net);
        if (os.c != ov->s.c || os.h != ov->s.h || os.w != ov->s.w) {
            st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: the network's output %zux%zux%zu differs from the graph's %zux%zux%zu",
                           origin, os.c, os.h, os.w, ov->s.c, ov->s.h, ov->s.w);
            goto cleanup;
        }
    }
    if (opt && opt->io) {
        cnn_onnx_io *io = opt->io;
        memset(io, 0, sizeof *io);
        snprintf(io->input_name, sizeof io->input_name, "%s", data_in->name);
        snprintf(io->output_name, sizeof io->output_name, "%s", oname);
        io->input_ndim = ind;
        memcpy(io->input_dims, idims, ind * sizeof *idims);
        if (im.batch <= 0) io->input_dims[0] = 0;
        io->output_ndim = ov->ndim;
        memcpy(io->output_dims, ov->dims, ov->ndim * sizeof *ov->dims);
        if (im.batch <= 0) io->output_dims[0] = 0;
    }
    cnn_clear_error(ctx);
cleanup:
    cnn_mem_free(ctx, order);
    cnn_mem_free(ctx, done);
    cnn_mem_free(ctx, live);
    cnn_mem_free(ctx, avail);
    cnn_mem_free(ctx, needed);
    importer_free(&im);
    if (st != CNN_OK) {
        cnn_net_free(net);
        net = NULL;
    }
    *out = net;
    return st;
}

cnn_status cnn_net_import_onnx_memory(cnn_ctx *ctx, const void *data, size_t size, const char *origin,
                                      const cnn_onnx_import_options *opt, cnn_net **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_import_onnx: out is NULL");
    *out = NULL;
    if (!ctx || (!data && size)) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_import_onnx: NULL argument");
    if (!origin) origin = "<memory>";
    if (size == 0) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: empty file", origin);
    ProtobufCAllocator a = cnn_onnx_pb_allocator(ctx);
    CnnOnnx__ModelProto *m = cnn_onnx__model_proto__unpack(&a, size, data);
    if (!m) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: not a valid ONNX model (protobuf parse failed: truncated or corrupt)", origin);
    cnn_status st = import_model(ctx, m, origin, opt, out);
    cnn_onnx__model_proto__free_unpacked(m, &a);
    return st;
}

cnn_status cnn_net_import_onnx_ex(cnn_ctx *ctx, const char *path, const cnn_onnx_import_options *opt,
                                  cnn_net **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_import_onnx: out is NULL");
    *out = NULL;
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_import_onnx: NULL argument");
    uint8_t *buf;
    size_t len;
    cnn_status st = cnn_onnx_read_file(ctx, path, &buf, &len);
    if (st != CNN_OK) return st;
    st = cnn_net_import_onnx_memory(ctx, buf, len, path, opt, out);
    cnn_mem_free(ctx, buf);
    return st;
}

cnn_status cnn_net_import_onnx(cnn_ctx *ctx, const char *path, cnn_net **out) {
    return cnn_net_import_onnx_ex(ctx, path, NULL, out);
}

#else /* ONNX disabled at build time */

cnn_status cnn_net_import_onnx_memory(cnn_ctx *ctx, const void *data, size_t size, const char *origin,
                                      const cnn_onnx_import_options *opt, cnn_net **out) {
    (void)data, (void)size, (void)origin, (void)opt;
    if (out) *out = NULL;
    return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "ONNX support was not built (needs protobuf-c and onnx.proto)");
}
cnn_status cnn_net_import_onnx_ex(cnn_ctx *ctx, const char *path, const cnn_onnx_import_options *opt,
                                  cnn_net **out) {
    (void)path, (void)opt;
    if (out) *out = NULL;
    return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "ONNX support was not built (needs protobuf-c and onnx.proto)");
}
cnn_status cnn_net_import_onnx(cnn_ctx *ctx, const char *path, cnn_net **out) {
    return cnn_net_import_onnx_ex(ctx, path, NULL, out);
}

#endif
