/* layer.h — the contract between the network (src/core/net.c) and one layer type (src/layers/<type>.c).
 *
 * Life of a layer
 *   parse    model text keys -> the layer's params struct (L->params, params_size bytes, zeroed first).
 *            Common keys (name=, from=, init=) are handled by the network; the layer reads its own with the
 *            cnn_kv_* helpers, which report file:line:col. Unread keys are an error afterwards.
 *   print    appends " key=value" for its params (all that differ from defaults, or all), so that the
 *            printed model text parses to the same layer.
 *   shape    L->in[0..n_inputs) are set; check them and set L->out; errors through cnn_layer_error.
 *   sizes    after shape: the parameter tensors (trainable and buffers), saved bytes per sample, workspace
 *            floats per thread, FLOPs per sample.
 *   forward / backward_data / backward_weights   on a struct cnn_layer_run; no allocation, no errors.
 *
 * Memory: every x, y, dx, dy is n * count(shape) floats, NCHW, 64-byte aligned. Parameters of a layer are
 * contiguous in the order `sizes` declared them: r->w points to the first trainable tensor, r->dw to its
 * gradient (same layout), r->buf to the first buffer (non-trainable tensor, e.g. running statistics).
 */
#ifndef CNN_LAYER_H
#define CNN_LAYER_H

#include "../core/internal.h"

struct cnn_layer;
struct cnn_kv;

#define CNN_MAX_TENSORS 4

typedef enum cnn_tensor_role {
    CNN_ROLE_WEIGHT = 0, /* initialised by the chosen method from fan_in/fan_out */
    CNN_ROLE_BIAS,       /* PyTorch default: U(+-1/sqrt(fan_in)); zeros for kaiming/xavier */
    CNN_ROLE_ONES,       /* e.g. batchnorm weight, running_var */
    CNN_ROLE_ZEROS       /* e.g. batchnorm bias, running_mean */
} cnn_tensor_role;

typedef struct cnn_tensor_desc {
    const char *suffix; /* "weight", "bias", "running_mean", "running_var" */
    size_t ndim;
    size_t dims[4];
    int trainable;      /* 0: a buffer (not updated by optimizers, no gradient) */
    cnn_tensor_role role;
    size_t fan_in, fan_out;
} cnn_tensor_desc;

typedef struct cnn_layer_sizes {
    size_t n_tensors;
    cnn_tensor_desc tensors[CNN_MAX_TENSORS]; /* trainable ones first, then buffers */
    size_t saved_per_sample;  /* bytes kept from forward to backward, per sample (training only) */
    size_t saved_fixed;       /* bytes kept from forward to backward, independent of batch */
    size_t ws_per_thread;     /* floats of scratch per thread (forward and backward) */
    uint64_t flops;           /* forward FLOPs per sample */
    const char *algorithm;    /* e.g. "im2col+gemm"; NULL for none */
    const char *wgrad_algorithm; /* conv2d: "blocked" where the weight gradient is not the algorithm's own */
} cnn_layer_sizes;

/* Everything one pass needs. */
typedef struct cnn_layer_run {
    const struct cnn_layer *L;
    cnn_ctx *ctx;          /* ctx->threads, ctx->kernels; use cnn_pool_for for threads */
    size_t n;              /* samples in this batch */
    int training;
    const float *x[CNN_MAX_INPUTS];
    float *y;
    const float *w;        /* trainable parameters of this layer (NULL if none) */
    float *dw;             /* their gradients: backward_weights overwrites (NULL if none) */
    float *buf;            /* buffers (running statistics); forward may update them in training */
    const float *dy;       /* backward: gradient w.r.t. y */
    float *dx[CNN_MAX_INPUTS]; /* backward_data: gradient w.r.t. x[i]; NULL when not needed */
    int dx_accumulate[CNN_MAX_INPUTS]; /* nonzero: add to dx[i] (several consumers) instead of storing */
    void *saved;           /* saved_fixed + n * saved_per_sample bytes, 64-byte aligned */
    float *ws;             /* ctx->threads * ws_stride floats; thread t uses ws + t * ws_stride */
    size_t ws_stride;      /* >= ws_per_thread, multiple of 16 */
    size_t ws_regions;     /* regions of ws_stride floats allocated: the threads the net was compiled for, which
                              may exceed ctx->threads (batch lane 0 runs on a one-thread context) */
    uint64_t seed;         /* per-step seed for stochastic layers (use cnn_hash64(seed, element)) */
    size_t sample0;        /* index of sample 0 of this pass in the whole batch (batch lanes split it; else 0):
                              stochastic layers key their elements on it so a lane draws what the whole
                              batch would */
} cnn_layer_run;

struct cnn_layer_ops {
    const char *name;       /* keyword in model text */
    size_t min_inputs, max_inputs; /* the input layer has 0, 0 */
    size_t params_size;     /* bytes of the params struct parse fills */
    int is_loss;            /* the last layer; see loss */
    cnn_status (*parse)(struct cnn_kv *kv, void *params);
    void (*print)(const void *params, cnn_strbuf *out);
    cnn_status (*shape)(struct cnn_layer *L);
    void (*sizes)(const struct cnn_layer *L, cnn_layer_sizes *s);
    void (*forward)(const cnn_layer_run *r);
    void (*backward_data)(const cnn_layer_run *r);    /* NULL: no input gradient (e.g. input) */
    void (*backward_weights)(const cnn_layer_run *r); /* NULL: no parameters */
    /* Loss layers: from the forward output r->y (and r->x[0]) and the targets, write d(mean loss)/dx into
     * dx (n * count(in[0]) floats, overwrite), return the mean loss, count correct predictions. */
    double (*loss)(const cnn_layer_run *r, const int32_t *labels, const float *targets, float *dx,
                   size_t *correct);
};

typedef struct cnn_layer {
    const struct cnn_layer_ops *ops;
    char name[CNN_NAME_MAX];
    size_t n_inputs;
    size_t inputs[CNN_MAX_INPUTS]; /* indices of the producing layers (earlier in the net) */
    cnn_shape in[CNN_MAX_INPUTS];
    cnn_shape out;
    void *params;                 /* ops->params_size bytes */
    cnn_init init;                /* init= key, CNN_INIT_DEFAULT if absent */
    const char *origin;           /* file name for messages */
    size_t line;                  /* 1-based line in the model text (0 if built in code) */
    cnn_ctx *ctx;
    cnn_layer_sizes sizes;        /* filled after shape */
} cnn_layer;

/* Report an error about layer L: "<origin>:<line>: <type> '<name>': <message>". Returns s. */
cnn_status cnn_layer_error(const cnn_layer *L, cnn_status s, const char *fmt, ...) CNN_PRINTF(3, 4);

/* ---- key=value access for parse callbacks ----
 * Each getter returns CNN_OK and leaves *out untouched when the key is absent (so set defaults first),
 * CNN_ERR_FORMAT with "<origin>:<line>:<col>: ..." when the value is malformed or out of range.
 * *present (may be NULL) tells whether the key was given. */
cnn_status cnn_kv_int(struct cnn_kv *kv, const char *key, long min, long max, long *out, int *present);
cnn_status cnn_kv_size(struct cnn_kv *kv, const char *key, size_t min, size_t max, size_t *out, int *present);
cnn_status cnn_kv_float(struct cnn_kv *kv, const char *key, double min, double max, double *out, int *present);
cnn_status cnn_kv_bool(struct cnn_kv *kv, const char *key, int *out, int *present);
/* Value as a string (not NUL-terminated: *len bytes). */
cnn_status cnn_kv_str(struct cnn_kv *kv, const char *key, const char **val, size_t *len, int *present);
/* Value is one of `choices` (NULL-terminated); *out is its index. */
cnn_status cnn_kv_enum(struct cnn_kv *kv, const char *key, const char *const *choices, int *out, int *present);
/* An error at the position of key's value (or of the layer keyword when key is NULL). */
cnn_status cnn_kv_error(struct cnn_kv *kv, const char *key, const char *fmt, ...) CNN_PRINTF(3, 4);

/* The registry (src/layers/layers.inc): CNN_LAYER(symbol) for each `const struct cnn_layer_ops symbol`. */
#define CNN_LAYER(sym) extern const struct cnn_layer_ops sym;
#include "layers.inc"
#undef CNN_LAYER
const struct cnn_layer_ops *cnn_layer_ops_find(const char *name, size_t len);

#endif
