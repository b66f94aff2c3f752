/* common.c — helpers shared by the cnn subcommands: error lines, strict number parsing, option parsing,
 * file checks and a JSON writer. See cli.h for the contracts. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- errors ---- */

static void vline(const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One line: newlines inside a message become spaces. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fflush(stdout);
    fprintf(stderr, "cnn: %s\n", msg);
    fflush(stderr);
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_lib_error(const cnn_ctx *ctx, cnn_status st, const char *what) {
    const char *msg = ctx ? cnn_ctx_last_error(ctx) : "";
    if (msg && msg[0])
        return cli_error("%s", msg);
    const char *text = cnn_status_string(st);
    if (!text || !text[0])
        text = "unknown error";
    if (what && what[0])
        return cli_error("%s: %s", what, text);
    return cli_error("%s", text);
}

/* ---- strict number parsing ---- */

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errn) {
    if (!s || !s[0]) {
        snprintf(err, errn, "expected a whole number, got an empty value");
        return -1;
    }
    if (s[0] == '-') {
        /* "-3" is a number, just not an allowed one: say so. */
        int digits = s[1] != 0;
        for (const char *p = s + 1; *p; p++)
            if (*p < '0' || *p > '9')
                digits = 0;
        if (digits)
            snprintf(err, errn, "must be between %llu and %llu, got '%s'", (unsigned long long)min,
                     (unsigned long long)max, s);
        else
            snprintf(err, errn, "expected a whole number, got '%s'", s);
        return -1;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(err, errn, "expected a whole number, got '%s'", s);
            return -1;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            snprintf(err, errn, "must be between %llu and %llu, got '%s'", (unsigned long long)min,
                     (unsigned long long)max, s);
            return -1;
        }
        v = v * 10 + d;
    }
    if (v < min || v > max) {
        snprintf(err, errn, "must be between %llu and %llu, got '%s'", (unsigned long long)min,
                 (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double_prefix(const char *s, const char **end, double *out) {
    /* No leading blanks, no hexadecimal, no nan/inf spellings. */
    if (!s[0] || !(s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
        return -1;
    for (const char *p = s; *p && *p != ','; p++)
        if (*p == 'x' || *p == 'X')
            return -1;
    errno = 0;
    char *e = NULL;
    double v = strtod(s, &e);
    if (e == s || errno == ERANGE || !isfinite(v))
        return -1;
    *end = e;
    *out = v;
    return 0;
}

static void format_g(char *buf, size_t n, double v) { snprintf(buf, n, "%g", v); }

int cli_parse_double(const char *s, double min, double max, int min_exclusive, double *out, char *err,
                     size_t errn) {
    const char *end = NULL;
    double v;
    if (!s || parse_double_prefix(s, &end, &v) != 0 || *end != 0) {
        snprintf(err, errn, "expected a finite number, got '%s'", s ? s : "");
        return -1;
    }
    if ((min_exclusive ? !(v > min) : !(v >= min)) || !(v <= max)) {
        char a[32], b[32];
        format_g(a, sizeof a, min);
        format_g(b, sizeof b, max);
        if (min_exclusive)
            snprintf(err, errn, "must be greater than %s and at most %s, got '%s'", a, b, s);
        else
            snprintf(err, errn, "must be between %s and %s, got '%s'", a, b, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double_list(const char *s, double *out, size_t max, size_t *n, char *err, size_t errn) {
    size_t k = 0;
    const char *p = s;
    if (!s || !s[0]) {
        snprintf(err, errn, "expected a comma-separated list of numbers, got an empty value");
        return -1;
    }
    for (;;) {
        const char *end = NULL;
        double v;
        if (parse_double_prefix(p, &end, &v) != 0 || (*end != ',' && *end != 0)) {
            snprintf(err, errn, "expected a comma-separated list of finite numbers, got '%s'", s);
            return -1;
        }
        if (k == max) {
            snprintf(err, errn, "at most %zu numbers expected, got '%s'", max, s);
            return -1;
        }
        out[k++] = v;
        if (*end == 0)
            break;
        p = end + 1;
    }
    *n = k;
    return 0;
}

/* ---- options ---- */

static const cli_option *find_option(const cli_option *opts, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static int set_option(const char *cmd, const cli_option *o, const char *val) {
    char err[256];
    switch (o->kind) {
    case CLI_OPT_FLAG:
        *(int *)o->out = 1;
        break;
    case CLI_OPT_STRING:
        if (!val[0])
            return cli_usage_error("%s: --%s needs a non-empty value", cmd, o->name);
        *(const char **)o->out = val;
        break;
    case CLI_OPT_SIZE:
    case CLI_OPT_U64: {
        uint64_t v;
        uint64_t umax = o->umax;
        if (o->kind == CLI_OPT_SIZE && umax > (uint64_t)SIZE_MAX)
            umax = (uint64_t)SIZE_MAX;
        if (cli_parse_u64(val, o->umin, umax, &v, err, sizeof err) != 0)
            return cli_usage_error("%s: --%s: %s", cmd, o->name, err);
        if (o->kind == CLI_OPT_SIZE)
            *(size_t *)o->out = (size_t)v;
        else
            *(uint64_t *)o->out = v;
        break;
    }
    case CLI_OPT_DOUBLE: {
        double v;
        if (cli_parse_double(val, o->dmin, o->dmax, o->min_exclusive, &v, err, sizeof err) != 0)
            return cli_usage_error("%s: --%s: %s", cmd, o->name, err);
        *(double *)o->out = v;
        break;
    }
    case CLI_OPT_CHOICE: {
        char list[256] = "";
        for (size_t i = 0; o->choices[i]; i++) {
            if (strcmp(o->choices[i], val) == 0) {
                *(int *)o->out = (int)i;
                if (o->seen)
                    *o->seen = 1;
                return 0;
            }
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", o->choices[i]);
        }
        return cli_usage_error("%s: --%s: expected one of %s, got '%s'", cmd, o->name, list, val);
    }
    }
    if (o->seen)
        *o->seen = 1;
    return 0;
}

int cli_parse_args(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
                   const char **pos, size_t max_pos, size_t *n_pos, int *help) {
    int only_pos = 0;
    *n_pos = 0;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            *help = 1;
            return 0;
        }
        if (!only_pos && a[0] == '-' && a[1] != 0) {
            if (a[1] != '-')
                return cli_usage_error("%s: unknown option '%s' (options are spelled --name; see 'cnn help %s')",
                                       cmd, a, cmd);
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_option *o = find_option(opts, n_opts, name, len);
            if (!o)
                return cli_usage_error("%s: unknown option '--%.*s' (see 'cnn help %s')", cmd, (int)len, name,
                                       cmd);
            const char *val = NULL;
            if (o->kind == CLI_OPT_FLAG) {
                if (eq)
                    return cli_usage_error("%s: --%s takes no value", cmd, o->name);
            } else if (eq) {
                val = eq + 1;
            } else {
                /* The next argument is the value, even if it looks like a negative number; an
                 * argument that looks like another option means the value is missing. */
                if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-' && argv[i + 1][2] != 0))
                    return cli_usage_error("%s: --%s needs a value", cmd, o->name);
                val = argv[++i];
            }
            int rc = set_option(cmd, o, val);
            if (rc != 0)
                return rc;
            continue;
        }
        if (*n_pos >= max_pos) {
            if (max_pos == 0)
                return cli_usage_error("%s: unexpected argument '%s'", cmd, a);
            return cli_usage_error("%s: unexpected extra argument '%s' (see 'cnn help %s')", cmd, a, cmd);
        }
        pos[(*n_pos)++] = a;
    }
    return 0;
}

/* ---- files ---- */

int cli_check_file(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) != 0)
        return cli_error("%s '%s': %s", what, path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cli_error("%s '%s' is a directory, expected a file", what, path);
    return 0;
}

int cli_check_dir(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) != 0)
        return cli_error("%s '%s': %s", what, path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cli_error("%s '%s' is not a directory", what, path);
    return 0;
}

int cli_check_output(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return cli_error("%s '%s' is a directory, expected a file name", what, path);
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        size_t len = (size_t)(slash - path);
        char *dir = malloc(len + 1);
        if (!dir)
            return cli_error("out of memory");
        memcpy(dir, path, len);
        dir[len] = 0;
        int rc = 0;
        if (stat(dir, &st) != 0)
            rc = cli_error("%s '%s': folder '%s': %s", what, path, dir, strerror(errno));
        else if (!S_ISDIR(st.st_mode))
            rc = cli_error("%s '%s': '%s' is not a directory", what, path, dir);
        if (rc) {
            free(dir);
            return rc;
        }
        free(dir);
    }
    return 0;
}

int cli_ctx_create(size_t threads, cnn_ctx **out) {
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    cnn_status st = cnn_ctx_create(out, &o);
    if (st != CNN_OK) {
        *out = NULL;
        return cli_error("cannot create a context: %s", cnn_status_string(st));
    }
    return 0;
}

size_t cli_lanes_choice(size_t lanes, size_t threads, size_t batch) {
    if (lanes == SIZE_MAX || lanes == 0) lanes = threads;
    if (lanes > batch) lanes = batch;
    return lanes < 2 ? 1 : lanes;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_format_shape(char *buf, size_t n, cnn_shape s) { snprintf(buf, n, "%zux%zux%zu", s.c, s.h, s.w); }

/* ---- JSON ---- */

void cli_json_init(cli_json *j, FILE *f) {
    memset(j, 0, sizeof *j);
    j->f = f;
}

static void json_sep(cli_json *j) {
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0 && j->count[j->depth - 1]++ > 0)
        fputc(',', j->f);
}

static void json_open(cli_json *j, char c) {
    json_sep(j);
    fputc(c, j->f);
    if (j->depth < CLI_JSON_MAX_DEPTH)
        j->count[j->depth] = 0;
    j->depth++;
}

static void json_close(cli_json *j, char c) {
    if (j->depth > 0)
        j->depth--;
    fputc(c, j->f);
}

void cli_json_begin_object(cli_json *j) { json_open(j, '{'); }
void cli_json_end_object(cli_json *j) { json_close(j, '}'); }
void cli_json_begin_array(cli_json *j) { json_open(j, '['); }
void cli_json_end_array(cli_json *j) { json_close(j, ']'); }

static void json_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void cli_json_key(cli_json *j, const char *key) {
    json_sep(j);
    json_quoted(j->f, key);
    fputc(':', j->f);
    j->after_key = 1;
}

void cli_json_string(cli_json *j, const char *s) {
    json_sep(j);
    json_quoted(j->f, s);
}

void cli_json_double(cli_json *j, double v) {
    json_sep(j);
    if (!isfinite(v)) {
        fputs("null", j->f);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, j->f);
}

void cli_json_uint(cli_json *j, uint64_t v) {
    json_sep(j);
    fprintf(j->f, "%llu", (unsigned long long)v);
}

void cli_json_bool(cli_json *j, int v) {
    json_sep(j);
    fputs(v ? "true" : "false", j->f);
}

void cli_json_null(cli_json *j) {
    json_sep(j);
    fputs("null", j->f);
}

void cli_json_finish(cli_json *j) {
    fputc('\n', j->f);
    fflush(j->f);
}

/* ---- datasets ---- */

int cli_load_split(cnn_ctx *ctx, const char *dir, const char *split, cnn_dataset **out) {
    cnn_status st = cnn_dataset_load_dir(ctx, dir, split, out);
    if (st != CNN_OK) {
        *out = NULL;
        const char *msg = cnn_ctx_last_error(ctx);
        if (msg && msg[0])
            return cli_error("%s", msg);
        return cli_error("data '%s': cannot load the %s split: %s", dir, split, cnn_status_string(st));
    }
    if (cnn_dataset_size(*out) == 0) {
        cnn_dataset_free(*out);
        *out = NULL;
        return cli_error("data '%s': the %s split has no samples", dir, split);
    }
    return 0;
}

int cli_parse_normalize(const char *cmd, const char *spec, double *mean, double *std) {
    double v[2];
    size_t n = 0;
    char err[256];
    if (cli_parse_double_list(spec, v, 2, &n, err, sizeof err) != 0)
        return cli_usage_error("%s: --normalize: %s (expected MEAN,STD)", cmd, err);
    if (n != 2)
        return cli_usage_error("%s: --normalize: expected MEAN,STD, got '%s'", cmd, spec);
    if (!(v[1] > 0))
        return cli_usage_error("%s: --normalize: STD must be greater than 0, got '%s'", cmd, spec);
    *mean = v[0];
    *std = v[1];
    return 0;
}

int cli_apply_normalize(cnn_dataset *ds, double m, double s) {
    cnn_shape sh = cnn_dataset_shape(ds);
    size_t c = sh.c ? sh.c : 1;
    float *mean = malloc(c * sizeof *mean), *std = malloc(c * sizeof *std);
    if (!mean || !std) {
        free(mean);
        free(std);
        return cli_error("out of memory");
    }
    for (size_t i = 0; i < c; i++) {
        mean[i] = (float)m;
        std[i] = (float)s;
    }
    cnn_status st = cnn_dataset_set_normalization(ds, mean, std, c);
    free(mean);
    free(std);
    if (st != CNN_OK)
        return cli_error("--normalize: %s", cnn_status_string(st));
    return 0;
}

int cli_check_data_fits(const cnn_net *net, const cnn_dataset *ds, const char *dir, const char *split,
                        int exact) {
    cnn_shape ni = cnn_net_input_shape(net), di = cnn_dataset_shape(ds), no = cnn_net_output_shape(net);
    char a[64], b[64];
    if (ni.c != di.c || ni.h != di.h || ni.w != di.w) {
        cli_format_shape(a, sizeof a, di);
        cli_format_shape(b, sizeof b, ni);
        return cli_error("data '%s' (%s split) has samples of shape %s but the model's input is %s", dir, split,
                         a, b);
    }
    size_t outputs = no.c * no.h * no.w;
    size_t classes = cnn_dataset_classes(ds);
    if (exact ? classes != outputs : classes > outputs)
        return cli_error("data '%s' (%s split) has %zu classes but the model has %zu outputs", dir, split,
                         classes, outputs);
    return 0;
}

/* ---- datasets for a model, class names (part "data") ---- */

int cli_load_split_for(cnn_ctx *ctx, cnn_shape in, const char *data, const char *split, const cnn_dataset *like,
                       int quiet, cnn_dataset **out) {
    *out = NULL;
    cnn_dataset_options o = cnn_dataset_options_default();
    if ((in.c == 1 || in.c == 3) && in.h && in.w) o.shape = in;
    const char **names = NULL;
    size_t k = like ? cnn_dataset_classes(like) : 0;
    if (k && k <= 65536 && cnn_dataset_class_name(like, 0) && (names = malloc(k * sizeof *names)) != NULL) {
        for (size_t i = 0; i < k; i++) names[i] = cnn_dataset_class_name(like, i);
        o.class_names = names;
        o.n_classes = k;
    }
    struct stat sb;
    int list = stat(data, &sb) == 0 && !S_ISDIR(sb.st_mode);
    cnn_status st = list ? cnn_dataset_load_list(ctx, data, &o, out) : cnn_dataset_load_dir_ex(ctx, data, split, &o, out);
    free(names);
    if (st != CNN_OK && list && st == CNN_ERR_FORMAT) {
        *out = NULL;
        return cli_error("data '%s' is not a directory, nor a list file of \"PATH LABEL\" lines: %s", data,
                         cnn_ctx_last_error(ctx));
    }
    if (st != CNN_OK) {
        *out = NULL;
        const char *msg = cnn_ctx_last_error(ctx);
        if (msg && msg[0]) return cli_error("%s", msg);
        return cli_error("data '%s': cannot load the %s split: %s", data, split, cnn_status_string(st));
    }
    size_t nw = cnn_dataset_num_warnings(*out);
    if (!quiet) {
        for (size_t i = 0; i < nw && i < 10; i++) fprintf(stderr, "cnn: warning: %s\n", cnn_dataset_warning(*out, i));
        if (nw > 10)
            fprintf(stderr, "cnn: warning: %zu more warnings for the %s split of '%s' (files skipped)\n", nw - 10, split,
                    data);
        fflush(stderr);
    }
    if (cnn_dataset_size(*out) == 0) {
        cnn_dataset_free(*out);
        *out = NULL;
        return cli_error("data '%s': the %s split has no samples", data, split);
    }
    return 0;
}

/* Whether the names are "0".."k-1" (nothing worth storing). */
static int names_are_indices(const cnn_dataset *ds) {
    char b[32];
    for (size_t i = 0; i < cnn_dataset_classes(ds); i++) {
        const char *n = cnn_dataset_class_name(ds, i);
        snprintf(b, sizeof b, "%zu", i);
        if (n && strcmp(n, b) != 0) return 0;
    }
    return 1;
}

int cli_net_take_class_names(cnn_ctx *ctx, cnn_net *net, const cnn_dataset *ds) {
    size_t k = cnn_dataset_classes(ds);
    if (!k || !cnn_dataset_class_name(ds, 0) || names_are_indices(ds)) return 0;
    const char **names = malloc(k * sizeof *names);
    if (!names) return cli_error("out of memory");
    for (size_t i = 0; i < k; i++) names[i] = cnn_dataset_class_name(ds, i);
    cnn_status st = cnn_net_set_class_names(net, names, k);
    free(names);
    return st == CNN_OK ? 0 : cli_lib_error(ctx, st, "class names");
}

const char *const *cli_file_class_names(cnn_ctx *ctx, const char *path, size_t classes, char ***block) {
    *block = NULL;
    size_t n = 0;
    if (!path || cnn_checkpoint_read_class_names(ctx, path, block, &n) != CNN_OK) return NULL;
    if (*block && n != classes) {
        cnn_free(ctx, *block);
        *block = NULL;
    }
    return (const char *const *)*block;
}

const char **cli_dataset_class_names(const cnn_dataset *ds) {
    size_t k = cnn_dataset_classes(ds);
    if (!k || !cnn_dataset_class_name(ds, 0) || names_are_indices(ds)) return NULL;
    const char **names = malloc(k * sizeof *names);
    if (!names) return NULL;
    for (size_t i = 0; i < k; i++) names[i] = cnn_dataset_class_name(ds, i);
    return names;
}

int cli_check_data(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return 0; /* a list file */
    return cli_check_dir(path, "data folder");
}
