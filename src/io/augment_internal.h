/* augment_internal.h — the per-sample augmentation primitive and its random draws (src/io/augment.c), used
 * by the batch loader (src/io/loader.c) and tested exactly by tests/test_augment.c. */
#ifndef CNN_AUGMENT_INTERNAL_H
#define CNN_AUGMENT_INTERNAL_H

#include "../core/internal.h"

/* The explicit parameters of one sample's augmentation. Applied in this order to a (c, h, w) sample:
 *   crop:  z[c][i][j] = xp[c][i + crop_dy][j + crop_dx], xp = x padded with `pad` zeros on every side
 *          (crop_dy, crop_dx in 0..2*pad; pad 0: z = x);
 *   flip:  z[c][i][j] <- z[c][i][w - 1 - j];
 *   erase: z[c][i][j] = fill for erase_y <= i < erase_y + erase_h, erase_x <= j < erase_x + erase_w, every c;
 *          fill is 0, or with erase_random cnn_augment_fill_value(fill_seed, (c * h + i) * w + j). */
typedef struct cnn_augment_params {
    size_t pad, crop_dy, crop_dx;
    int flip;
    int erase;
    size_t erase_y, erase_x, erase_h, erase_w;
    int erase_random;
    uint64_t fill_seed;
} cnn_augment_params;

/* The key of one sample's randomness: cnn_hash64(cnn_hash64(seed, epoch), index). */
uint64_t cnn_augment_sample_key(uint64_t seed, uint64_t epoch, uint64_t index);
/* Draw the parameters from a private xoshiro256** stream seeded by key, in this order: crop_dy, crop_dx
 * (cnn_rng_below(2P + 1), when P > 0); flip (uniform < flip_p, when flip_p > 0); erase (uniform < erase_p,
 * when erase_p > 0; then up to 10 tries: area = h*w*U(area range), log r = U(log ratio range),
 * eh = round(sqrt(area*r)), ew = round(sqrt(area/r)); it fits when 1 <= eh <= h and 1 <= ew <= w, then
 * erase_y = below(h - eh + 1), erase_x = below(w - ew + 1)); fill_seed (always last). */
void cnn_augment_draw(const cnn_augment_spec *spec, cnn_shape shape, uint64_t key, cnn_augment_params *p);
/* Random fill value j of a sample: (cnn_hash64(fill_seed, j) >> 40) * 2^-24, in [0, 1). */
float cnn_augment_fill_value(uint64_t fill_seed, uint64_t j);
/* y = augment(x) for one sample (x and y distinct, c*h*w floats each). */
void cnn_augment_apply(const cnn_augment_params *p, cnn_shape shape, const float *x, float *y);
/* In place, per channel: y = (y - mean[c]) / std[c] in float (the dataset's formula). */
void cnn_augment_normalize(float *y, cnn_shape shape, const float *mean, const float *std);
/* y = x flipped left-right, n samples of shape. */
void cnn_augment_flip_batch(const float *x, size_t n, cnn_shape shape, float *y);

/* Tests: make the background thread (or the synchronous path) fail when it prepares the batch at overall
 * position `batch_number` (epoch * batches_per_epoch + batch); UINT64_MAX: never. */
void cnn_loader_test_fail_at(cnn_loader *ld, uint64_t batch_number);

#endif
