/* harness.c — see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(mix(s) >> 11) * 0x1.0p-53; }

void th_fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 7919u + 17u;
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)unit(&s);
}

double th_rel_err(const float *a, const double *b, size_t n, double floor, size_t *worst) {
    double scale = floor, err = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= err)) { /* NaN counts as the worst */
            err = isnan(e) ? INFINITY : e;
            w = i;
        }
    }
    if (worst) *worst = w;
    return err / scale;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void th_build(th_net *t, const char *model, size_t n, uint64_t seed, size_t threads) {
    memset(t, 0, sizeof *t);
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    if (cnn_ctx_create(&t->ctx, &o) != CNN_OK) fail_msg("cnn_ctx_create failed");
    cnn_status st = cnn_net_parse(t->ctx, model, strlen(model), "test.cnn", &t->net);
    if (st != CNN_OK) fail_msg("parse failed: %s\n--- model:\n%s", cnn_ctx_last_error(t->ctx), model);
    st = cnn_net_compile(t->net, n, CNN_COMPILE_TRAIN | CNN_COMPILE_INPUT_GRAD);
    if (st != CNN_OK) fail_msg("compile failed: %s", cnn_ctx_last_error(t->ctx));
    st = cnn_net_init_params(t->net, seed, CNN_INIT_PYTORCH);
    if (st != CNN_OK) fail_msg("init failed: %s", cnn_ctx_last_error(t->ctx));
    cnn_net_set_seed(t->net, seed);
    for (size_t i = 0; i < cnn_net_num_params(t->net); i++) {
        cnn_param p;
        cnn_net_param_at(t->net, i, &p);
        uint64_t s = seed * 1000003u + i;
        for (size_t j = 0; j < p.count; j++) {
            double u = unit(&s);
            if (ends_with(p.name, "running_var")) p.data[j] = (float)(0.5 + u);
            else p.data[j] += (float)(0.2 * (u - 0.5));
        }
    }
    t->n = n;
    t->in = cnn_net_input_shape(t->net);
    t->out = cnn_net_output_shape(t->net);
    t->in_count = t->in.c * t->in.h * t->in.w;
    t->out_count = t->out.c * t->out.h * t->out.w;
    t->x = malloc(n * t->in_count * sizeof(float));
    if (!t->x) fail_msg("out of memory");
    th_fill_uniform(t->x, n * t->in_count, seed + 99, -1.0f, 1.0f);
}

void th_free(th_net *t) {
    cnn_net_free(t->net);
    cnn_ctx_free(t->ctx);
    free(t->x);
    memset(t, 0, sizeof *t);
}

void th_expect_error(const char *model, cnn_status want, const char *needle) {
    cnn_ctx *ctx = NULL;
    if (cnn_ctx_create(&ctx, NULL) != CNN_OK) fail_msg("cnn_ctx_create failed");
    cnn_net *net = NULL;
    cnn_status st = cnn_net_parse(ctx, model, strlen(model), "test.cnn", &net);
    if (st == CNN_OK) {
        st = cnn_net_compile(net, 2, CNN_COMPILE_TRAIN);
        cnn_net_free(net);
        net = NULL;
    }
    const char *msg = cnn_ctx_last_error(ctx);
    if (st != want || (needle && !strstr(msg, needle))) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", msg);
        cnn_ctx_free(ctx);
        fail_msg("expected status %d (%s) with message containing '%s'; got %d (%s): '%s'\n--- model:\n%s", (int)want,
                 cnn_status_string(want), needle ? needle : "", (int)st, cnn_status_string(st), copy, model);
    }
    if (net) fail_msg("net returned on failure");
    cnn_ctx_free(ctx);
}

typedef struct fd_state {
    th_ref_fn ref;
    void *user;
    size_t n;
    double *x;
    double **params;
    double *y;
    const float *dy;
    size_t ycount;
    int training;
} fd_state;

static double objective(fd_state *s) {
    s->ref(s->user, s->n, s->x, (const double *const *)s->params, s->y, s->training);
    double L = 0;
    for (size_t i = 0; i < s->ycount; i++) L += (double)s->dy[i] * s->y[i];
    return L;
}

/* Compare got[] against central differences of the objective w.r.t. v[], at up to max_points indices. */
static void check_grad(fd_state *s, double *v, size_t count, const float *got, const char *what, double tol,
                       double h, size_t max_points, uint64_t seed) {
    size_t points = (max_points == 0 || max_points >= count) ? count : max_points;
    double worst = 0, scale = 1e-2;
    size_t worst_i = 0;
    double worst_fd = 0;
    double *fd = malloc(points * sizeof *fd);
    size_t *idx = malloc(points * sizeof *idx);
    if (!fd || !idx) fail_msg("out of memory");
    uint64_t r = seed;
    for (size_t k = 0; k < points; k++) {
        size_t i = points == count ? k : (size_t)(mix(&r) % count);
        idx[k] = i;
        double keep = v[i];
        v[i] = keep + h;
        double lp = objective(s);
        v[i] = keep - h;
        double lm = objective(s);
        v[i] = keep;
        fd[k] = (lp - lm) / (2 * h);
        if (fabs(fd[k]) > scale) scale = fabs(fd[k]);
    }
    for (size_t k = 0; k < points; k++) {
        double e = fabs((double)got[idx[k]] - fd[k]);
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            worst_i = idx[k];
            worst_fd = fd[k];
        }
    }
    free(fd);
    free(idx);
    if (worst / scale > tol)
        fail_msg("%s: gradient mismatch at element %zu: analytic %.9g, finite difference %.9g (relative error %.3g > "
                 "%.3g, scale %.3g)",
                 what, worst_i, (double)got[worst_i], worst_fd, worst / scale, tol, scale);
}

void th_check(th_net *t, th_ref_fn ref, void *user, int training, th_tolerance tol) {
    size_t np = cnn_net_num_params(t->net);
    size_t xcount = t->n * t->in_count, ycount = t->n * t->out_count;
    double h = tol.fd_step > 0 ? tol.fd_step : 1e-6;
    fd_state s = {ref, user, t->n, NULL, NULL, NULL, NULL, ycount, training};
    s.x = malloc(xcount * sizeof(double));
    s.y = malloc(ycount * sizeof(double));
    s.params = calloc(np ? np : 1, sizeof(double *));
    float *dy = malloc(ycount * sizeof(float));
    if (!s.x || !s.y || !s.params || !dy) fail_msg("out of memory");
    for (size_t i = 0; i < xcount; i++) s.x[i] = t->x[i];
    /* snapshot the tensors before forward (a training forward updates running statistics) */
    for (size_t i = 0; i < np; i++) {
        cnn_param p;
        cnn_net_param_at(t->net, i, &p);
        s.params[i] = malloc(p.count * sizeof(double));
        if (!s.params[i]) fail_msg("out of memory");
        for (size_t j = 0; j < p.count; j++) s.params[i][j] = p.data[j];
    }
    if (cnn_net_forward(t->net, t->x, t->n, training) != CNN_OK)
        fail_msg("forward failed: %s", cnn_ctx_last_error(t->ctx));
    size_t on = 0;
    const float *y = cnn_net_output(t->net, &on);
    if (!y || on != t->n) fail_msg("no output after forward");
    ref(user, t->n, s.x, (const double *const *)s.params, s.y, training);
    size_t worst;
    double e = th_rel_err(y, s.y, ycount, 1.0, &worst);
    if (e > tol.forward)
        fail_msg("forward mismatch at output element %zu (sample %zu): got %.9g, reference %.9g (relative error %.3g > %.3g)",
                 worst, worst / t->out_count, (double)y[worst], s.y[worst], e, tol.forward);
    if (training) {
        th_fill_uniform(dy, ycount, 4242, -1.0f, 1.0f);
        s.dy = dy;
        if (cnn_net_backward(t->net, dy) != CNN_OK) fail_msg("backward failed: %s", cnn_ctx_last_error(t->ctx));
        const float *dx = cnn_net_input_grad(t->net);
        if (!dx) fail_msg("no input gradient");
        check_grad(&s, s.x, xcount, dx, "input gradient", tol.grad, h, tol.fd_points, 11);
        for (size_t i = 0; i < np; i++) {
            cnn_param p;
            cnn_net_param_at(t->net, i, &p);
            if (!p.trainable) continue;
            if (!p.grad) fail_msg("%s has no gradient", p.name);
            check_grad(&s, s.params[i], p.count, p.grad, p.name, tol.grad, h, tol.fd_points, 13 + i);
        }
    }
    for (size_t i = 0; i < np; i++) free(s.params[i]);
    free(s.params);
    free(s.x);
    free(s.y);
    free(dy);
}

void th_check_threads_bitwise(const char *model, size_t n, size_t threads) {
    th_net a, b;
    th_build(&a, model, n, 4321, 1);
    th_build(&b, model, n, 4321, threads);
    assert_int_equal(cnn_net_num_params(a.net), cnn_net_num_params(b.net));
    assert_int_equal(cnn_net_forward(a.net, a.x, n, 1), CNN_OK);
    assert_int_equal(cnn_net_forward(b.net, b.x, n, 1), CNN_OK);
    size_t na = 0, nb = 0;
    const float *ya = cnn_net_output(a.net, &na), *yb = cnn_net_output(b.net, &nb);
    assert_int_equal(na, n);
    assert_int_equal(nb, n);
    assert_memory_equal(ya, yb, n * a.out_count * sizeof(float));
    float *dy = malloc(n * a.out_count * sizeof(float));
    assert_non_null(dy);
    th_fill_uniform(dy, n * a.out_count, 5, -1, 1);
    assert_int_equal(cnn_net_backward(a.net, dy), CNN_OK);
    assert_int_equal(cnn_net_backward(b.net, dy), CNN_OK);
    assert_memory_equal(cnn_net_input_grad(a.net), cnn_net_input_grad(b.net), n * a.in_count * sizeof(float));
    for (size_t i = 0; i < cnn_net_num_params(a.net); i++) {
        cnn_param pa, pb;
        assert_int_equal(cnn_net_param_at(a.net, i, &pa), CNN_OK);
        assert_int_equal(cnn_net_param_at(b.net, i, &pb), CNN_OK);
        assert_string_equal(pa.name, pb.name);
        assert_memory_equal(pa.data, pb.data, pa.count * sizeof(float));
        if (pa.trainable) assert_memory_equal(pa.grad, pb.grad, pa.count * sizeof(float));
    }
    free(dy);
    th_free(&a);
    th_free(&b);
}
