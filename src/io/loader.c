/* loader.c — the batch loader (cnn_loader): a dataset's batches epoch after epoch, shuffled, augmented
 * (augment.c) and normalised, prepared ahead on one background pthread.
 *
 * Position: (epoch, batch). Epoch e visits the sample list (all of the dataset, or opt->indices) in the
 * order of a Fisher-Yates permutation seeded by cnn_loader_epoch_seed(seed, e) (identity without shuffle);
 * batch b is positions [b*B, min((b+1)*B, n)). Sample s of epoch e is augmented with the parameters drawn
 * from cnn_augment_sample_key(seed, e, s) (s = dataset index), then normalised. A batch is therefore a pure
 * function of (seed, e, b): prefetching, its depth, the caller's thread count and seeks change nothing.
 *
 * Prefetch (depth D >= 1): a ring of D slots between one producer (the background thread) and the consumer
 * (cnn_loader_next), guarded by a mutex and two condition variables. The producer fills the slot after the
 * last full one at its own position while count < D; the consumer waits for count > 0, copies the head slot
 * out and frees it. The thread owns the permutation, the batch index list and the scratch batch; it never
 * touches the context (a failure is recorded in its slot with a message, and the consumer reports it through
 * the context). It is started by the first next() after create or seek, and stopped (flag, broadcast, join)
 * by seek and free. It runs with every signal blocked, so SIGINT/SIGTERM go to the caller's threads. With
 * D = 0 the consumer prepares each batch itself, through the same code.
 * Memory: D (or 1) slots of B samples + a scratch batch + the permutation and list (n size_t each), all
 * allocated at create from the context. */
#define _POSIX_C_SOURCE 200809L
#include "augment_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define LOADER_MAX_PREFETCH 64

typedef struct slot {
    float *x;
    int32_t *labels;
    size_t n;
    uint64_t epoch, batch;
    cnn_status st;
    char msg[256];
} slot;

struct cnn_loader {
    cnn_ctx *ctx;
    const cnn_dataset *ds;
    cnn_shape shape;
    size_t per;            /* c*h*w */
    size_t batch, n, bpe;  /* batch size, samples per epoch, batches per epoch */
    int shuffle;
    uint64_t seed;
    cnn_augment_spec aug;
    int augment;
    float *mean, *std;     /* c each, or NULL */
    size_t *list;          /* n dataset indices */
    /* producer state */
    size_t *perm;          /* n positions of perm_epoch's order */
    uint64_t perm_epoch;
    int perm_valid;
    size_t *bidx;          /* batch dataset indices */
    float *raw;            /* batch * per: the gathered samples before augmentation */
    uint64_t fail_at;
    /* consumer position: what next() returns */
    uint64_t epoch, bnum;
    int failed;            /* sticky: next() repeats the failure until a seek */
    cnn_status fail_st;
    char fail_msg[256];
    /* the ring */
    size_t depth;          /* 0: synchronous (one slot used as the buffer) */
    slot *slots;
    size_t n_slots, head, count;
    uint64_t prod_epoch, prod_batch;
    int prod_failed, stop, running;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv_space, cv_data;
    int sync_ready;
};

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t cnn_loader_epoch_seed(uint64_t seed, uint64_t epoch) { return mix64(mix64(seed) ^ epoch); }

cnn_loader_options cnn_loader_options_default(void) {
    cnn_loader_options o;
    memset(&o, 0, sizeof o);
    o.shuffle = 1;
    o.seed = 1;
    o.augment = cnn_augment_spec_default();
    o.prefetch = 2;
    return o;
}

/* Prepare batch b of epoch e into s (producer side; no context access). */
static void prepare(cnn_loader *ld, uint64_t e, uint64_t b, slot *s) {
    s->epoch = e;
    s->batch = b;
    s->st = CNN_OK;
    s->msg[0] = 0;
    s->n = 0;
    if (ld->fail_at != UINT64_MAX && e * ld->bpe + b == ld->fail_at) {
        s->st = CNN_ERR_IO;
        snprintf(s->msg, sizeof s->msg, "loader: injected failure preparing batch %llu of epoch %llu (test)",
                 (unsigned long long)b, (unsigned long long)e);
        return;
    }
    if (!ld->perm_valid || ld->perm_epoch != e) {
        if (ld->shuffle)
            cnn_shuffle_indices(ld->perm, ld->n, cnn_loader_epoch_seed(ld->seed, e));
        else
            for (size_t i = 0; i < ld->n; i++) ld->perm[i] = i;
        ld->perm_epoch = e;
        ld->perm_valid = 1;
    }
    size_t off = (size_t)b * ld->batch;
    size_t nb = ld->n - off < ld->batch ? ld->n - off : ld->batch;
    for (size_t i = 0; i < nb; i++) ld->bidx[i] = ld->list[ld->perm[off + i]];
    float *dst = ld->augment ? ld->raw : s->x;
    cnn_status st = cnn_dataset_gather(ld->ds, ld->bidx, nb, dst, s->labels);
    if (st != CNN_OK) { /* cannot happen with the indices checked at create; never read the context here */
        s->st = st;
        snprintf(s->msg, sizeof s->msg, "loader: gathering batch %llu of epoch %llu failed (%s)",
                 (unsigned long long)b, (unsigned long long)e, cnn_status_string(st));
        return;
    }
    for (size_t i = 0; i < nb; i++) {
        float *y = s->x + i * ld->per;
        if (ld->augment) {
            cnn_augment_params p;
            cnn_augment_draw(&ld->aug, ld->shape, cnn_augment_sample_key(ld->seed, e, ld->bidx[i]), &p);
            cnn_augment_apply(&p, ld->shape, ld->raw + i * ld->per, y);
        }
        if (ld->mean) cnn_augment_normalize(y, ld->shape, ld->mean, ld->std);
    }
    s->n = nb;
}

static void advance(cnn_loader *ld, uint64_t *e, uint64_t *b) {
    (void)ld;
    if (++*b == ld->bpe) {
        *b = 0;
        ++*e;
    }
}

static void *worker(void *arg) {
    cnn_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->stop && (ld->count == ld->depth || ld->prod_failed)) pthread_cond_wait(&ld->cv_space, &ld->mu);
        if (ld->stop) break;
        slot *s = &ld->slots[(ld->head + ld->count) % ld->depth];
        uint64_t e = ld->prod_epoch, b = ld->prod_batch;
        pthread_mutex_unlock(&ld->mu);
        prepare(ld, e, b, s);
        pthread_mutex_lock(&ld->mu);
        if (ld->stop) break;
        if (s->st != CNN_OK) ld->prod_failed = 1;
        advance(ld, &ld->prod_epoch, &ld->prod_batch);
        ld->count++;
        pthread_cond_signal(&ld->cv_data);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void stop_worker(cnn_loader *ld) {
    if (!ld->running) return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_space);
    pthread_mutex_unlock(&ld->mu);
    pthread_join(ld->th, NULL);
    ld->running = 0;
    ld->stop = 0;
}

void cnn_loader_free(cnn_loader *ld) {
    if (!ld) return;
    cnn_ctx *ctx = ld->ctx;
    stop_worker(ld);
    if (ld->sync_ready) {
        pthread_mutex_destroy(&ld->mu);
        pthread_cond_destroy(&ld->cv_space);
        pthread_cond_destroy(&ld->cv_data);
    }
    if (ld->slots)
        for (size_t i = 0; i < ld->n_slots; i++) {
            cnn_mem_free(ctx, ld->slots[i].x);
            cnn_mem_free(ctx, ld->slots[i].labels);
        }
    cnn_mem_free(ctx, ld->slots);
    cnn_mem_free(ctx, ld->mean);
    cnn_mem_free(ctx, ld->std);
    cnn_mem_free(ctx, ld->list);
    cnn_mem_free(ctx, ld->perm);
    cnn_mem_free(ctx, ld->bidx);
    cnn_mem_free(ctx, ld->raw);
    cnn_mem_free(ctx, ld);
}

cnn_status cnn_loader_create(cnn_ctx *ctx, const cnn_dataset *ds, const cnn_loader_options *opt, cnn_loader **out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: out is NULL");
    *out = NULL;
    if (!ctx) return CNN_ERR_INVALID_ARG;
    if (!ds) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: dataset is NULL");
    if (!opt) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: options are NULL");
    cnn_shape shape = cnn_dataset_shape(ds);
    size_t ds_n = cnn_dataset_size(ds), n = opt->indices ? opt->n_indices : ds_n;
    if (opt->batch == 0) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: batch is 0");
    if (n == 0) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: no samples to load");
    if (opt->prefetch > LOADER_MAX_PREFETCH)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: prefetch %zu, expected at most %d", opt->prefetch,
                         LOADER_MAX_PREFETCH);
    if (opt->indices)
        for (size_t i = 0; i < n; i++)
            if (opt->indices[i] >= ds_n)
                return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                                 "cnn_loader_create: indices[%zu] = %zu is out of range (the dataset has %zu samples)", i,
                                 opt->indices[i], ds_n);
    const cnn_augment_spec *a = &opt->augment;
    if (a->crop_pad > CNN_AUGMENT_MAX_PAD || !(a->flip_p >= 0 && a->flip_p <= 1) || !(a->erase_p >= 0 && a->erase_p <= 1) ||
        (a->erase_p > 0 && (!(a->erase_area_min > 0) || !(a->erase_area_min <= a->erase_area_max) ||
                            !(a->erase_area_max <= 1) || !(a->erase_ratio_min > 0) ||
                            !(a->erase_ratio_min <= a->erase_ratio_max) || !(a->erase_ratio_max <= 100))))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                         "cnn_loader_create: invalid augmentation (crop pad <= %d, probabilities in [0,1], erase area "
                         "0 < min <= max <= 1, ratio 0 < min <= max <= 100)",
                         CNN_AUGMENT_MAX_PAD);
    if ((opt->mean || opt->std) && (!opt->mean || !opt->std))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: %s is NULL", opt->mean ? "std" : "mean");
    if (opt->mean && opt->channels != shape.c && opt->channels != 1)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                         "cnn_loader_create: %zu normalisation channels, the samples have %zu (or give 1 for all)",
                         opt->channels, shape.c);
    if (opt->mean)
        for (size_t i = 0; i < opt->channels; i++)
            if (!(opt->mean[i] - opt->mean[i] == 0) || !(opt->std[i] > 0) || !(opt->std[i] - opt->std[i] == 0))
                return cnn_error(ctx, CNN_ERR_INVALID_ARG,
                                 "cnn_loader_create: channel %zu: mean %g, std %g: expected finite values, std > 0", i,
                                 (double)opt->mean[i], (double)opt->std[i]);
    size_t per = 0, bbytes = 0;
    if (!cnn_shape_count(shape, &per) || !cnn_size_mul3(per, opt->batch, sizeof(float), &bbytes))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_loader_create: a batch of %zu samples is too large", opt->batch);

    cnn_status st = CNN_OK;
    cnn_loader *ld = cnn_mem_calloc(ctx, 1, sizeof *ld);
    if (!ld) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating a loader");
    ld->ctx = ctx;
    ld->ds = ds;
    ld->shape = shape;
    ld->per = per;
    ld->batch = opt->batch;
    ld->n = n;
    ld->bpe = (n + opt->batch - 1) / opt->batch;
    ld->shuffle = opt->shuffle != 0;
    ld->seed = opt->seed;
    ld->aug = *a;
    ld->augment = cnn_augment_enabled(a);
    ld->fail_at = UINT64_MAX;
    ld->depth = opt->prefetch;
    ld->n_slots = ld->depth ? ld->depth : 1;
    if (pthread_mutex_init(&ld->mu, NULL) != 0) {
        cnn_mem_free(ctx, ld);
        return cnn_error(ctx, CNN_ERR_NOMEM, "cnn_loader_create: cannot create a mutex");
    }
    if (pthread_cond_init(&ld->cv_space, NULL) != 0) {
        pthread_mutex_destroy(&ld->mu);
        cnn_mem_free(ctx, ld);
        return cnn_error(ctx, CNN_ERR_NOMEM, "cnn_loader_create: cannot create a condition variable");
    }
    if (pthread_cond_init(&ld->cv_data, NULL) != 0) {
        pthread_cond_destroy(&ld->cv_space);
        pthread_mutex_destroy(&ld->mu);
        cnn_mem_free(ctx, ld);
        return cnn_error(ctx, CNN_ERR_NOMEM, "cnn_loader_create: cannot create a condition variable");
    }
    ld->sync_ready = 1;
    ld->slots = cnn_mem_calloc(ctx, ld->n_slots, sizeof *ld->slots);
    if (!ld->slots) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "out of memory allocating the loader's batches"));
    for (size_t i = 0; i < ld->n_slots; i++) {
        CNN_TRY(cnn_mem_alloc_checked(ctx, bbytes, "a loader batch", (void **)&ld->slots[i].x));
        CNN_TRY(cnn_mem_alloc_checked(ctx, opt->batch * sizeof(int32_t), "loader labels", (void **)&ld->slots[i].labels));
    }
    if (ld->augment) CNN_TRY(cnn_mem_alloc_checked(ctx, bbytes, "the loader's scratch batch", (void **)&ld->raw));
    CNN_TRY(cnn_mem_alloc_checked(ctx, n * sizeof(size_t), "the loader's sample list", (void **)&ld->list));
    CNN_TRY(cnn_mem_alloc_checked(ctx, n * sizeof(size_t), "the loader's permutation", (void **)&ld->perm));
    CNN_TRY(cnn_mem_alloc_checked(ctx, opt->batch * sizeof(size_t), "the loader's batch indices", (void **)&ld->bidx));
    for (size_t i = 0; i < n; i++) ld->list[i] = opt->indices ? opt->indices[i] : i;
    if (opt->mean) {
        CNN_TRY(cnn_mem_alloc_checked(ctx, shape.c * sizeof(float), "normalisation", (void **)&ld->mean));
        CNN_TRY(cnn_mem_alloc_checked(ctx, shape.c * sizeof(float), "normalisation", (void **)&ld->std));
        for (size_t c = 0; c < shape.c; c++) {
            ld->mean[c] = opt->mean[opt->channels == 1 ? 0 : c];
            ld->std[c] = opt->std[opt->channels == 1 ? 0 : c];
        }
    }
    *out = ld;
    ld = NULL;
cleanup:
    cnn_loader_free(ld);
    return st;
}

size_t cnn_loader_batches_per_epoch(const cnn_loader *ld) { return ld ? ld->bpe : 0; }
size_t cnn_loader_size(const cnn_loader *ld) { return ld ? ld->n : 0; }

void cnn_loader_tell(const cnn_loader *ld, uint64_t *epoch, uint64_t *batch) {
    if (epoch) *epoch = ld ? ld->epoch : 0;
    if (batch) *batch = ld ? ld->bnum : 0;
}

cnn_status cnn_loader_seek(cnn_loader *ld, uint64_t epoch, uint64_t batch) {
    if (!ld) return CNN_ERR_INVALID_ARG;
    if (batch >= ld->bpe)
        return cnn_error(ld->ctx, CNN_ERR_INVALID_ARG, "cnn_loader_seek: batch %llu, an epoch has %zu batches",
                         (unsigned long long)batch, ld->bpe);
    if (!ld->failed && ld->epoch == epoch && ld->bnum == batch) return CNN_OK;
    stop_worker(ld);
    ld->head = ld->count = 0;
    ld->prod_failed = 0;
    ld->failed = 0;
    ld->epoch = ld->prod_epoch = epoch;
    ld->bnum = ld->prod_batch = batch;
    return CNN_OK;
}

static cnn_status start_worker(cnn_loader *ld) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ld->head = ld->count = 0;
    ld->prod_failed = 0;
    ld->stop = 0;
    ld->prod_epoch = ld->epoch;
    ld->prod_batch = ld->bnum;
    int e = pthread_create(&ld->th, NULL, worker, ld);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return cnn_error(ld->ctx, CNN_ERR_NOMEM, "cnn_loader_next: cannot start the prefetch thread: %s", strerror(e));
    ld->running = 1;
    return CNN_OK;
}

cnn_status cnn_loader_next(cnn_loader *ld, float *x, int32_t *labels, size_t *n) {
    if (n) *n = 0;
    if (!ld) return CNN_ERR_INVALID_ARG;
    if (ld->failed) return cnn_error(ld->ctx, ld->fail_st, "%s", ld->fail_msg);
    slot *s;
    if (ld->depth == 0) {
        s = &ld->slots[0];
        prepare(ld, ld->epoch, ld->bnum, s);
    } else {
        if (!ld->running) {
            cnn_status st = start_worker(ld);
            if (st != CNN_OK) return st;
        }
        pthread_mutex_lock(&ld->mu);
        while (ld->count == 0) pthread_cond_wait(&ld->cv_data, &ld->mu);
        s = &ld->slots[ld->head];
        pthread_mutex_unlock(&ld->mu);
        CNN_ASSERT(s->epoch == ld->epoch && s->batch == ld->bnum);
    }
    if (s->st != CNN_OK) {
        ld->failed = 1;
        ld->fail_st = s->st;
        snprintf(ld->fail_msg, sizeof ld->fail_msg, "%s", s->msg);
        return cnn_error(ld->ctx, s->st, "%s", s->msg);
    }
    if (x) memcpy(x, s->x, s->n * ld->per * sizeof(float));
    if (labels) memcpy(labels, s->labels, s->n * sizeof(int32_t));
    if (n) *n = s->n;
    if (ld->depth) {
        pthread_mutex_lock(&ld->mu);
        ld->head = (ld->head + 1) % ld->depth;
        ld->count--;
        pthread_cond_signal(&ld->cv_space);
        pthread_mutex_unlock(&ld->mu);
    }
    advance(ld, &ld->epoch, &ld->bnum);
    return CNN_OK;
}

void cnn_loader_test_fail_at(cnn_loader *ld, uint64_t batch_number) {
    if (!ld) return;
    stop_worker(ld); /* the worker reads fail_at */
    ld->head = ld->count = 0;
    ld->prod_failed = 0;
    ld->fail_at = batch_number;
}
