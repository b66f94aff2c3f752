/* cmd_onnx_test.c — `cnn onnx-test DIR... [--threads T] [--rtol R] [--atol A] [--quiet]`: run ONNX backend
 * test folders (model.onnx + test_data_set_N/{input,output}_K.pb) through the importer and compare.
 *
 * A DIR that holds model.onnx is one test; any other DIR is walked (sorted, up to 3 levels) for such
 * folders. Per folder one line: `PASS name`, `FAIL name: reason` or `SKIP name: <why unsupported>`, then
 * `N passed, N failed, N skipped`. input_0 is the network's input; input_1... are bound as constants (the
 * weights node tests pass as inputs). Tolerance as the ONNX backend's: |got - want| <= atol + rtol * |want|
 * (rtol 1e-3, atol 1e-7); NaN never passes. Exit status 0 only if none failed. */
#include "cli.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char onnx_test_help[] =
    "usage: cnn onnx-test DIR... [--threads T] [--rtol R] [--atol A] [--quiet]\n"
    "\n"
    "Run ONNX backend test folders (model.onnx and test_data_set_N/input_K.pb, output_K.pb) through the ONNX\n"
    "importer and compare the outputs. A DIR without model.onnx is searched for test folders (e.g.\n"
    "/usr/share/libonnx-testdata/data/node). Prints PASS, FAIL or SKIP (unsupported) per folder and\n"
    "'N passed, N failed, N skipped'; exits 0 only if none failed. input_0 is the network's input, further\n"
    "inputs are bound as constants.\n"
    "\n"
    "options:\n"
    "  --threads T   threads (default: all online CPUs)\n"
    "  --rtol R      relative tolerance (default 1e-3)\n"
    "  --atol A      absolute tolerance (default 1e-7)\n"
    "  --quiet       print only FAIL lines and the summary\n";

#define MAX_IO 16

typedef struct counts {
    size_t pass, fail, skip;
} counts;

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the entries of dir (without . and ..); NULL-terminated, malloc'ed. */
static char **list_dir(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (*n + 1 >= cap) {
            char **nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (v) {
        qsort(v, *n, sizeof *v, cmp_str);
        v[*n] = NULL;
    }
    return v;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    while (s && s[1] == 0 && s > p) { /* trailing slash */
        const char *t = s;
        while (t > p && t[-1] != '/') t--;
        return t;
    }
    return s ? s + 1 : p;
}

/* The library message without a leading "<path>: " (the folder is named on the line already). */
static const char *short_msg(const char *msg, const char *path) {
    size_t l = strlen(path);
    if (!strncmp(msg, path, l) && msg[l] == ':' && msg[l + 1] == ' ') return msg + l + 2;
    return msg;
}

typedef struct run_cfg {
    size_t threads;
    double rtol, atol;
    int quiet;
} run_cfg;

/* One test_data_set folder: 0 pass, 1 fail, 2 skip; reason in why. */
static int run_set(cnn_ctx *ctx, const char *model, const char *set, const run_cfg *cfg, char *why, size_t wn) {
    cnn_onnx_tensor in[MAX_IO], outs[MAX_IO];
    size_t n_in = 0, n_out = 0;
    int res = 1;
    cnn_net *net = NULL;
    char path[8192];
    memset(in, 0, sizeof in);
    memset(outs, 0, sizeof outs);
    for (;;) {
        snprintf(path, sizeof path, "%s/input_%zu.pb", set, n_in);
        if (!is_file(path) || n_in == MAX_IO) break;
        cnn_status rst = cnn_onnx_tensor_read(ctx, path, &in[n_in]);
        if (rst != CNN_OK) {
            snprintf(why, wn, "%s", cnn_ctx_last_error(ctx));
            res = rst == CNN_ERR_UNSUPPORTED ? 2 : 1;
            goto done;
        }
        n_in++;
    }
    for (;;) {
        snprintf(path, sizeof path, "%s/output_%zu.pb", set, n_out);
        if (!is_file(path) || n_out == MAX_IO) break;
        cnn_status rst = cnn_onnx_tensor_read(ctx, path, &outs[n_out]);
        if (rst != CNN_OK) {
            snprintf(why, wn, "%s", cnn_ctx_last_error(ctx));
            res = rst == CNN_ERR_UNSUPPORTED ? 2 : 1;
            goto done;
        }
        n_out++;
    }
    if (n_in == 0) {
        snprintf(why, wn, "no inputs in %s", base_name(set));
        res = 2;
        goto done;
    }
    if (n_out != 1) {
        snprintf(why, wn, "%zu outputs (the library's networks have one)", n_out);
        res = 2;
        goto done;
    }
    cnn_onnx_io io;
    cnn_onnx_import_options opt = {.constants = in + 1, .n_constants = n_in - 1, .input = &in[0], .io = &io};
    cnn_status st = cnn_net_import_onnx_ex(ctx, model, &opt, &net);
    if (st != CNN_OK) {
        snprintf(why, wn, "%s", short_msg(cnn_ctx_last_error(ctx), model));
        res = st == CNN_ERR_UNSUPPORTED ? 2 : 1;
        goto done;
    }
    if (outs[0].dtype != 1) {
        snprintf(why, wn, "expected output has element type %d (FLOAT only)", (int)outs[0].dtype);
        res = 2;
        goto done;
    }
    size_t n = in[0].ndim ? (size_t)in[0].dims[0] : 1;
    if (n == 0 || in[0].count == 0) {
        snprintf(why, wn, "an empty input");
        res = 2;
        goto done;
    }
    if ((st = cnn_net_forward(net, in[0].data, n, 0)) != CNN_OK) {
        snprintf(why, wn, "forward: %s", cnn_ctx_last_error(ctx));
        goto done;
    }
    size_t got_n;
    const float *y = cnn_net_output(net, &got_n);
    cnn_shape os = cnn_net_output_shape(net);
    size_t count = got_n * os.c * os.h * os.w;
    if (count != outs[0].count) {
        snprintf(why, wn, "output has %zu values, expected %zu", count, outs[0].count);
        goto done;
    }
    io.output_dims[0] = (int64_t)n;
    if (io.output_ndim != outs[0].ndim || memcmp(io.output_dims, outs[0].dims, io.output_ndim * sizeof(int64_t))) {
        snprintf(why, wn, "output dims differ from the expected (%zu dims vs %zu)", io.output_ndim, outs[0].ndim);
        goto done;
    }
    size_t worst = 0, bad = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < count; i++) {
        double g = y[i], w = outs[0].data[i];
        double tol = cfg->atol + cfg->rtol * fabs(w);
        double err = fabs(g - w);
        if (isnan(g) || isnan(w) || !(err <= tol)) {
            bad++;
            double ex = isnan(err) ? INFINITY : err - tol;
            if (ex > worst_excess) worst_excess = ex, worst = i;
        }
    }
    if (bad) {
        snprintf(why, wn, "%zu of %zu values differ; worst at %zu: got %.9g, expected %.9g", bad, count, worst,
                 (double)y[worst], (double)outs[0].data[worst]);
        goto done;
    }
    res = 0;
done:
    cnn_net_free(net);
    for (size_t i = 0; i < n_in; i++) cnn_onnx_tensor_release(ctx, &in[i]);
    for (size_t i = 0; i < n_out; i++) cnn_onnx_tensor_release(ctx, &outs[i]);
    return res;
}

static void run_folder(cnn_ctx *ctx, const char *dir, const run_cfg *cfg, counts *c) {
    char model[4096], why[1024] = "";
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    size_t n;
    char **ents = list_dir(dir, &n);
    int res = 2, sets = 0;
    snprintf(why, sizeof why, "no test_data_set_* folder");
    for (size_t i = 0; ents && i < n; i++) {
        if (strncmp(ents[i], "test_data_set_", 14) != 0) continue;
        char set[4096];
        snprintf(set, sizeof set, "%s/%s", dir, ents[i]);
        if (!is_dir(set)) continue;
        sets++;
        res = run_set(ctx, model, set, cfg, why, sizeof why);
        if (res != 0) {
            if (res == 1) {
                char t[1400];
                snprintf(t, sizeof t, "%s: %s", ents[i], why);
                snprintf(why, sizeof why, "%.1000s", t);
            }
            break;
        }
    }
    free_list(ents, n);
    const char *name = base_name(dir);
    if (res == 0) {
        c->pass++;
        if (!cfg->quiet) printf("PASS %s\n", name);
    } else if (res == 1) {
        c->fail++;
        printf("FAIL %s: %s\n", name, why);
    } else {
        c->skip++;
        if (!cfg->quiet) printf("SKIP %s: %s\n", name, why);
    }
    (void)sets;
    fflush(stdout);
}

static void walk(cnn_ctx *ctx, const char *dir, const run_cfg *cfg, counts *c, int depth) {
    char model[4096];
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    if (is_file(model)) {
        run_folder(ctx, dir, cfg, c);
        return;
    }
    if (depth >= 3) return;
    size_t n;
    char **ents = list_dir(dir, &n);
    for (size_t i = 0; ents && i < n; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, ents[i]);
        if (is_dir(sub)) walk(ctx, sub, cfg, c, depth + 1);
    }
    free_list(ents, n);
}

static int run_onnx_test(int argc, char **argv) {
    run_cfg cfg = {.threads = 0, .rtol = 1e-3, .atol = 1e-7, .quiet = 0};
    const cli_option opts[] = {
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &cfg.threads, .umin = 0, .umax = 1024},
        {.name = "rtol", .kind = CLI_OPT_DOUBLE, .out = &cfg.rtol, .dmin = 0, .dmax = 1},
        {.name = "atol", .kind = CLI_OPT_DOUBLE, .out = &cfg.atol, .dmin = 0, .dmax = 1},
        {.name = "quiet", .kind = CLI_OPT_FLAG, .out = &cfg.quiet},
    };
    const char *pos[64];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("onnx-test", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 64, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(onnx_test_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos < 1) return cli_usage_error("onnx-test: expected one or more test folders (usage: cnn onnx-test DIR...)");
    if (!cnn_onnx_available()) return cli_error("onnx-test: this build has no ONNX support (needs protobuf-c and onnx.proto)");
    for (size_t i = 0; i < n_pos; i++)
        if ((rc = cli_check_dir(pos[i], "test folder")) != 0) return rc;
    cnn_ctx *ctx = NULL;
    if ((rc = cli_ctx_create(cfg.threads, &ctx)) != 0) return rc;
    counts c = {0, 0, 0};
    for (size_t i = 0; i < n_pos; i++) walk(ctx, pos[i], &cfg, &c, 0);
    cnn_ctx_free(ctx);
    printf("%zu passed, %zu failed, %zu skipped\n", c.pass, c.fail, c.skip);
    if (c.pass + c.fail + c.skip == 0) return cli_error("onnx-test: no test folders (with model.onnx) found");
    return c.fail ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

const cli_command cli_cmd_onnx_test = {
    .name = "onnx-test",
    .summary = "run ONNX backend conformance test folders",
    .help = onnx_test_help,
    .run = run_onnx_test,
};
