/* fuzz_safetensors.c — libFuzzer target: safetensors weights files and checkpoints (src/io/safetensors.c,
 * src/io/checkpoint.c). The input is the file. It is loaded into a fixed small net that has every kind of
 * tensor (conv weight and bias, batchnorm parameters and running buffers, dense), then read as a checkpoint
 * (embedded model text, training state, optimizer state). Seeds: fuzz/corpus/safetensors/. */
#include "fuzz_common.h"

static const char MODEL[] =
    "input c=2 h=5 w=5\n"
    "conv2d name=conv k=3 kh=3 kw=3 pad=1\n"
    "batchnorm name=bn\n"
    "relu\n"
    "flatten\n"
    "dense name=fc out=4\n"
    "softmax_ce\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cnn_ctx *ctx = fuzz_ctx();
    static cnn_net *net;
    static cnn_optimizer *opt;
    if (!net) {
        if (cnn_net_parse(ctx, MODEL, sizeof MODEL - 1, "fuzz.cnn", &net) != CNN_OK) abort();
        if (cnn_net_compile(net, 1, CNN_COMPILE_TRAIN) != CNN_OK) abort();
        cnn_optimizer_options oo = cnn_optimizer_options_default(CNN_OPT_ADAM);
        if (cnn_optimizer_create(net, &oo, &opt) != CNN_OK) abort();
    }
    char path[64];
    int fd = fuzz_memfile(data, size, path);

    fuzz_check_error(ctx, cnn_net_load_weights(net, path));
    fuzz_check_error(ctx, cnn_checkpoint_load_optimizer(opt, path));

    char *text = NULL;
    cnn_status st = cnn_checkpoint_read_model(ctx, path, &text);
    fuzz_check_error(ctx, st);
    if (st == CNN_OK) cnn_free(ctx, text);

    cnn_train_state ts;
    memset(&ts, 0, sizeof ts);
    st = cnn_checkpoint_read_state(ctx, path, &ts);
    fuzz_check_error(ctx, st);
    if (st == CNN_OK) cnn_free(ctx, (void *)ts.args);

    cnn_net *other = NULL;
    st = cnn_checkpoint_load(ctx, path, &other);
    fuzz_check_error(ctx, st);
    if (st == CNN_OK) cnn_net_free(other);

    close(fd);
    return 0;
}
