/* report.c — see report.h. One pass over the test split (forward in inference mode, batch by batch)
 * gives the confusion matrix and the most confidently misclassified images (highest predicted probability
 * among wrong answers; ties keep the lower index); the rest is formatting. The HTML has no scripts and no
 * external references: CSS in a <style>, charts as inline <svg>, images as data:image/png;base64 URIs. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include "cli.h"
#include "image.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

const char *const *cli_class_names_for(const char *dir, size_t classes) {
    if (classes != 10 || !dir) return NULL;
    char low[4096];
    size_t n = strlen(dir);
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)dir[i]);
    low[n] = 0;
    return strstr(low, "fashion") || strstr(low, "fmnist") ? fashion_names : NULL;
}

int cli_model_open(const char *model, const char *weights, size_t batch, unsigned flags, size_t threads,
                   cnn_ctx **ctx, cnn_net **net) {
    *ctx = NULL;
    *net = NULL;
    if ((model && cli_check_file(model, "model file") != 0) || cli_check_file(weights, "weights file") != 0)
        return CLI_EXIT_FAIL;
    if (cli_ctx_create(threads, ctx) != 0) return CLI_EXIT_FAIL;
    /* no model file: the model text inside the checkpoint / weights file (cnn_checkpoint_load) */
    cnn_status st = model ? cnn_net_load(*ctx, model, net) : cnn_checkpoint_load(*ctx, weights, net);
    if (st != CNN_OK) return cli_lib_error(*ctx, st, model ? model : weights);
    if ((st = cnn_net_compile(*net, batch, flags)) != CNN_OK) return cli_lib_error(*ctx, st, "compiling the model");
    if (model && (st = cnn_net_load_weights(*net, weights)) != CNN_OK) return cli_lib_error(*ctx, st, weights);
    return 0;
}

int cli_load_input(cnn_ctx *ctx, const char *image, const char *data, size_t index, cnn_shape in, int invert,
                   int norm, double mean, double std, float *x, int *label, char *desc, size_t descn) {
    size_t per = in.c * in.h * in.w;
    *label = -1;
    if (image) {
        cli_image im;
        char err[600];
        if (cli_image_read(ctx, image, &im, err, sizeof err) != 0) return cli_error("%s", err);
        cli_image_to_tensor(&im, in, invert, x);
        snprintf(desc, descn, "%s (%zux%zu %s%s%s)", image, im.w, im.h, im.c == 3 ? "RGB" : "gray",
                 im.w != in.w || im.h != in.h ? ", resized" : "", invert ? ", inverted" : "");
        cli_image_free(&im);
    } else {
        cnn_dataset *ds = NULL;
        if (cli_load_split_for(ctx, in, data, "test", NULL, 0, &ds) != 0) return CLI_EXIT_FAIL;
        cnn_shape s = cnn_dataset_shape(ds);
        size_t n = cnn_dataset_size(ds);
        int rc = 0;
        if (s.c != in.c || s.h != in.h || s.w != in.w) {
            char a[64], b[64];
            cli_format_shape(a, sizeof a, s);
            cli_format_shape(b, sizeof b, in);
            rc = cli_error("data '%s' has %s images, the model expects %s", data, a, b);
        } else if (index >= n) {
            rc = cli_error("--index %zu: the test split of '%s' has %zu images (0..%zu)", index, data, n, n ? n - 1 : 0);
        } else {
            int32_t l;
            cnn_status st = cnn_dataset_gather(ds, &index, 1, x, &l);
            if (st != CNN_OK) rc = cli_lib_error(ctx, st, data);
            *label = l;
            snprintf(desc, descn, "test image %zu of %s", index, data);
        }
        cnn_dataset_free(ds);
        if (rc) return rc;
    }
    if (norm)
        for (size_t i = 0; i < per; i++) x[i] = (float)((x[i] - mean) / std);
    return 0;
}

char **cli_short_output_alias(int argc, char **argv) {
    static char *out[257];
    static char long_name[] = "--output";
    if (argc > 256) return NULL;
    for (int i = 0; i < argc; i++) out[i] = strcmp(argv[i], "-o") == 0 ? long_name : argv[i];
    out[argc] = NULL;
    return out;
}

/* ---- HTML helpers ---- */

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void class_label(char *buf, size_t n, const char *const *names, size_t k) {
    if (names) snprintf(buf, n, "%s", names[k]);
    else snprintf(buf, n, "%zu", k);
}

static void put_num(FILE *f, double v, int digits) {
    if (isfinite(v)) fprintf(f, "%.*f", digits, v);
    else fputs("&ndash;", f);
}

/* ---- SVG charts ---- */

typedef struct series {
    const char *name;
    const char *color;
    const double *x, *y;
    size_t n;
    int markers;
} series;

static double nice_step(double range, int target) {
    double raw = range / target;
    if (!(raw > 0)) return 1;
    double mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void tick_label(char *buf, size_t n, double v, double step) {
    int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (d > 6) d = 6;
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(buf, n, "%.*f", d, v);
}

static void svg_chart(FILE *f, const char *title, const char *ylabel, const series *s, size_t ns, int unit_range,
                      int legend_bottom) {
    const double W = 540, H = 320, ml = 60, mr = 16, mt = 34, mb = 46;
    double xmin = 0, xmax = 0, ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            if (!isfinite(s[i].y[j]) || !isfinite(s[i].x[j])) continue;
            if (s[i].x[j] > xmax) xmax = s[i].x[j];
            if (s[i].y[j] < ymin) ymin = s[i].y[j];
            if (s[i].y[j] > ymax) ymax = s[i].y[j];
        }
    if (!(ymax >= ymin)) ymin = 0, ymax = 1;
    if (xmax <= 0) xmax = 1;
    if (ymax - ymin < 1e-9) ymin -= 0.05, ymax += 0.05;
    double ys = nice_step(ymax - ymin, 5), xs = nice_step(xmax - xmin, 6);
    ymin = floor(ymin / ys) * ys;
    ymax = ceil(ymax / ys) * ys;
    if (unit_range) {
        if (ymin < 0) ymin = 0;
        if (ymax > 1) ymax = 1;
        if (ymax <= ymin) ymin = 0, ymax = 1;
    }
    xmax = ceil(xmax / xs - 1e-9) * xs;
    double pw = W - ml - mr, ph = H - mt - mb;
#define PX(v) (ml + ((v) - xmin) / (xmax - xmin) * pw)
#define PY(v) (mt + ph - ((v) - ymin) / (ymax - ymin) * ph)
    fprintf(f, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", W, H, W, H);
    esc(f, title);
    fputs("\">\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"20\" class=\"ct\">", W / 2);
    esc(f, title);
    fputs("</text>\n", f);
    char lab[32];
    for (double v = ymin; v <= ymax + ys * 1e-6; v += ys) {
        double y = PY(v);
        tick_label(lab, sizeof lab, v, ys);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"yt\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                ml, y, ml + pw, y, ml - 5, y, ml, y, ml - 8, y + 4, lab);
    }
    for (double v = xmin; v <= xmax + xs * 1e-6; v += xs) {
        double x = PX(v);
        tick_label(lab, sizeof lab, v, xs);
        fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"xt\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                x, mt + ph, x, mt + ph + 5, x, mt + ph + 19, lab);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", ml, mt, ml, mt + ph);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ml, mt + ph, ml + pw, mt + ph);
    fprintf(f, "<text class=\"al\" x=\"%.1f\" y=\"%.1f\">epoch</text>\n", ml + pw / 2, H - 8);
    fprintf(f, "<text class=\"al\" transform=\"translate(16 %.1f) rotate(-90)\">", mt + ph / 2);
    esc(f, ylabel);
    fputs("</text>\n", f);
    for (size_t i = 0; i < ns; i++) {
        if (!s[i].n) continue;
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s[i].color);
        for (size_t j = 0; j < s[i].n; j++)
            if (isfinite(s[i].y[j])) fprintf(f, "%.1f,%.1f ", PX(s[i].x[j]), PY(s[i].y[j]));
        fputs("\"/>\n", f);
        if (s[i].markers || s[i].n == 1)
            for (size_t j = 0; j < s[i].n; j++)
                if (isfinite(s[i].y[j]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", PX(s[i].x[j]),
                            PY(s[i].y[j]), s[i].color);
        fputc('\n', f);
    }
    /* legend, inside the plot at the right: at the top for falling curves, at the bottom for rising ones */
    double lx = ml + pw - 150, ly = legend_bottom ? mt + ph - 16 - 18.0 * (double)ns : mt + 8;
    fprintf(f, "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"142\" height=\"%.0f\" fill=\"#fff\" "
               "fill-opacity=\"0.85\" stroke=\"#ccc\"/>",
            lx, ly, 8 + 18.0 * (double)ns);
    for (size_t i = 0; i < ns; i++) {
        double y = ly + 14 + 18.0 * (double)i;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" class=\"lt\">",
                lx + 8, y, lx + 30, y, s[i].color, lx + 36, y + 4);
        esc(f, s[i].name);
        fputs("</text>", f);
    }
    fputs("</g>\n</svg>\n", f);
#undef PX
#undef PY
}

/* ---- the test pass ---- */

typedef struct mistake {
    size_t index;
    int label, pred;
    float prob;
} mistake;

static int test_pass(const cli_report_input *in, size_t classes, size_t *conf, mistake *top, size_t *n_top) {
    cnn_shape s = cnn_dataset_shape(in->test);
    size_t per = s.c * s.h * s.w, n = cnn_dataset_size(in->test), B = in->batch;
    float *x = malloc(B * per * sizeof *x);
    int32_t *lab = malloc(B * sizeof *lab);
    size_t *idx = malloc(B * sizeof *idx);
    int rc = 0;
    *n_top = 0;
    if (!x || !lab || !idx) {
        rc = cli_error("report: out of memory");
        goto done;
    }
    for (size_t off = 0; off < n; off += B) {
        size_t nb = n - off < B ? n - off : B;
        for (size_t i = 0; i < nb; i++) idx[i] = off + i;
        cnn_status st = cnn_dataset_gather(in->test, idx, nb, x, lab);
        if (st == CNN_OK) st = cnn_net_forward(in->net, x, nb, 0);
        if (st != CNN_OK) {
            rc = cli_error("report: running the test split: %s", cnn_status_string(st));
            goto done;
        }
        size_t got;
        const float *y = cnn_net_output(in->net, &got);
        for (size_t i = 0; i < nb; i++) {
            const float *p = y + i * classes;
            size_t best = 0;
            for (size_t c = 1; c < classes; c++)
                if (p[c] > p[best]) best = c;
            conf[(size_t)lab[i] * classes + best]++;
            if ((int)best == lab[i] || in->gallery == 0) continue;
            mistake m = {off + i, lab[i], (int)best, p[best]};
            size_t k = *n_top;
            if (k == in->gallery && !(m.prob > top[k - 1].prob)) continue;
            if (k < in->gallery) (*n_top)++;
            else k--;
            while (k > 0 && top[k - 1].prob < m.prob) {
                top[k] = top[k - 1];
                k--;
            }
            top[k] = m;
        }
    }
done:
    free(idx);
    free(lab);
    free(x);
    return rc;
}

static int img_uri(FILE *f, const float *maps, size_t n, size_t stride, size_t ch, size_t h, size_t w, size_t cols,
                   size_t scale, size_t gap, unsigned char bg, const char *cls, const char *alt) {
    cli_image im;
    char err[256];
    unsigned char *png = NULL;
    size_t pn = 0;
    if (cli_grid_render(maps, n, stride, ch, h, w, cols, scale, gap, bg, &im, err, sizeof err) ||
        cli_png_encode(&im, &png, &pn, err, sizeof err)) {
        cli_image_free(&im);
        return cli_error("report: %s", err);
    }
    char *b64 = cli_base64(png, pn);
    free(png);
    if (!b64) {
        cli_image_free(&im);
        return cli_error("report: out of memory");
    }
    fprintf(f, "<img class=\"%s\" alt=\"", cls);
    esc(f, alt);
    fprintf(f, "\" width=\"%zu\" height=\"%zu\" src=\"data:image/png;base64,%s\">", im.w, im.h, b64);
    free(b64);
    cli_image_free(&im);
    return 0;
}

int cli_report_write_csv(const char *path, const cli_epoch_metrics *e, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_error("report: '%s': %s", path, strerror(errno));
    fputs("epoch,steps,train_loss,train_acc,test_loss,test_acc,seconds,images_per_second,lr\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%zu,%llu,%.9g,%.9g,%.9g,%.9g,%.3f,%.1f,%.9g\n", e[i].epoch, (unsigned long long)e[i].steps,
                e[i].train_loss, e[i].train_acc, e[i].test_loss, e[i].test_acc, e[i].seconds,
                e[i].images_per_second, e[i].lr);
    if (fclose(f) != 0) return cli_error("report: writing '%s' failed", path);
    return 0;
}

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1120px;"
    "color:#222;background:#f6f7f9;padding:0 16px}\n"
    "h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #ddd;"
    "padding-bottom:4px}\n"
    ".sub{color:#666;margin-top:0}.card{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:14px;"
    "margin-bottom:12px}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #e2e4e8;border-radius:6px}\n"
    ".chart .ct{font-size:15px;font-weight:600;text-anchor:middle}.chart .yt{font-size:11px;text-anchor:end;"
    "fill:#444}\n"
    ".chart .xt{font-size:11px;text-anchor:middle;fill:#444}.chart .al{font-size:12px;text-anchor:middle;"
    "fill:#333}.chart .lt{font-size:12px}\n"
    ".chart .grid{stroke:#eee}.chart .axis{stroke:#555}\n"
    "table{border-collapse:collapse;font-size:13px}td,th{padding:4px 8px;border:1px solid #e2e4e8}"
    "th{background:#f0f1f4;text-align:left}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "table.cm td{width:46px;text-align:center;font-variant-numeric:tabular-nums}table.cm th.r{text-align:right}\n"
    ".gallery{display:flex;flex-wrap:wrap;gap:10px}.gallery figure{margin:0;width:112px;text-align:center;"
    "font-size:12px}\n"
    ".gallery img,img.filters{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccc}\n"
    ".gallery img{width:84px;height:84px}.bad{color:#c0392b}.good{color:#1e8449}\n";

int cli_report_write(const char *dir, const cli_report_input *in) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return cli_error("report: folder '%s': %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return cli_error("report: '%s' is not a folder", dir);
    size_t dl = strlen(dir) + 32;
    char *path = malloc(dl);
    if (!path) return cli_error("report: out of memory");
    snprintf(path, dl, "%s/metrics.csv", dir);
    int rc = cli_report_write_csv(path, in->epochs, in->n_epochs);
    if (rc) {
        free(path);
        return rc;
    }

    size_t classes = cnn_dataset_classes(in->test);
    cnn_shape os = cnn_net_output_shape(in->net);
    if (os.c * os.h * os.w > classes) classes = os.c * os.h * os.w;
    size_t *conf = calloc(classes * classes, sizeof *conf);
    mistake *top = calloc(in->gallery ? in->gallery : 1, sizeof *top);
    float *gx = NULL;
    FILE *f = NULL;
    size_t n_top = 0;
    rc = CLI_EXIT_FAIL;
    if (!conf || !top) {
        cli_error("report: out of memory");
        goto done;
    }
    if (test_pass(in, classes, conf, top, &n_top)) goto done;

    snprintf(path, dl, "%s/index.html", dir);
    f = fopen(path, "w");
    if (!f) {
        cli_error("report: '%s': %s", path, strerror(errno));
        goto done;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>cnn report: ", f);
    esc(f, in->title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head><body>\n", css);
    fputs("<h1>Training report: ", f);
    esc(f, in->title);
    fputs("</h1>\n", f);
    size_t total = 0, right = 0;
    for (size_t i = 0; i < classes; i++)
        for (size_t j = 0; j < classes; j++) {
            total += conf[i * classes + j];
            if (i == j) right += conf[i * classes + j];
        }
    fprintf(f, "<p class=\"sub\">cnn %s &middot; test accuracy <b>%.2f%%</b> on %zu images", cnn_version_string(),
            total ? 100.0 * (double)right / (double)total : 0.0, total);
    if (in->n_epochs)
        fprintf(f, " &middot; %zu epoch%s, %llu steps", in->n_epochs, in->n_epochs == 1 ? "" : "s",
                (unsigned long long)in->epochs[in->n_epochs - 1].steps);
    fputs("</p>\n", f);

    /* curves */
    fputs("<h2>Loss and accuracy</h2>\n", f);
    if (!in->n_epochs && !in->n_points) {
        fputs("<div class=\"card\"><p>No training history: curves come from <code>cnn train --report</code>, or "
              "from <code>cnn report --log FILE</code> with the log of <code>cnn train --log FILE</code>.</p>"
              "</div>\n",
              f);
    } else {
        size_t np = in->n_points, ne = in->n_epochs;
        double *buf = malloc((3 * np + 5 * ne + 1) * sizeof *buf);
        if (!buf) {
            cli_error("report: out of memory");
            goto done;
        }
        double *px = buf, *pl = px + np, *pa = pl + np, *ex = pa + np, *etl = ex + ne, *eta = etl + ne,
               *ell = eta + ne, *ela = ell + ne;
        for (size_t i = 0; i < np; i++) px[i] = in->points[i].x, pl[i] = in->points[i].loss, pa[i] = in->points[i].acc;
        for (size_t i = 0; i < ne; i++) {
            ex[i] = in->epochs[i].x;
            etl[i] = in->epochs[i].test_loss;
            eta[i] = in->epochs[i].test_acc;
            ell[i] = in->epochs[i].train_loss;
            ela[i] = in->epochs[i].train_acc;
        }
        /* train: the running points when there are some, else the per-epoch means */
        series sl[2] = {{"train", "#1f77b4", np ? px : ex, np ? pl : ell, np ? np : ne, np == 0},
                        {"test", "#ff7f0e", ex, etl, ne, 1}};
        series sa[2] = {{"train", "#1f77b4", np ? px : ex, np ? pa : ela, np ? np : ne, np == 0},
                        {"test", "#ff7f0e", ex, eta, ne, 1}};
        fputs("<div class=\"charts\">\n", f);
        svg_chart(f, "Loss", "cross-entropy loss", sl, 2, 0, 0);
        svg_chart(f, "Accuracy", "accuracy", sa, 2, 1, 1);
        fputs("</div>\n", f);
        free(buf);
        fputs("<div class=\"card\"><table class=\"epochs\"><tr><th>epoch</th><th>steps</th><th>train loss</th>"
              "<th>train acc</th><th>test loss</th><th>test acc</th><th>seconds</th><th>img/s</th></tr>\n",
              f);
        for (size_t i = 0; i < ne; i++) {
            const cli_epoch_metrics *e = &in->epochs[i];
            fprintf(f, "<tr><td class=\"n\">%zu</td><td class=\"n\">%llu</td><td class=\"n\">", e->epoch,
                    (unsigned long long)e->steps);
            put_num(f, e->train_loss, 4);
            fputs("</td><td class=\"n\">", f);
            put_num(f, e->train_acc, 4);
            fputs("</td><td class=\"n\">", f);
            put_num(f, e->test_loss, 4);
            fputs("</td><td class=\"n\">", f);
            put_num(f, e->test_acc, 4);
            fputs("</td><td class=\"n\">", f);
            put_num(f, e->seconds, 1);
            fputs("</td><td class=\"n\">", f);
            put_num(f, e->images_per_second, 0);
            fputs("</td></tr>\n", f);
        }
        fputs("</table><p class=\"sub\">Also in <a href=\"metrics.csv\">metrics.csv</a>.</p></div>\n", f);
    }

    /* confusion matrix */
    char lab[64], lab2[64];
    fputs("<h2>Confusion matrix (test split)</h2>\n<div class=\"card\"><p class=\"sub\">Rows: true class; "
          "columns: predicted class. Green: correct, red: mistakes (darker is more).</p>\n"
          "<table class=\"cm\"><tr><th>true \\ predicted</th>",
          f);
    for (size_t j = 0; j < classes; j++) {
        class_label(lab, sizeof lab, in->class_names, j);
        fputs("<th>", f);
        esc(f, lab);
        fputs("</th>", f);
    }
    fputs("<th>recall</th></tr>\n", f);
    for (size_t i = 0; i < classes; i++) {
        size_t row = 0;
        for (size_t j = 0; j < classes; j++) row += conf[i * classes + j];
        class_label(lab, sizeof lab, in->class_names, i);
        fputs("<tr><th class=\"r\">", f);
        esc(f, lab);
        fputs("</th>", f);
        for (size_t j = 0; j < classes; j++) {
            size_t v = conf[i * classes + j];
            double fr = row ? (double)v / (double)row : 0;
            double a = i == j ? fr : fmin(1.0, 4 * fr);
            int dark = a > 0.55;
            fprintf(f, "<td style=\"background:rgba(%s,%.3f)%s\">%zu</td>", i == j ? "39,174,96" : "192,57,43", a,
                    dark ? ";color:#fff" : "", v);
        }
        fprintf(f, "<td class=\"n\">%.1f%%</td></tr>\n", row ? 100.0 * (double)conf[i * classes + i] / (double)row : 0.0);
    }
    fputs("</table></div>\n", f);

    /* gallery */
    cnn_shape s = cnn_dataset_shape(in->test);
    size_t per = s.c * s.h * s.w;
    fputs("<h2>Most confidently misclassified test images</h2>\n<div class=\"card\">", f);
    if (n_top == 0) {
        fputs("<p>No misclassified images.</p>", f);
    } else {
        gx = malloc(n_top * per * sizeof *gx);
        size_t *gi = malloc(n_top * sizeof *gi);
        int32_t *gl = malloc(n_top * sizeof *gl);
        if (!gx || !gi || !gl) {
            free(gi);
            free(gl);
            cli_error("report: out of memory");
            goto done;
        }
        for (size_t i = 0; i < n_top; i++) gi[i] = top[i].index;
        cnn_status st = cnn_dataset_gather(in->test, gi, n_top, gx, gl);
        free(gi);
        free(gl);
        if (st != CNN_OK) {
            cli_error("report: reading test images: %s", cnn_status_string(st));
            goto done;
        }
        fputs("<div class=\"gallery\">\n", f);
        for (size_t i = 0; i < n_top; i++) {
            class_label(lab, sizeof lab, in->class_names, (size_t)top[i].label);
            class_label(lab2, sizeof lab2, in->class_names, (size_t)top[i].pred);
            char alt[200];
            snprintf(alt, sizeof alt, "test image %zu: %s predicted as %s", top[i].index, lab, lab2);
            fputs("<figure>", f);
            if (img_uri(f, gx + i * per, 1, per, s.c == 3 ? 3 : 1, s.h, s.w, 1, 1, 0, 0, "sample", alt)) goto done;
            fprintf(f, "<figcaption>#%zu<br><span class=\"good\">true: ", top[i].index);
            esc(f, lab);
            fputs("</span><br><span class=\"bad\">pred: ", f);
            esc(f, lab2);
            fprintf(f, " (%.0f%%)</span></figcaption></figure>\n", 100.0 * top[i].prob);
        }
        fputs("</div>", f);
    }
    fputs("</div>\n", f);

    /* first conv layer's filters */
    fputs("<h2>First convolution layer's filters</h2>\n<div class=\"card\">", f);
    {
        size_t L = cnn_net_num_layers(in->net);
        int shown = 0;
        for (size_t i = 0; i < L && !shown; i++) {
            cnn_layer_info li;
            if (cnn_net_layer_info(in->net, i, &li) != CNN_OK || strcmp(li.type, "conv2d") != 0) continue;
            char pname[160];
            snprintf(pname, sizeof pname, "%s.weight", li.name);
            cnn_param p;
            if (cnn_net_param_find(in->net, pname, &p) != CNN_OK || p.ndim != 4) continue;
            size_t K = p.dims[0], C = p.dims[1], kh = p.dims[2], kw = p.dims[3];
            size_t ch = C == 3 ? 3 : 1, scale = kh < 24 ? (96 / kh < 32 ? 96 / kh : 32) / 2 : 1;
            if (scale < 1) scale = 1;
            fprintf(f, "<p class=\"sub\">Layer <b>");
            esc(f, li.name);
            fprintf(f, "</b>: %zu filters of %zux%zu%s, each scaled to its own range (dark: negative, light: "
                       "positive weights).</p>\n",
                    K, kh, kw, C == 1 ? "" : C == 3 ? " (RGB)" : " (input channel 0 of each)");
            if (img_uri(f, p.data, K, C * kh * kw, ch, kh, kw, K < 16 ? K : 16, scale, 3, 150, "filters",
                        "first-layer filters"))
                goto done;
            shown = 1;
        }
        if (!shown) fputs("<p>The model has no conv2d layer.</p>", f);
    }
    fputs("</div>\n", f);

    /* layer table */
    fputs("<h2>Layers</h2>\n<div class=\"card\"><table class=\"layers\"><tr><th>#</th><th>name</th><th>type</th>"
          "<th>output</th><th>parameters</th><th>FLOPs / sample</th><th>algorithm</th></tr>\n",
          f);
    {
        size_t L = cnn_net_num_layers(in->net);
        uint64_t tp = 0, tf = 0;
        for (size_t i = 0; i < L; i++) {
            cnn_layer_info li;
            if (cnn_net_layer_info(in->net, i, &li) != CNN_OK) continue;
            char shape[64];
            cli_format_shape(shape, sizeof shape, li.out);
            fprintf(f, "<tr><td class=\"n\">%zu</td><td>", i);
            esc(f, li.name);
            fputs("</td><td>", f);
            esc(f, li.type);
            fprintf(f, "</td><td>%s</td><td class=\"n\">%zu</td><td class=\"n\">%llu</td><td>", shape, li.params,
                    (unsigned long long)li.flops);
            esc(f, li.algorithm);
            fputs("</td></tr>\n", f);
            tp += li.params;
            tf += li.flops;
        }
        fprintf(f, "<tr><th></th><th>total</th><th></th><th></th><th class=\"n\">%llu</th><th class=\"n\">%llu</th>"
                   "<th></th></tr>\n",
                (unsigned long long)tp, (unsigned long long)tf);
    }
    fputs("</table></div>\n", f);
    /* settings */
    fputs("<h2>Settings</h2>\n<div class=\"card\"><table class=\"settings\">\n", f);
    for (size_t i = 0; i < in->n_settings; i++) {
        fputs("<tr><th>", f);
        esc(f, in->settings[2 * i]);
        fputs("</th><td>", f);
        esc(f, in->settings[2 * i + 1]);
        fputs("</td></tr>\n", f);
    }
    fputs("</table></div>\n", f);

    fputs("<p class=\"sub\">Written by <code>cnn</code>; self-contained (no scripts, no network).</p>\n"
          "</body></html>\n",
          f);
    if (fclose(f) != 0) {
        f = NULL;
        cli_error("report: writing '%s' failed", path);
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f) fclose(f);
    free(gx);
    free(top);
    free(conf);
    free(path);
    return rc;
}
