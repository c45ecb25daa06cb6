#!/usr/bin/env python3
"""Times minicnn's convolution benchmarks and PyTorch on the same MobileNetV2 layer
shapes (96x96 input, batch 32) in one run, and prints the ratio table at 1 and 2 threads.

    /usr/bin/python3 bench/compare_pytorch.py [--build build] [--threads 1 2] [--rounds 3] [--kinds dw]
                                          [--markdown out.md]

The PyTorch peer is tuned the way a careful user would tune it:
  * Debian's python3-torch uses the reference BLAS unless OpenBLAS is installed
    (apt-get install libopenblas0-openmp); convolutions go through oneDNN either way.
  * glibc's default malloc thresholds make PyTorch page-fault on every batch-32
    activation; the script re-executes itself with GLIBC_TUNABLES raising them.
  * Each shape is timed in channels_last and in NCHW; the faster one counts.
Backward means input gradient + weight gradient (what training needs).
Each shape is timed by both peers back to back, the order alternating between rounds, so the
noise of a shared machine hits both alike; a round's time is the median of repeated runs, and
the tables give the best round and the median over rounds.
Ratio = PyTorch time / minicnn time (> 1: we are faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
BATCH = 32

# (kind, Cin, Cout, H, stride): H is the input size at a 96x96 network input.
SHAPES = [("conv", 3, 32, 96, 2)] + [
    ("dw", c, c, h, s) for c, h, s in [(32, 48, 1), (96, 48, 2), (144, 24, 1), (144, 24, 2), (192, 12, 1),
                                      (192, 12, 2), (384, 6, 1), (576, 6, 1), (576, 6, 2), (960, 3, 1)]
] + [
    ("pw", ci, co, h, 1) for ci, co, h in [
        (32, 16, 48), (16, 96, 48), (96, 24, 24), (24, 144, 24), (144, 24, 24), (144, 32, 12), (32, 192, 12),
        (192, 32, 12), (192, 64, 6), (64, 384, 6), (384, 64, 6), (384, 96, 6), (96, 576, 6), (576, 96, 6),
        (576, 160, 3), (160, 960, 3), (960, 160, 3), (960, 320, 3), (320, 1280, 3)]
]


def bench_name(kind, ci, co, h, s, direction):
    if kind == "dw":
        return f"BM_dw_{direction}/{ci}/{h}/{s}"
    if kind == "pw":
        return f"BM_pw_{direction}/{ci}/{co}/{h}"
    return f"BM_conv_{direction}/{ci}/{co}/{h}/{s}"


def run_minicnn(build, threads, reps, shape=None):
    """Median real time (us) of each benchmark (all, or the fwd/bwd pair of one shape), by name."""
    out = {}
    for exe in ("bench_dwconv2d", "bench_conv2d"):
        if shape is not None and (shape[0] == "dw") != (exe == "bench_dwconv2d"):
            continue
        path = os.path.join(build, "bin", exe)
        if not os.path.exists(path):
            sys.exit(f"compare_pytorch: {path} not found; build with -DMINICNN_BUILD_BENCH=ON -DMINICNN_NATIVE=ON")
        env = dict(os.environ, MINICNN_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        cmd = [path, "--benchmark_format=json", f"--benchmark_repetitions={reps}",
               "--benchmark_report_aggregates_only=true", "--benchmark_min_time=0.05"]
        if shape is not None:
            fwd = bench_name(*shape, "fwd")
            cmd.append("--benchmark_filter=^" + fwd.replace("_fwd/", "_(fwd|bwd)/") + "/")
        else:  # the dispatcher's choice (MINICNN_ISA caps it), not the name@<isa> variants
            cmd.append("--benchmark_filter=^BM_[a-z]+_(fwd|bwd)/")
        res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        for b in json.loads(res.stdout)["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            name = b["run_name"].replace("/real_time", "")
            scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
            out[name] = b["real_time"] * scale
    return out


def time_torch(fn, reps, min_time=0.05):
    for _ in range(3):
        fn()
    samples = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        samples.append(el / n * 1e6)
    return statistics.median(samples)


def run_torch(threads, reps, shapes=SHAPES):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    out = {}
    for kind, ci, co, h, s in shapes:
        k = 1 if kind == "pw" else 3
        groups = ci if kind == "dw" else 1
        w_shape = (co, 1, k, k) if kind == "dw" else (co, ci, k, k)
        best = {"fwd": float("inf"), "bwd": float("inf")}
        for fmt in (torch.channels_last, torch.contiguous_format):
            x = torch.randn(BATCH, ci, h, h).to(memory_format=fmt).requires_grad_(True)
            w = (torch.randn(*w_shape) * 0.1).to(memory_format=fmt).requires_grad_(True)
            # TF "same" on even inputs pads stride-2 3x3 layers at the bottom/right only. PyTorch
            # gets symmetric padding 1 instead: same output size and work, without the copy an
            # F.pad would add (that copy made PyTorch 2-4x slower on the stride-2 depthwise shapes).
            def conv(xx):
                return F.conv2d(xx, w, stride=s, padding=k // 2, groups=groups)
            with torch.no_grad():
                y = conv(x)
                best["fwd"] = min(best["fwd"], time_torch(lambda: conv(x), reps))
            y = conv(x)
            dy = torch.randn_like(y).contiguous(memory_format=fmt)
            # One recorded graph, replayed: times the backward pass alone.
            best["bwd"] = min(best["bwd"], time_torch(
                lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True), reps))
        for d in ("fwd", "bwd"):
            out[bench_name(kind, ci, co, h, s, d)] = best[d]
    return out


def measure(args, threads):
    """{peer: {name: [round medians]}}: every round times each shape with both peers back to back
    (order alternating between rounds), so machine noise hits both alike."""
    rounds = {"minicnn": {}, "pytorch": {}}
    for r in range(args.rounds):
        for shape in SHAPES:
            peers = [("minicnn", lambda: run_minicnn(args.build, threads, args.reps, shape)),
                     ("pytorch", lambda: run_torch(threads, args.reps, [shape]))]
            if r % 2:
                peers.reverse()
            for peer, fn in peers:
                for name, us in fn().items():
                    rounds[peer].setdefault(name, []).append(us)
        print(f"[{threads}T] round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return rounds


def table(ours, theirs, title):
    lines = ["", title, "",
             "| layer | Cin | Cout | H | s | fwd minicnn | fwd PyTorch | fwd ratio | bwd minicnn | bwd PyTorch | bwd ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    sums = {}
    for kind, ci, co, h, s in SHAPES:
        row = [kind, ci, co, h, s]
        for d in ("fwd", "bwd"):
            n = bench_name(kind, ci, co, h, s, d)
            a, b = ours.get(n), theirs.get(n)
            if a is None:
                row += ["missing", f"{b:.0f}", "-"]
                continue
            row += [f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}"]
            acc = sums.setdefault((kind, d), [0.0, 0.0, float("inf")])
            acc[0] += a
            acc[1] += b
            acc[2] = min(acc[2], b / a)
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "| kind | direction | sum minicnn (us) | sum PyTorch (us) | ratio of sums | worst shape ratio |",
              "|---|---|---|---|---|---|"]
    for (kind, d), (a, b, worst) in sorted(sums.items()):
        lines.append(f"| {kind} | {d} | {a:.0f} | {b:.0f} | {b / a:.2f} | {worst:.2f} |")
    return lines


def per_round(rounds, title):
    """Ratio of sums per kind and direction within each round: both peers' times in a round were
    taken back to back, so this is the paired statistic (the best-round table mixes each peer's
    best round)."""
    mc, pt = rounds["minicnn"], rounds["pytorch"]
    n = min(len(v) for v in mc.values())
    lines = ["", title, "", "| kind | direction | " + " | ".join(f"round {r + 1}" for r in range(n)) +
             " | median |", "|---|---|" + "---|" * (n + 1)]
    for kind in sorted({sh[0] for sh in SHAPES}):
        for d in ("bwd", "fwd"):
            names = [bench_name(*sh, d) for sh in SHAPES if sh[0] == kind]
            names = [nm for nm in names if nm in mc and nm in pt]
            if not names:
                continue
            ratios = [sum(pt[nm][r] for nm in names) / sum(mc[nm][r] for nm in names) for r in range(n)]
            lines.append(f"| {kind} | {d} | " + " | ".join(f"{x:.2f}" for x in ratios) +
                         f" | {statistics.median(ratios):.2f} |")
    return lines


def render(raw, rounds_count, lines):
    for t, rounds in raw.items():
        t = int(t)
        best = {p: {n: min(v) for n, v in r.items()} for p, r in rounds.items()}
        med = {p: {n: statistics.median(v) for n, v in r.items()} for p, r in rounds.items()}
        tn = f"{t} thread{'s' if t > 1 else ''}"
        lines += table(best["minicnn"], best["pytorch"], f"### {tn}: best round (min over rounds of the round medians)")
        if rounds_count > 1:
            lines += table(med["minicnn"], med["pytorch"], f"### {tn}: median over rounds")
            lines += per_round(rounds, f"### {tn}: ratio of sums within each round")
    return lines


def main():
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        os.environ["GLIBC_TUNABLES"] = TUNABLES
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds per thread count (each shape: both peers back to back)")
    ap.add_argument("--kinds", nargs="+", choices=["conv", "dw", "pw"], default=["conv", "dw", "pw"],
                    help="only these layer kinds (default: all)")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--json", help="write raw timings to this file")
    ap.add_argument("--from-json", help="only print the tables of raw timings saved with --json")
    args = ap.parse_args()
    SHAPES[:] = [sh for sh in SHAPES if sh[0] in args.kinds]
    if args.from_json:
        with open(args.from_json) as f:
            raw = json.load(f)
        n = min(len(v) for r in raw.values() for v in r["minicnn"].values())
        print("\n".join(render(raw, n, [f"(tables of {args.from_json})"])))
        return
    import torch
    lines = [f"PyTorch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}, "
             f"batch {BATCH}, 96x96 MobileNetV2 shapes; times in us; each shape timed by both peers back "
             f"to back in each of {args.rounds} rounds (median of {args.reps} repetitions per round); "
             f"ratio = PyTorch / minicnn (>1 = minicnn faster)"]
    raw = {t: measure(args, t) for t in args.threads}
    lines = render(raw, args.rounds, lines)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
