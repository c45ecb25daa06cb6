#!/usr/bin/env python3
"""End-to-end test of haribo_train on a small real subset of ../shared/datasets/jellybeans12
(4 classes, 16 photos each, copied to a temporary folder): every output file is written, the
summary has its fields, the report escapes a hostile class name, `mcnn classify` uses the
trained model on its own and agrees with the accuracy in summary.json, and --resume continues
the run with the same first epochs.
Exit code 77 (ctest: skipped) when ../shared is absent."""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

from minicnn_testlib import BIN, SHARED, WS, check, converted_weights, summary

DATA = os.path.join(SHARED, "datasets", "jellybeans12")


def run(*args, ok=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode, r.stdout[-3000:], r.stderr))
    return r


def main():
    if not os.path.isdir(DATA) or not os.path.isdir(WS):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % SHARED)
        return 77
    weights = converted_weights()
    train = os.path.join(BIN, "haribo_train")
    mcnn = os.path.join(BIN, "mcnn")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        # A class named like markup must come out escaped in the report.
        for cls, name in (("blueberry", "blueberry"), ("cantaloupe", "cantaloupe"),
                          ("green_apple", "<img src=x onerror=alert(1)>"), ("very_cherry", "very_cherry")):
            os.makedirs(os.path.join(data, name))
            for f in sorted(os.listdir(os.path.join(DATA, cls)))[:16]:
                shutil.copy(os.path.join(DATA, cls, f), os.path.join(data, name, f))
        out = os.path.join(tmp, "out")
        common = [train, "--data", data, "--out", out, "--weights", weights, "--size", "64",
                  "--batch-size", "16", "--lr", "1e-3", "--seed", "3", "--verbose", "2", "--threads", "2"]
        r = run(*common, "--epochs", "2")
        check("Found 64 images belonging to 4 classes." in r.stdout, "Keras' 'Found N images' line")
        check("Epoch 2/2" in r.stdout, "one line per epoch when not on a terminal")
        files = ["best_model.mcnn", "last_checkpoint.mcnn", "history.csv", "curves.png", "curves.svg",
                 "augmented_samples.png", "confusion_matrix.png", "report.html", "summary.json"]
        missing = [f for f in files if not os.path.isfile(os.path.join(out, f))]
        check(not missing, "every output file written (missing: %s)" % missing)
        s = json.load(open(os.path.join(out, "summary.json")))
        for k in ("classes", "train_count", "val_count", "epochs_run", "best_epoch", "best_val_loss",
                  "best_val_accuracy", "train_images_per_sec", "wall_seconds", "peak_rss_mb"):
            check(k in s, "summary.json has %s" % k)
        check(s["train_count"] == 52 and s["val_count"] == 12, "Keras split: 3 of 16 per class validate")
        check(s["epochs_run"] == 2, "2 epochs run")
        html = open(os.path.join(out, "report.html")).read()
        check("<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html,
              "the report escapes a class named <img src=x onerror=alert(1)>")
        rows = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
        check(len(rows) == 2 and rows[0]["epoch"] == "0", "history.csv: one row per epoch, Keras' 0-based epochs")

        # The model file alone classifies the validation photos: first 3 sorted files per class.
        val = []
        for c in sorted(os.listdir(data)):
            val += [(c, os.path.join(data, c, f)) for f in sorted(os.listdir(os.path.join(data, c)))[:3]]
        res = json.loads(run(mcnn, "classify", "--weights", os.path.join(out, "best_model.mcnn"), "--json",
                             "--top", "2", *[p for _, p in val]).stdout)
        hits = sum(r["top"][0]["label"] == c for (c, _), r in zip(val, res))
        check(len(res) == 12 and abs(hits / 12 - s["final_val_accuracy"]) < 1e-9,
              "mcnn classify on the model file: %d/12 correct, summary says %.4f" % (hits, s["final_val_accuracy"]))

        # Resume for a third epoch: the first two epochs stay as they were.
        r = run(*common, "--resume", "--epochs", "3")
        check("Resuming from" in r.stdout and "Epoch 3/3" in r.stdout and "Epoch 1/3" not in r.stdout,
              "--resume continues with epoch 3")
        rows3 = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
        check(len(rows3) == 3 and rows3[:2] == rows, "history.csv after resuming keeps epochs 1-2 and adds 3")

        # Bad input: a missing folder and missing weights are clear errors.
        r = run(train, "--data", os.path.join(tmp, "nope"), "--out", out, "--weights", weights, ok=False)
        check(r.returncode != 0 and "does not exist" in r.stderr, "missing data folder: " + r.stderr.strip())
        r = run(train, "--data", data, "--out", out, "--weights", os.path.join(tmp, "w.mcnn"), ok=False)
        check(r.returncode != 0 and "fetch_keras_weights.sh" in r.stderr, "missing weights say how to get them")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
