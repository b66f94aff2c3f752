/* cli.h — shared pieces of the `cnn` command-line tool: the subcommand table, strict argument parsing,
 * error reporting and a small JSON writer.
 *
 * The tool uses only the public API (include/cnn.h). Conventions:
 *   - Every error is one line "cnn: <message>" on stderr; exit status 1 for failures, 2 for usage errors.
 *   - Results go to stdout; progress and the start line go to stderr.
 *   - Numbers on the command line are parsed strictly: the whole argument must be a number in range
 *     ("--epochs 3x", "--batch 0", "--lr -1", "--lr nan" are usage errors).
 * Names here carry the `cli_` prefix (the tool is an executable; nothing is exported). */
#ifndef CNN_CLI_H
#define CNN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnn.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* ---- subcommands ---- */
typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `cnn --help` */
    const char *help;    /* full text for `cnn help NAME` / `cnn NAME --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit status */
} cli_command;

extern const cli_command cli_cmd_train;
extern const cli_command cli_cmd_eval;
extern const cli_command cli_cmd_info;
extern const cli_command cli_cmd_bench;

/* ---- errors ---- */
/* Print "cnn: <message>\n" to stderr. Returns CLI_EXIT_FAIL. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Print "cnn: <message>\n" to stderr. Returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Print the library's message for a failed call: cnn_ctx_last_error(ctx), or the status text when the
 * context has none (or ctx is NULL). `what` (may be NULL) prefixes it when the library message is empty.
 * Returns CLI_EXIT_FAIL. */
int cli_lib_error(const cnn_ctx *ctx, cnn_status st, const char *what);

/* ---- strict number parsing (return 0 on success, -1 with a message in err[0..errn) otherwise) ---- */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errn);
int cli_parse_double(const char *s, double min, double max, int min_exclusive, double *out, char *err,
                     size_t errn);
/* "a,b,..." into at most `max` doubles; *n gets the count. */
int cli_parse_double_list(const char *s, double *out, size_t max, size_t *n, char *err, size_t errn);

/* ---- options ---- */
typedef enum cli_opt_kind {
    CLI_OPT_FLAG = 0, /* int *: set to 1 */
    CLI_OPT_STRING,   /* const char **: the argument itself */
    CLI_OPT_SIZE,     /* size_t *, range [umin, umax] */
    CLI_OPT_U64,      /* uint64_t *, range [umin, umax] */
    CLI_OPT_DOUBLE,   /* double *, range [dmin, dmax] (dmin excluded when min_exclusive) */
    CLI_OPT_CHOICE    /* int *: index into choices (NULL-terminated) */
} cli_opt_kind;

typedef struct cli_option {
    const char *name; /* without the leading "--" */
    cli_opt_kind kind;
    void *out;
    uint64_t umin, umax;
    double dmin, dmax;
    int min_exclusive;
    const char *const *choices;
    int *seen; /* optional: set to 1 when the option was given */
} cli_option;

/* Parse argv[1..argc): "--name value", "--name=value", flags, positionals, "--" ends options.
 * "-h"/"--help" sets *help and stops. Positionals go to pos[0..max_pos). On error prints one line and
 * returns CLI_EXIT_USAGE; 0 on success. An option given twice keeps the last value. */
int cli_parse_args(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
                   const char **pos, size_t max_pos, size_t *n_pos, int *help);

/* ---- files ---- */
/* 0 if `path` names an existing regular file (or a file-like device); otherwise prints
 * "cnn: <what> '<path>': <reason>" and returns CLI_EXIT_FAIL. */
int cli_check_file(const char *path, const char *what);
/* Same for a directory. */
int cli_check_dir(const char *path, const char *what);
/* An output file path: not a directory, and its parent directory exists. */
int cli_check_output(const char *path, const char *what);

/* A context with `threads` threads (0: library default); prints the error and returns CLI_EXIT_FAIL. */
int cli_ctx_create(size_t threads, cnn_ctx **out);
/* The batch lanes of a training run (cnn_lanes_create): `lanes` as given by --lanes (SIZE_MAX: not given,
 * and 0: one per thread), at most one per sample of the batch; 1 means none. */
size_t cli_lanes_choice(size_t lanes, size_t threads, size_t batch);

/* ---- datasets ---- */
/* cnn_dataset_load_dir(dir, split) with the error printed ("train" or "test"). */
int cli_load_split(cnn_ctx *ctx, const char *dir, const char *split, cnn_dataset **out);
/* Normalise every channel with the same mean and std (from --normalize). Prints the error. */
int cli_apply_normalize(cnn_dataset *ds, double mean, double std);
/* Parse "MEAN,STD" (std > 0). Returns CLI_EXIT_USAGE with the error printed. */
int cli_parse_normalize(const char *cmd, const char *spec, double *mean, double *std);
/* The dataset's sample shape must equal the net's input shape and its classes fit the net's outputs
 * (exact: equal). Prints a clear error naming both. */
int cli_check_data_fits(const cnn_net *net, const cnn_dataset *ds, const char *dir, const char *split,
                        int exact);

/* Part "data": cnn_dataset_load_dir_ex / cnn_dataset_load_list for a model whose input is `in` (image
 * datasets are resampled to it; zeros: the images' own size): `data` is a folder, or a list file ("PATH
 * LABEL" lines). like (may be NULL): the class names to label with (the training split's, for the test
 * split). The load's warnings (files skipped) go to stderr unless quiet, at most 10 and a count. Prints
 * the error. */
int cli_load_split_for(cnn_ctx *ctx, cnn_shape in, const char *data, const char *split, const cnn_dataset *like,
                       int quiet, cnn_dataset **out);
/* Give the net the dataset's class names (nothing when they are only "0".."N-1"): every weights file and
 * checkpoint it writes then carries them. Prints the error. */
int cli_net_take_class_names(cnn_ctx *ctx, cnn_net *net, const cnn_dataset *ds);
/* The class names stored in a weights file or checkpoint when there are exactly `classes` of them, else
 * NULL; *block is what to cnn_free(ctx, ...) afterwards (NULL when nothing). */
const char *const *cli_file_class_names(cnn_ctx *ctx, const char *path, size_t classes, char ***block);

/* The dataset's class names as a malloc'd array (the strings are the dataset's), NULL when they are only
 * "0".."N-1" or memory is short. */
const char **cli_dataset_class_names(const cnn_dataset *ds);

/* 0 if path is a data folder or a list file; otherwise prints why (as cli_check_dir). */
int cli_check_data(const char *path);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* "1x28x28" */
void cli_format_shape(char *buf, size_t n, cnn_shape s);

/* ---- JSON writer (compact, one object per call sequence; commas and escaping handled) ---- */
#define CLI_JSON_MAX_DEPTH 32
typedef struct cli_json {
    FILE *f;
    int depth;
    int count[CLI_JSON_MAX_DEPTH]; /* values written at each depth */
    int after_key;
} cli_json;
void cli_json_init(cli_json *j, FILE *f);
void cli_json_begin_object(cli_json *j);
void cli_json_end_object(cli_json *j);
void cli_json_begin_array(cli_json *j);
void cli_json_end_array(cli_json *j);
void cli_json_key(cli_json *j, const char *key);
void cli_json_string(cli_json *j, const char *s);
/* Shortest text that reads back to the same double; non-finite values become null. */
void cli_json_double(cli_json *j, double v);
void cli_json_uint(cli_json *j, uint64_t v);
void cli_json_bool(cli_json *j, int v);
void cli_json_null(cli_json *j);
/* Ends the document with a newline and flushes. */
void cli_json_finish(cli_json *j);

#endif
