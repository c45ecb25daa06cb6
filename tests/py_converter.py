#!/usr/bin/env python3
"""Tests of tools/keras_h5_to_mcnn.py and tools/mcnn_format.py (run by ctest with /usr/bin/python3).

Without ../shared: the .mcnn fixture (tests/fixtures/mcnn_v1_small.mcnn, shared with the C++
test) must be reproduced byte for byte, the architecture table must give Keras' parameter
counts, synthetic .h5 files of every Keras alpha and both layouts must convert, and the
Python reader must reject corrupted files. With ../shared/weights-src: the real files are
converted, values compared bit-exactly with the .h5 through a reader written here from
docs/file-format.md (independent of mcnn_format.py), and damaged copies must fail with a
clear message and no output file. Exit 77 ("SKIPPED") when ../shared or h5py is absent and
everything that could run passed.

    py_converter.py                  run the tests
    py_converter.py --write-fixture  regenerate tests/fixtures/mcnn_v1_small.mcnn
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(ROOT, "tools")
CONVERTER = os.path.join(TOOLS, "keras_h5_to_mcnn.py")
FIXTURE = os.path.join(HERE, "fixtures", "mcnn_v1_small.mcnn")
SHARED = os.environ.get("MINICNN_SHARED_DIR") or os.path.join(ROOT, os.pardir, "shared")
WSRC = os.path.join(SHARED, "weights-src")
F_10 = os.path.join(WSRC, "mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5")
F_035 = os.path.join(WSRC, "mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5")
F_TOP = os.path.join(WSRC, "mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5")
F_TM = os.path.join(WSRC, "raw", "teachable_machine_keras_model.h5")
LABELS_1000 = os.path.join(SHARED, "imagenet-samples", "imagenet_labels_1000_keras_order.txt")

sys.path.insert(0, TOOLS)
import mcnn_format  # noqa: E402

try:
    import h5py
    HAVE_H5PY = True
except ImportError:
    h5py = None
    HAVE_H5PY = False
if HAVE_H5PY:
    import keras_h5_to_mcnn as conv  # noqa: E402


# ---------------------------------------------------------------------------------------------
# An independent reader, written from docs/file-format.md only (no code shared with mcnn_format).

def spec_read(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"MCNN\r\n\x1a\n", "magic"
    major, minor = struct.unpack_from("<II", b, 8)
    assert (major, minor) == (1, 0), (major, minor)
    meta_len, table_len, count, data_off, data_len = struct.unpack_from("<QQQQQ", b, 16)
    data_crc, header_crc = struct.unpack_from("<II", b, 56)
    assert zlib.crc32(b[:60] + b[64:64 + meta_len + table_len]) == header_crc, "header crc"
    assert data_off % 64 == 0 and data_off == (64 + meta_len + table_len + 63) // 64 * 64
    assert data_off + data_len == len(b), "file size"
    assert zlib.crc32(b[data_off:]) == data_crc, "data crc"
    meta = json.loads(b[64:64 + meta_len].decode("utf-8"))
    p = 64 + meta_len
    out = {}
    for _ in range(count):
        name_len, code, rank, kind = struct.unpack_from("<HBBB", b, p)
        off, nbytes = struct.unpack_from("<QQ", b, p + 8)
        dims = struct.unpack_from("<%dQ" % rank, b, p + 24)
        name = b[p + 24 + 8 * rank:p + 24 + 8 * rank + name_len].decode("utf-8")
        p += 24 + 8 * rank + name_len
        assert off % 64 == 0 and (data_off + off) % 64 == 0
        dt = {1: "<f4", 2: "<i8", 3: "u1"}[code]
        assert nbytes == int(np.prod(dims, dtype=np.int64)) * np.dtype(dt).itemsize
        out[name] = (dt, tuple(dims), kind, b[data_off + off:data_off + off + nbytes])
    assert p == 64 + meta_len + table_len, "table length"
    return meta, out


def h5_datasets(path):
    """{'<layer>/<weight>': array} straight from the HDF5 tree (last two path components)."""
    out = {}
    with h5py.File(path, "r") as h:
        root = h["model_weights"] if "model_weights" in h else h

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                parts = name.split("/")
                out["%s/%s" % (parts[-2], parts[-1].replace(":0", ""))] = obj[()]
        root.visititems(visit)
    return out


# ---------------------------------------------------------------------------------------------
# The fixture shared with tests/test_mcnn_format.cpp

def fixture_content():
    meta = {
        "kind": "weights",
        "architecture": {"name": "mobilenet_v2", "alpha": 0.35, "input_size": [96, 128], "include_top": True,
                         "pooling": "avg", "classes": 3},
        "class_names": ["b\u00e4r", "ring \U0001F43B", "wurm \"q\" \\ \t\u0001"],
        "preprocessing": "unit",
        "source": {"file": "fixture", "sha256": "0" * 64},
        "extra": {"floats": [1.0, 0.001, 1e21, -2.5e-08, 0.1], "big": 123456789012345678, "empty": {},
                  "nested": [[], {"a": None, "b": False}]},
    }
    specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0x00000001, 0x3F800000,
                         0xC0490FDB], dtype="<u4").view("<f4")
    tensors = [
        ("Conv1/kernel", (np.arange(54, dtype=np.float32).reshape(3, 3, 3, 2) * np.float32(0.1)), 0),
        ("specials", specials, 0),
        ("scalar", np.array(3.5, dtype=np.float32), 0),
        ("empty", np.zeros((0, 5), dtype=np.float32), 0),
        ("rank1", np.array([1, -2, 3, -4, 5], dtype=np.float32) / np.float32(3), 0),
        ("\u00dcn\u00efcode/\u540d\u524d", np.array([[1, 2], [3, 4]], dtype=np.float32), 0),
        ("opt/step", np.array([-3, 2 ** 40], dtype=np.int64), 1),
        ("rng/state", np.arange(13, dtype=np.uint8) * 19, 1),
    ]
    return meta, tensors


FIXTURE_LIBRARY_VERSION = "0.1.0"  # the version recorded in the committed fixture


# ---------------------------------------------------------------------------------------------
# Helpers

def run_converter(*args):
    r = subprocess.run([sys.executable, CONVERTER] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def write_keras_h5(path, named, layout="flat", group="mobilenetv2_1.00_224"):
    """Writes {'<layer>/<weight>': array} as Keras would: flat save_weights or nested full model."""
    with h5py.File(path, "w") as h:
        h.attrs["keras_version"] = "2.4.0"
        h.attrs["backend"] = "tensorflow"
        layers = []
        for key in named:
            layer = key.split("/")[0]
            if layer not in layers:
                layers.append(layer)
        if layout == "flat":
            h.attrs["layer_names"] = np.array([n.encode() for n in layers])
            for layer in layers:
                g = h.create_group(layer)
                ws = [k for k in named if k.split("/")[0] == layer]
                g.attrs["weight_names"] = np.array([(k + ":0").encode() for k in ws])
                for k in ws:
                    g.create_dataset("%s/%s:0" % (layer, k.split("/")[1]), data=named[k])
        else:
            mw = h.create_group("model_weights")
            mw.attrs["layer_names"] = np.array([group.encode()])
            g = mw.create_group(group)
            g.attrs["weight_names"] = np.array([(k + ":0").encode() for k in named])
            for k, v in named.items():
                g.create_dataset(k + ":0", data=v)
            h.create_group("optimizer_weights").create_dataset("Adam/Conv1/kernel/m:0", data=np.zeros(3))
            h.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 160, 160, 3]}}]}})


def synthetic_weights(alpha, classes=None, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in conv.mobilenet_v2_spec(alpha, classes):
        a = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("moving_variance"):
            a = np.abs(a)
        out[name] = a
    return out


def same_bits(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype.itemsize == b.dtype.itemsize and a.tobytes() == b.tobytes()


def listdir_clean(d):
    return sorted(os.listdir(d))


# ---------------------------------------------------------------------------------------------
# Tests that need neither ../shared nor h5py

def test_fixture_bytes():
    meta, tensors = fixture_content()
    data = mcnn_format.serialize(meta, tensors, library_version=FIXTURE_LIBRARY_VERSION)
    with open(FIXTURE, "rb") as f:
        committed = f.read()
    assert data == committed, "mcnn_format.serialize no longer reproduces %s byte for byte" % FIXTURE
    m2, t2 = spec_read(FIXTURE)
    assert m2["class_names"] == meta["class_names"] and m2["extra"] == meta["extra"]
    assert m2["format"] == "mcnn 1.0" and m2["library_version"] == FIXTURE_LIBRARY_VERSION
    # The default version is this source tree's (project(VERSION) in CMakeLists.txt).
    default = mcnn_format.parse(mcnn_format.serialize({}, [])).metadata["library_version"]
    assert default == mcnn_format.library_version() != "unknown", default
    for name, arr, kind in tensors:
        dt, dims, k, raw = t2[name]
        assert dims == arr.shape and k == kind and raw == np.ascontiguousarray(arr).tobytes(), name
    f = mcnn_format.read_mcnn(FIXTURE)
    assert list(f.tensors) == [t[0] for t in tensors]
    assert f.kinds["opt/step"] == 1 and f.tensors["opt/step"][1] == 2 ** 40
    assert same_bits(f.tensors["specials"], tensors[1][1])


def test_python_reader_rejects_corruption():
    with open(FIXTURE, "rb") as f:
        good = f.read()
    meta_len, table_len = struct.unpack_from("<QQ", good, 16)
    data_off = struct.unpack_from("<Q", good, 40)[0]
    for i in list(range(0, data_off)) + list(range(data_off, len(good), 7)):
        for mask in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= mask
            try:
                mcnn_format.parse(bytes(bad), "x")
            except mcnn_format.McnnFormatError:
                continue
            raise AssertionError("flipping bit %#x of byte %d went unnoticed" % (mask, i))
    for cut in (0, 5, 8, 40, 63, 64, 64 + meta_len // 2, 64 + meta_len + 3, data_off, len(good) - 1):
        try:
            mcnn_format.parse(good[:cut], "'cut.mcnn'")
        except mcnn_format.McnnFormatError as e:
            assert "cut.mcnn" in str(e) and ("truncated" in str(e) or "bad magic" in str(e)), str(e)
            continue
        raise AssertionError("truncation at %d went unnoticed" % cut)
    future = bytearray(good)
    future[8:12] = struct.pack("<I", 2)
    try:
        mcnn_format.parse(bytes(future), "f")
        raise AssertionError("future version accepted")
    except mcnn_format.McnnFormatError as e:
        assert "newer" in str(e)


def test_python_atomic_write_keeps_old_file():
    d = tempfile.mkdtemp(prefix="py_mcnn_atomic_")
    try:
        target = os.path.join(d, "w.mcnn")
        meta, tensors = fixture_content()
        mcnn_format.write_mcnn(target, meta, tensors)
        before = open(target, "rb").read()
        real_replace = os.replace

        def broken_replace(a, b):
            raise OSError("simulated failure")
        os.replace = broken_replace
        try:
            mcnn_format.write_mcnn(target, {"kind": "weights"}, [("x", np.ones(3, np.float32))])
            raise AssertionError("write did not fail")
        except OSError:
            pass
        finally:
            os.replace = real_replace
        assert open(target, "rb").read() == before
        assert listdir_clean(d) == ["w.mcnn"], listdir_clean(d)
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------------------------------------
# Tests that need h5py (synthetic .h5 files)

def test_architecture_table():
    spec10 = conv.mobilenet_v2_spec(1.0)
    assert len(spec10) == 260
    assert sum(int(np.prod(s)) for _, s in spec10) == 2257984
    assert sum(int(np.prod(s)) for _, s in conv.mobilenet_v2_spec(0.35)) == 410208
    assert sum(int(np.prod(s)) for _, s in conv.mobilenet_v2_spec(1.0, 1000)) == 3538984
    d = dict(conv.mobilenet_v2_spec(0.35))
    assert d["Conv1/kernel"] == (3, 3, 3, 16) and d["block_3_depthwise/depthwise_kernel"] == (3, 3, 48, 1)
    assert d["Conv_1/kernel"] == (1, 1, 112, 1280) and "block_0_expand/kernel" not in d
    assert dict(conv.mobilenet_v2_spec(1.4))["Conv_1/kernel"] == (1, 1, 448, 1792)
    assert dict(conv.mobilenet_v2_spec(1.3))["Conv_1_bn/gamma"] == (1664,)
    assert [conv.make_divisible(32 * a) for a in conv.KERAS_ALPHAS] == [16, 16, 24, 32, 40, 48]
    assert [n for n, _ in spec10[:6]] == ["Conv1/kernel", "bn_Conv1/gamma", "bn_Conv1/beta",
                                          "bn_Conv1/moving_mean", "bn_Conv1/moving_variance",
                                          "expanded_conv_depthwise/depthwise_kernel"]


def test_every_alpha_and_both_layouts():
    d = tempfile.mkdtemp(prefix="py_conv_alpha_")
    try:
        for i, alpha in enumerate(conv.KERAS_ALPHAS):
            classes = 7 if i % 2 else None
            w = synthetic_weights(alpha, classes, seed=i)
            if classes:  # tf.keras 2.x calls the top "predictions"
                w = {k.replace("Logits/", "predictions/"): v for k, v in w.items()}
            src = os.path.join(d, "in_%s.h5" % alpha)
            write_keras_h5(src, w, layout="nested" if i % 3 == 0 else "flat")
            out = os.path.join(d, "out_%s.mcnn" % alpha)
            s = conv.convert(src, out, log=lambda m: None)
            assert s["alpha"] == alpha and s["include_top"] == bool(classes), (alpha, s["alpha"])
            meta, t = spec_read(out)
            assert meta["architecture"]["alpha"] == alpha
            assert meta["architecture"]["classes"] == (classes or 0)
            expect = conv.mobilenet_v2_spec(alpha, classes)
            assert list(t) == [n for n, _ in expect], "tensor order must be Keras model order"
            for name, shape in expect:
                src_name = name.replace("Logits/", "predictions/") if classes else name
                assert t[name][1] == shape
                assert t[name][3] == w[src_name].astype("<f4").tobytes(), name
            if i % 3 == 0:
                assert meta["architecture"]["input_size"] == 160, "input size from model_config"
                assert meta["source"]["layout"] == "keras_full_model"
            assert conv.verify_mcnn(out)["params"] == sum(int(np.prod(s)) for _, s in expect)
    finally:
        shutil.rmtree(d)


def test_damaged_synthetic_reports_everything():
    d = tempfile.mkdtemp(prefix="py_conv_bad_")
    try:
        w = synthetic_weights(0.5)
        del w["block_5_project_BN/beta"]
        w["block_2_expand/kernel"] = np.zeros((1, 1, 16, 95), np.float32)
        w["Conv1/bias"] = np.zeros(16, np.float32)
        w["bn_Conv1/moving_mean"] = w["bn_Conv1/moving_mean"].astype(np.float64)
        src = os.path.join(d, "bad.h5")
        write_keras_h5(src, w)
        out = os.path.join(d, "bad.mcnn")
        rc, so, se = run_converter(src, out)
        assert rc == 1, (rc, se)
        for frag in ("missing block_5_project_BN/beta, expected shape (16,)",
                     "wrong shape for block_2_expand/kernel: expected (1, 1, 16, 96), found (1, 1, 16, 95)",
                     "unexpected tensor Conv1/bias (16,)",
                     "wrong dtype for bn_Conv1/moving_mean: expected float32, found float64",
                     "alpha 0.5", "4 problems"):
            assert frag in se, "stderr lacks %r:\n%s" % (frag, se)
        assert not os.path.exists(out) and listdir_clean(d) == ["bad.h5"]
        with_top = os.path.join(d, "with_top.h5")
        write_keras_h5(with_top, synthetic_weights(0.35, 5))
        top_only = os.path.join(d, "top_only.h5")
        write_keras_h5(top_only, {"predictions/kernel": np.zeros((1280, 5), np.float32),
                                  "predictions/bias": np.zeros(5, np.float32)})
        rc, so, se = run_converter(with_top, out, "--top", top_only)
        assert rc == 1 and "already contains a classification top" in se, se
        rc, so, se = run_converter(with_top, out, "--labels", with_top)
        assert rc == 1 and "error: --labels" in se and "Traceback" not in se, se
        rc, so, se = run_converter(with_top, os.path.join(d, "no", "dir", "x.mcnn"))
        assert rc == 1 and "error:" in se and "Traceback" not in se, se
        for f in ("with_top.h5", "top_only.h5"):
            os.unlink(os.path.join(d, f))
        junk = os.path.join(d, "junk.h5")
        with open(junk, "wb") as f:
            f.write(b"<html>404 Not Found</html>")
        rc, so, se = run_converter(junk, out)
        assert rc == 1 and "not an HDF5 file" in se and not os.path.exists(out), se
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------------------------------------
# Tests on the real files in ../shared/weights-src

def check_bit_exact(mcnn_path, h5_path, top_path=None):
    meta, t = spec_read(mcnn_path)
    ref = h5_datasets(h5_path)
    if top_path:
        ref.update(h5_datasets(top_path))
    for name, (dt, dims, kind, raw) in t.items():
        assert dt == "<f4" and kind == 0
        assert name in ref, name
        assert tuple(ref[name].shape) == dims and ref[name].astype("<f4").tobytes() == raw, name
    return meta, t


def test_shared_conversions():
    d = tempfile.mkdtemp(prefix="py_conv_shared_")
    try:
        cases = [
            ("a10", [F_10], 1.0, 260, 2257984, None),
            ("a035", [F_035], 0.35, 260, 410208, None),
            ("a10top", [F_10, "--top", F_TOP] + (["--labels", LABELS_1000] if os.path.exists(LABELS_1000) else []),
             1.0, 262, 3538984, 1000),
            ("tm", [F_TM], 0.35, 260, 410208, None),
        ]
        results = {}
        for tag, args, alpha, n_tensors, n_params, classes in cases:
            out = os.path.join(d, tag + ".mcnn")
            rc, so, se = run_converter(args[0], out, *args[1:])
            assert rc == 0, "%s: %s" % (tag, se)
            meta, t = check_bit_exact(out, args[0], F_TOP if tag == "a10top" else None)
            assert len(t) == n_tensors, (tag, len(t))
            assert sum(int(np.prod(v[1])) for v in t.values()) == n_params, tag
            arch = meta["architecture"]
            assert arch == {"name": "mobilenet_v2", "alpha": alpha, "input_size": 224,
                            "include_top": classes is not None, "pooling": "avg" if classes else None,
                            "classes": classes or 0}, arch
            assert meta["preprocessing"] == "tf" and meta["kind"] == "weights"
            assert meta["source"]["file"] == os.path.basename(args[0])
            assert meta["source"]["sha256"] == conv.sha256_file(args[0])
            assert meta["source"]["converter"]["name"] == "keras_h5_to_mcnn.py"
            results[tag] = t
        top_meta = spec_read(os.path.join(d, "a10top.mcnn"))[0]
        assert top_meta["source"]["top"]["sha256"] == conv.sha256_file(F_TOP)
        if os.path.exists(LABELS_1000):
            assert len(top_meta["class_names"]) == 1000 and top_meta["class_names"][0].startswith("tench")
        # The Teachable Machine base is bit-identical to the repacked 0.35 file (SOURCES.md).
        assert results["tm"] == results["a035"]
        tm_meta = spec_read(os.path.join(d, "tm.mcnn"))[0]
        assert tm_meta["source"]["layout"] == "keras_full_model"
        assert tm_meta["source"]["skipped_tensors"] == ["dense_Dense1/bias", "dense_Dense1/kernel",
                                                        "dense_Dense2/kernel"]
        # --keep-other stores the user's head too.
        out = os.path.join(d, "tm_keep.mcnn")
        rc, so, se = run_converter(F_TM, out, "--keep-other")
        assert rc == 0, se
        assert spec_read(out)[1]["dense_Dense1/kernel"][1] == (1280, 100)
        assert conv.verify_mcnn(out)["tensors"] == 263
        # The C++ test reads the same kind of file; mcnn_format must agree with the spec reader.
        f = mcnn_format.read_mcnn(os.path.join(d, "a10.mcnn"))
        assert f.param_count() == 2257984
    finally:
        shutil.rmtree(d)


def test_shared_damaged_copies():
    d = tempfile.mkdtemp(prefix="py_conv_damaged_")
    try:
        out = os.path.join(d, "out.mcnn")
        wrong = os.path.join(d, "wrong_shape.h5")
        shutil.copy(F_035, wrong)
        os.chmod(wrong, 0o644)
        with h5py.File(wrong, "r+") as h:
            del h["block_3_expand/block_3_expand/kernel:0"]
            h["block_3_expand"].create_dataset("block_3_expand/kernel:0", data=np.zeros((1, 1, 8, 40), np.float32))
        rc, so, se = run_converter(wrong, out)
        assert rc == 1, se
        assert "wrong shape for block_3_expand/kernel: expected (1, 1, 8, 48), found (1, 1, 8, 40)" in se, se
        assert not os.path.exists(out)

        missing = os.path.join(d, "missing.h5")
        shutil.copy(F_035, missing)
        os.chmod(missing, 0o644)
        with h5py.File(missing, "r+") as h:
            del h["bn_Conv1/bn_Conv1/moving_variance:0"]
            del h["block_16_project_BN/block_16_project_BN/gamma:0"]
        rc, so, se = run_converter(missing, out)
        assert rc == 1, se
        assert "missing bn_Conv1/moving_variance, expected shape (16,)" in se, se
        assert "missing block_16_project_BN/gamma, expected shape (112,)" in se, se
        assert not os.path.exists(out)

        # A labels file that does not match the top, and a top given twice: no output either.
        labels = os.path.join(d, "labels.txt")
        with open(labels, "w") as f:
            f.write("0 a\n1 b\n")
        rc, so, se = run_converter(F_10, out, "--top", F_TOP, "--labels", labels)
        assert rc == 1 and "has 2 names but the top has 1000 classes" in se, se
        # A 1280-wide top cannot sit on alpha 1.4 (1792 channels after Conv_1).
        wide = os.path.join(d, "a14.h5")
        write_keras_h5(wide, synthetic_weights(1.4))
        rc, so, se = run_converter(wide, out, "--top", F_TOP)
        assert rc == 1 and "wrong shape for Logits/kernel: expected (1792, 1000), found (1280, 1000)" in se, se
        rc, so, se = run_converter(F_TOP, out)
        assert rc == 1 and "holds only a classification top" in se, se
        rc, so, se = run_converter(F_10, out, "--top", F_10)
        assert rc == 1 and "must hold only the top Dense layer" in se, se
        assert not os.path.exists(out)
        rc, so, se = run_converter(F_035, "--check")
        assert rc == 0 and "nothing written" in so, so + se
        assert sorted(os.listdir(d)) == ["a14.h5", "labels.txt", "missing.h5", "wrong_shape.h5"], os.listdir(d)
    finally:
        shutil.rmtree(d)


def test_fetch_script_offline_mirror():
    """weights/fetch_keras_weights.sh against a file:// mirror laid out like Keras' bucket."""
    if not shutil.which("bash") or not (shutil.which("curl") or shutil.which("wget")):
        print("  (skipped: needs bash and curl or wget)")
        return
    script = os.path.join(ROOT, "weights", "fetch_keras_weights.sh")
    d = tempfile.mkdtemp(prefix="py_fetch_")
    try:
        mirror, out = os.path.join(d, "mirror"), os.path.join(d, "out")
        os.makedirs(mirror)
        w = synthetic_weights(0.75, 1000, seed=5)
        write_keras_h5(os.path.join(mirror, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_160.h5"), w)
        with open(os.path.join(mirror, "imagenet_class_index.json"), "w") as f:
            json.dump({str(i): ["n%08d" % i, "class %d" % i] for i in range(1000)}, f)
        with open(os.path.join(mirror, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"), "w") as f:
            f.write("<html>AccessDenied</html>")
        env = dict(os.environ, PYTHON=sys.executable, MINICNN_KERAS_BASE_URL="file://%s/" % mirror,
                   MINICNN_IMAGENET_LABELS_URL="file://%s/imagenet_class_index.json" % mirror)

        def fetch(*args):
            return subprocess.run(["bash", script, "--out", out] + list(args), env=env, capture_output=True,
                                  text=True)
        r = fetch("--alpha", ".75", "--size", "160", "--top")
        assert r.returncode == 0, r.stdout + r.stderr
        meta, t = spec_read(os.path.join(out, "mobilenet_v2_0.75_160.mcnn"))
        assert meta["architecture"]["alpha"] == 0.75 and meta["architecture"]["input_size"] == 160
        assert meta["architecture"]["classes"] == 1000 and meta["class_names"][999] == "class 999"
        assert t["Logits/kernel"][3] == w["Logits/kernel"].tobytes()
        assert "OK, MobileNetV2 alpha 0.75" in r.stdout, r.stdout
        r = fetch("--alpha", "1.0", "--size", "96")
        assert r.returncode == 1 and "not an HDF5 file" in r.stderr, r.stderr
        r = fetch("--alpha", "0.75", "--size", "160", "--top", "--sha256", "0" * 64, "--name", "pinned")
        assert r.returncode == 1 and "expected " + "0" * 64 in r.stderr, r.stderr
        r = fetch("--alpha", "0.8")
        assert r.returncode == 1 and "0.35 0.5 0.75 1.0 1.3 1.4" in r.stderr, r.stderr
        assert sorted(os.listdir(out)) == ["mobilenet_v2_0.75_160.mcnn"], os.listdir(out)
    finally:
        shutil.rmtree(d)


def test_labels_formats():
    d = tempfile.mkdtemp(prefix="py_labels_")
    try:
        p = os.path.join(d, "labels.txt")
        with open(p, "w") as f:
            f.write("0 Class 1\n1 Class 2\n\n")
        assert conv.read_labels(p) == ["Class 1", "Class 2"]
        with open(p, "w") as f:
            f.write("tench, Tinca tinca\n2 cats\n")
        assert conv.read_labels(p) == ["tench, Tinca tinca", "2 cats"]
        j = os.path.join(d, "idx.json")
        with open(j, "w") as f:
            json.dump({"1": ["n2", "goldfish"], "0": ["n1", "tench"]}, f)
        assert conv.read_labels(j) == ["tench", "goldfish"]
    finally:
        shutil.rmtree(d)


def main():
    if "--write-fixture" in sys.argv:
        meta, tensors = fixture_content()
        os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
        mcnn_format.write_mcnn(FIXTURE, meta, tensors, library_version=FIXTURE_LIBRARY_VERSION)
        print("wrote", FIXTURE)
        return 0
    tests = [test_fixture_bytes, test_python_reader_rejects_corruption, test_python_atomic_write_keeps_old_file]
    h5_tests = [test_architecture_table, test_every_alpha_and_both_layouts, test_damaged_synthetic_reports_everything,
                test_labels_formats, test_fetch_script_offline_mirror]
    shared_tests = [test_shared_conversions, test_shared_damaged_copies]
    skipped = []
    if HAVE_H5PY:
        tests += h5_tests
    else:
        skipped.append("h5py is not installed (Debian: python3-h5py)")
    have_shared = all(os.path.exists(p) for p in (F_10, F_035, F_TOP, F_TM))
    if HAVE_H5PY and have_shared:
        tests += shared_tests
    elif not have_shared:
        skipped.append("%s not found (the ../shared data is absent in this checkout)" % WSRC)
    failed = 0
    for t in tests:
        try:
            t()
            print("PASS", t.__name__)
        except Exception:
            failed += 1
            print("FAIL", t.__name__)
            traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
    if failed:
        print("%d of %d tests failed" % (failed, len(tests)))
        return 1
    if skipped:
        print("SKIPPED: %s (%d other tests passed)" % ("; ".join(skipped), len(tests)))
        return 77
    print("all %d tests passed" % len(tests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
