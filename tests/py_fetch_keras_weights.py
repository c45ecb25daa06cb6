#!/usr/bin/env python3
"""Tests of weights/fetch_keras_weights.sh offline: --shared with a wrong or incomplete
folder says what it expected and what is missing; with a python3 first on PATH that lacks
h5py it falls back to one that has it and says which; PYTHON= overrides and is checked;
--shared converts the three files of ../shared/weights-src (into a temporary folder) and
they verify with the converter's own check.
Exit code 77 (ctest: skipped) when ../shared is absent."""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("MINICNN_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
WS = os.path.join(SHARED, "weights-src")
SCRIPT = os.path.join(ROOT, "weights", "fetch_keras_weights.sh")
FILES = ["mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5",
         "mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5",
         "mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5"]
failures, passes = [], []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    (passes if cond else failures).append(msg)


def script(*args, env=None):
    e = dict(os.environ)
    e.pop("PYTHON", None)
    e.update(env or {})
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=e)


def main():
    if not all(os.path.isfile(os.path.join(WS, f)) for f in FILES):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % WS)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        r = script("--shared", os.path.join(tmp, "wrong"), "--out", tmp)
        check(r.returncode == 1 and "folder '%s' not found" % os.path.join(tmp, "wrong") in r.stderr
              and "weights-src" in r.stderr and FILES[0] in r.stderr and "head:" not in r.stderr,
              "--shared with a missing folder: " + r.stderr.strip())
        partial = os.path.join(tmp, "partial")
        os.makedirs(partial)
        os.symlink(os.path.join(WS, FILES[0]), os.path.join(partial, FILES[0]))
        r = script("--shared", partial, "--out", tmp)
        check(r.returncode == 1 and "lacks %s %s" % (FILES[1], FILES[2]) in r.stderr
              and "head:" not in r.stderr and not any(f.endswith(".mcnn") for f in os.listdir(tmp)),
              "--shared with files missing: " + r.stderr.strip())

        # A python3 without h5py first on PATH (as pyenv's often is).
        fake = os.path.join(tmp, "bin")
        os.makedirs(fake)
        with open(os.path.join(fake, "python3"), "w") as f:
            f.write("#!/bin/sh\necho 'ModuleNotFoundError: No module named h5py' >&2\nexit 1\n")
        os.chmod(os.path.join(fake, "python3"), 0o755)
        path = fake + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        out = os.path.join(tmp, "out")
        r = script("--shared", "--out", out, env={"PATH": path})
        first = r.stdout.splitlines()[0] if r.stdout else ""
        check(r.returncode == 0 and first.startswith("using Python ")
              and "(%s cannot import h5py and numpy)" % os.path.join(fake, "python3") in first,
              "falls back from a python3 without h5py: " + first)
        made = sorted(os.listdir(out)) if os.path.isdir(out) else []
        check(made == ["mobilenet_v2_0.35_224_no_top.mcnn", "mobilenet_v2_1.0_224_approx_top.mcnn",
                       "mobilenet_v2_1.0_224_no_top.mcnn"] and r.stdout.count(": OK, MobileNetV2") == 3,
              "--shared converts and verifies the three files: %s" % made)

        r = script("--shared", "--out", out, env={"PATH": path, "PYTHON": os.path.join(fake, "python3")})
        check(r.returncode == 1 and "PYTHON='%s' cannot import h5py" % os.path.join(fake, "python3") in r.stderr,
              "PYTHON= without h5py is refused: " + r.stderr.strip())
        r = script("--from", os.path.join(WS, FILES[1]), "--name", "p", "--out", out,
                   env={"PATH": path, "PYTHON": sys.executable})
        check(r.returncode == 0 and r.stdout.startswith("using Python %s (from PYTHON)" % sys.executable)
              and os.path.isfile(os.path.join(out, "p.mcnn")), "PYTHON= overrides the search")
        r = script("--from", os.path.join(WS, FILES[0]), "--top-file", os.path.join(tmp, "none.h5"), "--out", out)
        check(r.returncode == 1 and "none.h5' not found" in r.stderr, "a missing --top-file: " + r.stderr.strip())
    print("%d passed, %d failed" % (len(passes), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
