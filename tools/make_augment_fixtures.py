#!/usr/bin/env python3
"""Writes the fixtures of tests/test_augment.cpp (Keras ImageDataGenerator augmentation):

    /usr/bin/python3 tools/make_augment_fixtures.py     # needs python3-numpy, python3-scipy, python3-pil

  tests/fixtures/augment/input_24x24.npy   uint8 24x24x3 test image (seeded noise), square
  tests/fixtures/augment/input_17x29.npy   uint8 17x29x3 test image, non-square (17 rows, 29 columns)
  tests/fixtures/augment/manifest.json     one entry per case: input file, explicit transform
                                           parameters (Keras' transform_parameters names: theta, tx, ty,
                                           shear in degrees, zx, zy, flip_horizontal, flip_vertical,
                                           channel_shift_intensity, brightness), fill_mode, cval,
                                           rescale, and the output file
  tests/fixtures/augment/<case>_<HxW>.npy  float32 HxWx3 expected output

The expected outputs follow the "B" behaviour of Keras' apply_transform (TF >= 2.9, tf_keras, Keras 3
legacy ImageDataGenerator) as ../shared/docs/keras-semantics.md section 1 describes it: the affine
matrix R*T*S*Z with neutral factors skipped, centred at (H/2-0.5, W/2-0.5) in (row, col), rows and
columns 0/1 swapped, then scipy.ndimage.affine_transform (order 1) on each float32 channel; channel
shift clipped to the image's range; flips; brightness through PIL's ImageEnhance.Brightness (with
the [0, 255] rescaling only when values fall outside it); rescale last, as standardize() does.
scipy and PIL do the numerical work, so they are the oracle; this script only restates Keras'
glue between them. It also prints, for the brightness cases, how many pixels a double-precision
factor would get wrong (PIL multiplies by the factor as a C float).
"""
import json
import os

import numpy as np
import scipy
from PIL import Image, ImageEnhance
from scipy import ndimage

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "augment")


def keras_matrix(p, h, w):
    """Keras B's 3x3 pull matrix in numpy (row, col) coordinates, or None when nothing is set."""
    m = None

    def then(a, b):
        return b if a is None else np.dot(a, b)

    if p["theta"] != 0:
        t = np.deg2rad(p["theta"])
        m = then(m, np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if p["tx"] != 0 or p["ty"] != 0:
        m = then(m, np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]]))
    if p["shear"] != 0:
        s = np.deg2rad(p["shear"])
        m = then(m, np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if p["zx"] != 1 or p["zy"] != 1:
        m = then(m, np.array([[p["zx"], 0, 0], [0, p["zy"], 0], [0, 0, 1]]))
    if m is None:
        return None
    # Centre offsets from (H, W) in that order, then the axis swap: B's centre is (W/2-0.5,
    # H/2-0.5) in (row, col), wrong for non-square images; Keras does it, so do we.
    ox, oy = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    off = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    m = np.dot(np.dot(off, m), reset)
    m[:, [0, 1]] = m[:, [1, 0]]
    m[[0, 1]] = m[[1, 0]]
    return m


def pil_brightness(x, u):
    """Keras B's apply_brightness_shift(x, u, scale=False) on a float32 HWC image."""
    x_min, x_max = np.min(x), np.max(x)
    local_scale = (x_min < 0) or (x_max > 255)
    y = np.asarray(x, dtype=np.float32)
    if local_scale:
        y = y - np.min(y)
        y_max = np.max(y)
        if y_max != 0:
            y /= y_max
        y *= 255
    img = Image.fromarray(y.astype("uint8"), "RGB")
    out = np.asarray(ImageEnhance.Brightness(img).enhance(u), dtype=np.float32)
    if local_scale:
        out = out / 255 * (x_max - x_min) + x_min
    return out, y.astype("uint8")


def apply_transform(x, p, fill_mode, cval, rescale):
    """Keras B's apply_transform followed by standardize's rescale, on float32 HWC."""
    h, w = x.shape[:2]
    m = keras_matrix(p, h, w)
    stats = {}
    if m is not None:
        x = np.stack([ndimage.affine_transform(x[:, :, c], m[:2, :2], m[:2, 2], order=1,
                                               mode=fill_mode, cval=cval)
                      for c in range(x.shape[2])], axis=2)
        # How close a source coordinate comes to a point where 'constant' or 'wrap' jumps:
        # the fixtures must not depend on the last bit of the matrix there.
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        src = np.einsum("ij,jrc->irc", m[:2, :2], np.stack([rows, cols])) + m[:2, 2, None, None]
        d = []
        for k, n in ((0, h), (1, w)):
            s = src[k]
            if fill_mode == "constant":
                d.append(np.min(np.minimum(np.abs(s), np.abs(s - (n - 1)))))
            elif fill_mode == "wrap":
                out = s[(s < 0) | (s > n - 1)]
                if out.size:
                    d.append(np.min(np.abs(out - np.round(out))))
        if d:
            stats["min_dist_to_jump"] = float(min(d))
    if p["channel_shift_intensity"] is not None:
        lo, hi = np.min(x), np.max(x)
        x = np.stack([np.clip(x[:, :, c] + p["channel_shift_intensity"], lo, hi)
                      for c in range(x.shape[2])], axis=2)
    if p["flip_horizontal"]:
        x = x[:, ::-1, :]
    if p["flip_vertical"]:
        x = x[::-1, :, :]
    if p["brightness"] is not None:
        u = p["brightness"]
        before = x
        x, pix = pil_brightness(x, u)
        # Same thing with the factor kept in double: whole-level differences PIL does not make.
        dbl = np.minimum(np.floor(u * pix.astype(np.float64)), 255)
        single = np.minimum(np.floor(np.float32(u) * pix.astype(np.float32)), 255)
        stats["double_factor_would_differ"] = int(np.sum(dbl != single))
        stats["local_scale"] = bool(np.min(before) < 0 or np.max(before) > 255)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if rescale:
        x *= rescale
    return x, stats


def params(**kw):
    p = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, flip_horizontal=False,
             flip_vertical=False, channel_shift_intensity=None, brightness=None)
    p.update(kw)
    return p


def cases(h, w):
    """(name, params, fill_mode, cval, rescale). Shifts are in pixels; fractions of H and W
    where Keras' width/height_shift_range would give them."""
    far = dict(theta=30.0, tx=0.31 * h, ty=-0.23 * w, zx=1.9, zy=2.3)
    very_far = dict(theta=-20.0, tx=-0.4 * h, ty=0.55 * w, zx=3.1, zy=2.7)
    return [
        ("rotation", params(theta=33.7), "nearest", 0.0, 0),
        ("width_shift", params(ty=0.23 * w), "nearest", 0.0, 0),
        ("height_shift", params(tx=-0.17 * h), "nearest", 0.0, 0),
        ("shear", params(shear=21.5), "nearest", 0.0, 0),
        ("zoom", params(zx=0.8, zy=1.3), "nearest", 0.0, 0),
        ("combined", params(theta=-47.0, tx=1.7, ty=-3.2, shear=8.0, zx=1.15, zy=0.9,
                            flip_horizontal=True), "nearest", 0.0, 0),
        ("channel_shift_up", params(channel_shift_intensity=37.5), "nearest", 0.0, 0),
        ("channel_shift_down", params(channel_shift_intensity=-61.25), "nearest", 0.0, 0),
        ("flip_horizontal", params(flip_horizontal=True), "nearest", 0.0, 0),
        ("flip_vertical", params(flip_vertical=True), "nearest", 0.0, 0),
        ("brightness_dark", params(brightness=0.7), "nearest", 0.0, 0),
        ("brightness_bright", params(brightness=1.3), "nearest", 0.0, 0),
        ("brightness_rescaled", params(theta=20.0, zx=1.4, zy=1.2, brightness=1.15), "constant",
         -40.0, 0),
        ("rescale", params(theta=10.0), "nearest", 0.0, 1 / 255),
        ("fill_nearest", params(**far), "nearest", 0.0, 0),
        ("fill_constant", params(**far), "constant", 77.5, 0),
        ("fill_reflect", params(**very_far), "reflect", 0.0, 0),
        ("fill_wrap", params(**very_far), "wrap", 0.0, 0),
        ("everything", params(theta=63.0, tx=-2.6, ty=4.1, shear=-12.0, zx=1.3, zy=0.85,
                              flip_horizontal=True, flip_vertical=True,
                              channel_shift_intensity=-15.0, brightness=0.85), "wrap", 0.0,
         1 / 127.5),
    ]


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    manifest = {"generator": "tools/make_augment_fixtures.py", "scipy": scipy.__version__,
                "numpy": np.__version__, "pillow": Image.__version__, "cases": []}
    for h, w in ((24, 24), (17, 29)):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        in_name = f"input_{h}x{w}.npy"
        np.save(os.path.join(OUT, in_name), img)
        x0 = img.astype(np.float32)
        for name, p, fill, cval, rescale in cases(h, w):
            y, stats = apply_transform(x0.copy(), p, fill, cval, rescale)
            out_name = f"{name}_{h}x{w}.npy"
            np.save(os.path.join(OUT, out_name), y)
            manifest["cases"].append({"name": f"{name}_{h}x{w}", "input": in_name, "params": p,
                                      "fill_mode": fill, "cval": cval, "rescale": rescale,
                                      "output": out_name})
            if stats.get("min_dist_to_jump", 1.0) < 1e-6:
                raise SystemExit(f"{name} {h}x{w}: a source coordinate sits on a discontinuity")
            print(f"{out_name:32s} range [{y.min():9.3f}, {y.max():9.3f}] {stats}")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(manifest['cases'])} cases to tests/fixtures/augment ({total} bytes)")


if __name__ == "__main__":
    main()
