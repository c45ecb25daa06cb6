// ONNX Runtime peer of bench/compare_model.py: times InferenceSession.run of an ONNX model
// (the exported PyTorch twin of minicnn's MobileNetV2) with onnxruntime-node's CPU provider.
//
//   cd bench && npm install --ignore-scripts        (once; the CPU binaries ship in the package)
//   node bench/ort_bench.mjs --model M.onnx [--threads 2] [--batch 1] [--size 96]
//                            [--runs 200] [--warmup 20]               -> one JSON line
//   node bench/ort_bench.mjs --model M.onnx --threads 2 --serve        -> a worker: one JSON
//        request per stdin line, one JSON answer per stdout line (used by compare_model.py):
//        {"op":"bench","batch":B,"size":S,"runs":R,"warmup":W}
//        {"op":"infer","input":"x.f32","shape":[N,3,H,W],"output":"y.f32"}   (raw float32 files)
//
// Session: intraOpNumThreads = --threads, interOpNumThreads 1, sequential execution,
// graphOptimizationLevel 'all' (ORT's constant folding, Conv+BN/Conv+Clip fusion and, on
// AVX-512/AVX2 machines, the NCHWc blocked-layout transformer). Every timed sample is one
// `await session.run(feeds)` on a pre-made input tensor; latency_ms is the median sample,
// images_per_sec = batch / median. One session serves all batch sizes (dynamic batch axis).
import * as ort from 'onnxruntime-node';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

function parseArgs(argv) {
  const a = { model: null, threads: 2, batch: 1, size: 96, runs: 200, warmup: 20, serve: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--model') a.model = v();
    else if (k === '--threads') a.threads = parseInt(v(), 10);
    else if (k === '--batch') a.batch = parseInt(v(), 10);
    else if (k === '--size') a.size = parseInt(v(), 10);
    else if (k === '--runs') a.runs = parseInt(v(), 10);
    else if (k === '--warmup') a.warmup = parseInt(v(), 10);
    else if (k === '--serve') a.serve = true;
    else throw new Error(`unknown argument ${k}`);
  }
  if (!a.model) throw new Error('--model FILE.onnx is required');
  return a;
}

function median(xs) {
  const s = [...xs].sort((p, q) => p - q);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

async function bench(session, threads, batch, size, runs, warmup) {
  const n = batch * 3 * size * size;
  const data = new Float32Array(n);
  // Uniform [-1, 1), like `mcnn bench` (a fixed LCG: reproducible, no Math.random state).
  let s = 7;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 4294967296) * 2 - 1;
  }
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, size, size]) };
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const med = median(ms);
  return {
    peer: 'onnxruntime-node', ort_version: ort.env.versions?.node ?? ort.env.versions?.common,
    threads, batch, size, runs, warmup,
    latency_ms: med, min_ms: Math.min(...ms), max_ms: Math.max(...ms), images_per_sec: batch / (med / 1000),
  };
}

async function infer(session, input, shape, output) {
  const buf = readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(data), shape) };
  const out = (await session.run(feeds))[session.outputNames[0]];
  writeFileSync(output, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  return { ok: true, dims: out.dims };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  if (!a.serve) {
    console.log(JSON.stringify(await bench(session, a.threads, a.batch, a.size, a.runs, a.warmup)));
    return;
  }
  const rl = createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply;
    try {
      const req = JSON.parse(line);
      if (req.op === 'bench') {
        reply = await bench(session, a.threads, req.batch, req.size ?? a.size, req.runs ?? a.runs, req.warmup ?? a.warmup);
      } else if (req.op === 'infer') {
        reply = await infer(session, req.input, req.shape, req.output);
      } else if (req.op === 'quit') {
        break;
      } else {
        reply = { error: `unknown op ${req.op}` };
      }
    } catch (e) {
      reply = { error: String(e && e.stack ? e.stack : e) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}

main().catch((e) => {
  console.error(`ort_bench: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
