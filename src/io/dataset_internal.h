/* dataset_internal.h — between the IDX reader (dataset_idx.c) and the dataset object (dataset.c). */
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

#endif
