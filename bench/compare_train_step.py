#!/usr/bin/env python3
"""The frozen-base training step (96x96, batch 32, the notebook's augmentation, folded/frozen
MobileNetV2 alpha 1.0 base, head Dense 128 + Dropout + Dense 12, Adam) in minicnn and in the best
PyTorch configurations, interleaved in rounds in one run:

    /usr/bin/python3 bench/compare_train_step.py [--rounds 5] [--threads 2] [--reps 15] \
        [--markdown out.md] [--json out.json]

Each round times, in alternating order: minicnn's step inside fit() (build/bin/train_step, with
the loader's background thread and with augmentation inline), and PyTorch's eager channels-last
and torch.jit.freeze'd bases with an eager head, each with Keras-style per-image scipy
augmentation and with batched affine_grid/grid_sample augmentation
(bench/torch_train_step.py; in this process, the malloc tunables set). The ratio of a round is
minicnn's images/s over the best PyTorch configuration's images/s in that round (the paired
statistic); the table gives each round's ratio and their median.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import torch_trainer as tt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--augs", nargs="+", default=["keras", "torch"])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "mobilenet_v2_1.0_224_no_top.mcnn"))
    ap.add_argument("--data", default="/work/shared/datasets/jellybeans12")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: cap minicnn (MINICNN_ISA), PyTorch's kernels, oneDNN and OpenBLAS to AVX2")
    args = ap.parse_args()
    if args.isa == "avx2":  # before the re-exec below, so that torch starts capped
        os.environ.update({"MINICNN_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                           "DNNL_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"})
    tt.reexec_with_environment(args.threads)
    import torch  # noqa: E402
    import torch_train_step as ts  # noqa: E402

    torch.set_num_threads(args.threads)
    configs = [(b, a) for b in ts.DEFAULT_BASES for a in args.augs]
    prepared = ts.prepare(configs, args.weights, args.data)
    mini = {"minicnn workers=1": ["--workers", "1"], "minicnn workers=0": ["--workers", "0"]}
    rounds = []
    for r in range(args.rounds):
        row = {}

        def run_minicnn():
            for name, extra in mini.items():
                cmd = [os.path.join(args.build, "bin", "train_step"), "--weights", args.weights, "--data",
                       args.data, "--threads", str(args.threads), "--steps", str(args.reps), "--json"] + extra
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row[name] = json.loads(out.strip().splitlines()[-1])["images_per_sec"]

        def run_torch():
            res = ts.time_configs(prepared=prepared, reps=args.reps, rounds=1, log=None)
            for name, v in res["results"].items():
                row["pytorch " + name] = v["images_per_s"]

        for f in ((run_minicnn, run_torch) if r % 2 == 0 else (run_torch, run_minicnn)):
            f()
        best_torch = max(v for k, v in row.items() if k.startswith("pytorch"))
        best_mini = max(v for k, v in row.items() if k.startswith("minicnn"))
        row["ratio"] = best_mini / best_torch
        rounds.append(row)
        print("round %d: " % (r + 1) + ", ".join("%s %.0f" % (k, v) for k, v in row.items() if k != "ratio")
              + ", ratio %.2f" % row["ratio"], flush=True)
    names = [k for k in rounds[0] if k != "ratio"]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    lines = ["| configuration | images/s per round | median |", "|---|---|---|"]
    for n in names:
        v = [r[n] for r in rounds]
        lines.append("| %s | %s | %.0f |" % (n, " ".join("%.0f" % x for x in v), med(v)))
    ratios = [r["ratio"] for r in rounds]
    lines.append("| **minicnn / best PyTorch** | %s | **%.2f** |" % (" ".join("%.2f" % x for x in ratios), med(ratios)))
    cap = [l.split(":", 1)[1].strip() for l in torch.__config__.show().splitlines() if "CPU capability usage" in l]
    md = ("%d threads, %d steps per configuration and round, batch 32, 96x96; instruction sets: --isa %s "
          "(PyTorch ATen kernels: %s)\n\n" % (args.threads, args.reps, args.isa, cap[0] if cap else "?")
          + "\n".join(lines))
    print(md)
    if args.markdown:
        open(args.markdown, "w").write(md + "\n")
    if args.json:
        json.dump(rounds, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
