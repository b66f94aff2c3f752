/* image.c — see image.h. PNG and JPEG reading is the library's (cnn_image_read, src/io/image_decode.c:
 * libpng and libjpeg-turbo; without them that format is an error naming the package). PNG writing is done
 * here with zlib (one IDAT, filter 0 per row), so it needs no extra library. */
#include "image.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>


void cli_image_free(cli_image *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

int cli_image_read(cnn_ctx *ctx, const char *path, cli_image *out, char *err, size_t errn) {
    memset(out, 0, sizeof *out);
    cnn_image im;
    cnn_status st = cnn_image_read(ctx, path, &im);
    if (st != CNN_OK) {
        snprintf(err, errn, "image %s", cnn_ctx_last_error(ctx));
        return -1;
    }
    size_t bytes = im.w * im.h * im.c;
    out->px = malloc(bytes);
    if (!out->px) {
        cnn_image_release(ctx, &im);
        snprintf(err, errn, "image '%s': out of memory", path);
        return -1;
    }
    memcpy(out->px, im.px, bytes);
    out->w = im.w;
    out->h = im.h;
    out->c = im.c;
    cnn_image_release(ctx, &im);
    return 0;
}

/* mean of channel ch of the source over [x0,x1) x [y0,y1) (fractional coverage) */
static double box(const cli_image *im, size_t ch, double x0, double x1, double y0, double y1) {
    double sum = 0, wsum = 0;
    size_t iy0 = (size_t)y0, iy1 = (size_t)ceil(y1), ix0 = (size_t)x0, ix1 = (size_t)ceil(x1);
    if (iy1 > im->h) iy1 = im->h;
    if (ix1 > im->w) ix1 = im->w;
    for (size_t y = iy0; y < iy1; y++) {
        double wy = fmin(y1, (double)y + 1) - fmax(y0, (double)y);
        if (wy <= 0) continue;
        for (size_t x = ix0; x < ix1; x++) {
            double wx = fmin(x1, (double)x + 1) - fmax(x0, (double)x);
            if (wx <= 0) continue;
            const unsigned char *p = im->px + (y * im->w + x) * im->c;
            double v = im->c == 1 ? p[0] : ch < 3 && im->c == 3 ? p[ch] : p[0];
            sum += v * wx * wy;
            wsum += wx * wy;
        }
    }
    return wsum > 0 ? sum / wsum : 0;
}

void cli_image_to_tensor(const cli_image *im, cnn_shape s, int invert, float *out) {
    double sx = (double)im->w / (double)s.w, sy = (double)im->h / (double)s.h;
    for (size_t c = 0; c < s.c; c++)
        for (size_t y = 0; y < s.h; y++)
            for (size_t x = 0; x < s.w; x++) {
                double x0 = x * sx, x1 = (x + 1) * sx, y0 = y * sy, y1 = (y + 1) * sy;
                double v;
                if (s.c == 1 && im->c == 3)
                    v = 0.299 * box(im, 0, x0, x1, y0, y1) + 0.587 * box(im, 1, x0, x1, y0, y1) +
                        0.114 * box(im, 2, x0, x1, y0, y1);
                else
                    v = box(im, s.c == 3 ? c : 0, x0, x1, y0, y1);
                v /= 255.0;
                if (invert) v = 1.0 - v;
                out[(c * s.h + y) * s.w + x] = (float)v;
            }
}

/* ---- PNG writing ---- */

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* chunk at p: length, type, data (already at p+8), CRC; returns bytes written */
static size_t chunk(unsigned char *p, const char *type, size_t len) {
    put32(p, (uint32_t)len);
    memcpy(p + 4, type, 4);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, (uInt)(len + 4));
    put32(p + 8 + len, (uint32_t)crc);
    return len + 12;
}

int cli_png_encode(const cli_image *im, unsigned char **out, size_t *n, char *err, size_t errn) {
    *out = NULL;
    *n = 0;
    if ((im->c != 1 && im->c != 3) || im->w == 0 || im->h == 0 || im->w > (1u << 20) || im->h > (1u << 20)) {
        snprintf(err, errn, "PNG: unsupported image %zux%zu with %zu channels", im->w, im->h, im->c);
        return -1;
    }
    size_t row = im->w * im->c + 1, raw_n = row * im->h;
    unsigned char *raw = malloc(raw_n);
    uLong bound = compressBound((uLong)raw_n);
    unsigned char *buf = malloc(8 + 25 + 12 + bound + 12);
    if (!raw || !buf) {
        free(raw);
        free(buf);
        snprintf(err, errn, "PNG: out of memory");
        return -1;
    }
    for (size_t y = 0; y < im->h; y++) {
        raw[y * row] = 0;
        memcpy(raw + y * row + 1, im->px + y * im->w * im->c, im->w * im->c);
    }
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t pos = 0;
    memcpy(buf, sig, 8);
    pos = 8;
    unsigned char *ih = buf + pos + 8;
    put32(ih, (uint32_t)im->w);
    put32(ih + 4, (uint32_t)im->h);
    ih[8] = 8;                      /* bit depth */
    ih[9] = im->c == 3 ? 2 : 0;     /* colour type: truecolour / gray */
    ih[10] = ih[11] = ih[12] = 0;   /* deflate, filter set 0, no interlace */
    pos += chunk(buf + pos, "IHDR", 13);
    uLongf zn = bound;
    if (compress2(buf + pos + 8, &zn, raw, (uLong)raw_n, 6) != Z_OK) {
        free(raw);
        free(buf);
        snprintf(err, errn, "PNG: compression failed");
        return -1;
    }
    free(raw);
    pos += chunk(buf + pos, "IDAT", zn);
    pos += chunk(buf + pos, "IEND", 0);
    *out = buf;
    *n = pos;
    return 0;
}

int cli_png_write(const char *path, const cli_image *im, char *err, size_t errn) {
    unsigned char *buf;
    size_t n;
    if (cli_png_encode(im, &buf, &n, err, errn)) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errn, "'%s': %s", path, strerror(errno));
        free(buf);
        return -1;
    }
    int bad = fwrite(buf, 1, n, f) != n;
    bad |= fclose(f) != 0;
    free(buf);
    if (bad) {
        snprintf(err, errn, "'%s': write failed", path);
        return -1;
    }
    return 0;
}

char *cli_base64(const unsigned char *d, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc((n + 2) / 3 * 4 + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *p++ = tab[v >> 18 & 63];
        *p++ = tab[v >> 12 & 63];
        *p++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *p = 0;
    return s;
}

int cli_grid_render(const float *maps, size_t n, size_t map_stride, size_t channels, size_t h, size_t w,
                    size_t cols, size_t scale, size_t gap, unsigned char bg, cli_image *out, char *err,
                    size_t errn) {
    memset(out, 0, sizeof *out);
    if (n == 0 || h == 0 || w == 0 || (channels != 1 && channels != 3) || scale == 0) {
        snprintf(err, errn, "nothing to draw (%zu maps of %zux%zu)", n, h, w);
        return -1;
    }
    if (cols == 0) cols = 1;
    if (cols > n) cols = n;
    size_t rows = (n + cols - 1) / cols;
    size_t cw = w * scale + gap, ch = h * scale + gap;
    if (cw > 20000 / (cols ? cols : 1) || ch > 20000 / rows) {
        snprintf(err, errn, "grid of %zu maps of %zux%zu at scale %zu is too large", n, h, w, scale);
        return -1;
    }
    out->w = cols * cw + gap;
    out->h = rows * ch + gap;
    out->c = channels;
    out->px = malloc(out->w * out->h * channels);
    if (!out->px) {
        snprintf(err, errn, "out of memory");
        return -1;
    }
    memset(out->px, bg, out->w * out->h * channels);
    for (size_t i = 0; i < n; i++) {
        const float *m = maps + i * map_stride;
        float lo = INFINITY, hi = -INFINITY;
        for (size_t j = 0; j < channels * h * w; j++)
            if (isfinite(m[j])) {
                if (m[j] < lo) lo = m[j];
                if (m[j] > hi) hi = m[j];
            }
        size_t ox = gap + (i % cols) * cw, oy = gap + (i / cols) * ch;
        for (size_t y = 0; y < h * scale; y++)
            for (size_t x = 0; x < w * scale; x++)
                for (size_t c = 0; c < channels; c++) {
                    float v = m[(c * h + y / scale) * w + x / scale];
                    unsigned char b;
                    if (!isfinite(v)) b = 0;
                    else if (!(hi > lo)) b = 128;
                    else b = (unsigned char)lrintf((v - lo) / (hi - lo) * 255.0f);
                    out->px[((oy + y) * out->w + ox + x) * channels + c] = b;
                }
    }
    return 0;
}
