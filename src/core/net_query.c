/* net_query.c — looking inside a network after a forward: one layer's output activations (for `cnn viz`,
 * feature maps) and finding a layer by name.
 *
 * Which layers' outputs survive a forward depends on the memory plan (net.c, make_plan):
 *   training (CNN_COMPILE_TRAIN)    every output is kept for backward, except that a relu fused into the
 *                                   following maxpool shares its input's buffer, which holds the values
 *                                   before the relu: such a layer reports NULL.
 *   inference                       buffers are reused by liveness; only the last layer's output is
 *                                   certain to survive, so every other layer reports NULL ...
 *   inference + KEEP_ACTIVATIONS    ... unless CNN_COMPILE_KEEP_ACTIVATIONS gave every layer its own buffer
 *                                   (and turned relu fusion off). A flatten view of its input holds the
 *                                   same values as its input in flatten order, so it is reported. */
#include "net_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Index of the first non-finite value in p[0..n), or n. Blocks of 64 are screened with an integer test of
 * the exponent bits (all ones: NaN or infinity), which vectorises; the element search runs only in a block
 * that failed. */
static size_t first_nonfinite(const float *p, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint32_t bad = 0;
        for (size_t k = 0; k < 64; k++) {
            uint32_t u;
            memcpy(&u, p + i + k, sizeof u);
            bad += (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) break;
    }
    for (; i < n; i++)
        if (!isfinite(p[i])) return i;
    return n;
}

const float *cnn_net_layer_output(const cnn_net *net, size_t layer, cnn_shape *shape) {
    if (shape) memset(shape, 0, sizeof *shape);
    if (!net || !net->compiled || !net->last_n || layer >= net->n_layers) return NULL;
    const net_layer_rt *rt = &net->rt[layer];
    int kept = (net->flags & (CNN_COMPILE_TRAIN | CNN_COMPILE_KEEP_ACTIVATIONS)) != 0 || layer == net->n_layers - 1;
    if (!kept) return NULL;
    if (rt->skip && net->layers[layer].ops != &cnn_layer_flatten) return NULL; /* fused: values not kept */
    if (shape) *shape = net->layers[layer].out;
    return rt->y;
}

size_t cnn_net_layer_find(const cnn_net *net, const char *name) {
    if (!net || !name) return SIZE_MAX;
    for (size_t i = 0; i < net->n_layers; i++)
        if (strcmp(net->layers[i].name, name) == 0) return i;
    return SIZE_MAX;
}

void cnn_net_get_rng(const cnn_net *net, uint64_t *seed, uint64_t *step) {
    if (seed) *seed = net ? net->seed : 0;
    if (step) *step = net ? net->step : 0;
}

void cnn_net_set_rng(cnn_net *net, uint64_t seed, uint64_t step) {
    if (!net) return;
    net->seed = seed;
    net->step = step;
}

size_t cnn_net_first_nonfinite_output(const cnn_net *net, size_t *elem) {
    for (size_t i = 0; i < net->n_layers; i++) {
        cnn_shape s;
        const float *y = cnn_net_layer_output(net, i, &s);
        if (!y) continue;
        size_t n = net->last_n * s.c * s.h * s.w, k = first_nonfinite(y, n);
        if (k < n) {
            if (elem) *elem = k;
            return i;
        }
    }
    return SIZE_MAX;
}

cnn_status cnn_net_check_activations(cnn_net *net) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (!net->compiled || !net->last_n)
        return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_check_activations: no forward pass to check");
    size_t k = 0, i = cnn_net_first_nonfinite_output(net, &k);
    if (i == SIZE_MAX) return CNN_OK;
    cnn_shape s;
    const float *y = cnn_net_layer_output(net, i, &s);
    const size_t per = s.c * s.h * s.w;
    return cnn_error(net->ctx, CNN_ERR_NUMERIC, "the output of layer '%s' (%s) is %s first, at sample %zu element %zu",
                     net->layers[i].name, net->layers[i].ops->name, isnan(y[k]) ? "NaN" : "infinite", k / per, k % per);
}

cnn_status cnn_net_check_gradients(cnn_net *net) {
    if (!net) return CNN_ERR_INVALID_ARG;
    if (!net->grads) return cnn_error(net->ctx, CNN_ERR_MISUSE, "cnn_net_check_gradients: no gradients (compile for training)");
    for (size_t t = 0; t < net->n_tensors; t++) {
        const net_tensor *T = &net->tensors[t];
        if (!T->d.trainable) continue;
        const float *g = net->grads + T->offset;
        size_t k = first_nonfinite(g, T->count);
        if (k < T->count)
            return cnn_error(net->ctx, CNN_ERR_NUMERIC, "the gradient of %s is %s first, at element %zu", T->name,
                             isnan(g[k]) ? "NaN" : "infinite", k);
    }
    return CNN_OK;
}
