/* safetensors_internal.h — the atomic safetensors writer shared by weights files (safetensors.c) and
 * checkpoints (checkpoint.c). */
#ifndef CNN_SAFETENSORS_INTERNAL_H
#define CNN_SAFETENSORS_INTERNAL_H

#include "../core/internal.h"

#include <jansson.h>

/* Free what json_dumps returned with jansson's own allocator (json_set_alloc_funcs may have replaced
 * malloc: a program's or tests/test_alloc_fail.c's). */
static inline void cnn_json_free_str(char *s) {
    json_free_t f = NULL;
    json_get_alloc_funcs(NULL, &f);
    if (f) f(s);
}

typedef struct cnn_st_data {
    const float *data;
    size_t count;
} cnn_st_data;

/* Header `json` (the caller's complete safetensors header), then each tensor's data as F32 little-endian in
 * order, written to a temporary file next to `path`, fsync'd and renamed over it; the folder is fsync'd.
 * On failure `path` is untouched and no temporary file is left. */
cnn_status cnn_safetensors_write_atomic(cnn_ctx *ctx, const char *path, const char *json,
                                        const cnn_st_data *t, size_t nt);

/* Add metadata "cnn.classes" (the compact JSON text of an array of strings) when the net has class names
 * (cnn_net_set_class_names). 0, or -1 when out of memory (or a name is not valid UTF-8). */
int cnn_st_meta_set_classes(json_t *meta, const cnn_net *net);

#endif
