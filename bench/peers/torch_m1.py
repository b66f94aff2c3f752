#!/usr/bin/python3
"""torch_m1.py — the PyTorch side of `cnn bench train|infer|conv` (bench/peers/; Debian python3-torch).

    /usr/bin/python3 bench/peers/torch_m1.py m1   [--steps N | --epochs E] [--data DIR] [--threads T]
                                                  [--infer-reps R] [--json]
    /usr/bin/python3 bench/peers/torch_m1.py conv [--shape c1..c7|all] [--pass fwd|bwd_data|bwd_weights|all]
                                                  [--layout nchw|channels_last|both] [--threads T] [--reps R]
                                                  [--json]

m1    M1 of BENCH.md: conv3x3(1->32, pad 1) - ReLU - maxpool 2 - conv3x3(32->64, pad 1) - ReLU - maxpool 2 -
      flatten - dense(128) - ReLU - dense(10), cross-entropy, PyTorch default init, SGD lr 0.05 momentum 0.9,
      batch 64. Without --data: --steps steps (default 200) on random data and random labels (what
      `cnn bench train` runs). With --data DIR (IDX files, e.g. /usr/share/datasets/fashion-mnist): --epochs
      shuffled epochs (x/255) and the test accuracy after each. Then inference (eval, no_grad) at batch 256:
      images/s, median of --infer-reps batches. Prints the training images/s, the inference images/s and the
      peak resident memory (VmHWM). JSON: one object per line, "bench": "train" / "infer" with
      images_per_second, ms_median, peak_rss_mib (as `cnn bench train|infer`).
conv  the B1 rows: forward F.conv2d with bias; backward-data and backward-weights through
      torch.ops.aten.convolution_backward (output masks [1,0,0] and [0,1,1]), so each pass is timed alone, on
      NCHW and/or channels_last tensors; JSON keys as `cnn bench conv` ("algorithm": "torch-nchw" or
      "torch-channels_last").
The thread setting is BENCH.md's best for PyTorch: OPENBLAS_NUM_THREADS=1 (set here before torch is imported,
unless already set) and torch.set_num_threads(T), T = 2 by default (--threads).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

B1 = {  # id: n, c, hw, k, rs, stride, pad, groups
    "c1": (64, 32, 14, 64, 3, 1, 1, 1),
    "c2": (8, 64, 56, 64, 3, 1, 1, 1),
    "c3": (8, 256, 14, 256, 3, 1, 1, 1),
    "c4": (8, 256, 28, 128, 1, 1, 0, 1),
    "c5": (8, 128, 28, 256, 3, 2, 1, 1),
    "c6": (8, 3, 224, 64, 7, 2, 3, 1),
    "c7": (8, 128, 56, 128, 3, 1, 1, 128),
}
PASSES = ("fwd", "bwd_data", "bwd_weights")


def rss_mib():
    # VmHWM: this address space's high-water mark (ru_maxrss survives exec, so it would count the parent)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def emit(obj, as_json, text):
    if as_json:
        print(json.dumps(obj), flush=True)
    else:
        print(text, flush=True)


def read_idx(path):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def load_split(d, split):
    pre = "train" if split == "train" else "t10k"

    def find(stem):
        for ext in ("", ".gz"):
            p = os.path.join(d, stem + ext)
            if os.path.exists(p):
                return p
        sys.exit("torch_m1.py: %s not found in %s" % (stem, d))

    x = read_idx(find(pre + "-images-idx3-ubyte")).float().div_(255.0).unsqueeze(1)
    y = read_idx(find(pre + "-labels-idx1-ubyte")).long()
    return x, y


def m1_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def run_m1(a):
    torch.manual_seed(1)
    model = m1_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    batch = 64

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if a.data:
        xtr, ytr = load_split(a.data, "train")
        xte, yte = load_split(a.data, "test")
        for ep in range(a.epochs):
            model.train()
            perm = torch.randperm(xtr.shape[0])
            t0 = time.perf_counter()
            for i in range(0, xtr.shape[0], batch):
                idx = perm[i:i + batch]
                step(xtr[idx], ytr[idx])
            dt = time.perf_counter() - t0
            model.eval()
            with torch.no_grad():
                correct = sum(int((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum())
                              for i in range(0, xte.shape[0], 1000))
            acc = correct / xte.shape[0]
            ips = xtr.shape[0] / dt
            emit({"bench": "train", "peer": "torch", "epoch": ep + 1, "seconds": dt, "images_per_second": ips,
                  "ms_median": 1e3 * batch / ips, "test_acc": acc, "batch": batch, "threads": a.threads,
                  "peak_rss_mib": rss_mib()}, a.json,
                 "train  epoch %d  %.2f s  %.0f img/s  test_acc %.4f  peak RSS %.1f MiB" %
                 (ep + 1, dt, ips, acc, rss_mib()))
    else:
        g = torch.Generator().manual_seed(2)
        x = torch.rand(batch, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        model.train()
        for _ in range(5):
            step(x, y)
        times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - t0)
        ms = 1e3 * median(times)
        emit({"bench": "train", "peer": "torch", "model": "M1", "batch": batch, "threads": a.threads,
              "ms_median": ms, "ms_min": 1e3 * min(times), "images_per_second": batch / (ms * 1e-3),
              "peak_rss_mib": rss_mib()}, a.json,
             "train  M1  batch %d  %d threads  median %.3f ms  %.0f img/s  peak RSS %.1f MiB" %
             (batch, a.threads, ms, batch / (ms * 1e-3), rss_mib()))
    # Inference at batch 256.
    model.eval()
    xb = torch.rand(256, 1, 28, 28)
    times = []
    with torch.no_grad():
        for _ in range(3):
            model(xb)
        for _ in range(a.infer_reps):
            t0 = time.perf_counter()
            model(xb)
            times.append(time.perf_counter() - t0)
    ms = 1e3 * median(times)
    emit({"bench": "infer", "peer": "torch", "model": "M1", "batch": 256, "threads": a.threads, "ms_median": ms,
          "ms_min": 1e3 * min(times), "images_per_second": 256 / (ms * 1e-3), "peak_rss_mib": rss_mib()}, a.json,
         "infer  M1  batch 256  %d threads  median %.3f ms  %.0f img/s  peak RSS %.1f MiB" %
         (a.threads, ms, 256 / (ms * 1e-3), rss_mib()))


def run_conv(a):
    ids = list(B1) if a.shape == "all" else [a.shape]
    passes = PASSES if a.pass_ == "all" else (a.pass_,)
    layouts = ("nchw", "channels_last") if a.layout == "both" else (a.layout,)
    g = torch.Generator().manual_seed(3)
    for sid in ids:
        n, c, hw, k, rs, st, pad, groups = B1[sid]
        oh = (hw + 2 * pad - rs) // st + 1
        flops = 2.0 * n * k * oh * oh * (c // groups) * rs * rs
        for layout in layouts:
            mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = (torch.rand(n, c, hw, hw, generator=g) * 2 - 1).contiguous(memory_format=mf)
            w = (torch.rand(k, c // groups, rs, rs, generator=g) * 2 - 1).contiguous(memory_format=mf)
            b = torch.rand(k, generator=g)
            dy = (torch.rand(n, k, oh, oh, generator=g) * 2 - 1).contiguous(memory_format=mf)
            for p in passes:
                if p == "fwd":
                    def fn():
                        return F.conv2d(x, w, b, stride=st, padding=pad, groups=groups)
                else:
                    mask = [True, False, False] if p == "bwd_data" else [False, True, True]

                    def fn(mask=mask):
                        return torch.ops.aten.convolution_backward(dy, x, w, [k], [st, st], [pad, pad], [1, 1],
                                                                   False, [0, 0], groups, mask)
                with torch.no_grad():
                    t0 = time.perf_counter()
                    i = 0
                    while i < 2 or (i < 50 and time.perf_counter() - t0 < 0.05):
                        fn()
                        i += 1
                    gf = []
                    for _ in range(a.reps):
                        t0 = time.perf_counter()
                        fn()
                        gf.append(flops / (time.perf_counter() - t0) * 1e-9)
                med = median(gf)
                alg = "torch-" + layout
                emit({"shape": sid, "pass": p, "gflops_median": med, "gflops_min": min(gf), "algorithm": alg,
                      "isa": "torch", "threads": a.threads, "gflops_max": max(gf), "ms_median": flops / med * 1e-6,
                      "peer": "torch", "layout": layout}, a.json,
                     "%-6s  %-11s  %-20s  %7d  %8.1f  %8.1f  %8.1f  %9.3f" %
                     (sid, p, alg, a.threads, med, min(gf), max(gf), flops / med * 1e-6))


def main():
    ap = argparse.ArgumentParser(description="PyTorch peers of cnn bench (M1 training/inference, B1 conv rows)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("m1")
    m.add_argument("--steps", type=int, default=200)
    m.add_argument("--epochs", type=int, default=1)
    m.add_argument("--data", default=None)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--infer-reps", type=int, default=20)
    m.add_argument("--json", action="store_true")
    cv = sub.add_parser("conv")
    cv.add_argument("--shape", default="all", choices=["all"] + list(B1))
    cv.add_argument("--pass", dest="pass_", default="all", choices=("all",) + PASSES)
    cv.add_argument("--layout", default="both", choices=("nchw", "channels_last", "both"))
    cv.add_argument("--threads", type=int, default=2)
    cv.add_argument("--reps", type=int, default=10)
    cv.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.cmd == "m1":
        if a.steps < 1 or a.epochs < 1 or a.infer_reps < 1:
            ap.error("--steps, --epochs and --infer-reps must be >= 1")
        run_m1(a)
    else:
        if a.reps < 1:
            ap.error("--reps must be >= 1")
        run_conv(a)


if __name__ == "__main__":
    main()
