/* cmd_eval.c — `cnn eval MODEL.cnn --weights FILE --data DIR [--batch B] [--threads T] [--json]`: loss,
 * accuracy and the confusion matrix (rows: true class, columns: predicted) of trained weights on the test
 * split of a dataset folder (IDX, CIFAR-10, image folders) or a list file. Rows are labelled with the class
 * names stored in the weights file by cnn train, else the data's names (classes.txt, Fashion-MNIST's when
 * the path mentions "fashion" or "fmnist", image class folders), otherwise with class indices. */
#include "cli.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char eval_help[] =
    "usage: cnn eval MODEL.cnn --weights FILE --data DIR [--batch B] [--threads T] [--json]\n"
    "       cnn eval CHECKPOINT --data DIR [...]   (a checkpoint or --out file: the model text is inside)\n"
    "\n"
    "Evaluate trained weights on the test split (t10k-*) of an IDX dataset folder: mean loss, accuracy and\n"
    "the confusion matrix (rows: true class, columns: predicted class).\n"
    "\n"
    "options:\n"
    "  --weights FILE        weights (safetensors, as written by cnn train --out) (required)\n"
    "  --data DIR            dataset folder (required)\n"
    "  --batch B             evaluation batch size (default 256)\n"
    "  --threads T           threads (default: all online CPUs; 0 means the same)\n"
    "  --normalize MEAN,STD  the normalisation the model was trained with, if any\n"
    "  --json                one JSON object: loss, accuracy, n, confusion (array of rows)\n"
    "  --tta                 test-time augmentation: average the softmax of each image and of its\n"
    "                        horizontal flip (the loss is that of the averaged probabilities)\n";

/* Whether path looks like a safetensors file (u64 header length that fits, then '{'), not model text. */
static int looks_like_safetensors(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char b[9];
    int yes = 0;
    if (!f)
        return 1; /* let the file check report it */
    if (fread(b, 1, 9, f) == 9 && b[8] == '{') {
        unsigned long long n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | b[i];
        yes = n >= 2 && n < 100000000ull;
    }
    fclose(f);
    return yes;
}

static int run_eval(int argc, char **argv) {
    const char *weights = NULL, *data = NULL, *normalize = NULL;
    size_t batch = 256, threads = 0;
    int json = 0;
    int tta = 0; /* --tta (part "augment") */
    const cli_option opts[] = {
        {.name = "weights", .kind = CLI_OPT_STRING, .out = &weights},
        {.name = "data", .kind = CLI_OPT_STRING, .out = &data},
        {.name = "batch", .kind = CLI_OPT_SIZE, .out = &batch, .umin = 1, .umax = 65536},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "normalize", .kind = CLI_OPT_STRING, .out = &normalize},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
        {.name = "tta", .kind = CLI_OPT_FLAG, .out = &tta},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("eval", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc)
        return rc;
    if (help) {
        fputs(eval_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1)
        return cli_usage_error("eval: expected a model file (usage: cnn eval MODEL.cnn --weights FILE --data DIR)");
    /* without --weights the positional file is a checkpoint (or weights file) holding its model text */
    if (!data)
        return cli_usage_error("eval: --data DIR is required (a folder with t10k IDX files)");
    double norm_mean = 0, norm_std = 1;
    if (normalize && (rc = cli_parse_normalize("eval", normalize, &norm_mean, &norm_std)) != 0)
        return rc;
    const char *model = pos[0];
    const char *model_file = weights ? model : NULL;
    if (!weights && !looks_like_safetensors(model))
        return cli_usage_error("eval: --weights FILE is required (or give a checkpoint / weights file alone: "
                               "cnn eval CHECKPOINT --data DIR)");
    if (!weights)
        weights = model;
    if ((model_file && (rc = cli_check_file(model, "model file")) != 0) ||
        (rc = cli_check_file(weights, "weights file")) != 0 ||
        (rc = cli_check_data(data)) != 0)
        return rc;

    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_dataset *test = NULL;
    cnn_eval_result ev;
    memset(&ev, 0, sizeof ev);
    char **file_names = NULL;
    const char **data_names = NULL;
    cnn_status st;
    rc = CLI_EXIT_FAIL;

    if (cli_ctx_create(threads, &ctx) != 0)
        goto cleanup;
    if ((st = model_file ? cnn_net_load(ctx, model, &net) : cnn_checkpoint_load(ctx, weights, &net)) != CNN_OK) {
        cli_lib_error(ctx, st, model);
        goto cleanup;
    }
    if (!cnn_net_has_loss(net)) {
        cli_error("model '%s' has no loss layer: evaluation needs one (end it with softmax_ce)", model);
        goto cleanup;
    }
    if (cli_load_split_for(ctx, cnn_net_input_shape(net), data, "test", NULL, 0, &test) != 0)
        goto cleanup;
    if (normalize && cli_apply_normalize(test, norm_mean, norm_std) != 0)
        goto cleanup;
    if (cli_check_data_fits(net, test, data, "test", 0) != 0)
        goto cleanup;
    if ((st = cnn_net_compile(net, batch, 0)) != CNN_OK) {
        cli_lib_error(ctx, st, "compiling the model");
        goto cleanup;
    }
    if (model_file && (st = cnn_net_load_weights(net, weights)) != CNN_OK) {
        cli_lib_error(ctx, st, weights);
        goto cleanup;
    }
    if (!json) {
        fprintf(stderr, "eval: model %s, weights %s; data %s: %zu test images; threads %zu, isa %s%s\n", model,
                weights, data, cnn_dataset_size(test), cnn_ctx_threads(ctx), cnn_ctx_isa(ctx),
                tta ? "; test-time augmentation: mean of the image and its horizontal flip" : "");
        fflush(stderr);
    }
    if ((st = tta ? cnn_net_evaluate_tta(net, test, batch, &ev) : cnn_net_evaluate(net, test, batch, &ev)) != CNN_OK) {
        cli_lib_error(ctx, st, "evaluating");
        goto cleanup;
    }
    size_t k = ev.classes;
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_begin_object(&j);
        cli_json_key(&j, "loss");
        cli_json_double(&j, ev.loss);
        cli_json_key(&j, "accuracy");
        cli_json_double(&j, ev.accuracy);
        cli_json_key(&j, "n");
        cli_json_uint(&j, ev.n);
        if (tta) {
            cli_json_key(&j, "tta");
            cli_json_bool(&j, 1);
        }
        cli_json_key(&j, "confusion");
        cli_json_begin_array(&j);
        for (size_t t = 0; t < k && ev.confusion; t++) {
            cli_json_begin_array(&j);
            for (size_t p = 0; p < k; p++)
                cli_json_uint(&j, ev.confusion[t * k + p]);
            cli_json_end_array(&j);
        }
        cli_json_end_array(&j);
        cli_json_end_object(&j);
        cli_json_finish(&j);
        rc = CLI_EXIT_OK;
        goto cleanup;
    }

    printf("test loss %.4f  accuracy %.4f  (%zu images%s)\n", ev.loss, ev.accuracy, ev.n, tta ? ", flip TTA" : "");
    if (ev.confusion && k > 0) {
        /* names: stored in the weights file by cnn train, else the data's (classes.txt, Fashion-MNIST by
         * folder name, image class folders) */
        const char *const *names = cli_file_class_names(ctx, weights, k, &file_names);
        if (!names && cnn_dataset_classes(test) == k && (data_names = cli_dataset_class_names(test)) != NULL)
            names = data_names;
        /* Row label: "3 Dress" with names, "3" without; cells as wide as the largest count. */
        size_t lw = 0, cw = 1;
        char buf[160];
        for (size_t t = 0; t < k; t++) {
            int len = names ? snprintf(buf, sizeof buf, "%zu %s", t, names[t])
                            : snprintf(buf, sizeof buf, "%zu", t);
            if ((size_t)len > lw)
                lw = (size_t)len;
            for (size_t p = 0; p < k; p++) {
                len = snprintf(buf, sizeof buf, "%zu", ev.confusion[t * k + p]);
                if ((size_t)len > cw)
                    cw = (size_t)len;
            }
        }
        {
            int len = snprintf(buf, sizeof buf, "%zu", k - 1); /* the column headers */
            if ((size_t)len > cw)
                cw = (size_t)len;
        }
        if (lw < 4)
            lw = 4;
        printf("\nconfusion matrix (rows: true class, columns: predicted class)\n");
        printf("%-*s", (int)lw, "true");
        for (size_t p = 0; p < k; p++)
            printf("  %*zu", (int)cw, p);
        printf("\n");
        for (size_t t = 0; t < k; t++) {
            if (names)
                snprintf(buf, sizeof buf, "%zu %s", t, names[t]);
            else
                snprintf(buf, sizeof buf, "%zu", t);
            printf("%-*s", (int)lw, buf);
            for (size_t p = 0; p < k; p++)
                printf("  %*zu", (int)cw, ev.confusion[t * k + p]);
            printf("\n");
        }
    }
    rc = CLI_EXIT_OK;

cleanup:
    free(data_names);
    if (file_names)
        cnn_free(ctx, file_names);
    if (ev.confusion)
        cnn_free(ctx, ev.confusion);
    cnn_dataset_free(test);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
        rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_eval = {
    .name = "eval",
    .summary = "evaluate trained weights on a dataset's test split (loss, accuracy, confusion matrix)",
    .help = eval_help,
    .run = run_eval,
};
