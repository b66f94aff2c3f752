/* dist.h — the communicator behind data-parallel training: the only interface between the library and MPI.
 * dist_mpi.c implements it on Open MPI (the only file that includes mpi.h; built with CNN_MPI=ON),
 * dist_none.c for one process (built otherwise). ddp.c (the public cnn_dist_* calls) uses nothing else.
 *
 * Every collective is started non-blocking and completed by polling (MPI_Test) against a deadline, so a
 * dead or stuck rank gives CNN_ERR_COMM with a message naming the collective, this rank and the timeout
 * instead of a hang; the communicator returns errors (MPI_ERRORS_RETURN) instead of aborting. After a
 * failure the communicator is unusable: the caller reports and ends the job (cnn_comm_abort). */
#ifndef CNN_DIST_H
#define CNN_DIST_H

#include "../core/internal.h"

typedef struct cnn_comm cnn_comm;

/* Join the job. Under a launcher (mpirun: OMPI_COMM_WORLD_SIZE / PMIX_RANK in the environment) this
 * initialises MPI and duplicates the world communicator; otherwise it is a one-process communicator and
 * MPI is not touched (the tool works without mpirun). timeout_s > 0: the deadline of every collective. */
cnn_status cnn_comm_open(cnn_ctx *ctx, double timeout_s, cnn_comm **out);
/* Leave the job (MPI_Finalize when this process initialised MPI). NULL is a no-op. */
void cnn_comm_close(cnn_comm *c);
size_t cnn_comm_rank(const cnn_comm *c);
size_t cnn_comm_size(const cnn_comm *c);
/* "Open MPI v4.1.4, ..." or "none (built without MPI)"; a static or comm-owned string. */
const char *cnn_comm_library(const cnn_comm *c);
void cnn_comm_set_timeout(cnn_comm *c, double timeout_s);

/* Non-blocking in-place sum of n floats over all ranks; *req identifies it for test/wait. At most
 * CNN_COMM_MAX_REQ outstanding. */
#define CNN_COMM_MAX_REQ 256
cnn_status cnn_comm_iallreduce_f32(cnn_comm *c, float *buf, size_t n, size_t *req, const char *what);
/* Progress outstanding requests (MPI_Test on each); never blocks. */
cnn_status cnn_comm_progress(cnn_comm *c);
/* Wait for one request, polling until the deadline. */
cnn_status cnn_comm_wait(cnn_comm *c, size_t req);
/* Blocking (with the deadline) collectives. */
cnn_status cnn_comm_allreduce_f64(cnn_comm *c, double *buf, size_t n, const char *what);
cnn_status cnn_comm_bcast(cnn_comm *c, void *buf, size_t bytes, size_t root, const char *what);
/* all[0..size) = every rank's v */
cnn_status cnn_comm_allgather_u64(cnn_comm *c, uint64_t v, uint64_t *all, const char *what);
cnn_status cnn_comm_barrier(cnn_comm *c, const char *what);
/* End every process of the job with this exit code (MPI_Abort); returns only without MPI. */
void cnn_comm_abort(cnn_comm *c, int code);

#endif
