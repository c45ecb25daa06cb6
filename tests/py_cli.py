#!/usr/bin/env python3
"""End-to-end tests of the `mcnn` command-line tool on the real weights and photos in
../shared: classify (decode, resize, preprocess, forward, top-5), features (.npy in,
.npy out), inspect, bench --json, folders as IMAGE arguments, and clear errors for bad
inputs, out-of-range options and requests for more memory than there is.
Exit code 77 (ctest: skipped) when ../shared is absent."""
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MINICNN_BIN_DIR", os.path.join(ROOT, "build", "bin"))
SHARED = os.environ.get("MINICNN_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
MCNN = os.path.join(BIN, "mcnn")
WS = os.path.join(SHARED, "weights-src")
SAMPLES = os.path.join(SHARED, "imagenet-samples")
failures = []
passes = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    (passes if cond else failures).append(msg)


def converted(kind):
    """Same cache as the C++ tests (tests/test_support.hpp: converted_weights)."""
    out_dir = os.path.join(BIN, "..", "test-weights")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "mobilenet_v2_%s.mcnn" % kind)
    if not os.path.exists(out):
        cmd = [sys.executable, os.path.join(ROOT, "tools", "keras_h5_to_mcnn.py"),
               os.path.join(WS, "mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5"), out]
        if kind == "1.0_top":
            cmd += ["--top", os.path.join(WS, "mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5"),
                    "--labels", os.path.join(SAMPLES, "imagenet_labels_1000_keras_order.txt")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def mcnn(*args, ok=True, address_space=None):
    def limit():  # RLIMIT_AS: allocations beyond it fail as they would on a full machine
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    r = subprocess.run([MCNN, *args], capture_output=True, text=True,
                       preexec_fn=limit if address_space else None)
    if ok and r.returncode != 0:
        raise SystemExit("mcnn %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def main():
    if not os.path.isdir(WS) or not os.path.isdir(SAMPLES):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % SHARED)
        return 77
    top = converted("1.0_top")
    base = converted("1.0")

    # 1. classify: the 12 photos at 224 must give the expected top-1 class.
    rows = list(csv.DictReader(open(os.path.join(SAMPLES, "expected_labels.csv"))))
    files = [os.path.join(SAMPLES, r["file"]) for r in rows]
    res = json.loads(mcnn("classify", "--weights", top, "--size", "224", "--json", *files).stdout)
    check(len(res) == 12, "classify returns one object per image")
    hits = 0
    print("%-30s %-8s %-8s %-7s %s" % ("photo", "expected", "top-1", "prob", "label"))
    for r, out in zip(rows, res):
        t = out["top"][0]
        good = t["index"] == int(r["keras_index_0_999"])
        hits += good
        print("%-30s %-8s %-8d %.3f   %s%s" % (r["file"], r["keras_index_0_999"], t["index"], t["prob"],
                                             t["label"][:40], "" if good else "   <-- WRONG"))
        check(len(out["top"]) == 5 and all(set(x) == {"index", "label", "prob"} for x in out["top"]),
              "top-5 entries for %s" % r["file"])
    check(hits == 12, "top-1 correct on %d/12 photos" % hits)
    text = mcnn("classify", "--weights", top, "--size", "224", files[0]).stdout
    check("Egyptian cat" in text, "plain-text classify names the class")

    # 2. features from the exact reference inputs match the reference features.
    with tempfile.TemporaryDirectory() as tmp:
        for size in (96, 224):
            out = os.path.join(tmp, "f%d.npy" % size)
            mcnn("features", "--weights", base, "--out", out,
                 os.path.join(SAMPLES, "reference", "inputs_%d_uint8.npy" % size))
            got = np.load(out)
            want = np.load(os.path.join(SAMPLES, "reference", "feat_gap_alpha1.0_%d.npy" % size))
            err = float(np.abs(got - want).max())
            check(got.shape == (12, 1280) and got.dtype == np.float32 and err < 1e-4,
                  "features @%d: shape %s, max abs diff %.2e" % (size, got.shape, err))

        # 3. inspect and bench.
        r = json.loads(mcnn("inspect", "--json", top).stdout)
        check(len(r["tensors"]) == 262 and r["metadata"]["architecture"]["alpha"] == 1.0,
              "inspect lists 262 tensors of alpha 1.0")
        b = json.loads(mcnn("bench", "--weights", base, "--size", "96", "--batch", "2", "--runs", "3",
                            "--warmup", "1", "--threads", "1", "--json").stdout)
        check(b["images_per_sec"] > 0 and b["latency_ms"] > 0, "bench --json reports images_per_sec and latency_ms")
        prof = mcnn("bench", "--weights", base, "--size", "96", "--batch", "1", "--runs", "3", "--warmup", "1",
                    "--threads", "1", "--profile").stdout
        rows = [l.split() for l in prof.splitlines() if l.startswith(("Conv", "block_", "expanded_conv"))]
        names = [r[0] for r in rows]
        # Folded model: no BN, ReLU6 or ZeroPadding2D rows left; 52 convolutions in model order.
        check(len(rows) == 52 and names[0] == "Conv1" and names[-1] == "Conv_1"
              and not any(n.endswith(("_BN", "_relu", "_pad")) for n in names)
              and all(float(r[2]) > 0 for r in rows),
              "bench --profile lists the 52 folded convolutions with their times")

        # 4. bad inputs: clear errors, non-zero exit.
        junk = os.path.join(tmp, "notes.jpg")
        open(junk, "w").write("not an image")
        r = mcnn("classify", "--weights", top, junk, ok=False)
        check(r.returncode != 0 and "notes.jpg" in r.stderr and "not a decodable image" in r.stderr,
              "a text file named .jpg: " + r.stderr.strip())
        r = mcnn("classify", "--weights", os.path.join(tmp, "missing.mcnn"), files[0], ok=False)
        check(r.returncode != 0 and "missing.mcnn" in r.stderr, "missing weights: " + r.stderr.strip())
        r = mcnn("classify", "--weights", base, files[0], ok=False)
        check(r.returncode != 0 and "no classification head" in r.stderr, "no top: " + r.stderr.strip())
        bad = os.path.join(tmp, "f32.npy")
        np.save(bad, np.zeros((1, 8, 8, 3), np.float32))
        r = mcnn("features", "--weights", base, "--out", os.path.join(tmp, "x.npy"), bad, ok=False)
        check(r.returncode != 0 and "uint8" in r.stderr, "float .npy input: " + r.stderr.strip())

        # 5. numeric options are range-checked, naming the option (nothing runs).
        for args, option in ((["classify", "--weights", top, "--size", "-5", files[0]], "--size"),
                             (["classify", "--weights", top, "--size", "100000", files[0]], "--size"),
                             (["features", "--weights", base, "--out", "x.npy", "--size", "8", files[0]], "--size"),
                             (["bench", "--weights", base, "--size", "-1"], "--size"),
                             (["bench", "--weights", base, "--warmup", "-3"], "--warmup"),
                             (["bench", "--weights", base, "--runs", "0"], "--runs"),
                             (["bench", "--weights", base, "--batch", "0"], "--batch"),
                             (["bench", "--weights", base, "--threads", "0"], "--threads"),
                             (["classify", "--weights", top, "--batch", "-2", files[0]], "--batch"),
                             (["classify", "--weights", top, "--top", "0", files[0]], "--top")):
            r = mcnn(*args, ok=False)
            check(r.returncode != 0 and r.stderr.startswith(option + ": ") and "not in range" in r.stderr
                  and r.stdout == "", "%s refused: %s" % (" ".join(args[3:]), r.stderr.splitlines()[0]))
        r = mcnn("bench", "--weights", base, "--size", "-1", ok=False)
        check("negative dimension" not in r.stderr, "bench --size -1 does not reach the Shape check")

        # 6. memory: a request beyond the machine is refused before allocating, saying what and
        # how much; an allocation that fails anyway (here: a 1.5 GB address-space limit) is
        # reported the same way instead of as a bare std::bad_alloc.
        r = mcnn("bench", "--weights", base, "--size", "4096", "--batch", "4096", ok=False)
        check(r.returncode == 1 and "a forward pass of 4096 images of 4096x4096 needs about" in r.stderr
              and " GB, more than the " in r.stderr and "--batch" in r.stderr, "huge bench refused: " + r.stderr.strip())
        asan = "libasan" in subprocess.run(["ldd", MCNN], capture_output=True, text=True).stdout
        if asan:  # the sanitizer's shadow memory does not start under an address-space limit
            print("skip out-of-memory check: sanitizer build")
        else:
            # (one image: infer() runs a batch in micro-batches, one of 4096x4096 needs ~2.6 GB)
            r = mcnn("bench", "--weights", base, "--size", "4096", "--batch", "1", "--runs", "1", "--warmup", "0",
                     "--threads", "1", ok=False, address_space=1500 << 20)
            check(r.returncode == 1 and "out of memory during a forward pass of 1 image of 4096x4096" in r.stderr
                  and "needs about" in r.stderr and "bad_alloc" not in r.stderr,
                  "allocation failure explained: " + r.stderr.strip())

        # 7. a folder as IMAGE: searched recursively (sorted, hidden files and other extensions
        # skipped), same answers as the files named one by one.
        photos = os.path.join(tmp, "photos")
        os.makedirs(os.path.join(photos, "b", "c"))
        os.makedirs(os.path.join(photos, ".hidden"))
        shutil.copy(files[0], os.path.join(photos, "b", "c", "z.bmp"))
        shutil.copy(files[1], os.path.join(photos, "b", "a.bmp"))
        shutil.copy(files[2], os.path.join(photos, ".hidden", "x.bmp"))
        shutil.copy(files[2], os.path.join(photos, "b", ".y.bmp"))
        open(os.path.join(photos, "b", "notes.txt"), "w").write("not a picture")
        want = [os.path.join(photos, "b", "a.bmp"), os.path.join(photos, "b", "c", "z.bmp")]
        got = json.loads(mcnn("classify", "--weights", top, "--size", "96", "--top", "2", "--json", photos).stdout)
        one = json.loads(mcnn("classify", "--weights", top, "--size", "96", "--top", "2", "--json", *want).stdout)
        check([g["file"] for g in got] == want and [g["top"] for g in got] == [o["top"] for o in one],
              "classify on a folder: %s" % [os.path.relpath(g["file"], tmp) for g in got])
        feats = os.path.join(tmp, "folder_features.npy")
        mcnn("features", "--weights", base, "--size", "96", "--out", feats, photos)
        check(np.load(feats).shape == (2, 1280), "features on a folder: one row per image")
        empty = os.path.join(tmp, "empty")
        os.makedirs(empty)
        r = mcnn("classify", "--weights", top, files[0], empty, os.path.join(tmp, "nope.jpg"), ok=False)
        check(r.returncode == 1 and "empty: folder holds no images" in r.stderr
              and "nope.jpg: no such file or folder" in r.stderr and "basic_filebuf" not in r.stderr,
              "unusable IMAGE arguments named: " + r.stderr.strip())

    print("%d passed, %d failed" % (len(passes), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
