/* train_dist.c — `mpirun -np N cnn train MODEL --data DIR ...`: the distributed side of cmd_train.c
 * (docs/distributed.md). Without mpirun (or without MPI in the build) every call is a no-op and the run is
 * the single-process one, bit for bit.
 *
 *   - --batch is the global batch; it must divide by N. Every rank shuffles the same order (same seed) and
 *     takes its contiguous shard of every global batch (the last partial batch is split as evenly as
 *     possible; one smaller than N is skipped on all ranks).
 *   - rank 0's initial (or loaded/resumed) weights are broadcast; dropout draws get a per-rank seed.
 *   - gradients are averaged by the library (cnn_dist_attach: buckets allreduced during backward);
 *     --sync-bn synchronises batchnorm statistics.
 *   - after every epoch: loss/accuracy sums reduced, batchnorm running statistics averaged (per-rank mode),
 *     checksums of the weights compared (a mismatch stops the run naming the ranks); evaluation sharded.
 *   - only rank 0 prints progress and epoch lines and writes --out, --checkpoint, --log, --report.
 *   - a failure on any rank ends the whole job (MPI_Abort) so no rank waits for it; a rank that died or hangs
 *     makes the others' collectives time out after --dist-timeout seconds with a message.
 * Fault injection for tests/cli_mpi.sh: CNN_DIST_TEST_FAULT=die:RANK:STEP (the rank kills itself with
 * SIGKILL before that step), stall:RANK:STEP (it sleeps forever) or perturb:RANK:STEP (it adds 1e-3 to its
 * first weight: the checksums after the epoch differ). */
#define _POSIX_C_SOURCE 200809L
#include "train_dist.h"
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    cnn_ctx *ctx;
    cnn_dist *d;
    size_t rank, size;
    int attached, quiet, sync_bn;
    int no_abort; /* the failure is the same on every rank (a usage error): leave normally */
    double timeout;
    uint64_t steps;
    double t_start;
    cnn_net *net;
    int fault; /* 0 none, 1 die, 2 stall, 3 perturb */
    unsigned long fault_rank, fault_step;
} D = {.size = 1};

int cli_dist_begin(cnn_ctx *ctx, size_t batch, int sync_bn, double timeout_s) {
    cnn_dist_options o = cnn_dist_options_default();
    o.sync_bn = sync_bn;
    if (timeout_s >= 0) o.timeout_s = timeout_s;
    const char *bm = getenv("CNN_DIST_BUCKET_KB");
    if (bm && atol(bm) > 0) o.bucket_bytes = (size_t)atol(bm) << 10;
    cnn_status st = cnn_dist_create(ctx, &o, &D.d);
    if (st != CNN_OK) return cli_lib_error(ctx, st, "joining the MPI job");
    D.ctx = ctx;
    D.rank = cnn_dist_rank(D.d);
    D.size = cnn_dist_size(D.d);
    D.sync_bn = sync_bn;
    D.timeout = o.timeout_s;
    D.t_start = cli_now();
    const char *f = getenv("CNN_DIST_TEST_FAULT");
    if (f) {
        char kind[16] = "";
        if (sscanf(f, "%15[a-z]:%lu:%lu", kind, &D.fault_rank, &D.fault_step) == 3)
            D.fault = strcmp(kind, "die") == 0 ? 1 : strcmp(kind, "stall") == 0 ? 2 : strcmp(kind, "perturb") == 0 ? 3 : 0;
    }
    if (batch % D.size != 0) {
        D.no_abort = 1;
        int rc = cli_usage_error("train: --batch %zu is the global batch and must divide evenly by the %zu ranks "
                                 "(e.g. --batch %zu: %zu per rank)",
                                 batch, D.size, (batch / D.size + 1) * D.size, batch / D.size + 1);
        return rc;
    }
    return 0;
}

size_t cli_dist_rank(void) { return D.rank; }
size_t cli_dist_size(void) { return D.size; }

void cli_dist_quiet_rank(int *quiet, int *tty, int *json, const char **out, const char **checkpoint,
                         const char **log_path, const char **report_dir) {
    if (D.rank == 0) return;
    *quiet = 1;
    *tty = 0;
    *json = 0;
    *out = *checkpoint = *log_path = *report_dir = NULL;
    fflush(stdout);
    if (!freopen("/dev/null", "w", stdout)) { /* keep stdout: the lines are only duplicated */ }
}

static int fail(cnn_status st, const char *what) { return cli_lib_error(D.ctx, st, what); }

int cli_dist_prepare(cnn_net *net, int quiet) {
    D.quiet = quiet;
    D.net = net;
    if (!D.d || (D.size == 1 && !D.sync_bn)) return 0; /* the single-process run, untouched */
    cnn_status st;
    if ((st = cnn_dist_broadcast_params(D.d, net)) != CNN_OK) return fail(st, "distributed start");
    if ((st = cnn_dist_attach(D.d, net)) != CNN_OK) return fail(st, "distributed start");
    D.attached = 1;
    if (D.rank > 0) { /* dropout masks: a different stream per rank (rank 0 keeps the run's, as checkpoints do) */
        uint64_t seed, step;
        cnn_net_get_rng(net, &seed, &step);
        cnn_net_set_rng(net, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)D.rank), step);
    }
    cnn_dist_stats s;
    cnn_dist_get_stats(D.d, &s);
    if (D.rank == 0 && !quiet) {
        fprintf(stderr,
                "train: distributed over %zu ranks (%s): each rank takes 1/%zu of every global batch; %zu gradient "
                "bucket%s, %.2f MiB allreduced per step; batchnorm %s (%zu layer%s); collective timeout %.0f s\n",
                D.size, cnn_dist_library(D.d), D.size, s.buckets, s.buckets == 1 ? "" : "s",
                (double)s.grad_bytes_per_step / 1048576.0, D.sync_bn ? "synchronised (--sync-bn)" : "statistics per rank",
                s.bn_layers, s.bn_layers == 1 ? "" : "s", D.timeout);
        fflush(stderr);
    }
    return 0;
}

int cli_dist_shard_batch(size_t *off, size_t *nb) {
    D.steps++;
    if (D.fault && D.rank == D.fault_rank && D.steps == D.fault_step) {
        if (D.fault == 1) raise(SIGKILL);
        if (D.fault == 2)
            for (;;) sleep(1000);
        cnn_param p; /* perturb: one weight of this rank changes (the epoch's checksum must catch it) */
        if (D.net && cnn_net_param_at(D.net, 0, &p) == CNN_OK && p.count) p.data[0] += 1e-3f;
    }
    if (D.size == 1) return 0;
    size_t g = *nb, b, e;
    if (g < D.size) return 1;
    b = g * D.rank / D.size;
    e = g * (D.rank + 1) / D.size;
    *off += b;
    *nb = e - b;
    if (D.attached) cnn_dist_set_batch(D.d, *nb, g);
    return 0;
}

cnn_status cli_dist_grads(void) {
    if (!D.attached) return CNN_OK;
    return cnn_dist_grads_finish(D.d);
}

int cli_dist_epoch_end(cnn_net *net, size_t epoch, double *loss_sum, size_t *correct, size_t *seen) {
    if (!D.attached || D.size == 1) return 0;
    double v[3] = {*loss_sum, (double)*correct, (double)*seen};
    cnn_status st;
    char when[64];
    snprintf(when, sizeof when, "after epoch %zu", epoch);
    if ((st = cnn_dist_allreduce_sum(D.d, v, 3, "allreduce of the epoch's loss and accuracy")) != CNN_OK ||
        (st = cnn_dist_average_buffers(D.d, net)) != CNN_OK || (st = cnn_dist_check_params(D.d, net, when)) != CNN_OK)
        return fail(st, "distributed training");
    *loss_sum = v[0];
    *correct = (size_t)v[1];
    *seen = (size_t)v[2];
    return 0;
}

cnn_status cli_dist_evaluate(cnn_net *net, const cnn_dataset *ds, size_t batch, int tta, cnn_eval_result *ev) {
    if (!D.d || D.size == 1) return tta ? cnn_net_evaluate_tta(net, ds, batch, ev) : cnn_net_evaluate(net, ds, batch, ev);
    size_t b = batch / D.size ? batch / D.size : 1;
    return tta ? cnn_dist_evaluate_tta(D.d, net, ds, b, ev) : cnn_dist_evaluate(D.d, net, ds, b, ev);
}

void cli_dist_end(int rc) {
    if (!D.d) return;
    if (D.attached && D.rank == 0 && !D.quiet && rc == 0) {
        cnn_dist_stats s;
        cnn_dist_get_stats(D.d, &s);
        if (s.steps)
            fprintf(stderr,
                    "train: distributed: %llu steps, %.3f MiB of gradients allreduced per step%s; %.2f ms per step "
                    "waiting for the allreduce after backward, %.2f ms in the hooks during backward\n",
                    (unsigned long long)s.steps, (double)s.grad_bytes_per_step / 1048576.0,
                    s.bn_bytes_per_step ? " (plus sync-bn statistics)" : "", 1e3 * s.wait_seconds / (double)s.steps,
                    1e3 * s.hook_seconds / (double)s.steps);
    }
    if (rc != 0 && D.size > 1 && !D.no_abort) {
        fflush(stdout);
        fflush(stderr);
        cnn_dist_abort(D.d, rc); /* the others may be waiting for this rank: end the job now */
    }
    cnn_dist_free(D.d);
    D.d = NULL;
    D.attached = 0;
}
