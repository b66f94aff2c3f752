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
 * profiling). Backward passes need a backward first; backward-data overwrites the input gradients. */
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
 * "memory" (cnn_dataset_from_memory); "" for NULL. A static string. */
const char *cnn_dataset_kind(const cnn_dataset *ds);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* CNN_H */
