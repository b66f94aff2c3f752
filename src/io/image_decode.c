/* image_decode.c — PNG (libpng's simplified png_image API: no longjmp on our side) and JPEG (libjpeg-turbo
 * with a setjmp error handler whose messages are kept, never printed) decoding, area resampling, and the
 * public cnn_image_* calls. Built with CNN_HAVE_PNG / CNN_HAVE_JPEG when CMake found libpng-dev /
 * libjpeg-dev; without one, reading that format is an error that names the package to install.
 *
 * Resampling: a separable box filter with fractional coverage (area averaging): output column x covers the
 * source interval [x*W/w, (x+1)*W/w), each source column weighted by the length of its overlap; then the
 * same down the rows. The same size is the identity; an integer downscale is the plain mean of each block.
 * Upscaling degenerates to nearest-neighbour with a blend at the seams. Sums in double. */
#define _POSIX_C_SOURCE 200809L
#include "image_decode.h"

#include "../core/internal.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CNN_HAVE_PNG
#include <png.h>
#endif
#ifdef CNN_HAVE_JPEG
#include <jerror.h>
#include <jpeglib.h>
#endif

void cnn_raw_image_free(cnn_raw_image *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

#ifdef CNN_HAVE_PNG
static int read_png(const char *path, cnn_raw_image *out, char *err, size_t errn) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        snprintf(err, errn, "not a readable PNG (%s)", im.message);
        png_image_free(&im);
        return -1;
    }
    if (im.width == 0 || im.height == 0 || im.width > CNN_IMAGE_MAX_SIDE || im.height > CNN_IMAGE_MAX_SIDE) {
        snprintf(err, errn, "PNG of %ux%u pixels (at most %u per side)", (unsigned)im.width, (unsigned)im.height,
                 CNN_IMAGE_MAX_SIDE);
        png_image_free(&im);
        return -1;
    }
    int color = (im.format & PNG_FORMAT_FLAG_COLOR) != 0;
    im.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    size_t c = color ? 3 : 1;
    unsigned char *px = malloc((size_t)im.width * im.height * c);
    if (!px) {
        snprintf(err, errn, "out of memory decoding a %ux%u PNG", (unsigned)im.width, (unsigned)im.height);
        png_image_free(&im);
        return -1;
    }
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&im, &black, px, 0, NULL)) {
        snprintf(err, errn, "corrupt PNG (%s)", im.message);
        free(px);
        png_image_free(&im);
        return -1;
    }
    out->w = im.width;
    out->h = im.height;
    out->c = c;
    out->px = px;
    png_image_free(&im);
    return 0;
}
#endif

#ifdef CNN_HAVE_JPEG
typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int eof; /* the data ended early (libjpeg warns and pads with gray; we refuse the image) */
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void jpeg_fail(j_common_ptr cinfo) {
    jerr *e = (jerr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_note(j_common_ptr cinfo, int level) {
    jerr *e = (jerr *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->eof = 1;
}

static int read_jpeg(const char *path, cnn_raw_image *out, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "%s", strerror(errno));
        return -1;
    }
    struct jpeg_decompress_struct ci;
    jerr e;
    memset(&e, 0, sizeof e);
    unsigned char *volatile px = NULL;
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_fail;
    e.pub.emit_message = jpeg_note;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&ci);
        fclose(f);
        free(px);
        snprintf(err, errn, "corrupt JPEG (%s)", e.msg);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    size_t w = ci.output_width, h = ci.output_height, c = (size_t)ci.output_components;
    if (w == 0 || h == 0 || w > CNN_IMAGE_MAX_SIDE || h > CNN_IMAGE_MAX_SIDE || (c != 1 && c != 3)) {
        snprintf(err, errn, "JPEG of %zux%zu pixels with %zu components is not supported", w, h, c);
        jpeg_destroy_decompress(&ci);
        fclose(f);
        return -1;
    }
    px = malloc(w * h * c);
    if (!px) {
        snprintf(err, errn, "out of memory decoding a %zux%zu JPEG", w, h);
        jpeg_destroy_decompress(&ci);
        fclose(f);
        return -1;
    }
    while (ci.output_scanline < ci.output_height && !e.eof) {
        JSAMPROW row = px + (size_t)ci.output_scanline * w * c;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    if (e.eof) {
        snprintf(err, errn, "truncated JPEG (the data ends at row %u of %zu)", (unsigned)ci.output_scanline, h);
        jpeg_destroy_decompress(&ci);
        fclose(f);
        free(px);
        return -1;
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    fclose(f);
    out->w = w;
    out->h = h;
    out->c = c;
    out->px = px;
    return 0;
}
#endif

int cnn_raw_image_read(const char *path, cnn_raw_image *out, char *err, size_t errn) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "cannot open: %s", strerror(errno));
        return -1;
    }
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, f);
    fclose(f);
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (got == 8 && memcmp(sig, png_sig, 8) == 0) {
#ifdef CNN_HAVE_PNG
        return read_png(path, out, err, errn);
#else
        snprintf(err, errn, "PNG support was not built (install libpng-dev and rebuild)");
        return -1;
#endif
    }
    if (got >= 3 && sig[0] == 0xff && sig[1] == 0xd8 && sig[2] == 0xff) {
#ifdef CNN_HAVE_JPEG
        return read_jpeg(path, out, err, errn);
#else
        snprintf(err, errn, "JPEG support was not built (install libjpeg-dev and rebuild)");
        return -1;
#endif
    }
    snprintf(err, errn, "not a PNG or JPEG file (%s)", got == 0 ? "empty file" : "unknown signature");
    return -1;
}

/* Box-filter weights: for each output index o in [0, n_out), the source range [lo[o], hi[o]) and weights
 * wt[o * span + (i - lo[o])], normalised to sum 1. span = the most source indices an output touches. */
typedef struct box_axis {
    size_t span;
    size_t *lo, *hi;
    double *wt;
} box_axis;

static int box_axis_make(box_axis *a, size_t n_in, size_t n_out) {
    a->span = n_in / n_out + 2;
    a->lo = malloc(n_out * sizeof *a->lo);
    a->hi = malloc(n_out * sizeof *a->hi);
    a->wt = calloc(n_out * a->span, sizeof *a->wt);
    if (!a->lo || !a->hi || !a->wt) return -1;
    const double scale = (double)n_in / (double)n_out;
    for (size_t o = 0; o < n_out; o++) {
        double x0 = (double)o * (double)n_in / (double)n_out, x1 = (double)(o + 1) * (double)n_in / (double)n_out;
        size_t lo = (size_t)floor(x0), hi = (size_t)ceil(x1);
        if (hi > n_in) hi = n_in;
        if (hi <= lo) hi = lo + 1;
        if (hi - lo > a->span) hi = lo + a->span;
        a->lo[o] = lo;
        a->hi[o] = hi;
        for (size_t i = lo; i < hi; i++) {
            double w = fmin(x1, (double)i + 1) - fmax(x0, (double)i);
            a->wt[o * a->span + (i - lo)] = w > 0 ? w / scale : 0;
        }
    }
    return 0;
}

static void box_axis_free(box_axis *a) {
    free(a->lo);
    free(a->hi);
    free(a->wt);
}

static uint8_t to_u8(double v) {
    v = floor(v + 0.5);
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

void cnn_raw_image_resample(const cnn_raw_image *im, cnn_shape s, uint8_t *out) {
    const size_t W = im->w, H = im->h, C = im->c, ow = s.w, oh = s.h;
    if (W == ow && H == oh && (C == s.c || C == 1)) { /* the same size: the identity (gray may be replicated) */
        for (size_t c = 0; c < s.c; c++)
            for (size_t i = 0; i < W * H; i++) out[c * W * H + i] = im->px[i * C + (C == 1 ? 0 : c)];
        return;
    }
    box_axis ax = {0, NULL, NULL, NULL}, ay = {0, NULL, NULL, NULL};
    double *tmp = NULL; /* H rows of ow * C: the horizontal pass */
    if (box_axis_make(&ax, W, ow) != 0 || box_axis_make(&ay, H, oh) != 0 ||
        !(tmp = malloc(H * ow * C * sizeof *tmp))) {
        /* out of memory: nearest neighbour needs nothing */
        for (size_t c = 0; c < s.c; c++)
            for (size_t y = 0; y < oh; y++)
                for (size_t x = 0; x < ow; x++) {
                    const uint8_t *p = im->px + ((y * H / oh) * W + x * W / ow) * C;
                    double v = C == 1 ? p[0] : s.c == 3 ? p[c] : 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                    out[(c * oh + y) * ow + x] = to_u8(v);
                }
        goto done;
    }
    for (size_t y = 0; y < H; y++) {
        const uint8_t *row = im->px + y * W * C;
        for (size_t x = 0; x < ow; x++) {
            const double *w = ax.wt + x * ax.span;
            for (size_t c = 0; c < C; c++) {
                double sum = 0;
                for (size_t i = ax.lo[x]; i < ax.hi[x]; i++) sum += w[i - ax.lo[x]] * row[i * C + c];
                tmp[(y * ow + x) * C + c] = sum;
            }
        }
    }
    for (size_t y = 0; y < oh; y++) {
        const double *w = ay.wt + y * ay.span;
        for (size_t x = 0; x < ow; x++) {
            double v[3] = {0, 0, 0};
            for (size_t c = 0; c < C; c++)
                for (size_t i = ay.lo[y]; i < ay.hi[y]; i++) v[c] += w[i - ay.lo[y]] * tmp[(i * ow + x) * C + c];
            for (size_t c = 0; c < s.c; c++) {
                double r = C == 1 ? v[0] : s.c == 3 ? v[c] : 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
                out[(c * oh + y) * ow + x] = to_u8(r);
            }
        }
    }
done:
    free(tmp);
    box_axis_free(&ax);
    box_axis_free(&ay);
}

/* ---- public calls ---- */

unsigned cnn_image_formats(void) {
    unsigned f = 0;
#ifdef CNN_HAVE_PNG
    f |= CNN_IMAGE_PNG;
#endif
#ifdef CNN_HAVE_JPEG
    f |= CNN_IMAGE_JPEG;
#endif
    return f;
}

cnn_status cnn_image_read(cnn_ctx *ctx, const char *path, cnn_image *out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_image_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_image_read: NULL argument");
    cnn_raw_image im;
    char err[512];
    if (cnn_raw_image_read(path, &im, err, sizeof err) != 0) {
        int unsupported = strstr(err, "was not built") != NULL;
        int io = strncmp(err, "cannot open", 11) == 0;
        return cnn_error(ctx, unsupported ? CNN_ERR_UNSUPPORTED : io ? CNN_ERR_IO : CNN_ERR_FORMAT, "%s: %s", path, err);
    }
    size_t bytes = im.w * im.h * im.c;
    void *px;
    cnn_status st = cnn_mem_alloc_checked(ctx, bytes, "a decoded image", &px);
    if (st == CNN_OK) {
        memcpy(px, im.px, bytes);
        out->w = im.w;
        out->h = im.h;
        out->c = im.c;
        out->px = px;
    }
    cnn_raw_image_free(&im);
    return st;
}

void cnn_image_release(cnn_ctx *ctx, cnn_image *im) {
    if (!im) return;
    if (ctx) cnn_mem_free(ctx, im->px);
    memset(im, 0, sizeof *im);
}

cnn_status cnn_image_resample(cnn_ctx *ctx, const cnn_image *im, cnn_shape s, uint8_t *out) {
    if (!im || !out || !im->px) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_image_resample: NULL argument");
    if ((im->c != 1 && im->c != 3) || im->w == 0 || im->h == 0)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_image_resample: image of %zux%zu with %zu channels", im->w,
                         im->h, im->c);
    if ((s.c != 1 && s.c != 3) || s.h == 0 || s.w == 0 || s.h > CNN_IMAGE_MAX_SIDE || s.w > CNN_IMAGE_MAX_SIDE)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                         "cnn_image_resample: target (%zu, %zu, %zu): expected 1 or 3 channels and 1..%u per side", s.c,
                         s.h, s.w, CNN_IMAGE_MAX_SIDE);
    cnn_raw_image r = {im->w, im->h, im->c, im->px};
    cnn_raw_image_resample(&r, s, out);
    return CNN_OK;
}
