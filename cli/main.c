/* main.c — the `cnn` command-line tool: a table of subcommands, `cnn --help`, `cnn --version` and
 * `cnn help CMD`. Each subcommand lives in cmd_<name>.c and uses only the public API (cnn.h). */
#include "cli.h"

#include <string.h>

/* ONNX commands (cmd_run.c, cmd_onnx_test.c, cmd_export.c) */
extern const cli_command cli_cmd_run, cli_cmd_onnx_test, cli_cmd_export;
/* Visualisation commands (cmd_predict.c, cmd_viz.c, cmd_report.c, cmd_explain.c; docs/viz.md) */
extern const cli_command cli_cmd_predict, cli_cmd_viz, cli_cmd_report, cli_cmd_explain;

static const cli_command *const commands[] = {
    &cli_cmd_train,
    &cli_cmd_eval,
    &cli_cmd_info,
    &cli_cmd_bench,
    &cli_cmd_run,
    &cli_cmd_onnx_test,
    &cli_cmd_export,
    &cli_cmd_predict,
    &cli_cmd_viz,
    &cli_cmd_report,
    &cli_cmd_explain,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static void print_usage(FILE *f) {
    fprintf(f,
            "usage: cnn <command> [arguments]\n"
            "       cnn help <command>     help for one command\n"
            "       cnn --version          print the version\n"
            "\n"
            "Convolutional neural networks in C: train, evaluate, inspect and benchmark models written in model\n"
            "text (.cnn files, one layer per line).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\nErrors are one line 'cnn: <message>' on stderr; exit status 1 on failure, 2 on usage errors.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        char names[256] = "";
        for (size_t i = 0; i < N_COMMANDS; i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", commands[i]->name);
        }
        return cli_usage_error("missing command: usage: cnn <command> [arguments]; commands: %s (see 'cnn --help')",
                               names);
    }
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
        printf("cnn %s\n", cnn_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(a, "help") == 0) {
        if (argc == 2) {
            print_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (argc > 3)
            return cli_usage_error("help: expected one command name, got %d arguments", argc - 2);
        const cli_command *c = find_command(argv[2]);
        if (!c)
            return cli_usage_error("help: unknown command '%s' (see 'cnn --help')", argv[2]);
        fputs(c->help, stdout);
        return CLI_EXIT_OK;
    }
    if (a[0] == '-')
        return cli_usage_error("unknown option '%s' (see 'cnn --help')", a);
    const cli_command *c = find_command(a);
    if (!c)
        return cli_usage_error("unknown command '%s' (see 'cnn --help')", a);
    return c->run(argc - 1, argv + 1);
}
