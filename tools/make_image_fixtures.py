#!/usr/bin/env python3
"""Writes the small JPEG fixtures of tests/test_image.cpp (the truncation checks):

    /usr/bin/python3 tools/make_image_fixtures.py      # needs python3-pil

  tests/fixtures/images/gradient.jpg   40x30 baseline JPEG, a colour gradient
  tests/fixtures/images/camera.jpg     the same image with an EXIF APP1 segment that holds a
                                       whole 8x8 JPEG thumbnail (its own SOI ... EOI), as cameras
                                       write them: a truncation check must not stop at the
                                       thumbnail's end-of-image marker.
The test cuts bytes off these files itself. (stb_image_write cannot make them inside the test:
its JPEG bit writer shifts signed ints in ways UBSan reports as undefined behaviour.)
"""
import io
import os
import struct

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")


def jpeg(w, h, quality=90):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 6) % 256, (y * 8) % 256, ((x + y) * 3) % 256) for y in range(h) for x in range(w)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    main_jpg = jpeg(40, 30)
    thumb = jpeg(8, 8)
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    camera = main_jpg[:2] + app1 + main_jpg[2:]
    for name, data in (("gradient.jpg", main_jpg), ("camera.jpg", camera)):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"wrote tests/fixtures/images/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
