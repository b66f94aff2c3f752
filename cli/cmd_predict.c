/* cmd_predict.c — `cnn predict WEIGHTS|CHECKPOINT [--model MODEL.cnn] IMAGE... | --data DIR --index K`: the top-5
 * classes with probabilities for PNG/JPEG images (resized to the model's input, converted to gray or RGB)
 * or for one test image of an IDX folder.
 *
 * Class names: --classes; else the names stored in the weights file or checkpoint (metadata "cnn.classes",
 * written by cnn train from the dataset's names); else the --data folder's names (classes.txt, Fashion-MNIST
 * by folder name, image class folders); else Fashion-MNIST's names when the model has 10 classes and the
 * input is 1x28x28; else class indices. */
#include "cli.h"
#include "image.h"
#include "report.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

static const char predict_help[] =
    "usage: cnn predict WEIGHTS|CHECKPOINT [--model MODEL.cnn] IMAGE...\n"
    "       cnn predict WEIGHTS|CHECKPOINT [--model MODEL.cnn] --data DIR --index K\n"
    "\n"
    "Classify images with trained weights (from cnn train --out): prints the 5 most likely classes and\n"
    "their probabilities. Images are PNG or JPEG, resized to the model's input and converted to gray or RGB;\n"
    "or --data/--index picks one image of the test split of an IDX folder.\n"
    "\n"
    "options:\n"
    "  --model FILE          the model text the weights belong to (default: the model text inside\n"
    "                        WEIGHTS, which a checkpoint and every --out file of cnn train hold)\n"
    "  --data DIR --index K  test image K (0-based) of an IDX dataset folder instead of image files\n"
    "  --invert              use 1 - pixel (dark-on-light photos; Fashion-MNIST is light-on-dark)\n"
    "  --normalize MEAN,STD  the normalisation the model was trained with, if any\n"
    "  --classes LIST        class names, comma-separated, or 'fashion' or 'index' (default: the names\n"
    "                        stored in the file by cnn train, else the data's, else Fashion-MNIST's for\n"
    "                        a 10-class 1x28x28 model)\n"
    "  --top N               how many classes to list (default 5)\n"
    "  --threads T           threads (default: all online CPUs)\n"
    "  --json                one JSON object per image instead of the table\n"
    "  --save-image FILE     also write the network's input (after resizing, before --normalize) as a PNG:\n"
    "                        with --data/--index, a test image as a file to try predict on\n";

static const char *const fashion[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* x (in.c planes; normalised with mean/std when norm) back to bytes, written as a PNG (gray or RGB). */
static int save_input(const char *path, const float *x, cnn_shape in, int norm, double mean, double std) {
    if (in.c != 1 && in.c != 3) return cli_error("--save-image: the model's input has %zu channels (PNG: 1 or 3)", in.c);
    cli_image im = {in.w, in.h, in.c, malloc(in.w * in.h * in.c)};
    if (!im.px) return cli_error("out of memory");
    for (size_t c = 0; c < in.c; c++)
        for (size_t i = 0; i < in.h * in.w; i++) {
            double v = x[c * in.h * in.w + i];
            if (norm) v = v * std + mean;
            v = floor(v * 255.0 + 0.5);
            im.px[i * in.c + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    char err[512];
    int rc = cli_png_write(path, &im, err, sizeof err);
    cli_image_free(&im);
    if (rc) return cli_error("--save-image %s", err);
    fprintf(stderr, "predict: input image written to %s\n", path);
    return 0;
}

static int run_predict(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *normalize = NULL, *classes_opt = NULL;
    size_t index = 0, threads = 0, top = 5;
    int seen_index = 0, invert = 0, json = 0;
    const char *save_image = NULL;
    const cli_option opts[] = {
        {.name = "model", .kind = CLI_OPT_STRING, .out = &model},
        {.name = "data", .kind = CLI_OPT_STRING, .out = &data},
        {.name = "index", .kind = CLI_OPT_SIZE, .out = &index, .umin = 0, .umax = SIZE_MAX, .seen = &seen_index},
        {.name = "invert", .kind = CLI_OPT_FLAG, .out = &invert},
        {.name = "normalize", .kind = CLI_OPT_STRING, .out = &normalize},
        {.name = "classes", .kind = CLI_OPT_STRING, .out = &classes_opt},
        {.name = "top", .kind = CLI_OPT_SIZE, .out = &top, .umin = 1, .umax = 1000},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
        {.name = "save-image", .kind = CLI_OPT_STRING, .out = &save_image},
    };
    const char *pos[65];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("predict", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 65, &n_pos, &help);
    if (rc) return rc;
    if (help) {
        fputs(predict_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos < 1)
        return cli_usage_error("predict: expected a weights file (usage: cnn predict WEIGHTS|CHECKPOINT [--model MODEL.cnn] "
                               "IMAGE... | --data DIR --index K)");
    const char *model_file = model; /* NULL: the model text inside the weights file / checkpoint */
    if (!model) model = pos[0];
    size_t n_images = n_pos - 1;
    if (data && !seen_index) return cli_usage_error("predict: --data DIR needs --index K");
    if (seen_index && !data) return cli_usage_error("predict: --index K needs --data DIR");
    if (data && n_images) return cli_usage_error("predict: give image files or --data/--index, not both");
    if (!data && !n_images) return cli_usage_error("predict: no image given (IMAGE... or --data DIR --index K)");
    if (save_image && n_images > 1) return cli_usage_error("predict: --save-image takes one input, %zu given", n_images);
    if (save_image && (rc = cli_check_output(save_image, "--save-image")) != 0) return rc;
    double mean = 0, std = 1;
    if (normalize && (rc = cli_parse_normalize("predict", normalize, &mean, &std)) != 0) return rc;
    if (data && (rc = cli_check_data(data)) != 0) return rc;

    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    float *x = NULL;
    char *names_buf = NULL;
    char **file_names = NULL; /* cnn_alloc block: names stored in the weights file */
    const char **data_names = NULL;
    cnn_dataset *names_ds = NULL;
    const char *custom[256];
    const char *const *names = NULL;
    rc = CLI_EXIT_FAIL;
    if (cli_model_open(model_file, pos[0], 1, 0, threads, &ctx, &net) != 0) goto cleanup;
    cnn_shape in = cnn_net_input_shape(net), os = cnn_net_output_shape(net);
    size_t k = os.c * os.h * os.w;
    if (!cnn_net_has_loss(net)) {
        cli_error("model '%s' does not end in softmax_ce: predict needs class probabilities", model);
        goto cleanup;
    }
    if (classes_opt && strcmp(classes_opt, "index") != 0) {
        if (strcmp(classes_opt, "fashion") == 0) {
            if (k != 10) {
                cli_error("--classes fashion: the model has %zu classes, Fashion-MNIST 10", k);
                goto cleanup;
            }
            names = fashion;
        } else {
            names_buf = strdup(classes_opt);
            size_t n = 0;
            for (char *p = names_buf, *q; p && n < 256; p = q) {
                q = strchr(p, ',');
                if (q) *q++ = 0;
                custom[n++] = p;
            }
            if (n != k) {
                cli_error("--classes: %zu names given, the model has %zu classes", n, k);
                goto cleanup;
            }
            names = custom;
        }
    } else if (!classes_opt) {
        names = cli_file_class_names(ctx, pos[0], k, &file_names);
        if (!names && data) { /* the data's own names (quietly: cli_load_input loads it again and warns) */
            if (cli_load_split_for(ctx, in, data, "test", NULL, 1, &names_ds) != 0) goto cleanup;
            if (cnn_dataset_classes(names_ds) == k && (data_names = cli_dataset_class_names(names_ds)) != NULL)
                names = data_names;
        }
        if (!names && k == 10 && in.c == 1 && in.h == 28 && in.w == 28) names = fashion;
    }
    if (!(x = malloc(in.c * in.h * in.w * sizeof *x))) {
        cli_error("out of memory");
        goto cleanup;
    }
    if (top > k) top = k;
    size_t n_inputs = data ? 1 : n_images;
    for (size_t i = 0; i < n_inputs; i++) {
        int label;
        char desc[1200];
        if (cli_load_input(ctx, data ? NULL : pos[1 + i], data, index, in, invert, normalize != NULL, mean, std, x,
                           &label, desc, sizeof desc) != 0)
            goto cleanup;
        if (save_image && save_input(save_image, x, in, normalize != NULL, mean, std) != 0) goto cleanup;
        cnn_status st = cnn_net_forward(net, x, 1, 0);
        if (st != CNN_OK) {
            cli_lib_error(ctx, st, "forward");
            goto cleanup;
        }
        size_t got;
        const float *p = cnn_net_output(net, &got);
        size_t order[1000];
        for (size_t t = 0; t < top; t++) { /* selection of the top classes; ties keep the lower index */
            size_t best = SIZE_MAX;
            for (size_t c = 0; c < k; c++) {
                int used = 0;
                for (size_t u = 0; u < t; u++) used |= order[u] == c;
                if (!used && (best == SIZE_MAX || p[c] > p[best])) best = c;
            }
            order[t] = best;
        }
        char lab[32];
        if (json) {
            cli_json j;
            cli_json_init(&j, stdout);
            cli_json_begin_object(&j);
            cli_json_key(&j, "input");
            cli_json_string(&j, data ? data : pos[1 + i]);
            if (data) {
                cli_json_key(&j, "index");
                cli_json_uint(&j, index);
                cli_json_key(&j, "label");
                cli_json_uint(&j, (uint64_t)label);
            }
            cli_json_key(&j, "top");
            cli_json_begin_array(&j);
            for (size_t t = 0; t < top; t++) {
                cli_json_begin_object(&j);
                cli_json_key(&j, "class");
                cli_json_uint(&j, order[t]);
                if (names) {
                    cli_json_key(&j, "name");
                    cli_json_string(&j, names[order[t]]);
                }
                cli_json_key(&j, "probability");
                cli_json_double(&j, p[order[t]]);
                cli_json_end_object(&j);
            }
            cli_json_end_array(&j);
            cli_json_end_object(&j);
            cli_json_finish(&j);
            continue;
        }
        printf("%s", desc);
        if (label >= 0) {
            if (names && (size_t)label < k) printf("  true: %s", names[label]);
            else printf("  true: %d", label);
        }
        printf("\n");
        for (size_t t = 0; t < top; t++) {
            size_t c = order[t];
            if (names) snprintf(lab, sizeof lab, "%s", names[c]);
            else snprintf(lab, sizeof lab, "class %zu", c);
            int bar = (int)(p[c] * 30 + 0.5f);
            printf("  %zu. %-12s %6.2f%%  %.*s\n", t + 1, lab, 100.0 * p[c], bar,
                   "##############################");
        }
    }
    rc = CLI_EXIT_OK;
cleanup:
    free(names_buf);
    free(data_names);
    cnn_dataset_free(names_ds);
    if (file_names) cnn_free(ctx, file_names);
    free(x);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_predict = {
    .name = "predict",
    .summary = "classify PNG/JPEG images (or a test image) with trained weights: top-5 classes",
    .help = predict_help,
    .run = run_predict,
};
