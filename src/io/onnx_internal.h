/* onnx_internal.h — what the ONNX files (onnx_tensor.c, onnx_import.c, onnx_export.c) share. Only compiled
 * into real code when CMake found protobuf-c and onnx.proto (CNN_HAVE_ONNX); the C code for onnx.proto is
 * generated at build time with the package renamed to cnn_onnx (types CnnOnnx__*, functions cnn_onnx__*). */
#ifndef CNN_ONNX_INTERNAL_H
#define CNN_ONNX_INTERNAL_H

#include "../core/internal.h"

#if defined(CNN_HAVE_ONNX) && CNN_HAVE_ONNX
#include "cnn_onnx.pb-c.h"

/* Largest tensor the readers accept (elements); larger is CNN_ERR_UNSUPPORTED. */
#define CNN_ONNX_MAX_ELEMS ((size_t)1 << 31)
/* Largest file read (bytes). */
#define CNN_ONNX_MAX_FILE ((size_t)1 << 31)

/* Convert a TensorProto into t (float data from cnn_alloc). `what` names it in messages ("initializer
 * 'w'"). Supported element types: FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT8..INT64, UINT8..UINT64, BOOL, in
 * raw_data (little-endian) or the typed field. External data, strings, complex: CNN_ERR_UNSUPPORTED; a
 * count that does not match the dims: CNN_ERR_FORMAT. */
cnn_status cnn_onnx_tensor_from_proto(cnn_ctx *ctx, const CnnOnnx__TensorProto *tp, const char *what,
                                      cnn_onnx_tensor *t);
/* Fill a TensorProto (FLOAT, raw_data) that points into t's memory and *raw (allocated here with the context
 * allocator; free with cnn_mem_free). dims is a malloc'ed copy freed by the caller too (*dims_out). */
cnn_status cnn_onnx_tensor_to_proto(cnn_ctx *ctx, const char *name, const int64_t *dims, size_t ndim,
                                    const float *data, size_t count, CnnOnnx__TensorProto *tp,
                                    uint8_t **raw_out);
/* Read a whole file (at most CNN_ONNX_MAX_FILE bytes); *data from cnn_mem_alloc. */
cnn_status cnn_onnx_read_file(cnn_ctx *ctx, const char *path, uint8_t **data, size_t *size);
/* Write bytes to path (truncating). */
cnn_status cnn_onnx_write_file(cnn_ctx *ctx, const char *path, const uint8_t *data, size_t size);
/* protobuf-c allocator on the context's allocator. */
ProtobufCAllocator cnn_onnx_pb_allocator(cnn_ctx *ctx);
#endif

#endif
