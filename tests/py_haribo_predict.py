#!/usr/bin/env python3
"""End-to-end test of haribo_predict on a model trained by haribo_train (2 epochs at 64x64)
on a real subset of ../shared/datasets/jellybeans12 (3 classes, 10 photos each, copied to a
temporary folder): text, JSON and CSV outputs agree with each other; folders are searched
recursively in the order the test computes from os.walk (hidden files and other extensions
left out); the per-class counts, the accuracy and the confusions over images in class
folders equal counts done here; the accuracy on the validation photos equals what training
measured (summary.json); unreadable inputs are listed and make the exit code 1; a model file
that is not a classifier is exit code 2 with a clear message; `mcnn classify` gives the same
answers on the same folder.
Exit code 77 (ctest: skipped) when ../shared is absent."""
import collections
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from minicnn_testlib import BIN, SHARED, WS, check, converted_weights
from minicnn_testlib import summary as checks_summary

DATA = os.path.join(SHARED, "datasets", "jellybeans12")
SAMPLES = os.path.join(SHARED, "imagenet-samples")
PREDICT = os.path.join(BIN, "haribo_predict")
CLASSES = ["blueberry", "lemon_drop", "very_cherry"]
KERAS_EXT = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")


def run(*args, rc=0):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if rc is not None and r.returncode != rc:
        raise SystemExit("%s: exit code %d, expected %d:\n%s\n%s" %
                         (" ".join(args), r.returncode, rc, r.stdout[-3000:], r.stderr[-3000:]))
    return r


def keras_walk(top):
    """Image files under `top` as the test expects them: os.walk, hidden entries skipped,
    folders sorted by path, files sorted by name, Keras' extensions without the dot."""
    dirs = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files = sorted(f for f in filenames
                       if not f.startswith(".") and f.lower().endswith(KERAS_EXT))
        dirs.append((dirpath, files))
    dirs.sort()
    return [os.path.join(d, f) for d, fs in dirs for f in fs]


def parse_text(stdout):
    """FILE: LABEL PROB[, LABEL PROB...] lines, then the summary."""
    head, _, summary = stdout.partition("\nSummary: ")
    rows = {}
    for line in head.splitlines():
        m = re.match(r"^(.*): (.*)$", line)
        rows[m.group(1)] = [(p.rsplit(" ", 1)[0], float(p.rsplit(" ", 1)[1]))
                            for p in m.group(2).split(", ")]
    return rows, "Summary: " + summary


def main():
    if not os.path.isdir(DATA) or not os.path.isdir(WS):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % SHARED)
        return 77
    weights = converted_weights()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        for c in CLASSES:
            os.makedirs(os.path.join(data, c))
            for f in sorted(os.listdir(os.path.join(DATA, c)))[:10]:
                shutil.copy(os.path.join(DATA, c, f), os.path.join(data, c, f))
        out = os.path.join(tmp, "out")
        run(os.path.join(BIN, "haribo_train"), "--data", data, "--out", out, "--epochs", "2",
            "--size", "64", "--no-report", "--weights", weights, "--threads", "2", "--verbose", "0")
        model = os.path.join(out, "best_model.mcnn")

        # Photos to classify: class folders one level down (recursion), an unlabelled folder,
        # a name that needs CSV quoting, and files that must be left out.
        photos = os.path.join(tmp, "photos")
        for c in CLASSES:
            shutil.copytree(os.path.join(data, c), os.path.join(photos, "batch1", c))
        shutil.copy(os.path.join(data, "blueberry", "00001.png"),
                    os.path.join(photos, "batch1", "blueberry", ".hidden.png"))
        os.makedirs(os.path.join(photos, ".cache"))
        shutil.copy(os.path.join(data, "blueberry", "00002.png"), os.path.join(photos, ".cache", "a.png"))
        os.makedirs(os.path.join(photos, "unsorted"))
        shutil.copy(os.path.join(data, "lemon_drop", "00003.png"),
                    os.path.join(photos, "unsorted", "odd, \"name\".PNG"))
        open(os.path.join(photos, "unsorted", "notes.txt"), "w").write("not a picture")
        expected = keras_walk(photos)
        check(len(expected) == 31, "the test's own walk finds 31 images")

        # JSON.
        r = run(PREDICT, model, photos, "--top-k", "2", "--json")
        doc = json.loads(r.stdout)
        res = doc["results"]
        check([x["file"] for x in res] == expected,
              "folders searched recursively in sorted order, hidden files and notes.txt left out")
        check(all(len(x["top"]) == 2 and x["top"][0]["prob"] >= x["top"][1]["prob"] >= 0
                  and x["top"][0]["prob"] + x["top"][1]["prob"] <= 1 + 1e-5
                  and {t["label"] for t in x["top"]} <= set(CLASSES) for x in res),
              "two classes per image, most probable first, probabilities in [0, 1]")
        check(doc["unreadable"] == [] and r.returncode == 0, "nothing unreadable: exit code 0")
        s = doc["summary"]
        counts = collections.Counter(x["top"][0]["label"] for x in res)
        check(s["images"] == 31 and s["predicted"] == {c: counts.get(c, 0) for c in CLASSES},
              "per-class counts %s equal the test's count" % s["predicted"])
        labelled = [(os.path.basename(os.path.dirname(x["file"])), x["top"][0]["label"]) for x in res
                    if os.path.basename(os.path.dirname(x["file"])) in CLASSES]
        correct = sum(t == p for t, p in labelled)
        cf = s["class_folders"]
        check(len(labelled) == 30 and cf["images"] == 30 and cf["correct"] == correct
              and abs(cf["accuracy"] - correct / 30) < 1e-12,
              "class-folder accuracy %.4f (%d/30) equals the test's count" % (cf["accuracy"], correct))
        confusion = collections.defaultdict(dict)
        for (t, p), n in collections.Counter(labelled).items():
            confusion[t][p] = n
        check(cf["confusion"] == confusion, "confusion %s equals the test's count" % cf["confusion"])
        check(all(x.get("folder_class") == (None if "unsorted" in x["file"] else
                                            os.path.basename(os.path.dirname(x["file"]))) for x in res),
              "folder_class given for the images in class folders, not for the unsorted one")

        # Text: same answers, and the summary.
        r = run(PREDICT, model, photos, "--top-k", "2")
        rows, summary = parse_text(r.stdout)
        check(list(rows) == expected and all(
            [t[0] for t in rows[x["file"]]] == [t["label"] for t in x["top"]]
            and all(abs(a[1] - b["prob"]) < 6e-5 for a, b in zip(rows[x["file"]], x["top"])) for x in res),
            "text output: one line per image, same classes and probabilities as JSON")
        check(summary.startswith("Summary: 31 images classified\n"), "text summary line")
        for c in CLASSES:
            if counts.get(c):
                check(re.search(r"^  %s +%d$" % (c, counts[c]), summary, re.M) is not None,
                      "text summary counts %s: %d" % (c, counts[c]))
        check("accuracy %.4f (%d/30)" % (correct / 30, correct) in summary, "text summary accuracy")
        check(re.search(r"^  blueberry +%d/10 correct" % confusion["blueberry"].get("blueberry", 0),
                        summary, re.M) is not None, "text summary: per-class confusion line")

        # CSV: same answers, proper quoting.
        r = run(PREDICT, model, photos, "--top-k", "2", "--csv")
        table = list(csv.reader(io.StringIO(r.stdout)))
        check(table[0] == ["file", "class_1", "prob_1", "class_2", "prob_2"], "CSV header")
        check([row[0] for row in table[1:]] == expected and all(
            row[1] == x["top"][0]["label"] and row[3] == x["top"][1]["label"]
            and abs(float(row[2]) - x["top"][0]["prob"]) < 1e-6 for row, x in zip(table[1:], res)),
            "CSV rows match JSON (a file name with a comma and quotes survives)")
        check("Summary: 31 images classified" in r.stderr, "CSV mode: summary on stderr")

        # The validation photos (Keras split: first 2 of 10 per class) give training's accuracy.
        val = [os.path.join(data, c, f) for c in CLASSES for f in sorted(os.listdir(os.path.join(data, c)))[:2]]
        s_train = json.load(open(os.path.join(out, "summary.json")))
        vs = json.loads(run(PREDICT, model, *val, "--json").stdout)["summary"]["class_folders"]
        check(abs(vs["accuracy"] - s_train["final_val_accuracy"]) < 1e-9,
              "validation accuracy %.4f equals training's %.4f" % (vs["accuracy"], s_train["final_val_accuracy"]))

        # mcnn classify shares the code: same top classes on the same folder.
        m = json.loads(run(os.path.join(BIN, "mcnn"), "classify", "--weights", model, "--top", "2",
                           "--json", photos).stdout)
        check([x["file"] for x in m] == expected and all(
            [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
            and all(abs(t["prob"] - u["prob"]) < 1e-6 for t, u in zip(a["top"], b["top"]))
            for a, b in zip(m, res)), "mcnn classify on the folder agrees with haribo_predict")

        # Unreadable inputs: listed with reasons, the rest classified, exit code 1.
        bad = os.path.join(tmp, "bad")
        os.makedirs(os.path.join(bad, "blueberry"))
        open(os.path.join(bad, "text.jpg"), "w").write("not an image")
        png = open(os.path.join(data, "blueberry", "00004.png"), "rb").read()
        open(os.path.join(bad, "cut.png"), "wb").write(png[:len(png) // 2])
        jpg = open(os.path.join(SAMPLES, "hot_dog.jpg"), "rb").read()
        open(os.path.join(bad, "cut.jpg"), "wb").write(jpg[:len(jpg) // 2])
        shutil.copy(os.path.join(data, "blueberry", "00005.png"), os.path.join(bad, "blueberry", "good.png"))
        empty = os.path.join(tmp, "empty")
        os.makedirs(os.path.join(empty, "sub"))
        missing = os.path.join(tmp, "missing.jpg")
        r = run(PREDICT, model, bad, missing, empty, "--json", rc=1)
        doc = json.loads(r.stdout)
        why = {u["path"]: u["reason"] for u in doc["unreadable"]}
        check([x["file"] for x in doc["results"]] == [os.path.join(bad, "blueberry", "good.png")],
              "the readable image is still classified")
        check(set(why) == {os.path.join(bad, f) for f in ("text.jpg", "cut.png", "cut.jpg")} | {missing, empty},
              "five unreadable inputs listed: %s" % sorted(why))
        check("not a decodable image" in why.get(os.path.join(bad, "text.jpg"), "")
              and "truncated" in why.get(os.path.join(bad, "cut.jpg"), "")
              and "no such file" in why.get(missing, "") and "no images" in why.get(empty, ""),
              "reasons: %s" % why)
        check(all(p in r.stderr for p in why) and doc["summary"]["unreadable"] == 5,
              "each unreadable input named on stderr")
        r = run(PREDICT, model, missing, rc=1)
        check("no such file" in r.stderr and "Skipped (exit code 1)" in r.stdout,
              "a missing path alone: exit code 1, listed in the summary")

        # Not a classifier, not a model, bad options: exit code 2.
        r = run(PREDICT, weights, photos, rc=2)
        check("not a classifier" in r.stderr and "(None, 7, 7, 1280)" in r.stderr,
              "ImageNet weights without top: " + r.stderr.strip())
        r = run(PREDICT, os.path.join(out, "history.csv"), photos, rc=2)
        check("not a .mcnn file" in r.stderr, "a CSV as the model: " + r.stderr.strip())
        r = run(PREDICT, model, photos, "--top-k", "0", rc=2)
        check("--top-k" in r.stderr, "--top-k 0 refused: " + r.stderr.strip())
        r = run(PREDICT, "--help")
        check("Exit codes" in r.stdout and "--top-k" in r.stdout and "--json" in r.stdout, "--help")
    return checks_summary()


if __name__ == "__main__":
    sys.exit(main())
