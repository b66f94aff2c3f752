#!/usr/bin/env node
// ort_resnet18.js — the ONNX Runtime side of `cnn bench infer models/resnet18.cnn` (issue 3, M2; docs/bench.md).
//
//   node bench/peers/ort_resnet18.js MODEL.onnx [--batch 1,8] [--threads 2] [--reps 20] [--warmup 3] [--json]
//   node bench/peers/ort_resnet18.js MODEL.onnx --check IN.f32 OUT.f32
//
// Loads MODEL.onnx (what `cnn export` writes: input "input" [N, 3, 224, 224], N symbolic) into an
// onnxruntime-node InferenceSession on the CPU execution provider: intra-op threads = --threads, one
// inter-op thread, sequential execution, all graph optimisations. Per batch size: random input in [-1, 1)
// (fixed seed), --warmup untimed runs, then --reps timed session.run calls (at least 10); prints the median
// and the fastest in ms and images/s. --json: one object per batch, the keys of `cnn bench infer --json`
// (bench "infer", model "ort-resnet18", batch, threads, ms_median, ms_min, images_per_second) plus
// "ort_version". --check: one run on the float32 little-endian input IN.f32 (batch from its size), the
// output written to OUT.f32 (compare.py compares it with cnn's forward).
//
// onnxruntime-node lives in bench/peers/ort/node_modules (`cd bench/peers/ort && npm ci --ignore-scripts`:
// the CPU binaries are in the package; its install script only fetches CUDA ones). Nothing is downloaded at
// run time.
'use strict';

const fs = require('fs');
const path = require('path');

function loadOrt() {
    try {
        return require(path.join(__dirname, 'ort', 'node_modules', 'onnxruntime-node'));
    } catch (e) {
        process.stderr.write('ort_resnet18: onnxruntime-node is not installed (cd bench/peers/ort && npm ci ' +
                             '--ignore-scripts): ' + e.message + '\n');
        process.exit(3);
    }
}

function usage(msg) {
    process.stderr.write('ort_resnet18: ' + msg + '\nusage: node ort_resnet18.js MODEL.onnx [--batch 1,8] ' +
                         '[--threads 2] [--reps 20] [--warmup 3] [--json] | MODEL.onnx --check IN.f32 OUT.f32\n');
    process.exit(2);
}

function parseArgs(argv) {
    const a = {model: null, batches: [1, 8], threads: 2, reps: 20, warmup: 3, json: false, check: null};
    const int = (s, name, min) => {
        const v = Number(s);
        if (!Number.isInteger(v) || v < min) usage(name + ' must be an integer >= ' + min + ', got ' + s);
        return v;
    };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        const next = () => (i + 1 < argv.length ? argv[++i] : usage(k + ' needs a value'));
        if (k === '--batch') a.batches = next().split(',').map((s) => int(s, '--batch', 1));
        else if (k === '--threads') a.threads = int(next(), '--threads', 1);
        else if (k === '--reps') a.reps = int(next(), '--reps', 10);
        else if (k === '--warmup') a.warmup = int(next(), '--warmup', 1);
        else if (k === '--json') a.json = true;
        else if (k === '--check') a.check = [next(), next()];
        else if (k.startsWith('-')) usage('unknown option ' + k);
        else if (a.model) usage('one model file only');
        else a.model = k;
    }
    if (!a.model) usage('expected MODEL.onnx');
    return a;
}

// xorshift64* in [-1, 1): deterministic input, independent of Math.random.
function randomInput(n, seed) {
    let s = BigInt(seed) | 1n;
    const mask = (1n << 64n) - 1n;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
        s ^= s >> 12n;
        s = (s ^ (s << 25n)) & mask;
        s ^= s >> 27n;
        const r = (s * 0x2545F4914F6CDD1Dn) & mask;
        x[i] = Number(r >> 40n) / 8388608.0 - 1.0; // 24 bits
    }
    return x;
}

function median(xs) {
    const s = [...xs].sort((p, q) => p - q);
    const n = s.length;
    return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function main() {
    const a = parseArgs(process.argv.slice(2));
    const ort = loadOrt();
    if (!fs.existsSync(a.model)) usage('no such file: ' + a.model);
    const session = await ort.InferenceSession.create(a.model, {
        executionProviders: ['cpu'],
        intraOpNumThreads: a.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
    });
    const inName = session.inputNames[0], outName = session.outputNames[0];
    const sample = 3 * 224 * 224;

    if (a.check) {
        const buf = fs.readFileSync(a.check[0]);
        if (buf.length === 0 || buf.length % (4 * sample)) usage(a.check[0] + ': not a whole number of 3x224x224 float32 images');
        const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
        const n = x.length / sample;
        const out = await session.run({[inName]: new ort.Tensor('float32', x, [n, 3, 224, 224])});
        const y = out[outName].data;
        fs.writeFileSync(a.check[1], Buffer.from(y.buffer, y.byteOffset, y.byteLength));
        return;
    }

    for (const b of a.batches) {
        const x = new ort.Tensor('float32', randomInput(b * sample, 12345 + b), [b, 3, 224, 224]);
        const feeds = {[inName]: x};
        for (let i = 0; i < a.warmup; i++) await session.run(feeds);
        const ms = [];
        for (let i = 0; i < a.reps; i++) {
            const t0 = process.hrtime.bigint();
            await session.run(feeds);
            ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        const med = median(ms), min = Math.min(...ms);
        const row = {bench: 'infer', model: 'ort-resnet18', batch: b, threads: a.threads, ms_median: med, ms_min: min,
                     images_per_second: (1000 * b) / med, ort_version: ort.env.versions.node};
        if (a.json) process.stdout.write(JSON.stringify(row) + '\n');
        else
            process.stdout.write(`ort resnet18  batch ${b}  threads ${a.threads}  median ${med.toFixed(2)} ms  ` +
                                 `min ${min.toFixed(2)} ms  ${row.images_per_second.toFixed(1)} img/s\n`);
    }
}

main().catch((e) => {
    process.stderr.write('ort_resnet18: ' + (e && e.message ? e.message : e) + '\n');
    process.exit(1);
});
