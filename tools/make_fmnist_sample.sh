#!/bin/sh
# make_fmnist_sample.sh — write tests/data/fmnist-sample/: the first 2000 training and the first 500 test
# images and labels of Fashion-MNIST, in the original IDX .gz layout and file names, from the files of the
# Debian package dataset-fashion-mnist (or another folder with the four .gz files).
#
#   tools/make_fmnist_sample.sh [SOURCE_DIR [OUT_DIR]]
#     SOURCE_DIR  default /usr/share/datasets/fashion-mnist
#     OUT_DIR     default tests/data/fmnist-sample (relative to the repository root)
#
# The output is reproducible: gzip level 9, no file name, mtime 0. Needs python3 (standard library only);
# nothing at test time needs python.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-/usr/share/datasets/fashion-mnist}
out=${2:-$here/tests/data/fmnist-sample}
mkdir -p "$out"
python3 - "$src" "$out" <<'PY'
import gzip, os, struct, sys

src, out = sys.argv[1], sys.argv[2]
parts = [("train", 2000), ("t10k", 500)]

def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file (magic {magic:#010x})")
    ndim = magic & 0xff
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    return ndim, dims, data[4 + 4 * ndim:]

def write_idx_gz(path, ndim, dims, body):
    header = struct.pack(">I", 0x800 | ndim) + struct.pack(">" + "I" * ndim, *dims)
    with open(path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=f, mtime=0) as g:
            g.write(header + body)

for prefix, n in parts:
    for kind, nd in (("images-idx3-ubyte", 3), ("labels-idx1-ubyte", 1)):
        name = f"{prefix}-{kind}"
        path = os.path.join(src, name + ".gz")
        if not os.path.exists(path):
            path = os.path.join(src, name)
        ndim, dims, body = read_idx(path)
        if ndim != nd or dims[0] < n:
            sys.exit(f"{path}: expected {nd} dims and at least {n} items, got {dims}")
        per = 1
        for d in dims[1:]:
            per *= d
        if len(body) != dims[0] * per:
            sys.exit(f"{path}: data length {len(body)} does not match the header {dims}")
        dims[0] = n
        dst = os.path.join(out, name + ".gz")
        write_idx_gz(dst, ndim, dims, body[:n * per])
        print(f"{dst}: {dims} ({os.path.getsize(dst)} bytes)")
PY
