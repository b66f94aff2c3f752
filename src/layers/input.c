/* input.c — the network input: `input c=C h=H w=W`, samples NCHW. Forward copies the caller's batch into
 * the network's first activation buffer, so every later layer reads network-owned memory. */
#include "layer.h"

#include <string.h>

typedef struct input_params {
    size_t c, h, w;
} input_params;

static cnn_status input_parse(struct cnn_kv *kv, void *params) {
    input_params *p = params;
    cnn_status st = CNN_OK;
    int pc = 0, ph = 0, pw = 0;
    CNN_TRY(cnn_kv_size(kv, "c", 1, 1u << 20, &p->c, &pc));
    CNN_TRY(cnn_kv_size(kv, "h", 1, 1u << 20, &p->h, &ph));
    CNN_TRY(cnn_kv_size(kv, "w", 1, 1u << 20, &p->w, &pw));
    if (!pc || !ph || !pw)
        return cnn_kv_error(kv, NULL, "needs c=, h= and w= (channels, height, width of one sample)");
cleanup:
    return st;
}

static void input_print(const void *params, cnn_strbuf *out) {
    const input_params *p = params;
    cnn_strbuf_printf(out, " c=%zu h=%zu w=%zu", p->c, p->h, p->w);
}

static cnn_status input_shape(cnn_layer *L) {
    const input_params *p = L->params;
    L->out.c = p->c;
    L->out.h = p->h;
    L->out.w = p->w;
    return CNN_OK;
}

static void input_sizes(const cnn_layer *L, cnn_layer_sizes *s) {
    (void)L;
    s->flops = 0;
}

static void input_forward(const cnn_layer_run *r) {
    size_t count = r->L->out.c * r->L->out.h * r->L->out.w * r->n;
    memcpy(r->y, r->x[0], count * sizeof(float));
}

const struct cnn_layer_ops cnn_layer_input = {
    .name = "input",
    .min_inputs = 0,
    .max_inputs = 0,
    .params_size = sizeof(input_params),
    .parse = input_parse,
    .print = input_print,
    .shape = input_shape,
    .sizes = input_sizes,
    .forward = input_forward,
};
