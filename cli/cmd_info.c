/* cmd_info.c — `cnn info MODEL.cnn [--batch B] [--print] [--json]`: the layer table of a model (index,
 * name, type, inputs, per-sample output shape CxHxW, parameters, forward MFLOPs per sample, convolution
 * algorithm) and totals (parameters and their MiB, GFLOPs per sample, activation memory for training and
 * for inference at batch B). `--print` writes the model text the library prints back instead.
 * Given a checkpoint or weights file, it warns on stderr about every tensor that holds NaN or infinite
 * values (the loaders keep such values as they are): the tensor's name and how many of each. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether path looks like a safetensors file (u64 header length that fits, then '{'), not model text. */
static int looks_like_safetensors(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char b[9];
    int yes = 0;
    if (!f)
        return 0;
    if (fread(b, 1, 9, f) == 9 && b[8] == '{') {
        unsigned long long n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | b[i];
        yes = n >= 2 && n < 100000000ull;
    }
    fclose(f);
    return yes;
}

/* One warning per tensor of net holding NaN or infinities (name, counts); returns how many tensors did. */
static size_t warn_nonfinite(const cnn_net *net, const char *path) {
    size_t bad = 0;
    for (size_t i = 0; i < cnn_net_num_params(net); i++) {
        cnn_param p;
        if (cnn_net_param_at(net, i, &p) != CNN_OK)
            continue;
        size_t nan = 0, inf = 0;
        for (size_t k = 0; k < p.count; k++) {
            if (isnan(p.data[k]))
                nan++;
            else if (isinf(p.data[k]))
                inf++;
        }
        if (nan + inf == 0)
            continue;
        fprintf(stderr, "cnn: warning: %s: tensor '%s' has %zu non-finite value%s of %zu (%zu NaN, %zu infinite)\n",
                path, p.name, nan + inf, nan + inf == 1 ? "" : "s", p.count, nan, inf);
        bad++;
    }
    return bad;
}

static const char info_help[] =
    "usage: cnn info MODEL.cnn|CHECKPOINT|WEIGHTS [--batch B] [--print] [--json]\n"
    "\n"
    "(A checkpoint or a weights file written by cnn train holds its model text: it can stand for MODEL.cnn;\n"
    "then every tensor holding NaN or infinite values is named on stderr, with how many.)\n"
    "Show the layers of a model: index, name, type, inputs, output shape (CxHxW per sample), trainable\n"
    "parameters, forward MFLOPs per sample and the convolution algorithm chosen for it; then the totals:\n"
    "parameters (and MiB as float32), GFLOPs per sample, and the activation memory that compiling for\n"
    "training and for inference at batch B plans.\n"
    "\n"
    "options:\n"
    "  --batch B   batch size for the memory figures and the compile (default 1)\n"
    "  --print     write the model text (as the library prints it back) instead of the table\n"
    "  --json      one JSON object instead of the table\n";

typedef struct row {
    char index[24], inputs[256], out[64], params[32], mflops[32], algo[96];
    cnn_layer_info info;
} row;

/* One table row: columns padded to wd[] (numbers right-aligned), two spaces apart, no trailing blanks. */
static void print_row(const char *const cell[8], const size_t wd[8]) {
    static const int right[8] = {1, 0, 0, 0, 0, 1, 1, 0};
    char line[1024];
    size_t len = 0;
    for (int c = 0; c < 8; c++) {
        size_t l = strlen(cell[c]), w = wd[c] > l ? wd[c] : l;
        int n = snprintf(line + len, sizeof line - len, "%s%*s%s%*s", c ? "  " : "", right[c] ? (int)(w - l) : 0,
                         "", cell[c], right[c] ? 0 : (int)(w - l), "");
        if (n < 0 || (size_t)n >= sizeof line - len) {
            len = sizeof line - 1;
            break;
        }
        len += (size_t)n;
    }
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len] = 0;
    puts(line);
}

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* "0.71 MiB", or GiB from 10 GiB up. */
static void format_bytes(char *buf, size_t n, size_t bytes) {
    double m = mib((double)bytes);
    if (m >= 10240)
        snprintf(buf, n, "%.2f GiB", m / 1024);
    else
        snprintf(buf, n, "%.2f MiB", m);
}

static int run_info(int argc, char **argv) {
    size_t batch = 1;
    int print = 0, json = 0;
    const cli_option opts[] = {
        {.name = "batch", .kind = CLI_OPT_SIZE, .out = &batch, .umin = 1, .umax = 1u << 20},
        {.name = "print", .kind = CLI_OPT_FLAG, .out = &print},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("info", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc)
        return rc;
    if (help) {
        fputs(info_help, stdout);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1)
        return cli_usage_error("info: expected a model file (usage: cnn info MODEL.cnn [--batch B] [--print] "
                               "[--json])");
    if (print && json)
        return cli_usage_error("info: --print and --json cannot be combined");
    const char *model = pos[0];
    if ((rc = cli_check_file(model, "model file")) != 0)
        return rc;

    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    row *rows = NULL;
    char *text = NULL;
    cnn_status st;
    rc = CLI_EXIT_FAIL;
    if (cli_ctx_create(1, &ctx) != 0)
        goto cleanup;
    const int weights = looks_like_safetensors(model);
    if ((st = weights ? cnn_checkpoint_load(ctx, model, &net) : cnn_net_load(ctx, model, &net)) != CNN_OK) {
        cli_lib_error(ctx, st, model);
        goto cleanup;
    }
    if (weights)
        (void)warn_nonfinite(net, model);

    if (print) {
        if ((st = cnn_net_to_text(net, &text)) != CNN_OK) {
            cli_lib_error(ctx, st, "printing the model");
            goto cleanup;
        }
        size_t len = strlen(text);
        fputs(text, stdout);
        if (len == 0 || text[len - 1] != '\n')
            fputc('\n', stdout);
        rc = CLI_EXIT_OK;
        goto cleanup;
    }

    size_t act_train = 0, act_infer = 0;
    if ((st = cnn_net_activation_bytes(net, batch, CNN_COMPILE_TRAIN, &act_train)) != CNN_OK ||
        (st = cnn_net_activation_bytes(net, batch, 0, &act_infer)) != CNN_OK) {
        cli_lib_error(ctx, st, "planning activation memory");
        goto cleanup;
    }
    /* Algorithms may be chosen at compile time: compile for inference at this batch. A batch too large to
     * allocate still gets its table and memory figures (planning needs no compile); the algorithm column then
     * shows what the layers report from their shapes alone. */
    (void)cnn_net_compile(net, batch, 0);

    size_t n = cnn_net_num_layers(net);
    rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows) {
        cli_error("out of memory");
        goto cleanup;
    }
    size_t total_params = 0;
    double total_flops = 0;
    for (size_t i = 0; i < n; i++) {
        row *r = &rows[i];
        if ((st = cnn_net_layer_info(net, i, &r->info)) != CNN_OK) {
            cli_lib_error(ctx, st, "layer info");
            goto cleanup;
        }
        snprintf(r->index, sizeof r->index, "%zu", i);
        r->inputs[0] = 0;
        size_t ni = r->info.n_inputs < 8 ? r->info.n_inputs : 8;
        for (size_t k = 0; k < ni; k++) {
            size_t l = strlen(r->inputs);
            snprintf(r->inputs + l, sizeof r->inputs - l, "%s%s", k ? "," : "", r->info.inputs[k]);
        }
        if (ni == 0)
            snprintf(r->inputs, sizeof r->inputs, "-");
        cli_format_shape(r->out, sizeof r->out, r->info.out);
        snprintf(r->params, sizeof r->params, "%zu", r->info.params);
        snprintf(r->mflops, sizeof r->mflops, "%.3f", (double)r->info.flops / 1e6);
        if (!r->info.algorithm)
            r->info.algorithm = "";
        /* the weight gradient's algorithm where it is not the layer's own (conv2d wgrad=) */
        snprintf(r->algo, sizeof r->algo, "%s%s%s", r->info.algorithm,
                 r->info.wgrad_algorithm && *r->info.wgrad_algorithm ? ", wgrad " : "",
                 r->info.wgrad_algorithm ? r->info.wgrad_algorithm : "");
        total_params += r->info.params;
        total_flops += (double)r->info.flops;
    }
    /* The parameter registry is the source of truth for the total (it equals the sum of the rows). */
    total_params = cnn_net_param_count(net);

    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_begin_object(&j);
        cli_json_key(&j, "layers");
        cli_json_begin_array(&j);
        for (size_t i = 0; i < n; i++) {
            const cnn_layer_info *li = &rows[i].info;
            cli_json_begin_object(&j);
            cli_json_key(&j, "index");
            cli_json_uint(&j, i);
            cli_json_key(&j, "name");
            cli_json_string(&j, li->name);
            cli_json_key(&j, "type");
            cli_json_string(&j, li->type);
            cli_json_key(&j, "inputs");
            cli_json_begin_array(&j);
            for (size_t k = 0; k < li->n_inputs && k < 8; k++)
                cli_json_string(&j, li->inputs[k]);
            cli_json_end_array(&j);
            cli_json_key(&j, "output");
            cli_json_begin_array(&j);
            cli_json_uint(&j, li->out.c);
            cli_json_uint(&j, li->out.h);
            cli_json_uint(&j, li->out.w);
            cli_json_end_array(&j);
            cli_json_key(&j, "params");
            cli_json_uint(&j, li->params);
            cli_json_key(&j, "flops");
            cli_json_uint(&j, li->flops);
            cli_json_key(&j, "algorithm");
            cli_json_string(&j, li->algorithm);
            if (li->wgrad_algorithm && *li->wgrad_algorithm) {
                cli_json_key(&j, "wgrad_algorithm");
                cli_json_string(&j, li->wgrad_algorithm);
            }
            cli_json_end_object(&j);
        }
        cli_json_end_array(&j);
        cli_json_key(&j, "params");
        cli_json_uint(&j, total_params);
        cli_json_key(&j, "param_mib");
        cli_json_double(&j, mib(4.0 * (double)total_params));
        cli_json_key(&j, "gflops_per_sample");
        cli_json_double(&j, total_flops / 1e9);
        cli_json_key(&j, "batch");
        cli_json_uint(&j, batch);
        cli_json_key(&j, "activation_bytes_train");
        cli_json_uint(&j, act_train);
        cli_json_key(&j, "activation_bytes_inference");
        cli_json_uint(&j, act_infer);
        { /* part "recipe" */
            cnn_recipe rcp;
            char rtext[2048];
            if (cnn_net_get_recipe(net, &rcp) == CNN_OK && rcp.set) {
                cnn_recipe_format(&rcp, rtext, sizeof rtext);
                cli_json_key(&j, "recipe");
                cli_json_string(&j, rtext);
            }
        }
        cli_json_end_object(&j);
        cli_json_finish(&j);
        rc = CLI_EXIT_OK;
        goto cleanup;
    }

    /* The table: widths from the contents. */
    const char *head[8] = {"#", "name", "type", "inputs", "output", "params", "MFLOPs", "algorithm"};
    size_t wd[8];
    for (int c = 0; c < 8; c++)
        wd[c] = strlen(head[c]);
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        const char *cell[8] = {r->index, r->info.name,  r->info.type, r->inputs,
                               r->out,   r->params,     r->mflops,    r->algo};
        for (int c = 0; c < 8; c++)
            if (strlen(cell[c]) > wd[c])
                wd[c] = strlen(cell[c]);
    }
    print_row(head, wd);
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        const char *cell[8] = {r->index, r->info.name,  r->info.type, r->inputs,
                               r->out,   r->params,     r->mflops,    r->algo};
        print_row(cell, wd);
    }
    printf("\n");
    printf("total parameters    %zu (%.2f MiB float32)\n", total_params, mib(4.0 * (double)total_params));
    printf("total GFLOPs        %.4f per sample (forward)\n", total_flops / 1e9);
    char bt[32], bi[32];
    format_bytes(bt, sizeof bt, act_train);
    format_bytes(bi, sizeof bi, act_infer);
    printf("activation memory   %s training, %s inference at batch %zu\n", bt, bi, batch);
    { /* the training recipe (part "recipe"), as the model text writes it */
        cnn_recipe rcp;
        char rtext[2048];
        if (cnn_net_get_recipe(net, &rcp) == CNN_OK && rcp.set) {
            cnn_recipe_format(&rcp, rtext, sizeof rtext);
            printf("recipe              %s (line %zu)\n", rtext, rcp.line);
        }
    }
    rc = CLI_EXIT_OK;

cleanup:
    if (text)
        cnn_free(ctx, text);
    free(rows);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
        rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_info = {
    .name = "info",
    .summary = "show a model's layers, shapes, parameters, FLOPs and memory",
    .help = info_help,
    .run = run_info,
};
