#!/usr/bin/env python3
"""Times ONE frozen-base training step of the notebook recipe in PyTorch: 96x96, batch 32,
augment a batch of in-memory uint8 images + frozen MobileNetV2 forward + head forward/backward
+ Keras' Adam update. The counterpart of one step of minicnn's fit().

    /usr/bin/python3 bench/torch_train_step.py [--threads 2 1] [--rounds 3] [--reps 15] \
        [--warmup 3] [--bases eager-cl frozen-cl] [--augs keras torch none] [--json OUT]

Configurations = base x augmentation:
  base  (a) eager-cl: the twin (bench/torch_twin.py) in eval mode, channels-last, under no_grad;
        (b) frozen-cl: torch.jit.freeze of the scripted twin (BN folded), channels-last, no_grad
            (the trainer's default; any of torch_trainer.BASE_VARIANTS can be named);
  aug   (i)   keras: per image with numpy + scipy.ndimage.affine_transform, exactly as
              ImageDataGenerator does (torch_trainer.KerasAugment; then x/127.5 - 1);
        (ii)  torch: the whole batch at once, F.affine_grid + F.grid_sample (bilinear,
              padding_mode='border' = scipy's 'nearest' fill), flips by indexing, parameters
              drawn batched from a torch.Generator (same distribution and matrices as Keras;
              torch_trainer.py --self-test checks it against scipy);
        (iii) none: uint8 -> float, x/127.5 - 1, vectorised.
The head is Dense 128 relu -> Dropout 0.5 -> Dense 12 in train mode, loss = cross-entropy
from logits, KerasAdam (torch_trainer.py). The images are 32 training images (spread over the classes) of
--data (decoded once; random uint8 if the folder is missing), labels fixed.

Each thread count runs in its own process (OMP_NUM_THREADS and torch.set_num_threads = T;
GLIBC_TUNABLES raising malloc's thresholds, as the other bench scripts). Inside it, --rounds
rounds; in each, every configuration (order rotated per round) runs --warmup untimed steps and
--reps timed steps. Before each measurement it waits (up to --quiet-wait s) for the machine to
be quiet, and it redoes (up to --max-redo times) a measurement during which other processes
took more than --max-interference cores (from /proc/stat), keeping the least disturbed. Reported per configuration: the median step time over all timed steps,
images/s = 32 / median, the spread of the per-round medians, and the medians of the step's
three phases (augmentation + preprocessing, base forward, head forward/backward + Adam), and
the most CPU other processes took during a round's timed steps (from /proc/stat; the machine
is shared: read numbers with a high value there as disturbed).

Another script can import prepare(...) (builds the steps once) and time_configs(...,
prepared=...) -> dict (runs in the calling process at its current thread settings), calling
it once per round between its own measurements, or run this one with --json and read the file.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_trainer as tt  # noqa: E402
from torch_twin import load_twin  # noqa: E402

AUGS = ("keras", "torch", "none")
AUG_LABEL = {"keras": "(i) keras per-image scipy", "torch": "(ii) torch batched grid_sample",
             "none": "(iii) none"}
DEFAULT_BASES = ("eager-cl", tt.DEFAULT_BASE)


def sample_images(data, batch=32, size=96):
    """(uint8 (batch, size, size, 3), int64 labels): the first training images of data."""
    if data and os.path.isdir(data):
        classes, train, _ = tt.scan_directory(data)
        items = [train[i * len(train) // batch] for i in range(batch)]  # spread over the classes
        return tt.decode_all(items, (size, size)), np.array([l for _, l in items], np.int64), len(classes)
    rs = np.random.RandomState(0)
    return (rs.randint(0, 256, (batch, size, size, 3)).astype(np.uint8),
            rs.randint(0, 12, batch).astype(np.int64), 12)


class Step:
    """One training step of one configuration; __call__ returns (aug s, base s, head s)."""

    def __init__(self, base_run, features, aug_kind, images, labels, n_classes, seed=0, rotation_range=90.0):
        self.base_run, self.aug_kind = base_run, aug_kind
        self.images, self.labels = images, torch.from_numpy(labels)
        self.aug = tt.KerasAugment(rotation_range=rotation_range)
        self.rng = np.random.RandomState(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.head = tt.Head(features, n_classes, gen=torch.Generator().manual_seed(seed)).train()
        self.opt = tt.KerasAdam(self.head.parameters(), lr=1e-4)
        self.idx = np.arange(len(labels))

    def batch(self):
        if self.aug_kind == "keras":
            return torch.from_numpy(tt.keras_batch(self.images, self.idx, self.aug, self.rng)).permute(0, 3, 1, 2)
        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float()  # NHWC memory (channels-last)
        if self.aug_kind == "torch":
            p = tt.torch_random_params(x.shape[0], self.aug, self.gen)
            x = tt.torch_augment(x, p)
        return x.div_(127.5).sub_(1.0)

    def __call__(self):
        t0 = time.perf_counter()
        x = self.batch()
        t1 = time.perf_counter()
        feats = self.base_run(x)
        t2 = time.perf_counter()
        loss = F.cross_entropy(self.head(feats), self.labels)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2


def prepare(configs=None, weights=tt.DEFAULT_WEIGHTS, data="/work/shared/datasets/jellybeans12",
            batch=32, size=96, seed=0, rotation_range=90.0):
    """{(base, aug): Step}: loads the images, builds (and freezes) each base once. Pass the
    result to time_configs(prepared=...) to time the same steps again without rebuilding."""
    configs = list(configs or [(b, a) for b in DEFAULT_BASES for a in AUGS])
    images, labels, n_classes = sample_images(data, batch, size)
    bases = {}
    for b, _ in configs:
        if b not in bases:
            twin = load_twin(weights, size)
            bases[b] = (tt.make_base(twin, b, torch.zeros(batch, 3, size, size)), twin.features)
    return {(b, a): Step(bases[b][0], bases[b][1], a, images, labels, n_classes, seed, rotation_range)
            for b, a in configs}


def other_cpu(seconds=0.5):
    """Cores other processes use now (this one sleeps meanwhile)."""
    m = tt.CpuMeter().start()
    time.sleep(seconds)
    return m.stop()


def wait_quiet(max_wait, max_interference):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait and other_cpu() > max_interference:
        pass


def time_configs(configs=None, reps=15, rounds=3, warmup=3, weights=tt.DEFAULT_WEIGHTS,
                 data="/work/shared/datasets/jellybeans12", batch=32, size=96, seed=0,
                 rotation_range=90.0, threads=None, log=print, prepared=None, max_interference=0.1,
                 max_redo=2, quiet_wait=30.0):
    """Times the configurations ((base variant, aug kind) pairs) in interleaved rounds.

    Runs in this process (threads: torch.set_num_threads first, if given); prepared: the
    result of prepare() (its configurations are timed; the data arguments are then unused),
    so that repeated calls, interleaved with another peer, reuse the frozen bases. The machine
    is shared: before each measurement it waits (up to quiet_wait s) until other processes take
    less than max_interference cores, and a measurement during which they took more is redone
    (up to max_redo times; the least disturbed one is kept). Returns
    {"threads", "batch", "results": {"base/aug": {"median_ms", "images_per_s", "round_median_ms",
    "phase_median_ms": {"aug", "base", "head"}, "times_ms", "other_cpu_cores"}}}, where
    other_cpu_cores (per round) is the CPU other processes took during the timed steps (cores).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    steps = prepared or prepare(configs, weights, data, batch, size, seed, rotation_range)
    configs = list(steps)
    first = next(iter(steps.values()))
    batch, size = len(first.labels), first.images.shape[1]
    times = {c: [] for c in configs}
    round_medians = {c: [] for c in configs}
    others = {c: [] for c in configs}
    redone = 0
    for r in range(rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            best = None
            for attempt in range(max_redo + 1):
                wait_quiet(quiet_wait, max_interference)
                for _ in range(warmup):
                    steps[c]()
                meter = tt.CpuMeter().start()
                this = [steps[c]() for _ in range(reps)]
                other = meter.stop()
                if best is None or other < best[1]:
                    best = (this, other)
                if other <= max_interference:
                    break
                redone += 1
            this, other = best
            others[c].append(other)
            times[c] += this
            round_medians[c].append(1e3 * float(np.median([sum(t) for t in this])))
        if log:
            log(f"  round {r + 1}/{rounds} ({torch.get_num_threads()} threads): "
                + ", ".join(f"{b}/{a} {round_medians[(b, a)][-1]:.1f} ms" for b, a in configs))
    results = {}
    for (b, a), ts in times.items():
        total = np.array([sum(t) for t in ts])
        med = float(np.median(total))
        results[f"{b}/{a}"] = dict(
            base=b, aug=a, median_ms=1e3 * med, images_per_s=batch / med,
            round_median_ms=round_medians[(b, a)],
            phase_median_ms={k: 1e3 * float(np.median([t[i] for t in ts])) for i, k in
                             enumerate(("aug", "base", "head"))},
            times_ms=[1e3 * float(t) for t in total], other_cpu_cores=others[(b, a)])
    return dict(threads=torch.get_num_threads(), batch=batch, size=size, reps=reps, rounds=rounds,
                redone=redone, max_interference=max_interference,
                warmup=warmup, rotation_range=rotation_range, results=results)


def table(res):
    lines = [f"threads {res['threads']}, batch {res['batch']}, {res['size']}x{res['size']}, median of "
             f"{res['rounds']} rounds x {res['reps']} steps ({res['redone']} measurements redone for "
             f"interference > {res['max_interference']} cores)",
             "| base | augmentation | step ms (median) | images/s | round medians ms | aug ms | base ms | "
             "head+Adam ms | other CPU (cores, max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"].values():
        rm = r["round_median_ms"]
        ph = r["phase_median_ms"]
        lines.append(f"| {r['base']} | {AUG_LABEL[r['aug']]} | {r['median_ms']:.1f} | {r['images_per_s']:.0f} | "
                     f"{min(rm):.1f}-{max(rm):.1f} | {ph['aug']:.1f} | {ph['base']:.1f} | {ph['head']:.2f} | "
                     f"{max(r['other_cpu_cores']):.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bases", nargs="+", default=list(DEFAULT_BASES), choices=tt.BASE_VARIANTS)
    ap.add_argument("--augs", nargs="+", default=list(AUGS), choices=AUGS)
    ap.add_argument("--rotation-range", type=float, default=90.0)
    ap.add_argument("--weights", default=tt.DEFAULT_WEIGHTS)
    ap.add_argument("--data", default="/work/shared/datasets/jellybeans12")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-interference", type=float, default=0.1,
                    help="redo a measurement during which other processes took more cores than this")
    ap.add_argument("--max-redo", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds to wait for the machine to be quiet before each measurement")
    ap.add_argument("--json", help="write {threads: result} here")
    ap.add_argument("--child-json", help=argparse.SUPPRESS)  # one thread count, in this process
    args = ap.parse_args()
    configs = [(b, a) for b in args.bases for a in args.augs]
    kw = dict(reps=args.reps, rounds=args.rounds, warmup=args.warmup, weights=args.weights, data=args.data,
              seed=args.seed, rotation_range=args.rotation_range, max_interference=args.max_interference,
              max_redo=args.max_redo, quiet_wait=args.quiet_wait)
    if args.child_json:
        res = time_configs(configs, threads=args.threads[0], **kw)
        with open(args.child_json, "w") as f:
            json.dump(res, f)
        return
    out = dict(torch=torch.__version__, python=platform.python_version(), cpus=os.cpu_count(),
               glibc_tunables=tt.TUNABLES, results={})
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), GLIBC_TUNABLES=tt.TUNABLES)
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, os.path.abspath(__file__), "--child-json", tmp.name, "--threads", str(t),
                   "--rounds", str(args.rounds), "--reps", str(args.reps), "--warmup", str(args.warmup),
                   "--bases", *args.bases, "--augs", *args.augs, "--rotation-range", str(args.rotation_range),
                   "--weights", args.weights, "--data", args.data, "--seed", str(args.seed),
                   "--max-interference", str(args.max_interference), "--max-redo", str(args.max_redo),
                   "--quiet-wait", str(args.quiet_wait)]
            subprocess.run(cmd, env=env, check=True)
            with open(tmp.name) as f:
                res = json.load(f)
        out["results"][str(t)] = res
        print(table(res), flush=True)
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
