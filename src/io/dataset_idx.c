/* dataset_idx.c — reading IDX files (the MNIST / Fashion-MNIST container), raw or gzip-compressed.
 *
 * Format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"): all integers are
 * 32-bit big-endian.
 *   bytes 0-1   zero
 *   byte  2     element type: 0x08 unsigned byte (the only one accepted here; 0x09 i8, 0x0B i16, 0x0C i32,
 *               0x0D f32, 0x0E f64 are reported as unsupported)
 *   byte  3     number of dimensions: 3 for images (n, h, w), 1 for labels (n)
 *   then        one u32 per dimension, then the elements in row-major order, nothing after them.
 *
 * Checks: every dimension nonzero, n <= 1e8, the other dimensions <= 4096, the products overflow-checked,
 * and the data exactly as long as the header implies: "expected N bytes of data after the 16-byte header,
 * found M". Raw files are checked against fstat before anything is allocated. A file that starts with the
 * gzip magic 1f 8b is decompressed by streaming it through zlib's inflate (gzip wrapper, several members
 * allowed as gzip(1) does) into a buffer that grows as data arrives (so a header that lies about a huge
 * size costs nothing); then the rest of the stream is drained to count extra bytes, verify the CRC and
 * length trailer and detect truncation, corrupt data and trailing bytes that are not another gzip member.
 * Compressed offsets are reported where zlib fails. */
#define _POSIX_C_SOURCE 200809L /* fileno, fdopen, fseeko, fsync, O_CLOEXEC, O_DIRECTORY */
#include "dataset_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define CHUNK (64u * 1024u)
#define MAX_EXTRA_COUNT ((uint64_t)1 << 26) /* stop counting trailing data after this many bytes */

typedef struct source {
    cnn_ctx *ctx;
    const char *path;
    FILE *f;
    int gz;
    int eof;              /* no more decompressed data (all members ended, file at EOF) */
    z_stream zs;
    int zinit;
    unsigned char *in;    /* CHUNK bytes of compressed input (gz only) */
    uint64_t file_read;   /* bytes read from the file so far */
} source;

static uint64_t comp_offset(const source *s) { return s->file_read - s->zs.avail_in; }

/* Make at least `want` compressed bytes available in s->in (fewer only at end of file). */
static cnn_status fill_input(source *s, size_t want, size_t *avail) {
    if (s->zs.avail_in < want) {
        if (s->zs.avail_in > 0 && s->zs.next_in != s->in) memmove(s->in, s->zs.next_in, s->zs.avail_in);
        s->zs.next_in = s->in;
        while (s->zs.avail_in < want) {
            size_t r = fread(s->in + s->zs.avail_in, 1, CHUNK - s->zs.avail_in, s->f);
            if (r == 0) {
                if (ferror(s->f))
                    return cnn_error(s->ctx, CNN_ERR_IO, "%s: read error at offset %llu: %s", s->path,
                                     (unsigned long long)s->file_read, strerror(errno));
                break;
            }
            s->zs.avail_in += (uInt)r;
            s->file_read += r;
        }
    }
    *avail = s->zs.avail_in;
    return CNN_OK;
}

/* Read up to n bytes of (decompressed) content; *got < n only at the end of the data. */
static cnn_status source_read(source *s, void *buf, size_t n, size_t *got) {
    *got = 0;
    if (!s->gz) {
        size_t r = fread(buf, 1, n, s->f);
        if (r < n && ferror(s->f))
            return cnn_error(s->ctx, CNN_ERR_IO, "%s: read error at offset %llu: %s", s->path,
                             (unsigned long long)(s->file_read + r), strerror(errno));
        s->file_read += r;
        *got = r;
        return CNN_OK;
    }
    unsigned char *out = buf;
    while (*got < n && !s->eof) {
        size_t avail;
        cnn_status st = fill_input(s, 1, &avail);
        if (st != CNN_OK) return st;
        if (avail == 0)
            return cnn_error(s->ctx, CNN_ERR_FORMAT,
                             "%s: gzip data truncated: unexpected end of file after %llu compressed bytes "
                             "(%llu bytes decompressed)",
                             s->path, (unsigned long long)s->file_read, (unsigned long long)s->zs.total_out);
        size_t room = n - *got;
        if (room > (size_t)UINT32_MAX) room = UINT32_MAX;
        s->zs.next_out = out + *got;
        s->zs.avail_out = (uInt)room;
        int ret = inflate(&s->zs, Z_NO_FLUSH);
        *got += room - s->zs.avail_out;
        if (ret == Z_STREAM_END) {
            /* End of one gzip member: another member may follow, anything else is garbage. */
            st = fill_input(s, 2, &avail);
            if (st != CNN_OK) return st;
            if (avail == 0) {
                s->eof = 1;
            } else if (avail >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
                uLong keep = s->zs.total_out;
                if (inflateReset(&s->zs) != Z_OK)
                    return cnn_error(s->ctx, CNN_ERR_FORMAT, "%s: cannot restart gzip decoding", s->path);
                s->zs.total_out = keep;
            } else {
                return cnn_error(s->ctx, CNN_ERR_FORMAT,
                                 "%s: trailing garbage after the gzip stream at offset %llu", s->path,
                                 (unsigned long long)comp_offset(s));
            }
        } else if (ret == Z_MEM_ERROR) {
            return cnn_error(s->ctx, CNN_ERR_NOMEM, "%s: out of memory decompressing", s->path);
        } else if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT || ret == Z_STREAM_ERROR) {
            return cnn_error(s->ctx, CNN_ERR_FORMAT, "%s: corrupt gzip data near compressed offset %llu: %s",
                             s->path, (unsigned long long)comp_offset(s),
                             s->zs.msg ? s->zs.msg : "invalid data");
        }
        /* Z_OK or Z_BUF_ERROR (needs more input): loop. */
    }
    return CNN_OK;
}

static void source_close(source *s) {
    if (s->zinit) inflateEnd(&s->zs);
    if (s->in) cnn_mem_free(s->ctx, s->in);
    if (s->f) fclose(s->f);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *type_name(unsigned t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "16-bit integer";
    case 0x0C: return "32-bit integer";
    case 0x0D: return "32-bit float";
    case 0x0E: return "64-bit float";
    default: return NULL;
    }
}

/* Count the decompressed bytes after the expected data (draining the stream checks its trailer). */
static cnn_status count_extra(source *s, unsigned char *scratch, size_t scratch_len, uint64_t *extra) {
    *extra = 0;
    for (;;) {
        size_t got;
        cnn_status st = source_read(s, scratch, scratch_len, &got);
        if (st != CNN_OK) return st;
        *extra += got;
        if (got < scratch_len || *extra >= MAX_EXTRA_COUNT) return CNN_OK;
    }
}

cnn_status cnn_idx_read(cnn_ctx *ctx, const char *path, size_t ndim, cnn_idx_file *out) {
    cnn_status st = CNN_OK;
    source s;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    uint8_t *data = NULL;
    size_t cap = 0;
    if (!path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "IDX file path is NULL");
    CNN_ASSERT(ndim >= 1 && ndim <= 3);
    s.ctx = ctx;
    s.path = path;

    s.f = fopen(path, "rb");
    if (!s.f) return cnn_error(ctx, CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(s.f), &sb) != 0)
        CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    if (S_ISDIR(sb.st_mode)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: is a directory, expected an IDX file", path));
    if (!S_ISREG(sb.st_mode)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: not a regular file", path));
    uint64_t file_size = (uint64_t)sb.st_size;
    if (file_size == 0) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: file is empty (expected an IDX header)", path));

    /* gzip or raw, by the first two bytes. */
    unsigned char m2[2];
    size_t r = fread(m2, 1, 2, s.f);
    if (r < 2 && ferror(s.f)) CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: read error: %s", path, strerror(errno)));
    if (r == 2 && m2[0] == 0x1f && m2[1] == 0x8b) {
        s.gz = 1;
        s.in = cnn_mem_alloc(ctx, CHUNK);
        if (!s.in) CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path));
        memcpy(s.in, m2, 2);
        s.zs.next_in = s.in;
        s.zs.avail_in = 2;
        s.file_read = 2;
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK)
            CNN_TRY(cnn_error(ctx, CNN_ERR_NOMEM, "%s: cannot initialise zlib", path));
        s.zinit = 1;
    } else {
        rewind(s.f);
    }
    const char *kind = s.gz ? " (decompressed)" : "";

    /* Header. */
    unsigned char hdr[16];
    size_t header_bytes = 4 + 4 * ndim;
    size_t got;
    CNN_TRY(source_read(&s, hdr, header_bytes, &got));
    uint32_t want_magic = 0x00000800u | (uint32_t)ndim;
    if (got < 4)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %zu bytes%s is too short for an IDX header (%zu bytes)", path,
                          got, kind, header_bytes));
    uint32_t magic = be32(hdr);
    if (magic != want_magic) {
        const char *tn = type_name(hdr[2]);
        if (hdr[0] == 0 && hdr[1] == 0 && tn && hdr[2] != 0x08)
            CNN_TRY(cnn_error(ctx, CNN_ERR_UNSUPPORTED,
                              "%s: IDX element type 0x%02x (%s) is not supported; expected unsigned bytes "
                              "(magic 0x%08x)",
                              path, hdr[2], tn, want_magic));
        if (hdr[0] == 0 && hdr[1] == 0 && hdr[2] == 0x08)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                              "%s: IDX file has %u dimension%s, expected %zu (magic 0x%08x, wanted 0x%08x: %s)",
                              path, hdr[3], hdr[3] == 1 ? "" : "s", ndim, magic, want_magic, ndim == 1 ? "labels" : "images"));
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: bad magic number 0x%08x, expected 0x%08x (IDX %s)", path, magic,
                          want_magic, ndim == 1 ? "labels" : "images"));
    }
    if (got < header_bytes)
        CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: IDX header truncated: %zu of %zu bytes%s", path, got,
                          header_bytes, kind));
    size_t expected = 1;
    for (size_t d = 0; d < ndim; d++) {
        uint32_t v = be32(hdr + 4 + 4 * d);
        if (v == 0) CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: dimension %zu of the IDX header is 0", path, d));
        if (d == 0 && v > CNN_IDX_MAX_ITEMS)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: %u items is more than the limit of %u", path, v,
                              CNN_IDX_MAX_ITEMS));
        if (d > 0 && v > CNN_IDX_MAX_DIM)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: dimension %zu is %u, more than the limit of %u", path, d, v,
                              CNN_IDX_MAX_DIM));
        out->dims[d] = v;
        if (!cnn_size_mul(expected, v, &expected))
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: the IDX dimensions overflow the address space", path));
    }

    if (!s.gz) {
        uint64_t have = file_size - header_bytes;
        if (file_size < header_bytes || have != (uint64_t)expected)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT, "%s: expected %zu bytes of data after the %zu-byte header, found %llu",
                              path, expected, header_bytes, (unsigned long long)have));
        CNN_TRY(cnn_mem_alloc_checked(ctx, expected, path, (void **)&data));
        CNN_TRY(source_read(&s, data, expected, &got));
        unsigned char extra;
        size_t more = 0;
        if (got == expected) CNN_TRY(source_read(&s, &extra, 1, &more));
        if (got != expected || more != 0)
            CNN_TRY(cnn_error(ctx, CNN_ERR_IO, "%s: file changed while reading (expected %zu data bytes, read %zu%s)",
                              path, expected, got + more, more ? " or more" : ""));
    } else {
        /* Grow as data arrives: the header alone cannot make us allocate much. */
        cap = expected < ((size_t)1 << 20) ? expected : ((size_t)1 << 20);
        CNN_TRY(cnn_mem_alloc_checked(ctx, cap, path, (void **)&data));
        size_t have = 0;
        for (;;) {
            CNN_TRY(source_read(&s, data + have, cap - have, &got));
            have += got;
            if (have < cap || cap == expected) break;
            size_t ncap = cap > expected / 2 ? expected : cap * 2;
            uint8_t *nd = NULL;
            CNN_TRY(cnn_mem_alloc_checked(ctx, ncap, path, (void **)&nd));
            memcpy(nd, data, have);
            cnn_mem_free(ctx, data);
            data = nd;
            cap = ncap;
        }
        if (have < expected)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                              "%s: expected %zu bytes of data after the %zu-byte header, found %zu%s", path, expected,
                              header_bytes, have, kind));
        unsigned char scratch[4096];
        uint64_t extra;
        CNN_TRY(count_extra(&s, scratch, sizeof scratch, &extra));
        if (extra)
            CNN_TRY(cnn_error(ctx, CNN_ERR_FORMAT,
                              "%s: expected %zu bytes of data after the %zu-byte header, found %llu%s%s", path,
                              expected, header_bytes, (unsigned long long)(expected + extra),
                              extra >= MAX_EXTRA_COUNT ? " or more" : "", kind));
    }
    out->ndim = ndim;
    out->header_bytes = header_bytes;
    out->data = data;
    out->bytes = expected;
    data = NULL;

cleanup:
    if (data) cnn_mem_free(ctx, data);
    source_close(&s);
    if (st != CNN_OK) memset(out, 0, sizeof *out);
    return st;
}
