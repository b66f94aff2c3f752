/* dataset_internal.h — between the readers (dataset_idx.c, dataset_cifar.c) and the dataset object (dataset.c). */
#ifndef CNN_DATASET_INTERNAL_H
#define CNN_DATASET_INTERNAL_H

#include "../core/internal.h"

#define CNN_IDX_MAX_ITEMS 100000000u /* first dimension (number of images or labels) */
#define CNN_IDX_MAX_DIM 4096u        /* every other dimension (image height, width) */

typedef struct cnn_idx_file {
    size_t ndim;
    size_t dims[3];
    size_t header_bytes; /* 4 + 4 * ndim */
    uint8_t *data;       /* dims[0] * ... bytes from cnn_mem_alloc; free with cnn_mem_free */
    size_t bytes;
} cnn_idx_file;

/* Read an IDX file of unsigned bytes with `ndim` dimensions (magic 0x00000800 | ndim), raw or gzip
 * (detected by the magic bytes 1f 8b). Validates the header (nonzero dimensions, at most
 * CNN_IDX_MAX_ITEMS items, other dimensions at most CNN_IDX_MAX_DIM) and that the data is exactly as
 * long as the header says. Errors: CNN_ERR_IO (open/read), CNN_ERR_FORMAT (content), CNN_ERR_NOMEM;
 * messages start with "<path>: ". On failure *out is zeroed. */
cnn_status cnn_idx_read(cnn_ctx *ctx, const char *path, size_t ndim, cnn_idx_file *out);

#define CNN_CIFAR_RECORD 3073u  /* bytes per CIFAR-10 record: 1 label + 3 * 32 * 32 pixels */
#define CNN_CIFAR_PIXELS 3072u
#define CNN_CIFAR_CLASSES 10u
#define CNN_CIFAR_MAX_FILES 8u  /* batch files per split (5 train, 1 test) */

/* Read CIFAR-10 binary batch files paths[0..n_paths) (1 <= n_paths <= CNN_CIFAR_MAX_FILES), their records
 * concatenated in that order: *pixels gets n * 3072 bytes ((3, 32, 32) per record, as in the file), *labels
 * n bytes (0..9), both from cnn_mem_alloc (free with cnn_mem_free). Every file is checked (regular, not
 * empty, a multiple of 3073 bytes) before anything is allocated. Errors: CNN_ERR_IO (missing, a directory,
 * unreadable), CNN_ERR_FORMAT (size, label >= 10), CNN_ERR_NOMEM; messages start with "<path>: ". On
 * failure the outputs are NULL / 0. */
cnn_status cnn_cifar_read(cnn_ctx *ctx, const char *const *paths, size_t n_paths, uint8_t **pixels,
                          uint8_t **labels, size_t *n);

#endif
