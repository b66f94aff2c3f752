/* fuzz_onnx.c — libFuzzer target: ONNX import (src/io/onnx_import.c, onnx_tensor.c and the protobuf-c
 * decoder generated from onnx.proto). The input is the model file, imported from memory; a model that
 * imports is also printed as model text and its layers listed. Seeds: fuzz/corpus/onnx/. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cnn_ctx *ctx = fuzz_ctx();
    cnn_net *net = NULL;
    cnn_status st = cnn_net_import_onnx_memory(ctx, data, size, "fuzz.onnx", NULL, &net);
    fuzz_check_error(ctx, st);
    if (st != CNN_OK) return 0;
    char *text = NULL;
    if (cnn_net_to_text(net, &text) == CNN_OK) cnn_free(ctx, text);
    size_t n = cnn_net_num_layers(net);
    for (size_t i = 0; i < n; i++) {
        cnn_layer_info li;
        (void)cnn_net_layer_info(net, i, &li);
    }
    cnn_net_free(net);
    return 0;
}
