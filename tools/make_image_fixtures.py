#!/usr/bin/env python3
"""Writes the small JPEG fixtures of tests/test_image.cpp (the truncation checks and the
replay of stb_image's entropy decoding, data/jpeg_entropy.hpp):

    /usr/bin/python3 tools/make_image_fixtures.py      # needs python3-pil, libjpeg-turbo-progs

  tests/fixtures/images/gradient.jpg   40x30 baseline JPEG, a colour gradient
  tests/fixtures/images/camera.jpg     the same image with an EXIF APP1 segment that holds a
                                       whole 8x8 JPEG thumbnail (its own SOI ... EOI), as cameras
                                       write them: a truncation check must not stop at the
                                       thumbnail's end-of-image marker.
  tests/fixtures/images/scan_*.jpg     61x45 seeded noise over a gradient in every scan layout
                                       the replay must keep step with: progressive 4:2:0, 4:4:4
                                       grey and CMYK (PIL), and restart markers every 3 blocks
                                       (baseline 4:2:2) or every MCU row (progressive 4:2:0), made
                                       by jpegtran, since PIL 9 writes no restart markers.
The test cuts bytes off these files itself. (stb_image_write cannot make them inside the test:
its JPEG bit writer shifts signed ints in ways UBSan reports as undefined behaviour.)
"""
import io
import os
import random
import struct
import subprocess
import tempfile

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")


def jpeg(w, h, quality=90):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 6) % 256, (y * 8) % 256, ((x + y) * 3) % 256) for y in range(h) for x in range(w)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def noisy(w=61, h=45):
    rnd = random.Random(3)
    img = Image.new("RGB", (w, h))
    img.putdata([(min(255, x * 4 + rnd.randrange(40)), min(255, y * 5 + rnd.randrange(40)), rnd.randrange(256))
                 for y in range(h) for x in range(w)])
    return img


def encoded(img, **options):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **options)
    return buf.getvalue()


def jpegtran(data, *args):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.jpg"), os.path.join(tmp, "out.jpg")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["jpegtran", *args, "-outfile", dst, src], check=True)
        with open(dst, "rb") as f:
            return f.read()


def scan_fixtures():
    img = noisy()
    return {
        "scan_progressive_420.jpg": encoded(img, quality=85, progressive=True, subsampling=2),
        "scan_progressive_grey.jpg": encoded(img.convert("L"), quality=85, progressive=True),
        "scan_progressive_cmyk.jpg": encoded(img.convert("CMYK"), quality=85, progressive=True),
        "scan_baseline_restart3.jpg": jpegtran(encoded(img, quality=85, subsampling=1), "-restart", "3B"),
        "scan_progressive_restart_rows.jpg": jpegtran(encoded(img, quality=85, subsampling=2),
                                                      "-restart", "1", "-progressive"),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    main_jpg = jpeg(40, 30)
    thumb = jpeg(8, 8)
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    camera = main_jpg[:2] + app1 + main_jpg[2:]
    files = {"gradient.jpg": main_jpg, "camera.jpg": camera, **scan_fixtures()}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"wrote tests/fixtures/images/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
