/* test_recipe.c — part "recipe" (issue 5, training features):
 *   the `recipe` line of the model text: every key parsed, printed and parsed back (round trip through
 *   cnn_net_to_text), cnn_net_set_recipe, errors with file:line:col (unknown key, bad values, out of range,
 *   two recipe lines, combinations);
 *   gradient clipping by global norm on a known gradient (norm before, norm after == max, elements scaled,
 *   no change under the limit, 1 vs 2 threads bit-identical);
 *   the one-cycle learning rate at chosen steps against PyTorch's OneCycleLR formula written out here;
 *   label smoothing set from outside the model text (loss against the closed form);
 *   AdamW's weight decay is decoupled (zero gradient: p * (1 - lr wd) exactly; Adam's L2 moves differently);
 *   EMA after k updates against the closed form in double, swap twice restores bit for bit, and a checkpoint
 *   with the EMA read back bit for bit (also the best validation accuracy);
 *   the validation split: sizes, disjoint, covering, sorted, the same for a seed, another for another seed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn.h"
#include "harness.h"

#define BASE "input c=3 h=5 w=7\nconv2d k=4 kh=3 kw=3\nbatchnorm\nrelu\nflatten\ndense out=5\nsoftmax_ce\n"

static cnn_ctx *new_ctx(size_t threads) {
    cnn_ctx_options o = cnn_ctx_options_default();
    o.threads = threads;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, &o), CNN_OK);
    return ctx;
}

/* parse model text; expect status want and (on failure) a message containing needle */
static cnn_net *parse(cnn_ctx *ctx, const char *text, cnn_status want, const char *needle) {
    cnn_net *net = NULL;
    cnn_status st = cnn_net_parse(ctx, text, strlen(text), "r.cnn", &net);
    if (st != want || (needle && !strstr(cnn_ctx_last_error(ctx), needle)))
        fail_msg("parse: status %d (want %d), message '%s' (want '%s')", (int)st, (int)want, cnn_ctx_last_error(ctx),
                 needle ? needle : "");
    return net;
}

/* ---------------------------------------------------------------- the parser */

static void test_every_key(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    const char *text = BASE "# the recipe may stand anywhere\n"
                            "recipe optimizer=sgd lr=0.1 momentum=0.85 nesterov=yes weight_decay=5e-4 schedule=onecycle "
                            "warmup_epochs=1.5 div_factor=20 final_div_factor=1000 epochs=12 batch=96 seed=7 "
                            "label_smoothing=0.1 clip_norm=2.5 ema=0.999 val_split=0.125 normalize=0.286,0.353 "
                            "augment=crop=2,flip tta=1 lanes=2  # comment\n";
    cnn_net *net = parse(ctx, text, CNN_OK, NULL);
    cnn_recipe r;
    assert_int_equal(cnn_net_get_recipe(net, &r), CNN_OK);
    unsigned all = 0;
    for (size_t i = 0; i < cnn_recipe_num_keys(); i++) {
        unsigned bit;
        assert_non_null(cnn_recipe_key(i, &bit));
        all |= bit;
    }
    assert_int_equal(cnn_recipe_num_keys(), 22);
    assert_int_equal(r.set, all & ~(unsigned)(CNN_RECIPE_STEP_EPOCHS | CNN_RECIPE_GAMMA));
    assert_int_equal(r.line, 9);
    assert_int_equal(r.optimizer, CNN_OPT_SGD);
    assert_true(r.lr == 0.1 && r.momentum == 0.85 && r.nesterov == 1 && r.weight_decay == 5e-4);
    assert_int_equal(r.schedule, CNN_SCHED_ONECYCLE);
    assert_true(r.warmup_epochs == 1.5 && r.div_factor == 20 && r.final_div_factor == 1000);
    assert_true(r.epochs == 12 && r.batch == 96 && r.seed == 7);
    assert_true(r.label_smoothing == 0.1 && r.clip_norm == 2.5 && r.ema == 0.999 && r.val_split == 0.125);
    assert_string_equal(r.normalize, "0.286,0.353");
    assert_string_equal(r.augment, "crop=2,flip");
    assert_int_equal(r.tta, 1);
    assert_int_equal(r.lanes, 2);
    /* printed back and parsed again: the same recipe */
    char *out = NULL;
    assert_int_equal(cnn_net_to_text(net, &out), CNN_OK);
    assert_non_null(strstr(out, "\nrecipe optimizer=sgd lr=0.1 momentum=0.85 nesterov=1 weight_decay=0.0005 "
                                "schedule=onecycle warmup_epochs=1.5 div_factor=20 final_div_factor=1000 epochs=12 "
                                "batch=96 seed=7 label_smoothing=0.1 clip_norm=2.5 ema=0.999 val_split=0.125 "
                                "normalize=0.286,0.353 augment=crop=2,flip tta=1 lanes=2\n"));
    cnn_net *again = parse(ctx, out, CNN_OK, NULL);
    cnn_recipe r2;
    assert_int_equal(cnn_net_get_recipe(again, &r2), CNN_OK);
    r2.line = r.line;
    assert_memory_equal(&r, &r2, sizeof r);
    /* the recipe alone (cnn_recipe_parse: the layers are not looked at) */
    cnn_recipe r3;
    assert_int_equal(cnn_recipe_parse(ctx, text, strlen(text), "r.cnn", &r3), CNN_OK);
    assert_memory_equal(&r, &r3, sizeof r);
    const char *odd = "nonsense layer=1\n\nrecipe epochs=4 batch=3\n";
    assert_int_equal(cnn_recipe_parse(ctx, odd, strlen(odd), "o.cnn", &r3), CNN_OK);
    assert_int_equal(r3.set, CNN_RECIPE_EPOCHS | CNN_RECIPE_BATCH);
    assert_true(r3.epochs == 4 && r3.batch == 3 && r3.line == 3);
    assert_int_equal(cnn_recipe_parse(ctx, BASE, strlen(BASE), "o.cnn", &r3), CNN_OK);
    assert_int_equal(r3.set, 0);
    odd = "recipe epochs=4\nrecipe epochs=5\n";
    assert_int_equal(cnn_recipe_parse(ctx, odd, strlen(odd), "o.cnn", &r3), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "o.cnn:2:1: recipe: a second recipe line"));
    odd = "recipe epochs=x\n";
    assert_int_equal(cnn_recipe_parse(ctx, odd, strlen(odd), "o.cnn", &r3), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "o.cnn:1:15: recipe: epochs: expected an integer"));
    cnn_free(ctx, out);
    cnn_net_free(again);

    /* step schedule keys; adam; a value that needs 17 digits survives the round trip */
    cnn_net_free(net);
    net = parse(ctx, BASE "recipe optimizer=adamw schedule=step step_epochs=3 gamma=0.5 lr=0.00123456789012345678\n",
                CNN_OK, NULL);
    assert_int_equal(cnn_net_get_recipe(net, &r), CNN_OK);
    assert_int_equal(r.set, CNN_RECIPE_OPTIMIZER | CNN_RECIPE_SCHEDULE | CNN_RECIPE_STEP_EPOCHS | CNN_RECIPE_GAMMA |
                                CNN_RECIPE_LR);
    assert_true(r.optimizer == CNN_OPT_ADAMW && r.schedule == CNN_SCHED_STEP && r.step_epochs == 3 && r.gamma == 0.5);
    r.lr = 0.1 + 0.2; /* 0.30000000000000004 */
    assert_int_equal(cnn_net_set_recipe(net, &r), CNN_OK);
    assert_int_equal(cnn_net_to_text(net, &out), CNN_OK);
    again = parse(ctx, out, CNN_OK, NULL);
    assert_int_equal(cnn_net_get_recipe(again, &r2), CNN_OK);
    assert_true(r2.lr == 0.1 + 0.2);
    cnn_free(ctx, out);
    cnn_net_free(again);
    /* set_recipe checks values as the parser does */
    r.ema = 1.5;
    r.set |= CNN_RECIPE_EMA;
    assert_int_equal(cnn_net_set_recipe(net, &r), CNN_ERR_FORMAT);
    assert_non_null(strstr(cnn_ctx_last_error(ctx), "ema"));
    assert_int_equal(cnn_net_set_recipe(net, NULL), CNN_OK);
    assert_int_equal(cnn_net_get_recipe(net, &r), CNN_OK);
    assert_int_equal(r.set, 0);
    assert_int_equal(cnn_net_to_text(net, &out), CNN_OK);
    assert_null(strstr(out, "recipe"));
    cnn_free(ctx, out);
    cnn_net_free(net);
    /* no recipe */
    net = parse(ctx, BASE, CNN_OK, NULL);
    assert_int_equal(cnn_net_get_recipe(net, &r), CNN_OK);
    assert_int_equal(r.set, 0);
    assert_int_equal(r.line, 0);
    char buf[8] = "x";
    assert_int_equal(cnn_recipe_format(&r, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_errors(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    /* line 8 is the recipe (BASE has 7 lines); columns are 1-based */
    parse(ctx, BASE "recipe lr=0.1 lrr=3\n", CNN_ERR_FORMAT, "r.cnn:8:15: recipe: unknown key 'lrr'");
    parse(ctx, BASE "recipe lr=-1\n", CNN_ERR_FORMAT, "r.cnn:8:11: recipe: lr: -1 is out of range");
    parse(ctx, BASE "recipe lr=0\n", CNN_ERR_FORMAT, "r.cnn:8:11: recipe: lr: 0 is out of range (0, 1000]");
    parse(ctx, BASE "recipe lr=fast\n", CNN_ERR_FORMAT, "r.cnn:8:11: recipe: lr: expected a finite number, got 'fast'");
    parse(ctx, BASE "recipe  optimizer=rmsprop\n", CNN_ERR_FORMAT,
          "r.cnn:8:19: recipe: optimizer: expected one of sgd|adam|adamw, got 'rmsprop'");
    parse(ctx, BASE "recipe schedule=linear\n", CNN_ERR_FORMAT,
          "r.cnn:8:17: recipe: schedule: expected one of constant|step|cosine|onecycle");
    parse(ctx, BASE "recipe epochs=0\n", CNN_ERR_FORMAT, "r.cnn:8:15: recipe: epochs: 0 is out of range [1, 1000000]");
    parse(ctx, BASE "recipe batch=2.5\n", CNN_ERR_FORMAT, "r.cnn:8:14: recipe: batch: expected an integer");
    parse(ctx, BASE "recipe ema=1\n", CNN_ERR_FORMAT, "r.cnn:8:12: recipe: ema: 1 is out of range (0, 1)");
    parse(ctx, BASE "recipe val_split=0\n", CNN_ERR_FORMAT, "r.cnn:8:18: recipe: val_split: 0 is out of range (0, 1)");
    parse(ctx, BASE "recipe label_smoothing=1\n", CNN_ERR_FORMAT, "r.cnn:8:24: recipe: label_smoothing: 1 is out of range");
    parse(ctx, BASE "recipe clip_norm=0\n", CNN_ERR_FORMAT, "r.cnn:8:18: recipe: clip_norm: 0 is out of range");
    parse(ctx, BASE "recipe nesterov=maybe\n", CNN_ERR_FORMAT, "r.cnn:8:17: recipe: nesterov: expected one of");
    parse(ctx, BASE "recipe normalize=0.5\n", CNN_ERR_FORMAT, "r.cnn:8:18: recipe: normalize: expected MEAN,STD");
    parse(ctx, BASE "recipe normalize=0.5,0\n", CNN_ERR_FORMAT, "r.cnn:8:18: recipe: normalize: expected MEAN,STD");
    parse(ctx, BASE "recipe augment=\n", CNN_ERR_FORMAT, "r.cnn:8:16: recipe: augment: expected 1 to 255 characters");
    parse(ctx, BASE "recipe augment=crop=4,spin\n", CNN_ERR_FORMAT, "r.cnn:8:16: recipe: augment: ");
    parse(ctx, BASE "recipe lr=1 lr=2\n", CNN_ERR_FORMAT, "r.cnn:8:13: recipe: key 'lr' given twice");
    parse(ctx, BASE "recipe lr\n", CNN_ERR_FORMAT, "r.cnn:8:8: recipe: expected key=value, got 'lr'");
    parse(ctx, "recipe lr=1\n" BASE "\nrecipe epochs=2\n", CNN_ERR_FORMAT,
          "r.cnn:10:1: recipe: a second recipe line (the first is line 1)");
    parse(ctx, BASE "recipe optimizer=adam momentum=0.9\n", CNN_ERR_FORMAT,
          "r.cnn:8:32: recipe: momentum and nesterov apply only to optimizer=sgd");
    parse(ctx, BASE "recipe momentum=0 nesterov=1\n", CNN_ERR_FORMAT, "r.cnn:8:28: recipe: nesterov needs momentum");
    parse(ctx, BASE "recipe gamma=0.5\n", CNN_ERR_FORMAT, "r.cnn:8:14: recipe: step_epochs and gamma apply only to schedule=step");
    parse(ctx, BASE "recipe schedule=step\n", CNN_ERR_FORMAT, "r.cnn:8:17: recipe: schedule=step needs step_epochs=S");
    parse(ctx, BASE "recipe schedule=cosine div_factor=10\n", CNN_ERR_FORMAT,
          "r.cnn:8:35: recipe: div_factor and final_div_factor apply only to schedule=onecycle");
    /* a recipe alone is not a model */
    parse(ctx, "recipe lr=0.1\n", CNN_ERR_FORMAT, "r.cnn: no layers");
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- clipping */

/* a compiled training net with every gradient set from a seed (nonzero, mixed signs) */
static cnn_net *grad_net(cnn_ctx *ctx, uint64_t seed, double *norm2) {
    cnn_net *net = parse(ctx, BASE, CNN_OK, NULL);
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_TRAIN), CNN_OK);
    double s = 0;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
        if (!p.trainable) continue;
        th_fill_uniform(p.grad, p.count, seed + i, -1.5f, 2.0f);
        for (size_t k = 0; k < p.count; k++) s += (double)p.grad[k] * p.grad[k];
    }
    *norm2 = s;
    return net;
}

static void test_clip_norm(void **state) {
    (void)state;
    for (size_t threads = 1; threads <= 2; threads++) {
        cnn_ctx *ctx = new_ctx(threads);
        double s0;
        cnn_net *net = grad_net(ctx, 11, &s0), *ref = grad_net(ctx, 11, &s0);
        double before = 0, max_norm = 0.37 * sqrt(s0);
        assert_int_equal(cnn_net_clip_grad_norm(net, max_norm, &before), CNN_OK);
        assert_true(fabs(before - sqrt(s0)) <= 1e-12 * sqrt(s0));
        float coef = (float)(max_norm / sqrt(s0));
        double after = 0;
        for (size_t i = 0; i < cnn_net_num_params(net); i++) {
            cnn_param p, q;
            assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
            assert_int_equal(cnn_net_param_at(ref, i, &q), CNN_OK);
            if (!p.trainable) continue;
            for (size_t k = 0; k < p.count; k++) {
                assert_true(p.grad[k] == q.grad[k] * coef);
                after += (double)p.grad[k] * p.grad[k];
            }
        }
        assert_true(fabs(sqrt(after) - max_norm) <= 1e-6 * max_norm);
        /* under the limit: unchanged, bit for bit */
        double b2 = 0;
        assert_int_equal(cnn_net_clip_grad_norm(net, 10 * max_norm, &b2), CNN_OK);
        assert_true(fabs(b2 - sqrt(after)) <= 1e-12 * b2);
        for (size_t i = 0; i < cnn_net_num_params(net); i++) {
            cnn_param p, q;
            assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
            assert_int_equal(cnn_net_param_at(ref, i, &q), CNN_OK);
            if (p.trainable)
                for (size_t k = 0; k < p.count; k++) assert_true(p.grad[k] == q.grad[k] * coef);
        }
        /* bad arguments, non-finite gradients */
        assert_int_equal(cnn_net_clip_grad_norm(net, 0, NULL), CNN_ERR_INVALID_ARG);
        assert_int_equal(cnn_net_clip_grad_norm(net, NAN, NULL), CNN_ERR_INVALID_ARG);
        cnn_param p;
        assert_int_equal(cnn_net_param_at(net, 0, &p), CNN_OK);
        float keep = p.grad[1];
        p.grad[0] = INFINITY;
        assert_int_equal(cnn_net_clip_grad_norm(net, 1.0, NULL), CNN_ERR_NUMERIC);
        assert_true(p.grad[1] == keep);
        cnn_net *inf = parse(ctx, BASE, CNN_OK, NULL);
        assert_int_equal(cnn_net_compile(inf, 1, 0), CNN_OK);
        assert_int_equal(cnn_net_clip_grad_norm(inf, 1.0, NULL), CNN_ERR_MISUSE);
        cnn_net_free(inf);
        cnn_net_free(ref);
        cnn_net_free(net);
        cnn_ctx_free(ctx);
    }
}

/* ---------------------------------------------------------------- one-cycle */

/* PyTorch OneCycleLR.get_lr (anneal_strategy='cos', three_phase=False), written out */
static double torch_onecycle(double max_lr, double total, double pct_start, double div, double final_div, double step) {
    double initial = max_lr / div, min_lr = initial / final_div;
    double end1 = pct_start * total - 1, end2 = total - 1;
    double start = 0, a, b, end;
    if (step <= end1) {
        a = initial;
        b = max_lr;
        end = end1;
    } else {
        start = end1;
        a = max_lr;
        b = min_lr;
        end = end2;
    }
    double pct = (step - start) / (end - start);
    return b + (a - b) / 2.0 * (cos(M_PI * pct) + 1);
}

static void test_onecycle(void **state) {
    (void)state;
    const double total = 1000, max_lr = 0.4;
    const double steps[] = {0, 1, 17, 150, 298, 299, 300, 301, 555, 998, 999};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        /* default pct_start 0.3 (warmup 0) and an explicit warmup of 120 steps */
        double want = torch_onecycle(max_lr, total, 0.3, 25, 1e4, steps[i]);
        float got = cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, steps[i]);
        assert_true(fabs(got - want) <= 1e-6 * want + 1e-12);
        want = torch_onecycle(max_lr, total, 0.12, 10, 100, steps[i]);
        got = cnn_onecycle_lr(max_lr, total, 120, 10, 100, steps[i]);
        assert_true(fabs(got - want) <= 1e-6 * want + 1e-12);
    }
    /* the landmarks */
    assert_true(fabsf(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, 0) - (float)(max_lr / 25)) == 0);
    assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, 299) == (float)max_lr);
    assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, 999) == (float)(max_lr / 25 / 1e4));
    assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, 5000) == (float)(max_lr / 25 / 1e4));
    assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, -3) == cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, 0));
    /* rising, then falling */
    for (double s = 1; s < 299; s++)
        assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, s) >= cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, s - 1));
    for (double s = 300; s < 1000; s++)
        assert_true(cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, s) <= cnn_onecycle_lr(max_lr, total, 0, 25, 1e4, s - 1));
}

/* ---------------------------------------------------------------- label smoothing, AdamW */

static void test_label_smoothing(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    cnn_net *net = parse(ctx, "input c=7 h=1 w=1\nsoftmax_ce\n", CNN_OK, NULL);
    assert_int_equal(cnn_net_compile(net, 3, CNN_COMPILE_TRAIN), CNN_OK);
    float x[21];
    th_fill_uniform(x, 21, 5, -2.0f, 3.0f);
    const int32_t lab[3] = {4, 0, 6};
    const double eps = 0.15;
    assert_int_equal(cnn_net_set_label_smoothing(net, eps), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, 3, 1), CNN_OK);
    cnn_loss_stats ls;
    assert_int_equal(cnn_net_loss(net, lab, NULL, &ls), CNN_OK);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < 7; j++) mx = fmax(mx, x[i * 7 + j]);
        for (int j = 0; j < 7; j++) sum += exp(x[i * 7 + j] - mx);
        double lse = mx + log(sum);
        for (int j = 0; j < 7; j++) want -= ((j == lab[i] ? 1 - eps : 0) + eps / 7) * (x[i * 7 + j] - lse);
    }
    want /= 3;
    assert_true(fabs(ls.loss - want) <= 1e-6 * fabs(want));
    char *text = NULL;
    assert_int_equal(cnn_net_to_text(net, &text), CNN_OK);
    assert_non_null(strstr(text, "label_smoothing=0.15\n"));
    cnn_free(ctx, text);
    assert_int_equal(cnn_net_set_label_smoothing(net, 1.0), CNN_ERR_INVALID_ARG);
    cnn_net_free(net);
    net = parse(ctx, "input c=7 h=1 w=1\nmse\n", CNN_OK, NULL);
    assert_int_equal(cnn_net_set_label_smoothing(net, 0.1), CNN_ERR_MISUSE);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
}

static void test_adamw_decoupled(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    for (int k = 0; k < 2; k++) {
        cnn_net *net = parse(ctx, "input c=3 h=1 w=1\ndense out=2\n", CNN_OK, NULL);
        assert_int_equal(cnn_net_compile(net, 1, CNN_COMPILE_TRAIN), CNN_OK);
        cnn_param w;
        assert_int_equal(cnn_net_param_at(net, 0, &w), CNN_OK);
        th_fill_uniform(w.data, w.count, 9, -1.0f, 1.0f);
        float w0[6];
        memcpy(w0, w.data, sizeof w0);
        memset(w.grad, 0, w.count * sizeof(float));
        cnn_param b;
        assert_int_equal(cnn_net_param_at(net, 1, &b), CNN_OK);
        memset(b.grad, 0, b.count * sizeof(float));
        cnn_optimizer_options oo = cnn_optimizer_options_default(k ? CNN_OPT_ADAM : CNN_OPT_ADAMW);
        oo.weight_decay = 0.1f;
        cnn_optimizer *opt = NULL;
        assert_int_equal(cnn_optimizer_create(net, &oo, &opt), CNN_OK);
        assert_int_equal(cnn_optimizer_step(opt, 0.01f), CNN_OK);
        for (int i = 0; i < 6; i++) {
            float dec = w0[i] * (float)(1.0 - 0.01 * 0.1);
            if (!k) /* AdamW: the decay alone (the Adam part of a zero gradient is 0) */
                assert_true(w.data[i] == dec);
            else /* Adam: the L2 term goes through the moments: a step of about lr against the sign */
                assert_true(fabs(w.data[i] - (w0[i] - 0.01 * (w0[i] > 0 ? 1 : -1))) < 1e-5);
        }
        cnn_optimizer_free(opt);
        cnn_net_free(net);
    }
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- EMA */

static void all_values(cnn_net *net, float *out, size_t *n) {
    size_t m = 0;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
        if (out) memcpy(out + m, p.data, p.count * sizeof(float));
        m += p.count;
    }
    *n = m;
}

static void set_values(cnn_net *net, uint64_t seed) {
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param p;
        assert_int_equal(cnn_net_param_at(net, i, &p), CNN_OK);
        th_fill_uniform(p.data, p.count, seed * 131 + i, 0.25f, 2.0f); /* > 0: also valid running variances */
    }
}

static void test_ema(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(2);
    cnn_net *net = parse(ctx, BASE, CNN_OK, NULL);
    assert_int_equal(cnn_net_compile(net, 2, CNN_COMPILE_TRAIN), CNN_OK);
    size_t n;
    all_values(net, NULL, &n);
    float *v = malloc(n * sizeof *v), *live = malloc(n * sizeof *live);
    double *want = malloc(n * sizeof *want);
    const double d = 0.5; /* the warmup (1 + t) / (10 + t) is below it for t < 8, then d */
    const int K = 20;
    set_values(net, 100);
    all_values(net, v, &n);
    for (size_t i = 0; i < n; i++) want[i] = v[i];
    cnn_ema *ema = NULL;
    assert_int_equal(cnn_ema_create(net, 1.0, &ema), CNN_ERR_INVALID_ARG);
    assert_null(ema);
    assert_int_equal(cnn_ema_create(net, d, &ema), CNN_OK);
    for (int k = 1; k <= K; k++) { /* a known sequence of weights (and running statistics) */
        set_values(net, 100 + (uint64_t)k);
        all_values(net, v, &n);
        const double w = (double)k / (9.0 + k), dk = w < d ? w : d; /* update t = k - 1 */
        for (size_t i = 0; i < n; i++) want[i] = dk * want[i] + (1 - dk) * v[i];
        assert_int_equal(cnn_ema_update(ema), CNN_OK);
    }
    assert_int_equal(cnn_ema_updates(ema), K);
    all_values(net, live, &n);
    assert_int_equal(cnn_ema_swap(ema), CNN_OK);
    all_values(net, v, &n);
    size_t worst = 0;
    double err = th_rel_err(v, want, n, 1e-3, &worst);
    if (err > 2e-6) fail_msg("EMA vs closed form: rel err %g at %zu", err, worst);
    /* swap back: the live values bit for bit */
    assert_int_equal(cnn_ema_swap(ema), CNN_OK);
    all_values(net, v, &n);
    assert_memory_equal(v, live, n * sizeof *v);

    /* checkpoint with the EMA and a best accuracy: read back bit for bit */
    char path[] = "/tmp/test_recipe_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cnn_checkpoint_save_ex(net, NULL, ema, NULL, 0.8125, path), CNN_OK);
    float *pa, *ba, *pb, *bb;
    size_t npa, nba, npb, nbb;
    cnn_ema_state(ema, &pa, &npa, &ba, &nba);
    cnn_ema *ema2 = NULL;
    set_values(net, 999);
    assert_int_equal(cnn_ema_create(net, d, &ema2), CNN_OK);
    assert_int_equal(cnn_checkpoint_load_ema(ema2, path), CNN_OK);
    cnn_ema_state(ema2, &pb, &npb, &bb, &nbb);
    assert_int_equal(npa, npb);
    assert_int_equal(nba, nbb);
    assert_memory_equal(pa, pb, npa * sizeof(float));
    assert_memory_equal(ba, bb, nba * sizeof(float));
    assert_int_equal(cnn_ema_updates(ema2), K);
    double best = 0;
    assert_int_equal(cnn_checkpoint_read_best(ctx, path, &best), CNN_OK);
    assert_true(best == 0.8125);
    /* a weights loader ignores the EMA tensors; a checkpoint without EMA says so */
    assert_int_equal(cnn_net_load_weights(net, path), CNN_OK);
    all_values(net, v, &n);
    assert_memory_equal(v, live, n * sizeof *v);
    assert_int_equal(cnn_checkpoint_save(net, NULL, NULL, path), CNN_OK);
    assert_int_equal(cnn_checkpoint_load_ema(ema2, path), CNN_ERR_FORMAT);
    assert_int_equal(cnn_checkpoint_read_best(ctx, path, &best), CNN_OK);
    assert_true(isnan(best));
    /* an EMA of another net */
    cnn_net *other = parse(ctx, "input c=3 h=1 w=1\ndense out=2\nsoftmax_ce\n", CNN_OK, NULL);
    assert_int_equal(cnn_net_compile(other, 1, CNN_COMPILE_TRAIN), CNN_OK);
    cnn_ema *ema3 = NULL;
    assert_int_equal(cnn_ema_create(other, d, &ema3), CNN_OK);
    assert_int_equal(cnn_checkpoint_save_ex(net, NULL, ema, NULL, NAN, path), CNN_OK);
    assert_int_equal(cnn_checkpoint_load_ema(ema3, path), CNN_ERR_SHAPE);
    unlink(path);
    cnn_ema_free(ema3);
    cnn_ema_free(ema2);
    cnn_ema_free(ema);
    cnn_ema_free(NULL);
    cnn_net_free(other);
    cnn_net_free(net);
    free(v);
    free(live);
    free(want);
    cnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------- validation split */

static void test_val_split(void **state) {
    (void)state;
    cnn_ctx *ctx = new_ctx(1);
    const size_t n = 1009;
    size_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    unsigned char *seen = calloc(n, 1);
    size_t na, nb, nc;
    assert_int_equal(cnn_val_split(ctx, n, 0.1, 42, a, &na), CNN_OK);
    assert_int_equal(na, 101); /* round(100.9) */
    for (size_t i = 0; i < n; i++) {
        assert_true(a[i] < n);
        assert_false(seen[a[i]]); /* disjoint and covering: a permutation */
        seen[a[i]] = 1;
        if (i && i != na) assert_true(a[i] > a[i - 1]); /* each part sorted */
    }
    assert_int_equal(cnn_val_split(ctx, n, 0.1, 42, b, &nb), CNN_OK);
    assert_int_equal(nb, na);
    assert_memory_equal(a, b, n * sizeof *a);
    assert_int_equal(cnn_val_split(ctx, n, 0.1, 43, c, &nc), CNN_OK);
    assert_int_equal(nc, na);
    assert_true(memcmp(a, c, na * sizeof *a) != 0);
    /* the validation part is spread over the set, not a prefix */
    assert_true(a[na - 1] > n / 2 && a[0] < n / 2);
    assert_int_equal(cnn_val_split(ctx, n, 0.37, 1, c, &nc), CNN_OK);
    assert_int_equal(nc, 373);
    assert_int_equal(cnn_val_split(ctx, 5, 0.01, 1, c, &nc), CNN_OK);
    assert_int_equal(nc, 1);
    assert_int_equal(cnn_val_split(ctx, 5, 0.99, 1, c, &nc), CNN_OK);
    assert_int_equal(nc, 4);
    assert_int_equal(cnn_val_split(ctx, 1, 0.5, 1, c, &nc), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_val_split(ctx, n, 0, 1, c, &nc), CNN_ERR_INVALID_ARG);
    assert_int_equal(cnn_val_split(ctx, n, 1, 1, c, &nc), CNN_ERR_INVALID_ARG);
    free(a);
    free(b);
    free(c);
    free(seen);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),     cmocka_unit_test(test_errors),          cmocka_unit_test(test_clip_norm),
        cmocka_unit_test(test_onecycle),      cmocka_unit_test(test_label_smoothing), cmocka_unit_test(test_adamw_decoupled),
        cmocka_unit_test(test_ema),           cmocka_unit_test(test_val_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
