/* cmd_run.c — `cnn run MODEL.onnx --input X.pb [--output Y.pb] [--threads T]`: import an ONNX model, run it
 * on a TensorProto input and write (or print) the output TensorProto. */
#include "cli.h"

#include <string.h>

static const char run_help[] =
    "usage: cnn run MODEL.onnx --input X.pb [--output Y.pb] [--threads T]\n"
    "\n"
    "Import an ONNX model onto the library's layers and run it (inference) on one input tensor (a serialized\n"
    "ONNX TensorProto [N, ...], float32 or convertible). With --output the result is written as a FLOAT\n"
    "TensorProto named as the graph's output; otherwise its dims and values are printed, one row per line.\n"
    "\n"
    "options:\n"
    "  --input X.pb    input tensor (required)\n"
    "  --output Y.pb   write the output tensor here\n"
    "  --threads T     threads (default: all online CPUs)\n";

static int run_run(int argc, char **argv) {
    const char *input = NULL, *output = NULL;
    size_t threads = 0;
    const cli_option opts[] = {
        {.name = "input", .kind = CLI_OPT_STRING, .out = &input},
        {.name = "output", .kind = CLI_OPT_STRING, .out = &output},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("run", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(run_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1) return cli_usage_error("run: expected a model file (usage: cnn run MODEL.onnx --input X.pb)");
    if (!input) return cli_usage_error("run: --input X.pb is required");
    if ((rc = cli_check_file(pos[0], "model file")) != 0 || (rc = cli_check_file(input, "input file")) != 0) return rc;
    if (output && (rc = cli_check_output(output, "output file")) != 0) return rc;
    if (!cnn_onnx_available()) return cli_error("run: this build has no ONNX support (needs protobuf-c and onnx.proto)");
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_onnx_tensor x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    if ((rc = cli_ctx_create(threads, &ctx)) != 0) return rc;
    cnn_status st = cnn_onnx_tensor_read(ctx, input, &x);
    if (st != CNN_OK) {
        rc = cli_lib_error(ctx, st, NULL);
        goto done;
    }
    cnn_onnx_io io;
    cnn_onnx_import_options opt = {.input = &x, .io = &io};
    if ((st = cnn_net_import_onnx_ex(ctx, pos[0], &opt, &net)) != CNN_OK) {
        rc = cli_lib_error(ctx, st, NULL);
        goto done;
    }
    size_t n = x.ndim ? (size_t)x.dims[0] : 1;
    if (n == 0) {
        rc = cli_error("run: %s: the input has batch 0", input);
        goto done;
    }
    if ((st = cnn_net_forward(net, x.data, n, 0)) != CNN_OK) {
        rc = cli_lib_error(ctx, st, NULL);
        goto done;
    }
    size_t got;
    const float *out = cnn_net_output(net, &got);
    cnn_shape os = cnn_net_output_shape(net);
    y.ndim = io.output_ndim;
    memcpy(y.dims, io.output_dims, sizeof y.dims);
    y.dims[0] = (int64_t)n;
    y.count = n * os.c * os.h * os.w;
    y.data = (float *)out;
    snprintf(y.name, sizeof y.name, "%s", io.output_name);
    if (output) {
        if ((st = cnn_onnx_tensor_write(ctx, output, &y)) != CNN_OK) {
            rc = cli_lib_error(ctx, st, NULL);
            goto done;
        }
        fprintf(stderr, "cnn: wrote '%s' to %s\n", io.output_name, output);
    } else {
        printf("%s [", io.output_name);
        for (size_t i = 0; i < y.ndim; i++) printf("%s%lld", i ? ", " : "", (long long)y.dims[i]);
        printf("]\n");
        size_t row = y.ndim ? (size_t)y.dims[y.ndim - 1] : 1;
        if (!row) row = 1;
        for (size_t i = 0; i < y.count; i++) printf("%.9g%c", (double)out[i], (i + 1) % row ? ' ' : '\n');
    }
    rc = CLI_EXIT_OK;
done:
    cnn_net_free(net);
    cnn_onnx_tensor_release(ctx, &x);
    cnn_ctx_free(ctx);
    return rc;
}

const cli_command cli_cmd_run = {
    .name = "run",
    .summary = "run an ONNX model on a TensorProto input",
    .help = run_help,
    .run = run_run,
};
