#!/usr/bin/env python3
"""Class and file names that are markup, quotes, backslashes, control characters or not UTF-8
(issue 13, item 10). Class names come from folder names and end up in the model file's JSON
metadata, summary.json, report.html, the curves' SVG, and the JSON and CSV of haribo_predict
and `mcnn classify`.

A generated dataset whose class folders are named like markup (<script>, <img onerror>, ...),
with quotes, a backslash, a newline and a tab, and non-ASCII text, and whose files are named
like markup too, is trained for one epoch with the report on. Then:
  - report.html, parsed: no <script> element, no on* attribute, every <img> is an inlined
    PNG, and every class name is there as text (escaped, not markup);
  - curves.svg is well-formed XML without a script element;
  - summary.json and the model file's metadata are valid JSON (strict: no raw control
    character) and hold the class names exactly;
  - haribo_predict --json and `mcnn classify --json` are valid JSON with those names, and
    haribo_predict --csv parses as CSV into the same names;
  - a class folder whose name is not UTF-8 is refused with a clear error naming it (it could
    not be stored in the JSON metadata).
Exit code 77 (ctest: skipped) when ../shared (the ImageNet weights' source) is absent."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from minicnn_testlib import BIN, ROOT, WS, check, converted_weights, make_ppm_dataset, summary

sys.path.insert(0, os.path.join(ROOT, "tools"))
import mcnn_format  # noqa: E402

CLASSES = [
    "<script>alert(1)",                 # a folder name cannot hold '/', so no </script>
    "<img src=x onerror=alert(2)>",
    "quote\"and'apos &amp; &lt;",
    "back\\slash \\u0022 \\n",
    "new\nline\ttab",
    "]]><!-- caf\u00e9 \U0001F36C",
]
HOSTILE_FILE = "<svg onload=alert(3)>.ppm"


class Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.bad_attrs, self.img_srcs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k.startswith("on"):
                self.bad_attrs.append((tag, k, v))
        if tag == "img":
            self.img_srcs.append(dict(attrs).get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


def main():
    if not os.path.isdir(WS):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % WS)
        return 77
    weights = converted_weights()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        make_ppm_dataset(data, classes=CLASSES, per_class=8)
        for c in CLASSES:  # the first file of each class, a validation image, named like markup
            os.rename(os.path.join(data, c, "img000.ppm"), os.path.join(data, c, HOSTILE_FILE))
        out = os.path.join(tmp, "out")
        r = subprocess.run([os.path.join(BIN, "haribo_train"), "--data", data, "--out", out, "--weights", weights,
                            "--size", "32", "--batch-size", "8", "--no-augment", "--cache-features", "--threads", "2",
                            "--epochs", "1", "--verbose", "2", "--validation-split", "0.25"],
                           capture_output=True, text=True)
        check(r.returncode == 0, "haribo_train trains on the hostile names (rc %d) %s" % (r.returncode, r.stderr[-500:]))
        if r.returncode != 0:
            return summary()

        html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
        p = Collector()
        p.feed(html)
        p.close()
        check("script" not in p.tags, "report.html: no <script> element")
        check(not p.bad_attrs, "report.html: no on* attribute (%s)" % p.bad_attrs[:3])
        check(p.img_srcs and all(s.startswith("data:image/png;base64,") for s in p.img_srcs),
              "report.html: every <img> is an inlined PNG (%d)" % len(p.img_srcs))
        check(not any(t in ("svg", "iframe", "object", "embed") for t in p.tags), "report.html: no svg/iframe/object")
        text = "".join(p.text)
        missing = [c for c in CLASSES if c not in text]
        check(not missing, "report.html: every class name is there as text (missing: %r)" % missing)
        check("alert(3)" in text and "<svg onload" not in html, "report.html: the markup file name is text")

        svg = ET.parse(os.path.join(out, "curves.svg")).getroot()
        check(not [e for e in svg.iter() if e.tag.split("}")[-1] == "script"], "curves.svg: well-formed, no script")

        s = json.load(open(os.path.join(out, "summary.json"), encoding="utf-8"))  # strict: no raw control chars
        check(sorted(s["classes"]) == sorted(CLASSES), "summary.json: valid JSON with the exact class names")
        model = os.path.join(out, "best_model.mcnn")
        meta = mcnn_format.read_mcnn(model).metadata
        check(sorted(meta["class_names"]) == sorted(CLASSES), "best_model.mcnn: metadata JSON holds the exact names")

        # Plus a file whose name is not UTF-8 (JSON gets U+FFFD for its bad bytes).
        odd = os.path.join(tmp, "odd")
        os.makedirs(odd)
        with open(os.path.join(os.fsencode(odd), b"img\xff.ppm"), "wb") as f:
            f.write(open(os.path.join(data, CLASSES[1], HOSTILE_FILE), "rb").read())
        r = subprocess.run([os.path.join(BIN, "haribo_predict"), model, data, odd, "--json"],
                           capture_output=True, text=True, errors="surrogateescape")
        try:
            j = json.loads(r.stdout)
            labels = {t["label"] for res in j["results"] for t in res["top"]}
            ok = labels <= set(CLASSES) and len(j["results"]) == 8 * len(CLASSES) + 1
        except (ValueError, KeyError, TypeError) as e:
            ok, labels = False, str(e)
        check(ok, "haribo_predict --json: valid JSON with the class names and a non-UTF-8 file name (%r)" % (labels if not ok else len(labels)))
        r = subprocess.run([os.path.join(BIN, "haribo_predict"), model, data, "--csv", "--top-k", "2"],
                           capture_output=True, text=True)
        rows = list(csv.reader(io.StringIO(r.stdout)))
        body = rows[1:]
        check(len(body) == 8 * len(CLASSES) and all(len(x) == len(rows[0]) for x in body)
              and {x[1] for x in body} <= set(CLASSES),
              "haribo_predict --csv: one well-formed row per image, class names intact")
        r = subprocess.run([os.path.join(BIN, "mcnn"), "classify", "--weights", model, "--json",
                            os.path.join(data, CLASSES[0], HOSTILE_FILE)], capture_output=True, text=True)
        try:
            res = json.loads(r.stdout)
            ok = res[0]["top"][0]["label"] in CLASSES
        except (ValueError, KeyError, IndexError, TypeError):
            ok = False
        check(ok, "mcnn classify --json: valid JSON with a class name")

        # A class folder name that is not UTF-8.
        bad = os.path.join(tmp, "bad")
        make_ppm_dataset(bad, classes=["good", os.fsdecode(b"bad\xff\xfe")], per_class=4)
        r = subprocess.run([os.path.join(BIN, "haribo_train"), "--data", bad, "--out", os.path.join(tmp, "out2"),
                            "--weights", weights, "--size", "32", "--epochs", "1", "--no-report"],
                           capture_output=True, text=True)
        check(r.returncode != 0 and "bad\\xFF\\xFE" in r.stderr and "not valid UTF-8" in r.stderr,
              "a class folder named b'bad\\xff\\xfe' is refused, named in the error (%r)" % r.stderr[-300:])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
