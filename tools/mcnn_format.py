#!/usr/bin/env python3
"""Reader and writer of minicnn's .mcnn container (specification: docs/file-format.md).

Shared by tools/keras_h5_to_mcnn.py and the tests. Needs only the standard library and
numpy. Produces the same bytes as the C++ writer (include/minicnn/io/format.hpp) for the
same content: metadata as compact JSON with sorted keys, tensors laid out in table order
at 64-byte aligned offsets. Reading checks every length and offset against the file size.

Command line:  mcnn_format.py FILE.mcnn [--tensors] [--json]   (prints a summary, exit 1 on
a malformed file).
"""
import argparse
import json
import os
import re
import struct
import sys
import zlib

import numpy as np

MAGIC = b"MCNN\r\n\x1a\n"
VERSION = (1, 0)
HEADER_SIZE = 64
ALIGN = 64
ENTRY_FIXED = 24
MAX_NAME_BYTES = 1024
MAX_RANK = 4
MAX_JSON_DEPTH = 64

# dtype name -> (table code, numpy little-endian dtype)
DTYPES = {"float32": (1, np.dtype("<f4")), "int64": (2, np.dtype("<i8")), "uint8": (3, np.dtype("u1"))}
CODE_TO_DTYPE = {code: name for name, (code, _) in DTYPES.items()}
KIND_MODEL, KIND_TRAINING = 0, 1

# Header layout: magic, major, minor, metadata_length, table_length, tensor_count,
# data_offset, data_length, data_crc32, header_crc32.
_HEADER = struct.Struct("<8sIIQQQQQII")
_ENTRY = struct.Struct("<HBBB3xQQ")
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_FIXED


class McnnFormatError(ValueError):
    """A malformed .mcnn file; the message names the file, what was expected and what was found."""


class McnnFile:
    """metadata: dict; tensors: dict name -> numpy array (file order); kinds: dict name -> 0/1."""

    def __init__(self, metadata=None, tensors=None, kinds=None):
        self.metadata = {} if metadata is None else metadata
        self.tensors = {} if tensors is None else tensors
        self.kinds = {} if kinds is None else kinds

    def param_count(self, kind=KIND_MODEL):
        return int(sum(a.size for n, a in self.tensors.items() if self.kinds.get(n, KIND_MODEL) == kind))


def library_version():
    """The minicnn version of the source tree this tool ships with (project(VERSION) in CMakeLists.txt)."""
    cm = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "CMakeLists.txt")
    try:
        with open(cm, encoding="utf-8") as f:
            m = re.search(r"project\s*\(\s*minicnn\s+VERSION\s+([0-9][0-9.]*)", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    return "unknown"


def _align(v):
    return (v + ALIGN - 1) // ALIGN * ALIGN


def dump_metadata(metadata):
    """Compact JSON with sorted keys: the bytes nlohmann::json::dump() writes for the same value."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def json_depth(text):
    """Bracket nesting depth of JSON text (outside strings), as the C++ reader measures it."""
    depth = worst = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            worst = max(worst, depth)
        elif c in (0x5D, 0x7D):
            depth -= 1
    return worst


def _as_entries(tensors, kinds):
    items = tensors.items() if isinstance(tensors, dict) else tensors
    out = []
    for item in items:
        name, arr = item[0], item[1]
        kind = item[2] if len(item) > 2 else (kinds or {}).get(name, KIND_MODEL)
        out.append((name, arr, kind))
    return out


def serialize(metadata, tensors, kinds=None, library_version=None):
    """Bytes of a .mcnn file. tensors: dict or list of (name, array[, kind]); arrays float32/int64/uint8.
    Sets metadata "format" and "library_version" (default: this source tree's version; tests pass
    another one to reproduce an older file byte for byte)."""
    meta = dict(metadata or {})
    meta["format"] = "mcnn %d.%d" % VERSION
    meta["library_version"] = library_version or globals()["library_version"]()
    text = dump_metadata(meta)
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError("metadata nests deeper than %d levels, which readers reject" % MAX_JSON_DEPTH)

    table = bytearray()
    blobs = []
    seen = set()
    data_len = 0
    for name, arr, kind in _as_entries(tensors, kinds):
        nb = name.encode("utf-8")
        if not nb or len(nb) > MAX_NAME_BYTES or b"\0" in nb:
            raise ValueError("tensor name %r must be 1..%d bytes of UTF-8 without NUL" % (name, MAX_NAME_BYTES))
        if name in seen:
            raise ValueError("duplicate tensor name %r" % name)
        seen.add(name)
        arr = np.asarray(arr)
        dname = {np.dtype("float32"): "float32", np.dtype("int64"): "int64", np.dtype("uint8"): "uint8"}.get(
            arr.dtype.newbyteorder("="))
        if dname is None:
            raise ValueError("tensor %r has dtype %s; .mcnn stores float32, int64 or uint8" % (name, arr.dtype))
        if arr.ndim > MAX_RANK:
            raise ValueError("tensor %r has rank %d, at most %d allowed" % (name, arr.ndim, MAX_RANK))
        if kind not in (KIND_MODEL, KIND_TRAINING):
            raise ValueError("tensor %r has unknown kind %r" % (name, kind))
        code, le = DTYPES[dname]
        raw = np.ascontiguousarray(arr, dtype=le).tobytes()
        off = _align(data_len)
        data_len = off + len(raw)
        blobs.append((off, raw))
        table += _ENTRY.pack(len(nb), code, arr.ndim, kind, off, len(raw))
        table += struct.pack("<%dQ" % arr.ndim, *arr.shape)
        table += nb

    data_off = _align(HEADER_SIZE + len(text) + len(table))
    out = bytearray(data_off + data_len)
    out[HEADER_SIZE:HEADER_SIZE + len(text)] = text
    out[HEADER_SIZE + len(text):HEADER_SIZE + len(text) + len(table)] = table
    for off, raw in blobs:
        out[data_off + off:data_off + off + len(raw)] = raw
    data_crc = zlib.crc32(memoryview(out)[data_off:]) & 0xFFFFFFFF
    head = _HEADER.pack(MAGIC, VERSION[0], VERSION[1], len(text), len(table), len(blobs), data_off, data_len,
                        data_crc, 0)
    out[:HEADER_SIZE] = head
    hcrc = zlib.crc32(memoryview(out)[HEADER_SIZE:HEADER_SIZE + len(text) + len(table)],
                      zlib.crc32(head[:60])) & 0xFFFFFFFF
    out[60:64] = struct.pack("<I", hcrc)
    return bytes(out)


def write_atomic(path, data):
    """Temp file in the target's directory, fsync, rename; the old file survives any failure.
    Raises OSError whose message names the target."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp.%d.%s" % (os.path.basename(path), os.getpid(), os.urandom(4).hex()))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise OSError(e.errno, "cannot write '%s': cannot create a temporary file in '%s': %s"
                      % (path, d, e.strerror)) from e
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.isfile(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(e.errno, "cannot write '%s': %s (the previous file, if any, is unchanged)"
                          % (path, e.strerror or e)) from e
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_mcnn(path, metadata, tensors, kinds=None, library_version=None):
    write_atomic(path, serialize(metadata, tensors, kinds, library_version))


def parse(data, where="<bytes>"):
    """Parses and validates .mcnn bytes; raises McnnFormatError."""
    data = memoryview(data)
    size = len(data)

    def fail(msg):
        return McnnFormatError("%s: %s" % (where, msg))

    if size < 8 or bytes(data[:8]) != MAGIC:
        if size >= 8 and bytes(data[:8]) == b"\x89HDF\r\n\x1a\n":
            raise fail("this is a Keras/HDF5 file, not .mcnn; convert it with tools/keras_h5_to_mcnn.py")
        if size < 8 and bytes(data) == MAGIC[:size]:
            raise fail("truncated: %d bytes, a .mcnn header needs %d" % (size, HEADER_SIZE))
        raise fail("not a .mcnn file (bad magic: expected %r in the first 8 bytes)" % MAGIC)
    if size < HEADER_SIZE:
        raise fail("truncated: %d bytes, a .mcnn header needs %d" % (size, HEADER_SIZE))
    (_, major, minor, meta_len, table_len, count, data_off, data_len, data_crc,
     header_crc) = _HEADER.unpack_from(data, 0)
    if major > VERSION[0]:
        raise fail("format version %d.%d is newer than this reader supports (%d.x)" % (major, minor, VERSION[0]))
    if major == 0:
        raise fail("invalid format version 0.%d (the header is corrupted)" % minor)
    if HEADER_SIZE + meta_len + table_len > size:
        raise fail("truncated or corrupted: the header declares %d bytes of metadata and %d bytes of tensor table "
                   "but the file has only %d bytes" % (meta_len, table_len, size))
    table_off = HEADER_SIZE + meta_len
    table_end = table_off + table_len
    crc = zlib.crc32(data[HEADER_SIZE:table_end], zlib.crc32(data[:60])) & 0xFFFFFFFF
    if crc != header_crc:
        raise fail("header checksum mismatch (stored 0x%08x, computed 0x%08x): the header, metadata or tensor "
                   "table is corrupted" % (header_crc, crc))
    if data_off != _align(table_end):
        raise fail("data section offset %d should be %d" % (data_off, _align(table_end)))
    if data_off + data_len > size:
        raise fail("truncated: the data section should end at byte %d but the file has %d bytes"
                   % (data_off + data_len, size))
    if data_off + data_len != size:
        raise fail("the file has %d unexpected bytes after the data section" % (size - data_off - data_len))
    if any(data[table_end:data_off]):
        raise fail("non-zero padding before the data section")
    if json_depth(bytes(data[HEADER_SIZE:table_off])) > MAX_JSON_DEPTH:
        raise fail("metadata JSON nests deeper than %d levels" % MAX_JSON_DEPTH)
    try:
        metadata = json.loads(bytes(data[HEADER_SIZE:table_off]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise fail("metadata is not valid UTF-8 JSON: %s" % e)
    if not isinstance(metadata, dict):
        raise fail("metadata must be a JSON object, found %s" % type(metadata).__name__)

    if count > table_len // (ENTRY_FIXED + 1):
        raise fail("tensor count %d cannot fit in a table of %d bytes" % (count, table_len))
    entries = []
    pos = table_off
    for i in range(count):
        which = "tensor #%d" % i
        if table_end - pos < ENTRY_FIXED:
            raise fail("tensor table ends inside the entry of " + which)
        name_len, code, rank, kind, off, nbytes = _ENTRY.unpack_from(data, pos)
        if rank > MAX_RANK:
            raise fail("%s has rank %d, expected at most %d" % (which, rank, MAX_RANK))
        if not 1 <= name_len <= MAX_NAME_BYTES:
            raise fail("%s has a name of %d bytes, expected 1..%d" % (which, name_len, MAX_NAME_BYTES))
        if table_end - pos - ENTRY_FIXED < 8 * rank + name_len:
            raise fail("tensor table ends inside the entry of " + which)
        dims = struct.unpack_from("<%dQ" % rank, data, pos + ENTRY_FIXED)
        raw_name = bytes(data[pos + ENTRY_FIXED + 8 * rank:pos + ENTRY_FIXED + 8 * rank + name_len])
        pos += ENTRY_FIXED + 8 * rank + name_len
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(which + " has a name that is not valid UTF-8")
        if "\0" in name:
            raise fail(which + " has a NUL byte in its name")
        which = "tensor %r" % name
        if code not in CODE_TO_DTYPE:
            raise fail("%s has unknown dtype code %d (known: 1 float32, 2 int64, 3 uint8)" % (which, code))
        if kind not in (KIND_MODEL, KIND_TRAINING):
            raise fail("%s has unknown kind code %d (known: 0 model, 1 training)" % (which, kind))
        dt = DTYPES[CODE_TO_DTYPE[code]][1]
        elems = 1
        for d in dims:
            elems *= d
        if elems * dt.itemsize >= 1 << 62:
            raise fail("%s has absurd shape %s (too many elements)" % (which, tuple(dims)))
        if nbytes != elems * dt.itemsize:
            raise fail("%s declares %d bytes, but shape %s of %s needs %d"
                       % (which, nbytes, tuple(dims), CODE_TO_DTYPE[code], elems * dt.itemsize))
        if off % ALIGN:
            raise fail("%s starts at data offset %d, which is not a multiple of 64" % (which, off))
        if off + nbytes > data_len:
            raise fail("%s occupies data bytes [%d, +%d) past the end of the data section (%d bytes)"
                       % (which, off, nbytes, data_len))
        if any(e[0] == name for e in entries):
            raise fail("tensor name %r appears twice in the table" % name)
        entries.append((name, dt, tuple(dims), kind, off, nbytes))
    if pos != table_end:
        raise fail("tensor table has %d bytes left after %d entries" % (table_end - pos, count))
    spans = sorted((e[4], e[4] + e[5], e[0]) for e in entries if e[5])
    for a, b in zip(spans, spans[1:]):
        if a[1] > b[0]:
            raise fail("tensors %r and %r overlap in the data section" % (a[2], b[2]))
    crc = zlib.crc32(data[data_off:]) & 0xFFFFFFFF
    if crc != data_crc:
        raise fail("data checksum mismatch (stored 0x%08x, computed 0x%08x): tensor data is corrupted"
                   % (data_crc, crc))

    f = McnnFile(metadata)
    for name, dt, dims, kind, off, nbytes in entries:
        start = data_off + off
        arr = np.frombuffer(data[start:start + nbytes], dtype=dt).reshape(dims)
        f.tensors[name] = arr.astype(dt.newbyteorder("="), copy=True)
        f.kinds[name] = kind
    return f


def read_mcnn(path):
    with open(path, "rb") as fh:
        data = fh.read()
    return parse(data, "'%s'" % os.fspath(path))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a .mcnn file and print its metadata and tensor table.")
    ap.add_argument("file")
    ap.add_argument("--tensors", action="store_true", help="list every tensor")
    ap.add_argument("--json", action="store_true", help="print the metadata as indented JSON")
    a = ap.parse_args(argv)
    try:
        f = read_mcnn(a.file)
    except (OSError, McnnFormatError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print("%s: %s, %d tensors, %d model values, %d training values"
          % (a.file, f.metadata.get("format", "?"), len(f.tensors), f.param_count(KIND_MODEL),
             f.param_count(KIND_TRAINING)))
    arch = f.metadata.get("architecture")
    if arch is not None:
        print("architecture: %s" % json.dumps(arch, sort_keys=True))
    if a.json:
        print(json.dumps(f.metadata, indent=2, sort_keys=True, ensure_ascii=False))
    if a.tensors:
        for n, arr in f.tensors.items():
            print("  %-50s %-8s %s%s" % (n, arr.dtype.name, tuple(arr.shape),
                                         "  (training)" if f.kinds[n] == KIND_TRAINING else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
