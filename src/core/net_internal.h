/* net_internal.h — the network object, shared by net.c, model_text.c and the IO code. */
#ifndef CNN_NET_INTERNAL_H
#define CNN_NET_INTERNAL_H

#include "../layers/layer.h"

typedef struct net_tensor {
    char name[2 * CNN_NAME_MAX];
    size_t layer;
    cnn_tensor_desc d;
    size_t count;
    size_t offset; /* floats into params (trainable) or buffers (not trainable) */
} net_tensor;

typedef struct net_layer_rt {
    size_t w_off, w_count;     /* trainable floats of this layer in net->params */
    size_t buf_off, buf_count; /* buffer floats in net->buffers */
    size_t consumers;          /* layers reading this layer's output */
    size_t last_use;           /* index of the last consumer (inference liveness) */
    float *y;                  /* output activations (max_batch samples) */
    float *dy;                 /* gradient w.r.t. y (training) */
    void *saved;               /* forward -> backward state (training) */
    int dy_written;            /* during backward: dy holds a gradient */
    /* set by compile (see "Aliases and fusion" in net.c) */
    size_t alias;              /* SIZE_MAX, or the input layer whose y and dy buffers this output shares */
    int skip;                  /* forward and backward are not run (flatten as a view, relu fused,
                                  batchnorm folded) */
    /* inference compile (see "Batchnorm folding" in net.c): a conv2d's weight block (fold.h) and the
     * batchnorm folded into it */
    float *wblock;             /* NULL: the forward reads the parameters */
    size_t fold_bn;            /* SIZE_MAX, or the batchnorm layer folded into this conv */
} net_layer_rt;

struct cnn_net {
    cnn_ctx *ctx;
    char origin[256];
    size_t n_layers;
    cnn_layer *layers;
    net_layer_rt *rt;
    size_t n_tensors;
    net_tensor *tensors;
    size_t n_params, n_buffers; /* floats in the arenas (with alignment padding) */
    size_t trainable_scalars;
    float *params, *buffers, *grads;
    /* compile state */
    int compiled;
    unsigned flags;
    size_t max_batch;
    size_t compiled_threads;
    void *act_arena;  /* activations, gradients, saved state */
    float *ws;
    size_t ws_stride;
    /* pass state */
    size_t last_n;
    int last_training;
    int loss_ready;   /* cnn_net_loss prepared the gradient for backward */
    int have_backward; /* a backward ran since the last forward */
    uint64_t seed, step;
    size_t sample0;   /* batch lanes (lanes.c): the index of this pass's first sample in the whole batch */
    const float *input_ptr;
    int no_fuse;      /* tests: compile without aliases and fusion (the plain plan) */
    int no_fold;      /* tests: compile without batchnorm folding (also CNN_FOLD=0 in the environment) */
    /* inference weight blocks (net.c "Batchnorm folding"): one allocation; remade from the parameters by
     * the first forward after param_gen moved (a call that may have changed parameter values bumps it) */
    float *infer_arena;
    double *fold_scratch;      /* 2 * (largest folded K) doubles: scale, shift */
    uint64_t param_gen, block_gen;
    /* gradient-ready hook (src/dist, data-parallel training; NULL: none): during cnn_net_backward, called
     * once per layer with trainable parameters as soon as that layer's parameter gradients are final, in
     * reverse layer order, with the layer's block of the gradient arena (grads + w_off, w_count floats). The
     * net does not know what the hook does (it starts an allreduce). */
    void (*grad_hook)(void *user, size_t layer, float *grad, size_t count);
    void *grad_hook_user;
    cnn_recipe recipe; /* the model text's `recipe` line (src/core/recipe.c); set == 0 when none */
    /* class names in label order (cnn_net_set_class_names): one cnn_mem block of n + 1 pointers (the last
     * NULL) and the texts; the weight and checkpoint writers store them as metadata "cnn.classes" */
    char **class_names;
    size_t n_class_names;
};

/* Evaluation (net.c), shared by cnn_net_evaluate, cnn_net_evaluate_tta (augment.c) and cnn_dist_evaluate
 * (ddp.c). eval_check: compiled, ends in softmax_ce, the dataset's shape and classes fit (what names the
 * caller in errors). eval_sums: adds samples [b0, b1) of ds in batches of `batch` (0 or too large: the
 * compiled batch) to acc[0] (loss sum), acc[1] (correct) and acc[2 + true * classes + predicted]; plain
 * forward and the layer's loss, or (tta) the flip-averaged probabilities and their negative log-likelihood.
 * eval_result: out from such sums over `total` samples (confusion allocated with the context).
 * evaluate_mode: the three over the whole dataset. */
cnn_status cnn_net_eval_check(cnn_net *net, const cnn_dataset *ds, const char *what);
cnn_status cnn_net_eval_sums(cnn_net *net, const cnn_dataset *ds, size_t b0, size_t b1, size_t batch, int tta,
                             double *acc);
cnn_status cnn_net_eval_result(cnn_net *net, const double *acc, size_t total, cnn_eval_result *out);
cnn_status cnn_net_evaluate_mode(cnn_net *net, const cnn_dataset *ds, size_t batch, int tta, cnn_eval_result *out,
                                 const char *what);

/* The checks cnn_net_forward makes of x and cnn_net_loss of labels / targets, for a whole batch of n
 * samples before it is split over batch lanes (lanes.c), with the same messages; *phase (may be NULL) gets
 * "forward" or "loss", the pass whose check failed. */
/* The first layer (network order) whose kept output of the last forward holds a NaN or an infinity, and
 * (elem, may be NULL) the element's index in it; SIZE_MAX when none (cnn_net_check_activations' scan). */
size_t cnn_net_first_nonfinite_output(const cnn_net *net, size_t *elem);
cnn_status cnn_net_check_batch(cnn_net *net, const float *x, const int32_t *labels, const float *targets, size_t n,
                               const char **phase);

/* Build a net from layers whose ops, names, inputs, params, init, origin, line are set (model_text.c).
 * Takes ownership of `layers` (and their params) in every case. Infers shapes, registers parameters,
 * allocates and initialises them (seed 0). */
cnn_status cnn_net_build(cnn_ctx *ctx, cnn_layer *layers, size_t n, const char *origin, cnn_net **out);
const char *cnn_init_name(cnn_init m);
/* The recipe line (src/core/recipe.c): read the keys of a tokenized `recipe` line; parse one line of text. */
cnn_status cnn_recipe_parse_kv(cnn_ctx *ctx, struct cnn_kv *kv, cnn_recipe *r, size_t line);
cnn_status cnn_recipe_parse_line(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_recipe *out);

#endif
