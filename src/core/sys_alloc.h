/* sys_alloc.h — plain heap allocation for what the library keeps outside the context's allocator (model
 * text parsing, layer parameter structs, string buffers): malloc, calloc and realloc, freed with free(),
 * with a per-thread hook that tests use to make chosen calls fail (tests/test_alloc_fail.c). */
#ifndef CNN_SYS_ALLOC_H
#define CNN_SYS_ALLOC_H

#include <stddef.h>

/* Return nonzero to make this allocation fail. */
typedef int (*cnn_sys_alloc_fail_fn)(void *user, size_t size);
/* Install (fn != NULL) or remove the hook for the calling thread only; other threads are not affected. */
void cnn_sys_alloc_set_hook(cnn_sys_alloc_fail_fn fn, void *user);

void *cnn_sys_malloc(size_t size);
void *cnn_sys_calloc(size_t n, size_t size);
void *cnn_sys_realloc(void *p, size_t size); /* on failure p is untouched */

#endif
