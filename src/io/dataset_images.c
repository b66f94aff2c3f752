/* dataset_images.c — datasets of image files: a folder of class folders (kind "images") and a list file of
 * "PATH LABEL" lines (kind "list").
 *
 * Loading: the file list is made first (class folders in class order, files sorted by name with strcmp,
 * hidden entries skipped), then every file is decoded once (image_decode.c: PNG by libpng, JPEG by
 * libjpeg-turbo), resampled by area averaging to the dataset's shape, converted to its channels and stored
 * as uint8 (CHW), so batches cost what IDX batches cost. Decoding runs on the context's threads
 * (cnn_pool_for: file i is task i; each task writes only its own slot), then the usable samples are packed
 * in file order, so the result does not depend on the thread count. A file that cannot be decoded (not an
 * image, empty, truncated, corrupt) is skipped with a warning "<path>: <reason>" (cnn_dataset_warning);
 * nothing is printed. No usable image at all is CNN_ERR_FORMAT.
 *
 * Shape: the caller's (the model's input); when zero, the first decodable file's height, width and
 * channels. Memory: one slot per listed file (the samples of skipped files are dropped at the end but the
 * buffer keeps its size), plus each worker's decoded image while it works on it. */
#define _POSIX_C_SOURCE 200809L
#include "dataset_internal.h"
#include "image_decode.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cnn_status join(cnn_ctx *ctx, const char *dir, const char *name, char **out) {
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

/* Entries of dir (no "." or hidden names), sorted; dirs_only: only subfolders, else only non-folders (in
 * *folders the names of the subfolders found, when not NULL). */
static cnn_status list_dir(cnn_ctx *ctx, const char *dir, int dirs_only, cnn_strlist *out, cnn_strlist *folders) {
    DIR *d = opendir(dir);
    if (!d) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    cnn_status st = CNN_OK;
    struct dirent *e;
    char *path = NULL;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        CNN_TRY(join(ctx, dir, e->d_name, &path));
        struct stat sb;
        int is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
        cnn_mem_free(ctx, path);
        path = NULL;
        if (is_dir == dirs_only) CNN_TRY(cnn_strlist_push(ctx, out, "%s", e->d_name));
        else if (is_dir && folders) CNN_TRY(cnn_strlist_push(ctx, folders, "%s", e->d_name));
    }
    if (out->n) qsort(out->s, out->n, sizeof *out->s, cmp_str);
    if (folders && folders->n) qsort(folders->s, folders->n, sizeof *folders->s, cmp_str);
cleanup:
    cnn_mem_free(ctx, path);
    closedir(d);
    return st;
}

cnn_status cnn_list_subfolders(cnn_ctx *ctx, const char *dir, int missing_ok, cnn_strlist *out) {
    struct stat sb;
    if (missing_ok && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) return CNN_OK;
    cnn_strlist l = {NULL, 0, 0};
    cnn_status st = list_dir(ctx, dir, 1, &l, NULL);
    for (size_t i = 0; st == CNN_OK && i < l.n; i++) {
        int dup = 0;
        for (size_t j = 0; j < out->n && !dup; j++) dup = !strcmp(out->s[j], l.s[i]);
        if (!dup) st = cnn_strlist_push(ctx, out, "%s", l.s[i]);
    }
    if (st == CNN_OK && out->n) qsort(out->s, out->n, sizeof *out->s, cmp_str);
    cnn_strlist_free(ctx, &l);
    return st;
}

/* ---- decoding a list of files into a dataset ---- */

typedef struct decode_job {
    char *const *paths;
    const uint8_t *skip; /* files already handled (the probe) */
    uint8_t *px;         /* n * count */
    size_t count;
    cnn_shape shape;
    char **err;          /* per file: malloc'd message, NULL when decoded */
    uint8_t *ok;
} decode_job;

static void set_err(char **slot, const char *msg) {
    size_t n = strlen(msg);
    char *s = malloc(n + 1);
    if (s) memcpy(s, msg, n + 1);
    *slot = s; /* NULL when out of memory: reported as "out of memory" */
}

static void decode_one(decode_job *j, size_t i) {
    cnn_raw_image im;
    char err[512];
    if (cnn_raw_image_read(j->paths[i], &im, err, sizeof err) != 0) {
        set_err(&j->err[i], err);
        return;
    }
    cnn_raw_image_resample(&im, j->shape, j->px + i * j->count);
    cnn_raw_image_free(&im);
    j->ok[i] = 1;
}

static void decode_task(void *arg, size_t task, size_t thread) {
    (void)thread;
    decode_job *j = arg;
    if (!j->skip[task]) decode_one(j, task);
}

/* Decode paths[0..n) (labels[i] their classes) into a new uint8 dataset of `classes` classes named by
 * names (moved into the dataset). origin names the folder or list in messages. */
static cnn_status decode_files(cnn_ctx *ctx, const char *origin, const char *kind, cnn_strlist *paths,
                               const int32_t *labels, cnn_shape shape, cnn_strlist *names, cnn_dataset **out) {
    cnn_status st = CNN_OK;
    const size_t n = paths->n;
    cnn_dataset *ds = NULL;
    decode_job j;
    memset(&j, 0, sizeof j);
    uint8_t *skip = NULL;
    char **err = NULL;
    uint8_t *ok = NULL;
    char msg[512];
    if (n == 0) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no image files", origin));
    err = cnn_mem_calloc(ctx, n, sizeof *err);
    ok = cnn_mem_calloc(ctx, n, 1);
    skip = cnn_mem_calloc(ctx, n, 1);
    if (!err || !ok || !skip) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory listing %zu image files", n));
    /* The shape: the caller's, or the first decodable file's. */
    size_t first = 0;
    cnn_raw_image probe;
    memset(&probe, 0, sizeof probe);
    int have_probe = 0;
    if (shape.c == 0 || shape.h == 0 || shape.w == 0) {
        for (; first < n; first++) {
            skip[first] = 1;
            if (cnn_raw_image_read(paths->s[first], &probe, msg, sizeof msg) == 0) {
                have_probe = 1;
                break;
            }
            set_err(&err[first], msg);
        }
        if (!have_probe) {
            st = cnn_error(ctx, CNN_ERR_FORMAT, "%s: no usable image among %zu file%s (%s: %s)", origin, n,
                           n == 1 ? "" : "s", paths->s[0], err[0] ? err[0] : "out of memory");
            goto cleanup;
        }
        shape.c = probe.c;
        shape.h = probe.h;
        shape.w = probe.w;
    }
    if ((shape.c != 1 && shape.c != 3) || shape.h > CNN_IMAGE_MAX_SIDE || shape.w > CNN_IMAGE_MAX_SIDE) {
        cnn_raw_image_free(&probe);
        CNN_TRY(cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                          "%s: images become (%zu, %zu, %zu) samples: expected 1 (gray) or 3 (RGB) channels", origin,
                          shape.c, shape.h, shape.w));
    }
    st = cnn_dataset_new_u8(ctx, n, shape, &ds);
    if (st != CNN_OK) {
        cnn_raw_image_free(&probe);
        goto cleanup;
    }
    j.paths = paths->s;
    j.skip = skip;
    j.px = ds->u8;
    j.count = ds->count;
    j.shape = shape;
    j.err = err;
    j.ok = ok;
    if (have_probe) {
        cnn_raw_image_resample(&probe, shape, ds->u8 + first * ds->count);
        cnn_raw_image_free(&probe);
        ok[first] = 1;
    }
    cnn_pool_for(ctx, n, decode_task, &j);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ok[i]) {
            CNN_TRY(cnn_dataset_warn(ds, "%s: skipped: %s", paths->s[i], err[i] ? err[i] : "out of memory"));
            continue;
        }
        if (kept != i) memcpy(ds->u8 + kept * ds->count, ds->u8 + i * ds->count, ds->count);
        ds->labels[kept++] = labels[i];
    }
    if (kept == 0)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no usable image among %zu file%s (%s: %s)", origin, n,
                          n == 1 ? "" : "s", paths->s[0], err[0] ? err[0] : "out of memory"));
    ds->n = kept;
    ds->classes = names->n;
    ds->names = *names;
    memset(names, 0, sizeof *names);
    ds->kind = kind;
    *out = ds;
    ds = NULL;
cleanup:
    if (err)
        for (size_t i = 0; i < n; i++) free(err[i]);
    cnn_mem_free(ctx, err);
    cnn_mem_free(ctx, ok);
    cnn_mem_free(ctx, skip);
    cnn_dataset_free(ds);
    return st;
}

static cnn_status copy_names(cnn_ctx *ctx, const cnn_dataset_options *opt, cnn_strlist *out) {
    for (size_t i = 0; i < opt->n_classes; i++) {
        const char *s = opt->class_names[i];
        if (!s || !*s || strpbrk(s, "\r\n"))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "dataset options: class name %zu is %s", i,
                             s ? "empty or has a line break" : "NULL");
        cnn_status st = cnn_strlist_push(ctx, out, "%s", s);
        if (st != CNN_OK) return st;
    }
    return CNN_OK;
}

static cnn_status check_opt(cnn_ctx *ctx, const cnn_dataset_options *opt) {
    if (opt->class_names && opt->n_classes == 0)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "dataset options: class_names with n_classes = 0");
    if (opt->n_classes > CNN_DATASET_MAX_NAMES)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "dataset options: %zu classes (at most %u)", opt->n_classes,
                         CNN_DATASET_MAX_NAMES);
    cnn_shape s = opt->shape;
    int zero = s.c == 0 && s.h == 0 && s.w == 0;
    if (!zero && ((s.c != 1 && s.c != 3) || s.h == 0 || s.w == 0 || s.h > CNN_IMAGE_MAX_SIDE || s.w > CNN_IMAGE_MAX_SIDE))
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                         "image datasets: samples of (%zu, %zu, %zu): expected 1 (gray) or 3 (RGB) channels and 1..%u "
                         "pixels per side", s.c, s.h, s.w, CNN_IMAGE_MAX_SIDE);
    return CNN_OK;
}

typedef struct label_vec {
    int32_t *v;
    size_t n, cap;
} label_vec;

static cnn_status label_push(cnn_ctx *ctx, label_vec *l, int32_t x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        int32_t *v = cnn_mem_calloc(ctx, nc, sizeof *v);
        if (!v) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory listing image files");
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        cnn_mem_free(ctx, l->v);
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return CNN_OK;
}

static cnn_status add_pre_warnings(cnn_dataset *ds, const cnn_strlist *w) {
    for (size_t i = 0; i < w->n; i++) {
        cnn_status st = cnn_dataset_warn(ds, "%s", w->s[i]);
        if (st != CNN_OK) return st;
    }
    return CNN_OK;
}

cnn_status cnn_dataset_load_image_folder(cnn_ctx *ctx, const char *dir, const cnn_dataset_options *opt_in,
                                         cnn_dataset **out) {
    *out = NULL;
    cnn_dataset_options opt = opt_in ? *opt_in : cnn_dataset_options_default();
    cnn_status st = check_opt(ctx, &opt);
    if (st != CNN_OK) return st;
    cnn_strlist names = {NULL, 0, 0}, present = {NULL, 0, 0}, paths = {NULL, 0, 0}, files = {NULL, 0, 0},
                sub = {NULL, 0, 0}, pre = {NULL, 0, 0};
    label_vec labels = {NULL, 0, 0};
    char *cdir = NULL;
    cnn_dataset *ds = NULL;
    CNN_TRY(list_dir(ctx, dir, 1, &present, NULL));
    if (opt.class_names) CNN_TRY(copy_names(ctx, &opt, &names));
    else
        for (size_t i = 0; i < present.n; i++) CNN_TRY(cnn_strlist_push(ctx, &names, "%s", present.s[i]));
    if (!names.n)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no class folders (expected %s/<class>/<image files>)", dir, dir));
    for (size_t i = 0; i < present.n; i++) {
        int known = 0;
        for (size_t k = 0; k < names.n && !known; k++) known = !strcmp(present.s[i], names.s[k]);
        if (!known) CNN_TRY(cnn_strlist_push(ctx, &pre, "%s/%s: skipped: not one of the %zu classes", dir, present.s[i], names.n));
    }
    for (size_t k = 0; k < names.n; k++) {
        int here = 0;
        for (size_t i = 0; i < present.n && !here; i++) here = !strcmp(present.s[i], names.s[k]);
        if (!here) continue; /* a class this split lacks */
        CNN_TRY(join(ctx, dir, names.s[k], &cdir));
        CNN_TRY(list_dir(ctx, cdir, 0, &files, &sub));
        for (size_t i = 0; i < sub.n; i++)
            CNN_TRY(cnn_strlist_push(ctx, &pre, "%s/%s: skipped: a folder inside a class folder", cdir, sub.s[i]));
        for (size_t i = 0; i < files.n; i++) {
            CNN_TRY(cnn_strlist_push(ctx, &paths, "%s/%s", cdir, files.s[i]));
            CNN_TRY(label_push(ctx, &labels, (int32_t)k));
        }
        cnn_strlist_free(ctx, &files);
        cnn_strlist_free(ctx, &sub);
        cnn_mem_free(ctx, cdir);
        cdir = NULL;
    }
    if (!paths.n)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no image files in its %zu class folder%s", dir, names.n,
                          names.n == 1 ? "" : "s"));
    CNN_TRY(decode_files(ctx, dir, "images", &paths, labels.v, opt.shape, &names, &ds));
    CNN_TRY(add_pre_warnings(ds, &pre));
    *out = ds;
    ds = NULL;
cleanup:
    cnn_dataset_free(ds);
    cnn_strlist_free(ctx, &names);
    cnn_strlist_free(ctx, &present);
    cnn_strlist_free(ctx, &paths);
    cnn_strlist_free(ctx, &files);
    cnn_strlist_free(ctx, &sub);
    cnn_strlist_free(ctx, &pre);
    cnn_mem_free(ctx, labels.v);
    cnn_mem_free(ctx, cdir);
    return st;
}

/* ---- list files ---- */

static int parse_index(const char *s, long *out) {
    if (!*s) return 0;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (v > 100000000L) return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 1;
}

static int find_name(const cnn_strlist *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->s[i], s)) return (int)i;
    return -1;
}

cnn_status cnn_dataset_load_list(cnn_ctx *ctx, const char *path, const cnn_dataset_options *opt_in, cnn_dataset **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_list: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_dataset_load_list: path is NULL");
    cnn_dataset_options opt = opt_in ? *opt_in : cnn_dataset_options_default();
    cnn_status st = check_opt(ctx, &opt);
    if (st != CNN_OK) return st;
    struct stat sb;
    if (stat(path, &sb) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open list file: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return cnn_error(ctx, CNN_ERR_IO, "%s: a folder, expected a list file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open list file: %s", path, strerror(errno));
    cnn_strlist names = {NULL, 0, 0}, paths = {NULL, 0, 0}, labtext = {NULL, 0, 0};
    label_vec labels = {NULL, 0, 0};
    cnn_dataset *ds = NULL;
    char *base = NULL, *cls = NULL;
    char line[4096];
    int have_names = 0;
    /* the folder paths are relative to */
    {
        const char *slash = strrchr(path, '/');
        size_t bl = slash ? (size_t)(slash - path) : 1;
        if (slash && bl == 0) bl = 1;
        base = cnn_mem_alloc(ctx, bl + 1);
        if (!base) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
        memcpy(base, slash ? path : ".", bl);
        base[bl] = 0;
    }
    if (opt.class_names) {
        CNN_TRY(copy_names(ctx, &opt, &names));
        have_names = 1;
    } else {
        int found = 0;
        CNN_TRY(join(ctx, base, "classes.txt", &cls));
        CNN_TRY(cnn_read_names_file(ctx, cls, &names, &found));
        have_names = found;
    }
    size_t lineno = 0;
    int any_int = 0, any_name = 0;
    long max_int = -1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n')
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: line longer than %zu characters", path, lineno, sizeof line - 2));
        char *b = line, *e = line + len;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
        *e = 0;
        if (!*b || *b == '#') continue;
        /* the label: after the last tab when the line has one (a name with spaces), else the last word */
        char *sp = e;
        int tab = strchr(b, '\t') != NULL;
        while (sp > b && sp[-1] != '\t' && (tab || sp[-1] != ' ')) sp--;
        if (sp == b)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: expected \"PATH LABEL\", got '%s' (no label)", path, lineno, b));
        char *label = sp, *pe = sp;
        while (pe > b && (pe[-1] == ' ' || pe[-1] == '\t')) pe--;
        *pe = 0;
        long v = 0;
        int r = parse_index(label, &v);
        if (r < 0 || (label[0] == '-' && parse_index(label + 1, &v) != 0))
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: label '%s' is out of range (expected 0..%s)", path, lineno,
                              label, have_names ? "the number of class names - 1" : "100000000"));
        if (r == 1) {
            if (have_names && (size_t)v >= names.n)
                CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: label %ld, but there are %zu classes (0..%zu)", path,
                                  lineno, v, names.n, names.n - 1));
            any_int = 1;
            if (v > max_int) max_int = v;
            CNN_TRY(label_push(ctx, &labels, (int32_t)v));
        } else {
            if (have_names) {
                int k = find_name(&names, label);
                if (k < 0)
                    CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: label '%s' is not a class name (%zu names, from %s)",
                                      path, lineno, label, names.n, opt.class_names ? "the caller" : cls));
                CNN_TRY(label_push(ctx, &labels, (int32_t)k));
            } else {
                int k = find_name(&labtext, label);
                if (k < 0) {
                    if (labtext.n >= CNN_DATASET_MAX_NAMES)
                        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: more than %u class names", path, lineno,
                                          CNN_DATASET_MAX_NAMES));
                    CNN_TRY(cnn_strlist_push(ctx, &labtext, "%s", label));
                    k = (int)labtext.n - 1;
                }
                CNN_TRY(label_push(ctx, &labels, (int32_t)k)); /* first-seen order; sorted below */
            }
            any_name = 1;
        }
        if (!have_names && any_int && any_name)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s:%zu: label '%s': labels mix class indices and class names; give "
                              "a classes.txt beside the list to name the indices", path, lineno, label));
        if (b[0] == '/') CNN_TRY(cnn_strlist_push(ctx, &paths, "%s", b));
        else CNN_TRY(cnn_strlist_push(ctx, &paths, "%s/%s", base, b));
    }
    if (ferror(f)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: read error", path));
    if (!paths.n) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: no \"PATH LABEL\" lines", path));
    if (!have_names) {
        if (any_name) {
            /* name labels, no name list: the names sorted; labels remapped from first-seen order */
            char **sorted = cnn_mem_calloc(ctx, labtext.n, sizeof *sorted);
            if (!sorted) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory"));
            memcpy(sorted, labtext.s, labtext.n * sizeof *sorted);
            qsort(sorted, labtext.n, sizeof *sorted, cmp_str);
            for (size_t i = 0; i < labels.n; i++) {
                char **hit = bsearch(&labtext.s[labels.v[i]], sorted, labtext.n, sizeof *sorted, cmp_str);
                labels.v[i] = (int32_t)(hit - sorted);
            }
            for (size_t i = 0; i < labtext.n && st == CNN_OK; i++) st = cnn_strlist_push(ctx, &names, "%s", sorted[i]);
            cnn_mem_free(ctx, sorted);
            if (st != CNN_OK) goto cleanup;
        } else {
            long k = max_int + 1 < 2 ? 2 : max_int + 1;
            for (long i = 0; i < k; i++) CNN_TRY(cnn_strlist_push(ctx, &names, "%ld", i));
        }
    }
    CNN_TRY(decode_files(ctx, path, "list", &paths, labels.v, opt.shape, &names, &ds));
    *out = ds;
    ds = NULL;
cleanup:
    fclose(f);
    cnn_dataset_free(ds);
    cnn_strlist_free(ctx, &names);
    cnn_strlist_free(ctx, &paths);
    cnn_strlist_free(ctx, &labtext);
    cnn_mem_free(ctx, labels.v);
    cnn_mem_free(ctx, base);
    cnn_mem_free(ctx, cls);
    return st;
}
