#!/usr/bin/env python3
"""Writes the fixtures of tests/test_camera.cpp (MJPEG and YUYV decoding against independent
references):

    /usr/bin/python3 tools/make_camera_fixtures.py      # needs python3-numpy and python3-pil

tests/fixtures/camera/
  frame.jpg         a 64x48 baseline JPEG (PIL, quality 90, 4:2:2 chroma as UVC cameras send),
                    a synthetic scene: gradients, a disc, stripes and a little noise
  frame_nodht.jpg   the same bytes with every DHT segment removed, as a UVC camera sends MJPEG
                    frames (the decoder is expected to supply the standard Annex K tables)
  frame_rgb.npy     PIL's decoding of frame.jpg, uint8 (48, 64, 3)
  yuyv.bin          a 16x6 YUYV 4:2:2 frame whose rows are 40 bytes apart (8 bytes of padding),
                    Y / Cb / Cr covering 0..255 (out-of-range values too, to test clamping)
  yuyv_rgb.npy      its RGB by BT.601 limited range in float64 (numpy), rounded half up and
                    clipped: R = 255/219 (Y-16) + 255/112 (1-Kr) (Cr-128), ... with Kr=0.299,
                    Kb=0.114, both pixels of a pair sharing the pair's Cb and Cr
  stream.mjpeg      an MJPEG stream: 5 bytes of junk, frame.jpg, frame 2 (a 24x16 JPEG whose EXIF
                    APP1 segment holds a whole JPEG thumbnail, SOI to EOI), 3 bytes of junk,
                    frame_nodht.jpg, and the first half of frame.jpg (cut off, to be skipped)
  stream.json       the (offset, length) of each complete frame in stream.mjpeg
"""
import io
import json
import os
import struct

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "camera")


def scene(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 5.0)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.45) ** 2 < (h * 0.3) ** 2
    r[disc], g[disc], b[disc] = 250, 30, 40
    stripes = (x // 4) % 2 == 0
    g[stripes & (y > h * 0.75)] = 20
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_jpeg(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=90, subsampling=1, optimize=False, **kw)
    return buf.getvalue()


def segments(data):
    """(marker, start, end) of each header segment up to and including SOS's header."""
    assert data[:2] == b"\xff\xd8"
    pos, out = 2, []
    while True:
        assert data[pos] == 0xFF
        m = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        out.append((m, pos, pos + 2 + length))
        if m == 0xDA:
            return out
        pos += 2 + length


def strip_dht(data):
    segs = segments(data)
    keep = bytearray(data[:2])
    for m, a, b in segs:
        if m != 0xC4:
            keep += data[a:b]
    keep += data[segs[-1][2]:]
    assert b"\xff\xc4" not in bytes(keep[:segs[-1][1]])
    return bytes(keep)


def yuyv_frame():
    w, h, stride = 16, 6, 40
    rng = np.random.default_rng(7)
    frame = np.zeros((h, stride), np.uint8)
    frame[:, 2 * w:] = 0xAB  # padding the converter must ignore
    pix = rng.integers(0, 256, (h, w * 2), dtype=np.int64)
    # Row 0: extremes for clamping (black, white, saturated colours, limits of the range).
    pix[0, :16] = [0, 0, 0, 0, 255, 255, 255, 255, 16, 16, 16, 240, 235, 240, 235, 16]
    pix[1, :8] = [16, 128, 235, 128, 81, 90, 145, 240]
    frame[:, :2 * w] = pix
    y = pix[:, 0::2].astype(np.float64)
    cb = np.repeat(pix[:, 1::4], 2, axis=1).astype(np.float64)
    cr = np.repeat(pix[:, 3::4], 2, axis=1).astype(np.float64)
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    ys = 255.0 / 219.0 * (y - 16)
    cs = 255.0 / 112.0
    r = ys + cs * (1 - kr) * (cr - 128)
    g = ys - cs * (1 - kb) * kb / kg * (cb - 128) - cs * (1 - kr) * kr / kg * (cr - 128)
    b = ys + cs * (1 - kb) * (cb - 128)
    rgb = np.stack([r, g, b], axis=-1)
    rgb = np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)
    return frame.tobytes(), rgb


def main():
    os.makedirs(OUT, exist_ok=True)
    frame = encode_jpeg(scene(64, 48, 1))
    nodht = strip_dht(frame)
    decoded = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"))
    assert decoded.shape == (48, 64, 3)

    thumb = encode_jpeg(scene(8, 8, 3))
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    small = encode_jpeg(scene(24, 16, 2))
    frame2 = small[:2] + app1 + small[2:]

    parts = [b"junk!", frame, frame2, b"\x00\xff\x00", nodht, frame[:len(frame) // 2]]
    stream, frames, pos = b"", [], 0
    for i, p in enumerate(parts):
        if i in (1, 2, 4):
            frames.append([pos, len(p)])
        stream += p
        pos += len(p)

    yuyv, yuyv_rgb = yuyv_frame()
    files = {
        "frame.jpg": frame,
        "frame_nodht.jpg": nodht,
        "yuyv.bin": yuyv,
        "stream.mjpeg": stream,
        "stream.json": (json.dumps({"frames": frames, "sizes": [[64, 48], [24, 16], [64, 48]]}) +
                        "\n").encode(),
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    np.save(os.path.join(OUT, "frame_rgb.npy"), decoded)
    np.save(os.path.join(OUT, "yuyv_rgb.npy"), yuyv_rgb)
    print("wrote", ", ".join(sorted(list(files) + ["frame_rgb.npy", "yuyv_rgb.npy"])), "to", OUT)


if __name__ == "__main__":
    main()
