/* fuzz_idx.c — libFuzzer target: IDX image and label files, raw or gzip (src/io/dataset_idx.c). The input
 * is split in two: a 2-byte little-endian length L, then L bytes of the images file (fewer when the input is
 * shorter), the rest is the labels file. A dataset that loads is gathered (first and last sample).
 * Seeds: fuzz/corpus/idx/ (slices of the shipped Fashion-MNIST sample, raw and gzip). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t n_img = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (n_img > size) n_img = size;
    cnn_ctx *ctx = fuzz_ctx();
    char pi[64], pl[64];
    int fi = fuzz_memfile(data, n_img, pi);
    int fl = fuzz_memfile(data + n_img, size - n_img, pl);
    cnn_dataset *ds = NULL;
    cnn_status st = cnn_dataset_load_idx(ctx, pi, pl, &ds);
    fuzz_check_error(ctx, st);
    if (st == CNN_OK) {
        size_t n = cnn_dataset_size(ds);
        cnn_shape s = cnn_dataset_shape(ds);
        if (n > 0) {
            size_t idx[2] = {0, n - 1};
            float *x = malloc(2 * s.c * s.h * s.w * sizeof *x + 1);
            int32_t lab[2];
            if (!x) abort();
            st = cnn_dataset_gather(ds, idx, 2, x, lab);
            fuzz_check_error(ctx, st);
            if (st == CNN_OK && (lab[0] < 0 || (size_t)lab[0] >= cnn_dataset_classes(ds))) abort();
            free(x);
        }
        cnn_dataset_free(ds);
    }
    close(fi);
    close(fl);
    return 0;
}
