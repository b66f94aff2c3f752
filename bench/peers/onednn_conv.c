/* onednn_conv.c — the oneDNN side of `cnn bench conv` and `cnn bench gemm` (bench/peers/, not built by CMake:
 * `make -C bench/peers`). Same shapes (B1 of BENCH.md), same passes, same FLOP formula and the same JSON keys
 * as `cnn bench`, so bench/peers/compare.py can put the rows side by side.
 *
 *   onednn_conv conv [--shape c1..c7|all] [--pass fwd|bwd_data|bwd_weights|all] [--threads T] [--reps R]
 *                    [--inference] [--json]
 *   onednn_conv gemm [--m M --n N --k K] [--threads T] [--reps R] [--json]
 *
 * conv: oneDNN's C API (2.x: op descriptors), every memory descriptor with format_tag any and the algorithm
 *       dnnl_convolution_auto, so oneDNN picks its layouts and its algorithm (Winograd where it has one for
 *       the ISA). Forward is forward_training (what a training step runs; --inference: forward_inference),
 *       with bias; backward-data uses the forward primitive as its hint; backward-weights also computes the
 *       bias gradient (as cnn's conv2d does). Only the primitive execution (execute + stream wait) is timed:
 *       data are created once in oneDNN's own formats, no reorders. FLOPs of every pass:
 *       2*N*K*OH*OW*(C/groups)*R*S. "algorithm" is oneDNN's implementation name (dnnl_query_impl_info_str).
 * gemm: dnnl_sgemm('N', 'N', M, N, K, 1, A, K, B, N, 0, C, N), row-major.
 * Threads: oneDNN is built with OpenMP here; omp_set_num_threads(T) (default: all online CPUs).
 * Timing: warm-up runs (at least 2 and about 50 ms), then R timed runs (default 10); median, min and max of
 * the per-run GFLOP/s. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <oneapi/dnnl/dnnl.h>

#define CHECK(call)                                                                                        \
    do {                                                                                                   \
        dnnl_status_t s_ = (call);                                                                         \
        if (s_ != dnnl_success) {                                                                          \
            fprintf(stderr, "onednn_conv: %s failed: status %d (line %d)\n", #call, (int)s_, __LINE__);   \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats(double *t, size_t n, double *med, double *mn, double *mx) {
    qsort(t, n, sizeof *t, cmp_double);
    *mn = t[0];
    *mx = t[n - 1];
    *med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void fill_random(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 23) - 1.0);
    }
}

static const char *isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_bf16";
    default: return "other";
    }
}

typedef struct shape {
    const char *id;
    long n, c, hw, k, rs, stride, pad, groups;
} shape;

static const shape b1[] = {
    {"c1", 64, 32, 14, 64, 3, 1, 1, 1},   {"c2", 8, 64, 56, 64, 3, 1, 1, 1},  {"c3", 8, 256, 14, 256, 3, 1, 1, 1},
    {"c4", 8, 256, 28, 128, 1, 1, 0, 1},  {"c5", 8, 128, 28, 256, 3, 2, 1, 1}, {"c6", 8, 3, 224, 64, 7, 2, 3, 1},
    {"c7", 8, 128, 56, 128, 3, 1, 1, 128},
};
#define N_B1 (sizeof b1 / sizeof b1[0])
static const char *const pass_names[3] = {"fwd", "bwd_data", "bwd_weights"};

/* A memory object in the format the primitive chose for argument (what, index), filled with random data
 * (biases are index 1 of the weights queries). */
static dnnl_memory_t make_mem_at(dnnl_engine_t eng, const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index,
                                 uint64_t seed) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
    void *p;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    size_t bytes = dnnl_memory_desc_get_size(md);
    fill_random(p, bytes / sizeof(float), seed);
    return m;
}

static dnnl_memory_t make_mem(dnnl_engine_t eng, const_dnnl_primitive_desc_t pd, dnnl_query_t what, uint64_t seed) {
    return make_mem_at(eng, pd, what, 0, seed);
}

static void print_row(const char *id, const char *pass, double med, double mn, double mx, const char *alg,
                      int threads, double flops, const shape *s, int json) {
    if (json) {
        printf("{\"shape\":\"%s\",\"pass\":\"%s\",\"gflops_median\":%.17g,\"gflops_min\":%.17g,\"algorithm\":\"%s\","
               "\"isa\":\"%s\",\"threads\":%d,\"gflops_max\":%.17g,\"ms_median\":%.17g,\"peer\":\"onednn\","
               "\"onednn_version\":\"%d.%d.%d\",\"n\":%ld,\"c\":%ld,\"h\":%ld,\"w\":%ld,\"k\":%ld,\"r\":%ld,"
               "\"s\":%ld,\"stride\":%ld,\"pad\":%ld,\"groups\":%ld}\n",
               id, pass, med, mn, alg, isa_name(), threads, mx, med > 0 ? flops / med * 1e-6 : 0,
               dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, s->n, s->c, s->hw, s->hw, s->k,
               s->rs, s->rs, s->stride, s->pad, s->groups);
    } else {
        printf("%-6s  %-11s  %-24s  %-6s  %7d  %8.1f  %8.1f  %8.1f  %9.3f\n", id, pass, alg, isa_name(), threads, med,
               mn, mx, med > 0 ? flops / med * 1e-6 : 0);
    }
    fflush(stdout);
}

static void time_prim(dnnl_primitive_t prim, dnnl_stream_t strm, int nargs, const dnnl_exec_arg_t *args, double flops,
                      double *t, size_t reps) {
    double w0 = now();
    for (int i = 0; i < 50; i++) {
        CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
        CHECK(dnnl_stream_wait(strm));
        if (i >= 1 && now() - w0 > 0.05) break;
    }
    for (size_t r = 0; r < reps; r++) {
        double t0 = now();
        CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
        CHECK(dnnl_stream_wait(strm));
        double dt = now() - t0;
        t[r] = dt > 0 ? flops / dt * 1e-9 : 0;
    }
}

static void conv_shape(dnnl_engine_t eng, dnnl_stream_t strm, const shape *s, int pass_sel, size_t reps, int inference,
                       int threads, int json) {
    long oh = (s->hw + 2 * s->pad - s->rs) / s->stride + 1, ow = oh, G = s->groups;
    dnnl_dims_t src_d = {s->n, s->c, s->hw, s->hw}, dst_d = {s->n, s->k, oh, ow}, bias_d = {s->k};
    dnnl_dims_t w_d = {s->k, s->c, s->rs, s->rs}, wg_d = {G, s->k / G, s->c / G, s->rs, s->rs};
    dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
    dnnl_memory_desc_t src_md, w_md, b_md, dst_md;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_d, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_d, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, bias_d, dnnl_f32, dnnl_format_tag_any));
    if (G > 1)
        CHECK(dnnl_memory_desc_init_by_tag(&w_md, 5, wg_d, dnnl_f32, dnnl_format_tag_any));
    else
        CHECK(dnnl_memory_desc_init_by_tag(&w_md, 4, w_d, dnnl_f32, dnnl_format_tag_any));
    double flops = 2.0 * s->n * s->k * oh * ow * (double)(s->c / G) * s->rs * s->rs;
    double *t = malloc(reps * sizeof *t);

    /* Forward (also the hint of both backward passes). */
    dnnl_convolution_desc_t fd;
    CHECK(dnnl_convolution_forward_desc_init(&fd, inference ? dnnl_forward_inference : dnnl_forward_training,
                                             dnnl_convolution_auto, &src_md, &w_md, &b_md, &dst_md, strides, pad, pad));
    dnnl_primitive_desc_t fpd;
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL));
    if (inference && pass_sel != 3 && pass_sel != 0) {
        fprintf(stderr, "onednn_conv: --inference only with --pass fwd\n");
        exit(2);
    }
    for (int p = 0; p < 3; p++) {
        if (pass_sel != 3 && pass_sel != p) continue;
        if (inference && p > 0) break;
        dnnl_primitive_desc_t pd = fpd;
        dnnl_convolution_desc_t d;
        if (p == 1) {
            CHECK(dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_auto, &src_md, &w_md, &dst_md, strides,
                                                           pad, pad));
            CHECK(dnnl_primitive_desc_create(&pd, &d, NULL, eng, fpd));
        } else if (p == 2) {
            CHECK(dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_auto, &src_md, &w_md, &b_md,
                                                              &dst_md, strides, pad, pad));
            CHECK(dnnl_primitive_desc_create(&pd, &d, NULL, eng, fpd));
        }
        const char *impl = "";
        CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
        char alg[128];
        snprintf(alg, sizeof alg, "%s", impl);
        dnnl_exec_arg_t args[4];
        int nargs = 0;
        if (p == 0) {
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, make_mem(eng, pd, dnnl_query_src_md, 1)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, make_mem(eng, pd, dnnl_query_weights_md, 2)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, make_mem_at(eng, pd, dnnl_query_weights_md, 1, 3)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, make_mem(eng, pd, dnnl_query_dst_md, 4)};
        } else if (p == 1) {
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, make_mem(eng, pd, dnnl_query_diff_dst_md, 5)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, make_mem(eng, pd, dnnl_query_weights_md, 6)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, make_mem(eng, pd, dnnl_query_diff_src_md, 7)};
        } else {
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, make_mem(eng, pd, dnnl_query_src_md, 8)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, make_mem(eng, pd, dnnl_query_diff_dst_md, 9)};
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, make_mem(eng, pd, dnnl_query_diff_weights_md, 10)};
            args[nargs++] =
                (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, make_mem_at(eng, pd, dnnl_query_diff_weights_md, 1, 11)};
        }
        dnnl_primitive_t prim;
        CHECK(dnnl_primitive_create(&prim, pd));
        time_prim(prim, strm, nargs, args, flops, t, reps);
        double med, mn, mx;
        stats(t, reps, &med, &mn, &mx);
        print_row(s->id, pass_names[p], med, mn, mx, alg, threads, flops, s, json);
        dnnl_primitive_destroy(prim);
        for (int i = 0; i < nargs; i++) dnnl_memory_destroy(args[i].memory);
        if (pd != fpd) dnnl_primitive_desc_destroy(pd);
    }
    dnnl_primitive_desc_destroy(fpd);
    free(t);
}

static void gemm_row(long m, long n, long k, size_t reps, int threads, int json) {
    float *a = malloc((size_t)(m * k) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
    float *c = malloc((size_t)(m * n) * sizeof *c);
    double *t = malloc(reps * sizeof *t);
    if (!a || !b || !c || !t) {
        fprintf(stderr, "onednn_conv: out of memory\n");
        exit(1);
    }
    fill_random(a, (size_t)(m * k), 1);
    fill_random(b, (size_t)(k * n), 2);
    double flops = 2.0 * m * n * k, w0 = now();
    for (int i = 0; i < 20; i++) {
        CHECK(dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n));
        if (now() - w0 > 0.1) break;
    }
    for (size_t r = 0; r < reps; r++) {
        double t0 = now();
        CHECK(dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n));
        double dt = now() - t0;
        t[r] = dt > 0 ? flops / dt * 1e-9 : 0;
    }
    double med, mn, mx;
    stats(t, reps, &med, &mn, &mx);
    if (json)
        printf("{\"bench\":\"gemm\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"gflops_median\":%.17g,\"gflops_min\":%.17g,"
               "\"gflops_max\":%.17g,\"isa\":\"%s\",\"threads\":%d,\"peer\":\"onednn\"}\n",
               m, n, k, med, mn, mx, isa_name(), threads);
    else
        printf("%ldx%ldx%ld  dnnl_sgemm  %s  %d threads  median %.1f  min %.1f  max %.1f GFLOP/s\n", m, n, k,
               isa_name(), threads, med, mn, mx);
    fflush(stdout);
    free(a);
    free(b);
    free(c);
    free(t);
}

static long arg_long(const char *opt, const char *v) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < 1) {
        fprintf(stderr, "onednn_conv: %s needs a positive whole number\n", opt);
        exit(2);
    }
    return x;
}

static void usage(void) {
    fprintf(stderr, "usage: onednn_conv conv [--shape c1..c7|all] [--pass fwd|bwd_data|bwd_weights|all] [--threads T]\n"
                    "                        [--reps R] [--inference] [--json]\n"
                    "       onednn_conv gemm [--m M --n N --k K] [--threads T] [--reps R] [--json]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "conv") && strcmp(argv[1], "gemm"))) usage();
    int gemm = strcmp(argv[1], "gemm") == 0;
    const char *shape_id = "all";
    int pass_sel = 3, json = 0, inference = 0;
    long threads = sysconf(_SC_NPROCESSORS_ONLN), m = 0, n = 0, k = 0;
    size_t reps = 10;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--inference")) inference = 1;
        else if (!strcmp(a, "--shape") && v) shape_id = argv[++i];
        else if (!strcmp(a, "--pass") && v) {
            i++;
            pass_sel = !strcmp(v, "fwd") ? 0 : !strcmp(v, "bwd_data") ? 1 : !strcmp(v, "bwd_weights") ? 2
                     : !strcmp(v, "all") ? 3 : -1;
            if (pass_sel < 0) usage();
        } else if (!strcmp(a, "--threads")) threads = arg_long(a, argv[++i < argc ? i : argc - 1]);
        else if (!strcmp(a, "--reps")) reps = (size_t)arg_long(a, argv[++i < argc ? i : argc - 1]);
        else if (!strcmp(a, "--m")) m = arg_long(a, argv[++i < argc ? i : argc - 1]);
        else if (!strcmp(a, "--n")) n = arg_long(a, argv[++i < argc ? i : argc - 1]);
        else if (!strcmp(a, "--k")) k = arg_long(a, argv[++i < argc ? i : argc - 1]);
        else usage();
    }
    omp_set_num_threads((int)threads);
    if (gemm) {
        if (m || n || k) {
            long d = m ? m : n ? n : k;
            gemm_row(m ? m : d, n ? n : d, k ? k : d, reps, (int)threads, json);
        } else {
            gemm_row(512, 512, 512, reps, (int)threads, json);
            gemm_row(2048, 2048, 2048, reps, (int)threads, json);
        }
        return 0;
    }
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    int found = 0;
    for (size_t i = 0; i < N_B1; i++) {
        if (strcmp(shape_id, "all") && strcmp(shape_id, b1[i].id)) continue;
        found = 1;
        conv_shape(eng, strm, &b1[i], pass_sel, reps, inference, (int)threads, json);
    }
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    if (!found) {
        fprintf(stderr, "onednn_conv: unknown shape '%s' (c1..c7 or all)\n", shape_id);
        return 2;
    }
    return 0;
}
