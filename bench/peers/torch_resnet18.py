#!/usr/bin/python3
"""torch_resnet18.py — the PyTorch side of `cnn bench infer models/resnet18.cnn` (M2 of BENCH.md; Debian
python3-torch, no torchvision needed).

    /usr/bin/python3 bench/peers/torch_resnet18.py [--batch 1,8] [--layout nchw,channels_last]
                                                   [--threads 2] [--reps 20] [--json]

ResNet-18 built here from torch.nn layers exactly as torchvision.models.resnet18 (BasicBlock, conv biases
off, 1x1 stride-2 conv + batchnorm downsample in the first block of layers 2-4, fc 1000), random weights,
eval mode, inference under torch.inference_mode(), on random 3x224x224 data. Per batch size and layout:
3 warm-up batches, then --reps timed ones; prints the median and the fastest in ms and images/s. JSON (one
object per line): bench "infer", model "torch-resnet18-<layout>", batch, threads, ms_median, ms_min,
images_per_second (as `cnn bench infer --json`). The thread setting is BENCH.md's best for PyTorch:
OPENBLAS_NUM_THREADS=1 (set before torch is imported, unless already set) and torch.set_num_threads(T).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--layout", default="nchw,channels_last")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet18().eval()
    params = sum(p.numel() for p in model.parameters())
    if not a.json:
        print(f"# torch {torch.__version__}, {a.threads} threads, ResNet-18 {params / 1e6:.2f} M parameters")
    for layout in a.layout.split(","):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        m = model.to(memory_format=fmt)
        for b in (int(s) for s in a.batch.split(",")):
            x = torch.randn(b, 3, 224, 224).contiguous(memory_format=fmt)
            times = []
            with torch.inference_mode():
                for i in range(3 + a.reps):
                    t0 = time.perf_counter()
                    m(x)
                    t1 = time.perf_counter()
                    if i >= 3:
                        times.append((t1 - t0) * 1e3)
            times.sort()
            med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
            row = {"bench": "infer", "model": f"torch-resnet18-{layout}", "batch": b, "threads": a.threads,
                   "ms_median": round(med, 3), "ms_min": round(times[0], 3),
                   "images_per_second": round(b / med * 1e3, 2)}
            if a.json:
                print(json.dumps(row))
            else:
                print(f"torch resnet18 {layout:<13} batch {b}  median {med:8.2f} ms  min {times[0]:8.2f} ms  "
                      f"{b / med * 1e3:7.1f} img/s")


if __name__ == "__main__":
    main()
