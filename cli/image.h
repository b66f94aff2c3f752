/* image.h — small image I/O for the cnn tool: read PNG and JPEG (the library's cnn_image_read), write PNG (zlib
 * only, to a file or to memory for data: URIs), resize to a network's input shape, and tile maps (feature
 * maps, filters, samples) into one grid image.
 *
 * Images are 8-bit, interleaved rows (HWC), 1 (gray) or 3 (RGB) channels. Errors come back as a message in
 * err[0..errn) and a non-zero return; nothing here prints. */
#ifndef CNN_CLI_IMAGE_H
#define CNN_CLI_IMAGE_H

#include <stddef.h>

#include "cnn.h"

typedef struct cli_image {
    size_t w, h, c; /* c: 1 or 3 */
    unsigned char *px; /* h * w * c bytes, malloc'd */
} cli_image;

void cli_image_free(cli_image *im);
/* Read a PNG or JPEG (told apart by their signatures, not the file name). Alpha is composited on black;
 * palettes and 16-bit samples are converted. */
int cli_image_read(cnn_ctx *ctx, const char *path, cli_image *out, char *err, size_t errn);
/* To a network input: out gets s.c*s.h*s.w floats (CHW) in [0,1], resized with area averaging (box filter
 * with fractional coverage) and converted gray<->RGB (gray = 0.299 R + 0.587 G + 0.114 B). invert: 1 - v
 * (dark-on-light photos into Fashion-MNIST's light-on-dark). */
void cli_image_to_tensor(const cli_image *im, cnn_shape s, int invert, float *out);

/* PNG encoding of an image (c 1 or 3): to a malloc'd buffer, or to a file. */
int cli_png_encode(const cli_image *im, unsigned char **out, size_t *n, char *err, size_t errn);
int cli_png_write(const char *path, const cli_image *im, char *err, size_t errn);
/* Base64 of data (malloc'd, NUL-terminated), NULL when out of memory. */
char *cli_base64(const unsigned char *data, size_t n);

/* Tile n maps into a grid image: map i is `channels` planes of h*w floats at maps + i*map_stride (channels 1:
 * gray, 3: RGB from three planes). Each map is normalised on its own (its min..max to 0..255; a constant map
 * is mid-gray, non-finite values black), scaled up `scale` times (nearest), in `cols` columns, with a
 * `gap`-pixel border of colour `bg` between and around the maps. */
int cli_grid_render(const float *maps, size_t n, size_t map_stride, size_t channels, size_t h, size_t w,
                    size_t cols, size_t scale, size_t gap, unsigned char bg, cli_image *out, char *err,
                    size_t errn);

#endif
