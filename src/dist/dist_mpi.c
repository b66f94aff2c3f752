/* dist_mpi.c — the communicator on MPI (Open MPI; dist.h). The only file of the library that includes
 * mpi.h; built when CNN_MPI is ON.
 *
 * Joining: MPI is initialised only when a launcher started this process (OMPI_COMM_WORLD_SIZE, PMIX_RANK or
 * PMI_RANK in the environment), with MPI_THREAD_FUNNELED (only the calling thread talks to MPI; the OpenMP
 * pool computes). The world communicator is duplicated and both get MPI_ERRORS_RETURN, so a failed call
 * returns a code (turned into CNN_ERR_COMM with MPI's error string) instead of aborting the job.
 *
 * Timeouts: every collective is the non-blocking one (MPI_Iallreduce, MPI_Ibcast, MPI_Iallgather,
 * MPI_Ibarrier) completed by MPI_Test in a loop with a deadline (spinning for 1 ms, then sleeping 50 us
 * between tests so waiting ranks leave the cores to the ones computing). A rank that died or hangs shows up
 * as "timed out after S s" naming the collective; Open MPI itself (mpirun) also notices a process that
 * exits or is killed and terminates the others (docs/distributed.md).
 * Counts above INT_MAX are split into chunks. */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include <mpi.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cnn_comm {
    cnn_ctx *ctx;
    int rank, size;
    int active;         /* MPI in use (launched); else a one-process communicator */
    int initialised_mpi; /* this object called MPI_Init_thread (and finalises) */
    int failed;
    MPI_Comm comm;
    double timeout;
    MPI_Request req[CNN_COMM_MAX_REQ];
    const char *req_what[CNN_COMM_MAX_REQ];
    char library[MPI_MAX_LIBRARY_VERSION_STRING + 1];
};

#define CHUNK ((size_t)1 << 30) /* elements (or bytes) per MPI call */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *launcher_var(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", NULL};
    for (size_t i = 0; vars[i]; i++)
        if (getenv(vars[i])) return vars[i];
    return NULL;
}

static cnn_status mpi_fail(cnn_comm *c, int code, const char *call, const char *what) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    c->failed = 1;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = 0;
    return cnn_error(c->ctx, CNN_ERR_COMM, "rank %d of %d: %s (%s) failed: %s", c->rank, c->size, what, call,
                     len ? msg : "unknown MPI error");
}

cnn_status cnn_comm_open(cnn_ctx *ctx, double timeout_s, cnn_comm **out) {
    *out = NULL;
    cnn_comm *c = cnn_mem_calloc(ctx, 1, sizeof *c);
    if (!c) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating the communicator");
    c->ctx = ctx;
    c->size = 1;
    c->timeout = timeout_s;
    c->comm = MPI_COMM_NULL;
    for (size_t i = 0; i < CNN_COMM_MAX_REQ; i++) c->req[i] = MPI_REQUEST_NULL;
    int inited = 0, len = 0;
    MPI_Initialized(&inited);
    if (!inited && !launcher_var()) { /* not under mpirun: one process, MPI untouched */
        snprintf(c->library, sizeof c->library, "MPI (not started: no launcher)");
        *out = c;
        return CNN_OK;
    }
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            cnn_mem_free(ctx, c);
            return cnn_error(ctx, CNN_ERR_COMM, "MPI_Init_thread failed (started by a launcher: %s is set)",
                             launcher_var());
        }
        c->initialised_mpi = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (rc != MPI_SUCCESS) {
        mpi_fail(c, rc, "MPI_Comm_dup", "duplicating the world communicator");
        if (c->initialised_mpi) MPI_Finalize();
        cnn_mem_free(ctx, c);
        return CNN_ERR_COMM;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    MPI_Get_library_version(c->library, &len);
    if (len < 0) len = 0;
    if ((size_t)len >= sizeof c->library) len = (int)sizeof c->library - 1;
    c->library[len] = 0;
    char *nl = strchr(c->library, '\n');
    if (nl) *nl = 0;
    nl = strchr(c->library, ',');
    if (nl) *nl = 0;
    c->active = 1;
    *out = c;
    return CNN_OK;
}

void cnn_comm_close(cnn_comm *c) {
    if (!c) return;
    if (c->active && !c->failed) {
        for (size_t i = 0; i < CNN_COMM_MAX_REQ; i++)
            if (c->req[i] != MPI_REQUEST_NULL) cnn_comm_wait(c, i);
        MPI_Comm_free(&c->comm);
        if (c->initialised_mpi) MPI_Finalize();
    }
    /* after a failure MPI_Finalize could wait for the dead peer: leave it to the abort / process exit */
    cnn_mem_free(c->ctx, c);
}

size_t cnn_comm_rank(const cnn_comm *c) { return (size_t)c->rank; }
size_t cnn_comm_size(const cnn_comm *c) { return (size_t)c->size; }
const char *cnn_comm_library(const cnn_comm *c) { return c->library; }
void cnn_comm_set_timeout(cnn_comm *c, double timeout_s) { c->timeout = timeout_s; }

static cnn_status check_usable(cnn_comm *c) {
    if (c->failed)
        return cnn_error(c->ctx, CNN_ERR_COMM, "rank %d of %d: the communicator failed earlier", c->rank, c->size);
    return CNN_OK;
}

/* Poll one request until done or the deadline. */
static cnn_status wait_req(cnn_comm *c, MPI_Request *r, const char *what) {
    double t0 = now_s(), deadline = c->timeout > 0 ? t0 + c->timeout : 0;
    for (unsigned long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Test", what);
        if (done) return CNN_OK;
        double t = now_s();
        if (deadline && t > deadline) {
            c->failed = 1;
            return cnn_error(c->ctx, CNN_ERR_COMM,
                             "rank %d of %d: %s timed out after %.0f s: another rank died, hangs or runs something "
                             "else (raise --dist-timeout for slow steps)",
                             c->rank, c->size, what, c->timeout);
        }
        if (t - t0 > 1e-3) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static size_t free_slot(const cnn_comm *c) {
    for (size_t i = 0; i < CNN_COMM_MAX_REQ; i++)
        if (c->req[i] == MPI_REQUEST_NULL) return i;
    return SIZE_MAX;
}

cnn_status cnn_comm_iallreduce_f32(cnn_comm *c, float *buf, size_t n, size_t *req, const char *what) {
    *req = SIZE_MAX;
    if (!c->active || c->size == 1) return CNN_OK;
    cnn_status st = check_usable(c);
    if (st) return st;
    if (n > (size_t)INT_MAX)
        return cnn_error(c->ctx, CNN_ERR_INVALID_ARG, "%s: %zu floats in one allreduce (at most %d)", what, n, INT_MAX);
    size_t s = free_slot(c);
    if (s == SIZE_MAX) return cnn_error(c->ctx, CNN_ERR_MISUSE, "%s: more than %d allreduces outstanding", what, CNN_COMM_MAX_REQ);
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->comm, &c->req[s]);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Iallreduce", what);
    c->req_what[s] = what;
    *req = s;
    return CNN_OK;
}

cnn_status cnn_comm_progress(cnn_comm *c) {
    if (!c->active || c->failed) return CNN_OK;
    for (size_t i = 0; i < CNN_COMM_MAX_REQ; i++) {
        if (c->req[i] == MPI_REQUEST_NULL) continue;
        int done = 0;
        int rc = MPI_Test(&c->req[i], &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Test", c->req_what[i]);
        if (done) c->req[i] = MPI_REQUEST_NULL;
    }
    return CNN_OK;
}

cnn_status cnn_comm_wait(cnn_comm *c, size_t req) {
    if (req == SIZE_MAX || !c->active || req >= CNN_COMM_MAX_REQ || c->req[req] == MPI_REQUEST_NULL) return CNN_OK;
    cnn_status st = check_usable(c);
    if (st) return st;
    return wait_req(c, &c->req[req], c->req_what[req]);
}

cnn_status cnn_comm_allreduce_f64(cnn_comm *c, double *buf, size_t n, const char *what) {
    if (!c->active || c->size == 1) return CNN_OK;
    cnn_status st = check_usable(c);
    if (st) return st;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_Request r;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_DOUBLE, MPI_SUM, c->comm, &r);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Iallreduce", what);
        if ((st = wait_req(c, &r, what))) return st;
    }
    return CNN_OK;
}

cnn_status cnn_comm_bcast(cnn_comm *c, void *buf, size_t bytes, size_t root, const char *what) {
    if (!c->active || c->size == 1) return CNN_OK;
    cnn_status st = check_usable(c);
    if (st) return st;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_Request r;
        int rc = MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, (int)root, c->comm, &r);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Ibcast", what);
        if ((st = wait_req(c, &r, what))) return st;
    }
    return CNN_OK;
}

cnn_status cnn_comm_allgather_u64(cnn_comm *c, uint64_t v, uint64_t *all, const char *what) {
    if (!c->active || c->size == 1) {
        all[0] = v;
        return CNN_OK;
    }
    cnn_status st = check_usable(c);
    if (st) return st;
    MPI_Request r;
    int rc = MPI_Iallgather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, c->comm, &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Iallgather", what);
    return wait_req(c, &r, what);
}

cnn_status cnn_comm_barrier(cnn_comm *c, const char *what) {
    if (!c->active || c->size == 1) return CNN_OK;
    cnn_status st = check_usable(c);
    if (st) return st;
    MPI_Request r;
    int rc = MPI_Ibarrier(c->comm, &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Ibarrier", what);
    return wait_req(c, &r, what);
}

void cnn_comm_abort(cnn_comm *c, int code) {
    if (c && c->active) MPI_Abort(c->comm != MPI_COMM_NULL ? c->comm : MPI_COMM_WORLD, code);
}
