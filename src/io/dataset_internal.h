/* dataset_internal.h — between the readers (dataset_idx.c, dataset_cifar.c, dataset_images.c) and the
 * dataset object (dataset.c). */
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

/* A growable list of strings (class names, warnings), each from cnn_mem_alloc. */
typedef struct cnn_strlist {
    char **s;
    size_t n, cap;
} cnn_strlist;
/* Append a formatted string; CNN_ERR_NOMEM (with a message) when it cannot. */
cnn_status cnn_strlist_push(cnn_ctx *ctx, cnn_strlist *l, const char *fmt, ...) CNN_PRINTF(3, 4);
void cnn_strlist_free(cnn_ctx *ctx, cnn_strlist *l);

#define CNN_DATASET_MAX_WARNINGS 1000u /* kept per dataset; the last one counts the rest */
#define CNN_DATASET_MAX_NAMES 65536u   /* default names "0".."N-1" are made up to this many classes */

struct cnn_dataset {
    cnn_ctx *ctx;
    size_t n;         /* samples */
    cnn_shape shape;  /* per sample */
    size_t count;     /* c * h * w */
    size_t plane;     /* h * w */
    size_t classes;
    uint8_t *u8;      /* n * count pixels, or NULL */
    float *f32;       /* n * count values, or NULL */
    int32_t *labels;  /* n */
    int normalized;
    float *mean, *std; /* c each; 0 and 1 when not normalized */
    float *lut;       /* c * 256 (uint8 data only) */
    const char *kind; /* "idx", "cifar10", "memory", "images", "list" */
    cnn_strlist names;    /* classes names, or empty (cnn_dataset_class_name gives NULL) */
    cnn_strlist warnings; /* files skipped at load */
    size_t warnings_total;
};

/* A dataset of n uint8 samples of `shape`, labels zeroed, no names (dataset.c). */
cnn_status cnn_dataset_new_u8(cnn_ctx *ctx, size_t n, cnn_shape shape, cnn_dataset **out);
/* Record a warning (kept up to CNN_DATASET_MAX_WARNINGS). */
cnn_status cnn_dataset_warn(cnn_dataset *ds, const char *fmt, ...) CNN_PRINTF(2, 3);
/* Names "0".."classes-1" when the dataset has none (and classes <= CNN_DATASET_MAX_NAMES). */
cnn_status cnn_dataset_default_names(cnn_dataset *ds);
/* Read a class-name file (one name per line; blank lines at the end ignored, names trimmed of spaces and
 * CR). *found = 0 (and nothing read) when it does not exist. Errors name the file and line. */
cnn_status cnn_read_names_file(cnn_ctx *ctx, const char *path, cnn_strlist *out, int *found);

/* Image datasets (dataset_images.c). `dir` holds one subfolder per class; its images are decoded, resampled
 * to opt->shape (zero: the first image's size and channels) and stored as uint8. opt->class_names (when
 * given) fixes the classes and their order; folders not among them are skipped with a warning. */
cnn_status cnn_dataset_load_image_folder(cnn_ctx *ctx, const char *dir, const cnn_dataset_options *opt,
                                         cnn_dataset **out);
/* Sorted names of the subfolders of dir (hidden ones skipped) appended to out, without duplicates. A
 * missing dir adds nothing when missing_ok. */
cnn_status cnn_list_subfolders(cnn_ctx *ctx, const char *dir, int missing_ok, cnn_strlist *out);

#endif
