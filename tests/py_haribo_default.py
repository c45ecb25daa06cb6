#!/usr/bin/env python3
"""End to end, as the README's first command runs it: haribo_train with no --data trains on the
embedded synthetic gummies (rendered into OUT/synthetic_gummies), here for 2 epochs. Checks that
the program says the data is synthetic and how to use real photos; that every output file is
there; that the data is not trivially easy (first-epoch validation accuracy below 100 %); that
haribo_predict loads best_model.mcnn on its own and, on the validation images (Keras split:
the first floor(0.2 n) sorted files of each class), agrees with the accuracy in summary.json.
Weights: weights/mobilenet_v2_1.0_224_no_top.mcnn when the README's first command made it,
else converted from ../shared/weights-src; exit code 77 (ctest: skipped) when neither exists."""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

from minicnn_testlib import ALPHA1_H5, BIN, ROOT, check, converted_weights, summary

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def weights_file():
    fetched = os.path.join(ROOT, "weights", "mobilenet_v2_1.0_224_no_top.mcnn")
    if os.path.isfile(fetched):
        return fetched
    return converted_weights() if os.path.isfile(ALPHA1_H5) else None


def run(*args, ok=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode, r.stdout[-3000:], r.stderr))
    return r


def main():
    weights = weights_file()
    if weights is None:
        print("SKIPPED: no ImageNet weights (run weights/fetch_keras_weights.sh, or provide ../shared)")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        r = run(os.path.join(BIN, "haribo_train"), "--out", out, "--weights", weights, "--epochs", "2",
                "--seed", "1", "--verbose", "2")
        check("SYNTHETIC" in r.stdout and "--data DIR" in r.stdout and "--record" in r.stdout,
              "says the data is synthetic, how to train on photos and how to take them with the camera")
        data = os.path.join(out, "synthetic_gummies")
        classes = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
        counts = {c: len([f for f in os.listdir(os.path.join(data, c)) if f.lower().endswith(IMAGE_EXT)])
                  for c in classes}
        check(len(classes) >= 5 and min(counts.values()) >= 60,
              "rendered %d classes, at least 60 pictures each: %s" % (len(classes), counts))
        files = ["best_model.mcnn", "last_checkpoint.mcnn", "history.csv", "curves.png", "curves.svg",
                 "augmented_samples.png", "confusion_matrix.png", "report.html", "summary.json"]
        missing = [f for f in files if not os.path.isfile(os.path.join(out, f))]
        check(not missing, "every output file written (missing: %s)" % missing)
        tail = r.stdout.strip().splitlines()[-2:]
        check(tail == ["Model:  " + os.path.join(out, "best_model.mcnn"), "Report: " + os.path.join(out, "report.html")],
              "ends by saying where the model and the report are: %s" % tail)
        s = json.load(open(os.path.join(out, "summary.json")))
        check(s["classes"] == classes or s["classes"] == len(classes),
              "summary.json classes match the folders")
        n_val = sum(math.floor(0.2 * n) for n in counts.values())
        check(s["val_count"] == n_val and s["train_count"] == sum(counts.values()) - n_val,
              "Keras split 0.2: %d validation, %d training" % (s["val_count"], s["train_count"]))
        check(s["epochs_run"] == 2, "2 epochs run")
        rows = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
        first = float(rows[0]["val_accuracy"])
        check(first < 1.0, "not trivially easy: validation accuracy after 1 epoch is %.3f" % first)

        # The model file alone, through haribo_predict, on the validation images.
        val = []
        for c in classes:
            names = sorted(f for f in os.listdir(os.path.join(data, c)) if f.lower().endswith(IMAGE_EXT))
            val += [os.path.join(data, c, f) for f in names[:math.floor(0.2 * len(names))]]
        res = json.loads(run(os.path.join(BIN, "haribo_predict"), os.path.join(out, "best_model.mcnn"),
                             "--json", *val).stdout)
        cf = res["summary"]["class_folders"]
        check(cf is not None and cf["images"] == len(val), "haribo_predict classified every validation image")
        check(abs(cf["accuracy"] - s["final_val_accuracy"]) < 1e-9,
              "haribo_predict accuracy %.4f equals summary.json's %.4f"
              % (cf["accuracy"], s["final_val_accuracy"]))

        # A second run reuses the rendered pictures instead of drawing them again.
        r = run(os.path.join(BIN, "haribo_train"), "--out", out, "--weights", weights, "--epochs", "1",
                "--seed", "1", "--verbose", "0")
        check("Using %d synthetic images" % sum(counts.values()) in r.stdout, "the rendered data is reused")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
