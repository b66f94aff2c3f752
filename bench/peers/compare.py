#!/usr/bin/python3
"""compare.py — cnn against its peers, side by side in one invocation (issue 3, docs/bench.md).

    /usr/bin/python3 bench/peers/compare.py [--cnn build/cnn] [--rounds 3] [--threads 2] [--reps 10]
                                            [--only conv,gemm,m1,m2] [--torch-conv] [--quick] [--json FILE]

Runs ours and theirs ALTERNATELY, row by row, for --rounds rounds (the machine is shared and noisy: pairs
run seconds apart see the same load), then prints one table: per row the median over rounds of each side's
median, the ratio ours/theirs (> 1: we are faster; the median of the per-round ratios), and the geometric
mean of the ratios (all rows, and the 21 conv rows alone). The header gives the date, the CPU and the peak measured at the start (`cnn bench peak`).

Rows
  conv   B1 c1..c7 x fwd, bwd_data, bwd_weights: `cnn bench conv --shape cX --json` vs `onednn_conv conv
         --shape cX --json` (oneDNN's own formats and convolution_auto, primitive only), GFLOP/s.
         --torch-conv adds PyTorch rows (NCHW and channels_last) as a second peer.
  gemm   2048^3 (and 512^3) SGEMM: `cnn bench gemm` vs dnnl_sgemm, GFLOP/s.
  m1     M1 training step at batch 64 and inference at batch 256, images/s: `cnn bench train|infer
         models/fmnist-small.cnn` vs bench/peers/torch_m1.py (OPENBLAS_NUM_THREADS=1, torch threads = --threads),
         both on random data; also the peak resident memory of each process (ratio theirs/ours: > 1 is
         less memory for us).
  m2     ResNet-18 inference at batch 1 and 8, images/s: `cnn bench infer models/resnet18.cnn --batch B` vs
         ONNX Runtime (bench/peers/ort_resnet18.js, onnxruntime-node, intra-op threads = --threads) on the
         same network: models/resnet18.cnn with its parse-time random weights (seed 0), saved through
         libcnn.so (next to --cnn) and written as ONNX by `cnn export` into a temporary folder. Before the
         rows, one input goes through both (our cnn_net_forward, ORT's session.run) and the header reports
         the largest difference of the outputs (softmax probabilities and their logarithms).
onednn_conv is built with `make -C bench/peers` when missing (needs libdnnl-dev); rows whose peer is missing
are skipped with a note. ORT: `cd bench/peers/ort && npm ci --ignore-scripts` (node_modules is not in git).
"""
import argparse
import array
import ctypes
import datetime
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHAPES = ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
PASSES = ["fwd", "bwd_data", "bwd_weights"]


def run_json(cmd, env=None):
    """Run cmd, return the JSON objects it printed (one per line); [] on failure (with a note)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("compare: %s: %s" % (" ".join(cmd), e), file=sys.stderr)
        return []
    if p.returncode != 0:
        print("compare: %s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()[-500:]), file=sys.stderr)
        return []
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "unknown")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return "%s, %d CPUs, %s" % (name, os.cpu_count() or 0, isa)


def m2_prepare(cnn, ort_js, threads, tmp):
    """The M2 network as ONNX for ORT, and a check that both run it alike. Returns (onnx path, check dict)
    or (None, reason)."""
    if not shutil.which("node"):
        return None, "no node (apt-get install nodejs)"
    if subprocess.run(["node", "-e", "require(%s)" % json.dumps(os.path.join(HERE, "ort", "node_modules",
                                                                           "onnxruntime-node"))],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        return None, "no onnxruntime-node (cd bench/peers/ort && npm ci --ignore-scripts)"
    so = os.path.join(os.path.dirname(os.path.abspath(cnn)), "libcnn.so")
    if not os.path.exists(so):
        return None, "no %s (the weights are saved through it)" % so
    model = os.path.join(ROOT, "models", "resnet18.cnn")
    lib = ctypes.CDLL(so)
    vp = ctypes.c_void_p
    lib.cnn_ctx_create.argtypes = [ctypes.POINTER(vp), vp]
    lib.cnn_ctx_free.argtypes = [vp]
    lib.cnn_ctx_last_error.argtypes = [vp]
    lib.cnn_ctx_last_error.restype = ctypes.c_char_p
    lib.cnn_net_load.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(vp)]
    lib.cnn_net_free.argtypes = [vp]
    lib.cnn_net_save_weights.argtypes = [vp, ctypes.c_char_p]
    lib.cnn_net_compile.argtypes = [vp, ctypes.c_size_t, ctypes.c_uint]
    lib.cnn_net_forward.argtypes = [vp, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_int]
    lib.cnn_net_output.argtypes = [vp, ctypes.POINTER(ctypes.c_size_t)]
    lib.cnn_net_output.restype = ctypes.POINTER(ctypes.c_float)
    ctx, net = vp(), vp()
    if lib.cnn_ctx_create(ctypes.byref(ctx), None) != 0:
        return None, "cnn_ctx_create failed"
    try:
        weights, onnx = os.path.join(tmp, "resnet18.safetensors"), os.path.join(tmp, "resnet18.onnx")
        x_path, y_path = os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.f32")
        if (lib.cnn_net_load(ctx, model.encode(), ctypes.byref(net)) != 0 or
                lib.cnn_net_save_weights(net, weights.encode()) != 0):
            return None, "libcnn: %s" % lib.cnn_ctx_last_error(ctx).decode(errors="replace")
        p = subprocess.run([cnn, "export", weights, "--model", model, "-o", onnx], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            return None, "cnn export: %s" % p.stderr.strip()
        # One input through both.
        n = 3 * 224 * 224
        rng = random.Random(2024)
        x = array.array("f", [rng.uniform(-1.0, 1.0) for _ in range(n)])
        with open(x_path, "wb") as f:
            x.tofile(f)
        count = ctypes.c_size_t()
        if (lib.cnn_net_compile(net, 1, 0) != 0 or
                lib.cnn_net_forward(net, (ctypes.c_float * n).from_buffer(x), 1, 0) != 0):
            return None, "libcnn: %s" % lib.cnn_ctx_last_error(ctx).decode(errors="replace")
        yp = lib.cnn_net_output(net, ctypes.byref(count))
        ours = [yp[i] for i in range(1000)]
        p = subprocess.run(["node", ort_js, onnx, "--threads", str(threads), "--check", x_path, y_path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            return None, "ORT check run: %s" % p.stderr.strip()[-300:]
        theirs = array.array("f")
        with open(y_path, "rb") as f:
            theirs.frombytes(f.read())
        if len(theirs) != len(ours):
            return None, "ORT gave %d outputs, cnn %d" % (len(theirs), len(ours))
        d_p = max(abs(a - b) for a, b in zip(ours, theirs))
        d_log = max(abs(math.log(a) - math.log(b)) for a, b in zip(ours, theirs)) if min(ours + list(theirs)) > 0 \
            else float("inf")
        spread = math.log(max(ours)) - math.log(min(ours))
        return onnx, {"max_abs_diff_prob": d_p, "max_abs_diff_log_prob": d_log, "log_prob_spread": spread,
                      "argmax_equal": ours.index(max(ours)) == list(theirs).index(max(theirs))}
    finally:
        lib.cnn_net_free(net)
        lib.cnn_ctx_free(ctx)


class Table:
    def __init__(self):
        self.rows = {}  # key -> {"ours": [..], "theirs": [..], "unit": str, "group": str, "info": str}
        self.order = []

    def add(self, key, side, value, unit, group, info=""):
        if key not in self.rows:
            self.rows[key] = {"ours": [], "theirs": [], "unit": unit, "group": group, "info": ""}
            self.order.append(key)
        if value is not None and value > 0:
            self.rows[key][side].append(value)
        if info:
            self.rows[key]["info"] = info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnn", default=os.environ.get("CNN", os.path.join(ROOT, "build", "cnn")))
    ap.add_argument("--onednn", default=os.path.join(HERE, "onednn_conv"))
    ap.add_argument("--ort", default=os.path.join(HERE, "ort_resnet18.js"), help="M2 peer script (node)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100, help="M1 training steps per round (each side)")
    ap.add_argument("--only", default="conv,gemm,m1,m2")
    ap.add_argument("--torch-conv", action="store_true")
    ap.add_argument("--quick", action="store_true", help="1 round, 3 reps, few steps (a smoke run)")
    ap.add_argument("--json", default=None, help="also write the table as JSON to this file")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.reps, a.steps = 1, 3, 10
    parts = set(a.only.split(","))
    if not os.access(a.cnn, os.X_OK):
        sys.exit("compare: %s is not an executable (build the project or pass --cnn)" % a.cnn)
    if not os.access(a.onednn, os.X_OK) and ("conv" in parts or "gemm" in parts):
        subprocess.run(["make", "-C", HERE, "onednn_conv"], stdout=sys.stderr)
    have_dnnl = os.access(a.onednn, os.X_OK)
    if not have_dnnl:
        print("compare: no %s (apt-get install libdnnl-dev; make -C bench/peers): oneDNN rows skipped" % a.onednn,
              file=sys.stderr)
    have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
    if not have_torch:
        print("compare: no PyTorch (apt-get install python3-torch): torch rows skipped", file=sys.stderr)
    T = str(a.threads)
    reps = str(a.reps)
    model = os.path.join(ROOT, "models", "fmnist-small.cnn")
    torch_env = dict(os.environ, OPENBLAS_NUM_THREADS="1")

    peak_rows = run_json([a.cnn, "bench", "peak", "--threads", T, "--json", "--seconds", "0.5"])
    peak = {r["threads"]: r["gflops"] for r in peak_rows}
    peak_t = peak.get(a.threads, 0)
    isa = peak_rows[0]["isa"] if peak_rows else "?"
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print("# cnn vs peers  %s  %s" % (date, cpu_name()))
    print("# cnn isa %s, peak %s GFLOP/s (1 thread %s); %d rounds, ours and theirs alternately, %s threads" %
          (isa, "%.1f" % peak_t if peak_t else "?", "%.1f" % peak.get(1, 0), a.rounds, T), flush=True)
    peak_arg = ["--peak", "%.3f" % peak_t] if peak_t else []
    m2_tmp = tempfile.mkdtemp(prefix="cnn-compare-m2.") if "m2" in parts else None
    m2_onnx, m2_check = (m2_prepare(a.cnn, a.ort, a.threads, m2_tmp) if m2_tmp else (None, None))
    if m2_tmp and not m2_onnx:
        print("compare: M2 rows skipped: %s" % m2_check, file=sys.stderr)
        m2_check = None
    elif m2_check:
        print("# m2: models/resnet18.cnn (random weights) vs ORT %s on one input: max |dp| %.3g, max |d log p| "
              "%.3g (log p spread %.3g), same argmax: %s" %
              ("(onnxruntime-node)", m2_check["max_abs_diff_prob"], m2_check["max_abs_diff_log_prob"],
               m2_check["log_prob_spread"], "yes" if m2_check["argmax_equal"] else "NO"), flush=True)

    tab = Table()
    for rnd in range(a.rounds):
        print("# round %d/%d" % (rnd + 1, a.rounds), file=sys.stderr, flush=True)
        if "conv" in parts:
            for s in SHAPES:
                ours = run_json([a.cnn, "bench", "conv", "--shape", s, "--threads", T, "--reps", reps, "--json"] +
                                peak_arg)
                theirs = run_json([a.onednn, "conv", "--shape", s, "--threads", T, "--reps", reps, "--json"]) \
                    if have_dnnl else []
                tv = {r["pass"]: r for r in theirs}
                for r in ours:
                    key = "%s %s" % (s, r["pass"])
                    t = tv.get(r["pass"])
                    tab.add(key, "ours", r["gflops_median"], "GFLOP/s", "conv",
                            "%s / %s" % (r.get("algorithm", ""), t.get("algorithm", "") if t else "-"))
                    tab.add(key, "theirs", t["gflops_median"] if t else None, "GFLOP/s", "conv")
                if a.torch_conv and have_torch:
                    tr = run_json(["/usr/bin/python3", os.path.join(HERE, "torch_m1.py"), "conv", "--shape", s,
                                   "--threads", T, "--reps", reps, "--json"], env=torch_env)
                    ov = {r["pass"]: r["gflops_median"] for r in ours}
                    for r in tr:
                        key = "%s %s torch-%s" % (s, r["pass"], r["layout"])
                        tab.add(key, "ours", ov.get(r["pass"]), "GFLOP/s", "conv-torch")
                        tab.add(key, "theirs", r["gflops_median"], "GFLOP/s", "conv-torch")
        if "gemm" in parts:
            for n in ("512", "2048"):
                ours = run_json([a.cnn, "bench", "gemm", "--m", n, "--n", n, "--k", n, "--threads", T, "--reps", reps,
                                 "--json"] + peak_arg)
                theirs = run_json([a.onednn, "gemm", "--m", n, "--n", n, "--k", n, "--threads", T, "--reps", reps,
                                   "--json"]) if have_dnnl else []
                key = "sgemm %s^3" % n
                tab.add(key, "ours", ours[0]["gflops_median"] if ours else None, "GFLOP/s", "gemm", "cnn_sgemm / dnnl_sgemm")
                tab.add(key, "theirs", theirs[0]["gflops_median"] if theirs else None, "GFLOP/s", "gemm")
        if "m1" in parts:
            tr = run_json([a.cnn, "bench", "train", model, "--batch", "64", "--threads", T, "--reps", str(a.steps),
                           "--json"])
            inf = run_json([a.cnn, "bench", "infer", model, "--batch", "256", "--threads", T, "--reps", reps, "--json"])
            theirs = run_json(["/usr/bin/python3", os.path.join(HERE, "torch_m1.py"), "m1", "--steps", str(a.steps),
                               "--threads", T, "--infer-reps", reps, "--json"], env=torch_env) if have_torch else []
            tv = {r["bench"]: r for r in theirs}
            ot = tr[0] if tr else None
            oi = inf[0] if inf else None
            tab.add("M1 train b64", "ours", ot["images_per_second"] if ot else None, "img/s", "m1", "random data")
            tab.add("M1 train b64", "theirs", tv["train"]["images_per_second"] if "train" in tv else None, "img/s",
                    "m1")
            tab.add("M1 infer b256", "ours", oi["images_per_second"] if oi else None, "img/s", "m1", "random data")
            tab.add("M1 infer b256", "theirs", tv["infer"]["images_per_second"] if "infer" in tv else None, "img/s",
                    "m1")
            # Memory: smaller is better, so the row holds 1/MiB and the ratio reads theirs/ours.
            tab.add("M1 train peak RSS", "ours", 1.0 / ot["peak_rss_mib"] if ot else None, "1/MiB", "mem",
                    "ratio = theirs/ours MiB")
            tab.add("M1 train peak RSS", "theirs", 1.0 / tv["train"]["peak_rss_mib"] if "train" in tv else None,
                    "1/MiB", "mem")

        if m2_onnx:
            resnet = os.path.join(ROOT, "models", "resnet18.cnn")
            for b in (1, 8):
                ours = run_json([a.cnn, "bench", "infer", resnet, "--batch", str(b), "--threads", T, "--reps", reps,
                                 "--json"])
                theirs = run_json(["node", a.ort, m2_onnx, "--batch", str(b), "--threads", T, "--reps",
                                   str(max(10, a.reps)), "--json"])
                key = "M2 infer b%d vs ORT" % b
                tab.add(key, "ours", ours[0]["images_per_second"] if ours else None, "img/s", "m2",
                        "resnet18 / onnxruntime %s" % (theirs[0].get("ort_version", "") if theirs else "-"))
                tab.add(key, "theirs", theirs[0]["images_per_second"] if theirs else None, "img/s", "m2")
    if m2_tmp:
        shutil.rmtree(m2_tmp, ignore_errors=True)

    print("%-28s %10s %10s %8s  %-8s %s" % ("row", "ours", "theirs", "ratio", "unit", "ours / theirs algorithm"))
    ratios, conv_ratios, out = [], [], []
    for key in tab.order:
        r = tab.rows[key]
        o = median(r["ours"]) if r["ours"] else None
        t = median(r["theirs"]) if r["theirs"] else None
        # Each round ran ours and theirs seconds apart, under the same load: the ratio is the median of the
        # per-round ratios (more robust on a shared machine than the ratio of the medians).
        pairs = [x / y for x, y in zip(r["ours"], r["theirs"])] if len(r["ours"]) == len(r["theirs"]) else []
        ratio = median(pairs) if pairs else (o / t if o and t else None)
        if ratio:
            if r["group"] != "conv-torch":
                ratios.append(ratio)
            if r["group"] == "conv":
                conv_ratios.append(ratio)
        unit = r["unit"]
        if unit == "1/MiB":  # show MiB
            o, t, unit = (1 / o if o else None), (1 / t if t else None), "MiB"
        fmt = lambda v: "%10.1f" % v if v is not None else "%10s" % "-"  # noqa: E731
        print("%-28s %s %s %8s  %-8s %s" % (key, fmt(o), fmt(t), "%.2fx" % ratio if ratio else "-", unit, r["info"]))
        out.append({"row": key, "ours": o, "theirs": t, "ratio": ratio, "unit": unit, "group": r["group"],
                    "rounds_ours": r["ours"], "rounds_theirs": r["theirs"], "info": r["info"]})

    def gmean(xs):
        return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None

    g_all, g_conv = gmean(ratios), gmean(conv_ratios)
    if g_conv:
        print("%-28s %10s %10s %7.2fx  (%d rows)" % ("geomean conv vs oneDNN", "", "", g_conv, len(conv_ratios)))
    if g_all:
        print("%-28s %10s %10s %7.2fx  (%d rows)" % ("geomean all", "", "", g_all, len(ratios)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": date, "cpu": cpu_name(), "isa": isa, "peak_gflops": peak, "rounds": a.rounds,
                       "threads": a.threads, "rows": out, "geomean_conv": g_conv, "geomean_all": g_all,
                       "m2_check": m2_check}, f, indent=1)


if __name__ == "__main__":
    main()
