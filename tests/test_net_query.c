/* test_net_query.c — cnn_net_layer_output and CNN_COMPILE_KEEP_ACTIVATIONS: with the flag an inference
 * forward keeps every layer's output, and those outputs equal the ones a plain (unfused) training plan
 * keeps; relu outputs are max(0, input) even where a relu would be fused into its maxpool; without the flag
 * only the last layer is reported; in training a fused relu reports NULL. */
#include "harness.h"
#include "core/net_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *MODEL = "input c=2 h=9 w=7\n"
                           "conv2d name=c1 k=3 kh=3 kw=3 pad=1\n"
                           "relu name=r1\n"
                           "maxpool2d name=p1 size=2 stride=2\n"
                           "conv2d name=c2 k=5 kh=3 kw=3\n"
                           "relu name=r2\n"
                           "flatten name=f\n"
                           "dense name=fc out=4\n"
                           "softmax_ce\n";

static cnn_net *make(cnn_ctx *ctx) {
    cnn_net *net = NULL;
    if (cnn_net_parse(ctx, MODEL, strlen(MODEL), "q.cnn", &net) != CNN_OK) fail_msg("%s", cnn_ctx_last_error(ctx));
    return net;
}

static void fill(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static void test_keep_activations(void **state) {
    (void)state;
    cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_create(&ctx, NULL), CNN_OK);
    cnn_net *keep = make(ctx), *ref = make(ctx), *plain = make(ctx);
    const size_t N = 3, per = 2 * 9 * 7;
    float *x = malloc(N * per * sizeof *x);
    fill(x, N * per, 7);

    /* reference: the plain training plan (no aliases, no fusion) keeps every output */
    ref->no_fuse = 1;
    assert_int_equal(cnn_net_compile(ref, N, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_compile(keep, N, CNN_COMPILE_KEEP_ACTIVATIONS), CNN_OK);
    assert_int_equal(cnn_net_compile(plain, N, 0), CNN_OK);
    size_t b_keep = 0, b_plain = 0;
    assert_int_equal(cnn_net_activation_bytes(keep, N, CNN_COMPILE_KEEP_ACTIVATIONS, &b_keep), CNN_OK);
    assert_int_equal(cnn_net_activation_bytes(plain, N, 0, &b_plain), CNN_OK);
    assert_true(b_keep > b_plain);

    cnn_shape s;
    assert_null(cnn_net_layer_output(keep, 1, &s)); /* no forward yet */
    assert_int_equal(s.c, 0);
    assert_int_equal(cnn_net_forward(ref, x, N, 1), CNN_OK);
    assert_int_equal(cnn_net_forward(keep, x, N, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(plain, x, N, 0), CNN_OK);
    size_t L = cnn_net_num_layers(keep);
    for (size_t i = 0; i < L; i++) {
        cnn_shape sk, sr;
        const float *yk = cnn_net_layer_output(keep, i, &sk);
        const float *yr = cnn_net_layer_output(ref, i, &sr);
        assert_non_null(yk);
        assert_non_null(yr);
        assert_int_equal(sk.c, sr.c);
        assert_int_equal(sk.h, sr.h);
        assert_int_equal(sk.w, sr.w);
        size_t cnt = N * sk.c * sk.h * sk.w;
        for (size_t j = 0; j < cnt; j++)
            if (memcmp(&yk[j], &yr[j], sizeof(float)) != 0)
                fail_msg("layer %zu element %zu: keep %g, training plan %g", i, j, yk[j], yr[j]);
        if (i != L - 1) assert_null(cnn_net_layer_output(plain, i, NULL));
    }
    /* the relu before the maxpool holds relu values (not its input's) */
    cnn_shape sc, srl;
    const float *c1 = cnn_net_layer_output(keep, cnn_net_layer_find(keep, "c1"), &sc);
    const float *r1 = cnn_net_layer_output(keep, cnn_net_layer_find(keep, "r1"), &srl);
    assert_int_equal(sc.c, 3);
    assert_int_equal(sc.h, 9);
    assert_int_equal(sc.w, 7);
    size_t neg = 0;
    for (size_t j = 0; j < N * 3 * 9 * 7; j++) {
        assert_true(r1[j] == (c1[j] > 0 ? c1[j] : 0.0f));
        neg += c1[j] < 0;
    }
    assert_true(neg > 0);
    assert_non_null(cnn_net_layer_output(plain, L - 1, NULL));
    assert_true(cnn_net_layer_find(keep, "nope") == SIZE_MAX);
    assert_null(cnn_net_layer_output(keep, L, &s));

    /* the fused training plan: the relu fused into p1 is not kept */
    cnn_net *fused = make(ctx);
    assert_int_equal(cnn_net_compile(fused, N, CNN_COMPILE_TRAIN), CNN_OK);
    assert_int_equal(cnn_net_forward(fused, x, N, 1), CNN_OK);
    size_t r1i = cnn_net_layer_find(fused, "r1");
    if (fused->rt[r1i].skip) assert_null(cnn_net_layer_output(fused, r1i, NULL));
    assert_non_null(cnn_net_layer_output(fused, cnn_net_layer_find(fused, "f"), NULL));

    /* recompiling without the flag drops it again */
    assert_int_equal(cnn_net_compile(keep, N, 0), CNN_OK);
    assert_int_equal(cnn_net_forward(keep, x, N, 0), CNN_OK);
    assert_null(cnn_net_layer_output(keep, 1, NULL));
    assert_int_equal(cnn_net_compile(keep, N, 1u << 7), CNN_ERR_INVALID_ARG);

    free(x);
    cnn_net_free(fused);
    cnn_net_free(plain);
    cnn_net_free(ref);
    cnn_net_free(keep);
    cnn_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keep_activations)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
