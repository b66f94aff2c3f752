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

#include <stdint.h>
#include <string.h>

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
