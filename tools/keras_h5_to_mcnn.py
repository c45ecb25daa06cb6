#!/usr/bin/env python3
"""Convert Keras MobileNetV2 weights (.h5) into minicnn's .mcnn format.

    keras_h5_to_mcnn.py INPUT.h5 OUTPUT.mcnn [--top TOP.h5] [--input-size N] [--labels FILE]
    keras_h5_to_mcnn.py INPUT.h5 --check            (validate only, write nothing)
    keras_h5_to_mcnn.py --verify FILE.mcnn          (check a converted file's architecture)

Reads both HDF5 layouts found in the wild: Keras `save_weights` files
(`/<layer>/<layer>/<weight>:0`) and full-model files (`model_weights/<layer>/<layer>/<weight>:0`,
or nested one level deeper when the MobileNetV2 is a sub-model, e.g.
`model_weights/sequential_1/<layer>/<weight>:0` in a Teachable Machine export). A tensor's
name is the last two path components without the ":0" suffix: "<layer>/<weight>".

Every MobileNetV2 tensor is checked against the full architecture Keras builds for the
inferred alpha (names and shapes, Keras' channel rounding) before anything is written; all
problems are reported together and no output file is produced. Groups of a full-model file
that hold no MobileNetV2 tensor (e.g. a user's Dense head) are listed and skipped, or kept
with --keep-other. The top Dense layer is stored as "Logits/kernel", "Logits/bias" whether
the file calls it "Logits" (keras-applications) or "predictions" (tf.keras 2.x).

Conventions: float32, Keras layouts (Conv2D HWIO, DepthwiseConv2D HWC1, Dense [in, out]),
preprocessing "tf" (x / 127.5 - 1). Needs h5py and numpy (Debian: python3-h5py).
Exit status: 0 success, 1 conversion error (message on stderr), 2 bad command line.
"""
import argparse
import hashlib
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcnn_format  # noqa: E402

CONVERTER_VERSION = "1.0"
KERAS_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
KERAS_SIZES = (96, 128, 160, 192, 224)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper and Keras.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
TOP_ALIASES = {"predictions": "Logits"}


class ConversionError(Exception):
    """The input cannot be converted; the message lists every problem found."""


def make_divisible(v, divisor=8, min_value=None):
    """Keras' _make_divisible: nearest multiple of divisor, never below 90% of v."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def mobilenet_v2_layers(alpha):
    """[(layer prefix, kind, shape)] of Keras' MobileNetV2 without top, in model order."""
    out = []

    def conv(name, shape):
        out.append((name, "kernel", shape))

    def bn(name, ch):
        for w in BN_WEIGHTS:
            out.append((name, w, (ch,)))

    first = make_divisible(32 * alpha, 8)
    conv("Conv1", (3, 3, 3, first))
    bn("bn_Conv1", first)
    in_ch = first
    block_id = 0
    for t, c, n, _s in BLOCKS:
        out_ch = make_divisible(int(c * alpha), 8)
        for _ in range(n):
            prefix = "block_%d_" % block_id if block_id else "expanded_conv_"
            ch = in_ch
            if block_id:
                ch = t * in_ch
                conv(prefix + "expand", (1, 1, in_ch, ch))
                bn(prefix + "expand_BN", ch)
            out.append((prefix + "depthwise", "depthwise_kernel", (3, 3, ch, 1)))
            bn(prefix + "depthwise_BN", ch)
            conv(prefix + "project", (1, 1, ch, out_ch))
            bn(prefix + "project_BN", out_ch)
            in_ch = out_ch
            block_id += 1
    last = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    conv("Conv_1", (1, 1, in_ch, last))
    bn("Conv_1_bn", last)
    return out


def mobilenet_v2_spec(alpha, classes=None):
    """Ordered list of (tensor name, shape); with the Logits top when classes is given."""
    spec = [("%s/%s" % (layer, w), shape) for layer, w, shape in mobilenet_v2_layers(alpha)]
    if classes is not None:
        last = spec[-1][1][0]
        spec += [("Logits/kernel", (last, classes)), ("Logits/bias", (classes,))]
    return spec


def last_channels(alpha):
    return make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280


BASE_LAYERS = {}  # layer name -> True, for every alpha (names do not depend on alpha)
for _layer, _w, _shape in mobilenet_v2_layers(1.0):
    BASE_LAYERS[_layer] = True


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _find_batch_input_shape(cfg):
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            if k == "batch_input_shape" and isinstance(v, list) and len(v) == 4:
                return v
            r = _find_batch_input_shape(v)
            if r is not None:
                return r
    elif isinstance(cfg, list):
        for v in cfg:
            r = _find_batch_input_shape(v)
            if r is not None:
                return r
    return None


def read_keras_h5(path):
    """Reads every weight dataset of a Keras .h5 file.

    Returns dict with: tensors {name: (h5 path, array)}, group {name: top-level group},
    layout, keras_version, input_hw (from model_config, or None)."""
    try:
        import h5py
    except ImportError:
        raise ConversionError("this converter needs h5py (Debian: apt install python3-h5py)")
    if not os.path.isfile(path):
        raise ConversionError("'%s': no such file" % path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head != HDF5_SIGNATURE:
        raise ConversionError("'%s' is not an HDF5 file (first bytes %r, expected %r); a failed download "
                              "often leaves an HTML error page" % (path, head, HDF5_SIGNATURE))
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError("'%s': cannot be opened as HDF5: %s" % (path, e))
    with h5:
        root = h5
        layout = "keras_save_weights"
        if "model_weights" in h5 and isinstance(h5["model_weights"], h5py.Group):
            root = h5["model_weights"]  # full-model file; optimizer_weights are ignored
            layout = "keras_full_model"
        keras_version = _decode(h5.attrs.get("keras_version", root.attrs.get("keras_version", ""))) or None
        input_hw = None
        if "model_config" in h5.attrs:
            try:
                shp = _find_batch_input_shape(json.loads(_decode(h5.attrs["model_config"])))
                if shp and isinstance(shp[1], int) and isinstance(shp[2], int):
                    input_hw = (shp[1], shp[2])
            except ValueError:
                pass
        found = []
        root.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
        tensors, group, problems = {}, {}, []
        keras3 = [n for n, _ in found if re.search(r"(^|/)vars/\d+$", n)]
        if keras3 and len(keras3) == len(found):
            raise ConversionError("'%s' looks like a Keras 3 '.weights.h5' file (datasets like '%s'); save the "
                                  "model with Keras 2 / tf.keras (model.save_weights('x.h5')) or export the "
                                  "legacy H5 format" % (path, keras3[0]))
        for name, ds in found:
            parts = name.split("/")
            weight = re.sub(r":\d+$", "", parts[-1])
            layer = parts[-2] if len(parts) >= 2 else ""
            layer = TOP_ALIASES.get(layer, layer)
            key = "%s/%s" % (layer, weight) if layer else weight
            prefix = "model_weights/" if root is not h5 else "/"
            if key in tensors:
                problems.append("tensor %s appears twice: %s%s and %s%s" % (key, prefix, tensors[key][0], prefix,
                                                                             name))
                continue
            tensors[key] = (prefix + name, ds[()])
            group[key] = parts[0]
    if problems:
        raise ConversionError("'%s':\n  %s" % (path, "\n  ".join(problems)))
    return {"tensors": tensors, "group": group, "layout": layout, "keras_version": keras_version,
            "input_hw": input_hw}


def is_mobilenet_name(key):
    layer = key.split("/")[0]
    return layer in BASE_LAYERS or layer == "Logits"


def infer_alpha(tensors):
    """The Keras alpha whose architecture fits the base tensors best (fewest problems)."""
    best = None
    for a in KERAS_ALPHAS:
        spec = dict(mobilenet_v2_spec(a))
        bad = sum(1 for n, s in spec.items() if n not in tensors or tuple(tensors[n].shape) != s)
        if best is None or bad < best[1]:
            best = (a, bad)
    return best[0]


def check_architecture(tensors, alpha, where):
    """All problems of a {name: array} dict against MobileNetV2(alpha) [+ Logits]; [] when it fits."""
    problems = []
    has_top = "Logits/kernel" in tensors or "Logits/bias" in tensors
    classes = None
    if has_top:
        k, b = tensors.get("Logits/kernel"), tensors.get("Logits/bias")
        if k is not None and k.ndim == 2:
            classes = int(k.shape[1])
        elif b is not None and b.ndim == 1:
            classes = int(b.shape[0])
        if not classes:
            problems.append("cannot tell the number of classes from the top (Logits/kernel %s, Logits/bias %s)"
                            % tuple(None if t is None else tuple(t.shape) for t in (k, b)))
            classes = 1
    spec = mobilenet_v2_spec(alpha, classes if has_top else None)
    expected = dict(spec)
    for name, shape in spec:
        if name not in tensors:
            problems.append("missing %s, expected shape %s" % (name, shape))
            continue
        arr = tensors[name]
        if tuple(arr.shape) != shape:
            problems.append("wrong shape for %s: expected %s, found %s" % (name, shape, tuple(arr.shape)))
        elif arr.dtype.kind != "f" or arr.dtype.itemsize != 4:
            problems.append("wrong dtype for %s: expected float32, found %s" % (name, arr.dtype))
        elif not np.all(np.isfinite(arr)):
            problems.append("%s contains NaN or infinite values" % name)
        elif name.endswith("/moving_variance") and np.any(arr < 0):
            problems.append("%s has negative variances" % name)
    for name in tensors:
        if name not in expected:
            problems.append("unexpected tensor %s %s (not part of MobileNetV2 alpha %s)"
                            % (name, tuple(tensors[name].shape), alpha))
    return problems, spec, classes if has_top else None


def read_labels(path):
    """Class names: a JSON list, Keras' imagenet_class_index.json ({"0": [wnid, name]}), or text with one
    name per line (Teachable Machine's "<index> <name>" lines lose their index prefix)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        obj = json.loads(text) if path.endswith(".json") else None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConversionError("--labels '%s': %s" % (path, e))
    if path.endswith(".json"):
        if isinstance(obj, list):
            return [str(x) for x in obj]
        if isinstance(obj, dict):
            idx = sorted(obj, key=int)
            if [int(i) for i in idx] != list(range(len(idx))):
                raise ConversionError("'%s': class index keys are not 0..%d" % (path, len(idx) - 1))
            return [str(obj[i][1] if isinstance(obj[i], list) else obj[i]) for i in idx]
        raise ConversionError("'%s': expected a JSON list or class index object" % path)
    lines = [ln.rstrip("\r\n") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if any(not ln.strip() for ln in lines):
        raise ConversionError("'%s': empty line %d among the labels" % (path, [ln.strip() for ln in lines].index("") + 1))
    if lines and all(re.match(r"^%d\s+\S" % i, ln) for i, ln in enumerate(lines)):
        lines = [re.sub(r"^\d+\s+", "", ln) for ln in lines]
    return lines


def _parse_size(s):
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", str(s))
    if not m:
        raise ConversionError("--input-size: expected N or HxW, got %r" % s)
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h < 32 or w < 32:
        raise ConversionError("--input-size: %dx%d is below the 32x32 MobileNetV2 needs" % (h, w))
    return h, w


def _filename_hint(path):
    m = re.search(r"(?:^|_)(0\.35|0\.5|0\.75|1\.0|1\.3|1\.4)_(96|128|160|192|224)(?=_|\.|$)", os.path.basename(path))
    return (float(m.group(1)), int(m.group(2))) if m else (None, None)


def convert(input_path, output_path=None, top_path=None, input_size=None, labels_path=None, alpha=None,
            pooling=None, preprocessing="tf", keep_other=False, log=None):
    """Converts; returns a summary dict. Raises ConversionError before writing anything if a check fails.
    output_path None = check only."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    src = read_keras_h5(input_path)
    arrays = {k: v[1] for k, v in src["tensors"].items()}
    groups = src["group"]
    # Groups that hold any MobileNetV2 tensor are checked in full; others are a user's extra layers.
    model_groups = {groups[k] for k in arrays if is_mobilenet_name(k)}
    if not model_groups:
        raise ConversionError("'%s': no MobileNetV2 tensors found (looked for names like Conv1/kernel, "
                              "block_1_expand/kernel); found %s" % (input_path, ", ".join(sorted(arrays)[:8]) or
                                                                     "no datasets at all"))
    if all(k.startswith("Logits/") for k in arrays if groups[k] in model_groups):
        raise ConversionError("'%s' holds only a classification top (%s); pass it with --top next to a base file"
                              % (input_path, ", ".join(sorted(k for k in arrays if k.startswith("Logits/")))))
    other = sorted(k for k in arrays if groups[k] not in model_groups)
    base = {k: a for k, a in arrays.items() if groups[k] in model_groups}

    top_info = None
    if top_path:
        if "Logits/kernel" in base or "Logits/bias" in base:
            raise ConversionError("'%s' already contains a classification top (Logits/kernel); drop --top"
                                  % input_path)
        top = read_keras_h5(top_path)
        extra = sorted(k for k in top["tensors"] if not k.startswith("Logits/"))
        if extra:
            raise ConversionError("--top '%s' must hold only the top Dense layer (Logits or predictions); "
                                  "it also has %s" % (top_path, ", ".join(extra)))
        for k, v in top["tensors"].items():
            base[k] = v[1]
        top_info = {"file": os.path.basename(top_path), "sha256": sha256_file(top_path)}

    name_alpha, name_size = _filename_hint(input_path)
    if alpha is None:
        alpha = infer_alpha(base)
    elif alpha not in KERAS_ALPHAS:
        raise ConversionError("--alpha %s is not one of Keras' %s" % (alpha, KERAS_ALPHAS))
    problems, spec, classes = check_architecture(base, alpha, input_path)
    if problems:
        raise ConversionError("'%s' does not match Keras MobileNetV2 alpha %s (%d problems):\n  %s"
                              % (input_path, alpha, len(problems), "\n  ".join(problems)))
    if name_alpha is not None and name_alpha != alpha:
        log("warning: file name says alpha %s but the tensors are alpha %s" % (name_alpha, alpha))

    if input_size is not None:
        hw, size_from = _parse_size(input_size), "--input-size"
    elif src["input_hw"] is not None:
        hw, size_from = src["input_hw"], "model_config"
    elif name_size is not None:
        hw, size_from = (name_size, name_size), "file name"
    else:
        hw, size_from = (224, 224), "default"
        log("note: input size unknown, assuming 224 (use --input-size)")

    class_names = []
    if labels_path:
        class_names = read_labels(labels_path)
        if classes is not None and len(class_names) != classes:
            raise ConversionError("--labels '%s' has %d names but the top has %d classes"
                                  % (labels_path, len(class_names), classes))
        if classes is None:
            log("note: no top in the weights; class names are stored for the head you attach")

    include_top = classes is not None
    if pooling is None:
        pooling = "avg" if include_top else None
    arch = {"name": "mobilenet_v2", "alpha": alpha, "input_size": hw[0] if hw[0] == hw[1] else [hw[0], hw[1]],
            "include_top": include_top, "pooling": pooling, "classes": classes or 0}
    source = {"file": os.path.basename(input_path), "sha256": sha256_file(input_path), "layout": src["layout"],
              "input_size_from": size_from,
              "converter": {"name": "keras_h5_to_mcnn.py", "version": CONVERTER_VERSION}}
    if src["keras_version"]:
        source["keras_version"] = src["keras_version"]
    if top_info:
        source["top"] = top_info
    if other:
        source["kept_other_tensors" if keep_other else "skipped_tensors"] = other
        log("%s %d tensors outside MobileNetV2: %s" % ("keeping" if keep_other else "skipping", len(other),
                                                        ", ".join(other)))
    metadata = {"kind": "weights", "architecture": arch, "class_names": class_names,
                "preprocessing": preprocessing, "source": source, "extra": {}}
    tensors = [(name, np.ascontiguousarray(base[name], dtype="<f4")) for name, _ in spec]
    if keep_other:
        for name in other:
            a = arrays[name]
            if a.dtype != np.float32:
                raise ConversionError("tensor %s has dtype %s; only float32 can be kept" % (name, a.dtype))
            tensors.append((name, a))

    summary = {"alpha": alpha, "include_top": include_top, "classes": classes or 0, "input_size": hw,
               "tensors": len(tensors), "params": int(sum(t.size for _, t in tensors)),
               "sha256": source["sha256"], "skipped": [] if keep_other else other, "metadata": metadata}
    if output_path is not None:
        mcnn_format.write_mcnn(output_path, metadata, tensors)
    return summary


def verify_mcnn(path):
    """Checks a .mcnn weights file against the MobileNetV2 its metadata describes; returns a summary."""
    try:
        f = mcnn_format.read_mcnn(path)
    except mcnn_format.McnnFormatError as e:
        raise ConversionError(str(e))
    arch = f.metadata.get("architecture") or {}
    if arch.get("name") != "mobilenet_v2":
        raise ConversionError("'%s': metadata architecture is %r, not mobilenet_v2" % (path, arch.get("name")))
    alpha = arch.get("alpha")
    if alpha not in KERAS_ALPHAS:
        raise ConversionError("'%s': metadata alpha %r is not a Keras alpha" % (path, alpha))
    model = {n: a for n, a in f.tensors.items() if f.kinds[n] == mcnn_format.KIND_MODEL}
    kept = set((f.metadata.get("source") or {}).get("kept_other_tensors", []))
    problems, spec, classes = check_architecture({n: a for n, a in model.items() if n not in kept}, alpha, path)
    if bool(arch.get("include_top")) != (classes is not None):
        problems.append("metadata include_top is %r but the file %s a top" % (arch.get("include_top"),
                                                                             "has" if classes else "lacks"))
    if classes is not None and arch.get("classes") != classes:
        problems.append("metadata classes is %r but Logits has %d" % (arch.get("classes"), classes))
    names = f.metadata.get("class_names", [])
    if classes is not None and names and len(names) != classes:
        problems.append("%d class_names for %d classes" % (len(names), classes))
    if problems:
        raise ConversionError("'%s' (%d problems):\n  %s" % (path, len(problems), "\n  ".join(problems)))
    return {"alpha": alpha, "classes": classes or 0, "tensors": len(model),
            "params": int(sum(a.size for a in model.values()))}


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert Keras MobileNetV2 .h5 weights to minicnn .mcnn (checks the full architecture first).")
    ap.add_argument("input", nargs="?", help="Keras .h5 (save_weights or full-model file)")
    ap.add_argument("output", nargs="?", help="output .mcnn (written atomically)")
    ap.add_argument("--top", help="separate .h5 holding only the top Dense layer (Logits / predictions)")
    ap.add_argument("--input-size", help="N or HxW the weights were trained for (default: from the model "
                                         "config or the Keras file name, else 224)")
    ap.add_argument("--labels", help="class names: text (one per line), JSON list or imagenet_class_index.json")
    ap.add_argument("--alpha", type=float, help="expected alpha (default: inferred from the tensors)")
    ap.add_argument("--pooling", choices=["none", "avg", "max"], help="pooling after the base "
                                                                      "(default: avg with a top, else none)")
    ap.add_argument("--preprocessing", choices=["tf", "unit"], default="tf",
                    help="input scaling the weights expect: tf = x/127.5-1 (Keras MobileNetV2), unit = x/255")
    ap.add_argument("--keep-other", action="store_true",
                    help="also store tensors of layers outside MobileNetV2 (e.g. a Teachable Machine head)")
    ap.add_argument("--check", action="store_true", help="validate the input only; write nothing")
    ap.add_argument("--verify", metavar="MCNN", help="check an existing .mcnn against its architecture")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    say = (lambda m: None) if a.quiet else (lambda m: print(m))
    try:
        if a.verify:
            s = verify_mcnn(a.verify)
            say("%s: OK, MobileNetV2 alpha %s, %d tensors, %d params%s" % (
                a.verify, s["alpha"], s["tensors"], s["params"],
                ", top with %d classes" % s["classes"] if s["classes"] else ", no top"))
            return 0
        if not a.input or (not a.output and not a.check):
            ap.error("INPUT and OUTPUT are required (or INPUT --check, or --verify FILE)")
        pooling = None if a.pooling in (None, "none") else a.pooling
        s = convert(a.input, None if a.check else a.output, top_path=a.top, input_size=a.input_size,
                    labels_path=a.labels, alpha=a.alpha, pooling=pooling, preprocessing=a.preprocessing,
                    keep_other=a.keep_other, log=(lambda m: None) if a.quiet else None)
        say("%s: MobileNetV2 alpha %s, input %dx%d, %d tensors, %d params, %s" % (
            a.input, s["alpha"], s["input_size"][0], s["input_size"][1], s["tensors"], s["params"],
            "top with %d classes" % s["classes"] if s["include_top"] else "no top"))
        say("sha256 %s" % s["sha256"])
        say("checked, nothing written (--check)" if a.check else "wrote %s" % a.output)
        return 0
    except ConversionError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:  # e.g. the output directory does not exist or is not writable
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
