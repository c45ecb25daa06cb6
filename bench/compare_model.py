#!/usr/bin/env python3
"""Whole-model MobileNetV2 inference: minicnn vs PyTorch (TorchScript, frozen) vs ONNX Runtime
(onnxruntime-node), same network, same weights, same machine, in one run.

    /usr/bin/python3 bench/compare_model.py [--build build] [--threads 2 1] [--rounds 5]
                                            [--markdown out.md] [--json raw.json]

Setup (once): build minicnn (cmake -S . -B build -DMINICNN_NATIVE=ON && cmake --build build -j2),
convert the weights (tools/keras_h5_to_mcnn.py, see --weights), and
`cd bench && npm install --ignore-scripts` for onnxruntime-node. Details: bench/README.md.

What runs (96x96 input, alpha from the .mcnn file, no top, global average pooling):
  * minicnn:  `mcnn bench --json` (BN folded, ReLU6 fused), one process per measurement.
  * PyTorch:  bench/torch_twin.py (the same network, loaded from the same .mcnn) in eval mode,
    torch.jit.freeze(torch.jit.script(model)) (freezing folds BN into the convolutions),
    with and without torch.jit.optimize_for_inference, in channels_last and in NCHW: the
    fastest of the four, picked per thread count and batch size in a short interleaved
    selection pass, is the one timed. torch.set_num_threads(T), torch.inference_mode().
    Runs in a worker process started with OMP_NUM_THREADS=T.
  * ONNX Runtime: the twin exported with torch.onnx.export (opset 13, dynamic batch, constant
    folding), each Pad -> Conv pair merged into the Conv's asymmetric pads (fuse_pads_into_convs;
    --ort-keep-pad: as exported), timed by bench/ort_bench.mjs in a node worker process:
    intraOpNumThreads=T, graphOptimizationLevel 'all', session.run on a pre-made tensor.
Each measurement is the median of many timed forward passes after warm-up (batch 1:
latency; batch 32: images/s = 32 / median batch time). The three peers are interleaved in
rounds (the order rotates every round) so that machine noise hits all of them alike; the
table reports the median over rounds, with the spread (min-max of the round medians).
The machine may be shared: before each measurement the script waits for idle CPUs, and it
repeats a measurement during which other processes took more than --max-interference of the
CPUs the peer uses (CPU time from /proc/stat minus this script's, its workers' and children's).
The whole script runs with GLIBC_TUNABLES raising malloc's mmap/trim thresholds (it
re-executes itself, like compare_pytorch.py); every peer inherits that environment.
Ratio = peer time / minicnn time (> 1: minicnn faster).

Before timing, an equivalence check runs the reference inputs through all three and compares
the pooled features (twin vs numpy reference, minicnn vs twin, ORT vs twin).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir))
REFERENCE_DIR = "/work/shared/imagenet-samples/reference"
PEERS = ("minicnn", "pytorch", "onnxruntime")
TORCH_VARIANTS = [(fmt, ofi) for fmt in ("channels_last", "nchw") for ofi in (False, True)]


def variant_name(fmt, ofi):
    return f"frozen{'+optimize_for_inference' if ofi else ''}, {fmt}"


# ----------------------------------------------------------------------------------------------
# PyTorch worker (a separate process: its OpenMP pool never overlaps the other peers' runs).

def torch_worker(args):
    import torch
    sys.path.insert(0, HERE)
    from torch_twin import load_twin

    args.threads = args.threads[0]
    torch.set_num_threads(args.threads)
    model = load_twin(args.weights, args.size)
    size = args.size
    compiled = {}

    def get(batch, fmt, ofi):
        key = (batch, fmt, ofi)
        if key not in compiled:
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            with torch.inference_mode():
                m = model.to(memory_format=mf)
                s = torch.jit.freeze(torch.jit.script(m))
                if ofi:
                    s = torch.jit.optimize_for_inference(s)
            g = torch.Generator().manual_seed(7)
            x = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).contiguous(memory_format=mf)
            with torch.inference_mode():  # the profiling executor specialises on the first calls
                for _ in range(3):
                    s(x)
            compiled[key] = (s, x)
        return compiled[key]

    def bench(batch, fmt, ofi, runs, warmup):
        s, x = get(batch, fmt, ofi)
        ms = []
        with torch.inference_mode():
            for _ in range(warmup):
                s(x)
            for _ in range(runs):
                t0 = time.perf_counter()
                s(x)
                ms.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(ms)
        return {"peer": "pytorch", "variant": variant_name(fmt, ofi), "batch": batch, "threads": args.threads,
                "runs": runs, "latency_ms": med, "min_ms": min(ms), "max_ms": max(ms),
                "images_per_sec": batch / (med / 1e3)}

    chosen = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "select":
                # Short interleaved passes over the four variants; the lowest median wins.
                b, times = req["batch"], {v: [] for v in TORCH_VARIANTS}
                for _ in range(req.get("passes", 3)):
                    for v in TORCH_VARIANTS:
                        times[v].append(bench(b, *v, req["runs"], req["warmup"])["latency_ms"])
                med = {v: statistics.median(t) for v, t in times.items()}
                best = min(med, key=med.get)
                chosen[b] = best
                reply = {"chosen": variant_name(*best),
                         "variants_ms": {variant_name(*v): m for v, m in med.items()}}
            elif req["op"] == "bench":
                b = req["batch"]
                reply = bench(b, *chosen.get(b, ("channels_last", False)), req["runs"], req["warmup"])
            elif req["op"] == "export":
                x = torch.zeros(1, 3, size, size)
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, x, req["path"], opset_version=13, input_names=["input"],
                                      output_names=["features"], do_constant_folding=True,
                                      dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
                fused = 0
                if req.get("fused_path"):
                    pads = [m.pad for m in model.conv_bn_modules() if m.has_pad]
                    fused = fuse_pads_into_convs(req["path"], req["fused_path"], pads)
                reply = {"ok": True, "torch": torch.__version__, "fused_pads": fused}
            elif req["op"] == "features":  # reference inputs (uint8 NHWC .npy) -> twin features .npy
                import numpy as np
                from torch_twin import preprocess
                u8 = np.load(req["input"])
                x = preprocess(u8)
                with torch.inference_mode():
                    y = model(x).numpy()
                np.save(req["output"], y)
                x.numpy().astype(np.float32).tofile(req["output"] + ".input.f32")
                reply = {"ok": True, "shape": list(x.shape)}
            elif req["op"] == "info":
                cap = [l.split(":", 1)[1].strip() for l in torch.__config__.show().splitlines()
                       if "CPU capability usage" in l]
                reply = {"torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
                         "threads": torch.get_num_threads(), "cpu_capability": cap[0] if cap else "?"}
            elif req["op"] == "quit":
                break
            else:
                reply = {"error": f"unknown op {req['op']}"}
        except Exception as e:  # report, keep serving
            import traceback
            reply = {"error": f"{e}\n{traceback.format_exc()}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def fuse_pads_into_convs(src, dst, pads):
    """Writes src with every Pad -> Conv pair merged into the Conv's (asymmetric) pads
    attribute, as TF-to-ONNX converters emit 'same' convolutions. torch.onnx exports F.pad as a
    Pad whose pads come out of a small shape-arithmetic subgraph; ONNX Runtime 1.30 neither folds
    that Pad into the Conv nor keeps its NCHWc blocked layout across it (each Pad costs a
    ReorderOutput + ReorderInput pair). pads: the twin's F.pad arguments (left, right, top, bottom),
    in model order, one per Pad node."""
    import onnx
    from onnx import helper
    m = onnx.load(src)
    g = m.graph
    nodes = list(g.node)
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pad_nodes = [n for n in nodes if n.op_type == "Pad"]
    if len(pad_nodes) != len(pads):
        raise RuntimeError(f"{src}: {len(pad_nodes)} Pad nodes, the twin has {len(pads)} pads")
    for pn, (left, right, top, bottom) in zip(pad_nodes, pads):
        users = consumers.get(pn.output[0], [])
        mode = next((helper.get_attribute_value(a) for a in pn.attribute if a.name == "mode"), b"constant")
        if len(users) != 1 or users[0].op_type != "Conv" or mode not in (b"constant", "constant") or \
                (len(pn.input) > 2 and pn.input[2]):
            raise RuntimeError(f"{src}: Pad {pn.name} is not a zero pad feeding one Conv")
        conv = users[0]
        old = next(helper.get_attribute_value(a) for a in conv.attribute if a.name == "pads")
        if any(old):
            raise RuntimeError(f"{src}: Conv {conv.name} after a Pad already pads {old}")
        for a in conv.attribute:
            if a.name == "pads":
                a.ints[:] = [top, left, bottom, right]  # ONNX: H begin, W begin, H end, W end
        conv.input[0] = pn.input[0]
        g.node.remove(pn)
    # Drop what only fed the removed Pads.
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    return len(pad_nodes)


# ----------------------------------------------------------------------------------------------
# Driver.

class Worker:
    """A line-oriented JSON request/reply child process."""

    def __init__(self, name, cmd, env, cwd=None):
        self.name = name
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd,
                                  text=True, bufsize=1)

    def ask(self, req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            sys.exit(f"compare_model: the {self.name} worker died (request {req})")
        reply = json.loads(line)
        if "error" in reply:
            sys.exit(f"compare_model: {self.name} worker: {reply['error']}")
        return reply

    def close(self):
        try:
            self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.p.stdin.close()
            self.p.wait(timeout=30)
        except Exception:
            self.p.kill()


# --isa avx2: every peer capped to AVX2 + FMA on an AVX-512 machine, standing in for an AVX2 CPU.
# minicnn through MINICNN_ISA, PyTorch's own kernels through ATEN_CPU_CAPABILITY, oneDNN through
# ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA, OpenBLAS through OPENBLAS_CORETYPE. onnxruntime-node's MLAS
# has no such switch: it keeps its AVX-512 kernels (the tables say so).
ISA_ENV = {"native": {},
           "avx2": {"MINICNN_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "DNNL_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}}
PEER_ISA = "native"


def peer_env(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), GLIBC_TUNABLES=TUNABLES, **ISA_ENV[PEER_ISA])


def run_mcnn(args, threads, batch, runs, warmup):
    cmd = [args.mcnn, "bench", "--weights", args.weights, "--size", str(args.size), "--batch", str(batch),
           "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup), "--json"]
    res = subprocess.run(cmd, env=peer_env(threads), check=True, capture_output=True, text=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    want = ISA_ENV[PEER_ISA].get("MINICNN_ISA")
    if want and out.get("isa") != want:
        sys.exit(f"compare_model: minicnn ran {out.get('isa')} kernels, expected {want}")
    return out


def rel_diff(a, b):
    import numpy as np
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())


def check_all(args, torch_w, ort_w, tmp):
    import numpy as np
    alpha = args.alpha
    out = []
    inputs = os.path.join(REFERENCE_DIR, f"inputs_{args.size}_uint8.npy")
    if not os.path.exists(inputs):
        return [f"equivalence check skipped: {inputs} not found"], True
    twin_out = os.path.join(tmp, "twin.npy")
    shape = torch_w.ask({"op": "features", "input": inputs, "output": twin_out})["shape"]
    twin = np.load(twin_out).astype(np.float64)
    ok = True
    a = "1.0" if alpha == 1.0 else f"{alpha:g}"
    ref_path = os.path.join(REFERENCE_DIR, f"feat_gap_alpha{a}_{args.size}.npy")
    if os.path.exists(ref_path):
        d = rel_diff(twin, np.load(ref_path).astype(np.float64))
        ok &= d <= 1e-4
        out.append(f"PyTorch twin vs numpy reference {os.path.basename(ref_path)}: max rel diff {d:.2g}")
    mc_out = os.path.join(tmp, "mcnn.npy")
    subprocess.run([args.mcnn, "features", "--weights", args.weights, "--size", str(args.size), "--batch", "12",
                    "--out", mc_out, inputs], env=peer_env(2), check=True, capture_output=True, text=True)
    d = rel_diff(np.load(mc_out).astype(np.float64), twin)
    ok &= d <= 1e-4
    out.append(f"minicnn (mcnn features) vs twin: max rel diff {d:.2g}")
    ort_out = os.path.join(tmp, "ort.f32")
    ort_w.ask({"op": "infer", "input": twin_out + ".input.f32", "shape": shape, "output": ort_out})
    ort = np.fromfile(ort_out, dtype=np.float32).reshape(twin.shape).astype(np.float64)
    d = rel_diff(ort, twin)
    ok &= d <= 1e-4
    out.append(f"ONNX Runtime vs twin: max rel diff {d:.2g}")
    return out, ok


def cpu_idle(seconds):
    """Fraction of the machine's CPU time that was idle over the next `seconds` (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[3] + v[4], sum(v)
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def wait_quiet(min_idle, max_wait):
    """Waits (up to max_wait s) until the other processes leave >= min_idle of the CPUs idle.
    Returns the last idle fraction seen."""
    deadline = time.monotonic() + max_wait
    while True:
        idle = cpu_idle(0.5)
        if idle >= min_idle or time.monotonic() >= deadline:
            return idle
        time.sleep(1.0)


class CpuMeter:
    """CPU time the rest of the machine used during a measurement: total busy time from
    /proc/stat minus this script's, its reaped children's (mcnn) and its workers'."""

    def __init__(self, pids):
        self.pids = pids

    def _ours(self):
        t = os.times()
        ticks = (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return ticks

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v) - v[3] - v[4], sum(v)  # busy, total (ticks, all CPUs)

    def start(self):
        self.b0, self.t0 = self._machine()
        self.o0 = self._ours()

    def others_share(self):
        """Fraction of all CPUs' time since start() that other processes used."""
        b1, t1 = self._machine()
        o1 = self._ours()
        return max(0.0, ((b1 - self.b0) - (o1 - self.o0)) / max(1, t1 - self.t0))


def fmt_spread(vals, f):
    return f"{f(statistics.median(vals))} ({f(min(vals))}-{f(max(vals))})"


def main():
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        os.environ["GLIBC_TUNABLES"] = TUNABLES
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="minicnn build folder (bin/mcnn)")
    ap.add_argument("--weights", default=None,
                    help="MobileNetV2 .mcnn (default BUILD/test-weights/mobilenet_v2_1.0.mcnn, "
                         "else build/test-weights/mobilenet_v2_1.0.mcnn)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--batches", type=int, nargs=2, default=[1, 32], metavar=("LATENCY", "THROUGHPUT"))
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median over rounds)")
    ap.add_argument("--runs-latency", type=int, default=200, help="timed runs per batch-1 measurement")
    ap.add_argument("--runs-throughput", type=int, default=15, help="timed runs per batch-32 measurement")
    ap.add_argument("--quiet-idle", type=float, default=0.9,
                    help="before each measurement wait until this fraction of the CPUs the peer uses is idle "
                         "(0: never wait)")
    ap.add_argument("--quiet-max-wait", type=float, default=60, help="longest such wait, seconds")
    ap.add_argument("--max-interference", type=float, default=0.05,
                    help="measure again when other processes used more than this share of the CPUs (plus the "
                         "share of the CPUs the peer does not use: with 1 thread on 2 CPUs, 0.5 more)")
    ap.add_argument("--max-redo", type=int, default=3, help="at most this many repeats of one measurement")
    ap.add_argument("--ort-keep-pad", action="store_true",
                    help="give ONNX Runtime the model as torch.onnx exports it (separate Pad nodes) "
                         "instead of the Pads merged into the Convs")
    ap.add_argument("--save-onnx", help="also copy the ONNX model ONNX Runtime runs to this file")
    ap.add_argument("--no-check", action="store_true", help="skip the equivalence check")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--json", help="write raw measurements to this file")
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                    help="avx2: cap minicnn, PyTorch, oneDNN and OpenBLAS to AVX2 (not ONNX Runtime)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global PEER_ISA
    PEER_ISA = args.isa
    if not args.weights:  # the build folder's converted weights, else the default build's
        args.weights = os.path.join(args.build, "test-weights", "mobilenet_v2_1.0.mcnn")
        if not os.path.exists(args.weights):
            args.weights = os.path.join(ROOT, "build", "test-weights", "mobilenet_v2_1.0.mcnn")
    if args.torch_worker:
        torch_worker(args)
        return
    args.mcnn = os.path.join(args.build, "bin", "mcnn")
    for path, hint in ((args.mcnn, "build minicnn: cmake -S . -B build -DMINICNN_NATIVE=ON && cmake --build build -j2"),
                       (args.weights, "convert: /usr/bin/python3 tools/keras_h5_to_mcnn.py H5 OUT.mcnn"),
                       (os.path.join(HERE, "node_modules", "onnxruntime-node"),
                        "cd bench && npm install --ignore-scripts"),
                       (shutil.which("node") or "node", "install nodejs")):
        if not os.path.exists(path):
            sys.exit(f"compare_model: {path} not found; {hint}")
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from mcnn_format import read_mcnn
    args.alpha = float(read_mcnn(args.weights).metadata["architecture"]["alpha"])
    lat_b, thr_b = args.batches
    runs = {lat_b: (args.runs_latency, max(10, args.runs_latency // 10)),
            thr_b: (args.runs_throughput, 3)}

    tmp = tempfile.mkdtemp(prefix="compare_model_")
    onnx_path = os.path.join(tmp, "twin.onnx")
    raw = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "threads": {}}
    header = []
    checks = []
    try:
        for ti, threads in enumerate(args.threads):
            env = peer_env(threads)
            torch_w = Worker("pytorch", [sys.executable, os.path.abspath(__file__), "--torch-worker",
                                         "--threads", str(threads), "--weights", args.weights,
                                         "--size", str(args.size)], env)
            if ti == 0:
                info = torch_w.ask({"op": "info"})
                torch_w.ask({"op": "export", "path": onnx_path + ".plain.onnx", "fused_path": onnx_path + ".fused.onnx"})
                shutil.copyfile(onnx_path + (".plain.onnx" if args.ort_keep_pad else ".fused.onnx"), onnx_path)
                if args.save_onnx:
                    shutil.copyfile(onnx_path, args.save_onnx)
            ort_w = Worker("onnxruntime", ["node", os.path.join(HERE, "ort_bench.mjs"), "--model", onnx_path,
                                           "--threads", str(threads), "--size", str(args.size), "--serve"], env)
            if ti == 0:
                if not args.no_check:
                    checks, ok = check_all(args, torch_w, ort_w, tmp)
                    for c in checks:
                        print("check:", c, flush=True)
                    if not ok:
                        sys.exit("compare_model: the peers do not compute the same features; not timing")
                ort_ver = ort_w.ask({"op": "bench", "batch": 1, "runs": 1, "warmup": 0})["ort_version"]
                cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                           platform.processor())
                header = [f"MobileNetV2 alpha {args.alpha:g} ({os.path.basename(args.weights)}), {args.size}x{args.size}, "
                          f"whole model (no top, global average pooling), float32, CPU {cpu} ({os.cpu_count()} cores)",
                          f"PyTorch {info['torch']} (oneDNN {info['mkldnn']}, ATen kernels {info['cpu_capability']}), "
                          f"onnxruntime-node {ort_ver}, "
                          f"minicnn {args.mcnn}",
                          f"{args.rounds} interleaved rounds; batch {lat_b}: {args.runs_latency} timed runs per "
                          f"measurement, batch {thr_b}: {args.runs_throughput}; cells: median over rounds "
                          f"(min-max of the round medians); ratio = peer time / minicnn time (> 1: minicnn faster)",
                          f"instruction sets: --isa {args.isa}" +
                          (" (minicnn, PyTorch, oneDNN, OpenBLAS capped to AVX2; ONNX Runtime uncapped)"
                           if args.isa == "avx2" else " (each peer's best)"),
                          f"load average at start: {open('/proc/loadavg').read().split()[:3]}"]
            # PyTorch: pick the fastest frozen variant per batch size.
            # With T threads on a machine of ncpu CPUs, the other ncpu - T CPUs are free for others.
            ncpu = os.cpu_count() or 1
            free = max(0, ncpu - threads) / ncpu
            need_idle = args.quiet_idle * min(threads, ncpu) / ncpu
            allowed = args.max_interference + free
            sel = {}
            meter = CpuMeter([torch_w.p.pid, ort_w.p.pid])
            for b in (lat_b, thr_b):
                r, w = runs[b]
                for attempt in range(args.max_redo + 1):
                    if args.quiet_idle > 0:
                        wait_quiet(need_idle, args.quiet_max_wait)
                    meter.start()
                    sel[b] = torch_w.ask({"op": "select", "batch": b, "runs": max(5, r // 4), "warmup": w,
                                          "passes": 3})
                    if meter.others_share() <= allowed:
                        break
                print(f"[{threads}T] PyTorch batch {b}: using {sel[b]['chosen']}; variants (ms): " +
                      ", ".join(f"{k}: {v:.3f}" for k, v in sel[b]["variants_ms"].items()), flush=True)
            def measure(peer, b):
                """One measurement, repeated (up to --max-redo times) while other processes took
                more than --max-interference of the machine during it."""
                r, w = runs[b]
                for attempt in range(args.max_redo + 1):
                    if args.quiet_idle > 0:
                        wait_quiet(need_idle, args.quiet_max_wait)
                    meter.start()
                    if peer == "minicnn":
                        m = run_mcnn(args, threads, b, r, w)
                    elif peer == "pytorch":
                        m = torch_w.ask({"op": "bench", "batch": b, "runs": r, "warmup": w})
                    else:
                        m = ort_w.ask({"op": "bench", "batch": b, "runs": r, "warmup": w})
                    share = meter.others_share()
                    if share <= allowed or attempt == args.max_redo:
                        break
                    print(f"    ({peer} batch {b}: other processes took {share:.0%} of the CPUs, measuring again)",
                          flush=True)
                return m, share, attempt

            res = {p: {b: [] for b in (lat_b, thr_b)} for p in PEERS}
            noise = {p: {b: [] for b in (lat_b, thr_b)} for p in PEERS}
            redos = 0
            for rnd in range(args.rounds):
                order = PEERS[rnd % 3:] + PEERS[:rnd % 3]
                for b in (lat_b, thr_b):
                    for p in order:
                        m, share, attempt = measure(p, b)
                        res[p][b].append(m["latency_ms"])
                        noise[p][b].append(share)
                        redos += attempt
                print(f"[{threads}T] round {rnd + 1}/{args.rounds}: " + "; ".join(
                    f"{p} {res[p][lat_b][-1]:.3f} ms / {res[p][thr_b][-1]:.1f} ms" for p in PEERS), flush=True)
            torch_w.close()
            ort_w.close()
            raw["threads"][threads] = {"ms_per_batch": res, "others_cpu_share": noise, "redone": redos,
                                       "pytorch_variants": {b: sel[b] for b in sel}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = ["## minicnn vs PyTorch vs ONNX Runtime: MobileNetV2 forward", ""] + [f"- {h}" for h in header]
    if checks:
        lines += [f"- equivalence check (12 reference photos, pooled features): " + "; ".join(checks)]
    lines.append(f"- load average at end: {open('/proc/loadavg').read().split()[:3]}")
    for threads, d in raw["threads"].items():
        res = d["ms_per_batch"]
        mc_lat = statistics.median(res["minicnn"][lat_b])
        mc_thr = statistics.median(res["minicnn"][thr_b])
        shares = [v for per_b in d["others_cpu_share"].values() for vs in per_b.values() for v in vs]
        idle = (f" (other processes' share of the CPUs during the measurements: median "
                f"{statistics.median(shares):.0%}, max {max(shares):.0%}; {d['redone']} measurements redone)")
        lines += ["", f"### {threads} thread{'s' if threads > 1 else ''}{idle}", "",
                  f"| peer | batch-{lat_b} latency ms | batch-{thr_b} images/s | batch-{thr_b} ms/batch "
                  f"| ratio vs minicnn, batch {lat_b} | ratio vs minicnn, batch {thr_b} |",
                  "|---|---|---|---|---|---|"]
        for p in PEERS:
            name = {"minicnn": "minicnn (mcnn bench)",
                    "pytorch": f"PyTorch TorchScript ({d['pytorch_variants'][lat_b]['chosen']} / "
                               f"{d['pytorch_variants'][thr_b]['chosen']})",
                    "onnxruntime": "ONNX Runtime (onnxruntime-node, opt all" +
                                   (")" if args.ort_keep_pad else ", Pads merged into Convs)")}[p]
            lat, thr = res[p][lat_b], res[p][thr_b]
            ips = [thr_b / (t / 1e3) for t in thr]
            lines.append(f"| {name} | {fmt_spread(lat, lambda v: f'{v:.3f}')} | "
                         f"{fmt_spread(ips, lambda v: f'{v:,.0f}')} | {statistics.median(thr):.1f} | "
                         f"{statistics.median(lat) / mc_lat:.2f} | {statistics.median(thr) / mc_thr:.2f} |")
    text = "\n".join(lines)
    print()
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
