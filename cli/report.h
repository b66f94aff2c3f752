/* report.h — the training report of `cnn train --report DIR` and `cnn report`: a self-contained
 * DIR/index.html (inline SVG charts and CSS, images as PNG data: URIs; opens with no network) and
 * DIR/metrics.csv (one row per epoch, the numbers of the epoch lines).
 *
 * The page: the run's settings; loss and accuracy curves (train: running means over stretches of each
 * epoch, test: at the end of each epoch) with axes, ticks and a legend; the confusion matrix of the test
 * split as a coloured table with class names; the most confidently misclassified test images with true and
 * predicted labels; the first conv layer's filters as an image grid; the per-layer table (type, output
 * shape, parameters, FLOPs, algorithm). */
#ifndef CNN_CLI_REPORT_H
#define CNN_CLI_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cnn.h"

typedef struct cli_epoch_metrics {
    size_t epoch; /* 1-based */
    uint64_t steps; /* optimizer steps at the end of the epoch (cumulative) */
    double train_loss, train_acc, test_loss, test_acc, seconds, images_per_second, lr;
    double x; /* position on the curves' x axis, in epochs (fractional when --steps ended the epoch early) */
} cli_epoch_metrics;

typedef struct cli_train_point {
    double x; /* epochs (fractional) */
    double loss, acc;
} cli_train_point;

typedef struct cli_report_input {
    const char *title;           /* e.g. the model path */
    const char *const *settings; /* n_settings (key, value) pairs: settings[2i], settings[2i+1] */
    size_t n_settings;
    const cli_epoch_metrics *epochs;
    size_t n_epochs;
    const cli_train_point *points; /* may be NULL */
    size_t n_points;
    cnn_net *net;                /* compiled, with a softmax_ce loss, weights in place */
    size_t batch;                /* <= the batch the net was compiled for */
    const cnn_dataset *test;     /* the split for the confusion matrix and the gallery */
    const char *const *class_names; /* NULL: class indices */
    size_t gallery;              /* how many misclassified images to show (e.g. 24) */
} cli_report_input;

/* Write DIR/index.html and DIR/metrics.csv (DIR is created when missing). Prints a "cnn: ..." line and
 * returns non-zero on failure. */
int cli_report_write(const char *dir, const cli_report_input *in);
/* Write only DIR/metrics.csv. */
int cli_report_write_csv(const char *path, const cli_epoch_metrics *e, size_t n);

/* Fashion-MNIST's class names when the data folder looks like Fashion-MNIST (its path mentions "fashion" or
 * "fmnist") and there are 10 classes, else NULL. */
const char *const *cli_class_names_for(const char *data_dir, size_t classes);

/* Shared by report, predict and viz: a context with `threads` threads, the model from `model`, compiled for
 * `batch` with `flags`, weights from `weights` (safetensors). Prints the error and returns non-zero. */
int cli_model_open(const char *model, const char *weights, size_t batch, unsigned flags, size_t threads,
                   cnn_ctx **ctx, cnn_net **net);
/* One network input for predict and viz: the image file `image` (PNG/JPEG, resized and converted to the
 * input shape, optionally inverted), or test image `index` of the IDX folder `data`. Normalised with
 * (x - mean) / std when norm. x gets in.c*in.h*in.w floats; *label the true class (-1 for files); desc a
 * short description ("shoe.png (resized from 120x100 RGB)", "test image 7 of fmnist"). */
int cli_load_input(cnn_ctx *ctx, const char *image, const char *data, size_t index, cnn_shape in, int invert,
                   int norm, double mean, double std, float *x, int *label, char *desc, size_t descn);
/* argv with every "-o" spelled "--output" (a static array of at most 256 arguments; NULL if longer). */
char **cli_short_output_alias(int argc, char **argv);

#endif
