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


def write_colour_model(path, class_names):
    """A two-class colour classifier on 16x16 pictures (GlobalAveragePooling2D, then a softmax
    Dense with weights set by hand): after x/127.5-1 the pooled means of red are (1, -1, -1),
    of green (-1, 1, -1); the kernel scores class 0 by 5 (r - g) and class 1 by 5 (g - r)."""
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import mcnn_format
    meta = {
        "kind": "model",
        "library_version": mcnn_format.library_version(),
        "model_config": {"class_name": "Sequential", "config": {"name": "colours", "layers": [
            {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}},
            {"class_name": "Dense",
             "config": {"name": "fc", "units": 2, "use_bias": True, "activation": "softmax"}}]}},
        "input_shape": [16, 16, 3],
        "frozen_layers": [],
        "class_names": list(class_names),
        "preprocessing": "tf",
        "interpolation": "bilinear",
        "exif_orientation": False,
        "extra": {},
    }
    kernel = np.array([[5, -5], [-5, 5], [0, 0]], np.float32)
    mcnn_format.write_mcnn(path, meta, {"fc/kernel": kernel, "fc/bias": np.zeros(2, np.float32)})


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
