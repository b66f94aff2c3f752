/* harness.h — shared test support: build a small net from model text, run it on random data, and check
 * its forward against a float64 reference and its backward (input and parameter gradients) against
 * central finite differences of that reference, also in float64.
 *
 * Use with cmocka: failures call fail_msg() with the worst element, so a test cannot pass silently. */
#ifndef CNN_TEST_HARNESS_H
#define CNN_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cnn.h"

typedef struct th_net {
    cnn_ctx *ctx;
    cnn_net *net;
    size_t n;                 /* batch */
    cnn_shape in, out;        /* per-sample shapes */
    size_t in_count, out_count; /* per-sample element counts */
    float *x;                 /* n * in_count inputs, uniform in [-1, 1] (seeded) */
} th_net;

/* Parse `model` (starts with an input line), compile for training with input gradients for batch n, init
 * the parameters from `seed` (PyTorch default init), then perturb every tensor, buffers included, with
 * uniform noise so nothing is a trivial constant (running_var stays positive), and fill x. Fails the test
 * on any error. threads: 0 = default. */
void th_build(th_net *t, const char *model, size_t n, uint64_t seed, size_t threads);
void th_free(th_net *t);

/* Expect parsing/compiling `model` to fail with status `want`; the message must contain `needle` (or
 * needle NULL). */
void th_expect_error(const char *model, cnn_status want, const char *needle);

/* Reference: y[n * out_count] from x[n * in_count] and the net's tensors in float64, in the order of
 * cnn_net_param_at (params[i] has cnn_param_at(i).count values). training says which mode is checked. */
typedef void (*th_ref_fn)(void *user, size_t n, const double *x, const double *const *params, double *y,
                          int training);

typedef struct th_tolerance {
    double forward;   /* max |got - want| / max(max|want|, 1) over the output */
    double grad;      /* max |got - fd| / max(max|fd|, 1e-2) over each gradient */
    double fd_step;   /* central-difference step (in float64); default 1e-6 when 0 */
    size_t fd_points; /* check at most this many elements per tensor, chosen at random; 0 = all */
} th_tolerance;

/* Forward (training or not) against ref; then a random dy, backward, and dx plus every trainable
 * gradient against central differences of sum(dy * ref(x, params)). Skips gradients when !training
 * (forward check only). Fails the test with the worst element on mismatch. */
void th_check(th_net *t, th_ref_fn ref, void *user, int training, th_tolerance tol);

/* Build `model` twice (th_build, same seed) on 1 and on `threads` threads; forward and a random-dy backward
 * on both must give bit-identical outputs, input gradients and trainable gradients (and the same
 * parameters). */
void th_check_threads_bitwise(const char *model, size_t n, size_t threads);

/* Random helpers (deterministic from seed). */
void th_fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi);
/* Max of |a - b| / max(max|b|, floor). */
double th_rel_err(const float *a, const double *b, size_t n, double floor, size_t *worst);

#endif
