/* onnx_tensor.c — ONNX TensorProto read and write (float32 in memory), file helpers and the protobuf-c
 * allocator shared by the ONNX importer and exporter.
 *
 * Reading converts every numeric element type to float32 (integers exactly up to 2^24, doubles rounded to
 * nearest); data comes from raw_data (little-endian, as the ONNX spec requires) or the typed repeated field
 * (float_data; int32_data for INT8..UINT16, BOOL, FLOAT16 and BFLOAT16 bit patterns; int64_data;
 * double_data; uint64_data for UINT32 and UINT64). The element count must equal the product of the dims.
 * Writing produces FLOAT tensors with raw_data. See docs/onnx.md. */
#include "onnx_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cnn_onnx_tensor_release(cnn_ctx *ctx, cnn_onnx_tensor *t) {
    if (!t) return;
    if (t->data) cnn_free(ctx, t->data);
    memset(t, 0, sizeof *t);
}

#if defined(CNN_HAVE_ONNX) && CNN_HAVE_ONNX

int cnn_onnx_available(void) { return 1; }

static void *pb_alloc(void *user, size_t size) { return cnn_mem_alloc(user, size ? size : 1); }
static void pb_free(void *user, void *p) { cnn_mem_free(user, p); }
ProtobufCAllocator cnn_onnx_pb_allocator(cnn_ctx *ctx) {
    ProtobufCAllocator a = {pb_alloc, pb_free, ctx};
    return a;
}

cnn_status cnn_onnx_read_file(cnn_ctx *ctx, const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return cnn_error(ctx, CNN_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return cnn_error(ctx, CNN_ERR_IO, "%s: is a directory", path);
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = cnn_mem_alloc(ctx, cap);
    cnn_status st = CNN_OK;
    if (!buf) {
        st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= CNN_ONNX_MAX_FILE) {
                st = cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: larger than %zu bytes", path, (size_t)CNN_ONNX_MAX_FILE);
                goto cleanup;
            }
            uint8_t *nb = cnn_mem_alloc(ctx, cap * 2);
            if (!nb) {
                st = cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path);
                goto cleanup;
            }
            memcpy(nb, buf, len);
            cnn_mem_free(ctx, buf);
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = cnn_error(ctx, CNN_ERR_IO, "%s: read error", path);
            break;
        }
    }
cleanup:
    fclose(f);
    if (st != CNN_OK) {
        cnn_mem_free(ctx, buf);
        return st;
    }
    *data = buf;
    *size = len;
    return CNN_OK;
}

cnn_status cnn_onnx_write_file(cnn_ctx *ctx, const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return cnn_error(ctx, CNN_ERR_IO, "%s: %s", path, strerror(errno));
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    int bad = put != size;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        remove(path);
        return cnn_error(ctx, CNN_ERR_IO, "%s: write error", path);
    }
    return CNN_OK;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static const char *dtype_name(int32_t dt) {
    static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
                                        "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE",
                                        "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    return dt >= 0 && dt <= 16 ? names[dt] : "unknown";
}

/* Bytes per element in raw_data, 0 for unsupported types. */
static size_t elem_size(int32_t dt) {
    switch (dt) {
    case 1: case 6: case 12: return 4;
    case 2: case 3: case 9: return 1;
    case 4: case 5: case 10: case 16: return 2;
    case 7: case 11: case 13: return 8;
    default: return 0;
    }
}

static float raw_elem(int32_t dt, const uint8_t *p) {
    uint64_t u = 0;
    for (size_t b = 0; b < elem_size(dt); b++) u |= (uint64_t)p[b] << (8 * b); /* little-endian */
    switch (dt) {
    case 1: { uint32_t v = (uint32_t)u; float f; memcpy(&f, &v, 4); return f; }
    case 2: return (float)(uint8_t)u;
    case 3: return (float)(int8_t)(uint8_t)u;
    case 4: return (float)(uint16_t)u;
    case 5: return (float)(int16_t)(uint16_t)u;
    case 6: return (float)(int32_t)(uint32_t)u;
    case 7: return (float)(int64_t)u;
    case 9: return u ? 1.0f : 0.0f;
    case 10: return half_to_float((uint16_t)u);
    case 11: { double d; memcpy(&d, &u, 8); return (float)d; }
    case 12: return (float)(uint32_t)u;
    case 13: return (float)u;
    case 16: return bf16_to_float((uint16_t)u);
    default: return NAN;
    }
}

cnn_status cnn_onnx_tensor_from_proto(cnn_ctx *ctx, const CnnOnnx__TensorProto *tp, const char *what,
                                      cnn_onnx_tensor *t) {
    memset(t, 0, sizeof *t);
    int32_t dt = tp->has_data_type ? tp->data_type : 0;
    if (tp->name) snprintf(t->name, sizeof t->name, "%s", tp->name);
    if ((tp->has_data_location && tp->data_location == CNN_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        tp->n_external_data)
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: external data is not supported (store the tensor inside the model)",
                         what);
    if (tp->segment) return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (!elem_size(dt))
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: data type %s (%d) is not supported", what, dtype_name(dt),
                         (int)dt);
    if (tp->n_dims > CNN_ONNX_MAX_DIMS)
        return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: %zu dimensions (at most %d)", what, tp->n_dims,
                         CNN_ONNX_MAX_DIMS);
    size_t count = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: negative dimension %lld", what, (long long)tp->dims[i]);
        if (!cnn_size_mul(count, (size_t)tp->dims[i], &count) || count > CNN_ONNX_MAX_ELEMS)
            return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "%s: more than %zu elements", what, (size_t)CNN_ONNX_MAX_ELEMS);
        t->dims[i] = tp->dims[i];
    }
    t->ndim = tp->n_dims;
    t->dtype = dt;
    t->count = count;
    size_t have;
    const char *field;
    if (tp->has_raw_data) {
        field = "raw_data";
        if (tp->raw_data.len % elem_size(dt))
            return cnn_error(ctx, CNN_ERR_FORMAT, "%s: raw_data has %zu bytes, not a multiple of %zu", what,
                             tp->raw_data.len, elem_size(dt));
        have = tp->raw_data.len / elem_size(dt);
    } else if (dt == 1) {
        field = "float_data", have = tp->n_float_data;
    } else if (dt == 7) {
        field = "int64_data", have = tp->n_int64_data;
    } else if (dt == 11) {
        field = "double_data", have = tp->n_double_data;
    } else if (dt == 12 || dt == 13) {
        field = "uint64_data", have = tp->n_uint64_data;
    } else {
        field = "int32_data", have = tp->n_int32_data;
    }
    if (have != count)
        return cnn_error(ctx, CNN_ERR_FORMAT, "%s: %s holds %zu elements, the dims say %zu", what, field, have, count);
    if (count == 0) return CNN_OK;
    float *d = cnn_alloc(ctx, count * sizeof(float));
    if (!d) return cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory (%zu elements)", what, count);
    for (size_t i = 0; i < count; i++) {
        float v;
        if (tp->has_raw_data) v = raw_elem(dt, tp->raw_data.data + i * elem_size(dt));
        else if (dt == 1) v = tp->float_data[i];
        else if (dt == 7) v = (float)tp->int64_data[i];
        else if (dt == 11) v = (float)tp->double_data[i];
        else if (dt == 12 || dt == 13) v = (float)tp->uint64_data[i];
        else if (dt == 10) v = half_to_float((uint16_t)tp->int32_data[i]);
        else if (dt == 16) v = bf16_to_float((uint16_t)tp->int32_data[i]);
        else if (dt == 9) v = tp->int32_data[i] ? 1.0f : 0.0f;
        else v = (float)tp->int32_data[i];
        d[i] = v;
    }
    t->data = d;
    return CNN_OK;
}

cnn_status cnn_onnx_tensor_to_proto(cnn_ctx *ctx, const char *name, const int64_t *dims, size_t ndim,
                                    const float *data, size_t count, CnnOnnx__TensorProto *tp,
                                    uint8_t **raw_out) {
    cnn_onnx__tensor_proto__init(tp);
    *raw_out = NULL;
    size_t bytes;
    if (!cnn_size_mul(count, 4, &bytes)) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "tensor too large");
    uint8_t *raw = cnn_mem_alloc(ctx, bytes ? bytes : 1);
    if (!raw) return cnn_error(ctx, CNN_ERR_NOMEM, "out of memory writing a tensor (%zu bytes)", bytes);
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int b = 0; b < 4; b++) raw[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    tp->name = (char *)name;
    tp->n_dims = ndim;
    tp->dims = (int64_t *)dims;
    tp->has_data_type = 1;
    tp->data_type = CNN_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tp->has_raw_data = 1;
    tp->raw_data.len = bytes;
    tp->raw_data.data = raw;
    *raw_out = raw;
    return CNN_OK;
}

cnn_status cnn_onnx_tensor_read(cnn_ctx *ctx, const char *path, cnn_onnx_tensor *out) {
    if (!out) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_onnx_tensor_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!ctx || !path) return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_onnx_tensor_read: NULL argument");
    uint8_t *buf;
    size_t len;
    cnn_status st = cnn_onnx_read_file(ctx, path, &buf, &len);
    if (st != CNN_OK) return st;
    ProtobufCAllocator a = cnn_onnx_pb_allocator(ctx);
    CnnOnnx__TensorProto *tp = cnn_onnx__tensor_proto__unpack(&a, len, buf);
    cnn_mem_free(ctx, buf);
    if (!tp) return cnn_error(ctx, CNN_ERR_FORMAT, "%s: not a valid ONNX TensorProto (protobuf parse failed)", path);
    char what[1100];
    snprintf(what, sizeof what, "%s", path);
    st = cnn_onnx_tensor_from_proto(ctx, tp, what, out);
    cnn_onnx__tensor_proto__free_unpacked(tp, &a);
    return st;
}

cnn_status cnn_onnx_tensor_write(cnn_ctx *ctx, const char *path, const cnn_onnx_tensor *t) {
    if (!ctx || !path || !t || t->ndim > CNN_ONNX_MAX_DIMS || (t->count && !t->data))
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_onnx_tensor_write: bad arguments");
    size_t count = 1;
    for (size_t i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0 || !cnn_size_mul(count, (size_t)t->dims[i], &count))
            return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_onnx_tensor_write: bad dims");
    }
    if (count != t->count)
        return cnn_error(ctx, CNN_ERR_INVALID_ARG, "cnn_onnx_tensor_write: count %zu does not match the dims (%zu)",
                         t->count, count);
    CnnOnnx__TensorProto tp;
    uint8_t *raw;
    cnn_status st = cnn_onnx_tensor_to_proto(ctx, t->name, t->dims, t->ndim, t->data, t->count, &tp, &raw);
    if (st != CNN_OK) return st;
    size_t n = cnn_onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *out = cnn_mem_alloc(ctx, n ? n : 1);
    if (!out) {
        cnn_mem_free(ctx, raw);
        return cnn_error(ctx, CNN_ERR_NOMEM, "%s: out of memory", path);
    }
    cnn_onnx__tensor_proto__pack(&tp, out);
    st = cnn_onnx_write_file(ctx, path, out, n);
    cnn_mem_free(ctx, out);
    cnn_mem_free(ctx, raw);
    return st;
}

#else /* ONNX disabled at build time */

int cnn_onnx_available(void) { return 0; }
cnn_status cnn_onnx_tensor_read(cnn_ctx *ctx, const char *path, cnn_onnx_tensor *out) {
    (void)path;
    if (out) memset(out, 0, sizeof *out);
    return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "ONNX support was not built (needs protobuf-c and onnx.proto)");
}
cnn_status cnn_onnx_tensor_write(cnn_ctx *ctx, const char *path, const cnn_onnx_tensor *t) {
    (void)path;
    (void)t;
    return cnn_error(ctx, CNN_ERR_UNSUPPORTED, "ONNX support was not built (needs protobuf-c and onnx.proto)");
}

#endif
