/* cmd_train.c — `cnn train MODEL.cnn --data DIR [options]`: train a model on an IDX dataset folder.
 *
 * Per epoch: shuffle the training indices (cnn_shuffle_indices, seed derived from --seed and the epoch)
 * unless --no-shuffle; for every batch, the last partial one included: gather, forward (training), loss,
 * backward from the loss, learning rate from the schedule (counted in optimizer steps; warmup and total from
 * epochs * steps_per_epoch), optimizer step. After each epoch the test split is evaluated and one line goes to
 * stdout:
 *     epoch 3/5  loss 0.2841  train_acc 0.8967  test_acc 0.9012  12.4 s  4838 img/s
 * loss and train_acc are means over the epoch's samples (the running mean of the batch statistics weighted by
 * batch size); seconds and img/s time the training part only. With --json one JSON object follows the lines.
 * The same --seed and --threads give the same numbers (the library is deterministic for a thread count).
 *
 * Progress (stderr, not with --quiet): on a terminal (isatty) one line per epoch redrawn in place with "\r"
 * and "ESC[K" at most 10 times a second (batch n/N, running loss and accuracy, img/s, ETA); otherwise
 * plain lines at every tenth of the epoch, no control characters. --log FILE appends one JSON object per
 * epoch; --report DIR writes the HTML report (report.c) at the end.
 * SIGINT/SIGTERM: the current batch finishes, then training stops (the partial epoch is not evaluated),
 * --checkpoint, --out and --report are still written, a line says how to continue, exit status 130. A second
 * signal exits at once from the handler (status 3) without saving; the atomic writer keeps the checkpoint on
 * disk whole. A failed checkpoint write stops the run (exit 1); a failed --log or --report write is reported
 * and training goes on (exit 1 at the end). SIGXFSZ is ignored, so `ulimit -f` is an EFBIG write error.
 *
 * Checkpoints (--checkpoint FILE; src/io/checkpoint.c): written after every epoch (and after a partial one
 * that --steps ends) and on SIGINT/SIGTERM, with the position (epoch, batches done in it, optimizer steps),
 * the optimizer state and the training arguments of this run (every option but --resume and --weights/--init;
 * the model text is inside). `--resume FILE` rebuilds the run: the stored arguments come first and the
 * command line's override them (the parser keeps the last value), so `cnn train --resume ck --epochs 5`
 * trains the same run up to 5 epochs in all. The shuffle order is a pure function of (--seed, epoch), the
 * dropout RNG is (seed, forwards) and restored, so a resumed run is bit-identical to an uninterrupted one with
 * the same options and --threads (changing --batch mid-epoch is not supported: the position counts batches).
 * The epoch line of an epoch resumed in the middle covers only the batches run after the resume. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "report.h"
#include "train_dist.h"

#include <math.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char train_help[] =
    "usage: cnn train MODEL.cnn --data DIR [options]\n"
    "       cnn train --resume CHECKPOINT [--epochs N] [options]\n"
    "\n"
    "Train a model on an IDX dataset folder (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],\n"
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), evaluating on the test split after each\n"
    "epoch. Prints one line per epoch to stdout:\n"
    "  epoch 3/5  loss 0.2841  train_acc 0.8967  test_acc 0.9012  12.4 s  4838 img/s\n"
    "\n"
    "A `recipe` line in MODEL.cnn (docs/formats.md) gives defaults for the options below (optimizer, lr,\n"
    "schedule, epochs, batch, ...); options given here override it.\n"
    "\n"
    "options:\n"
    "  --data DIR               dataset folder (required): IDX files, CIFAR-10 batches, or train/<class>/*\n"
    "                           and test/<class>/* PNG/JPEG images (resized to the model's input)\n"
    "  --list FILE              instead of --data: a list of \"PATH LABEL\" lines (label: index or class name)\n"
    "  --test-list FILE         the test list for --list (default: the training list itself)\n"
    "  --epochs N               epochs (default 1)\n"
    "  --batch B                batch size (default 64); the last partial batch is used too\n"
    "  --lr X                   base learning rate (default 0.05 for sgd, 0.001 for adam/adamw)\n"
    "  --optimizer NAME         sgd | adam | adamw (default sgd)\n"
    "  --momentum M             sgd momentum (default 0.9)\n"
    "  --nesterov               sgd with Nesterov momentum\n"
    "  --weight-decay W         L2 (sgd, adam) or decoupled (adamw) weight decay (default 0)\n"
    "  --schedule NAME          constant | step | cosine | onecycle (default constant), counted in optimizer\n"
    "                           steps; onecycle: PyTorch's OneCycleLR (cosine up from lr/div-factor to --lr\n"
    "                           over --warmup-epochs, default 30% of the run, then cosine down to\n"
    "                           lr/div-factor/final-div-factor)\n"
    "  --div-factor D           onecycle: initial rate --lr / D (default 25)\n"
    "  --final-div-factor F     onecycle: final rate --lr / D / F (default 10000)\n"
    "  --warmup-epochs E        linear warmup from 0 over E epochs (default 0; fractions allowed)\n"
    "  --step-epochs S          step schedule: multiply the rate by --gamma every S epochs (required)\n"
    "  --gamma G                step schedule factor (default 0.1)\n"
    "  --label-smoothing E      label smoothing of the softmax_ce loss, in [0, 1) (default: the model's)\n"
    "  --clip-norm X            clip the gradients to global L2 norm X before each step (default: off)\n"
    "  --ema DECAY              keep an exponential moving average of the weights (e.g. 0.999, with the\n"
    "                           warmup min(DECAY, (1 + t) / (10 + t)) at step t), updated\n"
    "                           after every step; evaluation, --out and --best use it\n"
    "  --val-split F            hold out a fraction F of the training split (chosen by --seed) and report\n"
    "                           val_acc every epoch\n"
    "  --best FILE              save the weights of the best val_acc so far to FILE (needs --val-split)\n"
    "  --tta                    after the last epoch, evaluate the test split once more with horizontal-\n"
    "                           flip test-time augmentation (the mean of the softmax of each image and its\n"
    "                           mirror image, as cnn eval --tta): a line test_acc_tta, --json test_acc_tta\n"
    "  --threads T              threads (default: all online CPUs; 0 means the same)\n"
    "  --lanes L                batch lanes: each of L threads runs the whole network on its share of the\n"
    "                           batch (batchnorm statistics and gradients of the whole batch; faster on few\n"
    "                           cores). Default: one per thread; --lanes 1 splits every layer over the\n"
    "                           threads instead, and then the numbers do not depend on --threads\n"
    "  --seed S                 seed for initialisation, shuffling and dropout (default 1)\n"
    "  --steps N                stop after N optimizer steps in total (the partial epoch is still\n"
    "                           evaluated and printed)\n"
    "  --no-shuffle             keep the dataset order\n"
    "  --max-memory SIZE        refuse to run when the network, data and optimizer would need more than\n"
    "                           SIZE bytes (suffixes K, M, G: powers of 1024)\n"
    "  --skip-bad-batches K     skip up to K batches whose loss or gradients are not finite, with a\n"
    "                           warning (default 0: stop at the first, naming the layer)\n"
    "  --normalize MEAN,STD     normalise every channel as (x - MEAN) / STD after scaling to [0,1]\n"
    "                           (training batches: after the augmentation)\n"
    "  --augment SPEC           augment the training batches, e.g. crop=4,flip,erase=0.5 (items: crop=P,\n"
    "                           flip[=Q], erase[=Q], erase-area=A:B, erase-ratio=R:S, erase-fill=zero|random,\n"
    "                           none); random per sample from (--seed, epoch, index); docs/cli.md\n"
    "  --no-prefetch            prepare each batch when it is needed instead of on a background thread\n"
    "                           (the batches are the same)\n"
    "  --out FILE               save the weights (safetensors) at the end (also after Ctrl-C)\n"
    "  --weights FILE           start from these weights (e.g. an earlier --out) instead of a fresh\n"
    "                           initialisation; the optimizer state starts afresh (alias: --init)\n"
    "  --checkpoint FILE        write a checkpoint (weights, optimizer state, position, options) after\n"
    "                           every epoch and when stopped by Ctrl-C/SIGTERM\n"
    "  --resume FILE            continue the run of a checkpoint (no MODEL.cnn: the model and options are\n"
    "                           inside; options given here override them; --epochs counts the whole run)\n"
    "  --quiet                  no start line and no progress on stderr (epoch lines still go to stdout)\n"
    "  --log FILE               write one JSON object per epoch to FILE: epoch, epochs, steps, train_loss,\n"
    "                           train_acc, test_loss, test_acc, seconds, images_per_second, lr\n"
    "  --report DIR             write DIR/index.html (curves, confusion matrix, mistakes, filters, layers,\n"
    "                           settings; open it in a browser) and DIR/metrics.csv at the end\n"
    "  --sync-bn                under mpirun: batchnorm statistics over the global batch (default: per rank)\n"
    "  --dist-timeout S         under mpirun: a collective waiting longer than S seconds for another rank\n"
    "                           stops the run (default 120; 0: wait forever); see docs/distributed.md\n"
    "  --json                   after the epoch lines, one JSON object: epochs, steps, loss, train_acc,\n"
    "                           test_acc, test_loss, seconds, images_per_second\n";

static const char *const optimizer_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "onecycle", NULL};

/* splitmix64 finaliser: the shuffle seed of an epoch from the run's seed. */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* (the shuffle seed of epoch e is cnn_loader_epoch_seed(seed, e) = mix64(mix64(seed) ^ e): the loader's) */

static volatile sig_atomic_t stop_signal = 0;

/* Exit status of a run stopped at once by a second SIGINT/SIGTERM (the first one gives 130 after the
 * checkpoint is written). */
#define TRAIN_EXIT_SECOND_SIGNAL 3

static void say(const char *s) { /* async-signal-safe */
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* First SIGINT/SIGTERM: note it; the loop stops after the current batch and writes the checkpoint. Second
 * one: exit at once. A checkpoint save it interrupts leaves the previous checkpoint whole (the writer renames
 * a finished temporary file over it; the next save removes a temporary file left this way). */
static void on_signal(int sig) {
    if (stop_signal) {
        say("\ncnn: second signal: exiting at once, without saving (the last checkpoint written is intact)\n");
        _exit(TRAIN_EXIT_SECOND_SIGNAL);
    }
    stop_signal = sig;
    say(sig == SIGTERM ? "\ntrain: SIGTERM: stopping after the current batch (send it again to exit at once)\n"
                       : "\ntrain: interrupt: stopping after the current batch (press Ctrl-C again to exit at once)\n");
}

/* SIGINT and SIGTERM go to on_signal. SIGXFSZ is ignored, so a write past `ulimit -f` fails with EFBIG and
 * is reported like a full disk instead of killing the run. */
static void catch_signals(struct sigaction *old_int, struct sigaction *old_term, struct sigaction *old_xfsz) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT); /* one handler at a time: the second waits and sees the first */
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART; /* (a save in progress is not cut by EINTR) */
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &sa, old_xfsz);
}

static void format_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

/* the progress line's text: "epoch 1/3  batch 120/938  loss 0.5123  acc 0.8120  4838 img/s  ETA 12s" */
static void progress_text(char *buf, size_t n, size_t e, size_t epochs, size_t b, size_t nb, double loss,
                          double acc, double ips, double eta) {
    char t[32];
    format_eta(t, sizeof t, eta);
    snprintf(buf, n, "epoch %zu/%zu  batch %zu/%zu  loss %.4f  acc %.4f  %.0f img/s  ETA %s", e, epochs, b, nb, loss,
             acc, ips, t);
}

/* Options of this command that take no value (for recording the arguments in a checkpoint). */
static int is_flag(const char *a) {
    static const char *const flags[] = {"--nesterov", "--tta", "--no-shuffle", "--json", "--quiet", "--sync-bn", "--no-prefetch", NULL};
    for (size_t i = 0; flags[i]; i++)
        if (strcmp(a, flags[i]) == 0)
            return 1;
    return 0;
}

static int opt_is(const char *a, const char *name) {
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == 0 || a[n] == '=');
}

/* The value of --resume in argv (the last one), or NULL. */
static const char *find_resume(int argc, char **argv) {
    const char *r = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], "--resume=", 9) == 0)
            r = argv[i] + 9;
        else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc)
            r = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-' && !is_flag(argv[i]) && !strchr(argv[i], '=') && i + 1 < argc)
            i++;
    }
    return r;
}

/* The arguments a checkpoint keeps: options and their values, without the model file, without --resume,
 * --weights, --init (the checkpoint replaces them) and without --quiet and --json. *out points into argv (free the array only). */
static int record_args(int argc, char **argv, const char ***out, size_t *n_out) {
    const char **v = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *v);
    size_t n = 0;
    if (!v)
        return cli_error("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (a[0] != '-' || a[1] != '-')
            continue; /* the model file */
        int has_value = !is_flag(a) && !strchr(a, '=') && i + 1 < argc;
        /* (--quiet and --json only shape this run's output: a resumed run prints as its own options say) */
        int drop = opt_is(a, "--resume") || opt_is(a, "--weights") || opt_is(a, "--init") || opt_is(a, "--quiet") ||
                   opt_is(a, "--json");
        if (!drop) {
            v[n++] = a;
            if (has_value)
                v[n++] = argv[i + 1];
        }
        if (has_value)
            i++;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* ---- the model's recipe (part "recipe"; docs/formats.md "Recipe") ----
 * Each item of the model text's `recipe` line becomes the option of the same name (key_name ->
 * --key-name=VALUE; nesterov=1 -> --nesterov) placed before every other argument, so any option given on the
 * command line (or kept in a checkpoint) overrides it: the parser keeps the last value. augment= is handed
 * over separately (train_recipe.augment). The recipe items are not recorded in checkpoints: the model text
 * inside carries them. */
typedef struct train_recipe {
    char **argv;  /* n malloc'ed option strings */
    size_t n;
    char augment[CNN_RECIPE_TEXT_MAX];
    char text[2048]; /* the items as printed, for the start line */
    size_t line;
} train_recipe;

static void train_recipe_free(train_recipe *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->argv[i]);
    free(r->argv);
    r->argv = NULL;
    r->n = 0;
}

/* Whether option `name` appears in argv after the first n_skip arguments (the recipe's). */
static int user_gave(int argc, char **argv, size_t n_skip, const char *name) {
    for (int i = 1 + (int)n_skip; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (opt_is(argv[i], name))
            return 1;
    }
    return 0;
}

/* The model file among the arguments (the first positional), or NULL. */
static const char *find_model(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            if (!is_flag(argv[i]) && !strchr(argv[i], '=') && i + 1 < argc)
                i++;
            continue;
        }
        return argv[i];
    }
    return NULL;
}

/* The recipe of the model (or of the checkpoint's model text) as options. A model that cannot be read is
 * reported later by the normal path; only running out of memory fails here. */
static int load_recipe(const char *model, const char *checkpoint, train_recipe *out) {
    memset(out, 0, sizeof *out);
    if (!model && !checkpoint)
        return 0;
    cnn_ctx *ctx = NULL;
    char *text = NULL, *ftext = NULL;
    size_t len = 0;
    cnn_recipe r;
    memset(&r, 0, sizeof r);
    cnn_ctx_options co = cnn_ctx_options_default();
    co.threads = 1;
    if (cnn_ctx_create(&ctx, &co) != CNN_OK)
        return 0;
    if (checkpoint) {
        if (cnn_checkpoint_read_model(ctx, checkpoint, &text) == CNN_OK)
            len = strlen(text);
    } else {
        struct stat sb;
        FILE *f = stat(model, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(model, "rb") : NULL;
        if (f) { /* (at most the 64 MiB the model loader takes) */
            size_t cap = 0;
            for (;;) {
                if (len + 4096 > cap) {
                    char *nb = cap >= (64u << 20) ? NULL : realloc(ftext, cap ? 2 * cap : 8192);
                    if (!nb)
                        break;
                    ftext = nb;
                    cap = cap ? 2 * cap : 8192;
                }
                size_t got = fread(ftext + len, 1, cap - len, f);
                len += got;
                if (got == 0)
                    break;
            }
            fclose(f);
        }
    }
    const char *t = checkpoint ? text : ftext;
    if (t) /* (a bad recipe is reported by the model's own parse, with the rest) */
        cnn_recipe_parse(ctx, t, len, checkpoint ? checkpoint : model, &r);
    free(ftext);
    if (text)
        cnn_free(ctx, text);
    cnn_ctx_free(ctx);
    if (!r.set)
        return 0;
    out->line = r.line;
    cnn_recipe_format(&r, out->text, sizeof out->text);
    if (r.set & CNN_RECIPE_AUGMENT)
        snprintf(out->augment, sizeof out->augment, "%s", r.augment);
    r.set &= ~(unsigned)CNN_RECIPE_AUGMENT;
    out->argv = calloc(cnn_recipe_num_keys(), sizeof *out->argv);
    if (!out->argv)
        return cli_error("out of memory");
    for (size_t k = 0; k < cnn_recipe_num_keys(); k++) {
        unsigned bit;
        const char *key = cnn_recipe_key(k, &bit);
        int flag = bit == CNN_RECIPE_NESTEROV || bit == CNN_RECIPE_TTA; /* options without a value */
        if (!(r.set & bit) || (bit == CNN_RECIPE_NESTEROV && !r.nesterov) || (bit == CNN_RECIPE_TTA && !r.tta))
            continue;
        cnn_recipe one = r;
        one.set = bit;
        char item[CNN_RECIPE_TEXT_MAX + 64];
        cnn_recipe_format(&one, item, sizeof item); /* "key=value" */
        const char *val = strchr(item, '=');
        size_t kl = strlen(key);
        char *a = malloc(kl + strlen(item) + 8);
        if (!a) {
            train_recipe_free(out);
            return cli_error("out of memory");
        }
        strcpy(a, "--");
        for (size_t c = 0; c < kl; c++)
            a[2 + c] = key[c] == '_' ? '-' : key[c];
        a[2 + kl] = 0;
        if (!flag && val)
            strcat(a, val);
        out->argv[out->n++] = a;
    }
    return 0;
}

static int run_train_args(int argc, char **argv, const char *resume, const cnn_train_state *rstate,
                          const train_recipe *recipe);

static int run_train(int argc, char **argv) {
    /* --resume: the checkpoint's arguments first, then the command line's (later values win) */
    const char *resume_arg = find_resume(argc, argv);
    cnn_ctx *rctx = NULL;
    cnn_train_state rstate;
    char **merged = NULL;
    memset(&rstate, 0, sizeof rstate);
    int rc0;
    train_recipe recipe;
    if ((rc0 = load_recipe(resume_arg ? NULL : find_model(argc, argv), resume_arg, &recipe)) != 0)
        return rc0;
    if (resume_arg) {
        cnn_status rst;
        if ((rc0 = cli_check_file(resume_arg, "--resume checkpoint")) != 0) {
            train_recipe_free(&recipe);
            return rc0;
        }
        if (cli_ctx_create(1, &rctx) != 0) {
            train_recipe_free(&recipe);
            return CLI_EXIT_FAIL;
        }
        if ((rst = cnn_checkpoint_read_state(rctx, resume_arg, &rstate)) != CNN_OK) {
            rc0 = cli_lib_error(rctx, rst, resume_arg);
            cnn_ctx_free(rctx);
            train_recipe_free(&recipe);
            return rc0;
        }
    }
    /* the recipe's options, then a checkpoint's, then the command line's (later values win) */
    merged = malloc(((size_t)argc + recipe.n + rstate.n_args + 1) * sizeof *merged);
    if (!merged) {
        if (rctx) {
            cnn_free(rctx, (void *)rstate.args);
            cnn_ctx_free(rctx);
        }
        train_recipe_free(&recipe);
        return cli_error("out of memory");
    }
    size_t m = 0;
    merged[m++] = argv[0];
    for (size_t i = 0; i < recipe.n; i++)
        merged[m++] = recipe.argv[i];
    for (size_t i = 0; i < rstate.n_args; i++)
        merged[m++] = (char *)rstate.args[i];
    for (int i = 1; i < argc; i++)
        merged[m++] = argv[i];
    merged[m] = NULL;
    argc = (int)m;
    argv = merged;
    rc0 = run_train_args(argc, argv, resume_arg, &rstate, &recipe);
    free(merged);
    train_recipe_free(&recipe);
    if (rctx) {
        cnn_free(rctx, (void *)rstate.args);
        cnn_ctx_free(rctx);
    }
    return rc0;
}

/* "512M", "2G", "1048576": bytes (K, M, G are powers of 1024); at least 1 MiB. */
static int parse_bytes(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return -1;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    if (v > (unsigned long long)SIZE_MAX / mul || v * mul < (1ull << 20)) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* --val-split: the validation samples (gathered, normalised as the training split) as a dataset of their own;
 * *idx_out: from cnn_val_split, validation indices first, then the n - *n_val training ones. The split is a
 * function of --seed only. */
static int make_val_split(cnn_ctx *ctx, cnn_dataset *train, double fraction, uint64_t seed, cnn_dataset **val,
                          size_t **idx_out, size_t *n_val) {
    size_t n = cnn_dataset_size(train), nv = 0;
    cnn_shape sh = cnn_dataset_shape(train);
    size_t sample = sh.c * sh.h * sh.w;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return cli_error("out of memory splitting the training set");
    cnn_status st = cnn_val_split(ctx, n, fraction, mix64(seed ^ 0x76616c5f73706c74ull), idx, &nv);
    if (st != CNN_OK) {
        free(idx);
        return cli_lib_error(ctx, st, "--val-split");
    }
    float *x = malloc((nv * sample > 0 ? nv * sample : 1) * sizeof *x);
    int32_t *lab = malloc(nv * sizeof *lab);
    if (!x || !lab) {
        free(x);
        free(lab);
        free(idx);
        return cli_error("out of memory holding %zu validation samples", nv);
    }
    if ((st = cnn_dataset_gather(train, idx, nv, x, lab)) != CNN_OK ||
        (st = cnn_dataset_from_memory(ctx, x, lab, nv, sh, cnn_dataset_classes(train), val)) != CNN_OK) {
        free(x);
        free(lab);
        free(idx);
        return cli_lib_error(ctx, st, "--val-split");
    }
    free(x);
    free(lab);
    *idx_out = idx;
    *n_val = nv;
    return 0;
}

static int run_train_args(int argc, char **argv, const char *resume, const cnn_train_state *rstate,
                          const train_recipe *recipe) {
    const char *data = NULL, *out = NULL, *normalize = NULL, *log_path = NULL, *report_dir = NULL,
               *init_weights = NULL, *init_alias = NULL, *checkpoint = NULL, *resume_opt = NULL;
    int quiet = 0;
    const char *max_memory = NULL;
    size_t epochs = 1, batch = 64, threads = 0, mem_limit = 0, lanes = SIZE_MAX;
    uint64_t seed = 1, max_steps = 0, skip_bad = 0, skipped_bad = 0;
    double lr = 0.05, momentum = 0.9, weight_decay = 0, warmup_epochs = 0, step_epochs = 0, gamma = 0.1;
    int optimizer = CNN_OPT_SGD, schedule = CNN_SCHED_CONSTANT;
    int nesterov = 0, no_shuffle = 0, json = 0, tta = 0;
    const char *augment = NULL; /* --augment (part "augment") */
    int no_prefetch = 0;
    int sync_bn = 0;          /* distributed (train_dist.c) */
    double dist_timeout = 120;
    int seen_lr = 0, seen_momentum = 0, seen_step_epochs = 0, seen_gamma = 0;
    /* part "recipe" */
    double div_factor = 25, final_div_factor = 1e4, clip_norm = 0, label_smoothing = 0, ema_decay = 0, val_split = 0;
    int seen_div = 0, seen_final_div = 0, seen_label_smoothing = 0;
    const char *best_path = NULL;
    const char *list_path = NULL, *test_list = NULL; /* part "data" */
    const char **report_names = NULL;
    const cli_option opts[] = {
        {.name = "data", .kind = CLI_OPT_STRING, .out = &data},
        {.name = "list", .kind = CLI_OPT_STRING, .out = &list_path},       /* part "data" */
        {.name = "test-list", .kind = CLI_OPT_STRING, .out = &test_list},  /* part "data" */
        {.name = "epochs", .kind = CLI_OPT_SIZE, .out = &epochs, .umin = 1, .umax = 1000000},
        {.name = "batch", .kind = CLI_OPT_SIZE, .out = &batch, .umin = 1, .umax = 65536},
        {.name = "lr", .kind = CLI_OPT_DOUBLE, .out = &lr, .dmin = 0, .dmax = 1000, .min_exclusive = 1,
         .seen = &seen_lr},
        {.name = "optimizer", .kind = CLI_OPT_CHOICE, .out = &optimizer, .choices = optimizer_names},
        {.name = "momentum", .kind = CLI_OPT_DOUBLE, .out = &momentum, .dmin = 0, .dmax = 1,
         .seen = &seen_momentum},
        {.name = "nesterov", .kind = CLI_OPT_FLAG, .out = &nesterov},
        {.name = "weight-decay", .kind = CLI_OPT_DOUBLE, .out = &weight_decay, .dmin = 0, .dmax = 10},
        {.name = "schedule", .kind = CLI_OPT_CHOICE, .out = &schedule, .choices = schedule_names},
        {.name = "warmup-epochs", .kind = CLI_OPT_DOUBLE, .out = &warmup_epochs, .dmin = 0, .dmax = 1000000},
        {.name = "step-epochs", .kind = CLI_OPT_DOUBLE, .out = &step_epochs, .dmin = 0, .dmax = 1000000,
         .min_exclusive = 1, .seen = &seen_step_epochs},
        {.name = "gamma", .kind = CLI_OPT_DOUBLE, .out = &gamma, .dmin = 0, .dmax = 10, .min_exclusive = 1,
         .seen = &seen_gamma},
        {.name = "threads", .kind = CLI_OPT_SIZE, .out = &threads, .umin = 0, .umax = 1024},
        {.name = "lanes", .kind = CLI_OPT_SIZE, .out = &lanes, .umin = 0, .umax = CNN_LANES_MAX},
        {.name = "seed", .kind = CLI_OPT_U64, .out = &seed, .umin = 0, .umax = UINT64_MAX},
        {.name = "steps", .kind = CLI_OPT_U64, .out = &max_steps, .umin = 1, .umax = UINT64_MAX},
        {.name = "max-memory", .kind = CLI_OPT_STRING, .out = &max_memory},
        {.name = "skip-bad-batches", .kind = CLI_OPT_U64, .out = &skip_bad, .umin = 0, .umax = UINT64_MAX},
        {.name = "no-shuffle", .kind = CLI_OPT_FLAG, .out = &no_shuffle},
        {.name = "out", .kind = CLI_OPT_STRING, .out = &out},
        {.name = "json", .kind = CLI_OPT_FLAG, .out = &json},
        {.name = "normalize", .kind = CLI_OPT_STRING, .out = &normalize},
        {.name = "augment", .kind = CLI_OPT_STRING, .out = &augment},
        {.name = "no-prefetch", .kind = CLI_OPT_FLAG, .out = &no_prefetch},
        {.name = "quiet", .kind = CLI_OPT_FLAG, .out = &quiet},
        {.name = "log", .kind = CLI_OPT_STRING, .out = &log_path},
        {.name = "report", .kind = CLI_OPT_STRING, .out = &report_dir},
        {.name = "weights", .kind = CLI_OPT_STRING, .out = &init_weights},
        {.name = "init", .kind = CLI_OPT_STRING, .out = &init_alias},
        {.name = "checkpoint", .kind = CLI_OPT_STRING, .out = &checkpoint},
        {.name = "resume", .kind = CLI_OPT_STRING, .out = &resume_opt},
        /* part "recipe" (issue 5): training features */
        {.name = "div-factor", .kind = CLI_OPT_DOUBLE, .out = &div_factor, .dmin = 1, .dmax = 1e6, .seen = &seen_div},
        {.name = "final-div-factor", .kind = CLI_OPT_DOUBLE, .out = &final_div_factor, .dmin = 1, .dmax = 1e9,
         .seen = &seen_final_div},
        {.name = "clip-norm", .kind = CLI_OPT_DOUBLE, .out = &clip_norm, .dmin = 0, .dmax = 1e9, .min_exclusive = 1},
        {.name = "label-smoothing", .kind = CLI_OPT_DOUBLE, .out = &label_smoothing, .dmin = 0, .dmax = 0.999999,
         .seen = &seen_label_smoothing},
        {.name = "ema", .kind = CLI_OPT_DOUBLE, .out = &ema_decay, .dmin = 0, .dmax = 0.99999999, .min_exclusive = 1},
        {.name = "val-split", .kind = CLI_OPT_DOUBLE, .out = &val_split, .dmin = 0, .dmax = 0.99, .min_exclusive = 1},
        {.name = "best", .kind = CLI_OPT_STRING, .out = &best_path},
        {.name = "tta", .kind = CLI_OPT_FLAG, .out = &tta},
        {.name = "sync-bn", .kind = CLI_OPT_FLAG, .out = &sync_bn},
        {.name = "dist-timeout", .kind = CLI_OPT_DOUBLE, .out = &dist_timeout, .dmin = 0, .dmax = 1e6},
    };
    const char *pos[1];
    size_t n_pos;
    int help;
    int rc = cli_parse_args("train", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, &n_pos, &help);
    if (rc)
        return rc;
    if (help) {
        fputs(train_help, stdout);
        return CLI_EXIT_OK;
    }
    if (init_alias) {
        if (init_weights && strcmp(init_weights, init_alias) != 0)
            return cli_usage_error("train: --init and --weights name the same thing; give one");
        init_weights = init_alias;
    }
    if (resume && n_pos)
        return cli_usage_error("train: --resume takes the model from the checkpoint; drop '%s'", pos[0]);
    if (resume && init_weights)
        return cli_usage_error("train: --resume and --weights/--init cannot be combined (the checkpoint has the "
                               "weights)");
    if (!resume && n_pos != 1)
        return cli_usage_error("train: expected a model file (usage: cnn train MODEL.cnn --data DIR [options], or "
                               "cnn train --resume CHECKPOINT)");
    if (list_path && data)
        return cli_usage_error("train: give --data DIR or --list FILE, not both");
    if (list_path)
        data = list_path;
    if (!data)
        return cli_usage_error("train: --data DIR is required (a folder of IDX files, CIFAR-10 batches or train/ and "
                               "test/ image folders), or --list FILE");
    /* an item of the recipe that a command-line choice makes moot is dropped (recipe optimizer=sgd momentum=0.9
     * with --optimizer adam); given on the command line it is an error */
    if (optimizer != CNN_OPT_SGD && !user_gave(argc, argv, recipe->n, "--momentum") &&
        !user_gave(argc, argv, recipe->n, "--nesterov"))
        seen_momentum = nesterov = 0;
    if (schedule != CNN_SCHED_STEP && !user_gave(argc, argv, recipe->n, "--step-epochs") &&
        !user_gave(argc, argv, recipe->n, "--gamma"))
        seen_step_epochs = seen_gamma = 0;
    if (schedule != CNN_SCHED_ONECYCLE && !user_gave(argc, argv, recipe->n, "--div-factor") &&
        !user_gave(argc, argv, recipe->n, "--final-div-factor"))
        seen_div = seen_final_div = 0;
    if (schedule != CNN_SCHED_ONECYCLE && (seen_div || seen_final_div))
        return cli_usage_error("train: --div-factor and --final-div-factor apply only to --schedule onecycle");
    if (best_path && !(val_split > 0))
        return cli_usage_error("train: --best FILE keeps the weights of the best validation accuracy: it needs "
                               "--val-split F");
    if (best_path && (rc = cli_check_output(best_path, "--best")) != 0)
        return rc;
    if (optimizer != CNN_OPT_SGD && (seen_momentum || nesterov))
        return cli_usage_error("train: --momentum and --nesterov apply only to --optimizer sgd");
    if (nesterov && !(momentum > 0))
        return cli_usage_error("train: --nesterov needs --momentum greater than 0");
    if (schedule != CNN_SCHED_STEP && (seen_step_epochs || seen_gamma))
        return cli_usage_error("train: --step-epochs and --gamma apply only to --schedule step");
    if (schedule == CNN_SCHED_STEP && !seen_step_epochs)
        return cli_usage_error("train: --schedule step needs --step-epochs S");
    double norm_mean = 0, norm_std = 1;
    if (normalize && (rc = cli_parse_normalize("train", normalize, &norm_mean, &norm_std)) != 0)
        return rc;
    if (!seen_lr && optimizer != CNN_OPT_SGD)
        lr = 0.001;
    const char *model = resume ? resume : pos[0];
    if ((!resume && (rc = cli_check_file(model, "model file")) != 0) || (rc = cli_check_data(data)) != 0)
        return rc;
    if (checkpoint && (rc = cli_check_output(checkpoint, "--checkpoint")) != 0)
        return rc;
    const char **rec_args = NULL;
    size_t n_rec_args = 0;
    if (out && (rc = cli_check_output(out, "--out")) != 0)
        return rc;
    if (log_path && (rc = cli_check_output(log_path, "--log")) != 0)
        return rc;
    if (init_weights && (rc = cli_check_file(init_weights, "--weights file")) != 0)
        return rc;
    if (report_dir) { /* fail before training, not after it */
        struct stat sb;
        if (mkdir(report_dir, 0777) != 0 && errno != EEXIST)
            return cli_error("--report '%s': %s", report_dir, strerror(errno));
        if (stat(report_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return cli_error("--report '%s' is not a folder", report_dir);
    }

    if (max_memory && parse_bytes(max_memory, &mem_limit) != 0)
        return cli_usage_error("train: --max-memory: expected a size like 512M or 2G (at least 1M), got '%s'", max_memory);
    cnn_ctx *ctx = NULL;
    cnn_net *net = NULL;
    cnn_dataset *train = NULL, *test = NULL;
    cnn_optimizer *opt = NULL;
    float *x = NULL;
    int32_t *labels = NULL;
    cnn_loader *loader = NULL; /* part "augment": the training batches, prepared on a background thread */
    /* part "recipe": validation split (val, train_map: the training samples left), EMA of the weights */
    cnn_dataset *val = NULL;
    size_t *split_idx = NULL, *train_map = NULL, n_val = 0;
    cnn_ema *ema = NULL;
    cnn_lanes *ln = NULL;
    double best_val = NAN, last_val_acc = NAN, last_val_loss = NAN;
    FILE *logf = NULL;
    cli_epoch_metrics *hist = NULL;
    cli_train_point *pts = NULL;
    size_t n_pts = 0, cap_pts = 0;
    struct sigaction old_int, old_term, old_xfsz;
    int signals_caught = 0, output_failed = 0; /* output_failed: a --log or --report write failed */
    int tty = !quiet && isatty(fileno(stderr));
    cnn_status st;
    rc = CLI_EXIT_FAIL;

    if (cli_ctx_create(threads, &ctx) == 0 && mem_limit)
        cnn_ctx_set_memory_limit(ctx, mem_limit);
    if (!ctx)
        goto cleanup;
    if ((rc = cli_dist_begin(ctx, batch, sync_bn, dist_timeout)) != 0) /* mpirun: join the job */
        goto cleanup;
    rc = CLI_EXIT_FAIL;
    cli_dist_quiet_rank(&quiet, &tty, &json, &out, &checkpoint, &log_path, &report_dir);
    if (record_args(argc - (int)recipe->n, argv + recipe->n, &rec_args, &n_rec_args) != 0) /* not the recipe's */
        goto cleanup;
    if ((st = resume ? cnn_checkpoint_load(ctx, resume, &net) : cnn_net_load(ctx, model, &net)) != CNN_OK) {
        cli_lib_error(ctx, st, model);
        goto cleanup;
    }
    if (!cnn_net_has_loss(net)) {
        cli_error("model '%s' has no loss layer: end it with softmax_ce to train a classifier", model);
        goto cleanup;
    }
    if (seen_label_smoothing && (st = cnn_net_set_label_smoothing(net, label_smoothing)) != CNN_OK) {
        cli_lib_error(ctx, st, "--label-smoothing");
        goto cleanup;
    }
    if (cli_load_split_for(ctx, cnn_net_input_shape(net), data, "train", NULL, quiet, &train) != 0)
        goto cleanup;
    {
        struct stat dsb;
        int data_is_list = stat(data, &dsb) == 0 && !S_ISDIR(dsb.st_mode);
        if (data_is_list && !test_list && !quiet)
            fprintf(stderr, "train: no --test-list: the test split is the training list %s\n", data);
        if (cli_load_split_for(ctx, cnn_net_input_shape(net), test_list ? test_list : data, "test", train, quiet,
                               &test) != 0)
            goto cleanup;
    }
    /* the training split is normalised by the loader, after the augmentation (part "augment") */
    if (normalize && cli_apply_normalize(test, norm_mean, norm_std) != 0)
        goto cleanup;
    if (cli_check_data_fits(net, train, data, "train", 1) != 0 ||
        cli_check_data_fits(net, test, data, "test", 0) != 0)
        goto cleanup;

    size_t n_train = cnn_dataset_size(train), n_test = cnn_dataset_size(test);
    if (val_split > 0) { /* hold out a seeded fraction of the training split */
        if (make_val_split(ctx, train, val_split, seed, &val, &split_idx, &n_val) != 0)
            goto cleanup;
        train_map = split_idx + n_val;
        n_train -= n_val;
        if (normalize && cli_apply_normalize(val, norm_mean, norm_std) != 0) /* the same values as before */
            goto cleanup;
    }
    cnn_shape in = cnn_net_input_shape(net);
    size_t sample = in.c * in.h * in.w; /* the library checked this product when it inferred shapes */
    if (sample == 0 || batch > SIZE_MAX / sizeof(float) / sample) {
        cli_error("batch %zu of %zu-float samples is too large", batch, sample);
        goto cleanup;
    }
    if ((st = cnn_net_compile(net, batch, CNN_COMPILE_TRAIN)) != CNN_OK) {
        cli_lib_error(ctx, st, "compiling the model");
        goto cleanup;
    }
    if (!resume && (st = cnn_net_init_params(net, seed, CNN_INIT_DEFAULT)) != CNN_OK) {
        cli_lib_error(ctx, st, "initialising the parameters");
        goto cleanup;
    }
    if (init_weights && (st = cnn_net_load_weights(net, init_weights)) != CNN_OK) {
        cli_lib_error(ctx, st, init_weights);
        goto cleanup;
    }
    if (!resume)
        cnn_net_set_seed(net, seed); /* a checkpoint restored the dropout RNG */
    if (cli_dist_prepare(net, quiet) != 0) /* rank 0's weights to all, gradient allreduce hooks */
        goto cleanup;
    if (log_path && !(logf = fopen(log_path, resume ? "a" : "w"))) {
        cli_error("--log '%s': cannot open for writing", log_path);
        goto cleanup;
    }

    cnn_optimizer_options oo = cnn_optimizer_options_default((cnn_optimizer_kind)optimizer);
    oo.lr = (float)lr;
    oo.weight_decay = (float)weight_decay;
    if (optimizer == CNN_OPT_SGD) {
        oo.momentum = (float)momentum;
        oo.nesterov = nesterov;
    }
    if ((st = cnn_optimizer_create(net, &oo, &opt)) != CNN_OK) {
        cli_lib_error(ctx, st, "creating the optimizer");
        goto cleanup;
    }
    if (resume && (st = cnn_checkpoint_load_optimizer(opt, resume)) != CNN_OK) {
        cli_lib_error(ctx, st, resume);
        goto cleanup;
    }
    if (ema_decay > 0) {
        if ((st = cnn_ema_create(net, ema_decay, &ema)) != CNN_OK) {
            cli_lib_error(ctx, st, "--ema");
            goto cleanup;
        }
        if (resume && (st = cnn_checkpoint_load_ema(ema, resume)) != CNN_OK) {
            if (st != CNN_ERR_FORMAT) {
                cli_lib_error(ctx, st, resume);
                goto cleanup;
            }
            if (!quiet)
                fprintf(stderr, "train: note: %s has no EMA of the weights; the EMA starts from the current weights\n",
                        resume);
        }
    }
    if (resume && best_path && (st = cnn_checkpoint_read_best(ctx, resume, &best_val)) != CNN_OK) {
        cli_lib_error(ctx, st, resume);
        goto cleanup;
    }

    /* batch lanes (cnn.h): not with data-parallel ranks, whose gradient hooks see one pass's gradients */
    lanes = cli_dist_size() > 1 ? 1 : cli_lanes_choice(lanes, cnn_ctx_threads(ctx), batch);
    if (lanes > 1 && (st = cnn_lanes_create(net, lanes, &ln)) != CNN_OK) {
        cli_lib_error(ctx, st, "creating the batch lanes");
        goto cleanup;
    }
    if (ln && mem_limit && cnn_ctx_memory_in_use(ctx) + cnn_lanes_memory(ln) > mem_limit) {
        cli_error("--max-memory %.1f MiB: the network, data and optimizer hold %.1f MiB and the %zu batch lanes "
                  "%.1f MiB more; raise the limit or use --lanes 1",
                  (double)mem_limit / 1048576.0, (double)cnn_ctx_memory_in_use(ctx) / 1048576.0, lanes,
                  (double)cnn_lanes_memory(ln) / 1048576.0);
        goto cleanup;
    }

    x = malloc(batch * sample * sizeof *x);
    labels = malloc(batch * sizeof *labels);
    hist = calloc(epochs < 100000 ? epochs : 100000, sizeof *hist);
    if (!x || !labels || !hist) {
        cli_error("out of memory allocating a batch of %zu samples", batch);
        goto cleanup;
    }
    char aug_line[320] = ""; /* part "augment": printed after the start line */
    { /* part "augment": the loader (shuffle of train_map's positions per epoch, augmentation, normalisation) */
        cnn_augment_spec aug = cnn_augment_spec_default();
        const char *aug_text = augment ? augment : recipe->augment[0] ? recipe->augment : NULL;
        if (aug_text && (st = cnn_augment_parse(ctx, aug_text, &aug)) != CNN_OK) {
            if (augment)
                rc = cli_usage_error("train: --augment: %s", cnn_ctx_last_error(ctx));
            else
                cli_error("%s:%zu: recipe augment: %s", model, recipe->line, cnn_ctx_last_error(ctx));
            goto cleanup;
        }
        float nm = (float)norm_mean, ns = (float)norm_std;
        cnn_loader_options lo = cnn_loader_options_default();
        lo.batch = batch;
        lo.shuffle = !no_shuffle;
        lo.seed = seed;
        lo.augment = aug;
        if (normalize) {
            lo.mean = &nm;
            lo.std = &ns;
            lo.channels = 1;
        }
        lo.indices = train_map;
        lo.n_indices = train_map ? n_train : 0;
        lo.prefetch = no_prefetch ? 0 : 2;
        if ((st = cnn_loader_create(ctx, train, &lo, &loader)) != CNN_OK) {
            cli_lib_error(ctx, st, "the training batches");
            goto cleanup;
        }
        if (!quiet && cnn_augment_enabled(&aug)) {
            char *t = NULL;
            if (cnn_augment_to_text(ctx, &aug, &t) == CNN_OK) {
                snprintf(aug_line, sizeof aug_line, "train: augmentation %s%s\n", t,
                         no_prefetch ? "" : " (prepared on a background thread)");
                cnn_free(ctx, t);
            }
        }
    }

    size_t steps_per_epoch = (n_train + batch - 1) / batch;
    cnn_schedule sched = {
        .kind = (cnn_schedule_kind)schedule,
        .base_lr = (float)lr,
        .warmup_steps = warmup_epochs * (double)steps_per_epoch,
        .total_steps = (double)epochs * (double)steps_per_epoch,
        .step_size = step_epochs * (double)steps_per_epoch,
        .gamma = (float)gamma,
        .min_lr = 0,
    };

    if (!quiet) {
        char shape[64], lanes_text[32];
        snprintf(lanes_text, sizeof lanes_text, "%zu", lanes);
        cli_format_shape(shape, sizeof shape, cnn_dataset_shape(train));
        fprintf(stderr,
                "train: model %s (%zu layers, %zu parameters); data %s (%s): %zu train / %zu test, %s, %zu classes; "
                "batch %zu, %zu steps/epoch; threads %zu, isa %s%s%s\n",
                model, cnn_net_num_layers(net), cnn_net_param_count(net), data, cnn_dataset_kind(train), n_train, n_test, shape,
                cnn_dataset_classes(train), batch, steps_per_epoch, cnn_ctx_threads(ctx), cnn_ctx_isa(ctx),
                ln ? ", batch lanes " : "", ln ? lanes_text : "");
        if (recipe->line)
            fprintf(stderr, "train: recipe (%s:%zu; options given override it): %s\n", model, recipe->line,
                    recipe->text);
        if (val)
            fprintf(stderr, "train: validation: %zu samples held out of the training split (--val-split %g)\n", n_val,
                    val_split);
        /* everything a step needs is allocated by now: this is what the run holds while it trains */
        fprintf(stderr, "train: memory %.1f MiB allocated for data, network, activations and optimizer", 
                (double)(cnn_ctx_memory_in_use(ctx) + cnn_lanes_memory(ln)) / 1048576.0);
        if (mem_limit) fprintf(stderr, " (limit %.1f MiB)", (double)mem_limit / 1048576.0);
        fputc('\n', stderr);
        fflush(stderr);
    }

    if (aug_line[0]) {
        fputs(aug_line, stderr);
        fflush(stderr);
    }
    if (cli_net_take_class_names(ctx, net, train) != 0) /* written with every checkpoint and weights file */
        goto cleanup;
    catch_signals(&old_int, &old_term, &old_xfsz);
    signals_caught = 1;
    /* train points for the report's curves: running means over about 25 stretches of each epoch */
    size_t pt_every = steps_per_epoch / 25 ? steps_per_epoch / 25 : 1;
    size_t plain_every = steps_per_epoch / 10 ? steps_per_epoch / 10 : 1;
    /* where a stopped run resumes (1-based epoch, batch): the position of the last checkpoint state, so the stop
     * line and `--resume` agree even when the signal came in an epoch's last batch or its evaluation */
    size_t stopped_epoch = 0, stopped_batch = 0;
    float last_lr = (float)lr;
    uint64_t step = resume ? rstate->step : 0; /* optimizer steps so far */
    size_t start_epoch = resume ? (size_t)rstate->epoch : 0, start_batch = resume ? (size_t)rstate->batch : 0;
    if (start_batch >= steps_per_epoch) { /* (a different --batch than the checkpoint's) */
        start_epoch++;
        start_batch = 0;
    }
    if (resume && !quiet)
        fprintf(stderr, "train: resuming %s at epoch %zu/%zu, batch %zu of %zu (optimizer step %llu)\n", resume,
                start_epoch + 1, epochs, start_batch, steps_per_epoch, (unsigned long long)step);
    if (resume && start_epoch >= epochs && !quiet)
        fprintf(stderr, "train: the checkpoint has done %zu of %zu epochs: nothing to train (raise --epochs)\n",
                start_epoch, epochs);
    cnn_train_state ck = {.seed = seed, .n_args = n_rec_args, .args = rec_args};
    size_t epochs_run = 0;
    double total_seconds = 0, total_images = 0;
    double last_loss = NAN, last_train_acc = NAN, last_test_acc = NAN, last_test_loss = NAN;
    for (size_t e = start_epoch; e < epochs; e++) {
        if (max_steps && step >= max_steps)
            break;
        if ((st = cnn_loader_seek(loader, e, e == start_epoch ? start_batch : 0)) != CNN_OK) { /* resume */
            cli_lib_error(ctx, st, "the training batches");
            goto cleanup;
        }
        double loss_sum = 0, pt_loss = 0;
        size_t correct = 0, seen = 0, pt_correct = 0, pt_seen = 0;
        double t0 = cli_now(), last_draw = 0;
        size_t batches_run = 0;
        size_t epoch_steps; /* the batch index this epoch ends at (--steps may cut it) */
        size_t b_first = e == start_epoch ? start_batch : 0, b_end = b_first;
        if (max_steps && max_steps - step < steps_per_epoch - b_first)
            epoch_steps = b_first + (size_t)(max_steps - step);
        else
            epoch_steps = steps_per_epoch;
        for (size_t b = b_first; b < steps_per_epoch; b++) {
            b_end = b;
            if (max_steps && step >= max_steps)
                break;
            if (stop_signal) break; /* (the position is set from the checkpoint state below) */
            size_t off = b * batch, off0 = off;
            size_t nb = n_train - off < batch ? n_train - off : batch, got = 0;
            const char *what = "gathering a batch";
            cnn_loss_stats ls;
            /* the whole (global) batch b of epoch e, then this rank's part of it */
            if ((st = cnn_loader_next(loader, x, labels, &got)) != CNN_OK)
                goto step_failed;
            if (got != nb) {
                cli_error("internal error: the loader gave %zu samples for batch %zu, expected %zu", got, b + 1, nb);
                goto cleanup;
            }
            if (cli_dist_shard_batch(&off, &nb)) /* mpirun: this rank's part of the global batch */
                continue;
            if (ln) { /* forward, loss and backward in batch lanes */
                if ((st = cnn_lanes_step(ln, x + (off - off0) * sample, labels + (off - off0), NULL, nb, &ls, &what)) !=
                    CNN_OK)
                    goto step_failed;
            } else {
                what = "forward";
                if ((st = cnn_net_forward(net, x + (off - off0) * sample, nb, 1)) != CNN_OK)
                    goto step_failed;
                what = "loss";
                if ((st = cnn_net_loss(net, labels + (off - off0), NULL, &ls)) != CNN_OK)
                    goto step_failed;
            }
            if (!isfinite(ls.loss)) {
                st = CNN_ERR_NUMERIC;
                what = "loss";
                goto step_failed;
            }
            what = "backward";
            if (!ln && (st = cnn_net_backward(net, NULL)) != CNN_OK)
                goto step_failed;
            what = "gradient allreduce";
            if ((st = cli_dist_grads()) != CNN_OK)
                goto step_failed;
            what = "gradients";
            if ((st = cnn_net_check_gradients(net)) != CNN_OK)
                goto step_failed;
            what = "clipping the gradients";
            if (clip_norm > 0 && (st = cnn_net_clip_grad_norm(net, clip_norm, NULL)) != CNN_OK)
                goto step_failed;
            what = "optimizer step";
            float step_lr = schedule == CNN_SCHED_ONECYCLE
                                ? cnn_onecycle_lr(lr, sched.total_steps, sched.warmup_steps, div_factor,
                                                  final_div_factor, (double)step)
                                : cnn_schedule_lr(&sched, (double)step);
            last_lr = step_lr;
            if ((st = cnn_optimizer_step(opt, step_lr)) != CNN_OK)
                goto step_failed;
            what = "EMA update";
            if (ema && (st = cnn_ema_update(ema)) != CNN_OK)
                goto step_failed;
            step++;
            b_end = b + 1;
            loss_sum += ls.loss * (double)nb;
            correct += ls.correct;
            seen += nb;
            batches_run++;
            pt_loss += ls.loss * (double)nb;
            pt_correct += ls.correct;
            pt_seen += nb;
            if ((b + 1) % pt_every == 0 || b + 1 == epoch_steps) {
                if (n_pts == cap_pts) {
                    size_t nc = cap_pts ? 2 * cap_pts : 64;
                    cli_train_point *np = realloc(pts, nc * sizeof *np);
                    if (!np) {
                        cli_error("out of memory recording the training curve");
                        goto cleanup;
                    }
                    pts = np;
                    cap_pts = nc;
                }
                pts[n_pts].x = (double)e + (double)(b + 1) / (double)steps_per_epoch;
                pts[n_pts].loss = pt_loss / (double)pt_seen;
                pts[n_pts].acc = (double)pt_correct / (double)pt_seen;
                n_pts++;
                pt_loss = 0;
                pt_correct = pt_seen = 0;
            }
            if (!quiet) {
                double now = cli_now(), el = now - t0;
                int last = b + 1 == epoch_steps;
                if (tty ? (now - last_draw >= 0.1 || last) : ((b + 1) % plain_every == 0 && !last)) {
                    char line[256];
                    double ips = el > 0 ? (double)seen / el : 0;
                    double eta = batches_run ? el / (double)batches_run * (double)(epoch_steps - (b + 1)) : -1;
                    progress_text(line, sizeof line, e + 1, epochs, b + 1, steps_per_epoch, loss_sum / (double)seen,
                                  (double)correct / (double)seen, ips, eta);
                    if (tty)
                        fprintf(stderr, "\r%s\033[K", line);
                    else
                        fprintf(stderr, "train: %s\n", line);
                    fflush(stderr);
                    last_draw = now;
                }
            }
            continue;
        step_failed: {
            const char *msg = cnn_ctx_last_error(ctx);
            if (st == CNN_ERR_NUMERIC && (strcmp(what, "loss") == 0 || strcmp(what, "gradients") == 0)) {
                /* the divergence guard: name where it first appeared; never step or checkpoint on it */
                char where[1024];
                /* (lanes name the layer and the lane's samples themselves) */
                if (strcmp(what, "loss") == 0 && !ln && cnn_net_check_activations(net) != CNN_OK)
                    snprintf(where, sizeof where, "%s", cnn_ctx_last_error(ctx));
                else
                    snprintf(where, sizeof where, "%s", msg && msg[0] ? msg : cnn_status_string(st));
                if (skipped_bad < skip_bad) {
                    skipped_bad++;
                    fprintf(stderr, "%scnn: warning: skipping batch %zu of epoch %zu: non-finite %s (%s); %llu of %llu "
                                    "skips used\n",
                            tty ? "\r\033[K" : "", b + 1, e + 1, what, where, (unsigned long long)skipped_bad,
                            (unsigned long long)skip_bad);
                    continue;
                }
                cli_error("non-finite %s at epoch %zu/%zu, step %zu of %zu (optimizer step %llu): %s; stopped "
                          "before the optimizer step%s; try a smaller --lr%s",
                          what, e + 1, epochs, b + 1, steps_per_epoch, (unsigned long long)step + 1, where,
                          checkpoint ? ", the last checkpoint is kept" : "",
                          skip_bad ? "" : " or --skip-bad-batches K");
                goto cleanup;
            }
            cli_error("epoch %zu/%zu, step %zu (optimizer step %llu): %s: %s", e + 1, epochs, b + 1,
                      (unsigned long long)step + 1, what, msg && msg[0] ? msg : cnn_status_string(st));
            goto cleanup;
        }
        }
        double seconds = cli_now() - t0;
        if (tty) {
            fputs("\r\033[K", stderr); /* the epoch line replaces the progress line */
            fflush(stderr);
        }
        ck.epoch = b_end >= steps_per_epoch ? e + 1 : e;
        ck.batch = b_end >= steps_per_epoch ? 0 : b_end;
        ck.step = step;
        stopped_epoch = (size_t)ck.epoch + 1;
        stopped_batch = (size_t)ck.batch;
        if (stop_signal) {
            if (checkpoint && (st = cnn_checkpoint_save_ex(net, opt, ema, &ck, best_val, checkpoint)) != CNN_OK) {
                cli_lib_error(ctx, st, checkpoint);
                goto cleanup;
            }
            break; /* the partial epoch is not evaluated */
        }
        if (cli_dist_epoch_end(net, e + 1, &loss_sum, &correct, &seen) != 0) /* sums over ranks, checksums */
            goto cleanup;
        epochs_run++;
        total_seconds += seconds;
        total_images += (double)seen;

        cnn_eval_result ev;
        memset(&ev, 0, sizeof ev);
        if (ema && (st = cnn_ema_swap(ema)) != CNN_OK) { /* evaluate the EMA weights */
            cli_lib_error(ctx, st, "--ema");
            goto cleanup;
        }
        if (val) {
            cnn_eval_result vr;
            memset(&vr, 0, sizeof vr);
            if ((st = cli_dist_evaluate(net, val, batch, 0, &vr)) != CNN_OK) {
                cli_lib_error(ctx, st, "evaluating the validation split");
                goto cleanup;
            }
            if (vr.confusion)
                cnn_free(ctx, vr.confusion);
            last_val_acc = vr.accuracy;
            last_val_loss = vr.loss;
            if (best_path && !(vr.accuracy <= best_val)) { /* first epoch (NAN) or better */
                if ((st = cnn_net_save_weights(net, best_path)) != CNN_OK) {
                    cli_lib_error(ctx, st, best_path);
                    goto cleanup;
                }
                best_val = vr.accuracy;
                if (!quiet)
                    fprintf(stderr, "train: best val_acc %.4f so far: weights%s saved to %s\n", best_val,
                            ema ? " (EMA)" : "", best_path);
            }
        }
        if ((st = cli_dist_evaluate(net, test, batch, 0, &ev)) != CNN_OK) {
            const char *msg = cnn_ctx_last_error(ctx);
            cli_error("epoch %zu/%zu: evaluating the test split: %s", e + 1, epochs,
                      msg && msg[0] ? msg : cnn_status_string(st));
            goto cleanup;
        }
        if (ev.confusion)
            cnn_free(ctx, ev.confusion);
        if (ema && (st = cnn_ema_swap(ema)) != CNN_OK) { /* back to the raw weights */
            cli_lib_error(ctx, st, "--ema");
            goto cleanup;
        }
        last_loss = seen ? loss_sum / (double)seen : NAN;
        last_train_acc = seen ? (double)correct / (double)seen : NAN;
        last_test_acc = ev.accuracy;
        last_test_loss = ev.loss;
        char val_text[32] = "";
        if (val)
            snprintf(val_text, sizeof val_text, "  val_acc %.4f", last_val_acc);
        printf("epoch %zu/%zu  loss %.4f  train_acc %.4f%s  test_acc %.4f  %.1f s  %.0f img/s\n", e + 1, epochs,
               last_loss, last_train_acc, val_text, last_test_acc, seconds,
               seconds > 0 ? (double)seen / seconds : 0.0);
        fflush(stdout);
        if (epochs_run <= 100000) {
            cli_epoch_metrics *h = &hist[epochs_run - 1];
            h->epoch = e + 1;
            h->steps = step;
            h->train_loss = last_loss;
            h->train_acc = last_train_acc;
            h->test_loss = last_test_loss;
            h->test_acc = last_test_acc;
            h->seconds = seconds;
            h->images_per_second = seconds > 0 ? (double)seen / seconds : 0.0;
            h->lr = last_lr;
            h->x = (double)e + (double)batches_run / (double)steps_per_epoch;
        }
        if (logf) {
            cli_json j;
            cli_json_init(&j, logf);
            cli_json_begin_object(&j);
            cli_json_key(&j, "epoch");
            cli_json_uint(&j, e + 1);
            cli_json_key(&j, "epochs");
            cli_json_uint(&j, epochs);
            cli_json_key(&j, "steps");
            cli_json_uint(&j, step);
            cli_json_key(&j, "train_loss");
            cli_json_double(&j, last_loss);
            cli_json_key(&j, "train_acc");
            cli_json_double(&j, last_train_acc);
            cli_json_key(&j, "test_loss");
            cli_json_double(&j, last_test_loss);
            if (val) {
                cli_json_key(&j, "val_loss");
                cli_json_double(&j, last_val_loss);
                cli_json_key(&j, "val_acc");
                cli_json_double(&j, last_val_acc);
            }
            cli_json_key(&j, "test_acc");
            cli_json_double(&j, last_test_acc);
            cli_json_key(&j, "seconds");
            cli_json_double(&j, seconds);
            cli_json_key(&j, "images_per_second");
            cli_json_double(&j, seconds > 0 ? (double)seen / seconds : 0.0);
            cli_json_key(&j, "lr");
            cli_json_double(&j, last_lr);
            cli_json_end_object(&j);
            cli_json_finish(&j);
            /* a failed log write (disk full, file size limit) does not stop training: warn, stop logging */
            if (fflush(logf) != 0 || ferror(logf)) {
                cli_error("--log '%s': write failed: %s; training continues without the log", log_path,
                          strerror(errno ? errno : EIO));
                fclose(logf);
                logf = NULL;
                output_failed = 1;
            }
        }
        if (checkpoint) {
            if ((st = cnn_checkpoint_save_ex(net, opt, ema, &ck, best_val, checkpoint)) != CNN_OK) {
                cli_lib_error(ctx, st, checkpoint);
                goto cleanup;
            }
        }
    }

    /* training is over: --out and the report get the EMA weights */
    if (ema && (st = cnn_ema_swap(ema)) != CNN_OK) {
        cli_lib_error(ctx, st, "--ema");
        goto cleanup;
    }
    double test_acc_tta = NAN;
    if (tta && epochs_run && !stop_signal) { /* --tta: the final weights once more, with flip TTA */
        cnn_eval_result ev;
        memset(&ev, 0, sizeof ev);
        if ((st = cli_dist_evaluate(net, test, batch, 1, &ev)) != CNN_OK) {
            cli_lib_error(ctx, st, "--tta: evaluating the test split");
            goto cleanup;
        }
        if (ev.confusion)
            cnn_free(ctx, ev.confusion);
        test_acc_tta = ev.accuracy;
        printf("test_acc_tta %.4f  (the final weights%s, horizontal-flip test-time augmentation)\n", test_acc_tta,
               ema ? " (EMA)" : "");
        fflush(stdout);
    }
    if (out) {
        if ((st = cnn_net_save_weights(net, out)) != CNN_OK) {
            cli_lib_error(ctx, st, out);
            goto cleanup;
        }
        if (!quiet)
            fprintf(stderr, "train: weights saved to %s\n", out);
    }
    if (report_dir) {
        char s_epochs[32], s_batch[32], s_lr[48], s_mom[48], s_wd[48], s_seed[32], s_thr[48], s_steps[48],
            s_par[32], s_norm[64], s_data[64];
        snprintf(s_epochs, sizeof s_epochs, "%zu (ran %zu)", epochs, epochs_run);
        snprintf(s_batch, sizeof s_batch, "%zu", batch);
        snprintf(s_lr, sizeof s_lr, "%g (%s schedule)", lr, schedule_names[schedule]);
        snprintf(s_mom, sizeof s_mom, "%g%s", optimizer == CNN_OPT_SGD ? momentum : 0.0, nesterov ? " (Nesterov)" : "");
        snprintf(s_wd, sizeof s_wd, "%g", weight_decay);
        snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
        snprintf(s_thr, sizeof s_thr, "%zu, isa %s", cnn_ctx_threads(ctx), cnn_ctx_isa(ctx));
        snprintf(s_steps, sizeof s_steps, "%llu (%zu per epoch)%s", (unsigned long long)step, steps_per_epoch,
                 stop_signal ? ", interrupted" : "");
        snprintf(s_par, sizeof s_par, "%zu", cnn_net_param_count(net));
        snprintf(s_norm, sizeof s_norm, "%s", normalize ? normalize : "none");
        snprintf(s_data, sizeof s_data, "%zu train / %zu test", n_train, n_test);
        const char *settings[] = {"model",      model,          "data",          data,
                                  "samples",    s_data,         "parameters",    s_par,
                                  "epochs",     s_epochs,       "steps",         s_steps,
                                  "batch",      s_batch,        "optimizer",     optimizer_names[optimizer],
                                  "learning rate", s_lr,        "momentum",      s_mom,
                                  "weight decay", s_wd,         "normalize",     s_norm,
                                  "seed",       s_seed,         "threads",       s_thr,
                                  "initial weights", resume ? resume : init_weights ? init_weights : "fresh initialisation",
                                  "weights saved to", out ? out : "(not saved: no --out)",
                                  "test-time augmentation", tta ? "horizontal flip (--tta)" : "none"};
        cli_report_input ri = {
            .title = model,
            .settings = settings,
            .n_settings = sizeof settings / sizeof settings[0] / 2,
            .epochs = hist,
            .n_epochs = epochs_run < 100000 ? epochs_run : 100000,
            .points = pts,
            .n_points = n_pts,
            .net = net,
            .batch = batch,
            .test = test,
            .class_names = (report_names = cli_dataset_class_names(test)) != NULL
                               ? report_names : cli_class_names_for(data, cnn_dataset_classes(test)),
            .gallery = 24,
        };
        int report_rc = cli_report_write(report_dir, &ri);
        free(report_names);
        report_names = NULL;
        if (report_rc != 0) { /* (it printed why) the run's results are kept */
            cli_error("--report '%s': the report is incomplete; training itself finished (its weights and "
                      "checkpoint, if asked for, are saved)", report_dir);
            output_failed = 1;
        } else if (!quiet) {
            fprintf(stderr, "train: report written to %s/index.html (open it in a browser)\n", report_dir);
        }
    }
    if (stop_signal) {
        fprintf(stderr, "train: %s: stopped at epoch %zu/%zu, batch %zu of %zu (optimizer step %llu)", 
                stop_signal == SIGTERM ? "terminated" : "interrupted", stopped_epoch ? stopped_epoch : epochs_run,
                epochs, stopped_batch, steps_per_epoch, (unsigned long long)step);
        if (checkpoint)
            fprintf(stderr, "; checkpoint saved to %s; to continue: cnn train --resume %s\n", checkpoint, checkpoint);
        else if (out)
            fprintf(stderr, "; to continue: cnn train %s --data %s --weights %s --out %s ... (the optimizer state "
                            "and schedule start afresh; --checkpoint FILE keeps them)\n",
                    model, data, out, out);
        else
            fprintf(stderr, "; no weights saved (give --out FILE to keep them next time)\n");
        rc = 130;
        goto cleanup;
    }
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_begin_object(&j);
        cli_json_key(&j, "epochs");
        cli_json_uint(&j, epochs_run);
        cli_json_key(&j, "steps");
        cli_json_uint(&j, step);
        cli_json_key(&j, "loss");
        cli_json_double(&j, last_loss);
        cli_json_key(&j, "train_acc");
        cli_json_double(&j, last_train_acc);
        cli_json_key(&j, "test_acc");
        cli_json_double(&j, last_test_acc);
        cli_json_key(&j, "test_loss");
        cli_json_double(&j, last_test_loss);
        if (!isnan(test_acc_tta)) {
            cli_json_key(&j, "test_acc_tta");
            cli_json_double(&j, test_acc_tta);
        }
        if (val) {
            cli_json_key(&j, "val_acc");
            cli_json_double(&j, last_val_acc);
            cli_json_key(&j, "best_val_acc");
            cli_json_double(&j, best_val);
        }
        cli_json_key(&j, "seconds");
        cli_json_double(&j, total_seconds);
        cli_json_key(&j, "images_per_second");
        cli_json_double(&j, total_seconds > 0 ? total_images / total_seconds : 0.0);
        cli_json_end_object(&j);
        cli_json_finish(&j);
    }
    rc = output_failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;

cleanup:
    /* After a stop by signal the handlers stay: the process is on its way out with 130, and a second signal
     * during the clean-up must still exit at once with 3 (restored default handlers let a SIGTERM there kill
     * it: exit 143, seen in CI). */
    if (signals_caught && !stop_signal) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGXFSZ, &old_xfsz, NULL);
    }
    if (logf && fclose(logf) != 0 && rc == CLI_EXIT_OK)
        rc = cli_error("--log '%s': write failed", log_path);
    free(rec_args);
    free(pts);
    free(hist);
    free(labels);
    free(x);
    cli_dist_end(rc); /* before the net goes (detaches it); with several ranks a failure ends the job */
    cnn_lanes_free(ln);
    cnn_optimizer_free(opt);
    cnn_dataset_free(test);
    cnn_loader_free(loader); /* joins its thread; before the dataset it reads */
    cnn_dataset_free(train);
    cnn_dataset_free(val);
    cnn_ema_free(ema);
    free(split_idx);
    cnn_net_free(net);
    cnn_ctx_free(ctx);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
        rc = cli_error("writing the output failed");
    return rc;
}

const cli_command cli_cmd_train = {
    .name = "train",
    .summary = "train a model on an IDX dataset folder",
    .help = train_help,
    .run = run_train,
};
