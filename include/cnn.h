/* cnn.h — public API of libcnn: define, train, evaluate and run convolutional neural networks in C.
 *
 * Conventions
 *   - Every fallible call returns a cnn_status. On failure the message is kept in the context
 *     (cnn_ctx_last_error) and out-parameters are set to NULL/0; no half-built objects come back.
 *   - Destructors (_free) accept NULL.
 *   - Tensors are float32, NCHW, batch-major and contiguous. A per-sample shape is (c, h, w); dense outputs
 *     are (features, 1, 1).
 *   - A context and the objects made from it are used by one thread at a time; separate contexts are
 *     independent.
 *   - The library never prints and never exits.
 */
#ifndef CNN_H
#define CNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define CNN_VERSION_MAJOR 0
#define CNN_VERSION_MINOR 1
#define CNN_VERSION_PATCH 0

/* ---- status codes (append-only; the list lives in src/core/status.inc) ---- */
typedef enum cnn_status {
#define CNN_STATUS(sym, val, text) sym = val,
#include "cnn_status.inc"
#undef CNN_STATUS
    CNN_STATUS_COUNT_
} cnn_status;

const char *cnn_status_string(cnn_status s);
const char *cnn_version_string(void);

/* ---- context ---- */
typedef struct cnn_ctx cnn_ctx;

typedef struct cnn_allocator {
    void *(*alloc)(void *user, size_t size, size_t alignment); /* returns NULL on failure */
    void (*free)(void *user, void *ptr);
    void *user;
} cnn_allocator;

typedef struct cnn_ctx_options {
    size_t threads;               /* 0: number of online CPUs */
    const cnn_allocator *allocator; /* NULL: aligned malloc */
} cnn_ctx_options;

cnn_ctx_options cnn_ctx_options_default(void);
cnn_status cnn_ctx_create(cnn_ctx **out, const cnn_ctx_options *opt /* NULL: defaults */);
void cnn_ctx_free(cnn_ctx *ctx);
/* The message of the last failure in this context ("" when none). Valid until the next call. */
const char *cnn_ctx_last_error(const cnn_ctx *ctx);
size_t cnn_ctx_threads(const cnn_ctx *ctx);
cnn_status cnn_ctx_set_threads(cnn_ctx *ctx, size_t threads);
/* Name of the instruction set the kernels run on ("scalar", "avx2", ...). CNN_ISA in the environment
 * (scalar|avx2|avx512) restricts it when the context is created. */
const char *cnn_ctx_isa(const cnn_ctx *ctx);
/* A cap on the bytes the context's objects may hold at once (networks, activations, datasets, optimizer
 * state); 0 (the default) means none. An allocation past it fails with CNN_ERR_NOMEM and a message naming
 * the limit. In use and peak count every allocation made through the context since it was created. */
cnn_status cnn_ctx_set_memory_limit(cnn_ctx *ctx, size_t bytes);
size_t cnn_ctx_memory_in_use(const cnn_ctx *ctx);
size_t cnn_ctx_memory_peak(const cnn_ctx *ctx);
/* Memory from the context's allocator (64-byte aligned); for buffers the library hands out. */
void *cnn_alloc(cnn_ctx *ctx, size_t size);
void cnn_free(cnn_ctx *ctx, void *ptr);

/* ---- shapes ---- */
typedef struct cnn_shape {
    size_t c, h, w;
} cnn_shape;

/* ---- networks ---- */
typedef struct cnn_net cnn_net;

/* Parse model text (see docs/formats.md). `origin` names the text in messages ("model.cnn"). */
cnn_status cnn_net_parse(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_net **out);
cnn_status cnn_net_load(cnn_ctx *ctx, const char *path, cnn_net **out);
void cnn_net_free(cnn_net *net);
/* Model text equivalent in meaning to what was parsed; *out is from cnn_alloc (free with cnn_free). */
cnn_status cnn_net_to_text(const cnn_net *net, char **out);

size_t cnn_net_num_layers(const cnn_net *net);
cnn_shape cnn_net_input_shape(const cnn_net *net);
cnn_shape cnn_net_output_shape(const cnn_net *net);
/* Whether the last layer is a loss (softmax_ce, mse). */
int cnn_net_has_loss(const cnn_net *net);

typedef struct cnn_layer_info {
    const char *name;       /* unique layer name */
    const char *type;       /* keyword in model text */
    cnn_shape out;          /* per-sample output shape */
    size_t n_inputs;
    const char *inputs[8];  /* names of input layers */
    size_t params;          /* trainable parameters */
    uint64_t flops;         /* forward FLOPs per sample (multiply-add = 2) */
    const char *algorithm;  /* convolution algorithm, or "" */
    const char *wgrad_algorithm; /* conv2d: the weight gradient's algorithm where it is not the layer's own
                                    ("blocked", conv2d wgrad=), else "" */
} cnn_layer_info;
cnn_status cnn_net_layer_info(const cnn_net *net, size_t i, cnn_layer_info *info);

enum {
    CNN_COMPILE_TRAIN = 1u << 0,      /* keep activations, allocate gradients */
    CNN_COMPILE_INPUT_GRAD = 1u << 1  /* also compute the gradient w.r.t. the network input */
};
/* Plan memory and choose kernels for batches up to max_batch. Parameters are allocated and initialised
 * (seed 0) on the first compile; a later compile keeps their values. */
cnn_status cnn_net_compile(cnn_net *net, size_t max_batch, unsigned flags);
/* Activation memory in bytes that a compile with these arguments plans (without compiling). */
cnn_status cnn_net_activation_bytes(const cnn_net *net, size_t batch, unsigned flags, size_t *bytes);

typedef enum cnn_init {
    CNN_INIT_DEFAULT = 0,   /* each layer's own choice (init= key), PyTorch's default otherwise */
    CNN_INIT_PYTORCH,       /* kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) bias */
    CNN_INIT_KAIMING_UNIFORM,
    CNN_INIT_KAIMING_NORMAL,
    CNN_INIT_XAVIER_UNIFORM,
    CNN_INIT_XAVIER_NORMAL
} cnn_init;
/* (Re)initialise all parameters and buffers from a seed. Requires a compiled net. */
cnn_status cnn_net_init_params(cnn_net *net, uint64_t seed, cnn_init method);

/* Forward pass over n <= max_batch samples (x: n*c*h*w floats). training != 0: batch statistics,
 * dropout active, activations kept for backward (needs CNN_COMPILE_TRAIN). */
cnn_status cnn_net_forward(cnn_net *net, const float *x, size_t n, int training);
/* Output of the last forward: n * out.c*out.h*out.w floats (probabilities for softmax_ce). */
const float *cnn_net_output(const cnn_net *net, size_t *n);

typedef struct cnn_loss_stats {
    double loss;    /* mean over the batch */
    size_t correct; /* argmax == label (classification losses) */
    size_t n;
} cnn_loss_stats;
/* Loss of the last forward. labels: n class indices (softmax_ce); targets: n*outputs floats (mse).
 * Also prepares the gradient for cnn_net_backward(net, NULL). */
cnn_status cnn_net_loss(cnn_net *net, const int32_t *labels, const float *targets, cnn_loss_stats *out);
/* Backward pass of the last training forward. dy: gradient w.r.t. the network output (n * outputs), or
 * NULL to start from the loss computed by cnn_net_loss. Parameter gradients are overwritten. */
cnn_status cnn_net_backward(cnn_net *net, const float *dy);
/* Gradient w.r.t. the input of the last backward (needs CNN_COMPILE_INPUT_GRAD), else NULL. */
const float *cnn_net_input_grad(const cnn_net *net);
/* Re-run one pass of one layer on the buffers the last training forward and backward left (benchmarks and
 * profiling). Backward passes need a backward first; backward-data overwrites the input gradients. After an
 * inference forward, forward passes only: an inference network may reuse a layer's buffers for later
 * layers, so the re-run reads whatever they hold (for timing, not for values). */
typedef enum cnn_pass { CNN_PASS_FORWARD = 0, CNN_PASS_BACKWARD_DATA, CNN_PASS_BACKWARD_WEIGHTS } cnn_pass;
cnn_status cnn_net_run_layer(cnn_net *net, size_t layer, cnn_pass pass);
/* Deterministic seed for dropout and other stochastic layers; advanced by every training forward. */
void cnn_net_set_seed(cnn_net *net, uint64_t seed);

/* ---- parameters (PyTorch names and layouts: conv OIHW, dense [out, in]) ---- */
typedef struct cnn_param {
    const char *name;   /* "<layer>.weight", "<layer>.bias", "<layer>.running_mean", ... */
    float *data;
    float *grad;        /* NULL for buffers (running statistics) */
    size_t ndim;
    size_t dims[4];
    size_t count;
    int trainable;
} cnn_param;
size_t cnn_net_num_params(const cnn_net *net);     /* tensors (trainable and buffers) */
size_t cnn_net_param_count(const cnn_net *net);    /* trainable scalars */
cnn_status cnn_net_param_at(const cnn_net *net, size_t i, cnn_param *out);
cnn_status cnn_net_param_find(const cnn_net *net, const char *name, cnn_param *out);

/* ---- weights files (safetensors) ---- */
cnn_status cnn_net_save_weights(cnn_net *net, const char *path);
cnn_status cnn_net_load_weights(cnn_net *net, const char *path);

/* ---- batch lanes: data parallelism across the threads of one process (src/core/lanes.c) ----
 * A training step (forward, loss, backward) in which each of `lanes` threads runs the whole network on its
 * own contiguous share of the batch, instead of every layer splitting its work over the threads. On few
 * cores and small layers it is faster (docs/kernels.md "Threads"). Batchnorm layers use the statistics of
 * the whole batch and the parameter gradients are the mean over the whole batch, as in one pass; dropout
 * masks are the same. The float sums run in another order, so results depend on the lane count
 * (deterministic for a given count).
 * create: net compiled with CNN_COMPILE_TRAIN for B >= lanes samples, ending in a loss layer; makes lanes-1
 *         copies of it (own contexts, one thread each, compiled for ceil(B / lanes)) that read net's
 *         parameters. Compile net again only after freeing the lanes. Not with data-parallel ranks'
 *         synchronised batchnorm (cnn_dist with sync_bn).
 * step:   the gradients of the whole batch in net's gradient arena, ready for cnn_optimizer_step; *out as
 *         cnn_net_loss gives (mean loss over the n samples). On failure *phase (may be NULL) names the pass
 *         ("forward", "loss", "backward") and the message names the lane's samples where it matters. After
 *         a step, cnn_net_output and the activations of net are those of lane 0's share only.
 * memory: bytes the copies and their contexts hold (not counted in net's context). */
#define CNN_LANES_MAX 64
typedef struct cnn_lanes cnn_lanes;
cnn_status cnn_lanes_create(cnn_net *net, size_t lanes, cnn_lanes **out);
cnn_status cnn_lanes_step(cnn_lanes *l, const float *x, const int32_t *labels, const float *targets, size_t n,
                          cnn_loss_stats *out, const char **phase);
size_t cnn_lanes_count(const cnn_lanes *l);
size_t cnn_lanes_memory(const cnn_lanes *l);
void cnn_lanes_free(cnn_lanes *l);

/* ---- optimizers and schedules ---- */
typedef enum cnn_optimizer_kind { CNN_OPT_SGD = 0, CNN_OPT_ADAM, CNN_OPT_ADAMW } cnn_optimizer_kind;
typedef struct cnn_optimizer_options {
    cnn_optimizer_kind kind;
    float lr;
    float momentum;      /* SGD */
    int nesterov;        /* SGD */
    float weight_decay;  /* SGD, Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2, eps; /* Adam, AdamW */
} cnn_optimizer_options;
cnn_optimizer_options cnn_optimizer_options_default(cnn_optimizer_kind kind);

typedef struct cnn_optimizer cnn_optimizer;
cnn_status cnn_optimizer_create(cnn_net *net, const cnn_optimizer_options *opt, cnn_optimizer **out);
void cnn_optimizer_free(cnn_optimizer *opt);
/* One update of all trainable parameters from their gradients, at learning rate lr. */
cnn_status cnn_optimizer_step(cnn_optimizer *opt, float lr);
uint64_t cnn_optimizer_steps(const cnn_optimizer *opt);

typedef enum cnn_schedule_kind { CNN_SCHED_CONSTANT = 0, CNN_SCHED_STEP, CNN_SCHED_COSINE } cnn_schedule_kind;
typedef struct cnn_schedule {
    cnn_schedule_kind kind;
    float base_lr;
    double warmup_steps;  /* linear warmup from 0 over this many steps */
    double total_steps;   /* cosine: decays to min_lr at total_steps */
    double step_size;     /* step: multiply by gamma every step_size steps */
    float gamma;
    float min_lr;
} cnn_schedule;
/* Learning rate for optimizer step `step` (0-based). */
float cnn_schedule_lr(const cnn_schedule *s, double step);

/* ---- datasets ---- */
typedef struct cnn_dataset cnn_dataset;
/* IDX image and label files (MNIST style), raw or gzip. */
cnn_status cnn_dataset_load_idx(cnn_ctx *ctx, const char *images_path, const char *labels_path,
                                cnn_dataset **out);
/* A folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or CIFAR-10 data_batch_{1..5}.bin and
 * test_batch.bin (also in a cifar-10-batches-bin/ subfolder); split is "train" or "test". */
cnn_status cnn_dataset_load_dir(cnn_ctx *ctx, const char *dir, const char *split, cnn_dataset **out);
/* A dataset from memory: n samples of shape, pixels already scaled; copied. */
cnn_status cnn_dataset_from_memory(cnn_ctx *ctx, const float *x, const int32_t *labels, size_t n,
                                   cnn_shape shape, size_t classes, cnn_dataset **out);
void cnn_dataset_free(cnn_dataset *ds);
size_t cnn_dataset_size(const cnn_dataset *ds);
cnn_shape cnn_dataset_shape(const cnn_dataset *ds);
size_t cnn_dataset_classes(const cnn_dataset *ds);
/* Per-channel normalisation x' = (x - mean) / std applied when batches are made. */
cnn_status cnn_dataset_set_normalization(cnn_dataset *ds, const float *mean, const float *std, size_t channels);
/* Copy samples idx[0..n) into x (n*c*h*w floats, [0,1] scaled, normalised) and labels. */
cnn_status cnn_dataset_gather(const cnn_dataset *ds, const size_t *idx, size_t n, float *x, int32_t *labels);
/* Fisher-Yates permutation of 0..n-1 from a seed (the order of one epoch). */
void cnn_shuffle_indices(size_t *idx, size_t n, uint64_t seed);

/* ---- convenience: evaluation ---- */
typedef struct cnn_eval_result {
    double loss;
    double accuracy;
    size_t n;
    size_t classes;
    size_t *confusion; /* classes*classes, row = true label, column = predicted; from cnn_alloc */
} cnn_eval_result;
/* Evaluate on a whole dataset in batches (compiled net with a loss layer). */
cnn_status cnn_net_evaluate(cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out);

/* ---- benchmarks (src/core/bench.c; `cnn bench`, docs/bench.md) ---- */
/* The roof: multiply-add throughput of a register-resident FMA loop on the ISA this context runs
 * (cnn_ctx_isa), one copy per thread on `threads` threads (0: the context's), for about `seconds` in all.
 * *gflops gets the best of several timed rounds, in GFLOP/s (a multiply-add counts 2). */
cnn_status cnn_bench_peak(cnn_ctx *ctx, size_t threads, double seconds, double *gflops);
/* Row-major SGEMM on the context's kernels and threads: C[m,n] = alpha * op(A) * op(B) + beta * C, where
 * op(A) is A [m,k] (lda >= k) or, with trans_a, A^T of A [k,m] (lda >= m); likewise op(B) [k,n] (ldb >= n)
 * or B^T of B [n,k] (ldb >= k); ldc >= n. beta == 0 overwrites C without reading it. The result does not
 * depend on the thread count. */
cnn_status cnn_sgemm(cnn_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                     const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);

/* ==== ONNX: import, run, export (src/io/onnx_*.c; docs/onnx.md) ====
 * Built when protobuf-c and onnx.proto were found at build time (cnn_onnx_available() != 0); otherwise every
 * call below returns CNN_ERR_UNSUPPORTED. */
#define CNN_ONNX_MAX_DIMS 8
#define CNN_ONNX_NAME_MAX 128
/* One tensor, converted to float32 (ONNX TensorProto files such as test_data_set_0/input_0.pb). */
typedef struct cnn_onnx_tensor {
    char name[CNN_ONNX_NAME_MAX]; /* TensorProto.name, "" when none (truncated if longer) */
    int32_t dtype;                /* ONNX element type it was stored as: 1 FLOAT, 7 INT64, 11 DOUBLE, ... */
    size_t ndim;                  /* 0 for a scalar */
    int64_t dims[CNN_ONNX_MAX_DIMS];
    size_t count;                 /* product of dims (1 for a scalar) */
    float *data;                  /* count floats from cnn_alloc (NULL when count is 0) */
} cnn_onnx_tensor;
int cnn_onnx_available(void);
/* Read a serialized TensorProto. On failure *out is zeroed. */
cnn_status cnn_onnx_tensor_read(cnn_ctx *ctx, const char *path, cnn_onnx_tensor *out);
/* Write t as a FLOAT TensorProto (raw_data, little-endian). */
cnn_status cnn_onnx_tensor_write(cnn_ctx *ctx, const char *path, const cnn_onnx_tensor *t);
/* Free t->data and zero t (NULL or an already released tensor is a no-op). */
void cnn_onnx_tensor_release(cnn_ctx *ctx, cnn_onnx_tensor *t);

/* The graph's data input and output as ONNX sees them (dims[0] is the batch; 0 where the graph leaves a
 * dimension symbolic). */
typedef struct cnn_onnx_io {
    char input_name[CNN_ONNX_NAME_MAX], output_name[CNN_ONNX_NAME_MAX];
    size_t input_ndim, output_ndim;
    int64_t input_dims[CNN_ONNX_MAX_DIMS], output_dims[CNN_ONNX_MAX_DIMS];
} cnn_onnx_io;
typedef struct cnn_onnx_import_options {
    /* Values for graph inputs, matched by name: those inputs become constants (weights that a model takes
     * as inputs, as ONNX backend tests do). An entry with an empty name binds by position: constants[k] is
     * the graph input k + 1 among those that are not initializers. The one graph input left is the
     * network's input. */
    const cnn_onnx_tensor *constants;
    size_t n_constants;
    /* Optional: a sample of the data input; its dims fix what the graph leaves symbolic. */
    const cnn_onnx_tensor *input;
    cnn_onnx_io *io; /* out (may be NULL) */
} cnn_onnx_import_options;
/* Import an ONNX model (opsets 1 to 17) as a network of the library's layers, compiled for inference with
 * max_batch = the input's batch dimension (1 when symbolic) and its weights set; recompile for other
 * batches (the weights are kept). An unsupported op, attribute, data type or external data is
 * CNN_ERR_UNSUPPORTED with a message naming the node; a malformed file CNN_ERR_FORMAT. */
cnn_status cnn_net_import_onnx(cnn_ctx *ctx, const char *path, cnn_net **out);
cnn_status cnn_net_import_onnx_ex(cnn_ctx *ctx, const char *path, const cnn_onnx_import_options *opt,
                                  cnn_net **out);
/* The same from bytes in memory; `origin` names them in messages. */
cnn_status cnn_net_import_onnx_memory(cnn_ctx *ctx, const void *data, size_t size, const char *origin,
                                      const cnn_onnx_import_options *opt, cnn_net **out);
/* Write the network (inference graph, weights as initializers) as an ONNX model, opset 13. Input "input"
 * [N, c, h, w] and output "output" ([N, features] for (features,1,1) outputs), N symbolic. A loss layer
 * is exported as what inference computes (softmax_ce: Softmax; mse: nothing). */
cnn_status cnn_net_export_onnx(cnn_net *net, const char *path);

/* ---- looking inside: layer activations (src/core/net_query.c; `cnn viz`, docs/viz.md) ---- */
enum {
    /* Compile flag (with or without CNN_COMPILE_TRAIN): every layer keeps its own output buffer after a
     * forward (an inference plan otherwise reuses buffers by liveness), at the cost of more memory. */
    CNN_COMPILE_KEEP_ACTIVATIONS = 1u << 2
};
/* Output of layer `layer` from the last forward: last_n * shape->c*h*w floats, NCHW; *shape gets the
 * per-sample shape. NULL (and *shape zeroed) when there was no forward, `layer` is out of range, or the
 * plan did not keep that layer's values: an inference compile without CNN_COMPILE_KEEP_ACTIVATIONS (every
 * layer but the last), or in training a relu fused into the following maxpool. Valid until the next
 * forward or compile. */
const float *cnn_net_layer_output(const cnn_net *net, size_t layer, cnn_shape *shape);
/* Index of the layer named `name`; SIZE_MAX when there is none. */
size_t cnn_net_layer_find(const cnn_net *net, const char *name);

/* ---- divergence guard (src/core/net_query.c) ----
 * After a training forward: CNN_OK when every kept layer output is finite, else CNN_ERR_NUMERIC with a
 * message naming the first layer (network order) whose output holds a NaN or an infinity, and where.
 * After a backward: the same for the parameter gradients, naming the first tensor. */
cnn_status cnn_net_check_activations(cnn_net *net);
cnn_status cnn_net_check_gradients(cnn_net *net);

/* ==== checkpoints: weights + optimizer state + training position (src/io/checkpoint.c; docs/formats.md) ====
 * A checkpoint is one safetensors file: every tensor of the net (as cnn_net_save_weights writes them), the
 * optimizer state as flat tensors over the parameter arena ("optim.momentum"; "optim.exp_avg",
 * "optim.exp_avg_sq"), and metadata: the model text ("cnn.model"), the position, the optimizer's kind,
 * options and step count, the net's dropout seed/step, and the caller's training arguments. Weights loaders
 * (cnn_net_load_weights) accept a checkpoint and ignore the "optim." tensors. Written atomically. */
typedef struct cnn_train_state {
    uint64_t epoch;        /* 0-based epoch training continues in */
    uint64_t batch;        /* batches of that epoch already done (0: start of the epoch) */
    uint64_t step;         /* optimizer steps so far */
    uint64_t seed;         /* the run's seed (shuffle order is a function of seed and epoch) */
    size_t n_args;         /* the caller's training arguments (e.g. the CLI's options), kept verbatim */
    const char *const *args; /* load: one cnn_alloc block (free with cnn_free(ctx, (void *)args)), or NULL */
} cnn_train_state;
/* Save net, optimizer (may be NULL: no optimizer state) and state (may be NULL: zeros) to path. */
cnn_status cnn_checkpoint_save(cnn_net *net, const cnn_optimizer *opt, const cnn_train_state *state,
                               const char *path);
/* The model text embedded in a checkpoint or weights file; *text from cnn_alloc (free with cnn_free). */
cnn_status cnn_checkpoint_read_model(cnn_ctx *ctx, const char *path, char **text);
/* The training position and arguments of a checkpoint (CNN_ERR_FORMAT for a plain weights file). */
cnn_status cnn_checkpoint_read_state(cnn_ctx *ctx, const char *path, cnn_train_state *state);
/* A net from a checkpoint or weights file with embedded model text: parsed, weights loaded, dropout RNG
 * restored (not compiled; a compile keeps the loaded values). */
cnn_status cnn_checkpoint_load(cnn_ctx *ctx, const char *path, cnn_net **out);
/* Restore the optimizer's state and step count from a checkpoint: its kind and parameter count must
 * match. Options (lr, ...) stay as opt was created. Nothing changes on failure. */
cnn_status cnn_checkpoint_load_optimizer(cnn_optimizer *opt, const char *path);

/* The pieces a checkpoint saves (src/core/optimizer.c, src/core/net_query.c). */
/* The optimizer's options; its state arrays (state[0]: SGD momentum or Adam exp_avg, state[1]: Adam
 * exp_avg_sq; NULL when not kept), each *count floats in the layout of the parameter arena. */
cnn_optimizer_options cnn_optimizer_get_options(const cnn_optimizer *opt);
void cnn_optimizer_state(cnn_optimizer *opt, float *state[2], size_t *count);
void cnn_optimizer_set_steps(cnn_optimizer *opt, uint64_t steps);
cnn_ctx *cnn_optimizer_ctx(const cnn_optimizer *opt);
/* The dropout RNG: seed and training forwards since cnn_net_set_seed. */
void cnn_net_get_rng(const cnn_net *net, uint64_t *seed, uint64_t *step);
void cnn_net_set_rng(cnn_net *net, uint64_t seed, uint64_t step);

/* ---- dataset kinds (issue 5, datasets) ---- */
/* What a dataset was loaded from: "idx" (MNIST-style IDX files), "cifar10" (CIFAR-10 binary batches),
 * "images" (image class folders), "list" (a list file), "memory" (cnn_dataset_from_memory); "" for NULL.
 * A static string. */
const char *cnn_dataset_kind(const cnn_dataset *ds);

/* ==== augment: augmentation, the batch loader with prefetch, test-time augmentation (issue 5) ====
 * (src/io/augment.c, src/io/loader.c; docs/cli.md "Augmentation")
 *
 * An augmentation spec is a comma-separated list of items, e.g. "crop=4,flip,erase=0.5":
 *   crop=P            pad every side with P zero pixels, then crop back to h x w at a random offset (0..2P)
 *   flip              horizontal flip with probability 0.5 (flip=Q: probability Q)
 *   erase=Q           random erasing (Zhong et al. 2017) with probability Q: a rectangle of area fraction
 *                     U(area) and aspect ratio h/w log-uniform in ratio, up to 10 tries to fit
 *   erase-area=A:B    area fraction range, 0 < A <= B <= 1 (default 0.02:0.4)
 *   erase-ratio=R:S   aspect ratio range, 0 < R <= S (default 0.3:3.3333)
 *   erase-fill=zero|random   fill with 0 (default) or uniform [0,1) values per element, before normalisation
 *   none              nothing (also the empty string)
 * The ops run in that order (crop, flip, erase) on the [0,1]-scaled pixels; normalisation comes after.
 * Every sample's random choices are a function of (seed, epoch, dataset index) only. */
typedef struct cnn_augment_spec {
    size_t crop_pad;           /* 0: no crop */
    float flip_p;              /* 0: no flip */
    float erase_p;             /* 0: no erasing */
    float erase_area_min, erase_area_max;
    float erase_ratio_min, erase_ratio_max;
    int erase_random;          /* 0: fill 0, 1: uniform [0,1) */
} cnn_augment_spec;
#define CNN_AUGMENT_MAX_PAD 64
/* Nothing enabled, erase ranges at their defaults. */
cnn_augment_spec cnn_augment_spec_default(void);
/* Parse a spec (NULL or "" gives the default). Errors (CNN_ERR_INVALID_ARG) name the item and its
 * 1-based column in text: "augmentation 'crop=x': column 1: crop=x: expected ...". */
cnn_status cnn_augment_parse(cnn_ctx *ctx, const char *text, cnn_augment_spec *out);
/* Canonical text of a spec ("none" when nothing is enabled) that parses back to the same spec; *out from
 * cnn_alloc (free with cnn_free). */
cnn_status cnn_augment_to_text(cnn_ctx *ctx, const cnn_augment_spec *spec, char **out);
/* Whether anything is enabled. */
int cnn_augment_enabled(const cnn_augment_spec *spec);

/* A batch loader over a dataset: the batches of every epoch in order (shuffled or not), augmented and
 * normalised, prepared ahead on a background thread when prefetch > 0. The batches are exactly those of
 * the synchronous path (prefetch 0) whatever the prefetch depth and the thread count. Epoch e's order is
 * cnn_shuffle_indices(..., cnn_loader_epoch_seed(seed, e)) over the positions of the sample list; the last
 * batch of an epoch may be partial. The dataset must outlive the loader and not change while it is used.
 * A context (and so the loader) is used by one thread at a time; the background thread never touches it. */
typedef struct cnn_loader cnn_loader;
typedef struct cnn_loader_options {
    size_t batch;              /* samples per batch (required, > 0) */
    int shuffle;               /* 1 (default): a new order every epoch; 0: list order */
    uint64_t seed;             /* shuffle order and augmentation */
    cnn_augment_spec augment;  /* default: none */
    const float *mean, *std;   /* per-channel normalisation after augmentation, (x - mean) / std; NULL: none */
    size_t channels;           /* entries in mean/std: the sample channels, or 1 for all */
    const size_t *indices;     /* the samples to draw from (copied); NULL: all of the dataset */
    size_t n_indices;
    size_t prefetch;           /* batches prepared ahead on a background thread (default 2); 0: none */
} cnn_loader_options;
cnn_loader_options cnn_loader_options_default(void);
/* The loader keeps ctx (its allocations and messages); ds should come from the same context. */
cnn_status cnn_loader_create(cnn_ctx *ctx, const cnn_dataset *ds, const cnn_loader_options *opt, cnn_loader **out);
/* Stops and joins the background thread. NULL is a no-op. */
void cnn_loader_free(cnn_loader *ld);
size_t cnn_loader_batches_per_epoch(const cnn_loader *ld);
size_t cnn_loader_size(const cnn_loader *ld); /* samples per epoch */
/* Continue at batch `batch` of epoch `epoch` (resume from a checkpoint): prefetched batches are dropped
 * (nothing happens when the loader is already there). batch must be < cnn_loader_batches_per_epoch. */
cnn_status cnn_loader_seek(cnn_loader *ld, uint64_t epoch, uint64_t batch);
/* The position the next call to cnn_loader_next returns. */
void cnn_loader_tell(const cnn_loader *ld, uint64_t *epoch, uint64_t *batch);
/* The next batch: x gets n * c*h*w floats, labels n labels (either may be NULL), *n the count (<= batch);
 * then the position advances (to the next epoch after its last batch). A failure on the background thread
 * is returned here, with its message, and the loader stays failed until a seek. */
cnn_status cnn_loader_next(cnn_loader *ld, float *x, int32_t *labels, size_t *n);
/* The shuffle seed of an epoch: splitmix64(splitmix64(seed) ^ epoch) (what cnn train always used). */
uint64_t cnn_loader_epoch_seed(uint64_t seed, uint64_t epoch);

/* Test-time augmentation by horizontal flip: probs gets n * outputs floats, the mean of the network's
 * output for x and for x flipped left-right ((a + b) / 2 in float). An inference forward twice (uses a
 * scratch batch from the context's allocator); after it, the net's output is the flipped forward's. */
cnn_status cnn_net_forward_tta(cnn_net *net, const float *x, size_t n, float *probs);
/* cnn_net_evaluate with cnn_net_forward_tta: accuracy by the argmax of the averaged probabilities, loss the
 * mean of -log(p[label]) of the averaged probabilities (floored at 1e-45). */
cnn_status cnn_net_evaluate_tta(cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out);

/* ==== part "recipe" (issue 5, training features): the recipe block, one-cycle schedule, gradient clipping,
 * label smoothing, EMA of the weights, validation split (src/core/recipe.c, src/core/ema.c; docs/formats.md
 * "Recipe") ==== */
/* A `recipe` line in the model text holds the training settings of the model: key=value items (see
 * docs/formats.md). `set` has one CNN_RECIPE_* bit per key given; only those fields are meaningful. */
enum {
    CNN_RECIPE_OPTIMIZER = 1u << 0, CNN_RECIPE_LR = 1u << 1, CNN_RECIPE_MOMENTUM = 1u << 2,
    CNN_RECIPE_NESTEROV = 1u << 3, CNN_RECIPE_WEIGHT_DECAY = 1u << 4, CNN_RECIPE_SCHEDULE = 1u << 5,
    CNN_RECIPE_WARMUP_EPOCHS = 1u << 6, CNN_RECIPE_STEP_EPOCHS = 1u << 7, CNN_RECIPE_GAMMA = 1u << 8,
    CNN_RECIPE_DIV_FACTOR = 1u << 9, CNN_RECIPE_FINAL_DIV_FACTOR = 1u << 10, CNN_RECIPE_EPOCHS = 1u << 11,
    CNN_RECIPE_BATCH = 1u << 12, CNN_RECIPE_SEED = 1u << 13, CNN_RECIPE_LABEL_SMOOTHING = 1u << 14,
    CNN_RECIPE_CLIP_NORM = 1u << 15, CNN_RECIPE_EMA = 1u << 16, CNN_RECIPE_VAL_SPLIT = 1u << 17,
    CNN_RECIPE_NORMALIZE = 1u << 18, CNN_RECIPE_AUGMENT = 1u << 19, CNN_RECIPE_TTA = 1u << 20,
    CNN_RECIPE_LANES = 1u << 21
};
/* The one-cycle schedule as a cnn_schedule_kind value (cnn_schedule_lr does not take it: cnn_onecycle_lr). */
enum { CNN_SCHED_ONECYCLE = 3 };
#define CNN_RECIPE_TEXT_MAX 256
typedef struct cnn_recipe {
    unsigned set;                /* CNN_RECIPE_* bits of the keys given */
    int optimizer;               /* cnn_optimizer_kind */
    double lr, momentum;
    int nesterov;
    double weight_decay;
    int schedule;                /* CNN_SCHED_CONSTANT, _STEP, _COSINE, CNN_SCHED_ONECYCLE */
    double warmup_epochs, step_epochs, gamma, div_factor, final_div_factor;
    uint64_t epochs, batch, seed;
    double label_smoothing, clip_norm, ema, val_split;
    char normalize[CNN_RECIPE_TEXT_MAX]; /* "MEAN,STD" */
    char augment[CNN_RECIPE_TEXT_MAX];   /* augmentation spec, as the CLI's --augment takes it */
    int tta;                     /* evaluate with horizontal-flip test-time augmentation */
    uint64_t lanes;              /* batch lanes of the training step (cnn_lanes_create; 0: one per thread) */
    size_t line;                 /* line of the recipe in the model text (0: none) */
} cnn_recipe;
/* The recipe of the model text the net was parsed from; out->set == 0 (and line 0) when it had none. */
cnn_status cnn_net_get_recipe(const cnn_net *net, cnn_recipe *out);
/* The recipe line of model text alone, without building the net (the line is checked as cnn_net_parse
 * checks it; the layers are not looked at). out->set == 0 when there is none. */
cnn_status cnn_recipe_parse(cnn_ctx *ctx, const char *text, size_t len, const char *origin, cnn_recipe *out);
/* Replace the net's recipe (printed by cnn_net_to_text, so saved in checkpoints); NULL or set == 0 removes
 * it. The values are checked as the parser checks them. */
cnn_status cnn_net_set_recipe(cnn_net *net, const cnn_recipe *r);
/* The items of r as model text, "key=value key=value ..." in the order of docs/formats.md, without the
 * leading "recipe" ("" when set == 0). Returns the length it needs (as snprintf); buf may be NULL if n is 0. */
size_t cnn_recipe_format(const cnn_recipe *r, char *buf, size_t n);
/* Key names: the i-th key (i < cnn_recipe_num_keys()) and its CNN_RECIPE_* bit. */
size_t cnn_recipe_num_keys(void);
const char *cnn_recipe_key(size_t i, unsigned *bit);

/* One-cycle learning rate (PyTorch's OneCycleLR with its default shape: anneal_strategy='cos',
 * three_phase=False): from initial = max_lr / div_factor, cosine up to max_lr at step warmup_steps - 1,
 * then cosine down to initial / final_div_factor at step total_steps - 1 (and after). warmup_steps <= 0
 * means PyTorch's pct_start 0.3: 0.3 * total_steps. Step counted from 0 (negative or NaN: 0). */
float cnn_onecycle_lr(double max_lr, double total_steps, double warmup_steps, double div_factor,
                      double final_div_factor, double step);

/* Gradient clipping by global norm: norm = sqrt(sum of the squares of every trainable gradient) (double,
 * a fixed summation order); when norm > max_norm every gradient is multiplied by max_norm / norm, so the
 * global norm becomes max_norm (to float rounding). *norm (may be NULL) gets the norm before clipping.
 * A non-finite norm leaves the gradients unchanged and returns CNN_ERR_NUMERIC. */
cnn_status cnn_net_clip_grad_norm(cnn_net *net, double max_norm, double *norm);

/* Label smoothing of the net's softmax_ce loss layer (CNN_ERR_MISUSE when the last layer is not one);
 * eps in [0, 1). Changes the model text (label_smoothing=). */
cnn_status cnn_net_set_label_smoothing(cnn_net *net, double eps);

/* Exponential moving average of the weights: a shadow copy of the parameters and buffers (batchnorm
 * running statistics are averaged too, as timm's ModelEmaV2), updated after each optimizer step as
 * shadow += (1 - decay) * (live - shadow). Created from a compiled net with the current values. */
typedef struct cnn_ema cnn_ema;
cnn_status cnn_ema_create(cnn_net *net, double decay, cnn_ema **out);
void cnn_ema_free(cnn_ema *ema);
cnn_status cnn_ema_update(cnn_ema *ema);
/* Exchange the shadow and the live values (twice restores both bit for bit): swap, evaluate or save, swap. */
cnn_status cnn_ema_swap(cnn_ema *ema);
double cnn_ema_decay(const cnn_ema *ema);
uint64_t cnn_ema_updates(const cnn_ema *ema);
/* The shadow arrays (parameter arena layout, then buffer arena layout) and their float counts. */
void cnn_ema_state(cnn_ema *ema, float **params, size_t *n_params, float **buffers, size_t *n_buffers);
void cnn_ema_set_updates(cnn_ema *ema, uint64_t updates);
cnn_ctx *cnn_ema_ctx(const cnn_ema *ema);

/* Checkpoints with an EMA ("optim.ema.params", "optim.ema.buffers" and metadata "cnn.ema") and the best
 * validation accuracy so far ("cnn.best_val", NAN: none). cnn_checkpoint_save is this with NULL and NAN. */
cnn_status cnn_checkpoint_save_ex(cnn_net *net, const cnn_optimizer *opt, const cnn_ema *ema,
                                  const cnn_train_state *state, double best_val, const char *path);
/* Restore the shadow and update count (CNN_ERR_FORMAT when the checkpoint has no EMA, CNN_ERR_SHAPE when
 * the sizes differ). Nothing changes on failure. */
cnn_status cnn_checkpoint_load_ema(cnn_ema *ema, const char *path);
/* *best = the checkpoint's best validation accuracy, NAN when it has none. */
cnn_status cnn_checkpoint_read_best(cnn_ctx *ctx, const char *path, double *best);

/* Validation split: a permutation of 0..n-1 from seed (cnn_shuffle_indices) whose first *n_val entries
 * (round(fraction * n), at least 1, at most n - 1) are the validation samples and the rest the training
 * samples, each part sorted ascending. fraction in (0, 1), n >= 2. */
cnn_status cnn_val_split(cnn_ctx *ctx, size_t n, double fraction, uint64_t seed, size_t *idx, size_t *n_val);

/* ==== data: images, image datasets, class names (part "data"; issue 5 datasets, issue 6 class names;
 * src/io/image_decode.c, src/io/dataset_images.c, src/io/dataset.c, src/io/checkpoint.c; docs/formats.md) ==== */
/* Image decoding: PNG (libpng) and JPEG (libjpeg-turbo), when the library was built with them. */
#define CNN_IMAGE_PNG 1u
#define CNN_IMAGE_JPEG 2u
/* Which formats were built in (CNN_IMAGE_PNG | CNN_IMAGE_JPEG); a format left out gives
 * CNN_ERR_UNSUPPORTED naming the package to install. */
unsigned cnn_image_formats(void);
typedef struct cnn_image {
    size_t w, h, c;  /* c: 1 (gray) or 3 (RGB) */
    uint8_t *px;     /* h * w * c bytes, interleaved rows (HWC), from cnn_alloc */
} cnn_image;
/* Decode a PNG or JPEG file (told apart by the signature). Alpha is composited on black; palettes and 16-bit
 * samples are converted; a truncated file is CNN_ERR_FORMAT. On failure *out is zeroed. */
cnn_status cnn_image_read(cnn_ctx *ctx, const char *path, cnn_image *out);
void cnn_image_release(cnn_ctx *ctx, cnn_image *im);
/* Area resampling (box filter with fractional coverage) of im to s.h x s.w and conversion to s.c channels
 * (1: gray = 0.299 R + 0.587 G + 0.114 B, 3: gray replicated), rounded to nearest (halves up): out gets
 * s.c * s.h * s.w bytes, planar (CHW). The same size is the identity. */
cnn_status cnn_image_resample(cnn_ctx *ctx, const cnn_image *im, cnn_shape s, uint8_t *out);

typedef struct cnn_dataset_options {
    /* Image datasets: every image is resampled to (h, w) and converted to c channels (1 or 3), pixels kept
     * as uint8 and scaled x/255 in batches. All zero: the first image's size and channels. Ignored by IDX
     * and CIFAR-10 folders (their shape is the file's). */
    cnn_shape shape;
    /* Optional class names in label order (e.g. the training split's, for the test split): image folders
     * and list labels given as names map into them. NULL: from the data. */
    const char *const *class_names;
    size_t n_classes;
} cnn_dataset_options;
cnn_dataset_options cnn_dataset_options_default(void);
/* cnn_dataset_load_dir with options. Besides IDX and CIFAR-10 it recognises a folder with train/ and test/
 * subfolders of images: DIR/<split>/<class>/<image> (kind "images"); the classes are the sorted union of
 * the class folder names of both splits, so the two splits agree on the labels. Files that cannot be
 * decoded are skipped, each with a warning (cnn_dataset_warning); a split with no usable image is
 * CNN_ERR_FORMAT. */
cnn_status cnn_dataset_load_dir_ex(cnn_ctx *ctx, const char *dir, const char *split, const cnn_dataset_options *opt,
                                   cnn_dataset **out);
/* A list file (kind "list"): one "PATH LABEL" per line (the label is the last word, or everything after the
 * last tab when the line has a tab, so a name may hold spaces; PATH may hold spaces and is relative to the
 * list file's folder unless absolute), '#' comments and blank lines ignored. LABEL is a class index or
 * a class name. Names come from opt->class_names, else from a classes.txt beside the list file (one name
 * per line), else: integer labels are named "0".."N-1", name labels are sorted. A line without a label, a
 * negative or unknown label, or integer and name labels mixed without a name list is CNN_ERR_FORMAT naming
 * the file and line; an image that cannot be decoded is a warning. */
cnn_status cnn_dataset_load_list(cnn_ctx *ctx, const char *path, const cnn_dataset_options *opt, cnn_dataset **out);
/* Warnings of the load (files skipped and why, "<path>: <reason>"); at most 1000 are kept, the last says
 * how many more there were. NULL out of range. */
size_t cnn_dataset_num_warnings(const cnn_dataset *ds);
const char *cnn_dataset_warning(const cnn_dataset *ds, size_t i);
/* Name of class i (0 <= i < cnn_dataset_classes): a classes.txt in the data folder (one name per line)
 * always wins; CIFAR-10's ten names (or its batches.meta.txt); Fashion-MNIST's ten names for an IDX folder
 * whose path contains "fashion" or "fmnist"; an image folder's class folder names; else "0".."N-1".
 * NULL out of range. Valid while ds lives. */
const char *cnn_dataset_class_name(const cnn_dataset *ds, size_t i);
/* Replace the names (n == cnn_dataset_classes(ds); each non-empty, without line breaks); copied. */
cnn_status cnn_dataset_set_class_names(cnn_dataset *ds, const char *const *names, size_t n);
/* Class names kept in a weights file or checkpoint: metadata "cnn.classes", a JSON array of strings.
 * write rewrites the file atomically with the names added (the tensors unchanged; the file must hold only
 * F32 tensors, as the library writes them); read gives *names as one cnn_alloc block (free with
 * cnn_free(ctx, names)) and *n, or NULL and 0 when the file has none. */
cnn_status cnn_checkpoint_write_class_names(cnn_ctx *ctx, const char *path, const char *const *names, size_t n);
cnn_status cnn_checkpoint_read_class_names(cnn_ctx *ctx, const char *path, char ***names, size_t *n);

/* ==== mpi: data-parallel training over MPI (src/dist/; docs/distributed.md) ====
 * One process per rank (mpirun -np N); every rank holds the whole model and trains on its shard of each
 * global batch. Built on Open MPI when CMake finds it (CNN_MPI=ON); without it, or when the process was not
 * started by a launcher, a cnn_dist is one process (rank 0 of 1) and every call below is the identity, so
 * the same code runs either way. Collectives give CNN_ERR_COMM after timeout_s instead of hanging when a
 * rank died or is stuck; after that the job cannot continue: report and call cnn_dist_abort. */
typedef struct cnn_dist cnn_dist;
typedef struct cnn_dist_options {
    double timeout_s;     /* deadline of every collective (0: none); default 120 */
    size_t bucket_bytes;  /* gradient bucket size (allreduce granularity); default 1 MiB */
    int sync_bn;          /* batchnorm statistics over the global batch (default 0: per rank, like DDP) */
} cnn_dist_options;
typedef struct cnn_dist_stats {
    size_t buckets;               /* gradient buckets of the attached net */
    size_t bn_layers;             /* batchnorm layers of the attached net */
    uint64_t grad_bytes_per_step; /* gradient bytes allreduced per step */
    uint64_t bn_bytes_per_step;   /* sync-bn bytes allreduced, summed over the steps so far */
    uint64_t steps;               /* cnn_dist_grads_finish calls */
    double wait_seconds;          /* spent in cnn_dist_grads_finish (communication not hidden by backward) */
    double hook_seconds;          /* spent starting and testing allreduces inside backward */
} cnn_dist_stats;
/* Nonzero when the library was built with MPI. */
int cnn_dist_available(void);
cnn_dist_options cnn_dist_options_default(void);
/* Join the job (MPI_Init when started by mpirun). One per process. */
cnn_status cnn_dist_create(cnn_ctx *ctx, const cnn_dist_options *opt /* NULL: defaults */, cnn_dist **out);
/* Leave the job (MPI_Finalize; skipped after a failed collective). NULL is a no-op. */
void cnn_dist_free(cnn_dist *d);
size_t cnn_dist_rank(const cnn_dist *d);
size_t cnn_dist_size(const cnn_dist *d);
/* The MPI library's version line ("Open MPI v4.1.4"), or a note that there is none. */
const char *cnn_dist_library(const cnn_dist *d);
void cnn_dist_set_timeout(cnn_dist *d, double seconds);
/* This rank's part [*begin, *end) of n items: contiguous, sizes differ by at most one. */
void cnn_dist_shard(const cnn_dist *d, size_t n, size_t *begin, size_t *end);
/* Hook a net compiled for training: gradient buckets allreduced during cnn_net_backward, and with sync_bn
 * the batchnorm statistics. The net must outlive d or be attached elsewhere; one net at a time. */
cnn_status cnn_dist_attach(cnn_dist *d, cnn_net *net);
/* Before each training forward: this rank's and the global sample count of the step (the gradients are
 * weighted by local_n / global_n, so uneven shards still give the global mean). */
cnn_status cnn_dist_set_batch(cnn_dist *d, size_t local_n, size_t global_n);
/* After cnn_net_backward: complete the allreduces; the gradients are then the mean over the global batch
 * on every rank. Also returns a failure recorded during the passes (e.g. a sync-bn timeout). */
cnn_status cnn_dist_grads_finish(cnn_dist *d);
/* Rank 0's parameters and buffers to every rank. */
cnn_status cnn_dist_broadcast_params(cnn_dist *d, cnn_net *net);
/* Average the buffers (batchnorm running statistics) over ranks; a no-op with sync_bn (already equal). */
cnn_status cnn_dist_average_buffers(cnn_dist *d, cnn_net *net);
/* Compare a checksum of every rank's parameters and buffers; CNN_ERR_COMM naming the ranks that differ
 * from rank 0. `when` starts the message ("after epoch 3"). */
cnn_status cnn_dist_check_params(cnn_dist *d, cnn_net *net, const char *when);
/* In-place sum over ranks. */
cnn_status cnn_dist_allreduce_sum(cnn_dist *d, double *v, size_t n, const char *what);
cnn_status cnn_dist_barrier(cnn_dist *d);
/* cnn_net_evaluate with the dataset sharded over ranks and the results (loss, accuracy, confusion)
 * summed: every rank gets the whole dataset's result. One rank: exactly cnn_net_evaluate. */
cnn_status cnn_dist_evaluate(cnn_dist *d, cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out);
/* The same with horizontal-flip test-time augmentation (as cnn_net_evaluate_tta). */
cnn_status cnn_dist_evaluate_tta(cnn_dist *d, cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out);
void cnn_dist_get_stats(const cnn_dist *d, cnn_dist_stats *out);
/* End every process of the job with `code` (MPI_Abort), for a caller that cannot go on after a failed
 * collective; returns (doing nothing) when there is no MPI job. */
void cnn_dist_abort(cnn_dist *d, int code);

/* ==== class names on the net ====
 * Class names in label order, carried by the net and written by cnn_net_save_weights and the checkpoint
 * writers as metadata "cnn.classes" (read back with cnn_checkpoint_read_class_names), so a file is written
 * once, with its names. n == 0 clears them. Each name non-empty, at most 4096 bytes, no line break; copied. */
cnn_status cnn_net_set_class_names(cnn_net *net, const char *const *names, size_t n);
/* The names (n of them, the array NULL-terminated), or NULL and *n = 0 when none are set. Valid until the next
 * cnn_net_set_class_names or cnn_net_free. */
const char *const *cnn_net_class_names(const cnn_net *net, size_t *n);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* CNN_H */
