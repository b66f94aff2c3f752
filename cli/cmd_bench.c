/* cmd_bench.c — `cnn bench peak|gemm|conv|infer|train`: the benchmarks of issue 3 (docs/bench.md).
 *
 *   peak   the roof: cnn_bench_peak on 1 and T threads (B3 of BENCH.md).
 *   gemm   SGEMM GFLOP/s through cnn_sgemm (B2): C[m,n] = A[m,k] B[k,n], row-major, beta 0.
 *   conv   one convolution layer (B1 rows c1..c7 or a custom shape): a net `input` + `conv2d` compiled for
 *          training with the input gradient, random data, one forward and one backward, then each pass
 *          re-run alone with cnn_net_run_layer (warm-up, then --reps timed runs). FLOPs of every pass are
 *          2*N*K*OH*OW*(C/groups)*R*S (padding taps counted). The peak is measured once per invocation
 *          (about 0.3 s, or given with --peak) for the % column.
 *   infer  cnn_net_forward (inference) of a model on random data: ms per batch, images/s.
 *   train  forward (training) + loss + backward + SGD step (lr 0.05, momentum 0.9) on random data and random
 *          labels: ms per batch, images/s.
 * Timings: every row reports the median and the extremes of --reps runs after warm-up; GFLOP/s "min" is the
 * slowest run. With --json each row is one JSON object on its own line. Benchmarks are never tests.
 * Only cnn.h is used (plus getrusage for the peak resident memory). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char bench_help[] =
    "usage: cnn bench peak  [--threads T] [--seconds S] [--json]\n"
    "       cnn bench gemm  [--m M --n N --k K] [--threads T] [--reps R] [--peak G] [--json]\n"
    "       cnn bench conv  [--shape c1..c7|all | --n N --c C --h H --w W --k K --r R --s S --stride S\n"
    "                        --pad P --groups G] [--pass fwd|bwd_data|bwd_weights|all] [--algo A]\n"
    "                        [--wgrad W] [--threads T] [--reps R] [--peak G] [--json]\n"
    "       cnn bench infer MODEL.cnn [--batch B] [--threads T] [--reps R] [--layers] [--json]\n"
    "       cnn bench train MODEL.cnn [--batch B] [--threads T] [--reps R] [--layers] [--json]\n"
    "\n"
    "Benchmarks (docs/bench.md). Results go to stdout, one line per row; with --json one JSON object per\n"
    "line. Timed runs follow untimed warm-up runs; rows give the median and the extremes of the timed runs.\n"
    "\n"
    "  peak   the roof: a register-resident multiply-add loop on the widest ISA the library uses, on 1 and\n"
    "         on T threads (best of 5 rounds). JSON: bench, isa, threads, gflops.\n"
    "  gemm   SGEMM C = A*B (row-major, float32) through cnn_sgemm; without --m/--n/--k the B2 sizes 512\n"
    "         and 2048. JSON: bench, m, n, k, gflops_median, gflops_min, gflops_max, pct_peak, isa, threads.\n"
    "  conv   one conv2d layer: the B1 rows c1..c7 of BENCH.md (--shape, default all) or a custom shape\n"
    "         (--n --c --h --w --k --r --s --stride --pad --groups; defaults 1 16 16 16 16 3 3 1 0 1).\n"
    "         Each pass is run alone (cnn_net_run_layer) after one forward and backward of the net.\n"
    "         --algo forces conv2d's algo= (im2col, direct, winograd, winograd-f2x2, winograd-f4x4, stem,\n"
    "         depthwise; default auto: the layer's own choice, shown in the algorithm column); --wgrad\n"
    "         forces conv2d's wgrad= (auto, blocked, algo: the weight gradient of the algorithm).\n"
    "         FLOPs of every pass: 2*N*K*OH*OW*(C/groups)*R*S. JSON: shape, pass, gflops_median,\n"
    "         gflops_min, algorithm, isa, threads, then gflops_max, pct_peak, peak_gflops, ms_median, n, c,\n"
    "         h, w, k, r, s, stride, pad, groups.\n"
    "  infer  inference forward of MODEL.cnn on random data of its input shape. JSON: bench, model, batch,\n"
    "         threads, isa, ms_median, ms_min, images_per_second, gflops, peak_rss_mib. With --layers, then\n"
    "         each layer's forward re-run alone (warm caches: the whole forward's excess over their sum is\n"
    "         mostly weights and activations coming from memory; JSON: bench \"infer_layer\", fwd_ms).\n"
    "  train  one training step (forward, loss, backward, SGD lr 0.05 momentum 0.9) on random data and\n"
    "         random labels, in batch lanes as cnn train runs it (--lanes L; default one per thread, 1:\n"
    "         none); the model must end in softmax_ce or mse. JSON: bench, model, batch, threads, isa,\n"
    "         lanes, ms_median, ms_min, images_per_second, peak_rss_mib. With --layers, then each layer's forward,\n"
    "         backward-data and backward-weights re-run alone (median of --reps runs each): a table with\n"
    "         each layer's share of the sum (JSON: bench \"train_layer\", layer, name, type, algorithm,\n"
    "         fwd_ms, bwd_data_ms, bwd_weights_ms).\n"
    "\n"
    "options:\n"
    "  --threads T   threads (default: all online CPUs)\n"
    "  --reps R      timed runs per row (default 10 for gemm and conv, 20 for infer and train)\n"
    "  --peak G      the peak in GFLOP/s for the % column (default: measured, about 0.3 s)\n"
    "  --seconds S   peak: seconds per thread count (default 1)\n"
    "  --batch B     infer, train: batch size (default 64)\n"
    "  --lanes L     train: batch lanes (default: one per thread; 1: each layer split over the threads)\n"
    "  --json        one JSON object per row\n";

/* ---- small helpers ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, minimum and maximum of t[0..n) (sorted in place). */
static void stats(double *t, size_t n, double *med, double *mn, double *mx) {
    qsort(t, n, sizeof *t, cmp_double);
    *mn = t[0];
    *mx = t[n - 1];
    *med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Uniform floats in [-1, 1) from a 64-bit xorshift (the data only has to be finite and not special). */
static void fill_random(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 23) - 1.0);
    }
}

/* Peak resident memory of this program: VmHWM of /proc/self/status, the high-water mark of this address
 * space. getrusage's ru_maxrss is only the fallback: Linux carries it over exec, so a process started by
 * a big parent (compare.py, after importing torch) would report the parent's size at the fork. */
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long kib = 0;
        int found = 0;
        while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "VmHWM: %lu kB", &kib) == 1;
        fclose(f);
        if (found) return (double)kib / 1024.0;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* Measure the peak on ctx's threads unless given; returns 0 or an exit status. */
static int measure_peak(cnn_ctx *ctx, double given, double seconds, double *peak) {
    if (given > 0) {
        *peak = given;
        return 0;
    }
    cnn_status st = cnn_bench_peak(ctx, 0, seconds, peak);
    if (st) return cli_lib_error(ctx, st, "bench peak");
    return 0;
}

static int check_help(const char *sub, int help) {
    (void)sub;
    if (help) fputs(bench_help, stdout);
    return help;
}

/* ---- peak ---- */

static int bench_peak(int argc, char **argv) {
    size_t threads = 0;
    double seconds = 1;
    int json = 0;
    const cli_option opts[] = {
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "seconds", .kind = CLI_OPT_DOUBLE, .out = &seconds, .dmin = 0, .dmax = 600, .min_exclusive = 1},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
    };
    size_t n_pos;
    int help;
    int rc = cli_parse_args("bench peak", argc, argv, opts, sizeof opts / sizeof opts[0], NULL, 0, &n_pos, &help);
    if (rc) return rc;
    if (check_help("peak", help)) return CLI_EXIT_OK;
    cnn_ctx *ctx;
    if ((rc = cli_ctx_create(threads, &ctx))) return rc;
    size_t T = cnn_ctx_threads(ctx);
    size_t counts[2] = {1, T};
    size_t n_counts = T > 1 ? 2 : 1;
    if (!json) printf("%-8s  %-6s  %7s  %10s\n", "bench", "isa", "threads", "GFLOP/s");
    for (size_t i = 0; i < n_counts; i++) {
        double g = 0;
        cnn_status st = cnn_bench_peak(ctx, counts[i], seconds, &g);
        if (st) {
            rc = cli_lib_error(ctx, st, "bench peak");
            break;
        }
        if (json) {
            cli_json j;
            cli_json_init(&j, stdout);
            cli_json_begin_object(&j);
            cli_json_key(&j, "bench");
            cli_json_string(&j, "peak");
            cli_json_key(&j, "isa");
            cli_json_string(&j, cnn_ctx_isa(ctx));
            cli_json_key(&j, "threads");
            cli_json_uint(&j, counts[i]);
            cli_json_key(&j, "gflops");
            cli_json_double(&j, g);
            cli_json_end_object(&j);
            cli_json_finish(&j);
        } else {
            printf("%-8s  %-6s  %7zu  %10.1f\n", "peak", cnn_ctx_isa(ctx), counts[i], g);
            fflush(stdout);
        }
    }
    cnn_ctx_free(ctx);
    return rc;
}

/* ---- gemm ---- */

static int gemm_row(cnn_ctx *ctx, size_t m, size_t n, size_t k, size_t reps, double peak, int json) {
    float *a = NULL, *b = NULL, *c = NULL;
    double *t = NULL;
    int rc = 0;
    a = malloc(m * k * sizeof *a);
    b = malloc(k * n * sizeof *b);
    c = malloc(m * n * sizeof *c);
    t = malloc(reps * sizeof *t);
    if (!a || !b || !c || !t) {
        rc = cli_error("bench gemm: out of memory for %zux%zux%zu", m, n, k);
        goto done;
    }
    fill_random(a, m * k, 1);
    fill_random(b, k * n, 2);
    double flops = 2.0 * (double)m * (double)n * (double)k;
    /* Warm-up: at least one run and about 0.1 s. */
    double w0 = cli_now();
    for (int i = 0; i < 20; i++) {
        cnn_status st = cnn_sgemm(ctx, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        if (st) {
            rc = cli_lib_error(ctx, st, "bench gemm");
            goto done;
        }
        if (cli_now() - w0 > 0.1) break;
    }
    for (size_t r = 0; r < reps; r++) {
        double t0 = cli_now();
        cnn_sgemm(ctx, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        double dt = cli_now() - t0;
        t[r] = dt > 0 ? flops / dt * 1e-9 : 0;
    }
    double med, mn, mx;
    stats(t, reps, &med, &mn, &mx);
    size_t T = cnn_ctx_threads(ctx);
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_begin_object(&j);
        cli_json_key(&j, "bench");
        cli_json_string(&j, "gemm");
        cli_json_key(&j, "m");
        cli_json_uint(&j, m);
        cli_json_key(&j, "n");
        cli_json_uint(&j, n);
        cli_json_key(&j, "k");
        cli_json_uint(&j, k);
        cli_json_key(&j, "gflops_median");
        cli_json_double(&j, med);
        cli_json_key(&j, "gflops_min");
        cli_json_double(&j, mn);
        cli_json_key(&j, "gflops_max");
        cli_json_double(&j, mx);
        cli_json_key(&j, "pct_peak");
        cli_json_double(&j, peak > 0 ? 100 * med / peak : 0);
        cli_json_key(&j, "peak_gflops");
        cli_json_double(&j, peak);
        cli_json_key(&j, "isa");
        cli_json_string(&j, cnn_ctx_isa(ctx));
        cli_json_key(&j, "threads");
        cli_json_uint(&j, T);
        cli_json_end_object(&j);
        cli_json_finish(&j);
    } else {
        char dims[64];
        snprintf(dims, sizeof dims, "%zux%zux%zu", m, n, k);
        printf("%-16s  %-6s  %7zu  %8.1f  %8.1f  %8.1f  %5.1f%%\n", dims, cnn_ctx_isa(ctx), T, med, mn, mx,
               peak > 0 ? 100 * med / peak : 0);
        fflush(stdout);
    }
done:
    free(a);
    free(b);
    free(c);
    free(t);
    return rc;
}

static int bench_gemm(int argc, char **argv) {
    size_t m = 0, n = 0, k = 0, threads = 0, reps = 10;
    double peak_given = 0;
    int json = 0, seen_m = 0, seen_n = 0, seen_k = 0;
    const cli_option opts[] = {
        {.name = "m", .kind = CLI_OPT_SIZE, .out = &m, .umin = 1, .umax = 65536, .seen = &seen_m},
        {.name = "n", .kind = CLI_OPT_SIZE, .out = &n, .umin = 1, .umax = 65536, .seen = &seen_n},
        {.name = "k", .kind = CLI_OPT_SIZE, .out = &k, .umin = 1, .umax = 65536, .seen = &seen_k},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "reps", .kind = CLI_OPT_SIZE, .out = &reps, .umin = 1, .umax = 100000},
        {.name = "peak", .kind = CLI_OPT_DOUBLE, .out = &peak_given, .dmin = 0, .dmax = 1e9, .min_exclusive = 1},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
    };
    size_t n_pos;
    int help;
    int rc = cli_parse_args("bench gemm", argc, argv, opts, sizeof opts / sizeof opts[0], NULL, 0, &n_pos, &help);
    if (rc) return rc;
    if (check_help("gemm", help)) return CLI_EXIT_OK;
    if ((uint64_t)m * n > ((uint64_t)1 << 30) || (uint64_t)m * k > ((uint64_t)1 << 30) ||
        (uint64_t)k * n > ((uint64_t)1 << 30))
        return cli_usage_error("bench gemm: matrices over 2^30 elements are not supported");
    size_t sizes[2][3] = {{512, 512, 512}, {2048, 2048, 2048}};
    size_t n_rows = 2;
    if (seen_m || seen_n || seen_k) {
        /* A size not given is taken from one that is (--m 1000 alone means 1000^3). */
        size_t d = seen_m ? m : seen_n ? n : k;
        sizes[0][0] = seen_m ? m : d;
        sizes[0][1] = seen_n ? n : d;
        sizes[0][2] = seen_k ? k : d;
        n_rows = 1;
    }
    cnn_ctx *ctx;
    if ((rc = cli_ctx_create(threads, &ctx))) return rc;
    double peak = 0;
    if ((rc = measure_peak(ctx, peak_given, 0.3, &peak))) goto done;
    if (!json)
        printf("%-16s  %-6s  %7s  %8s  %8s  %8s  %6s   (GFLOP/s; peak %.1f)\n", "m x n x k", "isa", "threads",
               "median", "min", "max", "%peak", peak);
    for (size_t i = 0; i < n_rows && !rc; i++) rc = gemm_row(ctx, sizes[i][0], sizes[i][1], sizes[i][2], reps, peak, json);
done:
    cnn_ctx_free(ctx);
    return rc;
}

/* ---- conv ---- */

typedef struct conv_shape {
    const char *id;
    size_t n, c, hw, k, rs, stride, pad, groups;
} conv_shape;

/* B1 of BENCH.md. */
static const conv_shape b1_shapes[] = {
    {"c1", 64, 32, 14, 64, 3, 1, 1, 1},   {"c2", 8, 64, 56, 64, 3, 1, 1, 1},  {"c3", 8, 256, 14, 256, 3, 1, 1, 1},
    {"c4", 8, 256, 28, 128, 1, 1, 0, 1},  {"c5", 8, 128, 28, 256, 3, 2, 1, 1}, {"c6", 8, 3, 224, 64, 7, 2, 3, 1},
    {"c7", 8, 128, 56, 128, 3, 1, 1, 128},
};
#define N_B1 (sizeof b1_shapes / sizeof b1_shapes[0])

static const char *const pass_names[] = {"fwd", "bwd_data", "bwd_weights", "all", NULL};
static const cnn_pass pass_ids[3] = {CNN_PASS_FORWARD, CNN_PASS_BACKWARD_DATA, CNN_PASS_BACKWARD_WEIGHTS};

typedef struct conv_custom {
    size_t n, c, h, w, k, r, s, stride, pad, groups;
} conv_custom;

/* --algo: conv2d's algo= values (auto: the layer's own choice) */
static const char *const conv_algo_names[] = {"auto",          "im2col", "direct",    "winograd", "winograd-f2x2",
                                              "winograd-f4x4", "stem",   "depthwise", NULL};
/* --wgrad: conv2d's wgrad= values */
static const char *const conv_wgrad_names[] = {"auto", "blocked", "algo", NULL};

static int conv_rows(cnn_ctx *ctx, const char *id, const conv_custom *d, int algo, int wgrad, int pass_sel,
                     size_t reps, double peak, int json) {
    char text[512];
    snprintf(text, sizeof text,
             "input c=%zu h=%zu w=%zu\nconv2d name=conv k=%zu kh=%zu kw=%zu stride=%zu pad=%zu groups=%zu algo=%s wgrad=%s\n",
             d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->groups, conv_algo_names[algo],
             conv_wgrad_names[wgrad]);
    cnn_net *net = NULL;
    float *x = NULL, *dy = NULL;
    double *t = NULL;
    int rc = 0;
    cnn_status st = cnn_net_parse(ctx, text, strlen(text), id, &net);
    if (st) return cli_lib_error(ctx, st, "bench conv");
    if ((st = cnn_net_compile(net, d->n, CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD))) {
        rc = cli_lib_error(ctx, st, "bench conv");
        goto done;
    }
    cnn_shape in = cnn_net_input_shape(net), out = cnn_net_output_shape(net);
    size_t nx = d->n * in.c * in.h * in.w, ny = d->n * out.c * out.h * out.w;
    x = malloc(nx * sizeof *x);
    dy = malloc(ny * sizeof *dy);
    t = malloc(reps * sizeof *t);
    if (!x || !dy || !t) {
        rc = cli_error("bench conv: out of memory");
        goto done;
    }
    fill_random(x, nx, 3);
    fill_random(dy, ny, 4);
    if ((st = cnn_net_forward(net, x, d->n, 1)) || (st = cnn_net_backward(net, dy))) {
        rc = cli_lib_error(ctx, st, "bench conv");
        goto done;
    }
    cnn_layer_info info;
    if ((st = cnn_net_layer_info(net, 1, &info))) {
        rc = cli_lib_error(ctx, st, "bench conv");
        goto done;
    }
    double flops = 2.0 * (double)d->n * (double)d->k * (double)out.h * (double)out.w * (double)(d->c / d->groups) *
                   (double)d->r * (double)d->s;
    size_t T = cnn_ctx_threads(ctx);
    for (int p = 0; p < 3; p++) {
        if (pass_sel != 3 && pass_sel != p) continue;
        /* Warm-up: at least two runs and about 50 ms. */
        double w0 = cli_now();
        for (int i = 0; i < 50; i++) {
            if ((st = cnn_net_run_layer(net, 1, pass_ids[p]))) {
                rc = cli_lib_error(ctx, st, "bench conv");
                goto done;
            }
            if (i >= 1 && cli_now() - w0 > 0.05) break;
        }
        double ms_sum = 0;
        for (size_t r = 0; r < reps; r++) {
            double t0 = cli_now();
            cnn_net_run_layer(net, 1, pass_ids[p]);
            double dt = cli_now() - t0;
            ms_sum += dt;
            t[r] = dt > 0 ? flops / dt * 1e-9 : 0;
        }
        (void)ms_sum;
        double med, mn, mx;
        stats(t, reps, &med, &mn, &mx);
        double ms = med > 0 ? flops / med * 1e-6 : 0;
        double pct = peak > 0 ? 100 * med / peak : 0;
        /* backward-weights: its own algorithm where conv2d runs another one (wgrad=) */
        const char *algo = info.algorithm ? info.algorithm : "";
        if (pass_ids[p] == CNN_PASS_BACKWARD_WEIGHTS && info.wgrad_algorithm && *info.wgrad_algorithm)
            algo = info.wgrad_algorithm;
        if (json) {
            cli_json j;
            cli_json_init(&j, stdout);
            cli_json_begin_object(&j);
            cli_json_key(&j, "shape");
            cli_json_string(&j, id);
            cli_json_key(&j, "pass");
            cli_json_string(&j, pass_names[p]);
            cli_json_key(&j, "gflops_median");
            cli_json_double(&j, med);
            cli_json_key(&j, "gflops_min");
            cli_json_double(&j, mn);
            cli_json_key(&j, "algorithm");
            cli_json_string(&j, algo);
            cli_json_key(&j, "isa");
            cli_json_string(&j, cnn_ctx_isa(ctx));
            cli_json_key(&j, "threads");
            cli_json_uint(&j, T);
            cli_json_key(&j, "gflops_max");
            cli_json_double(&j, mx);
            cli_json_key(&j, "pct_peak");
            cli_json_double(&j, pct);
            cli_json_key(&j, "peak_gflops");
            cli_json_double(&j, peak);
            cli_json_key(&j, "ms_median");
            cli_json_double(&j, ms);
            const char *keys[10] = {"n", "c", "h", "w", "k", "r", "s", "stride", "pad", "groups"};
            size_t vals[10] = {d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->groups};
            for (int i = 0; i < 10; i++) {
                cli_json_key(&j, keys[i]);
                cli_json_uint(&j, vals[i]);
            }
            cli_json_end_object(&j);
            cli_json_finish(&j);
        } else {
            printf("%-6s  %-11s  %-14s  %-6s  %7zu  %8.1f  %8.1f  %8.1f  %6.1f%%  %9.3f\n", id, pass_names[p],
                   algo, cnn_ctx_isa(ctx), T, med, mn, mx, pct, ms);
            fflush(stdout);
        }
    }
done:
    free(x);
    free(dy);
    free(t);
    cnn_net_free(net);
    return rc;
}

static int bench_conv(int argc, char **argv) {
    const char *shape = NULL;
    conv_custom d = {1, 16, 16, 16, 16, 3, 3, 1, 0, 1};
    size_t threads = 0, reps = 10;
    double peak_given = 0;
    int pass_sel = 3, json = 0, seen[10] = {0}, seen_h = 0, seen_w = 0, algo = 0, wgrad = 0;
    const cli_option opts[] = {
        {.name = "shape", .kind = CLI_OPT_STRING, .out = &shape},
        {.name = "n", .kind = CLI_OPT_SIZE, .out = &d.n, .umin = 1, .umax = 65536, .seen = &seen[0]},
        {.name = "c", .kind = CLI_OPT_SIZE, .out = &d.c, .umin = 1, .umax = 65536, .seen = &seen[1]},
        {.name = "h", .kind = CLI_OPT_SIZE, .out = &d.h, .umin = 1, .umax = 65536, .seen = &seen_h},
        {.name = "w", .kind = CLI_OPT_SIZE, .out = &d.w, .umin = 1, .umax = 65536, .seen = &seen_w},
        {.name = "k", .kind = CLI_OPT_SIZE, .out = &d.k, .umin = 1, .umax = 65536, .seen = &seen[2]},
        {.name = "r", .kind = CLI_OPT_SIZE, .out = &d.r, .umin = 1, .umax = 1024, .seen = &seen[3]},
        {.name = "s", .kind = CLI_OPT_SIZE, .out = &d.s, .umin = 1, .umax = 1024, .seen = &seen[4]},
        {.name = "stride", .kind = CLI_OPT_SIZE, .out = &d.stride, .umin = 1, .umax = 1024, .seen = &seen[5]},
        {.name = "pad", .kind = CLI_OPT_SIZE, .out = &d.pad, .umin = 0, .umax = 1024, .seen = &seen[6]},
        {.name = "groups", .kind = CLI_OPT_SIZE, .out = &d.groups, .umin = 1, .umax = 65536, .seen = &seen[7]},
        {.name = "pass", .kind = CLI_OPT_CHOICE, .out = &pass_sel, .choices = pass_names},
        {.name = "algo", .kind = CLI_OPT_CHOICE, .out = &algo, .choices = conv_algo_names},
        {.name = "wgrad", .kind = CLI_OPT_CHOICE, .out = &wgrad, .choices = conv_wgrad_names},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "reps", .kind = CLI_OPT_SIZE, .out = &reps, .umin = 1, .umax = 100000},
        {.name = "peak", .kind = CLI_OPT_DOUBLE, .out = &peak_given, .dmin = 0, .dmax = 1e9, .min_exclusive = 1},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
    };
    size_t n_pos;
    int help;
    int rc = cli_parse_args("bench conv", argc, argv, opts, sizeof opts / sizeof opts[0], NULL, 0, &n_pos, &help);
    if (rc) return rc;
    if (check_help("conv", help)) return CLI_EXIT_OK;
    int custom = seen_h || seen_w;
    for (int i = 0; i < 10; i++) custom |= seen[i];
    if (custom && shape)
        return cli_usage_error("bench conv: give --shape or a custom shape (--n --c --h ...), not both");
    /* A custom square image: --h alone sets both. */
    if (seen_h && !seen_w) d.w = d.h;
    if (seen_w && !seen_h) d.h = d.w;
    if (!seen[4] && seen[3]) d.s = d.r;
    if (!seen[3] && seen[4]) d.r = d.s;
    if (custom) {
        if (d.c % d.groups || d.k % d.groups)
            return cli_usage_error("bench conv: --groups %zu must divide --c %zu and --k %zu", d.groups, d.c, d.k);
        if (d.h + 2 * d.pad < d.r || d.w + 2 * d.pad < d.s)
            return cli_usage_error("bench conv: the kernel %zux%zu is larger than the padded image %zux%zu", d.r,
                                   d.s, d.h + 2 * d.pad, d.w + 2 * d.pad);
    }
    size_t first = 0, last = N_B1; /* rows [first, last) of b1_shapes */
    if (!custom && shape && strcmp(shape, "all") != 0) {
        size_t i = 0;
        while (i < N_B1 && strcmp(b1_shapes[i].id, shape) != 0) i++;
        if (i == N_B1)
            return cli_usage_error("bench conv: unknown shape '%s' (c1..c7 or all)", shape);
        first = i;
        last = i + 1;
    }
    cnn_ctx *ctx;
    if ((rc = cli_ctx_create(threads, &ctx))) return rc;
    double peak = 0;
    if ((rc = measure_peak(ctx, peak_given, 0.3, &peak))) goto done;
    if (!json)
        printf("%-6s  %-11s  %-14s  %-6s  %7s  %8s  %8s  %8s  %7s  %9s   (GFLOP/s; peak %.1f)\n", "shape", "pass",
               "algorithm", "isa", "threads", "median", "min", "max", "%peak", "ms", peak);
    if (custom) {
        rc = conv_rows(ctx, "custom", &d, algo, wgrad, pass_sel, reps, peak, json);
    } else {
        for (size_t i = first; i < last && !rc; i++) {
            const conv_shape *s = &b1_shapes[i];
            conv_custom c = {s->n, s->c, s->hw, s->hw, s->k, s->rs, s->rs, s->stride, s->pad, s->groups};
            rc = conv_rows(ctx, s->id, &c, algo, wgrad, pass_sel, reps, peak, json);
        }
    }
done:
    cnn_ctx_free(ctx);
    return rc;
}

/* ---- infer and train ---- */

/* --layers: each layer's passes re-run alone (cnn_net_run_layer) `reps` times after the timed steps; one row
 * per layer that runs (views and fused layers are left out), then the sum against the whole step. */
static int layer_profile(cnn_ctx *ctx, cnn_net *net, size_t reps, double step_ms, int json, const char *cmd,
                         int train) {
    const size_t L = cnn_net_num_layers(net);
    const int np = train ? 3 : 1; /* inference: the forward pass only */
    const cnn_pass passes[3] = {CNN_PASS_FORWARD, CNN_PASS_BACKWARD_DATA, CNN_PASS_BACKWARD_WEIGHTS};
    double *t = malloc(reps * sizeof *t), sum[3] = {0, 0, 0};
    if (!t) return cli_error("%s: out of memory", cmd);
    if (!json && train)
        printf("%3s  %-14s %-12s %-28s %9s %9s %9s %7s\n", "#", "layer", "type", "algorithm", "fwd ms", "bwd_d ms",
               "bwd_w ms", "share");
    else if (!json)
        printf("%3s  %-14s %-12s %-28s %9s %7s\n", "#", "layer", "type", "algorithm", "fwd ms", "share");
    double rows[3 * 4096];
    size_t nrows = L < 4096 ? L : 4096;
    for (size_t i = 1; i < nrows; i++) {
        cnn_layer_info li;
        if (cnn_net_layer_info(net, i, &li) != CNN_OK) continue;
        for (int p = 0; p < 3; p++) rows[3 * i + (size_t)p] = 0;
        for (int p = 0; p < np; p++) {
            if (p > 0 && (i + 1 == L)) continue; /* the loss: its backward runs inside cnn_net_backward */
            cnn_status st = cnn_net_run_layer(net, i, passes[p]);
            if (st == CNN_ERR_MISUSE) continue; /* no gradient reaches this layer */
            if (st) {
                free(t);
                return cli_lib_error(ctx, st, cmd);
            }
            for (size_t r = 0; r < reps; r++) {
                double t0 = cli_now();
                cnn_net_run_layer(net, i, passes[p]);
                t[r] = (cli_now() - t0) * 1e3;
            }
            double med, mn, mx;
            stats(t, reps, &med, &mn, &mx);
            rows[3 * i + (size_t)p] = med;
            sum[p] += med;
        }
    }
    double total = sum[0] + sum[1] + sum[2];
    for (size_t i = 1; i < nrows; i++) {
        cnn_layer_info li;
        if (cnn_net_layer_info(net, i, &li) != CNN_OK) continue;
        const double *r = rows + 3 * i;
        int skipped = strcmp(li.algorithm, "view") == 0 || strncmp(li.algorithm, "fused into", 10) == 0 ||
                      strcmp(li.algorithm, "folded into the conv") == 0;
        if (skipped) continue;
        double lt = r[0] + r[1] + r[2];
        if (json) {
            cli_json j;
            cli_json_init(&j, stdout);
            cli_json_begin_object(&j);
            cli_json_key(&j, "bench");
            cli_json_string(&j, train ? "train_layer" : "infer_layer");
            cli_json_key(&j, "layer");
            cli_json_uint(&j, i);
            cli_json_key(&j, "name");
            cli_json_string(&j, li.name);
            cli_json_key(&j, "type");
            cli_json_string(&j, li.type);
            cli_json_key(&j, "algorithm");
            cli_json_string(&j, li.algorithm);
            cli_json_key(&j, "fwd_ms");
            cli_json_double(&j, r[0]);
            if (train) {
                cli_json_key(&j, "bwd_data_ms");
                cli_json_double(&j, r[1]);
                cli_json_key(&j, "bwd_weights_ms");
                cli_json_double(&j, r[2]);
            }
            cli_json_end_object(&j);
            cli_json_finish(&j);
        } else if (train) {
            printf("%3zu  %-14.14s %-12.12s %-28.28s %9.3f %9.3f %9.3f %6.1f%%\n", i, li.name, li.type, li.algorithm,
                   r[0], r[1], r[2], total > 0 ? 100.0 * lt / total : 0.0);
        } else {
            printf("%3zu  %-14.14s %-12.12s %-28.28s %9.3f %6.1f%%\n", i, li.name, li.type, li.algorithm, r[0],
                   total > 0 ? 100.0 * lt / total : 0.0);
        }
    }
    if (!json && !train)
        printf("     %-55s %9.3f  (the whole forward %.3f ms: the rest runs between the layers)\n",
               "sum of the layers", sum[0], step_ms);
    else if (!json)
        printf("     %-55s %9.3f %9.3f %9.3f  (sum %.3f ms; the whole step %.3f ms: the rest is the loss, the\n"
               "     optimizer step and what runs between the layers)\n",
               "sum of the layers", sum[0], sum[1], sum[2], total, step_ms);
    free(t);
    return 0;
}

static int bench_model(int argc, char **argv, int train) {
    const char *cmd = train ? "bench train" : "bench infer";
    size_t batch = 64, threads = 0, reps = 20, lanes = SIZE_MAX;
    int json = 0, layers = 0;
    const cli_option opts[] = {
        {.name = "lanes", .kind = CLI_OPT_SIZE, .out = &lanes, .umin = 0, .umax = CNN_LANES_MAX},
        {.name = "batch", .kind = CLI_OPT_SIZE, .out = &batch, .umin = 1, .umax = 65536},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "reps", .kind = CLI_OPT_SIZE, .out = &reps, .umin = 1, .umax = 100000},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
        {.name = "layers", .kind = CLI_OPT_FLAG, .out = &layers},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc) return rc;
    if (check_help(cmd, help)) return CLI_EXIT_OK;
    if (n_pos != 1) return cli_usage_error("%s: expected a model file (usage: cnn %s MODEL.cnn --batch B)", cmd, cmd);
    if (lanes != SIZE_MAX && !train) return cli_usage_error("%s: --lanes is for 'cnn bench train'", cmd);
    if ((rc = cli_check_file(pos[0], "model"))) return rc;
    cnn_ctx *ctx;
    if ((rc = cli_ctx_create(threads, &ctx))) return rc;
    cnn_net *net = NULL;
    cnn_optimizer *opt = NULL;
    cnn_lanes *ln = NULL;
    float *x = NULL, *targets = NULL;
    int32_t *labels = NULL;
    double *t = NULL;
    cnn_status st = cnn_net_load(ctx, pos[0], &net);
    if (st) {
        rc = cli_lib_error(ctx, st, cmd);
        goto done;
    }
    size_t L = cnn_net_num_layers(net);
    cnn_layer_info last;
    int mse = 0;
    if (train) {
        if (!cnn_net_has_loss(net) || cnn_net_layer_info(net, L - 1, &last)) {
            rc = cli_error("%s: the model '%s' must end in a loss layer (softmax_ce or mse)", cmd, pos[0]);
            goto done;
        }
        mse = strcmp(last.type, "mse") == 0;
    }
    if ((st = cnn_net_compile(net, batch, train ? CNN_COMPILE_TRAIN : 0))) {
        rc = cli_lib_error(ctx, st, cmd);
        goto done;
    }
    cnn_shape in = cnn_net_input_shape(net), out = cnn_net_output_shape(net);
    size_t per = in.c * in.h * in.w, outs = out.c * out.h * out.w;
    x = malloc(batch * per * sizeof *x);
    labels = malloc(batch * sizeof *labels);
    targets = malloc(batch * outs * sizeof *targets);
    t = malloc(reps * sizeof *t);
    if (!x || !labels || !targets || !t) {
        rc = cli_error("%s: out of memory", cmd);
        goto done;
    }
    fill_random(x, batch * per, 5);
    fill_random(targets, batch * outs, 6);
    for (size_t i = 0; i < batch; i++) labels[i] = (int32_t)((i * 7 + 3) % (outs ? outs : 1));
    double fwd_flops = 0;
    for (size_t i = 0; i < L; i++) {
        cnn_layer_info li;
        if (cnn_net_layer_info(net, i, &li) == CNN_OK) fwd_flops += (double)li.flops;
    }
    fwd_flops *= (double)batch;
    if (train) {
        cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_SGD);
        oo.lr = 0.05f;
        oo.momentum = 0.9f;
        if ((st = cnn_optimizer_create(net, &oo, &opt))) {
            rc = cli_lib_error(ctx, st, cmd);
            goto done;
        }
        lanes = cli_lanes_choice(lanes, cnn_ctx_threads(ctx), batch);
        if (lanes > 1 && (st = cnn_lanes_create(net, lanes, &ln))) {
            rc = cli_lib_error(ctx, st, cmd);
            goto done;
        }
    }
    double loss = 0;
    size_t warm = 3;
    for (size_t r = 0; r < warm + reps; r++) {
        double t0 = cli_now();
        if (train) {
            cnn_loss_stats ls;
            if (ln) {
                if ((st = cnn_lanes_step(ln, x, mse ? NULL : labels, mse ? targets : NULL, batch, &ls, NULL)) ||
                    (st = cnn_optimizer_step(opt, 0.05f)))
                    break;
            } else if ((st = cnn_net_forward(net, x, batch, 1)) ||
                (st = cnn_net_loss(net, mse ? NULL : labels, mse ? targets : NULL, &ls)) ||
                (st = cnn_net_backward(net, NULL)) || (st = cnn_optimizer_step(opt, 0.05f)))
                break;
            loss = ls.loss;
        } else if ((st = cnn_net_forward(net, x, batch, 0))) {
            break;
        }
        double dt = cli_now() - t0;
        if (r >= warm) t[r - warm] = dt * 1e3;
    }
    if (st) {
        rc = cli_lib_error(ctx, st, cmd);
        goto done;
    }
    if (train && !isfinite(loss)) fprintf(stderr, "cnn: %s: warning: the loss became %g on random data\n", cmd, loss);
    double med, mn, mx;
    stats(t, reps, &med, &mn, &mx);
    double ips = med > 0 ? (double)batch / (med * 1e-3) : 0;
    double gflops = med > 0 ? fwd_flops / (med * 1e-3) * 1e-9 : 0;
    double rss = peak_rss_mib();
    size_t T = cnn_ctx_threads(ctx);
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_begin_object(&j);
        cli_json_key(&j, "bench");
        cli_json_string(&j, train ? "train" : "infer");
        cli_json_key(&j, "model");
        cli_json_string(&j, pos[0]);
        cli_json_key(&j, "batch");
        cli_json_uint(&j, batch);
        cli_json_key(&j, "threads");
        cli_json_uint(&j, T);
        cli_json_key(&j, "isa");
        cli_json_string(&j, cnn_ctx_isa(ctx));
        if (train) {
            cli_json_key(&j, "lanes");
            cli_json_uint(&j, ln ? lanes : 1);
        }
        cli_json_key(&j, "ms_median");
        cli_json_double(&j, med);
        cli_json_key(&j, "ms_min");
        cli_json_double(&j, mn);
        cli_json_key(&j, "images_per_second");
        cli_json_double(&j, ips);
        if (!train) {
            cli_json_key(&j, "gflops");
            cli_json_double(&j, gflops);
        }
        cli_json_key(&j, "peak_rss_mib");
        cli_json_double(&j, rss);
        cli_json_end_object(&j);
        cli_json_finish(&j);
    } else {
        printf("%s  %s  batch %zu  %s  %zu threads", train ? "train" : "infer", pos[0], batch, cnn_ctx_isa(ctx), T);
        if (train) printf("  %zu lanes", ln ? lanes : (size_t)1);
        printf("  median %.3f ms  min %.3f ms  %.0f img/s", med, mn, ips);
        if (!train) printf("  %.1f GFLOP/s", gflops);
        printf("  peak RSS %.1f MiB\n", rss);
    }
    if (layers) rc = layer_profile(ctx, net, reps, med, json, cmd, train);
done:
    free(x);
    free(labels);
    free(targets);
    free(t);
    cnn_lanes_free(ln);
    cnn_optimizer_free(opt);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    return rc;
}

static int bench_infer(int argc, char **argv) { return bench_model(argc, argv, 0); }
static int bench_train(int argc, char **argv) { return bench_model(argc, argv, 1); }

/* ---- dispatch ---- */

static int run_bench(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } subs[] = {{"peak", bench_peak}, {"gemm", bench_gemm}, {"conv", bench_conv}, {"infer", bench_infer},
                {"train", bench_train}};
    if (argc < 2)
        return cli_usage_error("bench: expected a benchmark: peak, gemm, conv, infer or train (see 'cnn help bench')");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(bench_help, stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0) return subs[i].run(argc - 1, argv + 1);
    return cli_usage_error("bench: unknown benchmark '%s' (peak, gemm, conv, infer or train; see 'cnn help bench')",
                           argv[1]);
}

const cli_command cli_cmd_bench = {
    .name = "bench",
    .summary = "benchmarks: peak, gemm, conv, infer, train (GFLOP/s, ms, images/s)",
    .help = bench_help,
    .run = run_bench,
};
