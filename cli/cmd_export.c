/* cmd_export.c — `cnn export WEIGHTS.safetensors --model MODEL.cnn -o model.onnx`: write a trained network
 * as a standard ONNX model (opset 13; docs/onnx.md). */
#include "cli.h"

#include <string.h>

static const char export_help[] =
    "usage: cnn export WEIGHTS.safetensors --model MODEL.cnn -o model.onnx\n"
    "\n"
    "Write the network of MODEL.cnn with the weights of WEIGHTS (as written by cnn train --out) as an ONNX model\n"
    "(opset 13): input 'input' [N, c, h, w], output 'output'; a softmax_ce loss becomes its Softmax.\n"
    "\n"
    "options:\n"
    "  --model MODEL.cnn     the model text (required)\n"
    "  -o, --output FILE     the ONNX file to write (required)\n";

static int run_export(int argc, char **argv) {
    const char *model = NULL, *output = NULL;
    const cli_option opts[] = {
        {.name = "model", .kind = CLI_OPT_STRING, .out = &model},
        {.name = "output", .kind = CLI_OPT_STRING, .out = &output},
    };
    /* -o is --output */
    char *args[256];
    if (argc > 256) return cli_usage_error("export: too many arguments");
    for (int i = 0; i < argc; i++) args[i] = strcmp(argv[i], "-o") == 0 ? (char *)"--output" : argv[i];
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("export", argc, args, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(export_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1) return cli_usage_error("export: expected a weights file (usage: cnn export WEIGHTS --model MODEL.cnn -o model.onnx)");
    if (!model) return cli_usage_error("export: --model MODEL.cnn is required");
    if (!output) return cli_usage_error("export: -o FILE is required");
    if ((rc = cli_check_file(pos[0], "weights file")) != 0 || (rc = cli_check_file(model, "model file")) != 0 ||
        (rc = cli_check_output(output, "output file")) != 0)
        return rc;
    if (!cnn_onnx_available()) return cli_error("export: this build has no ONNX support (needs protobuf-c and onnx.proto)");
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    if ((rc = cli_ctx_create(1, &ctx)) != 0) return rc;
    cnn_status st;
    if ((st = cnn_net_load(ctx, model, &net)) != CNN_OK || (st = cnn_net_compile(net, 1, 0)) != CNN_OK ||
        (st = cnn_net_load_weights(net, pos[0])) != CNN_OK || (st = cnn_net_export_onnx(net, output)) != CNN_OK) {
        rc = cli_lib_error(ctx, st, NULL);
    } else {
        fprintf(stderr, "cnn: wrote %s (%zu layers, %zu parameters)\n", output, cnn_net_num_layers(net),
                cnn_net_param_count(net));
        rc = CLI_EXIT_OK;
    }
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    return rc;
}

const cli_command cli_cmd_export = {
    .name = "export",
    .summary = "write a trained network as an ONNX model",
    .help = export_help,
    .run = run_export,
};
