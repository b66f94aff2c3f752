/* cmd_explain.c — `cnn explain conv` and `cnn explain pool`: the course's worked examples walked window
 * by window in the terminal, with the numbers computed by the library's own layers: a tiny net is built
 * from model text through cnn.h (input + conv2d with the filter as its weight and no bias, or input +
 * maxpool2d), run forward, and its output printed next to the window-by-window arithmetic.
 *
 *   conv  default: the 5x5 ramp 0..24 and the vertical-edge filter [[1,0,-1],[1,0,-1],[1,0,-1]] -> -6
 *         everywhere (each row of a window contributes x - (x+2) = -2). Convolution as in CNNs is a
 *         cross-correlation: the filter is not flipped.
 *   pool  default: the 4x4 ramp 1..16, 2x2 max pooling with stride 2 -> [[6,8],[14,16]].
 * --input/--filter take matrices as "1,2,3;4,5,6;7,8,9" (rows separated by ';'). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXD 32

static const char explain_help[] =
    "usage: cnn explain conv [--input M] [--filter M] [--stride S] [--pad P]\n"
    "       cnn explain pool [--input M] [--size K] [--stride S] [--avg]\n"
    "\n"
    "Walk through a convolution or a pooling step by step: every window, its element-wise products (conv) or\n"
    "its values (pool), and the result, computed by the library's own conv2d / maxpool2d layers.\n"
    "Matrices are rows separated by ';', values by ',', e.g. --input \"1,2,3;4,5,6;7,8,9\" (at most 32x32).\n"
    "\n"
    "  conv   default: the 5x5 ramp 0..24 with the vertical-edge filter 1,0,-1;1,0,-1;1,0,-1 (gives -6\n"
    "         everywhere: the ramp rises by 1 per column, so each row adds x - (x+2) = -2)\n"
    "  pool   default: the 4x4 ramp 1..16 with 2x2 max pooling, stride 2 (gives [[6,8],[14,16]])\n"
    "\n"
    "options:\n"
    "  --input M     the input matrix\n"
    "  --filter M    conv: the filter (kernel) matrix\n"
    "  --stride S    step between windows (default 1 for conv, the pool size for pool)\n"
    "  --pad P       conv: zero padding on every side (default 0)\n"
    "  --size K      pool: window size (default 2)\n"
    "  --avg         pool: average pooling instead of max\n";

typedef struct mat {
    size_t r, c;
    double v[MAXD * MAXD];
} mat;

static int parse_matrix(const char *what, const char *s, mat *m) {
    m->r = m->c = 0;
    size_t cols = 0;
    const char *p = s;
    while (1) {
        char *end;
        while (*p == ' ' || *p == '\t') p++;
        double d = strtod(p, &end);
        if (end == p || !isfinite(d))
            return cli_usage_error("explain: %s: expected a number at '%.20s' (format: \"1,2,3;4,5,6\")", what, p);
        if (m->r >= MAXD || cols >= MAXD) return cli_usage_error("explain: %s: at most %dx%d", what, MAXD, MAXD);
        m->v[m->r * MAXD + cols++] = d;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == ';' || *p == 0) {
            if (m->r == 0) m->c = cols;
            else if (cols != m->c)
                return cli_usage_error("explain: %s: row %zu has %zu values, row 1 has %zu", what, m->r + 1, cols, m->c);
            m->r++;
            cols = 0;
            if (*p == 0) break;
            p++;
            continue;
        }
        return cli_usage_error("explain: %s: unexpected '%c' (format: \"1,2,3;4,5,6\")", what, *p);
    }
    return 0;
}

static void print_matrix(const char *indent, const float *v, size_t r, size_t c) {
    for (size_t i = 0; i < r; i++) {
        printf("%s", indent);
        for (size_t j = 0; j < c; j++) printf("%7g", v[i * c + j]);
        printf("\n");
    }
}

static void print_compact(const float *v, size_t r, size_t c) {
    printf("[");
    for (size_t i = 0; i < r; i++) {
        printf("%s[", i ? "," : "");
        for (size_t j = 0; j < c; j++) printf("%s%g", j ? "," : "", v[i * c + j]);
        printf("]");
    }
    printf("]");
}

/* the tiny net: parse, compile for one sample, set the weight, forward; y gets a pointer to the output */
static int run_net(cnn_ctx *ctx, const char *text, const mat *filter, const float *x, cnn_net **net,
                   const float **y, cnn_shape *os) {
    cnn_status st = cnn_net_parse(ctx, text, strlen(text), "explain", net);
    if (st != CNN_OK) return cli_lib_error(ctx, st, "building the example network");
    if ((st = cnn_net_compile(*net, 1, 0)) != CNN_OK) return cli_lib_error(ctx, st, "compiling the example network");
    if (filter) {
        cnn_param p;
        if ((st = cnn_net_param_find(*net, "conv.weight", &p)) != CNN_OK) return cli_lib_error(ctx, st, "conv.weight");
        for (size_t i = 0; i < filter->r; i++)
            for (size_t j = 0; j < filter->c; j++) p.data[i * filter->c + j] = (float)filter->v[i * MAXD + j];
    }
    if ((st = cnn_net_forward(*net, x, 1, 0)) != CNN_OK) return cli_lib_error(ctx, st, "forward");
    size_t n;
    *y = cnn_net_output(*net, &n);
    *os = cnn_net_output_shape(*net);
    return 0;
}

static int run_explain(int argc, char **argv) {
    const char *input = NULL, *filter = NULL;
    size_t stride = 0, pad = 0, size = 2;
    int seen_stride = 0, seen_pad = 0, seen_size = 0, avg = 0;
    const cli_option opts[] = {
        {.name = "input", .kind = CLI_OPT_STRING, .out = &input},
        {.name = "filter", .kind = CLI_OPT_STRING, .out = &filter},
        {.name = "stride", .kind = CLI_OPT_SIZE, .out = &stride, .umin = 1, .umax = MAXD, .seen = &seen_stride},
        {.name = "pad", .kind = CLI_OPT_SIZE, .out = &pad, .umin = 0, .umax = 8, .seen = &seen_pad},
        {.name = "size", .kind = CLI_OPT_SIZE, .out = &size, .umin = 1, .umax = MAXD, .seen = &seen_size},
        {.name = "avg", .kind = CLI_OPT_FLAG, .out = &avg},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("explain", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(explain_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1 || (strcmp(pos[0], "conv") != 0 && strcmp(pos[0], "pool") != 0))
        return cli_usage_error("explain: expected 'conv' or 'pool' (usage: cnn explain conv|pool [options])");
    int conv = strcmp(pos[0], "conv") == 0;
    if (conv && (seen_size || avg)) return cli_usage_error("explain conv: --size and --avg are for 'explain pool'");
    if (!conv && (filter || seen_pad)) return cli_usage_error("explain pool: --filter and --pad are for 'explain conv'");

    static mat in, f;
    if (input) {
        if ((rc = parse_matrix("--input", input, &in)) != 0) return rc;
    } else {
        size_t n = conv ? 5 : 4;
        in.r = in.c = n;
        for (size_t i = 0; i < n * n; i++) in.v[(i / n) * MAXD + i % n] = (double)i + (conv ? 0 : 1);
    }
    if (conv) {
        if (filter) {
            if ((rc = parse_matrix("--filter", filter, &f)) != 0) return rc;
        } else {
            f.r = f.c = 3;
            for (size_t i = 0; i < 3; i++) {
                f.v[i * MAXD + 0] = 1;
                f.v[i * MAXD + 1] = 0;
                f.v[i * MAXD + 2] = -1;
            }
        }
        if (!seen_stride) stride = 1;
        if (f.r > in.r + 2 * pad || f.c > in.c + 2 * pad)
            return cli_usage_error("explain conv: the %zux%zu filter does not fit the %zux%zu input (padding %zu)", f.r,
                                   f.c, in.r, in.c, pad);
    } else {
        if (!seen_stride) stride = size;
        if (size > in.r || size > in.c)
            return cli_usage_error("explain pool: the %zux%zu window does not fit the %zux%zu input", size, size, in.r,
                                   in.c);
    }

    float x[MAXD * MAXD];
    for (size_t i = 0; i < in.r; i++)
        for (size_t j = 0; j < in.c; j++) x[i * in.c + j] = (float)in.v[i * MAXD + j];
    char text[512];
    if (conv)
        snprintf(text, sizeof text, "input c=1 h=%zu w=%zu\nconv2d name=conv k=1 kh=%zu kw=%zu stride=%zu pad=%zu bias=0\n",
                 in.r, in.c, f.r, f.c, stride, pad);
    else
        snprintf(text, sizeof text, "input c=1 h=%zu w=%zu\n%s name=pool size=%zu stride=%zu\n", in.r, in.c,
                 avg ? "avgpool2d" : "maxpool2d", size, stride);

    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    const float *y = NULL;
    cnn_shape os = {0, 0, 0};
    rc = CLI_EXIT_FAIL;
    if (cli_ctx_create(1, &ctx) != 0) goto cleanup;
    if (run_net(ctx, text, conv ? &f : NULL, x, &net, &y, &os) != 0) goto cleanup;

    printf("input (%zux%zu):\n", in.r, in.c);
    print_matrix("  ", x, in.r, in.c);
    if (conv) {
        float fv[MAXD * MAXD];
        for (size_t i = 0; i < f.r; i++)
            for (size_t j = 0; j < f.c; j++) fv[i * f.c + j] = (float)f.v[i * MAXD + j];
        printf("filter (%zux%zu):\n", f.r, f.c);
        print_matrix("  ", fv, f.r, f.c);
        printf("\nConvolution (as in CNNs: slide the filter, multiply element by element, add up; no flipping),\n"
               "stride %zu, padding %zu: output %zux%zu = ((%zu + 2*%zu - %zu) / %zu + 1) x ((%zu + 2*%zu - %zu) / %zu + 1)\n",
               stride, pad, os.h, os.w, in.r, pad, f.r, stride, in.c, pad, f.c, stride);
        for (size_t oi = 0; oi < os.h; oi++)
            for (size_t oj = 0; oj < os.w; oj++) {
                long r0 = (long)(oi * stride) - (long)pad, c0 = (long)(oj * stride) - (long)pad;
                printf("\nwindow at output (%zu,%zu): input rows %ld..%ld, columns %ld..%ld\n", oi, oj, r0,
                       r0 + (long)f.r - 1, c0, c0 + (long)f.c - 1);
                double sum = 0;
                for (size_t a = 0; a < f.r; a++) {
                    printf("  %s", a ? "+ " : "  ");
                    for (size_t b = 0; b < f.c; b++) {
                        long r = r0 + (long)a, c = c0 + (long)b;
                        double v = r >= 0 && c >= 0 && r < (long)in.r && c < (long)in.c ? x[r * (long)in.c + c] : 0;
                        double w = fv[a * f.c + b];
                        printf(w < 0 ? "%s%g*(%g)" : "%s%g*%g", b ? " + " : "", v, w);
                        sum += v * w;
                    }
                    printf("\n");
                }
                printf("  = %g   (library: %g)\n", sum, y[oi * os.w + oj]);
            }
    } else {
        printf("\n%s pooling, %zux%zu windows, stride %zu: output %zux%zu\n", avg ? "Average" : "Max", size, size,
               stride, os.h, os.w);
        for (size_t oi = 0; oi < os.h; oi++)
            for (size_t oj = 0; oj < os.w; oj++) {
                size_t r0 = oi * stride, c0 = oj * stride;
                printf("\nwindow at output (%zu,%zu): input rows %zu..%zu, columns %zu..%zu\n  %s(", oi, oj, r0,
                       r0 + size - 1, c0, c0 + size - 1, avg ? "mean" : "max");
                double best = -INFINITY, sum = 0;
                for (size_t a = 0; a < size; a++)
                    for (size_t b = 0; b < size; b++) {
                        if (r0 + a >= in.r || c0 + b >= in.c) continue;
                        double v = x[(r0 + a) * in.c + c0 + b];
                        printf("%s%g", a || b ? ", " : "", v);
                        if (v > best) best = v;
                        sum += v;
                    }
                printf(") = %g   (library: %g)\n", avg ? sum / (double)(size * size) : best, y[oi * os.w + oj]);
            }
    }
    printf("\noutput (%zux%zu), computed by the library's %s layer:\n", os.h, os.w,
           conv ? "conv2d" : avg ? "avgpool2d" : "maxpool2d");
    print_matrix("  ", y, os.h, os.w);
    printf("  = ");
    print_compact(y, os.h, os.w);
    printf("\n");
    rc = CLI_EXIT_OK;
cleanup:
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_explain = {
    .name = "explain",
    .summary = "walk through a convolution or max pooling window by window (worked examples)",
    .help = explain_help,
    .run = run_explain,
};
