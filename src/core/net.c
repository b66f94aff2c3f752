/* net.c — the network: a DAG of named layers in topological (file) order.
 *
 *   build    shape inference layer by layer, parameter registry (one arena of trainable parameters, one of
 *            buffers such as running statistics), PyTorch-default initialisation from seed 0.
 *   compile  memory plan for a maximum batch: in training every activation is kept for backward and every
 *            layer output gets a gradient buffer; in inference activation buffers are reused by liveness
 *            (best fit among buffers whose last reader has run). Saved state and per-thread workspace.
 *   forward  layers in order; backward in reverse order, gradients of a tensor read by several layers
 *            accumulate (the first writer stores, the others add).
 * Nothing allocates inside forward/backward.
 *   grad_hook (net_internal.h; data-parallel training, src/dist/ddp.c): backward calls it for each layer with
 *            parameters right after that layer's parameter gradients are final (reverse layer order), so an
 *            allreduce of them can start while the layers below still run. NULL: not called.
 *   CNN_COMPILE_KEEP_ACTIVATIONS (inference only; visualisation, net_query.c) gives every layer its own
 *            output buffer and turns relu fusion off, so every layer's output survives a forward.
 *
 * Aliases and fusion (compile; cnn_net.no_fuse turns them off):
 *   flatten  whose input has no other reader is a view: its y and dy are its input's buffers, and it is
 *            skipped in forward and backward (the bytes are already in flatten order).
 *   relu     whose input has no other reader and whose only reader is a maxpool2d on the 2x2 stride-2
 *            kernel path (or, in an inference compile, 3x3 stride 2: ResNet's stem) is fused into that
 *            maxpool (maxpool2d.c): the relu shares its input's y and dy
 *            and is skipped; the maxpool reads the relu's input, writes relu(max), and in backward writes
 *            the gradient of the relu's input directly. The values are those of the unfused pair.
 *   relu     whose input is a batchnorm with no other reader (and not folded) runs inside the batchnorm
 *            (batchnorm.c): it shares the batchnorm's y and dy and is skipped; the batchnorm writes
 *            relu(y) and masks its incoming gradient by y > 0. A relu that can fuse into a maxpool does that.
 *   Neither applies to the input layer's output (it may keep no gradient) or to the last layer.
 *   In inference an alias shares its source's liveness slot, which is freed after the alias's last
 *   reader. The saving in M1 training: the relu forward + backward passes over the two conv outputs and
 *   their buffers (2 x 2 x 6.4 MB at batch 64), and the flatten copies.
 *
 * Batchnorm folding and packed weights (inference compile only; src/layers/fold.h):
 *   batchnorm whose input is a conv2d with no other reader, compiled without CNN_COMPILE_TRAIN and without
 *            CNN_COMPILE_KEEP_ACTIVATIONS (and not turned off by no_fold / CNN_FOLD=0), is folded into the
 *            conv: W' = W * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * that + beta. The
 *            batchnorm is then an alias of the conv output, skipped like a view.
 *   Every conv2d that folds a batchnorm or runs winograd gets an inference weight block (W' and b', or b'
 *            and the winograd transform U of W'), computed into infer_arena at compile: the trained
 *            parameters are never touched (saving weights after an inference compile saves the originals).
 *   Refolding: param_gen counts calls that may have changed parameter values (cnn_net_init_params, handing
 *            out parameter pointers through cnn_net_param_at / _find / cnn_net_arenas, which loading
 *            weights uses, and every cnn_optimizer_step); an inference forward that sees it moved remakes the
 *            blocks first (ResNet-18: about the cost of one forward at batch 1). Writes through a cnn_param
 *            pointer kept from before the last forward are not seen: fetch it again (or reload).
 *   Values: the folded conv rounds differently from conv-then-batchnorm (about 1e-6 relative). */
#include "net_internal.h"
#include "../layers/fold.h"
#include "../layers/pool2d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLE_ELEMS ((size_t)1 << 32) /* per-sample elements of one activation */
#define MAX_PARAM_ELEMS ((size_t)1 << 34)

const struct cnn_layer_ops *cnn_layer_ops_find(const char *name, size_t len) {
    static const struct cnn_layer_ops *const all[] = {
#define CNN_LAYER(sym) &sym,
#include "../layers/layers.inc"
#undef CNN_LAYER
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strlen(all[i]->name) == len && !memcmp(all[i]->name, name, len)) return all[i];
    return NULL;
}

cnn_status cnn_layer_error(const cnn_layer *L, cnn_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->line)
        return cnn_error(L->ctx, s, "%s:%zu: %s '%s': %s", L->origin ? L->origin : "<model>", L->line, L->ops->name,
                         L->name, msg);
    return cnn_error(L->ctx, s, "%s '%s': %s", L->ops->name, L->name, msg);
}

cnn_ctx *cnn_net_ctx(const cnn_net *net) { return net ? net->ctx : NULL; }

static void free_compiled(cnn_net *net) {
    cnn_mem_free(net->ctx, net->act_arena);
    cnn_mem_free(net->ctx, net->ws);
    cnn_mem_free(net->ctx, net->infer_arena);
    net->act_arena = NULL;
    net->ws = NULL;
    net->infer_arena = NULL;
    net->fold_scratch = NULL;
    for (size_t i = 0; i < net->n_layers; i++) {
        net->rt[i].y = net->rt[i].dy = NULL;
        net->rt[i].saved = NULL;
        net->rt[i].wblock = NULL;
        net->rt[i].fold_bn = SIZE_MAX;
    }
    net->compiled = 0;
}

void cnn_net_free(cnn_net *net) {
    if (!net) return;
    cnn_ctx *ctx = net->ctx;
    free_compiled(net);
    for (size_t i = 0; i < net->n_layers; i++) free(net->layers[i].params);
    free(net->layers);
    free(net->rt);
    free(net->tensors);
    cnn_mem_free(ctx, net->params);
    cnn_mem_free(ctx, net->buffers);
    cnn_mem_free(ctx, net->grads);
    cnn_mem_free(ctx, net->class_names);
    cnn_mem_free(ctx, net);
}

/* ---- class names ---- */

cnn_status cnn_net_set_class_names(cnn_net *net, const char *const *names, size_t n) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (n && !names) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_set_class_names: NULL names");
    if (n > CNN_MAX_CLASS_NAMES)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_set_class_names: %zu names (at most %u)", n,
                         (unsigned)CNN_MAX_CLASS_NAMES);
    size_t bytes = (n + 1) * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0])
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_set_class_names: name %zu is %s", i,
                             names[i] ? "empty" : "NULL");
        size_t len = strlen(names[i]);
        if (len > 4096 || strpbrk(names[i], "\n\r"))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                             "cnn_net_set_class_names: name %zu is longer than 4096 bytes or has a line break", i);
        bytes += len + 1;
    }
    char **block = NULL;
    if (n) {
        cnn_status st = cnn_mem_alloc_checked(ctx, bytes, "the class names", (void **)&block);
        if (st != CNN_OK) return st;
        char *t = (char *)(block + n + 1);
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(names[i]);
            memcpy(t, names[i], len + 1);
            block[i] = t;
            t += len + 1;
        }
        block[n] = NULL;
    }
    cnn_mem_free(ctx, net->class_names);
    net->class_names = block;
    net->n_class_names = n;
    return CNN_OK;
}

const char *const *cnn_net_class_names(const cnn_net *net, size_t *n) {
    if (n) *n = net ? net->n_class_names : 0;
    return net && net->n_class_names ? (const char *const *)net->class_names : NULL;
}

/* ---- build ---- */

cnn_status cnn_net_build(cnn_ctx *ctx, cnn_layer *layers, size_t n, const char *origin, cnn_net **out) {
    cnn_status st = CNN_OK;
    *out = NULL;
    cnn_net *net = cnn_mem_calloc(ctx, 1, sizeof *net);
    if (!net) {
        for (size_t i = 0; i < n; i++) free(layers[i].params);
        free(layers);
        return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building the network");
    }
    net->ctx = ctx;
    snprintf(net->origin, sizeof net->origin, "%s", origin ? origin : "<model>");
    net->layers = layers;
    net->n_layers = n;
    net->rt = calloc(n, sizeof *net->rt);
    if (!net->rt) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building the network"));
    size_t n_tensors = 0;
    for (size_t i = 0; i < n; i++) {
        cnn_layer *L = &layers[i];
        L->ctx = ctx;
        for (size_t k = 0; k < L->n_inputs; k++) {
            L->in[k] = layers[L->inputs[k]].out;
            net->rt[L->inputs[k]].consumers++;
            net->rt[L->inputs[k]].last_use = i;
        }
        CNN_TRY(L->ops->shape(L));
        size_t cnt;
        if (!cnn_shape_count(L->out, &cnt) || cnt == 0 || cnt > MAX_SAMPLE_ELEMS)
            CNN_TRY(cnn_layer_error(L, CNN_ERR_SHAPE, "output shape %zux%zux%zu is empty or too large", L->out.c,
                                    L->out.h, L->out.w));
        memset(&L->sizes, 0, sizeof L->sizes);
        if (L->ops->sizes) L->ops->sizes(L, &L->sizes);
        CNN_ASSERT(L->sizes.n_tensors <= CNN_MAX_TENSORS);
        n_tensors += L->sizes.n_tensors;
    }
    net->rt[n - 1].last_use = SIZE_MAX;
    net->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *net->tensors);
    if (!net->tensors) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory building the network"));
    size_t np = 0, nb = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        cnn_layer *L = &layers[i];
        np = cnn_round_up(np, 16);
        nb = cnn_round_up(nb, 16);
        net->rt[i].w_off = np;
        net->rt[i].buf_off = nb;
        for (int pass = 0; pass < 2; pass++) /* trainable tensors first, then buffers */
            for (size_t k = 0; k < L->sizes.n_tensors; k++) {
                const cnn_tensor_desc *d = &L->sizes.tensors[k];
                if ((pass == 0) != (d->trainable != 0)) continue;
                net_tensor *T = &net->tensors[t++];
                T->layer = i;
                T->d = *d;
                snprintf(T->name, sizeof T->name, "%s.%s", L->name, d->suffix);
                size_t c = 1;
                for (size_t q = 0; q < d->ndim; q++)
                    if (!cnn_size_mul(c, d->dims[q], &c)) c = SIZE_MAX;
                if (d->ndim == 0 || c == 0 || c > MAX_PARAM_ELEMS)
                    CNN_TRY(cnn_layer_error(L, CNN_ERR_SHAPE, "parameter %s is empty or too large", T->name));
                T->count = c;
                if (d->trainable) {
                    T->offset = np;
                    np += c;
                    net->trainable_scalars += c;
                } else {
                    T->offset = nb;
                    nb += c;
                }
                if (np > MAX_PARAM_ELEMS || nb > MAX_PARAM_ELEMS)
                    CNN_TRY(cnn_layer_error(L, CNN_ERR_SHAPE, "too many parameters"));
            }
        net->rt[i].w_count = np - net->rt[i].w_off;
        net->rt[i].buf_count = nb - net->rt[i].buf_off;
    }
    net->n_tensors = t;
    net->n_params = cnn_round_up(np, 16);
    net->n_buffers = cnn_round_up(nb, 16);
    net->params = cnn_mem_calloc(ctx, net->n_params ? net->n_params : 16, sizeof(float));
    net->buffers = cnn_mem_calloc(ctx, net->n_buffers ? net->n_buffers : 16, sizeof(float));
    if (!net->params || !net->buffers)
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating %zu parameters", np + nb));
    CNN_TRY(cnn_net_init_params(net, 0, CNN_INIT_DEFAULT));
    *out = net;
    return CNN_OK;
cleanup:
    cnn_net_free(net);
    return st;
}

/* ---- queries ---- */

size_t cnn_net_num_layers(const cnn_net *net) { return net ? net->n_layers : 0; }
cnn_shape cnn_net_input_shape(const cnn_net *net) {
    cnn_shape z = {0, 0, 0};
    return net ? net->layers[0].out : z;
}
cnn_shape cnn_net_output_shape(const cnn_net *net) {
    cnn_shape z = {0, 0, 0};
    return net ? net->layers[net->n_layers - 1].out : z;
}
int cnn_net_has_loss(const cnn_net *net) { return net && net->layers[net->n_layers - 1].ops->is_loss; }

cnn_status cnn_net_layer_info(const cnn_net *net, size_t i, cnn_layer_info *info) {
    if (!net || !info) return CNN_ERR_INVALID_ARG;
    if (i >= net->n_layers)
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "layer index %zu out of range (%zu layers)", i, net->n_layers);
    const cnn_layer *L = &net->layers[i];
    memset(info, 0, sizeof *info);
    info->name = L->name;
    info->type = L->ops->name;
    info->out = L->out;
    info->n_inputs = L->n_inputs;
    for (size_t k = 0; k < L->n_inputs && k < 8; k++) info->inputs[k] = net->layers[L->inputs[k]].name;
    for (size_t k = 0; k < net->n_tensors; k++)
        if (net->tensors[k].layer == i && net->tensors[k].d.trainable) info->params += net->tensors[k].count;
    info->flops = L->sizes.flops;
    info->algorithm = L->sizes.algorithm ? L->sizes.algorithm : "";
    info->wgrad_algorithm = L->sizes.wgrad_algorithm ? L->sizes.wgrad_algorithm : "";
    if (net->compiled && net->rt[i].skip) /* aliases and fusion of the last compile */
        info->algorithm = L->ops == &cnn_layer_flatten     ? "view"
                          : L->ops == &cnn_layer_batchnorm ? "folded into the conv"
                          : cnn_batchnorm_fused_relu(&net->layers[net->rt[i].alias]) ? "fused into the batchnorm"
                                                           : "fused into the next layer";
    else if (L->ops == &cnn_layer_maxpool2d && ((const cnn_pool2d_params *)L->params)->fused_relu)
        info->algorithm = "relu+maxpool";
    else if (cnn_batchnorm_fused_relu(L))
        info->algorithm = "batchnorm+relu";
    return CNN_OK;
}

size_t cnn_net_num_params(const cnn_net *net) { return net ? net->n_tensors : 0; }
size_t cnn_net_param_count(const cnn_net *net) { return net ? net->trainable_scalars : 0; }

static void fill_param(const cnn_net *net, size_t i, cnn_param *out) {
    const net_tensor *T = &net->tensors[i];
    /* a writable pointer to the values goes out: derived weights are remade before the next inference
     * forward (the net itself was not defined const, so the cast is well defined) */
    ((cnn_net *)net)->param_gen++;
    out->name = T->name;
    out->trainable = T->d.trainable;
    out->data = (T->d.trainable ? net->params : net->buffers) + T->offset;
    out->grad = T->d.trainable && net->grads ? net->grads + T->offset : NULL;
    out->ndim = T->d.ndim;
    for (size_t q = 0; q < 4; q++) out->dims[q] = q < T->d.ndim ? T->d.dims[q] : 1;
    out->count = T->count;
}

cnn_status cnn_net_param_at(const cnn_net *net, size_t i, cnn_param *out) {
    if (!net || !out) return CNN_ERR_INVALID_ARG;
    if (i >= net->n_tensors)
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "parameter index %zu out of range (%zu tensors)", i,
                         net->n_tensors);
    fill_param(net, i, out);
    return CNN_OK;
}

cnn_status cnn_net_param_find(const cnn_net *net, const char *name, cnn_param *out) {
    if (!net || !out || !name) return CNN_ERR_INVALID_ARG;
    for (size_t i = 0; i < net->n_tensors; i++)
        if (!strcmp(net->tensors[i].name, name)) {
            fill_param(net, i, out);
            return CNN_OK;
        }
    return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "no parameter named '%s'", name);
}

cnn_status cnn_net_arenas(cnn_net *net, float **params, float **grads, size_t *count) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (!net->grads)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "the network is not compiled for training (CNN_COMPILE_TRAIN)");
    *params = net->params;
    *grads = net->grads;
    *count = net->n_params;
    net->param_gen++;
    return CNN_OK;
}

/* ---- initialisation ---- */

static void init_tensor(float *p, const cnn_tensor_desc *d, size_t count, cnn_init m, cnn_rng *rng) {
    double fi = d->fan_in ? (double)d->fan_in : 1.0, fo = d->fan_out ? (double)d->fan_out : 1.0;
    switch (d->role) {
    case CNN_ROLE_ONES:
        for (size_t i = 0; i < count; i++) p[i] = 1.0f;
        return;
    case CNN_ROLE_ZEROS:
        memset(p, 0, count * sizeof *p);
        return;
    case CNN_ROLE_BIAS:
        if (m == CNN_INIT_PYTORCH) {
            double b = 1.0 / sqrt(fi);
            for (size_t i = 0; i < count; i++) p[i] = (float)((2.0 * cnn_rng_uniform(rng) - 1.0) * b);
        } else {
            memset(p, 0, count * sizeof *p);
        }
        return;
    case CNN_ROLE_WEIGHT:
        break;
    }
    double bound = 0, std = 0;
    switch (m) {
    case CNN_INIT_KAIMING_UNIFORM: bound = sqrt(6.0 / fi); break;
    case CNN_INIT_KAIMING_NORMAL: std = sqrt(2.0 / fi); break;
    case CNN_INIT_XAVIER_UNIFORM: bound = sqrt(6.0 / (fi + fo)); break;
    case CNN_INIT_XAVIER_NORMAL: std = sqrt(2.0 / (fi + fo)); break;
    default: bound = 1.0 / sqrt(fi); break; /* PyTorch: kaiming_uniform(a=sqrt(5)) */
    }
    if (std > 0)
        for (size_t i = 0; i < count; i++) p[i] = (float)(cnn_rng_normal(rng) * std);
    else
        for (size_t i = 0; i < count; i++) p[i] = (float)((2.0 * cnn_rng_uniform(rng) - 1.0) * bound);
}

cnn_status cnn_net_init_params(cnn_net *net, uint64_t seed, cnn_init method) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if ((int)method < 0 || method > CNN_INIT_XAVIER_NORMAL)
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "unknown initialisation method %d", (int)method);
    cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    net->param_gen++;
    for (size_t i = 0; i < net->n_tensors; i++) {
        const net_tensor *T = &net->tensors[i];
        const cnn_layer *L = &net->layers[T->layer];
        cnn_init m = L->init != CNN_INIT_DEFAULT ? L->init : method != CNN_INIT_DEFAULT ? method : CNN_INIT_PYTORCH;
        float *p = (T->d.trainable ? net->params : net->buffers) + T->offset;
        init_tensor(p, &T->d, T->count, m, &rng);
    }
    return CNN_OK;
}

void cnn_net_set_seed(cnn_net *net, uint64_t seed) {
    if (!net) return;
    net->seed = seed;
    net->step = 0;
}

/* ---- memory plan ---- */

typedef struct plan {
    size_t *y_off, *dy_off, *saved_off; /* bytes into the arena; SIZE_MAX = none */
    size_t *alias, *fused, *fold;       /* find_aliases */
    size_t loss_dx_off;
    size_t total;
    size_t ws_stride; /* floats */
} plan;

/* Batchnorm folding (inference): off with net->no_fold or CNN_FOLD=0 in the environment. */
static int fold_enabled(const cnn_net *net) {
    const char *e = getenv("CNN_FOLD");
    return !net->no_fold && !(e && e[0] == '0' && e[1] == 0);
}

/* alias[i]: the input layer whose buffers layer i's output shares, or SIZE_MAX; fused[i]: for a fused relu
 * i, its maxpool, else SIZE_MAX; fold[i]: for a conv2d i, the batchnorm folded into it, else SIZE_MAX (only
 * with `fold`). */
static void find_aliases(const cnn_net *net, size_t *alias, size_t *fused, size_t *fold, int views_only,
                         int fold_bn, int train) {
    size_t n = net->n_layers;
    for (size_t i = 0; i < n; i++) alias[i] = fused[i] = fold[i] = SIZE_MAX;
    if (net->no_fuse) return;
    for (size_t i = 1; i + 1 < n; i++) {
        const cnn_layer *L = &net->layers[i];
        if (L->n_inputs != 1) continue;
        size_t src = L->inputs[0];
        if (src == 0 || net->rt[src].consumers != 1) continue;
        if (L->ops == &cnn_layer_flatten) {
            alias[i] = src;
        } else if (fold_bn && L->ops == &cnn_layer_batchnorm && net->layers[src].ops == &cnn_layer_conv2d) {
            alias[i] = src;
            fold[src] = i;
        } else if (!views_only && L->ops == &cnn_layer_relu) {
            size_t c = net->rt[i].last_use; /* the only reader */
            if (net->rt[i].consumers == 1 && c < n && net->layers[c].n_inputs == 1 &&
                net->layers[c].inputs[0] == i && cnn_maxpool2d_can_fuse_relu(&net->layers[c], train)) {
                alias[i] = src;
                fused[i] = c;
            } else if (net->layers[src].ops == &cnn_layer_batchnorm && alias[src] == SIZE_MAX) {
                alias[i] = src; /* run inside the batchnorm (not a folded one, which is itself an alias) */
                fused[i] = src;
            }
        }
    }
}

static cnn_status act_bytes(const cnn_net *net, size_t i, size_t batch, size_t *out) {
    size_t c;
    if (!cnn_shape_count(net->layers[i].out, &c) || !cnn_size_mul3(c, batch, sizeof(float), out) ||
        *out > (SIZE_MAX >> 2))
        return cnn_layer_error(&net->layers[i], CNN_ERR_SHAPE, "activations for batch %zu overflow", batch);
    *out = cnn_round_up(*out, CNN_ALIGN);
    return CNN_OK;
}

static cnn_status make_plan(const cnn_net *net, size_t batch, unsigned flags, plan *P) {
    cnn_status st = CNN_OK;
    size_t n = net->n_layers;
    int train = (flags & CNN_COMPILE_TRAIN) != 0;
    size_t total = 0;
    size_t *slot_size = NULL, *slot_of = NULL;
    int *slot_free = NULL;
    for (size_t i = 0; i < n; i++) P->y_off[i] = P->dy_off[i] = P->saved_off[i] = SIZE_MAX;
    P->loss_dx_off = SIZE_MAX;
    /* CNN_COMPILE_KEEP_ACTIVATIONS (inference): every layer keeps its own output (no liveness reuse, no relu
     * fused into a maxpool; flatten stays a view of its input, which holds the same values), so
     * cnn_net_layer_output can show any layer after a forward. */
    int keep = !train && (flags & CNN_COMPILE_KEEP_ACTIVATIONS) != 0;
    find_aliases(net, P->alias, P->fused, P->fold, keep, !train && !keep && fold_enabled(net), train);
#define ADD_BYTES(var, bytes)                                                                                      \
    do {                                                                                                           \
        var = total;                                                                                               \
        if (!cnn_size_add(total, cnn_round_up((bytes), CNN_ALIGN), &total))                                        \
            CNN_TRY(cnn_error(net->ctx, CNN_ERR_SHAPE, "activation memory for batch %zu overflows", batch));       \
    } while (0)
    if (train) {
        for (size_t i = 0; i < n; i++) {
            size_t b;
            CNN_TRY(act_bytes(net, i, batch, &b));
            if (P->alias[i] != SIZE_MAX) { /* a view of its input (no saved state: flatten, relu) */
                P->y_off[i] = P->y_off[P->alias[i]];
                P->dy_off[i] = P->dy_off[P->alias[i]];
                continue;
            }
            ADD_BYTES(P->y_off[i], b);
            int is_last_loss = i == n - 1 && net->layers[i].ops->is_loss;
            if ((i > 0 || (flags & CNN_COMPILE_INPUT_GRAD)) && !is_last_loss) ADD_BYTES(P->dy_off[i], b);
            const cnn_layer_sizes *s = &net->layers[i].sizes;
            size_t sb;
            if (!cnn_size_mul(s->saved_per_sample, batch, &sb) || !cnn_size_add(sb, s->saved_fixed, &sb))
                CNN_TRY(cnn_layer_error(&net->layers[i], CNN_ERR_SHAPE, "saved state for batch %zu overflows", batch));
            if (sb) ADD_BYTES(P->saved_off[i], sb);
        }
    } else if (keep) {
        for (size_t i = 0; i < n; i++) {
            size_t b;
            CNN_TRY(act_bytes(net, i, batch, &b));
            if (P->alias[i] != SIZE_MAX) {
                P->y_off[i] = P->y_off[P->alias[i]];
                continue;
            }
            ADD_BYTES(P->y_off[i], b);
        }
    } else {
        /* liveness: a buffer is free once the last reader of its tensor has run */
        slot_size = calloc(n, sizeof *slot_size);
        slot_of = calloc(n, sizeof *slot_of);
        slot_free = calloc(n, sizeof *slot_free);
        if (!slot_size || !slot_of || !slot_free) CNN_TRY(cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory planning"));
        size_t n_slots = 0;
        for (size_t i = 0; i < n; i++) {
            size_t b;
            CNN_TRY(act_bytes(net, i, batch, &b));
            if (P->alias[i] != SIZE_MAX) { /* shares its input's slot; freed after its own last reader */
                slot_of[i] = slot_of[P->alias[i]];
                continue;
            }
            size_t best = SIZE_MAX, largest = SIZE_MAX;
            for (size_t s = 0; s < n_slots; s++) {
                if (!slot_free[s]) continue;
                if (slot_size[s] >= b && (best == SIZE_MAX || slot_size[s] < slot_size[best])) best = s;
                if (largest == SIZE_MAX || slot_size[s] > slot_size[largest]) largest = s;
            }
            if (best == SIZE_MAX) best = largest;
            if (best == SIZE_MAX) best = n_slots++;
            if (slot_size[best] < b) slot_size[best] = b;
            slot_free[best] = 0;
            slot_of[i] = best;
            for (size_t k = 0; k < net->layers[i].n_inputs; k++) {
                size_t src = net->layers[i].inputs[k];
                if (net->rt[src].last_use == i) slot_free[slot_of[src]] = 1;
            }
            if (net->rt[i].consumers == 0 && i != n - 1) slot_free[best] = 1;
        }
        size_t *slot_off = calloc(n_slots ? n_slots : 1, sizeof *slot_off);
        if (!slot_off) CNN_TRY(cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory planning"));
        for (size_t s = 0; s < n_slots; s++) {
            slot_off[s] = total;
            if (!cnn_size_add(total, slot_size[s], &total)) {
                free(slot_off);
                CNN_TRY(cnn_error(net->ctx, CNN_ERR_SHAPE, "activation memory for batch %zu overflows", batch));
            }
        }
        for (size_t i = 0; i < n; i++) P->y_off[i] = slot_off[slot_of[i]];
        free(slot_off);
    }
    if (net->layers[n - 1].ops->is_loss) {
        size_t lin = net->layers[n - 1].inputs[0];
        if (!train || P->dy_off[lin] == SIZE_MAX) {
            size_t b;
            CNN_TRY(act_bytes(net, lin, batch, &b));
            ADD_BYTES(P->loss_dx_off, b);
        }
    }
#undef ADD_BYTES
    {
        size_t ws = 0;
        for (size_t i = 0; i < n; i++)
            if (net->layers[i].sizes.ws_per_thread > ws) ws = net->layers[i].sizes.ws_per_thread;
        P->ws_stride = cnn_round_up(ws, 16);
    }
    P->total = total;
cleanup:
    free(slot_size);
    free(slot_of);
    free(slot_free);
    return st;
}

static cnn_status plan_alloc(const cnn_net *net, plan *P) {
    size_t n = net->n_layers;
    P->y_off = calloc(6 * n, sizeof(size_t));
    if (!P->y_off) return cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory planning");
    P->dy_off = P->y_off + n;
    P->saved_off = P->y_off + 2 * n;
    P->alias = P->y_off + 3 * n;
    P->fused = P->y_off + 4 * n;
    P->fold = P->y_off + 5 * n;
    return CNN_OK;
}

cnn_status cnn_net_activation_bytes(const cnn_net *net, size_t batch, unsigned flags, size_t *bytes) {
    if (!net || !bytes) return CNN_ERR_INVALID_ARG;
    *bytes = 0;
    if (batch == 0) return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "batch must be at least 1");
    plan P = {0};
    cnn_status st = plan_alloc(net, &P);
    if (st == CNN_OK) st = make_plan(net, batch, flags, &P);
    if (st == CNN_OK) *bytes = P.total;
    free(P.y_off);
    return st;
}

/* The inference weight blocks from the current parameter values (compile, and a forward after param_gen
 * moved). */
static void make_blocks(cnn_net *net) {
    for (size_t i = 0; i < net->n_layers; i++) {
        const net_layer_rt *rt = &net->rt[i];
        if (!rt->wblock) continue;
        double *scale = NULL, *shift = NULL;
        if (rt->fold_bn != SIZE_MAX) {
            const net_layer_rt *b = &net->rt[rt->fold_bn];
            scale = net->fold_scratch;
            shift = scale + net->layers[i].out.c;
            cnn_batchnorm_eval_affine(&net->layers[rt->fold_bn], b->w_count ? net->params + b->w_off : NULL,
                                      net->buffers + b->buf_off, scale, shift);
        }
        cnn_conv2d_fill_infer_block(&net->layers[i], net->ctx, net->params + rt->w_off, scale, shift, rt->wblock);
    }
    net->block_gen = net->param_gen;
}

/* conv2d layers: the batch they are compiled for (0: none), and their sizes for it */
static void conv_sizes_for_batch(cnn_net *net, size_t batch) {
    for (size_t i = 0; i < net->n_layers; i++) {
        cnn_layer *L = &net->layers[i];
        if (L->ops != &cnn_layer_conv2d) continue;
        cnn_conv2d_set_batch(L, batch);
        memset(&L->sizes, 0, sizeof L->sizes);
        L->ops->sizes(L, &L->sizes);
    }
}

cnn_status cnn_net_compile(cnn_net *net, size_t max_batch, unsigned flags) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_ctx *ctx = net->ctx;
    if (max_batch == 0) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_compile: max_batch must be at least 1");
    if (flags & ~(unsigned)(CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD | CNN_COMPILE_KEEP_ACTIVATIONS))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_compile: unknown flags 0x%x", flags);
    if ((flags & CNN_COMPILE_INPUT_GRAD) && !(flags & CNN_COMPILE_TRAIN))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_net_compile: CNN_COMPILE_INPUT_GRAD needs CNN_COMPILE_TRAIN");
    plan P = {0};
    cnn_status st = CNN_OK;
    void *arena = NULL;
    float *ws = NULL, *iw = NULL;
    /* conv2d's algorithm may depend on the batch (Winograd's tile size): its sizes anew for this batch (and
     * back for the compile in force if this one fails) */
    conv_sizes_for_batch(net, max_batch);
    CNN_TRY(plan_alloc(net, &P));
    CNN_TRY(make_plan(net, max_batch, flags, &P));
    size_t T = ctx->threads ? ctx->threads : 1, ws_bytes = 0;
    if (!cnn_size_mul3(T, P.ws_stride, sizeof(float), &ws_bytes))
        CNN_TRY(cnn_error(ctx, CNN_ERR_SHAPE, "workspace for %zu threads overflows", T));
    CNN_TRY(cnn_mem_alloc_checked(ctx, P.total ? P.total : 64, "activations", &arena));
    CNN_TRY(cnn_mem_alloc_checked(ctx, ws_bytes ? ws_bytes : 64, "workspace", (void **)&ws));
    if ((flags & CNN_COMPILE_TRAIN) && !net->grads) {
        net->grads = cnn_mem_calloc(ctx, net->n_params ? net->n_params : 16, sizeof(float));
        if (!net->grads) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating gradients"));
    }
    /* inference weight blocks (see "Batchnorm folding"): sizes, then one allocation with the scratch */
    size_t blocks = 0, fold_k = 0;
    if (!(flags & CNN_COMPILE_TRAIN))
        for (size_t i = 0; i < net->n_layers; i++) {
            if (net->layers[i].ops != &cnn_layer_conv2d) continue;
            const int fold = P.fold[i] != SIZE_MAX;
            blocks += cnn_round_up(cnn_conv2d_infer_block_floats(&net->layers[i], fold), 16);
            if (fold && net->layers[i].out.c > fold_k) fold_k = net->layers[i].out.c;
        }
    if (blocks)
        CNN_TRY(cnn_mem_alloc_checked(ctx, (blocks + cnn_round_up(4 * fold_k, 16)) * sizeof(float),
                                      "inference weights", (void **)&iw));
    free_compiled(net);
    net->act_arena = arena;
    net->ws = ws;
    net->infer_arena = iw;
    net->fold_scratch = iw ? (double *)(iw + blocks) : NULL;
    arena = NULL;
    ws = NULL;
    iw = NULL;
    for (size_t i = 0, off = 0; i < net->n_layers; i++) {
        net->rt[i].fold_bn = SIZE_MAX;
        net->rt[i].wblock = NULL;
        if (net->layers[i].ops != &cnn_layer_conv2d) continue;
        const int fold = P.fold[i] != SIZE_MAX;
        const size_t f = blocks ? cnn_conv2d_infer_block_floats(&net->layers[i], fold) : 0;
        cnn_conv2d_set_infer_block(&net->layers[i], f != 0, fold);
        if (!f) continue;
        net->rt[i].wblock = net->infer_arena + off;
        net->rt[i].fold_bn = P.fold[i];
        off += cnn_round_up(f, 16);
    }
    char *base = net->act_arena;
    for (size_t i = 0; i < net->n_layers; i++) {
        net->rt[i].y = (float *)(base + P.y_off[i]);
        net->rt[i].dy = P.dy_off[i] != SIZE_MAX ? (float *)(base + P.dy_off[i]) : NULL;
        net->rt[i].saved = P.saved_off[i] != SIZE_MAX ? base + P.saved_off[i] : NULL;
        net->rt[i].alias = P.alias[i];
        net->rt[i].skip = P.alias[i] != SIZE_MAX;
        if (net->layers[i].ops == &cnn_layer_maxpool2d) cnn_maxpool2d_set_fused_relu(&net->layers[i], 0);
        if (net->layers[i].ops == &cnn_layer_batchnorm) cnn_batchnorm_set_fused_relu(&net->layers[i], 0);
    }
    for (size_t i = 0; i < net->n_layers; i++) {
        if (P.fused[i] == SIZE_MAX) continue;
        cnn_layer *F = &net->layers[P.fused[i]];
        if (F->ops == &cnn_layer_batchnorm) cnn_batchnorm_set_fused_relu(F, 1);
        else cnn_maxpool2d_set_fused_relu(F, 1);
    }
    /* scratch for the loss gradient when its input keeps none (inference, or a loss reading the input) */
    if (P.loss_dx_off != SIZE_MAX) net->rt[net->n_layers - 1].dy = (float *)(base + P.loss_dx_off);
    net->ws_stride = P.ws_stride;
    net->compiled_threads = T;
    net->max_batch = max_batch;
    net->flags = flags;
    net->compiled = 1;
    net->last_n = 0;
    net->loss_ready = 0;
    if (net->infer_arena) make_blocks(net);
cleanup:
    if (st != CNN_OK) conv_sizes_for_batch(net, net->compiled ? net->max_batch : 0);
    cnn_mem_free(ctx, arena);
    cnn_mem_free(ctx, ws);
    cnn_mem_free(ctx, iw);
    free(P.y_off);
    return st;
}

/* ---- passes ---- */

static void fill_run(cnn_net *net, size_t i, cnn_layer_run *r) {
    const cnn_layer *L = &net->layers[i];
    net_layer_rt *rt = &net->rt[i];
    memset(r, 0, sizeof *r);
    r->L = L;
    r->ctx = net->ctx;
    r->n = net->last_n;
    r->training = net->last_training;
    for (size_t k = 0; k < L->n_inputs; k++) r->x[k] = net->rt[L->inputs[k]].y;
    if (i == 0) r->x[0] = net->input_ptr;
    r->y = rt->y;
    r->w = rt->wblock ? rt->wblock : rt->w_count ? net->params + rt->w_off : NULL;
    r->dw = rt->w_count && net->grads ? net->grads + rt->w_off : NULL;
    r->buf = rt->buf_count ? net->buffers + rt->buf_off : NULL;
    r->saved = r->training ? rt->saved : NULL;
    r->ws = net->ws;
    r->ws_stride = net->ws_stride;
    r->ws_regions = net->compiled_threads ? net->compiled_threads : 1;
    r->seed = cnn_hash64(net->seed, net->step * 0x10000u + i);
    r->sample0 = net->sample0;
}

static cnn_status check_ready(cnn_net *net, const char *what) {
    if (!net->compiled) return cnn_error(net->ctx, CNN_ERR_MISUSE, "%s: the network is not compiled", what);
    if (net->ctx->threads > net->compiled_threads)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "%s: the thread count grew from %zu to %zu since compile; compile again",
                         what, net->compiled_threads, net->ctx->threads);
    return CNN_OK;
}

/* Whether x[0, count) holds no NaN or infinity: x * 0 is 0 for finite x and NaN otherwise, so the sum is
 * NaN exactly when one is not finite. One vectorised pass without branches; the caller looks for the
 * element only when it fails. */
static int all_finite(const float *x, size_t count) {
    float acc = 0.0f;
#if defined(_OPENMP)
#pragma omp simd reduction(+ : acc)
#endif
    for (size_t i = 0; i < count; i++) acc += x[i] * 0.0f;
    return acc == 0.0f;
}

/* x holds n finite samples (cnn_net_forward's check). */
static cnn_status check_input(cnn_net *net, const float *x, size_t n) {
    size_t per = 0;
    cnn_shape_count(net->layers[0].out, &per);
    if (!all_finite(x, n * per))
        for (size_t i = 0, total = n * per; i < total; i++)
            if (!isfinite(x[i]))
                return cnn_error(net->ctx, CNN_ERR_NUMERIC, "cnn_net_forward: input sample %zu element %zu is %s",
                                 i / per, i % per, isnan(x[i]) ? "NaN" : "infinite");
    return CNN_OK;
}

/* The labels (softmax_ce) or targets (other losses) of n samples fit the loss layer (cnn_net_loss's check). */
static cnn_status check_targets(cnn_net *net, const int32_t *labels, const float *targets, size_t n) {
    const cnn_layer *L = &net->layers[net->n_layers - 1];
    size_t classes = L->in[0].c * L->in[0].h * L->in[0].w;
    if (!strcmp(L->ops->name, "softmax_ce")) {
        if (!labels) return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_loss: softmax_ce needs labels");
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0 || (size_t)labels[i] >= L->in[0].c)
                return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_loss: label %d of sample %zu is outside [0, %zu)",
                                 (int)labels[i], i, L->in[0].c);
    } else {
        if (!targets) return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_loss: %s needs targets", L->ops->name);
        for (size_t i = 0; i < n * classes; i++)
            if (!isfinite(targets[i]))
                return cnn_error(net->ctx, CNN_ERR_NUMERIC, "cnn_net_loss: target %zu of sample %zu is not finite",
                                 i % classes, i / classes);
    }
    return CNN_OK;
}

cnn_status cnn_net_check_batch(cnn_net *net, const float *x, const int32_t *labels, const float *targets, size_t n,
                               const char **phase) {
    if (phase) *phase = "forward";
    cnn_status st = check_input(net, x, n);
    if (st) return st;
    if (phase) *phase = "loss";
    if (!net->layers[net->n_layers - 1].ops->is_loss)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_loss: the last layer '%s' is not a loss layer",
                         net->layers[net->n_layers - 1].name);
    return check_targets(net, labels, targets, n);
}

cnn_status cnn_net_forward(cnn_net *net, const float *x, size_t n, int training) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_status st = check_ready(net, "cnn_net_forward");
    if (st) return st;
    if (!x) return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_forward: x is NULL");
    if (n == 0 || n > net->max_batch)
        return cnn_error(net->ctx, CNN_ERR_SHAPE, "cnn_net_forward: batch of %zu samples, compiled for 1..%zu", n,
                         net->max_batch);
    if (training && !(net->flags & CNN_COMPILE_TRAIN))
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_forward: training pass on a network compiled for inference");
    if ((st = check_input(net, x, n)) != CNN_OK) {
        net->last_n = 0;
        return st;
    }
    if (net->infer_arena && net->block_gen != net->param_gen) make_blocks(net);
    net->input_ptr = x;
    net->have_backward = 0;
    net->last_n = n;
    net->last_training = training != 0;
    net->loss_ready = 0;
    float *ws_prev = cnn_gemm_ws_enter(net->ctx);
    for (size_t i = 0; i < net->n_layers; i++) {
        if (net->rt[i].skip) continue;
        cnn_layer_run r;
        fill_run(net, i, &r);
        net->layers[i].ops->forward(&r);
    }
    cnn_gemm_ws_leave(ws_prev);
    net->input_ptr = NULL;
    if (training) net->step++;
    return CNN_OK;
}

const float *cnn_net_output(const cnn_net *net, size_t *n) {
    if (n) *n = net ? net->last_n : 0;
    if (!net || !net->compiled || !net->last_n) return NULL;
    return net->rt[net->n_layers - 1].y;
}

cnn_status cnn_net_loss(cnn_net *net, const int32_t *labels, const float *targets, cnn_loss_stats *out) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (out) memset(out, 0, sizeof *out);
    cnn_status st = check_ready(net, "cnn_net_loss");
    if (st) return st;
    size_t last = net->n_layers - 1;
    const cnn_layer *L = &net->layers[last];
    if (!L->ops->is_loss)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_loss: the last layer '%s' is not a loss layer", L->name);
    if (!net->last_n) return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_loss: no forward pass to take the loss of");
    if ((st = check_targets(net, labels, targets, net->last_n)) != CNN_OK) return st;
    cnn_layer_run r;
    fill_run(net, last, &r);
    size_t lin = L->inputs[0];
    float *dx = net->last_training && net->rt[lin].dy ? net->rt[lin].dy : net->rt[last].dy;
    size_t correct = 0;
    double loss = L->ops->loss(&r, labels, targets, dx, &correct);
    if (out) {
        out->loss = loss;
        out->correct = correct;
        out->n = net->last_n;
    }
    net->loss_ready = net->last_training;
    if (!isfinite(loss)) return cnn_error(net->ctx, CNN_ERR_NUMERIC, "cnn_net_loss: the loss is %s", isnan(loss) ? "NaN" : "infinite");
    return CNN_OK;
}

cnn_status cnn_net_backward(cnn_net *net, const float *dy) {
    if (!net) return CNN_ERR_INVALID_ARG;
    cnn_status st = check_ready(net, "cnn_net_backward");
    if (st) return st;
    if (!(net->flags & CNN_COMPILE_TRAIN))
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_backward: the network is compiled for inference");
    if (!net->last_n || !net->last_training)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_backward: needs a training forward pass first");
    size_t n_layers = net->n_layers, last = n_layers - 1, start;
    for (size_t i = 0; i < n_layers; i++) net->rt[i].dy_written = 0;
    size_t per = 0;
    if (net->layers[last].ops->is_loss) {
        if (dy)
            return cnn_error(net->ctx, CNN_ERR_MISUSE,
                             "cnn_net_backward: the network ends in a loss layer; pass dy = NULL after cnn_net_loss");
        if (!net->loss_ready)
            return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_backward: call cnn_net_loss after the forward pass first");
        size_t lin = net->layers[last].inputs[0];
        net->rt[lin].dy_written = net->rt[lin].dy != NULL;
        start = last; /* the loss layer itself has no backward */
    } else {
        if (!dy)
            return cnn_error(net->ctx, CNN_ERR_INVALID_ARG,
                             "cnn_net_backward: the network has no loss layer; pass the gradient of its output");
        cnn_shape_count(net->layers[last].out, &per);
        memcpy(net->rt[last].dy, dy, net->last_n * per * sizeof(float));
        net->rt[last].dy_written = 1;
        start = n_layers;
    }
    float *ws_prev = cnn_gemm_ws_enter(net->ctx);
    for (size_t i = start; i-- > 1;) {
        const cnn_layer *L = &net->layers[i];
        net_layer_rt *rt = &net->rt[i];
        if (rt->skip) { /* a view: its gradient is its input's (the only reader of that input) */
            if (rt->dy_written && net->rt[L->inputs[0]].dy) net->rt[L->inputs[0]].dy_written = 1;
            continue;
        }
        if (!rt->dy_written) {
            if (rt->w_count) memset(net->grads + rt->w_off, 0, rt->w_count * sizeof(float));
            if (rt->w_count && net->grad_hook) net->grad_hook(net->grad_hook_user, i, net->grads + rt->w_off, rt->w_count);
            continue;
        }
        cnn_layer_run r;
        fill_run(net, i, &r);
        r.dy = rt->dy;
        int any_dx = 0;
        for (size_t k = 0; k < L->n_inputs; k++) {
            size_t src = L->inputs[k];
            r.dx[k] = net->rt[src].dy;
            int acc = net->rt[src].dy_written;
            for (size_t j = 0; j < k; j++)
                if (L->inputs[j] == src) acc = 1;
            r.dx_accumulate[k] = acc;
            if (r.dx[k]) any_dx = 1;
        }
        if (rt->w_count && L->ops->backward_weights) L->ops->backward_weights(&r);
        if (rt->w_count && net->grad_hook) net->grad_hook(net->grad_hook_user, i, net->grads + rt->w_off, rt->w_count);
        if (any_dx && L->ops->backward_data) {
            L->ops->backward_data(&r);
            for (size_t k = 0; k < L->n_inputs; k++)
                if (r.dx[k]) net->rt[L->inputs[k]].dy_written = 1;
        }
    }
    cnn_gemm_ws_leave(ws_prev);
    if ((net->flags & CNN_COMPILE_INPUT_GRAD) && !net->rt[0].dy_written && net->rt[0].dy) {
        cnn_shape_count(net->layers[0].out, &per);
        memset(net->rt[0].dy, 0, net->last_n * per * sizeof(float));
    }
    net->loss_ready = 0;
    net->have_backward = 1;
    return CNN_OK;
}

static cnn_status run_layer(cnn_net *net, size_t layer, cnn_pass pass) {
    cnn_status st = check_ready(net, "cnn_net_run_layer");
    if (st) return st;
    if (layer >= net->n_layers)
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_run_layer: layer %zu out of range (%zu layers)", layer,
                         net->n_layers);
    if (!net->last_n || (!net->last_training && pass != CNN_PASS_FORWARD))
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_run_layer: needs a training forward pass first");
    const cnn_layer *L = &net->layers[layer];
    cnn_layer_run r;
    fill_run(net, layer, &r);
    if (layer == 0) return CNN_OK; /* the input copy reads a caller buffer that is gone */
    if (net->rt[layer].skip) return CNN_OK; /* a view or fused into its reader: nothing to run */
    if (pass == CNN_PASS_FORWARD) {
        L->ops->forward(&r);
        return CNN_OK;
    }
    if (pass != CNN_PASS_BACKWARD_DATA && pass != CNN_PASS_BACKWARD_WEIGHTS)
        return cnn_error(net->ctx, CNN_ERR_INVALID_ARG, "cnn_net_run_layer: unknown pass %d", (int)pass);
    if (!net->have_backward || !net->rt[layer].dy || L->ops->is_loss)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_run_layer: layer '%s' has no gradient to run backward from",
                         L->name);
    r.dy = net->rt[layer].dy;
    if (pass == CNN_PASS_BACKWARD_WEIGHTS) {
        if (net->rt[layer].w_count && L->ops->backward_weights) L->ops->backward_weights(&r);
        return CNN_OK;
    }
    for (size_t k = 0; k < L->n_inputs; k++) r.dx[k] = net->rt[L->inputs[k]].dy;
    if (L->ops->backward_data) L->ops->backward_data(&r);
    return CNN_OK;
}

cnn_status cnn_net_run_layer(cnn_net *net, size_t layer, cnn_pass pass) {
    if (!net) return CNN_ERR_INVALID_ARG;
    float *ws_prev = cnn_gemm_ws_enter(net->ctx);
    cnn_status st = run_layer(net, layer, pass);
    cnn_gemm_ws_leave(ws_prev);
    return st;
}

const float *cnn_net_input_grad(const cnn_net *net) {
    if (!net || !net->compiled || !(net->flags & CNN_COMPILE_INPUT_GRAD)) return NULL;
    return net->rt[0].dy;
}

/* ---- evaluation ---- */

cnn_status cnn_net_eval_check(cnn_net *net, const cnn_dataset *ds, const char *what) {
    cnn_ctx *ctx = net->ctx;
    cnn_status st = check_ready(net, what);
    if (st) return st;
    const cnn_layer *L = &net->layers[net->n_layers - 1];
    if (!L->ops->is_loss || strcmp(L->ops->name, "softmax_ce"))
        return cnn_error(ctx, CNN_ERR_MISUSE, "%s: the network must end in softmax_ce", what);
    cnn_shape in = net->layers[0].out, ds_shape = cnn_dataset_shape(ds);
    if (in.c != ds_shape.c || in.h != ds_shape.h || in.w != ds_shape.w)
        return cnn_error(ctx, CNN_ERR_SHAPE, "dataset samples are %zux%zux%zu, the network input is %zux%zux%zu", ds_shape.c,
                         ds_shape.h, ds_shape.w, in.c, in.h, in.w);
    if (cnn_dataset_classes(ds) > L->out.c)
        return cnn_error(ctx, CNN_ERR_SHAPE, "dataset has %zu classes, the network outputs %zu", cnn_dataset_classes(ds),
                         L->out.c);
    return CNN_OK;
}

cnn_status cnn_net_eval_sums(cnn_net *net, const cnn_dataset *ds, size_t b0, size_t b1, size_t batch, int tta,
                             double *acc) {
    cnn_ctx *ctx = net->ctx;
    cnn_status st = CNN_OK;
    const size_t classes = net->layers[net->n_layers - 1].out.c;
    if (batch == 0 || batch > net->max_batch) batch = net->max_batch;
    size_t per = 0, xbytes = 0, pbytes = 0;
    cnn_shape_count(net->layers[0].out, &per);
    if (!cnn_size_mul3(per, batch, sizeof(float), &xbytes) || !cnn_size_mul3(classes, batch, sizeof(float), &pbytes))
        return cnn_error(ctx, CNN_ERR_SHAPE, "batch too large");
    float *x = NULL, *probs = NULL;
    int32_t *labels = NULL;
    size_t *idx = NULL;
    CNN_TRY(cnn_mem_alloc_checked(ctx, xbytes, "evaluation batch", (void **)&x));
    if (tta) CNN_TRY(cnn_mem_alloc_checked(ctx, pbytes, "evaluation probabilities", (void **)&probs));
    CNN_TRY(cnn_mem_alloc_checked(ctx, batch * sizeof *labels, "evaluation labels", (void **)&labels));
    CNN_TRY(cnn_mem_alloc_checked(ctx, batch * sizeof *idx, "evaluation indices", (void **)&idx));
    for (size_t s0 = b0; s0 < b1; s0 += batch) {
        size_t nb = b1 - s0 < batch ? b1 - s0 : batch;
        for (size_t i = 0; i < nb; i++) idx[i] = s0 + i;
        CNN_TRY(cnn_dataset_gather(ds, idx, nb, x, labels));
        const float *y;
        if (tta) {
            CNN_TRY(cnn_net_forward_tta(net, x, nb, probs));
            y = probs;
        } else {
            CNN_TRY(cnn_net_forward(net, x, nb, 0));
            cnn_loss_stats ls;
            CNN_TRY(cnn_net_loss(net, labels, NULL, &ls));
            acc[0] += ls.loss * (double)nb;
            acc[1] += (double)ls.correct;
            y = net->rt[net->n_layers - 1].y;
        }
        for (size_t i = 0; i < nb; i++) {
            const float *yi = y + i * classes;
            size_t best = 0, lab = (size_t)labels[i];
            for (size_t c = 1; c < classes; c++)
                if (yi[c] > yi[best]) best = c;
            if (tta) { /* the loss of the averaged probabilities (no label smoothing) */
                double pl = yi[lab] > 1e-45f ? (double)yi[lab] : 1e-45;
                acc[0] += -log(pl);
                acc[1] += best == lab;
            }
            acc[2 + lab * classes + best] += 1.0;
        }
    }
cleanup:
    cnn_mem_free(ctx, x);
    cnn_mem_free(ctx, probs);
    cnn_mem_free(ctx, labels);
    cnn_mem_free(ctx, idx);
    return st;
}

cnn_status cnn_net_eval_result(cnn_net *net, const double *acc, size_t total, cnn_eval_result *out) {
    const size_t classes = net->layers[net->n_layers - 1].out.c;
    size_t *conf = cnn_mem_calloc(net->ctx, classes * classes, sizeof *conf);
    if (!conf) return cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory allocating the confusion matrix");
    for (size_t i = 0; i < classes * classes; i++) conf[i] = (size_t)acc[2 + i];
    out->loss = total ? acc[0] / (double)total : 0;
    out->accuracy = total ? acc[1] / (double)total : 0;
    out->n = total;
    out->classes = classes;
    out->confusion = conf;
    return CNN_OK;
}

/* plain (tta 0) or flip-TTA evaluation of the whole dataset */
cnn_status cnn_net_evaluate_mode(cnn_net *net, const cnn_dataset *ds, size_t batch, int tta, cnn_eval_result *out,
                                 const char *what) {
    if (!net || !ds || !out) return CNN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    cnn_status st = cnn_net_eval_check(net, ds, what);
    if (st) return st;
    const size_t classes = net->layers[net->n_layers - 1].out.c, total = cnn_dataset_size(ds);
    double *acc = cnn_mem_calloc(net->ctx, 2 + classes * classes, sizeof *acc);
    if (!acc) return cnn_error(net->ctx, CNN_ERR_NOMEM, "out of memory allocating the confusion matrix");
    st = cnn_net_eval_sums(net, ds, 0, total, batch, tta, acc);
    if (st == CNN_OK) st = cnn_net_eval_result(net, acc, total, out);
    cnn_mem_free(net->ctx, acc);
    return st;
}

cnn_status cnn_net_evaluate(cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out) {
    return cnn_net_evaluate_mode(net, ds, batch, 0, out, "cnn_net_evaluate");
}
