/* test_optim.c — SGD (plain, weight decay, momentum, Nesterov), Adam and AdamW against the PyTorch update
 * rules evaluated here in double, over 3 steps with hand-set parameters and gradients (changing gradients and
 * learning rates per step); literal one-step values; 1 vs 2 threads bit-identical over a multi-range arena;
 * step counting; option validation and misuse; the learning-rate schedules against closed forms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"

#define MODEL "input c=3 h=1 w=1\ndense out=2\n"
#define NP 8 /* dense0.weight [2,3] + dense0.bias [2] */
#define STEPS 3

typedef struct fixture {
    cnn_ctx *ctx;
    cnn_net *net;
    cnn_param t[2]; /* weight, bias */
} fixture;

static void fx_open(fixture *f, const char *model, size_t threads, unsigned flags) {
    memset(f, 0, sizeof *f);
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    assert_int_equal(cnn_ctx_create(&f->ctx, &o), CNN_OK);
    assert_int_equal(cnn_net_parse(f->ctx, model, strlen(model), "optim.cnn", &f->net), CNN_OK);
    if (flags != ~0u) assert_int_equal(cnn_net_compile(f->net, 1, flags), CNN_OK);
    if (flags != ~0u && (flags & CNN_COMPILE_TRAIN)) {
        assert_int_equal(cnn_net_num_params(f->net), 2);
        assert_int_equal(cnn_net_param_at(f->net, 0, &f->t[0]), CNN_OK);
        assert_int_equal(cnn_net_param_at(f->net, 1, &f->t[1]), CNN_OK);
        assert_non_null(f->t[0].grad);
        assert_non_null(f->t[1].grad);
    }
}

static void fx_close(fixture *f) {
    cnn_net_free(f->net);
    cnn_ctx_free(f->ctx);
}

/* element i of the flattened (weight, bias) list */
static float *pdata(fixture *f, size_t i) {
    size_t n0 = f->t[0].count;
    return i < n0 ? &f->t[0].data[i] : &f->t[1].data[i - n0];
}
static float *pgrad(fixture *f, size_t i) {
    size_t n0 = f->t[0].count;
    return i < n0 ? &f->t[0].grad[i] : &f->t[1].grad[i - n0];
}

/* hand-set values: parameters, and a different gradient for every step (all nonzero, mixed signs) */
static const float P0[NP] = {0.5f, -1.25f, 2.0f, 0.3f, -0.7f, 1.1f, 0.25f, -0.4f};
static const float G[STEPS][NP] = {
    {0.2f, -0.5f, 1.5f, -0.05f, 0.9f, -1.2f, 0.3f, 0.01f},
    {-0.1f, -0.45f, 1.0f, 0.2f, 0.8f, -0.3f, -0.6f, 0.02f},
    {0.35f, 0.1f, -2.0f, 0.15f, 0.7f, -0.9f, 0.05f, -0.03f},
};
static const float LR[STEPS] = {0.1f, 0.05f, 0.2f};

/* ---- the update rules, in double (PyTorch's pseudo-code) ---- */
typedef struct ref_state {
    double p[NP], buf[NP], m[NP], v[NP];
    int t;
} ref_state;

static void ref_step(ref_state *s, const cnn_optimizer_options *o, const float *g, double lr) {
    s->t++;
    for (size_t i = 0; i < NP; i++) {
        double gi = g[i];
        if (o->kind == CNN_OPT_SGD) {
            gi += (double)o->weight_decay * s->p[i];
            if (o->momentum > 0) {
                s->buf[i] = s->t == 1 ? gi : (double)o->momentum * s->buf[i] + gi;
                gi = o->nesterov ? gi + (double)o->momentum * s->buf[i] : s->buf[i];
            }
            s->p[i] -= lr * gi;
        } else {
            if (o->kind == CNN_OPT_ADAMW) s->p[i] *= 1.0 - lr * (double)o->weight_decay;
            else gi += (double)o->weight_decay * s->p[i];
            double b1 = o->beta1, b2 = o->beta2;
            s->m[i] = b1 * s->m[i] + (1 - b1) * gi;
            s->v[i] = b2 * s->v[i] + (1 - b2) * gi * gi;
            double mhat = s->m[i] / (1 - pow(b1, s->t)), vhat = s->v[i] / (1 - pow(b2, s->t));
            s->p[i] -= lr * mhat / (sqrt(vhat) + (double)o->eps);
        }
    }
}

static void run_three_steps(const char *label, cnn_optimizer_options o) {
    fixture f;
    fx_open(&f, MODEL, 1, CNN_COMPILE_TRAIN);
    ref_state s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < NP; i++) {
        *pdata(&f, i) = P0[i];
        s.p[i] = P0[i];
    }
    cnn_optimizer *opt = NULL;
    assert_int_equal(cnn_optimizer_create(f.net, &o, &opt), CNN_OK);
    assert_non_null(opt);
    assert_int_equal(cnn_optimizer_steps(opt), 0);
    for (int step = 0; step < STEPS; step++) {
        for (size_t i = 0; i < NP; i++) *pgrad(&f, i) = G[step][i];
        assert_int_equal(cnn_optimizer_step(opt, LR[step]), CNN_OK);
        ref_step(&s, &o, G[step], LR[step]);
        assert_int_equal(cnn_optimizer_steps(opt), (uint64_t)step + 1);
        for (size_t i = 0; i < NP; i++) {
            double got = *pdata(&f, i), want = s.p[i];
            if (fabs(got - want) > 1e-6 * fmax(fabs(want), 1.0))
                fail_msg("%s: step %d, parameter %zu: got %.9g, want %.9g", label, step + 1, i, got, want);
            /* the gradients are read, never written */
            assert_true(*pgrad(&f, i) == G[step][i]);
        }
    }
    cnn_optimizer_free(opt);
    fx_close(&f);
}

static void test_sgd(void **state) {
    (void)state;
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_SGD);
    run_three_steps("sgd", o);
    o.weight_decay = 0.1f;
    run_three_steps("sgd wd", o);
    o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.momentum = 0.9f;
    run_three_steps("sgd momentum", o);
    o.weight_decay = 0.05f;
    run_three_steps("sgd momentum wd", o);
    o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.momentum = 0.8f;
    o.nesterov = 1;
    run_three_steps("sgd nesterov", o);
    o.weight_decay = 0.2f;
    run_three_steps("sgd nesterov wd", o);
}

static void test_adam(void **state) {
    (void)state;
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_ADAM);
    run_three_steps("adam", o);
    o.weight_decay = 0.05f;
    run_three_steps("adam wd", o);
    o = cnn_optimizer_options_default(CNN_OPT_ADAM);
    o.beta1 = 0.5f;
    o.beta2 = 0.75f;
    o.eps = 1e-3f;
    run_three_steps("adam betas eps", o);
}

static void test_adamw(void **state) {
    (void)state;
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_ADAMW);
    run_three_steps("adamw", o);
    o.weight_decay = 0.3f;
    o.beta1 = 0.0f;
    run_three_steps("adamw wd beta1=0", o);
}

/* One step worked out by hand: p = 0.5, grad = 0.2. */
static void test_literal_values(void **state) {
    (void)state;
    struct {
        cnn_optimizer_kind kind;
        float momentum, wd, lr;
        int nesterov;
        double want;
    } cases[] = {
        {CNN_OPT_SGD, 0, 0, 0.1f, 0, 0.48},                  /* 0.5 - 0.1*0.2 */
        {CNN_OPT_SGD, 0, 0.1f, 0.1f, 0, 0.475},              /* 0.5 - 0.1*(0.2 + 0.05) */
        {CNN_OPT_SGD, 0.9f, 0, 0.1f, 1, 0.462},              /* 0.5 - 0.1*(0.2 + 0.9*0.2) */
        {CNN_OPT_ADAM, 0, 0, 0.01f, 0, 0.5 - 0.01 * 0.2 / (0.2 + 1e-8)}, /* mhat = g, vhat = g^2 */
        {CNN_OPT_ADAMW, 0, 0.5f, 0.01f, 0, 0.5 * (1 - 0.005) - 0.01 * 0.2 / (0.2 + 1e-8)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fixture f;
        fx_open(&f, MODEL, 1, CNN_COMPILE_TRAIN);
        for (size_t i = 0; i < NP; i++) {
            *pdata(&f, i) = 0.5f;
            *pgrad(&f, i) = 0.2f;
        }
        cnn_optimizer_options o = cnn_optimizer_options_default(cases[k].kind);
        o.momentum = cases[k].momentum;
        o.nesterov = cases[k].nesterov;
        o.weight_decay = cases[k].wd;
        cnn_optimizer *opt = NULL;
        assert_int_equal(cnn_optimizer_create(f.net, &o, &opt), CNN_OK);
        assert_int_equal(cnn_optimizer_step(opt, cases[k].lr), CNN_OK);
        for (size_t i = 0; i < NP; i++)
            if (fabs(*pdata(&f, i) - cases[k].want) > 1e-6)
                fail_msg("case %zu: got %.9g, want %.9g", k, (double)*pdata(&f, i), cases[k].want);
        /* lr = 0 leaves SGD parameters alone (Adam moves nothing either; AdamW decays by 1 - 0) */
        float before = *pdata(&f, 0);
        assert_int_equal(cnn_optimizer_step(opt, 0.0f), CNN_OK);
        assert_true(*pdata(&f, 0) == before);
        cnn_optimizer_free(opt);
        fx_close(&f);
    }
}

static void test_defaults(void **state) {
    (void)state;
    cnn_optimizer_options s = cnn_optimizer_options_default(CNN_OPT_SGD);
    assert_int_equal(s.kind, CNN_OPT_SGD);
    assert_true(s.momentum == 0.0f && s.nesterov == 0 && s.weight_decay == 0.0f && s.lr > 0.0f);
    cnn_optimizer_options a = cnn_optimizer_options_default(CNN_OPT_ADAM);
    assert_int_equal(a.kind, CNN_OPT_ADAM);
    assert_true(a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f && a.weight_decay == 0.0f);
    assert_true(a.lr == 0.001f);
    cnn_optimizer_options w = cnn_optimizer_options_default(CNN_OPT_ADAMW);
    assert_int_equal(w.kind, CNN_OPT_ADAMW);
    assert_true(w.beta1 == 0.9f && w.beta2 == 0.999f && w.eps == 1e-8f && w.weight_decay == 0.01f);
}

/* 128*300 + 300 = 38700 parameters: split into two ranges on two threads; results bit-identical to one
 * thread. */
static void test_threads_bit_identical(void **state) {
    (void)state;
    const char *model = "input c=128 h=1 w=1\ndense out=300\n";
    const cnn_optimizer_kind kinds[3] = {CNN_OPT_SGD, CNN_OPT_ADAM, CNN_OPT_ADAMW};
    for (size_t k = 0; k < 3; k++) {
        fixture f[2];
        cnn_optimizer *opt[2] = {NULL, NULL};
        cnn_optimizer_options o = cnn_optimizer_options_default(kinds[k]);
        if (kinds[k] == CNN_OPT_SGD) {
            o.momentum = 0.9f;
            o.nesterov = 1;
            o.weight_decay = 1e-4f;
        }
        for (size_t a = 0; a < 2; a++) {
            fx_open(&f[a], model, a + 1, CNN_COMPILE_TRAIN);
            assert_int_equal(cnn_optimizer_create(f[a].net, &o, &opt[a]), CNN_OK);
        }
        size_t nw = f[0].t[0].count, nb = f[0].t[1].count;
        assert_int_equal(nw, 128 * 300);
        for (int step = 0; step < 3; step++) {
            for (size_t a = 0; a < 2; a++) {
                for (size_t i = 0; i < nw; i++) {
                    f[a].t[0].data[i] = step == 0 ? (float)sin(0.37 * (double)i) : f[a].t[0].data[i];
                    f[a].t[0].grad[i] = (float)cos(0.11 * (double)i + step);
                }
                for (size_t i = 0; i < nb; i++) {
                    if (step == 0) f[a].t[1].data[i] = (float)cos(0.5 * (double)i);
                    f[a].t[1].grad[i] = (float)sin(0.23 * (double)i - step);
                }
                assert_int_equal(cnn_optimizer_step(opt[a], 0.01f), CNN_OK);
            }
            assert_memory_equal(f[0].t[0].data, f[1].t[0].data, nw * sizeof(float));
            assert_memory_equal(f[0].t[1].data, f[1].t[1].data, nb * sizeof(float));
        }
        /* and the last element of the weight moved (the second range was updated at all) */
        assert_true(f[1].t[0].data[nw - 1] != (float)sin(0.37 * (double)(nw - 1)));
        for (size_t a = 0; a < 2; a++) {
            cnn_optimizer_free(opt[a]);
            fx_close(&f[a]);
        }
    }
}

static void expect_invalid(fixture *f, cnn_optimizer_options o, const char *needle) {
    cnn_optimizer *opt = (cnn_optimizer *)(uintptr_t)1;
    cnn_status st = cnn_optimizer_create(f->net, &o, &opt);
    if (st != CNN_ERR_INVALID_ARG || opt != NULL || !strstr(cnn_ctx_last_error(f->ctx), needle))
        fail_msg("expected CNN_ERR_INVALID_ARG mentioning '%s', got %d: '%s'", needle, (int)st,
                 cnn_ctx_last_error(f->ctx));
}

static void test_invalid_options(void **state) {
    (void)state;
    fixture f;
    fx_open(&f, MODEL, 1, CNN_COMPILE_TRAIN);
    cnn_optimizer_options o;
    for (int k = 0; k < 3; k++) {
        o = cnn_optimizer_options_default((cnn_optimizer_kind)k);
        o.lr = -0.1f;
        expect_invalid(&f, o, "lr");
        o.lr = NAN;
        expect_invalid(&f, o, "lr");
        o.lr = INFINITY;
        expect_invalid(&f, o, "lr");
        o = cnn_optimizer_options_default((cnn_optimizer_kind)k);
        o.weight_decay = -1.0f;
        expect_invalid(&f, o, "weight_decay");
        o.weight_decay = NAN;
        expect_invalid(&f, o, "weight_decay");
    }
    o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.momentum = 1.0f;
    expect_invalid(&f, o, "momentum");
    o.momentum = -0.1f;
    expect_invalid(&f, o, "momentum");
    o.momentum = NAN;
    expect_invalid(&f, o, "momentum");
    o.momentum = 0.0f;
    o.nesterov = 1;
    expect_invalid(&f, o, "nesterov");
    for (int k = 1; k < 3; k++) {
        o = cnn_optimizer_options_default((cnn_optimizer_kind)k);
        o.beta1 = 1.0f;
        expect_invalid(&f, o, "beta1");
        o.beta1 = -0.5f;
        expect_invalid(&f, o, "beta1");
        o = cnn_optimizer_options_default((cnn_optimizer_kind)k);
        o.beta2 = 1.0f;
        expect_invalid(&f, o, "beta2");
        o.beta2 = NAN;
        expect_invalid(&f, o, "beta2");
        o = cnn_optimizer_options_default((cnn_optimizer_kind)k);
        o.eps = 0.0f;
        expect_invalid(&f, o, "eps");
        o.eps = -1e-8f;
        expect_invalid(&f, o, "eps");
    }
    o = cnn_optimizer_options_default(CNN_OPT_SGD);
    o.kind = (cnn_optimizer_kind)7;
    expect_invalid(&f, o, "kind");
    cnn_optimizer *opt = (cnn_optimizer *)(uintptr_t)1;
    assert_int_equal(cnn_optimizer_create(f.net, NULL, &opt), CNN_ERR_INVALID_ARG);
    assert_null(opt);
    assert_int_equal(cnn_optimizer_create(NULL, &o, &opt), CNN_ERR_INVALID_ARG);
    assert_null(opt);

    /* a bad learning rate at step time is rejected and does not count as a step */
    o = cnn_optimizer_options_default(CNN_OPT_ADAM);
    assert_int_equal(cnn_optimizer_create(f.net, &o, &opt), CNN_OK);
    float before = f.t[0].data[0];
    f.t[0].grad[0] = 1.0f;
    assert_int_equal(cnn_optimizer_step(opt, -1.0f), CNN_ERR_INVALID_ARG);
    assert_non_null(strstr(cnn_ctx_last_error(f.ctx), "lr"));
    assert_int_equal(cnn_optimizer_step(opt, NAN), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_optimizer_steps(opt), 0);
    assert_true(f.t[0].data[0] == before);
    assert_int_equal(cnn_optimizer_step(NULL, 0.1f), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_optimizer_steps(NULL), 0);
    cnn_optimizer_free(opt);
    cnn_optimizer_free(NULL);
    fx_close(&f);
}

static void test_misuse(void **state) {
    (void)state;
    cnn_optimizer_options o = cnn_optimizer_options_default(CNN_OPT_SGD);
    unsigned flags[2] = {~0u /* not compiled */, 0 /* inference */};
    for (size_t k = 0; k < 2; k++) {
        fixture f;
        fx_open(&f, MODEL, 1, flags[k]);
        cnn_optimizer *opt = (cnn_optimizer *)(uintptr_t)1;
        assert_int_equal(cnn_optimizer_create(f.net, &o, &opt), CNN_ERR_MISUSE);
        assert_null(opt);
        assert_non_null(strstr(cnn_ctx_last_error(f.ctx), "training"));
        fx_close(&f);
    }
}

/* ---- schedules ---- */

static void expect_lr(const cnn_schedule *s, double step, double want) {
    float got = cnn_schedule_lr(s, step);
    if (fabs((double)got - want) > 1e-6 * fmax(fabs(want), 1e-6))
        fail_msg("schedule kind %d at step %g: got %.9g, want %.9g", (int)s->kind, step, (double)got, want);
}

static void test_schedules(void **state) {
    (void)state;
    const double pi = 3.14159265358979323846;
    cnn_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = CNN_SCHED_CONSTANT;
    s.base_lr = 0.1f;
    expect_lr(&s, 0, 0.1f);
    expect_lr(&s, 12345, 0.1f);
    s.warmup_steps = 4;
    expect_lr(&s, 0, 0.1f * 0.25); /* base * (step + 1) / warmup */
    expect_lr(&s, 2, 0.1f * 0.75);
    expect_lr(&s, 3, 0.1f);
    expect_lr(&s, 4, 0.1f);
    expect_lr(&s, 100, 0.1f);

    memset(&s, 0, sizeof s);
    s.kind = CNN_SCHED_STEP;
    s.base_lr = 0.1f;
    s.gamma = 0.5f;
    s.step_size = 10;
    expect_lr(&s, 0, 0.1f);
    expect_lr(&s, 9, 0.1f);
    expect_lr(&s, 10, 0.1f * 0.5);
    expect_lr(&s, 19, 0.1f * 0.5);
    expect_lr(&s, 25, 0.1f * 0.25);
    expect_lr(&s, 100, 0.1f * pow(0.5, 10));
    s.warmup_steps = 5;
    expect_lr(&s, 0, 0.1f * 0.2);
    expect_lr(&s, 4, 0.1f);
    expect_lr(&s, 12, 0.1f * 0.5);

    memset(&s, 0, sizeof s);
    s.kind = CNN_SCHED_COSINE;
    s.base_lr = 0.1f;
    s.min_lr = 0.001f;
    s.total_steps = 110;
    s.warmup_steps = 10;
    const double base = 0.1f, lo = 0.001f;
    expect_lr(&s, 0, base / 10);
    expect_lr(&s, 9, base);
    expect_lr(&s, 10, base);                                          /* t = 0 */
    expect_lr(&s, 35, lo + (base - lo) * (1 + cos(pi / 4)) / 2);      /* t = 25 of T = 100 */
    expect_lr(&s, 60, lo + (base - lo) * 0.5);                        /* half way */
    expect_lr(&s, 97, lo + (base - lo) * (1 + cos(pi * 0.87)) / 2);
    expect_lr(&s, 110, lo);
    expect_lr(&s, 1000, lo);
    s.warmup_steps = 0;
    s.total_steps = 7;
    expect_lr(&s, 0, base);
    expect_lr(&s, 3, lo + (base - lo) * (1 + cos(pi * 3 / 7)) / 2);
    expect_lr(&s, 7, lo);

    /* edges: NULL schedule, negative steps count as step 0 */
    assert_true(cnn_schedule_lr(NULL, 3) == 0.0f);
    s.kind = CNN_SCHED_CONSTANT;
    expect_lr(&s, -5, base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_literal_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_invalid_options),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
