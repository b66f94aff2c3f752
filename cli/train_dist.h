/* train_dist.h — the distributed side of `cnn train` (train_dist.c; docs/distributed.md). cmd_train.c calls
 * these at a few points; in a single process they do nothing (or what cmd_train.c did before). One run per
 * process: the state is kept in train_dist.c. */
#ifndef CLI_TRAIN_DIST_H
#define CLI_TRAIN_DIST_H

#include "cnn.h"

#include <stddef.h>
#include <stdint.h>

/* Join the job (mpirun) and check the global batch divides by the ranks. Returns 0 or an exit status
 * (the message printed). */
int cli_dist_begin(cnn_ctx *ctx, size_t batch, int sync_bn, double timeout_s);
size_t cli_dist_rank(void);
size_t cli_dist_size(void);
/* On ranks other than 0: no progress, no stdout, no files (outputs are rank 0's). */
void cli_dist_quiet_rank(int *quiet, int *tty, int *json, const char **out, const char **checkpoint,
                         const char **log_path, const char **report_dir);
/* After the parameters are initialised or loaded (compiled for training): rank 0's weights to all, the
 * gradient and sync-bn hooks, a per-rank dropout seed; rank 0 prints one line about the job. */
int cli_dist_prepare(cnn_net *net, int quiet);
/* The step's shard: *off and *nb (a global batch's first index and size) become this rank's part.
 * Returns nonzero when the batch has fewer samples than ranks (all ranks skip it). */
int cli_dist_shard_batch(size_t *off, size_t *nb);
/* After backward: the averaged gradients. */
cnn_status cli_dist_grads(void);
/* End of an epoch: the epoch's sums over ranks, buffers averaged, the weight checksums compared. */
int cli_dist_epoch_end(cnn_net *net, size_t epoch, double *loss_sum, size_t *correct, size_t *seen);
cnn_status cli_dist_evaluate(cnn_net *net, const cnn_dataset *ds, size_t batch, int tta, cnn_eval_result *ev);
/* Leave the job. rc != 0 with several ranks ends the whole job (the others may wait for this rank). */
void cli_dist_end(int rc);

#endif
