"""Helpers shared by the Python end-to-end tests (tests/py_*.py; this file is not one of them):
where the build and ../shared are, a check() that prints and counts, and the converted
ImageNet weights, cached where the C++ tests keep them (tests/test_support.hpp:
converted_weights) and written through a temporary file, so that two tests running in
parallel never read a half-written file."""
import os
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
