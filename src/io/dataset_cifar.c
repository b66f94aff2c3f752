/* dataset_cifar.c — CIFAR-10 binary batch files (the "binary version" of
 * https://www.cs.toronto.edu/~kriz/cifar.html: data_batch_1.bin .. data_batch_5.bin, test_batch.bin).
 *
 * Format: a file is a sequence of 3073-byte records and nothing else: 1 label byte (0..9), then 3072
 * pixel bytes, the 1024 red values of the 32x32 image in row-major order, then 1024 green, then 1024 blue.
 * The distributed files hold 10000 records each; any positive multiple of 3073 bytes is accepted here.
 *
 * Checks, before anything is allocated (stat of every file): a regular file (a directory or a device is
 * CNN_ERR_IO), not empty and a multiple of 3073 bytes (CNN_ERR_FORMAT, naming the file, its size and the
 * remainder), at most CNN_IDX_MAX_ITEMS records in all. While reading: every label < 10 (CNN_ERR_FORMAT
 * naming the file, the record and its byte offset) and the file still as long as stat said (CNN_ERR_IO).
 * Records are read CHUNK_RECORDS at a time; the pixels land contiguous and already in (c, h, w) = (3, 32,
 * 32) order, so the dataset object takes them as they are. */
#define _POSIX_C_SOURCE 200809L /* fileno */
#include "dataset_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK_RECORDS 64u

/* Size in bytes of a regular file, or an error naming it. */
static cnn_status batch_size(cnn_ctx *ctx, const char *path, uint64_t *records) {
    struct stat sb;
    *records = 0;
    if (stat(path, &sb) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return cnn_error(ctx, CNN_ERR_IO, "%s: is a directory, expected a CIFAR-10 batch file", path);
    if (!S_ISREG(sb.st_mode)) return cnn_error(ctx, CNN_ERR_IO, "%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    if (size == 0)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: file is empty (expected CIFAR-10 records of %u bytes)", path,
                         CNN_CIFAR_RECORD);
    if (size % CNN_CIFAR_RECORD != 0)
        return cnn_error(ctx, CNN_ERR_FORMAT,
                         "%s: size %llu bytes is not a multiple of the %u-byte CIFAR-10 record (%llu records and "
                         "%llu bytes left over)",
                         path, (unsigned long long)size, CNN_CIFAR_RECORD,
                         (unsigned long long)(size / CNN_CIFAR_RECORD), (unsigned long long)(size % CNN_CIFAR_RECORD));
    *records = size / CNN_CIFAR_RECORD;
    return CNN_OK;
}

/* Read one batch file of `records` records into pixels (records * 3072) and labels (records). */
static cnn_status read_batch(cnn_ctx *ctx, const char *path, uint64_t records, unsigned char *chunk,
                             uint8_t *pixels, uint8_t *labels) {
    cnn_status st = CNN_OK;
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t done = 0;
    while (done < records) {
        size_t want = records - done < CHUNK_RECORDS ? (size_t)(records - done) : CHUNK_RECORDS;
        size_t got = fread(chunk, 1, want * CNN_CIFAR_RECORD, f);
        if (got < want * CNN_CIFAR_RECORD) {
            if (ferror(f))
                CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: read error at offset %llu: %s", path,
                                  (unsigned long long)(done * CNN_CIFAR_RECORD + got), strerror(errno)));
            CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: file changed while reading (expected %llu bytes, read %llu)",
                              path, (unsigned long long)(records * CNN_CIFAR_RECORD),
                              (unsigned long long)(done * CNN_CIFAR_RECORD + got)));
        }
        for (size_t r = 0; r < want; r++) {
            const unsigned char *rec = chunk + r * CNN_CIFAR_RECORD;
            uint64_t k = done + r;
            if (rec[0] >= CNN_CIFAR_CLASSES)
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                                  "%s: record %llu (byte offset %llu) has label %u, expected 0..%u", path,
                                  (unsigned long long)k, (unsigned long long)(k * CNN_CIFAR_RECORD), rec[0],
                                  CNN_CIFAR_CLASSES - 1));
            labels[k] = rec[0];
            memcpy(pixels + k * CNN_CIFAR_PIXELS, rec + 1, CNN_CIFAR_PIXELS);
        }
        done += want;
    }
    unsigned char extra;
    if (fread(&extra, 1, 1, f) != 0)
        CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: file changed while reading (longer than %llu bytes)", path,
                          (unsigned long long)(records * CNN_CIFAR_RECORD)));
cleanup:
    fclose(f);
    return st;
}

cnn_status cnn_cifar_read(cnn_ctx *ctx, const char *const *paths, size_t n_paths, uint8_t **pixels_out,
                          uint8_t **labels_out, size_t *n_out) {
    cnn_status st = CNN_OK;
    *pixels_out = NULL;
    *labels_out = NULL;
    *n_out = 0;
    uint8_t *pixels = NULL, *labels = NULL;
    unsigned char *chunk = NULL;
    uint64_t counts[CNN_CIFAR_MAX_FILES];
    uint64_t total = 0;
    CNN_ASSERT(n_paths >= 1 && n_paths <= CNN_CIFAR_MAX_FILES);
    for (size_t i = 0; i < n_paths; i++) {
        CNN_TRY(batch_size(ctx, paths[i], &counts[i]));
        total += counts[i];
        if (total > CNN_IDX_MAX_ITEMS)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: more than %u CIFAR-10 records in all", paths[i],
                              CNN_IDX_MAX_ITEMS));
    }
    size_t n = (size_t)total, bytes;
    if (!cnn_size_mul(n, CNN_CIFAR_PIXELS, &bytes))
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %zu CIFAR-10 records overflow the address space", paths[0], n));
    CNN_TRY(cnn_mem_alloc_checked(ctx, bytes, "CIFAR-10 pixels", (void **)&pixels));
    CNN_TRY(cnn_mem_alloc_checked(ctx, n, "CIFAR-10 labels", (void **)&labels));
    CNN_TRY(cnn_mem_alloc_checked(ctx, (size_t)CHUNK_RECORDS * CNN_CIFAR_RECORD, "CIFAR-10 read buffer",
                                  (void **)&chunk));
    size_t at = 0;
    for (size_t i = 0; i < n_paths; i++) {
        CNN_TRY(read_batch(ctx, paths[i], counts[i], chunk, pixels + at * CNN_CIFAR_PIXELS, labels + at));
        at += (size_t)counts[i];
    }
    *pixels_out = pixels;
    *labels_out = labels;
    *n_out = n;
    pixels = labels = NULL;
cleanup:
    cnn_mem_free(ctx, chunk);
    cnn_mem_free(ctx, pixels);
    cnn_mem_free(ctx, labels);
    return st;
}
