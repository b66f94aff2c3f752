/* dist_none.c — the one-process communicator (built when CNN_MPI is OFF; dist.h). Every collective is the
 * identity. A process started by a launcher with more than one rank refuses to run: N copies of a
 * single-process training would each write the same outputs. */
#include "dist.h"

#include <stdlib.h>
#include <string.h>

struct cnn_comm {
    cnn_ctx *ctx;
};

static long launcher_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", NULL};
    for (size_t i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strtol(v, NULL, 10);
    }
    return 1;
}

cnn_status cnn_comm_open(cnn_ctx *ctx, double timeout_s, cnn_comm **out) {
    (void)timeout_s;
    *out = NULL;
    long n = launcher_size();
    if (n > 1)
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                         "started by a launcher with %ld ranks, but this build has no MPI (configure with "
                         "-DCNN_MPI=ON after apt-get install libopenmpi-dev)", n);
    cnn_comm *c = cnn_mem_calloc(ctx, 1, sizeof *c);
    if (!c) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory creating the communicator");
    c->ctx = ctx;
    *out = c;
    return CNN_OK;
}

void cnn_comm_close(cnn_comm *c) {
    if (c) cnn_mem_free(c->ctx, c);
}
size_t cnn_comm_rank(const cnn_comm *c) { (void)c; return 0; }
size_t cnn_comm_size(const cnn_comm *c) { (void)c; return 1; }
const char *cnn_comm_library(const cnn_comm *c) { (void)c; return "none (built without MPI)"; }
void cnn_comm_set_timeout(cnn_comm *c, double timeout_s) { (void)c; (void)timeout_s; }

cnn_status cnn_comm_iallreduce_f32(cnn_comm *c, float *buf, size_t n, size_t *req, const char *what) {
    (void)c; (void)buf; (void)n; (void)what;
    *req = 0;
    return CNN_OK;
}
cnn_status cnn_comm_progress(cnn_comm *c) { (void)c; return CNN_OK; }
cnn_status cnn_comm_wait(cnn_comm *c, size_t req) { (void)c; (void)req; return CNN_OK; }
cnn_status cnn_comm_allreduce_f64(cnn_comm *c, double *buf, size_t n, const char *what) {
    (void)c; (void)buf; (void)n; (void)what;
    return CNN_OK;
}
cnn_status cnn_comm_bcast(cnn_comm *c, void *buf, size_t bytes, size_t root, const char *what) {
    (void)c; (void)buf; (void)bytes; (void)root; (void)what;
    return CNN_OK;
}
cnn_status cnn_comm_allgather_u64(cnn_comm *c, uint64_t v, uint64_t *all, const char *what) {
    (void)c; (void)what;
    all[0] = v;
    return CNN_OK;
}
cnn_status cnn_comm_barrier(cnn_comm *c, const char *what) { (void)c; (void)what; return CNN_OK; }
void cnn_comm_abort(cnn_comm *c, int code) { (void)c; (void)code; }
