/* fuzz_model_text.c — libFuzzer target: the model text parser (src/core/model_text.c and the layers'
 * option parsing). A text that parses is printed with cnn_net_to_text and the print parsed again: it must
 * parse and print the same (docs/formats.md: the print is equivalent in meaning). Nothing is compiled, but
 * cnn_net_parse allocates and initialises the parameters, so a text declaring huge layers is slow (docs/fuzz.md). Seeds: fuzz/corpus/model_text/ (the shipped models). */
#include "fuzz_common.h"

/* Parse initialises every parameter (twice here: the text and its print), about 0.1 us per float under
 * ASan + UBSan: the shipped resnet18.cnn (11.7 M parameters) took 2.6 s of CPU per input and, on a loaded
 * machine, past the 10 s timeout (a finding of the 10-minute run, docs/fuzz.md). A 16 MiB budget (4 M
 * floats) makes such texts fail fast with CNN_ERR_NOMEM after the whole text is parsed and its shapes
 * inferred; every other seed fits. */
#define MODEL_TEXT_BUDGET ((size_t)16 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cnn_ctx *ctx = fuzz_ctx();
    static int budget_set;
    if (!budget_set) {
        if (cnn_ctx_set_memory_limit(ctx, MODEL_TEXT_BUDGET) != CNN_OK) abort();
        budget_set = 1;
    }
    cnn_net *net = NULL;
    cnn_status st = cnn_net_parse(ctx, (const char *)data, size, "fuzz.cnn", &net);
    fuzz_check_error(ctx, st);
    if (st != CNN_OK) return 0;
    char *t1 = NULL;
    if (cnn_net_to_text(net, &t1) != CNN_OK) abort();
    /* Freed before the print is parsed, so the second parse has the same budget as the first (with both
     * nets alive, a text using over half the budget failed the re-parse with CNN_ERR_NOMEM: a finding of
     * CI's 30-second run, kept in the corpus as regress-two-nets-budget.cnn). */
    cnn_net_free(net);
    net = NULL;
    cnn_net *again = NULL;
    if (cnn_net_parse(ctx, t1, strlen(t1), "printed.cnn", &again) != CNN_OK) {
        fprintf(stderr, "the print does not parse: %s\n---\n%s---\n", cnn_ctx_last_error(ctx), t1);
        abort();
    }
    char *t2 = NULL;
    if (cnn_net_to_text(again, &t2) != CNN_OK) abort();
    /* The first line is a comment naming the origin; the rest must be the same. */
    const char *b1 = strchr(t1, '\n'), *b2 = strchr(t2, '\n');
    if (!b1 || !b2 || strcmp(b1, b2) != 0) {
        fprintf(stderr, "print of the print differs:\n---\n%s---\n%s---\n", t1, t2);
        abort();
    }
    cnn_free(ctx, t1);
    cnn_free(ctx, t2);
    cnn_net_free(again);
    return 0;
}
