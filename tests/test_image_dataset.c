/* test_image_dataset.c — image-folder and list datasets and class names (part "data").
 *
 * Every image is generated here (libpng / libjpeg writers in the test) at odd sizes, RGB and gray. Checked:
 * exact pixels at the identity size; 2x downscales of a checkerboard and of a constant (each output the
 * rounded mean of its 2x2 block, computed here); an odd ratio (13x9 -> 5x4) against an independent float64
 * reference (supersampling on the common grid, no coverage formula); RGB -> gray weights; JPEG against the
 * test's own libjpeg decode; class order (sorted folder names, the union of both splits) and labels; a
 * truncated PNG, a text file named x.png and an empty file skipped with a warning each; a folder with no
 * usable image is an error; list files (indices, names, classes.txt, a bad line named by number); class
 * names of IDX folders (classes.txt, Fashion-MNIST by folder name) and their round trip through a weights
 * file's metadata. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn.h"

#if __has_include(<png.h>) && __has_include(<jpeglib.h>)
#include <png.h>
#include <jpeglib.h>
#define HAVE_WRITERS 1
#else
#define HAVE_WRITERS 0
#endif

static char g_dir[4096];

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *path_of(const char *rel) {
    static char buf[8][4400];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 4400, "%s/%s", g_dir, rel);
    return p;
}

/* mkdir -p of g_dir/rel */
static void mkdirs(const char *rel) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    for (char *s = p + strlen(g_dir) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd8(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (unsigned)((g_rng * 2685821657736338717ull) >> 56);
}

static void write_file(const char *rel, const void *data, size_t n) {
    FILE *f = fopen(path_of(rel), "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

#if HAVE_WRITERS
/* HWC pixels, c 1 or 3 */
static void write_png(const char *rel, size_t w, size_t h, size_t c, const uint8_t *px) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    assert_true(png_image_write_to_file(&im, path_of(rel), 0, px, 0, NULL));
}

static void write_jpeg(const char *rel, size_t w, size_t h, size_t c, const uint8_t *px) {
    FILE *f = fopen(path_of(rel), "wb");
    assert_non_null(f);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = (int)c;
    ci.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

/* the test's own decode of a JPEG (for comparing against the library's) */
static uint8_t *read_jpeg_ref(const char *rel, size_t *w, size_t *h, size_t *c) {
    FILE *f = fopen(path_of(rel), "rb");
    assert_non_null(f);
    struct jpeg_decompress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    *w = ci.output_width;
    *h = ci.output_height;
    *c = (size_t)ci.output_components;
    uint8_t *px = malloc(*w * *h * *c);
    assert_non_null(px);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * *w * *c;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    fclose(f);
    return px;
}
#endif

static uint8_t *random_px(size_t n) {
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd8();
    return p;
}

/* Independent reference of area resampling: replicate every source pixel ow times across and oh times down
 * (the grid W*ow x H*oh on which every output block and every source pixel are whole cells), then average
 * each output's block of W x H cells. Gray from RGB by the weights, after averaging. Returns doubles, CHW. */
static double ref_area(const uint8_t *px, size_t W, size_t H, size_t C, size_t oc, size_t oh, size_t ow, size_t ch,
                       size_t y, size_t x) {
    double v[3] = {0, 0, 0};
    for (size_t sy = y * H; sy < (y + 1) * H; sy++)
        for (size_t sx = x * W; sx < (x + 1) * W; sx++) {
            const uint8_t *p = px + ((sy / oh) * W + sx / ow) * C;
            for (size_t c = 0; c < C; c++) v[c] += p[c];
        }
    for (size_t c = 0; c < C; c++) v[c] /= (double)(W * H);
    if (C == 1) return v[0];
    if (oc == 3) return v[ch];
    return 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
}

static int round_half_up(double v) { return (int)floor(v + 0.5); }

static cnn_ctx *new_ctx(size_t threads) {
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    return ctx;
}

/* The uint8 sample i of ds, through gather (x/255 exactly, no normalisation): back to bytes. */
static void sample_bytes(const cnn_dataset *ds, size_t i, uint8_t *out, int32_t *label) {
    cnn_shape s = cnn_dataset_shape(ds);
    size_t n = s.c * s.h * s.w;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cnn_dataset_gather(ds, &i, 1, x, label), CNN_OK);
    for (size_t j = 0; j < n; j++) {
        int v = (int)lrintf(x[j] * 255.0f);
        assert_true(v >= 0 && v <= 255);
        assert_true(x[j] == (float)v / 255.0f); /* exactly a byte / 255 */
        out[j] = (uint8_t)v;
    }
    free(x);
}

static void skip_without_decoders(void) {
    if (!HAVE_WRITERS || cnn_image_formats() != (CNN_IMAGE_PNG | CNN_IMAGE_JPEG)) {
        print_message("PNG/JPEG support not built: skipped\n");
        skip();
    }
}

static cnn_dataset *load_folder(cnn_ctx *ctx, const char *rel, const char *split, cnn_shape shape) {
    cnn_dataset_options o = cnn_dataset_options_default();
    o.shape = shape;
    cnn_dataset *ds = NULL;
    cnn_status st = cnn_dataset_load_dir_ex(ctx, path_of(rel), split, &o, &ds);
    if (st != CNN_OK) fail_msg("load %s/%s: %s", rel, split, cnn_ctx_last_error(ctx));
    return ds;
}

#if HAVE_WRITERS
static void test_pixels(void **state) {
    (void)state;
    skip_without_decoders();
    mkdirs("px/train/a");
    mkdirs("px/test/a");
    /* identity: RGB 7x5 and gray 7x5 into (3,5,7) and (1,5,7) */
    const size_t W = 7, H = 5;
    uint8_t *rgb = random_px(W * H * 3), *gray = random_px(W * H);
    write_png("px/train/a/0rgb.png", W, H, 3, rgb);
    write_png("px/test/a/0gray.png", W, H, 1, gray);
    cnn_ctx *ctx = new_ctx(2);
    cnn_shape s3 = {3, H, W}, s1 = {1, H, W};
    cnn_dataset *ds = load_folder(ctx, "px", "train", s3);
    assert_string_equal(cnn_dataset_kind(ds), "images");
    assert_int_equal(cnn_dataset_size(ds), 1);
    uint8_t got[3 * 64 * 64];
    int32_t lab;
    sample_bytes(ds, 0, got, &lab);
    for (size_t c = 0; c < 3; c++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) assert_int_equal(got[(c * H + y) * W + x], rgb[(y * W + x) * 3 + c]);
    cnn_dataset_free(ds);
    ds = load_folder(ctx, "px", "test", s1);
    sample_bytes(ds, 0, got, &lab);
    for (size_t i = 0; i < W * H; i++) assert_int_equal(got[i], gray[i]);
    cnn_dataset_free(ds);
    /* gray into 3 channels: replicated */
    ds = load_folder(ctx, "px", "test", s3);
    sample_bytes(ds, 0, got, &lab);
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < W * H; i++) assert_int_equal(got[c * W * H + i], gray[i]);
    cnn_dataset_free(ds);
    /* RGB into 1 channel at the same size: the weights, rounded */
    ds = load_folder(ctx, "px", "train", s1);
    sample_bytes(ds, 0, got, &lab);
    for (size_t i = 0; i < W * H; i++) {
        const uint8_t *p = rgb + i * 3;
        assert_int_equal(got[i], round_half_up(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
    }
    cnn_dataset_free(ds);
    free(rgb);
    free(gray);

    /* 2x downscale: a checkerboard of two values (10x6 -> 5x3) and a constant (RGB) */
    remove_tree(path_of("px"));
    mkdirs("px/train/a");
    const uint8_t lo = 37, hi = 200;
    uint8_t cb[6 * 10];
    for (size_t y = 0; y < 6; y++)
        for (size_t x = 0; x < 10; x++) cb[y * 10 + x] = (x + y) % 2 ? hi : lo;
    write_png("px/train/a/cb.png", 10, 6, 1, cb);
    cnn_shape half = {1, 3, 5};
    ds = load_folder(ctx, "px", "train", half);
    sample_bytes(ds, 0, got, &lab);
    int expect = (lo + hi + 1) / 2; /* (37 + 200) / 2 = 118.5 -> 119 */
    for (size_t i = 0; i < 15; i++) assert_int_equal(got[i], expect);
    cnn_dataset_free(ds);
    uint8_t cst[6 * 10 * 3];
    for (size_t i = 0; i < 60; i++) {
        cst[3 * i] = 250;
        cst[3 * i + 1] = 10;
        cst[3 * i + 2] = 99;
    }
    write_png("px/train/a/cb.png", 10, 6, 3, cst);
    cnn_shape half3 = {3, 3, 5};
    ds = load_folder(ctx, "px", "train", half3);
    sample_bytes(ds, 0, got, &lab);
    for (size_t i = 0; i < 15; i++) {
        assert_int_equal(got[i], 250);
        assert_int_equal(got[15 + i], 10);
        assert_int_equal(got[30 + i], 99);
    }
    cnn_dataset_free(ds);

    /* odd ratio 13x9 -> 5x4 (and 3x2 -> 7x5 upscale), RGB and gray, against the reference */
    struct { size_t W, H, C, oc, oh, ow; } cases[] = {{13, 9, 3, 3, 4, 5}, {13, 9, 3, 1, 4, 5}, {13, 9, 1, 1, 4, 5},
                                                       {3, 2, 3, 3, 5, 7}, {11, 1, 1, 3, 1, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t cw = cases[k].W, chh = cases[k].H, cc = cases[k].C;
        uint8_t *px = random_px(cw * chh * cc);
        write_png("px/train/a/cb.png", cw, chh, cc, px);
        cnn_shape s = {cases[k].oc, cases[k].oh, cases[k].ow};
        ds = load_folder(ctx, "px", "train", s);
        sample_bytes(ds, 0, got, &lab);
        for (size_t c = 0; c < s.c; c++)
            for (size_t y = 0; y < s.h; y++)
                for (size_t x = 0; x < s.w; x++) {
                    double r = ref_area(px, cw, chh, cc, s.c, s.h, s.w, c, y, x);
                    int g = got[(c * s.h + y) * s.w + x];
                    if (fabs(r - floor(r) - 0.5) < 1e-9) assert_true(g == (int)floor(r) || g == (int)floor(r) + 1);
                    else if (g != round_half_up(r))
                        fail_msg("case %zu: (%zu,%zu,%zu) = %d, reference %.6f", k, c, y, x, g, r);
                }
        cnn_dataset_free(ds);
        free(px);
    }
    cnn_ctx_free(ctx);
}

static void test_jpeg(void **state) {
    (void)state;
    skip_without_decoders();
    remove_tree(path_of("jp"));
    mkdirs("jp/train/k");
    const size_t W = 17, H = 11;
    uint8_t *rgb = random_px(W * H * 3), *gray = random_px(W * H);
    /* smooth the noise a little so the JPEG is not all artefacts (the comparison is exact either way) */
    write_jpeg("jp/train/k/a.jpg", W, H, 3, rgb);
    write_jpeg("jp/train/k/b.jpeg", W, H, 1, gray);
    size_t w, h, c;
    uint8_t *ra = read_jpeg_ref("jp/train/k/a.jpg", &w, &h, &c);
    assert_int_equal(w, W);
    assert_int_equal(c, 3);
    uint8_t *rb = read_jpeg_ref("jp/train/k/b.jpeg", &w, &h, &c);
    assert_int_equal(c, 1);
    cnn_ctx *ctx = new_ctx(1);
    cnn_shape s = {3, H, W};
    cnn_dataset *ds = load_folder(ctx, "jp", "train", s);
    assert_int_equal(cnn_dataset_size(ds), 2);
    uint8_t got[3 * 17 * 11];
    int32_t lab;
    sample_bytes(ds, 0, got, &lab); /* a.jpg sorts first */
    for (size_t ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < W * H; i++) assert_int_equal(got[ch * W * H + i], ra[i * 3 + ch]);
    sample_bytes(ds, 1, got, &lab);
    for (size_t ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < W * H; i++) assert_int_equal(got[ch * W * H + i], rb[i]);
    cnn_dataset_free(ds);
    /* cnn_image_read gives the same pixels */
    cnn_image im;
    assert_int_equal(cnn_image_read(ctx, path_of("jp/train/k/a.jpg"), &im), CNN_OK);
    assert_int_equal(im.w, W);
    assert_int_equal(im.h, H);
    assert_int_equal(im.c, 3);
    assert_memory_equal(im.px, ra, W * H * 3);
    /* cnn_image_resample: 17x11 RGB -> gray 8x5 against the reference; bad targets refused */
    {
        cnn_shape t = {1, 5, 8};
        uint8_t small[40];
        assert_int_equal(cnn_image_resample(ctx, &im, t, small), CNN_OK);
        for (size_t y = 0; y < 5; y++)
            for (size_t x = 0; x < 8; x++) {
                double r = ref_area(ra, W, H, 3, 1, 5, 8, 0, y, x);
                int g = small[y * 8 + x];
                if (fabs(r - floor(r) - 0.5) > 1e-9) assert_int_equal(g, round_half_up(r));
            }
        cnn_shape bad = {2, 5, 8};
        assert_int_equal(cnn_image_resample(ctx, &im, bad, small), CNN_ERR_INVALID_ARG);
    }
    cnn_image_release(ctx, &im);
    /* a truncated JPEG is an error, not gray padding */
    FILE *f = fopen(path_of("jp/train/k/a.jpg"), "rb");
    assert_non_null(f);
    uint8_t buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_file("jp/cut.jpg", buf, n / 2);
    assert_int_equal(cnn_image_read(ctx, path_of("jp/cut.jpg"), &im), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "cut.jpg"));
    assert_null(im.px);
    cnn_ctx_free(ctx);
    free(ra);
    free(rb);
    free(rgb);
    free(gray);
}

/* a small valid PNG of (x + 3y) mod 256 gray in memory-free form: written then read back */
static void write_small_png(const char *rel, size_t w, size_t h, uint8_t base) {
    uint8_t px[64 * 64];
    for (size_t i = 0; i < w * h; i++) px[i] = (uint8_t)(base + i);
    write_png(rel, w, h, 1, px);
}

static void test_classes_and_broken(void **state) {
    (void)state;
    skip_without_decoders();
    remove_tree(path_of("cl"));
    /* train: zebra (2), apple (1 + 3 broken), Mango (1); test: zebra, Mango (no apple) */
    mkdirs("cl/train/zebra");
    mkdirs("cl/train/apple");
    mkdirs("cl/train/Mango");
    mkdirs("cl/test/zebra");
    mkdirs("cl/test/Mango");
    mkdirs("cl/train/apple/nested");
    write_small_png("cl/train/zebra/z1.png", 9, 7, 10);
    write_small_png("cl/train/zebra/z2.png", 5, 11, 20);
    write_small_png("cl/train/apple/a1.png", 6, 6, 30);
    write_small_png("cl/train/Mango/m1.png", 8, 3, 40);
    write_small_png("cl/test/zebra/t1.png", 4, 4, 50);
    write_small_png("cl/test/Mango/t2.png", 4, 4, 60);
    write_file("cl/train/apple/.hidden.png", "x", 1); /* hidden: not even listed */
    /* broken: a truncated PNG, a text file named x.png, an empty file */
    {
        write_small_png("cl/full.png", 31, 29, 7);
        FILE *f = fopen(path_of("cl/full.png"), "rb");
        uint8_t buf[8192];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        assert_true(n > 80);
        write_file("cl/train/apple/cut.png", buf, n - 30);
        write_file("cl/train/apple/x.png", "this is not an image\n", 21);
        write_file("cl/train/apple/empty.jpg", "", 0);
    }
    cnn_ctx *ctx = new_ctx(2);
    cnn_shape s = {1, 4, 4};
    cnn_dataset *tr = load_folder(ctx, "cl", "train", s);
    /* classes sorted by strcmp: "Mango" < "apple" < "zebra" */
    assert_int_equal(cnn_dataset_classes(tr), 3);
    assert_string_equal(cnn_dataset_class_name(tr, 0), "Mango");
    assert_string_equal(cnn_dataset_class_name(tr, 1), "apple");
    assert_string_equal(cnn_dataset_class_name(tr, 2), "zebra");
    assert_null(cnn_dataset_class_name(tr, 3));
    assert_int_equal(cnn_dataset_size(tr), 4);
    int32_t want[4] = {0, 1, 2, 2}; /* m1, a1, z1, z2 */
    for (size_t i = 0; i < 4; i++) {
        int32_t l;
        assert_int_equal(cnn_dataset_gather(tr, &i, 1, NULL, &l), CNN_OK);
        assert_int_equal(l, want[i]);
    }
    /* one warning per broken file and one for the nested folder, each naming it */
    size_t nw = cnn_dataset_num_warnings(tr);
    assert_int_equal(nw, 4);
    const char *names[4] = {"cut.png", "x.png", "empty.jpg", "nested"};
    for (size_t k = 0; k < 4; k++) {
        int found = 0;
        for (size_t i = 0; i < nw; i++) found |= strstr(cnn_dataset_warning(tr, i), names[k]) != NULL;
        if (!found) fail_msg("no warning names %s", names[k]);
    }
    assert_null(cnn_dataset_warning(tr, nw));
    for (size_t i = 0; i < nw; i++) assert_null(strstr(cnn_dataset_warning(tr, i), "a1.png"));
    /* test split: same three classes (the union), labels into them */
    cnn_dataset *te = load_folder(ctx, "cl", "test", s);
    assert_int_equal(cnn_dataset_classes(te), 3);
    assert_string_equal(cnn_dataset_class_name(te, 1), "apple");
    assert_int_equal(cnn_dataset_size(te), 2);
    int32_t l2[2];
    size_t idx[2] = {0, 1};
    assert_int_equal(cnn_dataset_gather(te, idx, 2, NULL, l2), CNN_OK);
    assert_int_equal(l2[0], 0); /* Mango/t2 */
    assert_int_equal(l2[1], 2); /* zebra/t1 */
    cnn_dataset_free(te);
    cnn_dataset_free(tr);
    /* the shape from the first image when none is given (Mango/m1.png: 8x3 gray) */
    cnn_dataset *auto_ds = NULL;
    assert_int_equal(cnn_dataset_load_dir(ctx, path_of("cl"), "train", &auto_ds), CNN_OK);
    cnn_shape as = cnn_dataset_shape(auto_ds);
    assert_int_equal(as.c, 1);
    assert_int_equal(as.h, 3);
    assert_int_equal(as.w, 8);
    cnn_dataset_free(auto_ds);
    /* the same dataset on 1 and 2 threads */
    {
        cnn_ctx *c1 = new_ctx(1);
        cnn_dataset *a = load_folder(c1, "cl", "train", s), *b = load_folder(ctx, "cl", "train", s);
        uint8_t pa[16], pb[16];
        int32_t la, lb;
        for (size_t i = 0; i < 4; i++) {
            sample_bytes(a, i, pa, &la);
            sample_bytes(b, i, pb, &lb);
            assert_memory_equal(pa, pb, 16);
            assert_int_equal(la, lb);
        }
        cnn_dataset_free(a);
        cnn_dataset_free(b);
        cnn_ctx_free(c1);
    }
    /* a folder with no usable image: an error naming it; no class folders: an error */
    remove_tree(path_of("bad"));
    mkdirs("bad/train/only");
    write_file("bad/train/only/x.png", "text", 4);
    write_file("bad/train/only/e.png", "", 0);
    cnn_dataset *ds = NULL;
    cnn_status st = cnn_dataset_load_dir_ex(ctx, path_of("bad"), "train", NULL, &ds);
    assert_int_equal(st, CNN_ERR_FORMAT);
    assert_null(ds);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "no usable image"));
    remove_tree(path_of("bad"));
    mkdirs("bad/train");
    mkdirs("bad/test");
    st = cnn_dataset_load_dir_ex(ctx, path_of("bad"), "train", NULL, &ds);
    assert_int_equal(st, CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "no class folders"));
    /* train/ without test/: the test split is an error naming the folder */
    remove_tree(path_of("bad"));
    mkdirs("bad/train/a");
    write_small_png("bad/train/a/1.png", 3, 3, 0);
    st = cnn_dataset_load_dir_ex(ctx, path_of("bad"), "test", NULL, &ds);
    assert_int_equal(st, CNN_ERR_IO);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "test/"));
    cnn_ctx_free(ctx);
}

static void test_list(void **state) {
    (void)state;
    skip_without_decoders();
    remove_tree(path_of("li"));
    mkdirs("li/img sub");
    write_small_png("li/img sub/p 0.png", 5, 5, 0);
    write_small_png("li/b.png", 5, 5, 100);
    write_small_png("li/c.png", 5, 5, 200);
    cnn_ctx *ctx = new_ctx(1);
    cnn_dataset_options o = cnn_dataset_options_default();
    o.shape = (cnn_shape){1, 5, 5};
    cnn_dataset *ds = NULL;
    /* integer labels, a path with spaces, comments, CRLF, an absolute path */
    char text[8192];
    snprintf(text, sizeof text, "# a comment\r\nimg sub/p 0.png 2\r\n\nb.png\t0\n%s 1\nmissing.png 1\n", path_of("li/c.png"));
    write_file("li/list.txt", text, strlen(text));
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/list.txt"), &o, &ds), CNN_OK);
    assert_string_equal(cnn_dataset_kind(ds), "list");
    assert_int_equal(cnn_dataset_size(ds), 3);
    assert_int_equal(cnn_dataset_classes(ds), 3);
    assert_string_equal(cnn_dataset_class_name(ds, 2), "2");
    assert_int_equal(cnn_dataset_num_warnings(ds), 1);
    assert_non_null(strstr(cnn_dataset_warning(ds, 0), "missing.png"));
    int32_t want[3] = {2, 0, 1};
    uint8_t px[25];
    uint8_t first[3] = {0, 100, 200};
    for (size_t i = 0; i < 3; i++) {
        int32_t l;
        sample_bytes(ds, i, px, &l);
        assert_int_equal(l, want[i]);
        assert_int_equal(px[0], first[i]);
        assert_int_equal(px[24], (uint8_t)(first[i] + 24));
    }
    cnn_dataset_free(ds);
    /* name labels without classes.txt: sorted names */
    const char *t2 = "b.png dog\nc.png cat\nb.png emu\n";
    write_file("li/names.txt", t2, strlen(t2));
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/names.txt"), &o, &ds), CNN_OK);
    assert_int_equal(cnn_dataset_classes(ds), 3);
    assert_string_equal(cnn_dataset_class_name(ds, 0), "cat");
    assert_string_equal(cnn_dataset_class_name(ds, 2), "emu");
    int32_t l3[3];
    size_t idx[3] = {0, 1, 2};
    assert_int_equal(cnn_dataset_gather(ds, idx, 3, NULL, l3), CNN_OK);
    assert_int_equal(l3[0], 1);
    assert_int_equal(l3[1], 0);
    assert_int_equal(l3[2], 2);
    /* the test list labelled with the training list's names */
    const char *t3 = "c.png emu\n";
    write_file("li/test.txt", t3, strlen(t3));
    const char *nm[3] = {cnn_dataset_class_name(ds, 0), cnn_dataset_class_name(ds, 1), cnn_dataset_class_name(ds, 2)};
    cnn_dataset_options o2 = o;
    o2.class_names = nm;
    o2.n_classes = 3;
    cnn_dataset *te = NULL;
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/test.txt"), &o2, &te), CNN_OK);
    assert_int_equal(cnn_dataset_classes(te), 3);
    assert_int_equal(cnn_dataset_gather(te, idx, 1, NULL, l3), CNN_OK);
    assert_int_equal(l3[0], 2);
    cnn_dataset_free(te);
    cnn_dataset_free(ds);
    /* bad lines: each an error naming the file and line */
    struct { const char *text, *want; } bad[] = {
        {"b.png 0\nc.png 1\nonlyapath\n", "bad.txt:3:"},
        {"b.png 0\nc.png -1\n", "bad.txt:2:"},
        {"b.png 0\nc.png cat\n", "bad.txt:2:"},
        {"# nothing\n\n", "no \"PATH LABEL\" lines"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_file("li/bad.txt", bad[k].text, strlen(bad[k].text));
        cnn_status st = cnn_dataset_load_list(ctx, path_of("li/bad.txt"), &o, &ds);
        assert_int_equal(st, CNN_ERR_FORMAT);
        assert_null(ds);
        if (!strstr(cnn_ctx_last_error(ctx), bad[k].want))
            fail_msg("case %zu: '%s' does not contain '%s'", k, cnn_ctx_last_error(ctx), bad[k].want);
    }
    /* classes.txt beside the list: names and indices both map into it; an unknown name is an error */
    const char *cls = "cat\ndog\nemu\nfox\n";
    write_file("li/classes.txt", cls, strlen(cls));
    const char *t4 = "b.png fox\nc.png 1\n";
    write_file("li/mixed.txt", t4, strlen(t4));
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/mixed.txt"), &o, &ds), CNN_OK);
    assert_int_equal(cnn_dataset_classes(ds), 4);
    assert_int_equal(cnn_dataset_gather(ds, idx, 2, NULL, l3), CNN_OK);
    assert_int_equal(l3[0], 3);
    assert_int_equal(l3[1], 1);
    cnn_dataset_free(ds);
    /* a tab separates a label with spaces */
    const char *cls2 = "cat\nred fox\n";
    write_file("li/classes.txt", cls2, strlen(cls2));
    const char *t6 = "img sub/p 0.png\tred fox\nb.png cat\n";
    write_file("li/tab.txt", t6, strlen(t6));
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/tab.txt"), &o, &ds), CNN_OK);
    assert_int_equal(cnn_dataset_size(ds), 2);
    assert_int_equal(cnn_dataset_gather(ds, idx, 2, NULL, l3), CNN_OK);
    assert_int_equal(l3[0], 1);
    assert_int_equal(l3[1], 0);
    assert_int_equal(cnn_dataset_num_warnings(ds), 0);
    cnn_dataset_free(ds);
    write_file("li/classes.txt", cls, strlen(cls));
    const char *t5 = "b.png fox\nc.png gnu\n";
    write_file("li/bad.txt", t5, strlen(t5));
    assert_int_equal(cnn_dataset_load_list(ctx, path_of("li/bad.txt"), &o, &ds), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "bad.txt:2:"));
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "gnu"));
    cnn_ctx_free(ctx);
}
#endif

/* IDX files: n images of h x w, labels */
static void write_idx(const char *dir_rel, const char *prefix, size_t n, size_t h, size_t w, const uint8_t *labels) {
    char name[256];
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, (uint8_t)h, 0, 0, 0, (uint8_t)w};
    uint8_t *buf = malloc(16 + n * h * w);
    assert_non_null(buf);
    memcpy(buf, hdr, 16);
    for (size_t i = 0; i < n * h * w; i++) buf[16 + i] = (uint8_t)rnd8();
    snprintf(name, sizeof name, "%s/%s-images-idx3-ubyte", dir_rel, prefix);
    write_file(name, buf, 16 + n * h * w);
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    memcpy(buf, lh, 8);
    memcpy(buf + 8, labels, n);
    snprintf(name, sizeof name, "%s/%s-labels-idx1-ubyte", dir_rel, prefix);
    write_file(name, buf, 8 + n);
    free(buf);
}

static void test_idx_names(void **state) {
    (void)state;
    remove_tree(path_of("Fashion-x"));
    remove_tree(path_of("digits"));
    mkdirs("Fashion-x");
    mkdirs("digits");
    uint8_t lab[5] = {9, 0, 3, 1, 9};
    write_idx("Fashion-x", "train", 5, 3, 4, lab);
    write_idx("Fashion-x", "t10k", 5, 3, 4, lab);
    write_idx("digits", "train", 5, 3, 4, lab);
    write_idx("digits", "t10k", 5, 3, 4, lab);
    cnn_ctx *ctx = new_ctx(1);
    cnn_dataset *ds = NULL;
    assert_int_equal(cnn_dataset_load_dir(ctx, path_of("Fashion-x"), "train", &ds), CNN_OK);
    assert_string_equal(cnn_dataset_class_name(ds, 0), "T-shirt/top");
    assert_string_equal(cnn_dataset_class_name(ds, 9), "Ankle boot");
    cnn_dataset_free(ds);
    assert_int_equal(cnn_dataset_load_dir(ctx, path_of("digits"), "test", &ds), CNN_OK);
    assert_string_equal(cnn_dataset_class_name(ds, 0), "0");
    assert_string_equal(cnn_dataset_class_name(ds, 7), "7");
    cnn_dataset_free(ds);
    /* classes.txt wins (also in a Fashion folder); it may name more classes than the labels reach */
    const char *names = "zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";
    write_file("Fashion-x/classes.txt", names, strlen(names));
    assert_int_equal(cnn_dataset_load_dir(ctx, path_of("Fashion-x"), "train", &ds), CNN_OK);
    assert_int_equal(cnn_dataset_classes(ds), 11);
    assert_string_equal(cnn_dataset_class_name(ds, 3), "three");
    assert_string_equal(cnn_dataset_class_name(ds, 10), "ten");
    cnn_dataset_free(ds);
    write_file("digits/classes.txt", "a\nb\n", 4);
    assert_int_equal(cnn_dataset_load_dir(ctx, path_of("digits"), "train", &ds), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "classes.txt"));
    /* set_class_names */
    float x[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int32_t l[2] = {0, 1};
    cnn_shape s = {1, 1, 2};
    assert_int_equal(cnn_dataset_from_memory(ctx, x, l, 2, s, 2, &ds), CNN_OK);
    assert_string_equal(cnn_dataset_class_name(ds, 1), "1");
    const char *nn[2] = {"left", "right"};
    assert_int_equal(cnn_dataset_set_class_names(ds, nn, 2), CNN_OK);
    assert_string_equal(cnn_dataset_class_name(ds, 1), "right");
    assert_int_equal(cnn_dataset_set_class_names(ds, nn, 1), CNN_ERR_INVALID_ARG);
    const char *bad[2] = {"ok", "two\nlines"};
    assert_int_equal(cnn_dataset_set_class_names(ds, bad, 2), CNN_ERR_INVALID_ARG);
    assert_string_equal(cnn_dataset_class_name(ds, 0), "left");
    cnn_dataset_free(ds);
    cnn_ctx_free(ctx);
}

static void test_checkpoint_names(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    const char *model = "input c=1 h=5 w=5\nconv2d name=c1 k=3 kh=3 kw=3\nflatten\ndense name=fc out=4\nsoftmax_ce\n";
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "m.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 2, 0), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 7, CNN_INIT_DEFAULT), CNN_OK);
    const char *w = path_of("w.safetensors");
    assert_int_equal(cnn_net_save_weights(net, w), CNN_OK);
    char **got = (char **)1;
    size_t n = 9;
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, w, &got, &n), CNN_OK);
    assert_null(got);
    assert_int_equal(n, 0);
    const char *names[4] = {"T-shirt/top", "naïve \"quoted\"", "c", "Ankle boot"};
    assert_int_equal(cnn_checkpoint_write_class_names(ctx, w, names, 4), CNN_OK);
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, w, &got, &n), CNN_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 4; i++) assert_string_equal(got[i], names[i]);
    assert_null(got[4]);
    cnn_free(ctx, got);
    /* the weights are untouched and the file still loads; the model text is still inside */
    cnn_net *back = NULL;
    assert_int_equal(cnn_checkpoint_load(ctx, w, &back), CNN_OK);
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param a, b;
        assert_int_equal(cnn_net_param_at(net, i, &a), CNN_OK);
        assert_int_equal(cnn_net_param_find(back, a.name, &b), CNN_OK);
        assert_memory_equal(a.data, b.data, a.count * sizeof(float));
    }
    cnn_net_free(back);
    /* rewriting replaces the names */
    const char *two[1] = {"solo"};
    assert_int_equal(cnn_checkpoint_write_class_names(ctx, w, two, 1), CNN_OK);
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, w, &got, &n), CNN_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "solo");
    cnn_free(ctx, got);
    /* bad arguments and files */
    const char *empty[1] = {""};
    assert_int_equal(cnn_checkpoint_write_class_names(ctx, w, empty, 1), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_checkpoint_write_class_names(ctx, w, names, 0), CNN_ERR_INVALID_ARG);
    write_file("junk.bin", "not safetensors at all", 22);
    assert_int_equal(cnn_checkpoint_write_class_names(ctx, path_of("junk.bin"), names, 4), CNN_ERR_FORMAT);
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, path_of("junk.bin"), &got, &n), CNN_ERR_FORMAT);
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, path_of("nope"), &got, &n), CNN_ERR_IO);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}


/* Names carried by the net (cnn_net_set_class_names): the weights writer and the checkpoint writer put them
 * in the file at once; clearing them writes none; bad names are refused and leave the old ones. */
static void test_net_names(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    const char *model = "input c=1 h=5 w=5\nconv2d name=c1 k=3 kh=3 kw=3\nflatten\ndense name=fc out=3\nsoftmax_ce\n";
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(ctx, model, strlen(model), "m.cnn", &net), CNN_OK);
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_init_params(net, 7, CNN_INIT_DEFAULT), CNN_OK);
    size_t n = 9;
    assert_null(cnn_net_class_names(net, &n));
    assert_int_equal(n, 0);
    const char *names[3] = {"Sneaker", "bag \"b\"", "\xc3\xa9t\xc3\xa9"};
    assert_int_equal(cnn_net_set_class_names(net, names, 3), CNN_OK);
    const char *const *have = cnn_net_class_names(net, &n);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) assert_string_equal(have[i], names[i]);
    assert_null(have[3]);
    const char *bad1[2] = {"ok", ""}, *bad2[2] = {"ok", "two\nlines"}, *bad3[2] = {"ok", NULL};
    assert_int_equal(cnn_net_set_class_names(net, bad1, 2), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_set_class_names(net, bad2, 2), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_net_set_class_names(net, bad3, 2), CNN_ERR_INVALID_ARG);
    assert_non_null(cnn_net_class_names(net, &n));
    assert_int_equal(n, 3);
    const char *w = path_of("wn.safetensors"), *ck = path_of("ckn.safetensors");
    assert_int_equal(cnn_net_save_weights(net, w), CNN_OK);
    cnn_optimizer *opt = NULL;
    cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_SGD);
    assert_int_equal(cnn_optimizer_create(net, &oo, &opt), CNN_OK);
    cnn_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = 1;
    assert_int_equal(cnn_checkpoint_save(net, opt, &ts, ck), CNN_OK);
    const char *files[2] = {w, ck};
    for (int f = 0; f < 2; f++) {
        char **got = NULL;
        assert_int_equal(cnn_checkpoint_read_class_names(ctx, files[f], &got, &n), CNN_OK);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < 3; i++) assert_string_equal(got[i], names[i]);
        cnn_free(ctx, got);
    }
    assert_int_equal(cnn_net_set_class_names(net, NULL, 0), CNN_OK);
    assert_null(cnn_net_class_names(net, &n));
    assert_int_equal(cnn_net_save_weights(net, w), CNN_OK);
    char **got = (char **)1;
    assert_int_equal(cnn_checkpoint_read_class_names(ctx, w, &got, &n), CNN_OK);
    assert_null(got);
    assert_int_equal(n, 0);
    cnn_optimizer_free(opt);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

int main(void) {
    const char *base = getenv("CNN_BINARY_DIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_image_dataset.XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
#if HAVE_WRITERS
        cmocka_unit_test(test_pixels),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_classes_and_broken),
        cmocka_unit_test(test_list),
#endif
        cmocka_unit_test(test_idx_names),
        cmocka_unit_test(test_checkpoint_names),
        cmocka_unit_test(test_net_names),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    if (r == 0) remove_tree(g_dir);
    return r;
}
