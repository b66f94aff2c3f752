/* cmd_report.c — `cnn report WEIGHTS|CHECKPOINT [--model MODEL.cnn] --data DIR -o DIR [--log FILE]`: the training
 * report (report.c) after the fact, for trained weights: confusion matrix, misclassified gallery, filters
 * and layers from a pass over the test split; curves from the --log file of the training run, if given.
 *
 * Departure from issue 6 ("cnn report CHECKPOINT"): checkpoints do not exist yet, so it takes a weights
 * file plus the model text; the curves come from `cnn train --log FILE` (one JSON object per epoch). */
#include "cli.h"
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char report_help[] =
    "usage: cnn report WEIGHTS|CHECKPOINT [--model MODEL.cnn] --data DIR -o OUTDIR [--log FILE]\n"
    "\n"
    "Write the training report for trained weights (from cnn train --out): OUTDIR/index.html, one\n"
    "self-contained page to open in a browser (confusion matrix of the test split with class names, the most\n"
    "confidently misclassified test images, the first conv layer's filters, the layers with parameters and\n"
    "FLOPs, the settings, and with --log the loss and accuracy curves) and OUTDIR/metrics.csv.\n"
    "\n"
    "options:\n"
    "  --model FILE          the model text the weights belong to (default: the model text inside\n"
    "                        WEIGHTS, which a checkpoint and every --out file of cnn train hold)\n"
    "  --data DIR            IDX dataset folder; its test split is evaluated (required)\n"
    "  -o, --output DIR      the report folder (created if missing) (required)\n"
    "  --log FILE            the --log file of the training run: curves and the per-epoch table\n"
    "  --batch B             evaluation batch size (default 256)\n"
    "  --normalize MEAN,STD  the normalisation the model was trained with, if any\n"
    "  --threads T           threads (default: all online CPUs)\n";

/* a number after "key": in a JSON line; NaN when absent or null */
static double field(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NAN;
    p += strlen(pat);
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}

static int read_log(const char *path, cli_epoch_metrics **out, size_t *n) {
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return cli_error("--log '%s': cannot open", path);
    char line[4096];
    size_t cap = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != '{') continue;
        double ep = field(line, "epoch");
        if (!(ep >= 1)) {
            rc = cli_error("--log '%s': line %zu has no \"epoch\" (not a cnn train --log file?)", path, *n + 1);
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            cli_epoch_metrics *m = realloc(*out, cap * sizeof *m);
            if (!m) {
                rc = cli_error("out of memory");
                break;
            }
            *out = m;
        }
        cli_epoch_metrics *m = &(*out)[(*n)++];
        memset(m, 0, sizeof *m);
        m->epoch = (size_t)ep;
        m->steps = (uint64_t)field(line, "steps");
        m->train_loss = field(line, "train_loss");
        m->train_acc = field(line, "train_acc");
        m->test_loss = field(line, "test_loss");
        m->test_acc = field(line, "test_acc");
        m->seconds = field(line, "seconds");
        m->images_per_second = field(line, "images_per_second");
        m->lr = field(line, "lr");
        m->x = (double)m->epoch;
    }
    fclose(f);
    if (!rc && *n == 0) rc = cli_error("--log '%s': no epoch records", path);
    return rc;
}

static int run_report(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *output = NULL, *log_path = NULL, *normalize = NULL;
    size_t batch = 256, threads = 0;
    const cli_option opts[] = {
        {.name = "model", .kind = CLI_OPT_STRING, .out = &model},
        {.name = "data", .kind = CLI_OPT_STRING, .out = &data},
        {.name = "output", .kind = CLI_OPT_STRING, .out = &output},
        {.name = "log", .kind = CLI_OPT_STRING, .out = &log_path},
        {.name = "batch", .kind = CLI_OPT_SIZE, .out = &batch, .umin = 1, .umax = 65536},
        {.name = "normalize", .kind = CLI_OPT_STRING, .out = &normalize},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
    };
    char **av = cli_short_output_alias(argc, argv);
    if (!av) return cli_usage_error("report: too many arguments");
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("report", argc, av, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(report_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1) return cli_usage_error("report: expected a weights file (see 'cnn help report')");
    const char *model_file = model; /* NULL: the model text inside the weights file / checkpoint */
    if (!model) model = pos[0];
    if (!data) return cli_usage_error("report: --data DIR is required (its test split is evaluated)");
    if (!output) return cli_usage_error("report: -o OUTDIR is required");
    double mean = 0, std = 1;
    if (normalize && (rc = cli_parse_normalize("report", normalize, &mean, &std)) != 0) return rc;
    if ((rc = cli_check_data(data)) != 0) return rc;
    if (log_path && (rc = cli_check_file(log_path, "--log file")) != 0) return rc;

    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_dataset *test = NULL;
    cli_epoch_metrics *hist = NULL;
    char **file_names = NULL;
    const char **data_names = NULL;
    size_t n_hist = 0;
    rc = CLI_EXIT_FAIL;
    if (log_path && read_log(log_path, &hist, &n_hist) != 0) goto cleanup;
    if (cli_model_open(model_file, pos[0], batch, 0, threads, &ctx, &net) != 0) goto cleanup;
    if (!cnn_net_has_loss(net)) {
        cli_error("model '%s' has no loss layer: the report needs class probabilities (softmax_ce)", model);
        goto cleanup;
    }
    if (cli_load_split_for(ctx, cnn_net_input_shape(net), data, "test", NULL, 0, &test) != 0) goto cleanup;
    if (normalize && cli_apply_normalize(test, mean, std) != 0) goto cleanup;
    if (cli_check_data_fits(net, test, data, "test", 0) != 0) goto cleanup;
    char s_par[32], s_thr[48], s_n[32];
    snprintf(s_par, sizeof s_par, "%zu", cnn_net_param_count(net));
    snprintf(s_thr, sizeof s_thr, "%zu, isa %s", cnn_ctx_threads(ctx), cnn_ctx_isa(ctx));
    snprintf(s_n, sizeof s_n, "%zu test", cnn_dataset_size(test));
    const char *settings[] = {"model", model, "weights", pos[0], "data", data, "samples", s_n,
                              "parameters", s_par, "normalize", normalize ? normalize : "none",
                              "training log", log_path ? log_path : "(none: no curves; pass --log FILE)",
                              "threads", s_thr};
    /* class names: stored in the weights file by cnn train, else the data's, else Fashion-MNIST's by path */
    size_t k = cnn_dataset_classes(test);
    const char *const *names = cli_file_class_names(ctx, pos[0], k, &file_names);
    if (!names && (data_names = cli_dataset_class_names(test)) != NULL) names = data_names;
    if (!names) names = cli_class_names_for(data, k);
    cli_report_input ri = {
        .title = model,
        .settings = settings,
        .n_settings = sizeof settings / sizeof settings[0] / 2,
        .epochs = hist,
        .n_epochs = n_hist,
        .net = net,
        .batch = batch,
        .test = test,
        .class_names = names,
        .gallery = 24,
    };
    if (cli_report_write(output, &ri) != 0) goto cleanup;
    printf("report: wrote %s/index.html and %s/metrics.csv\n", output, output);
    rc = CLI_EXIT_OK;
cleanup:
    free(hist);
    free(data_names);
    if (file_names) cnn_free(ctx, file_names);
    cnn_dataset_free(test);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_report = {
    .name = "report",
    .summary = "write the HTML training report (confusion matrix, mistakes, filters) for trained weights",
    .help = report_help,
    .run = run_report,
};
