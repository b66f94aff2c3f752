/* ddp.c — data-parallel training (the public cnn_dist_* calls, include/cnn.h section "mpi"; docs/distributed.md).
 * Built in every configuration: it talks to the other ranks only through the communicator of dist.h (MPI in
 * dist_mpi.c, or the one-process dist_none.c), and to the net only through two hooks, so neither the net
 * nor the layers know about MPI.
 *
 * Gradient buckets: at attach the layers with trainable parameters are grouped, in reverse layer order
 * (the order backward finishes them), into buckets of about opt.bucket_bytes; a bucket is one contiguous
 * range of the gradient arena (layer blocks are in layer order, so a run of consecutive layers is
 * contiguous). The net's gradient-ready hook (net_internal.h) counts down the layers of a bucket; when its
 * last layer reports, the bucket is scaled by this rank's share of the global batch (local_n / global_n)
 * and an MPI_Iallreduce(SUM) starts on it, while backward continues with the layers below: communication
 * overlaps computation. Every hook call also tests the outstanding requests (Open MPI progresses
 * non-blocking collectives only inside MPI calls). cnn_dist_grads_finish starts what is left and waits:
 * the gradients are then the mean over the global batch, identical on every rank, and one optimizer step
 * on each rank keeps the weights identical. Buckets start in the same order on every rank (the order is a
 * function of the model), as MPI requires of collectives.
 *
 * Sync batchnorm (opt.sync_bn): every batchnorm layer gets the bn_sync.h hook, which reduces its
 * per-channel sums (blocking, with the timeout) so statistics are those of the global batch.
 *
 * Failures inside backward (a hook has no error path) are recorded and returned by the next
 * cnn_dist_grads_finish. */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"
#include "bn_sync.h"
#include "../core/net_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct dist_bucket {
    size_t off, count;    /* floats of the gradient arena */
    size_t layers, pending;
    size_t req;
    int started;
} dist_bucket;

struct cnn_dist {
    cnn_ctx *ctx;
    cnn_comm *comm;
    cnn_dist_options opt;
    cnn_net *net;
    dist_bucket *buckets;
    size_t n_buckets;
    size_t *layer_bucket; /* per layer: bucket index or SIZE_MAX */
    double scale;         /* local_n / global_n of the current step */
    int overlap;          /* start buckets during backward (CNN_DIST_OVERLAP=0: all after it, to measure) */
    cnn_status err;       /* first failure inside a pass */
    char errmsg[1024];
    cnn_bn_sync bn;
    cnn_dist_stats stats;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cnn_dist_available(void) {
#if defined(CNN_HAVE_MPI)
    return 1;
#else
    return 0;
#endif
}

cnn_dist_options cnn_dist_options_default(void) {
    cnn_dist_options o;
    memset(&o, 0, sizeof o);
    o.timeout_s = 120;
    o.bucket_bytes = (size_t)1 << 20;
    o.sync_bn = 0;
    return o;
}

cnn_status cnn_dist_create(cnn_ctx *ctx, const cnn_dist_options *opt, cnn_dist **out) {
    if (!ctx || !out) return CNN_ERR_INVALID_ARG;
    *out = NULL;
    cnn_dist_options o = opt ? *opt : cnn_dist_options_default();
    if (!(o.timeout_s >= 0) || o.bucket_bytes == 0)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dist_create: timeout must be >= 0 and bucket_bytes > 0");
    cnn_dist *d = cnn_mem_calloc(ctx, 1, sizeof *d);
    if (!d) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating the distributed state");
    d->ctx = ctx;
    d->opt = o;
    d->scale = 1.0;
    const char *ov = getenv("CNN_DIST_OVERLAP");
    d->overlap = !(ov && ov[0] == '0');
    cnn_status st = cnn_comm_open(ctx, o.timeout_s, &d->comm);
    if (st) {
        cnn_mem_free(ctx, d);
        return st;
    }
    *out = d;
    return CNN_OK;
}

static void detach(cnn_dist *d) {
    if (d->net) {
        d->net->grad_hook = NULL;
        d->net->grad_hook_user = NULL;
        for (size_t i = 0; i < d->net->n_layers; i++) cnn_batchnorm_set_sync(&d->net->layers[i], NULL);
    }
    d->net = NULL;
    free(d->buckets);
    free(d->layer_bucket);
    d->buckets = NULL;
    d->layer_bucket = NULL;
    d->n_buckets = 0;
}

void cnn_dist_free(cnn_dist *d) {
    if (!d) return;
    detach(d);
    cnn_comm_close(d->comm);
    cnn_mem_free(d->ctx, d);
}

size_t cnn_dist_rank(const cnn_dist *d) { return d ? cnn_comm_rank(d->comm) : 0; }
size_t cnn_dist_size(const cnn_dist *d) { return d ? cnn_comm_size(d->comm) : 1; }
const char *cnn_dist_library(const cnn_dist *d) { return d ? cnn_comm_library(d->comm) : ""; }

void cnn_dist_shard(const cnn_dist *d, size_t n, size_t *begin, size_t *end) {
    cnn_split_range(n, cnn_dist_size(d), cnn_dist_rank(d), begin, end);
}

static void record(cnn_dist *d, cnn_status st) {
    if (d->err) return;
    d->err = st;
    snprintf(d->errmsg, sizeof d->errmsg, "%s", cnn_ctx_last_error(d->ctx));
}

static void start_bucket(cnn_dist *d, dist_bucket *b) {
    float *g = d->net->grads + b->off;
    b->started = 1;
    b->req = SIZE_MAX;
    if (cnn_comm_size(d->comm) == 1 || d->err) return;
    if (d->scale != 1.0) {
        float s = (float)d->scale;
        for (size_t i = 0; i < b->count; i++) g[i] *= s;
    }
    cnn_status st = cnn_comm_iallreduce_f32(d->comm, g, b->count, &b->req, "allreduce of a gradient bucket");
    if (st) record(d, st);
}

static void grad_ready(void *user, size_t layer, float *grad, size_t count) {
    (void)grad;
    (void)count;
    cnn_dist *d = user;
    double t0 = now_s();
    size_t bi = d->layer_bucket[layer];
    if (bi != SIZE_MAX) {
        dist_bucket *b = &d->buckets[bi];
        if (b->pending) b->pending--;
        if (!b->pending && d->overlap && !b->started) start_bucket(d, b);
    }
    if (!d->err) {
        cnn_status st = cnn_comm_progress(d->comm);
        if (st) record(d, st);
    }
    d->stats.hook_seconds += now_s() - t0;
}

static int bn_allreduce(void *user, double *buf, size_t n, int grad) {
    cnn_dist *d = user;
    if (cnn_comm_size(d->comm) == 1) return 0;
    if (d->err) return -1;
    if (grad && d->scale != 1.0)
        for (size_t i = 0; i < n; i++) buf[i] *= d->scale;
    cnn_status st = cnn_comm_allreduce_f64(d->comm, buf, n, "sync-bn statistics allreduce");
    if (st) {
        record(d, st);
        return -1;
    }
    if (grad && d->scale != 1.0)
        for (size_t i = 0; i < n; i++) buf[i] /= d->scale;
    d->stats.bn_bytes_per_step += (uint64_t)n * sizeof(double);
    return 0;
}

cnn_status cnn_dist_attach(cnn_dist *d, cnn_net *net) {
    if (!d || !net) return CNN_ERR_INVALID_ARG;
    if (!net->grads)
        return cnn_error(d->ctx, CNN_ERR_MISUSE, "cnn_dist_attach: the network is not compiled for training");
    detach(d);
    size_t n = net->n_layers;
    d->layer_bucket = malloc(n * sizeof *d->layer_bucket);
    d->buckets = calloc(n, sizeof *d->buckets);
    if (!d->layer_bucket || !d->buckets) {
        detach(d);
        return cnn_error(d->ctx, CNN_ERR_NOMEM, "out of memory planning gradient buckets");
    }
    size_t cap = d->opt.bucket_bytes / sizeof(float), nb = 0;
    if (cap == 0) cap = 1;
    for (size_t i = n; i-- > 0;) {
        d->layer_bucket[i] = SIZE_MAX;
        size_t wc = net->rt[i].w_count;
        if (!wc) continue;
        dist_bucket *b = nb ? &d->buckets[nb - 1] : NULL;
        if (!b || b->count >= cap || b->count + wc > cap) { /* a layer larger than cap gets its own bucket */
            b = &d->buckets[nb++];
            b->off = net->rt[i].w_off + wc; /* end for now */
            b->count = 0;
        }
        size_t end = b->off + b->count;
        b->off = net->rt[i].w_off;
        b->count = end - b->off;
        b->layers++;
        d->layer_bucket[i] = (size_t)(b - d->buckets);
    }
    for (size_t i = 0; i < nb; i++) {
        d->buckets[i].pending = d->buckets[i].layers;
        d->buckets[i].req = SIZE_MAX;
    }
    d->n_buckets = nb;
    d->net = net;
    net->grad_hook = grad_ready;
    net->grad_hook_user = d;
    d->bn.allreduce_sum = bn_allreduce;
    d->bn.user = d;
    size_t grad_floats = 0;
    for (size_t i = 0; i < nb; i++) grad_floats += d->buckets[i].count;
    memset(&d->stats, 0, sizeof d->stats);
    d->stats.buckets = nb;
    d->stats.grad_bytes_per_step = (uint64_t)grad_floats * sizeof(float);
    for (size_t i = 0; i < n; i++) {
        int is_bn = net->layers[i].ops == &cnn_layer_batchnorm;
        if (is_bn) d->stats.bn_layers++;
        if (is_bn) cnn_batchnorm_set_sync(&net->layers[i], d->opt.sync_bn ? &d->bn : NULL);
    }
    return CNN_OK;
}

cnn_status cnn_dist_set_batch(cnn_dist *d, size_t local_n, size_t global_n) {
    if (!d) return CNN_ERR_INVALID_ARG;
    if (global_n == 0 || local_n > global_n)
        return cnn_error(d->ctx, CNN_ERR_INVALID_ARG, "cnn_dist_set_batch: %zu local of %zu samples", local_n, global_n);
    d->scale = cnn_dist_size(d) == 1 ? 1.0 : (double)local_n / (double)global_n;
    return CNN_OK;
}

cnn_status cnn_dist_grads_finish(cnn_dist *d) {
    if (!d) return CNN_ERR_INVALID_ARG;
    if (!d->net) return cnn_error(d->ctx, CNN_ERR_MISUSE, "cnn_dist_grads_finish: no network attached");
    double t0 = now_s();
    cnn_status st = CNN_OK;
    for (size_t i = 0; i < d->n_buckets; i++)
        if (!d->buckets[i].started) start_bucket(d, &d->buckets[i]);
    for (size_t i = d->n_buckets; i-- > 0;) { /* oldest first */
        dist_bucket *b = &d->buckets[i];
        if (!d->err && b->req != SIZE_MAX) {
            cnn_status s = cnn_comm_wait(d->comm, b->req);
            if (s) record(d, s);
        }
        b->started = 0;
        b->pending = b->layers;
        b->req = SIZE_MAX;
    }
    d->stats.steps++;
    d->stats.wait_seconds += now_s() - t0;
    d->net->param_gen++;
    if (d->err) {
        st = cnn_error(d->ctx, d->err, "%s", d->errmsg);
        return st;
    }
    return CNN_OK;
}

cnn_status cnn_dist_broadcast_params(cnn_dist *d, cnn_net *net) {
    if (!d || !net) return CNN_ERR_INVALID_ARG;
    cnn_status st = cnn_comm_bcast(d->comm, net->params, net->n_params * sizeof(float), 0,
                                   "broadcast of the initial parameters from rank 0");
    if (!st)
        st = cnn_comm_bcast(d->comm, net->buffers, net->n_buffers * sizeof(float), 0,
                            "broadcast of the initial buffers from rank 0");
    net->param_gen++;
    return st;
}

cnn_status cnn_dist_average_buffers(cnn_dist *d, cnn_net *net) {
    if (!d || !net) return CNN_ERR_INVALID_ARG;
    size_t size = cnn_dist_size(d), nbuf = net->n_buffers;
    if (size == 1 || nbuf == 0 || d->opt.sync_bn) return CNN_OK; /* sync mode: already equal */
    double *t = malloc(nbuf * sizeof *t);
    if (!t) return cnn_error(d->ctx, CNN_ERR_NOMEM, "out of memory averaging %zu buffer values", nbuf);
    for (size_t i = 0; i < nbuf; i++) t[i] = net->buffers[i];
    cnn_status st = cnn_comm_allreduce_f64(d->comm, t, nbuf, "allreduce of the batchnorm running statistics");
    if (!st)
        for (size_t i = 0; i < nbuf; i++) net->buffers[i] = (float)(t[i] / (double)size);
    free(t);
    net->param_gen++;
    return st;
}

static uint64_t checksum(const float *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], sizeof u);
        h = (h ^ u) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

cnn_status cnn_dist_check_params(cnn_dist *d, cnn_net *net, const char *when) {
    if (!d || !net) return CNN_ERR_INVALID_ARG;
    size_t size = cnn_dist_size(d);
    uint64_t h = checksum(net->params, net->n_params, 0xCBF29CE484222325ull);
    h = checksum(net->buffers, net->n_buffers, h);
    uint64_t *all = malloc(size * sizeof *all);
    if (!all) return cnn_error(d->ctx, CNN_ERR_NOMEM, "out of memory for %zu checksums", size);
    cnn_status st = cnn_comm_allgather_u64(d->comm, h, all, "allgather of the weight checksums");
    if (!st) {
        char list[512];
        size_t len = 0, bad = 0;
        list[0] = 0;
        for (size_t r = 1; r < size; r++)
            if (all[r] != all[0]) {
                if (len < sizeof list - 40)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%zu (%016llx)", bad ? ", " : "", r,
                                            (unsigned long long)all[r]);
                bad++;
            }
        if (bad)
            st = cnn_error(d->ctx, CNN_ERR_COMM,
                           "%s: the weights differ between ranks: rank 0 has checksum %016llx, %zu rank%s differ%s: %s",
                           when ? when : "check", (unsigned long long)all[0], bad, bad == 1 ? "" : "s",
                           bad == 1 ? "s" : "", list);
    }
    free(all);
    return st;
}

cnn_status cnn_dist_allreduce_sum(cnn_dist *d, double *v, size_t n, const char *what) {
    if (!d || (!v && n)) return CNN_ERR_INVALID_ARG;
    return cnn_comm_allreduce_f64(d->comm, v, n, what ? what : "allreduce");
}

cnn_status cnn_dist_barrier(cnn_dist *d) {
    if (!d) return CNN_ERR_INVALID_ARG;
    return cnn_comm_barrier(d->comm, "barrier");
}

void cnn_dist_abort(cnn_dist *d, int code) {
    if (d) cnn_comm_abort(d->comm, code);
}

void cnn_dist_set_timeout(cnn_dist *d, double seconds) {
    if (d && seconds >= 0) {
        d->opt.timeout_s = seconds;
        cnn_comm_set_timeout(d->comm, seconds);
    }
}

void cnn_dist_get_stats(const cnn_dist *d, cnn_dist_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (d) *out = d->stats;
}

static cnn_status dist_evaluate(cnn_dist *d, cnn_net *net, const cnn_dataset *ds, size_t batch, int tta,
                                cnn_eval_result *out, const char *what) {
    if (!d || !net || !ds || !out) return CNN_ERR_INVALID_ARG;
    if (cnn_dist_size(d) == 1) return cnn_net_evaluate_mode(net, ds, batch, tta, out, what);
    memset(out, 0, sizeof *out);
    cnn_status st = cnn_net_eval_check(net, ds, what);
    if (st) return st;
    cnn_ctx *ctx = d->ctx;
    const size_t classes = net->layers[net->n_layers - 1].out.c, total = cnn_dataset_size(ds), nacc = 2 + classes * classes;
    size_t b0, b1;
    cnn_dist_shard(d, total, &b0, &b1);
    double *acc = cnn_mem_calloc(ctx, nacc, sizeof *acc);
    if (!acc) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating the confusion matrix");
    /* each rank its shard; the sums (exact integers for counts) are reduced, so every rank gets the whole result */
    CNN_TRY(cnn_net_eval_sums(net, ds, b0, b1, batch, tta, acc));
    CNN_TRY(cnn_comm_allreduce_f64(d->comm, acc, nacc, "allreduce of the evaluation results"));
    st = cnn_net_eval_result(net, acc, total, out);
cleanup:
    cnn_mem_free(ctx, acc);
    return st;
}

cnn_status cnn_dist_evaluate(cnn_dist *d, cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out) {
    return dist_evaluate(d, net, ds, batch, 0, out, "cnn_dist_evaluate");
}

cnn_status cnn_dist_evaluate_tta(cnn_dist *d, cnn_net *net, const cnn_dataset *ds, size_t batch, cnn_eval_result *out) {
    return dist_evaluate(d, net, ds, batch, 1, out, "cnn_dist_evaluate_tta");
}
