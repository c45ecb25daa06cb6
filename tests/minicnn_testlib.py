"""Helpers shared by the Python end-to-end tests (tests/py_*.py; this file is not one of them):
where the build and ../shared are, a check() that prints and counts, and the converted
ImageNet weights, cached where the C++ tests keep them (tests/test_support.hpp:
converted_weights) and written through a temporary file, so that two tests running in
parallel never read a half-written file."""
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MINICNN_BIN_DIR", os.path.join(ROOT, "build", "bin"))
SHARED = os.environ.get("MINICNN_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
WS = os.path.join(SHARED, "weights-src")
ALPHA1_H5 = os.path.join(WS, "mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5")

failures, passes = [], []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    (passes if cond else failures).append(msg)


def summary():
    """Prints the counts; the exit code for the test (1 when any check failed)."""
    print("%d passed, %d failed" % (len(passes), len(failures)))
    return 1 if failures else 0


def converted_weights():
    """The alpha 1.0 no-top weights as .mcnn, converted once from ../shared/weights-src."""
    out_dir = os.path.join(BIN, "..", "test-weights")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "mobilenet_v2_1.0.mcnn")
    if not os.path.exists(out):
        tmp = "%s.tmp.%d" % (out, os.getpid())
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "keras_h5_to_mcnn.py"), ALPHA1_H5, tmp],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, out)
    return out


def make_ppm_dataset(root, classes=("a", "b", "c"), per_class=16, size=40, seed=0):
    """A class-folder dataset of noisy single-colour PPM pictures (one colour per class): enough
    for haribo_train to learn a little in a few epochs of milliseconds each."""
    rng = random.Random(seed)
    for ci, c in enumerate(classes):
        d = os.path.join(root, c)
        os.makedirs(d)
        base = ((ci * 97) % 256, (ci * 53 + 80) % 256, (ci * 191 + 30) % 256)
        for i in range(per_class):
            px = bytes(max(0, min(255, int(base[k % 3] + rng.gauss(0, 70)))) for k in range(size * size * 3))
            with open(os.path.join(d, "img%03d.ppm" % i), "wb") as f:
                f.write(b"P6\n%d %d\n255\n" % (size, size) + px)
