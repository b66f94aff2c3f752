/* bn_sync.h — the hook that synchronised batchnorm (data-parallel training, `--sync-bn`) goes through.
 * batchnorm.c calls it; src/dist/ddp.c fills it. The layer does not know what is behind it (MPI or nothing).
 *
 * In a training pass a batchnorm layer with a hook set reduces its per-channel sums over all ranks, so that
 * every rank normalises with the statistics of the global batch:
 *   forward   buf = [sum x per channel (c), local count m (1)]  -> global sums and M; mean = S / M
 *             buf = [sum (x - mean)^2 per channel (c)]          -> global; var = V / M
 *   backward  buf = [sum dy (c), sum dy * xhat (c)]               (grad = 1)
 * Values are doubles; the hook sums them in place. grad != 0 marks gradient sums: the hook weighs them
 * like the rank's parameter gradients (a shard's share of the global batch) and returns them in the
 * rank's own scale, so uneven shards stay exact. Returns 0 on success; on failure the values in buf are
 * unspecified and the hook's owner records the error (the pass has no error path). */
#ifndef CNN_BN_SYNC_H
#define CNN_BN_SYNC_H

#include <stddef.h>

struct cnn_layer;

typedef struct cnn_bn_sync {
    int (*allreduce_sum)(void *user, double *buf, size_t n, int grad);
    void *user;
} cnn_bn_sync;

/* Set (or clear, with NULL) the hook of a batchnorm layer; the hook must outlive its use. Returns 0, or -1
 * when L is not a batchnorm layer. */
int cnn_batchnorm_set_sync(struct cnn_layer *L, const cnn_bn_sync *sync);
/* The hook set on a batchnorm layer (NULL: none, or L is not a batchnorm layer). */
const cnn_bn_sync *cnn_batchnorm_sync(const struct cnn_layer *L);

#endif
