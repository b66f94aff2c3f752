/* onnx_export.c — placeholder replaced below */
#include "onnx_internal.h"
cnn_status cnn_net_export_onnx(cnn_net *net, const char *path) {
    (void)path;
    return cnn_error(net ? cnn_net_ctx(net) : NULL, CNN_ERR_UNSUPPORTED, "ONNX export: not yet");
}
