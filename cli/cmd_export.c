/* cmd_export.c — placeholder, replaced below */
#include "cli.h"
static int run_export(int argc, char **argv) { (void)argc; (void)argv; return cli_error("export: not yet"); }
const cli_command cli_cmd_export = {.name = "export", .summary = "write a trained network as an ONNX model", .help = "", .run = run_export};
