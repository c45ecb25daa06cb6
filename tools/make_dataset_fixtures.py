#!/usr/bin/env python3
"""Writes the fixtures of tests/test_dataset.cpp with PIL (Debian python3-pil), the library Keras'
load_img uses, so minicnn's image loading is checked against it:

    /usr/bin/python3 tools/make_dataset_fixtures.py

  tests/fixtures/dataset/nearest_src.npy           a 23x17 random RGB image (uint8, H x W x 3)
  tests/fixtures/dataset/nearest_<W>x<H>.npy       PIL Image.resize((W, H), NEAREST) of it, for
                                                   shrinking, enlarging and mixed sizes
  tests/fixtures/dataset/orient_<k>.jpg            a 16x8 JPEG (four coloured quadrants) whose EXIF
                                                   Orientation tag is k = 1..8
  tests/fixtures/dataset/orient_<k>_upright.npy    PIL's ImageOps.exif_transpose of that file's
                                                   decoded pixels (H x W x 3 uint8)
  tests/fixtures/dataset/mode_<m>.png / .npy       a 6x5 PNG in PIL mode m (L, LA, P, RGBA, I;16,
                                                   RGB) and its PIL convert('RGB') pixels
The JPEGs are tiny and written at quality 95 with 4:4:4 sampling; the test compares quadrant colours
within a few levels (stb_image and libjpeg decode the same file a little differently).
"""
import io
import os

import numpy as np
from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "dataset")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(12345)
    src = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    np.save(os.path.join(OUT, "nearest_src.npy"), src)
    img = Image.fromarray(src, "RGB")
    for w, h in [(96, 96), (7, 5), (23, 40), (10, 17), (11, 3), (50, 33)]:
        out = np.asarray(img.resize((w, h), Image.NEAREST))
        np.save(os.path.join(OUT, f"nearest_{w}x{h}.npy"), out)

    base = np.zeros((8, 16, 3), dtype=np.uint8)
    base[:4, :8] = (220, 30, 30)     # top-left red
    base[:4, 8:] = (30, 200, 30)     # top-right green
    base[4:, :8] = (30, 30, 210)     # bottom-left blue
    base[4:, 8:] = (230, 220, 40)    # bottom-right yellow
    for k in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = k
        buf = io.BytesIO()
        Image.fromarray(base, "RGB").save(buf, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
        path = os.path.join(OUT, f"orient_{k}.jpg")
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        np.save(os.path.join(OUT, f"orient_{k}_upright.npy"), upright)
    rgb = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(5, 6), dtype=np.uint8)
    images = {
        "L": Image.fromarray(rgb[:, :, 0], "L"),
        "LA": Image.fromarray(np.dstack([rgb[:, :, 0], alpha]), "LA"),
        "P": Image.fromarray(rgb, "RGB").quantize(colors=7),
        "RGBA": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "RGB": Image.fromarray(rgb, "RGB"),
    }
    for mode, im in images.items():
        path = os.path.join(OUT, f"mode_{mode}.png")
        im.save(path)
        np.save(os.path.join(OUT, f"mode_{mode}.npy"), np.asarray(Image.open(path).convert("RGB")))
    print("wrote fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
