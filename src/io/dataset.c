/* dataset.c — the cnn_dataset object: labelled samples held in memory, handed out in batches.
 *
 * Storage: IDX datasets keep their pixels as uint8 (Fashion-MNIST train: 60000 * 784 = 47 MB) and labels
 * as int32; datasets from memory keep float32. Samples are (c, h, w), contiguous, sample-major; IDX images
 * (n, h, w) become (1, h, w).
 *
 * Batches (cnn_dataset_gather): x = pixel / 255 in float32 ((float)p / 255.0f, exactly), then, when set,
 * per-channel x' = (x - mean[c]) / std[c] in float32. For uint8 data both steps are precomputed into a
 * 256-entry table per channel at set-time, so a batch is one table lookup per element, bit-identical to
 * computing the formula on the fly. Cost: O(n * c * h * w), memory-bound; single-threaded (a batch of 128
 * Fashion-MNIST images is 100 KB).
 *
 * Labels: classes = max label + 1, at least 2, for IDX data; given (or inferred the same way when 0) for
 * data from memory, where every label must be in [0, classes).
 *
 * Shuffling: Fisher-Yates (Knuth, TAOCP vol. 2, Algorithm P) with the library's xoshiro256** generator and
 * Lemire's unbiased bounded draw (cnn_rng_below), so an epoch's order depends only on the seed.
 *
 * load_dir recognises the folder by what it holds, the same way for both splits (cnn_dataset_kind says
 * which it found):
 *   "idx"      any of {train,t10k,test}-images-idx3-ubyte[.gz] in the folder: it looks for
 *              {train,t10k,test}-{images-idx3,labels-idx1}-ubyte[.gz], the names of the MNIST and
 *              Fashion-MNIST distributions;
 *   "cifar10"  otherwise, any of data_batch_1.bin .. data_batch_5.bin, test_batch.bin in the folder or in
 *              its cifar-10-batches-bin/ subfolder (the layout of the distributed archive): train is the
 *              five data batches in order, test is test_batch.bin; a missing batch is an error that lists
 *              every missing name. Samples (3, 32, 32), 10 classes, uint8 storage as for IDX.
 *   "images"   otherwise, a train/ or test/ subfolder: DIR/<split>/<class>/<image> PNG and JPEG files
 *              (dataset_images.c), the classes the sorted union of both splits' class folders.
 * A folder with none is CNN_ERR_IO, listing what was looked for.
 *
 * Class names (cnn_dataset_class_name): every dataset has one per class (up to CNN_DATASET_MAX_NAMES):
 * a classes.txt in the folder wins (apply_names), then the loader's (CIFAR-10's, image folder names, list
 * names), Fashion-MNIST's for an IDX folder whose path says "fashion" or "fmnist", else "0".."N-1".
 * Warnings (files an image loader skipped) are kept with the dataset; nothing is printed. */
#define _POSIX_C_SOURCE 200809L /* fileno, fdopen, fseeko, fsync, O_CLOEXEC, O_DIRECTORY */
#include "dataset_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void cnn_dataset_free(cnn_dataset *ds) {
    if (!ds) return;
    cnn_ctx *ctx = ds->ctx;
    cnn_mem_free(ctx, ds->u8);
    cnn_mem_free(ctx, ds->f32);
    cnn_mem_free(ctx, ds->labels);
    cnn_mem_free(ctx, ds->mean);
    cnn_mem_free(ctx, ds->std);
    cnn_mem_free(ctx, ds->lut);
    cnn_strlist_free(ctx, &ds->names);
    cnn_strlist_free(ctx, &ds->warnings);
    cnn_mem_free(ctx, ds);
}

cnn_status cnn_strlist_push(cnn_ctx *ctx, cnn_strlist *l, const char *fmt, ...) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **s = cnn_mem_calloc(ctx, cap, sizeof *s);
        if (!s) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory growing a list of %zu strings", cap);
        if (l->n) memcpy(s, l->s, l->n * sizeof *s);
        cnn_mem_free(ctx, l->s);
        l->s = s;
        l->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cannot format a string");
    char *t = cnn_mem_alloc(ctx, (size_t)len + 1);
    if (!t) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(t, (size_t)len + 1, fmt, ap);
    va_end(ap);
    l->s[l->n++] = t;
    return CNN_OK;
}

void cnn_strlist_free(cnn_ctx *ctx, cnn_strlist *l) {
    for (size_t i = 0; i < l->n; i++) cnn_mem_free(ctx, l->s[i]);
    cnn_mem_free(ctx, l->s);
    memset(l, 0, sizeof *l);
}

cnn_status cnn_dataset_warn(cnn_dataset *ds, const char *fmt, ...) {
    ds->warnings_total++;
    if (ds->warnings.n >= CNN_DATASET_MAX_WARNINGS) {
        cnn_mem_free(ds->ctx, ds->warnings.s[ds->warnings.n - 1]);
        ds->warnings.n--;
        return cnn_strlist_push(ds->ctx, &ds->warnings, "... and %zu more warnings",
                                ds->warnings_total - (CNN_DATASET_MAX_WARNINGS - 1));
    }
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cnn_strlist_push(ds->ctx, &ds->warnings, "%s", msg);
}

cnn_status cnn_dataset_default_names(cnn_dataset *ds) {
    if (ds->names.n || ds->classes > CNN_DATASET_MAX_NAMES) return CNN_OK;
    for (size_t i = 0; i < ds->classes; i++) {
        cnn_status st = cnn_strlist_push(ds->ctx, &ds->names, "%zu", i);
        if (st != CNN_OK) return st;
    }
    return CNN_OK;
}

cnn_status cnn_read_names_file(cnn_ctx *ctx, const char *path, cnn_strlist *out, int *found) {
    *found = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return CNN_OK;
        return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    *found = 1;
    cnn_status st = CNN_OK;
    char line[1024];
    size_t lineno = 0, blank_run = 0;
    cnn_strlist l = {NULL, 0, 0};
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n')
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: class name longer than %zu characters", path, lineno,
                              sizeof line - 2));
        char *b = line, *e = line + len;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
        *e = 0;
        if (!*b) {
            blank_run++;
            continue;
        }
        if (blank_run)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: empty class name (one name per line)", path, lineno - 1));
        if (l.n >= CNN_DATASET_MAX_NAMES)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: more than %u class names", path, lineno, CNN_DATASET_MAX_NAMES));
        CNN_TRY(cnn_strlist_push(ctx, &l, "%s", b));
    }
    if (ferror(f)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: read error", path));
    if (!l.n) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no class names (one name per line)", path));
    *out = l;
    memset(&l, 0, sizeof l);
cleanup:
    cnn_strlist_free(ctx, &l);
    fclose(f);
    return st;
}

static void build_lut(cnn_dataset *ds) {
    if (!ds->lut) return;
    for (size_t c = 0; c < ds->shape.c; c++) {
        float *t = ds->lut + c * 256;
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            t[v] = ds->normalized ? (x - ds->mean[c]) / ds->std[c] : x;
        }
    }
}

/* A dataset with room for n samples of `shape` (u8 or f32 storage) and its labels. With `adopt` (u8 only),
 * the dataset takes that buffer of n * count bytes over (freed by the dataset, also on failure). */
static cnn_status dataset_new(cnn_ctx *ctx, size_t n, cnn_shape shape, int u8, uint8_t *adopt, cnn_dataset **out) {
    cnn_status st = CNN_OK;
    *out = NULL;
    size_t count, plane, total, bytes;
    if (!cnn_shape_count(shape, &count) || !cnn_size_mul(shape.h, shape.w, &plane) ||
        !cnn_size_mul(n, count, &total) || !cnn_size_mul(total, u8 ? 1 : sizeof(float), &bytes)) {
        cnn_mem_free(ctx, adopt);
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "dataset of %zu samples of (%zu, %zu, %zu) is too large", n,
                         shape.c, shape.h, shape.w);
    }
    cnn_dataset *ds = cnn_mem_calloc(ctx, 1, sizeof *ds);
    if (!ds) {
        cnn_mem_free(ctx, adopt);
        return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating a dataset");
    }
    ds->ctx = ctx;
    ds->n = n;
    ds->shape = shape;
    ds->count = count;
    ds->plane = plane;
    if (adopt)
        ds->u8 = adopt;
    else
        CNN_TRY(cnn_mem_alloc_checked(ctx, bytes, "dataset samples", u8 ? (void **)&ds->u8 : (void **)&ds->f32));
    ds->labels = cnn_mem_calloc(ctx, n, sizeof(int32_t));
    ds->mean = cnn_mem_calloc(ctx, shape.c, sizeof(float));
    ds->std = cnn_mem_calloc(ctx, shape.c, sizeof(float));
    if (u8) ds->lut = cnn_mem_calloc(ctx, shape.c, 256 * sizeof(float));
    if (!ds->labels || !ds->mean || !ds->std || (u8 && !ds->lut))
        CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating a dataset"));
    for (size_t c = 0; c < shape.c; c++) ds->std[c] = 1.0f;
    build_lut(ds);
    *out = ds;
    ds = NULL;
cleanup:
    cnn_dataset_free(ds);
    return st;
}

cnn_status cnn_dataset_new_u8(cnn_ctx *ctx, size_t n, cnn_shape shape, cnn_dataset **out) {
    return dataset_new(ctx, n, shape, 1, NULL, out);
}

cnn_status cnn_dataset_load_idx(cnn_ctx *ctx, const char *images_path, const char *labels_path,
                                cnn_dataset **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_idx: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!images_path || !labels_path)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_idx: %s path is NULL",
                         images_path ? "labels" : "images");
    cnn_status st = CNN_OK;
    cnn_idx_file img, lab;
    memset(&img, 0, sizeof img);
    memset(&lab, 0, sizeof lab);
    cnn_dataset *ds = NULL;
    CNN_TRY(cnn_idx_read(ctx, images_path, 3, &img));
    CNN_TRY(cnn_idx_read(ctx, labels_path, 1, &lab));
    if (lab.dims[0] != img.dims[0])
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %zu labels, but %s has %zu images", labels_path, lab.dims[0],
                          images_path, img.dims[0]));
    size_t n = img.dims[0];
    cnn_shape shape = {1, img.dims[1], img.dims[2]};
    /* Take the pixel buffer over instead of copying 47 MB. */
    uint8_t *pixels = img.data;
    img.data = NULL;
    CNN_TRY(dataset_new(ctx, n, shape, 1, pixels, &ds));
    unsigned max_label = 0;
    for (size_t i = 0; i < n; i++) {
        ds->labels[i] = lab.data[i];
        if (lab.data[i] > max_label) max_label = lab.data[i];
    }
    ds->classes = max_label + 1 < 2 ? 2 : max_label + 1;
    ds->kind = "idx";
    CNN_TRY(cnn_dataset_default_names(ds));
    *out = ds;
    ds = NULL;
cleanup:
    cnn_mem_free(ctx, img.data);
    cnn_mem_free(ctx, lab.data);
    cnn_dataset_free(ds);
    return st;
}

static cnn_status join_path(cnn_ctx *ctx, const char *dir, const char *name, char **out) {
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    char *p = cnn_mem_alloc(ctx, dl + nl + 2);
    if (!p) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory");
    memcpy(p, dir, dl);
    if (slash) p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    *out = p;
    return CNN_OK;
}

/* Find the first existing file among <dir>/<prefix>-<stem>[.gz] for the prefixes; *found_prefix tells which. */
static cnn_status find_file(cnn_ctx *ctx, const char *dir, const char *const *prefixes, size_t n_prefixes,
                            const char *stem, const char *what, char **out, size_t *found_prefix) {
    static const char *const suffixes[2] = {"", ".gz"};
    char name[128];
    char looked[1024];
    size_t ll = 0;
    looked[0] = 0;
    *out = NULL;
    for (size_t p = 0; p < n_prefixes; p++) {
        for (size_t s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "%s-%s%s", prefixes[p], stem, suffixes[s]);
            char *path = NULL;
            cnn_status st = join_path(ctx, dir, name, &path);
            if (st != CNN_OK) return st;
            struct stat sb;
            if (stat(path, &sb) == 0) {
                *out = path;
                *found_prefix = p;
                return CNN_OK;
            }
            cnn_mem_free(ctx, path);
            int w = snprintf(looked + ll, sizeof looked - ll, "%s%s", ll ? ", " : "", name);
            if (w > 0 && (size_t)w < sizeof looked - ll) ll += (size_t)w;
        }
    }
    return cnn_error(ctx, CNN_ERR_IO, "%s: no %s found; looked for %s", dir, what, looked);
}

static int path_exists(cnn_ctx *ctx, const char *dir, const char *name) {
    char *p = NULL;
    if (join_path(ctx, dir, name, &p) != CNN_OK) return 0;
    struct stat sb;
    int r = stat(p, &sb) == 0;
    cnn_mem_free(ctx, p);
    return r;
}

static const char *const cifar_train[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                           "data_batch_4.bin", "data_batch_5.bin"};
static const char *const cifar_test[1] = {"test_batch.bin"};

static int holds_cifar(cnn_ctx *ctx, const char *dir) {
    for (size_t i = 0; i < 5; i++)
        if (path_exists(ctx, dir, cifar_train[i])) return 1;
    return path_exists(ctx, dir, cifar_test[0]);
}

static int holds_idx(cnn_ctx *ctx, const char *dir) {
    static const char *const names[6] = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                         "t10k-images-idx3-ubyte",  "t10k-images-idx3-ubyte.gz",
                                         "test-images-idx3-ubyte",  "test-images-idx3-ubyte.gz"};
    for (size_t i = 0; i < 6; i++)
        if (path_exists(ctx, dir, names[i])) return 1;
    return 0;
}

/* The CIFAR-10 split `test` (0: train) from the batch files in root. */
static cnn_status load_cifar(cnn_ctx *ctx, const char *root, int test, cnn_dataset **out) {
    cnn_status st = CNN_OK;
    const char *const *names = test ? cifar_test : cifar_train;
    size_t n_names = test ? 1 : 5;
    char *paths[5] = {NULL, NULL, NULL, NULL, NULL};
    uint8_t *pixels = NULL, *lab = NULL;
    cnn_dataset *ds = NULL;
    char missing[256];
    size_t ml = 0, n_missing = 0;
    missing[0] = 0;
    for (size_t i = 0; i < n_names; i++) {
        CNN_TRY(join_path(ctx, root, names[i], &paths[i]));
        struct stat sb;
        if (stat(paths[i], &sb) != 0) {
            n_missing++;
            int w = snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? ", " : "", names[i]);
            if (w > 0 && (size_t)w < sizeof missing - ml) ml += (size_t)w;
        }
    }
    if (n_missing)
        CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: CIFAR-10 %s split: missing %s (%zu of %zu batch file%s)", root,
                          test ? "test" : "train", missing, n_missing, n_names, n_names == 1 ? "" : "s"));
    size_t n = 0;
    CNN_TRY(cnn_cifar_read(ctx, (const char *const *)paths, n_names, &pixels, &lab, &n));
    cnn_shape shape = {3, 32, 32};
    uint8_t *adopt = pixels;
    pixels = NULL;
    CNN_TRY(dataset_new(ctx, n, shape, 1, adopt, &ds));
    for (size_t i = 0; i < n; i++) ds->labels[i] = lab[i];
    ds->classes = CNN_CIFAR_CLASSES;
    ds->kind = "cifar10";
    {
        /* the distributed archive names its classes in batches.meta.txt */
        static const char *const cifar_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                                    "dog",      "frog",       "horse", "ship", "truck"};
        char *meta = NULL;
        int found = 0;
        cnn_strlist l = {NULL, 0, 0};
        CNN_TRY(join_path(ctx, root, "batches.meta.txt", &meta));
        st = cnn_read_names_file(ctx, meta, &l, &found);
        cnn_mem_free(ctx, meta);
        if (st != CNN_OK) goto cleanup;
        if (found && l.n == CNN_CIFAR_CLASSES) {
            ds->names = l;
        } else {
            cnn_strlist_free(ctx, &l);
            for (size_t i = 0; i < CNN_CIFAR_CLASSES; i++) CNN_TRY(cnn_strlist_push(ctx, &ds->names, "%s", cifar_names[i]));
        }
    }
    *out = ds;
    ds = NULL;
cleanup:
    for (size_t i = 0; i < n_names; i++) cnn_mem_free(ctx, paths[i]);
    cnn_mem_free(ctx, pixels);
    cnn_mem_free(ctx, lab);
    cnn_dataset_free(ds);
    return st;
}

static cnn_status load_dir_plain(cnn_ctx *ctx, const char *dir, const char *split, cnn_dataset **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_dir: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!dir || !split) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_dir: %s is NULL", dir ? "split" : "dir");
    static const char *const train[1] = {"train"};
    static const char *const test[2] = {"t10k", "test"};
    const char *const *prefixes;
    size_t n_prefixes;
    if (!strcmp(split, "train")) {
        prefixes = train;
        n_prefixes = 1;
    } else if (!strcmp(split, "test") || !strcmp(split, "t10k")) {
        prefixes = test;
        n_prefixes = 2;
    } else {
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "%s: unknown split '%s' (expected 'train' or 'test')", dir, split);
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cnn_error(ctx, CNN_ERR_IO, "%s: not a directory", dir);

    cnn_status st = CNN_OK;
    char *images = NULL, *labels = NULL;
    if (!holds_idx(ctx, dir)) {
        int test_split = n_prefixes == 2;
        if (holds_cifar(ctx, dir)) return load_cifar(ctx, dir, test_split, out);
        char *sub = NULL;
        CNN_TRY(join_path(ctx, dir, "cifar-10-batches-bin", &sub));
        if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode) && holds_cifar(ctx, sub)) {
            st = load_cifar(ctx, sub, test_split, out);
            cnn_mem_free(ctx, sub);
            return st;
        }
        cnn_mem_free(ctx, sub);
    }
    size_t pi = 0, pl = 0;
    char what[64];
    snprintf(what, sizeof what, "%s images", split);
    st = find_file(ctx, dir, prefixes, n_prefixes, "images-idx3-ubyte", what, &images, &pi);
    if (st == CNN_ERR_IO && !holds_idx(ctx, dir)) {
        /* Neither kind: say what else was looked for. */
        char m[1200];
        snprintf(m, sizeof m, "%s", cnn_ctx_last_error(ctx));
        st = cnn_error(ctx, CNN_ERR_IO, "%s; nor CIFAR-10 data_batch_1.bin .. data_batch_5.bin, test_batch.bin "
                       "(in the folder or its cifar-10-batches-bin/), nor train/ and test/ folders of images", m);
    }
    if (st != CNN_OK) goto cleanup;
    /* Labels with the same prefix as the images first. */
    const char *order[2] = {prefixes[pi], n_prefixes > 1 ? prefixes[1 - pi] : NULL};
    snprintf(what, sizeof what, "%s labels", split);
    CNN_TRY(find_file(ctx, dir, order, n_prefixes, "labels-idx1-ubyte", what, &labels, &pl));
    CNN_TRY(cnn_dataset_load_idx(ctx, images, labels, out));
cleanup:
    cnn_mem_free(ctx, images);
    cnn_mem_free(ctx, labels);
    return st;
}

static int path_is_dir(cnn_ctx *ctx, const char *dir, const char *name) {
    char *p = NULL;
    if (join_path(ctx, dir, name, &p) != CNN_OK) return 0;
    struct stat sb;
    int r = stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
    cnn_mem_free(ctx, p);
    return r;
}

static int looks_like_fashion(const char *dir) {
    char low[4096];
    size_t n = strlen(dir);
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)dir[i]);
    low[n] = 0;
    return strstr(low, "fashion") != NULL || strstr(low, "fmnist") != NULL;
}

/* Names for an IDX or CIFAR-10 dataset loaded from dir: classes.txt there wins (it may name classes that
 * the labels never reach; it must name every label), then what the loader set, Fashion-MNIST's names,
 * "0".."N-1". */
static cnn_status apply_names(cnn_dataset *ds, const char *dir) {
    static const char *const fashion[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    cnn_ctx *ctx = ds->ctx;
    cnn_status st = CNN_OK;
    char *path = NULL;
    int found = 0;
    cnn_strlist l = {NULL, 0, 0};
    CNN_TRY(join_path(ctx, dir, "classes.txt", &path));
    CNN_TRY(cnn_read_names_file(ctx, path, &l, &found));
    if (found) {
        if (l.n < ds->classes)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %zu class names, but the labels go up to %zu", path, l.n,
                              ds->classes - 1));
        cnn_strlist_free(ctx, &ds->names);
        ds->names = l;
        memset(&l, 0, sizeof l);
        ds->classes = ds->names.n;
    } else if (ds->classes == 10 && !strcmp(ds->kind, "idx") && looks_like_fashion(dir)) {
        cnn_strlist_free(ctx, &ds->names); /* the defaults "0".."9" */
        for (size_t i = 0; i < 10; i++) CNN_TRY(cnn_strlist_push(ctx, &ds->names, "%s", fashion[i]));
    }
    CNN_TRY(cnn_dataset_default_names(ds));
cleanup:
    cnn_strlist_free(ctx, &l);
    cnn_mem_free(ctx, path);
    return st;
}

cnn_dataset_options cnn_dataset_options_default(void) {
    cnn_dataset_options o;
    memset(&o, 0, sizeof o);
    return o;
}

cnn_status cnn_dataset_load_dir(cnn_ctx *ctx, const char *dir, const char *split, cnn_dataset **out) {
    return cnn_dataset_load_dir_ex(ctx, dir, split, NULL, out);
}

cnn_status cnn_dataset_load_dir_ex(cnn_ctx *ctx, const char *dir, const char *split, const cnn_dataset_options *opt,
                                   cnn_dataset **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_dir: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!dir || !split) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_dir: %s is NULL", dir ? "split" : "dir");
    int test = !strcmp(split, "test") || !strcmp(split, "t10k");
    if (!test && strcmp(split, "train") != 0)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "%s: unknown split '%s' (expected 'train' or 'test')", dir, split);
    struct stat sb;
    if (stat(dir, &sb) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cnn_error(ctx, CNN_ERR_IO, "%s: not a directory", dir);
    cnn_status st = CNN_OK;
    cnn_dataset *ds = NULL;
    char *sub = NULL;
    cnn_strlist classes = {NULL, 0, 0};
    int images = 0;
    if (!holds_idx(ctx, dir) && !holds_cifar(ctx, dir)) {
        CNN_TRY(join_path(ctx, dir, "cifar-10-batches-bin", &sub));
        int cifar_sub = stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode) && holds_cifar(ctx, sub);
        images = !cifar_sub && (path_is_dir(ctx, dir, "train") || path_is_dir(ctx, dir, "test"));
    }
    if (images) {
        char *train_dir = NULL, *test_dir = NULL;
        cnn_dataset_options o = opt ? *opt : cnn_dataset_options_default();
        st = join_path(ctx, dir, "train", &train_dir);
        if (st == CNN_OK) st = join_path(ctx, dir, "test", &test_dir);
        if (st == CNN_OK && !o.class_names) {
            /* both splits' class folders, so that train and test agree on the labels */
            st = cnn_list_subfolders(ctx, train_dir, 1, &classes);
            if (st == CNN_OK) st = cnn_list_subfolders(ctx, test_dir, 1, &classes);
            if (st == CNN_OK) {
                o.class_names = (const char *const *)classes.s;
                o.n_classes = classes.n;
            }
        }
        const char *split_dir = test ? test_dir : train_dir;
        if (st == CNN_OK && (stat(split_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
            st = cnn_error(ctx, CNN_ERR_IO, "%s: image dataset without a %s/ folder (expected %s/train/<class>/* and "
                           "%s/test/<class>/*)", dir, test ? "test" : "train", dir, dir);
        if (st == CNN_OK) st = cnn_dataset_load_image_folder(ctx, split_dir, &o, &ds);
        cnn_mem_free(ctx, train_dir);
        cnn_mem_free(ctx, test_dir);
        if (st != CNN_OK) goto cleanup;
    } else {
        CNN_TRY(load_dir_plain(ctx, dir, split, &ds));
        CNN_TRY(apply_names(ds, dir));
    }
    *out = ds;
    ds = NULL;
cleanup:
    cnn_strlist_free(ctx, &classes);
    cnn_mem_free(ctx, sub);
    cnn_dataset_free(ds);
    return st;
}

cnn_status cnn_dataset_from_memory(cnn_ctx *ctx, const float *x, const int32_t *labels, size_t n,
                                   cnn_shape shape, size_t classes, cnn_dataset **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_from_memory: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!x || !labels)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_from_memory: %s is NULL", x ? "labels" : "x");
    if (n == 0) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_from_memory: no samples (n = 0)");
    if (shape.c == 0 || shape.h == 0 || shape.w == 0)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_from_memory: empty sample shape (%zu, %zu, %zu)",
                         shape.c, shape.h, shape.w);
    int32_t max_label = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || (classes && (size_t)labels[i] >= classes))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_from_memory: label %zu is %ld, expected 0..%zu",
                             i, (long)labels[i], classes ? classes - 1 : (size_t)INT32_MAX);
        if (labels[i] > max_label) max_label = labels[i];
    }
    if (!classes) classes = (size_t)max_label + 1 < 2 ? 2 : (size_t)max_label + 1;
    cnn_dataset *ds;
    cnn_status st = dataset_new(ctx, n, shape, 0, NULL, &ds);
    if (st != CNN_OK) return st;
    memcpy(ds->f32, x, n * ds->count * sizeof(float));
    memcpy(ds->labels, labels, n * sizeof(int32_t));
    ds->classes = classes;
    ds->kind = "memory";
    if ((st = cnn_dataset_default_names(ds)) != CNN_OK) {
        cnn_dataset_free(ds);
        return st;
    }
    *out = ds;
    return CNN_OK;
}

size_t cnn_dataset_size(const cnn_dataset *ds) { return ds ? ds->n : 0; }

cnn_shape cnn_dataset_shape(const cnn_dataset *ds) {
    cnn_shape z = {0, 0, 0};
    return ds ? ds->shape : z;
}

size_t cnn_dataset_classes(const cnn_dataset *ds) { return ds ? ds->classes : 0; }

const char *cnn_dataset_kind(const cnn_dataset *ds) { return ds ? ds->kind : ""; }

size_t cnn_dataset_num_warnings(const cnn_dataset *ds) { return ds ? ds->warnings.n : 0; }

const char *cnn_dataset_warning(const cnn_dataset *ds, size_t i) {
    return ds && i < ds->warnings.n ? ds->warnings.s[i] : NULL;
}

const char *cnn_dataset_class_name(const cnn_dataset *ds, size_t i) {
    return ds && i < ds->classes && i < ds->names.n ? ds->names.s[i] : NULL;
}

cnn_status cnn_dataset_set_class_names(cnn_dataset *ds, const char *const *names, size_t n) {
    if (!ds) return CNN_ERR_INVALID_ARG;
    if (!names || n != ds->classes)
        return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_set_class_names: %zu names for %zu classes",
                         names ? n : 0, ds->classes);
    for (size_t i = 0; i < n; i++)
        if (!names[i] || !names[i][0] || strpbrk(names[i], "\r\n"))
            return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG,
                             "cnn_dataset_set_class_names: name %zu is %s", i, names[i] ? "empty or has a line break" : "NULL");
    cnn_strlist l = {NULL, 0, 0};
    for (size_t i = 0; i < n; i++) {
        cnn_status st = cnn_strlist_push(ds->ctx, &l, "%s", names[i]);
        if (st != CNN_OK) {
            cnn_strlist_free(ds->ctx, &l);
            return st;
        }
    }
    cnn_strlist_free(ds->ctx, &ds->names);
    ds->names = l;
    return CNN_OK;
}

cnn_status cnn_dataset_set_normalization(cnn_dataset *ds, const float *mean, const float *std, size_t channels) {
    if (!ds) return CNN_ERR_INVALID_ARG;
    size_t c = ds->shape.c;
    if (channels == 0 || (!mean && !std)) {
        ds->normalized = 0;
        for (size_t i = 0; i < c; i++) {
            ds->mean[i] = 0.0f;
            ds->std[i] = 1.0f;
        }
        build_lut(ds);
        return CNN_OK;
    }
    if (!mean || !std)
        return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_set_normalization: %s is NULL",
                         mean ? "std" : "mean");
    if (channels != c && channels != 1)
        return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG,
                         "cnn_dataset_set_normalization: %zu channels given, the samples have %zu (or give 1 for all)",
                         channels, c);
    for (size_t i = 0; i < channels; i++) {
        if (!isfinite(mean[i]))
            return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_set_normalization: mean[%zu] is not finite", i);
        if (!isfinite(std[i]) || !(std[i] > 0.0f))
            return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG,
                             "cnn_dataset_set_normalization: std[%zu] = %g, expected a finite value > 0", i,
                             (double)std[i]);
    }
    for (size_t i = 0; i < c; i++) {
        ds->mean[i] = mean[channels == 1 ? 0 : i];
        ds->std[i] = std[channels == 1 ? 0 : i];
    }
    ds->normalized = 1;
    build_lut(ds);
    return CNN_OK;
}

cnn_status cnn_dataset_gather(const cnn_dataset *ds, const size_t *idx, size_t n, float *x, int32_t *labels) {
    if (!ds) return CNN_ERR_INVALID_ARG;
    if (n == 0) return CNN_OK;
    if (!idx) return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_gather: idx is NULL");
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= ds->n)
            return cnn_error(ds->ctx, CNN_ERR_INVALID_ARG,
                             "cnn_dataset_gather: idx[%zu] = %zu is out of range (the dataset has %zu samples)", i,
                             idx[i], ds->n);
    const size_t count = ds->count, plane = ds->plane, nc = ds->shape.c;
    for (size_t i = 0; i < n; i++) {
        const size_t s = idx[i];
        if (labels) labels[i] = ds->labels[s];
        if (!x) continue;
        float *dst = x + i * count;
        if (ds->u8) {
            const uint8_t *src = ds->u8 + s * count;
            for (size_t c = 0; c < nc; c++) {
                const float *t = ds->lut + c * 256;
                for (size_t j = 0; j < plane; j++) dst[c * plane + j] = t[src[c * plane + j]];
            }
        } else {
            const float *src = ds->f32 + s * count;
            if (!ds->normalized) {
                memcpy(dst, src, count * sizeof(float));
            } else {
                for (size_t c = 0; c < nc; c++) {
                    const float m = ds->mean[c], sd = ds->std[c];
                    for (size_t j = 0; j < plane; j++) dst[c * plane + j] = (src[c * plane + j] - m) / sd;
                }
            }
        }
    }
    return CNN_OK;
}

void cnn_shuffle_indices(size_t *idx, size_t n, uint64_t seed) {
    if (!idx) return;
    for (size_t i = 0; i < n; i++) idx[i] = i;
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cnn_rng_below(&r, (uint64_t)i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
