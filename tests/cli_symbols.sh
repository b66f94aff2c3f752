#!/usr/bin/env bash
# Every symbol the library exports starts with cnn_ (DESIGN.md naming rule), in the shared library's dynamic
# table and among the static library's global definitions; and the shared library exports the public API.
set -u
dir="${CNN_BINARY_DIR:?}"
fail=0
so="$dir/libcnn.so"
a="$dir/libcnn.a"
[ -f "$so" ] || { echo "missing $so"; exit 1; }
[ -f "$a" ] || { echo "missing $a"; exit 1; }
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v -E '^(cnn_|_init$|_fini$|_edata$|_end$|__bss_start$)' || true)
if [ -n "$bad" ]; then echo "libcnn.so exports symbols without the cnn_ prefix:"; echo "$bad"; fail=1; fi
bad=$(nm -g --defined-only "$a" 2>/dev/null | awk 'NF==3 {print $3}' | grep -v -E '^(cnn_|__odr_asan|__asan|__ubsan|__sancov)' || true)
if [ -n "$bad" ]; then echo "libcnn.a defines global symbols without the cnn_ prefix:"; echo "$bad"; fail=1; fi
for sym in cnn_ctx_create cnn_net_parse cnn_net_forward cnn_net_backward cnn_optimizer_step cnn_dataset_load_idx; do
  nm -D --defined-only "$so" | awk '{print $3}' | grep -qx "$sym" || { echo "libcnn.so does not export $sym"; fail=1; }
done
# internal helpers stay hidden from the shared library
if nm -D --defined-only "$so" | awk '{print $3}' | grep -qx cnn_error; then echo "internal cnn_error is exported"; fail=1; fi
[ $fail = 0 ] && echo "symbols ok: $(nm -D --defined-only "$so" | grep -c ' T cnn_') exported functions"
exit $fail
