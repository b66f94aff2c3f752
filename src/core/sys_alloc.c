/* sys_alloc.c — malloc, calloc and realloc behind a per-thread failure hook (sys_alloc.h). The hook is
 * thread-local, so installing it in one thread (a test) changes nothing for the others. */
#include "sys_alloc.h"

#include <stdlib.h>

static _Thread_local cnn_sys_alloc_fail_fn hook_fn = NULL;
static _Thread_local void *hook_user = NULL;

void cnn_sys_alloc_set_hook(cnn_sys_alloc_fail_fn fn, void *user) {
    hook_fn = fn;
    hook_user = fn ? user : NULL;
}

static int fails(size_t size) { return hook_fn && hook_fn(hook_user, size); }

void *cnn_sys_malloc(size_t size) { return fails(size) ? NULL : malloc(size); }

void *cnn_sys_calloc(size_t n, size_t size) { return fails(n * size) ? NULL : calloc(n, size); }

void *cnn_sys_realloc(void *p, size_t size) { return fails(size) ? NULL : realloc(p, size); }
