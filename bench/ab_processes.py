#!/usr/bin/env python3
"""Paired A/B of two builds of a Google Benchmark program, in separate processes.

    /usr/bin/python3 bench/ab_processes.py BIN_A BIN_B [--rounds 4] [--filter REGEX] [--threads 2]

Runs A and B alternately (the order flips every round) and reports, per benchmark, the median
time of each and the median over rounds of the per-round ratio A/B (> 1: B faster), then the
ratio of the summed medians per direction (fwd / bwd). Use it instead of ab_dwconv2d.sh when a
change alters cache behaviour (e.g. streaming stores): in one process such a change also
alters the conditions of the other build. Example, HEAD against the working tree:

    git worktree add /tmp/head HEAD && cmake -S /tmp/head -B /tmp/head/build -DMINICNN_NATIVE=ON
    cmake --build /tmp/head/build --target bench_dwconv2d && cmake --build build --target bench_dwconv2d
    /usr/bin/python3 bench/ab_processes.py /tmp/head/build/bin/bench_dwconv2d build/bin/bench_dwconv2d
"""
import argparse
import json
import os
import statistics
import subprocess


def run(path, filt, threads):
    """Median real time (us) of each benchmark matching filt, by name."""
    env = dict(os.environ, MINICNN_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [path, "--benchmark_format=json", "--benchmark_repetitions=5",
           "--benchmark_report_aggregates_only=true", "--benchmark_min_time=0.05",
           "--benchmark_filter=" + filt]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    out = {}
    for b in json.loads(res.stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
            out[b["run_name"].replace("/real_time", "")] = b["real_time"] * scale
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--filter", default=".", help="Google Benchmark filter (regex)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    times = {"a": {}, "b": {}}
    for r in range(args.rounds):
        order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
        for peer in order:
            for name, us in run(getattr(args, peer), args.filter, args.threads).items():
                times[peer].setdefault(name, []).append(us)
    for name, ta in times["a"].items():
        tb = times["b"][name]
        ratios = [x / y for x, y in zip(ta, tb)]
        print(f"{name:30s} A {statistics.median(ta):8.0f} us  B {statistics.median(tb):8.0f} us  "
              f"A/B {statistics.median(ratios):.3f}  (rounds: {' '.join(f'{x:.2f}' for x in ratios)})")
    for d in ("fwd", "bwd"):
        sa = sum(statistics.median(v) for k, v in times["a"].items() if f"_{d}/" in k)
        sb = sum(statistics.median(v) for k, v in times["b"].items() if f"_{d}/" in k)
        if sa and sb:
            print(f"sum {d}: A {sa:.0f} us  B {sb:.0f} us  A/B {sa / sb:.3f}")


if __name__ == "__main__":
    main()
