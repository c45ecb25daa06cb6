#!/usr/bin/env python3
"""The notebook recipe end to end, minicnn's haribo_train against the PyTorch reference trainer
(bench/torch_trainer.py), on the same machine, one run at a time, alternating the two:

    /usr/bin/python3 bench/compare_training.py [--datasets jellybeans12 sign_digits10] \
        [--seeds 1 2] [--rotation 90 0] [--threads 2] [--isa native|avx2] [--markdown out.md] [--json out.json]

Both run the recipe of docs/training.md: alpha 1.0 ImageNet MobileNetV2 at 96x96, frozen, head
Dense 128 relu + Dropout 0.5 + softmax, Adam 1e-4, batch 32, up to 50 epochs, EarlyStopping on
val_loss (patience 5, best weights restored), Keras' validation_split 0.2, nearest resize,
x/127.5 - 1, the notebook's augmentation on the training images only (--rotation 0 drops its
rotation_range=90). minicnn runs with EXIF orientation off here (--no-exif), as the reference
(Keras' load_img) does, so both see the same pixels.

Per run: best val_loss, val_accuracy of the restored (best) model, epochs, wall seconds (decoding
included), training images/s (images trained / time in fit), end-to-end images/s (images trained
/ wall), peak RSS (minicnn: VmHWM of the process; PyTorch: ru_maxrss). The ratio row divides
minicnn's images/s by PyTorch's of the same seed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("MINICNN_SHARED_DIR", os.path.join(ROOT, "..", "shared"))


# What --isa avx2 sets for both trainers: the caps of bench/compare_finetune.py.
sys.path.insert(0, HERE)
from compare_finetune import ISA_ENV  # noqa: E402


def run_minicnn(args, data, seed, rotation, out_dir):
    cmd = [os.path.join(args.build, "bin", "haribo_train"), "--data", data, "--out", out_dir,
           "--weights", args.weights, "--seed", str(seed), "--threads", str(args.threads),
           "--rotation-range", str(rotation), "--no-exif", "--verbose", "2"]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("haribo_train failed:\n" + r.stdout[-2000:] + r.stderr)
    s = json.load(open(os.path.join(out_dir, "summary.json")))
    if args.isa != "native" and s.get("isa") != args.isa:
        raise SystemExit(f"haribo_train ran {s.get('isa')} kernels, expected {args.isa}")
    return {"best_val_loss": s["best_val_loss"], "val_accuracy": s["final_val_accuracy"],
            "epochs": s["epochs_run"], "best_epoch": s["best_epoch"], "wall_s": s["wall_seconds"],
            "train_ips": s["train_images_per_sec"], "e2e_ips": s["end_to_end_images_per_sec"],
            "peak_rss_mb": s["peak_rss_mb"]}


def run_torch(args, data, seed, rotation, out_json):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_trainer.py"), "--data", data,
           "--weights", args.weights, "--seed", str(seed), "--threads", str(args.threads),
           "--rotation-range", str(rotation), "--json", out_json]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("torch_trainer failed:\n" + r.stdout[-2000:] + r.stderr)
    d = json.load(open(out_json))
    return {"best_val_loss": d["best_val_loss"], "val_accuracy": d["restored_val_accuracy"],
            "epochs": d["epochs_run"], "best_epoch": d["best_epoch"], "wall_s": d["wall_seconds"],
            "train_ips": d["train_images_per_s"], "e2e_ips": d["end_to_end_images_per_s"],
            "peak_rss_mb": d["peak_rss_mb"]}


def table(results):
    lines = ["| dataset | rotation | seed | trainer | best val_loss | val_accuracy | epochs (best) | wall s "
             "| train img/s | end-to-end img/s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for who in ("minicnn", "pytorch"):
            x = r[who]
            lines.append("| %s | %s | %d | %s | %.4f | %.4f | %d (%d) | %.1f | %.0f | %.0f | %.0f |" % (
                r["dataset"], r["rotation"], r["seed"], who, x["best_val_loss"], x["val_accuracy"],
                x["epochs"], x["best_epoch"], x["wall_s"], x["train_ips"], x["e2e_ips"], x["peak_rss_mb"]))
        m, p = r["minicnn"], r["pytorch"]
        lines.append("| | | | **ratio** | | | | %.2fx faster | **%.2fx** | **%.2fx** | %.2fx less |" % (
            p["wall_s"] / m["wall_s"], m["train_ips"] / p["train_ips"], m["e2e_ips"] / p["e2e_ips"],
            p["peak_rss_mb"] / m["peak_rss_mb"]))
    return "\n".join(lines)


def seed_summary(results):
    """Mean and sample standard deviation over the seeds of each (dataset, rotation), per trainer.

    The two trainers draw different random numbers (head initialisation, dropout masks,
    shuffling, augmentation), so single seeds are not paired; with several seeds the means
    say whether one trainer learns better, and the spread how much one seed moves.
    """
    groups = {}
    for r in results:
        groups.setdefault((r["dataset"], r["rotation"]), []).append(r)
    lines = ["| dataset | rotation | seeds | trainer | best val_loss, mean (sd) | val_accuracy, mean (sd) "
             "| epochs, mean |", "|---|---|---|---|---|---|---|"]
    for (ds, rot), rs in groups.items():
        for who in ("minicnn", "pytorch"):
            def stat(key):
                v = [r[who][key] for r in rs]
                mean = sum(v) / len(v)
                sd = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
                return mean, sd
            (lm, ls), (am, asd), (em, _) = stat("best_val_loss"), stat("val_accuracy"), stat("epochs")
            lines.append("| %s | %s | %d | %s | %.4f (%.4f) | %.4f (%.4f) | %.1f |" % (
                ds, rot, len(rs), who, lm, ls, am, asd, em))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["jellybeans12"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rotation", nargs="+", type=float, default=[90.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=0, help="override the 50-epoch maximum (0: keep)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "mobilenet_v2_1.0_224_no_top.mcnn"))
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                    help="avx2: cap both trainers to AVX2 + FMA (minicnn, ATen, oneDNN, OpenBLAS)")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.update(ISA_ENV[args.isa])  # both trainers inherit it
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            data = ds if os.path.isdir(ds) else os.path.join(SHARED, "datasets", ds)
            for rot in args.rotation:
                for i, seed in enumerate(args.seeds):
                    r = {"dataset": os.path.basename(data.rstrip("/")), "rotation": rot, "seed": seed}
                    order = ("minicnn", "pytorch") if i % 2 == 0 else ("pytorch", "minicnn")
                    for who in order:
                        print("running %s on %s, rotation %g, seed %d ..." % (who, r["dataset"], rot, seed),
                              flush=True)
                        if who == "minicnn":
                            r[who] = run_minicnn(args, data, seed, rot, os.path.join(tmp, "m%d" % len(results)))
                        else:
                            r[who] = run_torch(args, data, seed, rot, os.path.join(tmp, "t%d.json" % len(results)))
                        print("  ", r[who], flush=True)
                    results.append(r)
    md = table(results)
    if len(args.seeds) > 1:
        md += "\n\n" + seed_summary(results)
    print(md)
    if args.markdown:
        open(args.markdown, "w").write(md + "\n")
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
