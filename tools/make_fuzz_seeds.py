#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp) to tests/fuzz/corpus/<harness>/.

Every seed is made here from scratch (numpy, zlib and struct: no image library needed) or
taken from the repository's own generated test fixtures (tests/fixtures: JPEGs and an MJPEG
stream that tools/make_image_fixtures.py and make_camera_fixtures.py wrote). Seeds are
small (the whole corpus stays under ~100 kB): the fuzzer grows its own corpus from them.
The mode bytes some harnesses read first are documented at the top of each harness.

Usage: tools/make_fuzz_seeds.py [OUT_DIR]   (default tests/fuzz/corpus)
"""
import os
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import mcnn_format  # noqa: E402


def put(out, harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(rel):
    with open(os.path.join(ROOT, "tests", "fixtures", rel), "rb") as f:
        return f.read()


# ---- .mcnn: weights, a saved model, a checkpoint-like file, odd metadata
def mcnn_seeds(out):
    rng = np.random.default_rng(1)
    weights = mcnn_format.serialize({"architecture": "nothing"}, {
        "conv/kernel": rng.standard_normal((3, 3, 3, 2)).astype(np.float32),
        "conv/bias": np.zeros(2, np.float32)}, library_version="0.1.0")
    model_config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "Conv2D", "config": {"name": "conv", "filters": 2, "kernel_size": [3, 3],
                                             "strides": [1, 1], "padding": "same", "use_bias": True,
                                             "activation": "relu"}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "momentum": 0.99, "epsilon": 0.001,
                                                         "center": True, "scale": True}},
        {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}},
        {"class_name": "Dense", "config": {"name": "fc", "units": 2, "use_bias": True,
                                            "activation": "softmax"}}]}}
    meta = {"kind": "model", "model_config": model_config, "input_shape": [4, 4, 3],
            "frozen_layers": ["conv"], "class_names": ["a", "b"], "preprocessing": "tf",
            "interpolation": "nearest", "exif_orientation": True, "extra": {}}
    tensors = [("conv/kernel", rng.standard_normal((3, 3, 3, 2)).astype(np.float32)),
               ("conv/bias", np.zeros(2, np.float32)),
               ("bn/gamma", np.ones(2, np.float32)), ("bn/beta", np.zeros(2, np.float32)),
               ("bn/moving_mean", np.zeros(2, np.float32)), ("bn/moving_variance", np.ones(2, np.float32)),
               ("fc/kernel", rng.standard_normal((2, 2)).astype(np.float32)),
               ("fc/bias", np.zeros(2, np.float32))]
    model = mcnn_format.serialize(meta, tensors, library_version="0.1.0")
    ckpt_meta = dict(meta, kind="checkpoint", epoch=3, history={"loss": [1.0, 0.5]})
    ckpt = mcnn_format.serialize(ckpt_meta, tensors + [
        ("optimizer/step", np.array([7], np.int64), mcnn_format.KIND_TRAINING),
        ("rng/state", np.arange(8, dtype=np.uint8), mcnn_format.KIND_TRAINING)], library_version="0.1.0")
    empty = mcnn_format.serialize({}, {}, library_version="0.1.0")
    scalar = mcnn_format.serialize({"nested": [[[{"a": "\u00fc\u2713"}]]]},
                                   {"s": np.float32(1.5).reshape(()), "z": np.zeros((0, 3), np.float32)},
                                   library_version="0.1.0")
    # Mode byte (fuzz_mcnn.cpp): bit 0 recomputes the CRCs, bit 1 rebuilds the model.
    for name, data in [("weights", weights), ("model", model), ("checkpoint", ckpt), ("empty", empty),
                       ("scalar", scalar)]:
        put(out, "fuzz_mcnn", name + "_plain", b"\x00" + data)
        put(out, "fuzz_mcnn", name + "_fixcrc_load", b"\x03" + data)


# ---- .npy: every dtype the reader converts, versions 1-3, ranks 0-4
def npy_bytes(arr, version=1, descr=None):
    d = descr or np.lib.format.dtype_to_descr(arr.dtype)
    shape = "(" + "".join("%d, " % s for s in arr.shape).rstrip(" ")
    shape = shape[:-1] if len(arr.shape) > 1 else shape
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s), }" % (d, shape)
    lenfmt = "<H" if version == 1 else "<I"
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    return (b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(header)) + header.encode("latin1")
            + arr.tobytes())


def npy_seeds(out):
    put(out, "fuzz_npy", "f4_2x3", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)))
    put(out, "fuzz_npy", "f8_v2", npy_bytes(np.linspace(0, 1, 5).astype("<f8"), version=2))
    put(out, "fuzz_npy", "u1_img_v3", npy_bytes(np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3), version=3))
    put(out, "fuzz_npy", "i1", npy_bytes(np.array([-1, 2], np.int8)))
    put(out, "fuzz_npy", "i4", npy_bytes(np.array([[1], [2]], "<i4")))
    put(out, "fuzz_npy", "i8_scalar", npy_bytes(np.array(5, "<i8")))
    put(out, "fuzz_npy", "zero_dim", npy_bytes(np.zeros((0, 4), "<f4")))


# ---- images: one small file per format stb_image decodes
def png(w, h, color_type, bit_depth, rows, plte=None, trns=None):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte:
        s += chunk(b"PLTE", plte)
    if trns:
        s += chunk(b"tRNS", trns)
    return s + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp(w, h, bits):
    row = ((bits * w + 31) // 32) * 4
    pal = b"".join(bytes([i, 255 - i, i // 2, 0]) for i in range(0, 256, 128)) if bits <= 8 else b""
    off = 54 + len(pal)
    data = bytes((x * 37) & 255 for x in range(row * h))
    return (b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, bits, 0, len(data), 2835, 2835, len(pal) // 4, 0)
            + pal + data)


def tga(w, h, rle):
    hdr = struct.pack("<BBBHHBHHHHBB", 0, 0, 10 if rle else 2, 0, 0, 0, 0, 0, w, h, 24, 0)
    if rle:  # one run packet per row
        body = b"".join(bytes([0x80 | (w - 1), 10, 20, 30]) for _ in range(h))
    else:
        body = bytes((i * 7) & 255 for i in range(w * h * 3))
    return hdr + body


def gif(w, h):
    # 2-colour global palette, one image, LZW min code size 2, codes: clear, 0 x w*h, end.
    codes, size, nbits, val, out = [4] + [0] * (w * h) + [5], 3, 0, 0, bytearray()
    next_code = 6
    for i, c in enumerate(codes):
        val |= c << nbits
        nbits += size
        while nbits >= 8:
            out.append(val & 255)
            val >>= 8
            nbits -= 8
        if 0 < i < len(codes) - 1:
            next_code += 1
            if next_code == (1 << size) and size < 12:
                size += 1
    if nbits:
        out.append(val & 255)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255]) for i in range(0, len(out), 255))
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02" + blocks + b"\x00\x3b")


def psd(w, h):
    hdr = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">III", 0, 0, 0)
    return hdr + struct.pack(">H", 0) + bytes((i * 5) & 255 for i in range(w * h * 3))


def exif_jpeg(jpeg, orientation, little=True):
    e = "<" if little else ">"
    tiff = (b"II" if little else b"MM") + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
    tiff += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    seg = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + jpeg[2:]


def image_seeds(out):
    g = bytes(range(0, 240, 20))
    put(out, "fuzz_image", "rgb.png", png(2, 2, 2, 8, [g[:6], g[6:12]]))
    put(out, "fuzz_image", "grey16.png", png(2, 1, 0, 16, [b"\x12\x34\xab\xcd"]))
    put(out, "fuzz_image", "palette_trns.png", png(3, 1, 3, 2, [b"\x1b"], plte=b"\x00\x00\x00\xff\x00\x00\x00\xff\x00",
                                                   trns=b"\x00\x80"))
    put(out, "fuzz_image", "rgba.png", png(1, 2, 6, 8, [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]))
    put(out, "fuzz_image", "grey_alpha.png", png(1, 1, 4, 8, [b"\x10\x20"]))
    put(out, "fuzz_image", "b24.bmp", bmp(3, 2, 24))
    put(out, "fuzz_image", "b1.bmp", bmp(9, 2, 1))
    put(out, "fuzz_image", "b32.bmp", bmp(2, 2, 32))
    put(out, "fuzz_image", "raw.tga", tga(3, 2, False))
    put(out, "fuzz_image", "rle.tga", tga(3, 2, True))
    put(out, "fuzz_image", "g.gif", gif(3, 2))
    put(out, "fuzz_image", "p.psd", psd(2, 2))
    put(out, "fuzz_image", "p6.ppm", b"P6\n# c\n2 2\n255\n" + bytes(range(12)))
    put(out, "fuzz_image", "p5.pgm", b"P5 3 1 65535\n" + bytes(range(6)))
    put(out, "fuzz_image", "h.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 2\n" + bytes([128, 64, 32, 129] * 2))
    jpg = fixture("images/gradient.jpg")
    put(out, "fuzz_image", "gradient.jpg", jpg)
    put(out, "fuzz_image", "exif6_le.jpg", exif_jpeg(jpg, 6))
    put(out, "fuzz_image", "exif8_be.jpg", exif_jpeg(jpg, 8, little=False))
    put(out, "fuzz_image", "orient_5.jpg", fixture("dataset/orient_5.jpg"))
    put(out, "fuzz_image", "truncated.jpg", jpg[:len(jpg) // 2])


# ---- camera frames: MJPEG with and without Huffman tables, a stream, YUYV headers
def mjpeg_seeds(out):
    frame, nodht = fixture("camera/frame.jpg"), fixture("camera/frame_nodht.jpg")
    put(out, "fuzz_mjpeg", "frame", b"\x00" + frame)
    put(out, "fuzz_mjpeg", "nodht_small", b"\x01" + nodht)
    put(out, "fuzz_mjpeg", "exif_scale", b"\x06" + exif_jpeg(fixture("images/gradient.jpg"), 7))
    put(out, "fuzz_mjpeg", "stream", b"\x03" + b"junk" + nodht + frame + frame[:100])
    put(out, "fuzz_mjpeg", "png_frame", b"\x00" + png(2, 2, 2, 8, [bytes(6), bytes(6)]))
    yuyv = fixture("camera/yuyv.bin")  # 12 x 10 frame, stride 24
    put(out, "fuzz_mjpeg", "yuyv_12x10", b"\x80" + struct.pack("<HBB", 12, 10, 16) + yuyv)
    put(out, "fuzz_mjpeg", "yuyv_odd", b"\x80" + struct.pack("<HBB", 5, 3, 20) + yuyv[:40])
    put(out, "fuzz_mjpeg", "yuyv_padded", b"\x80" + struct.pack("<HBB", 4, 3, 20) + yuyv[:64])


# ---- HTTP requests to the camera server
def http_seeds(out):
    reqs = {
        "page": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "status_keepalive": b"GET /status HTTP/1.1\r\nHost: x\r\n\r\nGET /frame.jpg HTTP/1.1\r\nHost: x\r\n\r\n",
        "stream": b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "traversal": b"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
        "range": b"GET /frame.jpg HTTP/1.1\r\nRange: bytes=0-10,20-\r\n\r\n",
        "post_chunked": b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "head_query": b"HEAD /status?a=%20b&c HTTP/1.1\r\nAccept-Encoding: gzip, br\r\n\r\n",
        "multipart": (b"POST / HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                      b"Content-Length: 44\r\n\r\n--xx\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xx--"),
    }
    for name, data in reqs.items():
        put(out, "fuzz_http", name, data)


# ---- dataset trees: 3-byte ops [op, name, parent] (fuzz_folder.cpp)
def folder_seeds(out):
    two_classes = bytes([0, 0, 0, 0, 1, 0, 3, 6, 1, 3, 10, 2, 2, 8, 1, 9, 7, 2])
    put(out, "fuzz_folder", "two_classes", two_classes)
    put(out, "fuzz_folder", "loop", two_classes + bytes([0, 2, 1, 5, 0, 3, 3, 9, 3]))
    put(out, "fuzz_folder", "odd_names", bytes([0, 3, 0, 0, 4, 0, 3, 14, 1, 3, 15, 2, 4, 6, 1, 3, 19, 2, 2, 7, 2]))
    put(out, "fuzz_folder", "links", two_classes + bytes([6, 2, 1, 7, 1, 2, 7, 0, 1, 8, 3, 0, 0, 5, 0]))
    put(out, "fuzz_folder", "raw_names", bytes([0, 0xF0, 0, 0, 0xF1, 0, 3, 0xF2, 1, 3, 0xF3, 2]))
    # a/x.jpg and "class one"/x.jpg unreadable, then the class folder b too (chmod 000:
    # fuzz_folder.cpp checks it as the user nobody when run as root).
    put(out, "fuzz_folder", "unreadable",
        bytes([0, 0, 0, 0, 1, 0, 3, 6, 1, 3, 6, 2, 8, 2, 0, 0, 2, 0, 3, 6, 3, 8, 5, 0, 8, 1, 0]))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus")
    mcnn_seeds(out)
    npy_seeds(out)
    image_seeds(out)
    mjpeg_seeds(out)
    http_seeds(out)
    folder_seeds(out)


if __name__ == "__main__":
    main()
