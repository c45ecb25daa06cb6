#!/usr/bin/env python3
"""Full fine-tune training step (every layer trainable, BatchNormalization in training mode),
minicnn against PyTorch, in one run, interleaved over rounds:

    /usr/bin/python3 bench/compare_finetune.py [--rounds 5] [--threads 2] [--steps 8] \
        [--isa native|avx2] [--build build] [--markdown out.md] [--json out.json]

The step: MobileNetV2 alpha 1.0 (ImageNet weights) at 96x96, batch 32, head Dense 128 relu ->
Dropout 0.5 -> Dense 12, cross-entropy from logits, Keras' Adam (lr 1e-4) over every parameter;
a fixed batch of 32 photos (no augmentation: this times the network, not the data pipeline).
  minicnn: build/bin/train_step --mode full --aug none (the step inside Model::fit);
  PyTorch: the Keras-exact twin (bench/torch_twin.py) in train mode, eager, in NCHW and in
           channels-last, with the malloc tunables of bench/README.md; the faster layout of the
           round counts (PyTorch's best).
Every measurement is its own process, so each one's peak resident memory (VmHWM / ru_maxrss)
is its own. In each round the order of the three alternates. --isa avx2 caps every peer to AVX2 +
FMA on an AVX-512 machine (minicnn through MINICNN_ISA, PyTorch's ATen kernels, oneDNN and
OpenBLAS through their own switches), standing in for an AVX2 CPU. Ratio = minicnn images/s / best
PyTorch images/s of the same round; the table gives each round and the median.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
WEIGHTS = os.path.join(ROOT, "weights", "mobilenet_v2_1.0_224_no_top.mcnn")
ISA_ENV = {"native": {},
           "avx2": {"MINICNN_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "DNNL_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}}
DATA = os.environ.get("MINICNN_SHARED_DIR", os.path.join(ROOT, "..", "shared")) + "/datasets/jellybeans12"


def torch_child(args):
    """One PyTorch measurement in this process; prints a JSON line."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    import torch_trainer as tt
    import torch_train_step as ts
    from torch_twin import load_twin

    torch.set_num_threads(args.threads)
    cl = args.child == "channels_last"
    fmt = torch.channels_last if cl else torch.contiguous_format
    images, labels, n_classes = ts.sample_images(args.data, 32, 96)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    x = x.contiguous(memory_format=fmt)
    y = torch.from_numpy(labels)
    twin = load_twin(args.weights, 96).train().to(memory_format=fmt)
    head = tt.Head(twin.features, n_classes, gen=torch.Generator().manual_seed(1)).train()
    params = list(twin.parameters()) + list(head.parameters())
    for q in params:
        q.requires_grad_(True)
    opt = tt.KerasAdam(params, lr=1e-4)
    times = []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(head(twin(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_ms = 1e3 * float(np.median(times))
    print(json.dumps({"config": "pytorch " + args.child, "step_ms": step_ms,
                      "images_per_sec": 32 / (step_ms / 1e3),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "torch": torch.__version__}))


def run_json(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args, which):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **ISA_ENV[args.isa])
    if which == "minicnn":
        cmd = [os.path.join(args.build, "bin", "train_step"), "--mode", "full", "--aug", "none",
               "--weights", args.weights, "--threads", str(args.threads), "--steps",
               str(args.steps), "--warmup", str(args.warmup), "--json"]
        if os.path.isdir(args.data):
            cmd += ["--data", args.data]
        out = run_json(cmd, env)
        if args.isa != "native" and out.get("isa") != args.isa:
            sys.exit(f"compare_finetune: minicnn ran {out.get('isa')} kernels, expected {args.isa}")
        return out
    env["GLIBC_TUNABLES"] = TUNABLES
    cmd = [sys.executable, os.path.abspath(__file__), "--child", which, "--threads", str(args.threads),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--weights", args.weights,
           "--data", args.data]
    return run_json(cmd, env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="native")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    ap.add_argument("--child", choices=["nchw", "channels_last"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return torch_child(args)

    peers = ["minicnn", "nchw", "channels_last"]
    rounds = []
    for r in range(args.rounds):
        order = peers[r % 3:] + peers[:r % 3]
        if r % 2:
            order.reverse()
        res = {p: measure(args, p) for p in order}
        best = max(("nchw", "channels_last"), key=lambda p: res[p]["images_per_sec"])
        ratio = res["minicnn"]["images_per_sec"] / res[best]["images_per_sec"]
        rounds.append({"results": res, "best_torch": best, "ratio": ratio})
        print(f"round {r + 1}: minicnn {res['minicnn']['images_per_sec']:.1f} img/s "
              f"({res['minicnn']['peak_rss_mib']:.0f} MiB), PyTorch NCHW "
              f"{res['nchw']['images_per_sec']:.1f} ({res['nchw']['peak_rss_mib']:.0f} MiB), "
              f"channels-last {res['channels_last']['images_per_sec']:.1f} "
              f"({res['channels_last']['peak_rss_mib']:.0f} MiB); ratio {ratio:.2f}", flush=True)

    def med(p, key):
        return statistics.median(r["results"][p][key] for r in rounds)

    lines = [f"Full fine-tune step, MobileNetV2 1.0 at 96x96, batch 32, {args.threads} threads, "
             f"--isa {args.isa} (minicnn ran {rounds[0]['results']['minicnn'].get('isa', '?')}), "
             f"{args.rounds} interleaved rounds (medians; ratio = minicnn / best PyTorch layout of each round)",
             "", "| | images/s | step ms | peak RSS MiB |", "|---|---|---|---|"]
    for p, label in (("minicnn", "minicnn"), ("nchw", "PyTorch eager NCHW"),
                     ("channels_last", "PyTorch eager channels-last")):
        lines.append(f"| {label} | {med(p, 'images_per_sec'):.1f} | {med(p, 'step_ms'):.1f} | "
                     f"{med(p, 'peak_rss_mib'):.0f} |")
    lines += ["", "Round ratios: " + ", ".join(f"{r['ratio']:.2f}" for r in rounds)
              + f"; median {statistics.median(r['ratio'] for r in rounds):.2f}"]
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "threads": args.threads, "isa": args.isa}, f, indent=1)


if __name__ == "__main__":
    main()
