#!/usr/bin/env python3
"""Writes a progressive grey JPEG whose AC scans cost almost nothing to store and a pass over
the whole image each to decode: docs/fuzzing.md, finding 16.

    /usr/bin/python3 tools/make_many_scan_jpeg.py WIDTH SCANS OUT.jpg

The image is WIDTH x WIDTH (a multiple of 8). Its first scan is the DC scan, one bit per
8x8 block; each further scan is a first AC scan (bands 1-63) coded as end-of-band runs of
32767 blocks, 15 bits per run. stb_image and libjpeg-turbo decode every scan over every
block, so time grows with SCANS x WIDTH^2 while the file grows with SCANS x WIDTH^2 / 2^18.
minicnn refuses more than 500 scans (image_detail::kMaxJpegScans); this file shows why.
"""
import struct
import sys


def bits_to_bytes(bits):
    bits += "1" * ((8 - len(bits) % 8) % 8)  # pad with ones, as encoders do
    out = bytearray()
    for i in range(0, len(bits), 8):
        v = int(bits[i:i + 8], 2)
        out.append(v)
        if v == 0xFF:
            out.append(0)  # byte stuffing
    return bytes(out)


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def many_scan_jpeg(width, scans):
    blocks = (width // 8) ** 2
    one_code = bytes([1] + [0] * 15)  # a single 1-bit code
    j = b"\xff\xd8" + segment(0xDB, b"\x00" + b"\x01" * 64)
    j += segment(0xC2, bytes([8]) + struct.pack(">HH", width, width) + bytes([1, 1, 0x11, 0]))
    # DC table 0: code "0" = difference size 0. AC table 0: code "0" = EOB run of 2^14 + 14 bits.
    j += segment(0xC4, b"\x00" + one_code + b"\x00") + segment(0xC4, b"\x10" + one_code + b"\xe0")
    j += segment(0xDA, bytes([1, 1, 0x00, 0, 0, 0])) + bits_to_bytes("0" * blocks)
    runs = -(-blocks // 32767)
    ac_scan = segment(0xDA, bytes([1, 1, 0x00, 1, 63, 0])) + bits_to_bytes(("0" + "1" * 14) * runs)
    return j + ac_scan * (scans - 1) + b"\xff\xd9"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    width, scans, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if width <= 0 or width % 8 or width > 65535 or scans < 1:
        sys.exit("WIDTH must be a positive multiple of 8 up to 65535, SCANS at least 1")
    data = many_scan_jpeg(width, scans)
    with open(out, "wb") as f:
        f.write(data)
    print(f"{out}: {len(data)} bytes, {scans} scans over {width}x{width} pixels")


if __name__ == "__main__":
    main()
