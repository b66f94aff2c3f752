/* image_decode.h — PNG and JPEG decoding and resampling to a network's input, shared by the image datasets
 * (dataset_images.c) and the public cnn_image_* calls (image_decode.c). Nothing here prints or touches a
 * context: errors come back as a message in err[0..errn) and a non-zero return, so the dataset loader can
 * turn a bad file into a warning and go on. */
#ifndef CNN_IMAGE_DECODE_H
#define CNN_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "cnn.h"

#define CNN_IMAGE_MAX_SIDE 16384u /* larger images are refused (a 16384^2 RGB image is 768 MiB) */

typedef struct cnn_raw_image {
    size_t w, h, c; /* c: 1 (gray) or 3 (RGB) */
    uint8_t *px;    /* h * w * c bytes, interleaved rows (HWC), from malloc */
} cnn_raw_image;

/* Decode the PNG or JPEG file at path (told apart by the signature, not the name). Alpha is composited on
 * black; palettes, 16-bit samples and gray+alpha are converted; a JPEG that ends early is an error. On
 * failure *out is zeroed and err holds "<reason>" (without the path). Returns 0 on success. */
int cnn_raw_image_read(const char *path, cnn_raw_image *out, char *err, size_t errn);
void cnn_raw_image_free(cnn_raw_image *im);

/* Area resampling (a box filter with fractional coverage: each output pixel is the mean of the source
 * area it covers) of im to s.h x s.w, converted to s.c channels (1: gray = 0.299 R + 0.587 G + 0.114 B;
 * 3: gray replicated), rounded to the nearest integer (halves up). out: s.c * s.h * s.w bytes, planar
 * (CHW). s.c must be 1 or 3. Cost O(w*h*c + s.c*s.h*s.w) reads. */
void cnn_raw_image_resample(const cnn_raw_image *im, cnn_shape s, uint8_t *out);

#endif
