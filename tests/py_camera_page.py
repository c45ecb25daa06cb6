#!/usr/bin/env python3
"""The haribo_camera page in a real browser (headless Debian chromium): a two-class model
written here (GlobalAveragePooling2D + Dense softmax, weights by hand: red frames -> "red",
green frames -> the other class, whose name is hostile markup), a folder of red then green
PNG frames replayed in a loop at 10 frames/s, haribo_camera serving on a free port of
127.0.0.1. Chromium loads the page for 15 s of virtual time and dumps the DOM; the page
mirrors what it saw in attributes of <body>. Checked: the MJPEG <img> stream decoded frames
(data-stream-width = 64, the frames' width), /status was polled, the label took both values
as the replayed frames changed colour, the hostile class name is shown as text and never
became markup, and the server counted the frames it streamed.
Exit code 77 (ctest: skipped) when chromium or the haribo_camera binary is absent."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from minicnn_testlib import BIN, check, summary, write_colour_model


HOSTILE = "<img src=x onerror=alert(1)>"


def write_frames(folder):
    from PIL import Image
    os.makedirs(folder)
    for i in range(10):  # 1 s of red, then 1 s of green, looping
        Image.new("RGB", (64, 48), (220, 30, 30)).save(os.path.join(folder, "a_%02d.png" % i))
        Image.new("RGB", (64, 48), (30, 200, 40)).save(os.path.join(folder, "b_%02d.png" % i))


def main():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    camera = os.path.join(BIN, "haribo_camera")
    if not chromium:
        print("SKIPPED: chromium not installed (Debian package chromium)")
        return 77
    if not os.path.exists(camera):
        print("SKIPPED: %s not built (needs libturbojpeg0-dev and libcpp-httplib-dev)" % camera)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "colours.mcnn")
        write_colour_model(model, ["red", HOSTILE])
        frames = os.path.join(tmp, "frames")
        write_frames(frames)
        log = open(os.path.join(tmp, "camera.log"), "w+")
        proc = subprocess.Popen([camera, model, "--source", frames, "--fps", "10", "--smooth", "1",
                                 "--port", "0", "--duration", "120"],
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            url = None
            for _ in range(200):
                log.seek(0)
                m = re.search(r"open (http://127\.0\.0\.1:\d+/)", log.read())
                if m:
                    url = m.group(1)
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            if not url:
                log.seek(0)
                raise SystemExit("haribo_camera did not start:\n" + log.read())
            profile = os.path.join(tmp, "profile")
            r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--no-first-run", "--disable-background-networking",
                                "--disable-component-update", "--disable-sync",
                                "--user-data-dir=" + profile, "--virtual-time-budget=15000",
                                "--dump-dom", url],
                               capture_output=True, text=True, timeout=120)
            dom = r.stdout
            check(r.returncode == 0 and "</html>" in dom, "chromium dumped the page")
            body = re.search(r"<body([^>]*)>", dom)
            attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1) if body else ""))
            unescape = lambda s: (s.replace("&lt;", "<").replace("&gt;", ">")
                                  .replace("&quot;", '"').replace("&amp;", "&"))
            print("body attributes:", attrs)
            check(attrs.get("stream-width") == "64", "the MJPEG stream delivered decoded frames")
            check(int(attrs.get("polls", "0")) >= 10, "the page polled /status")
            seen = json.loads(unescape(attrs.get("labels-seen", "[]")))
            check(set(seen) == {"red", HOSTILE},
                  "the label changed with the replayed frames' colour: %s" % seen)
            check("&lt;img src=x onerror=alert(1)&gt;" in dom, "the hostile class name is text")
            check(len(re.findall(r"<img\b", dom)) == 1, "and no <img> element came from it")
            with urllib.request.urlopen(url + "status", timeout=10) as resp:
                status = json.load(resp)
            check(status["frames_streamed"] >= 5,
                  "the server streamed frames (%d)" % status["frames_streamed"])
            check(status["error"] == "", "no pipeline error")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.seek(0)
            out = log.read()
            log.close()
        check(proc.returncode == 0, "haribo_camera stopped cleanly on SIGTERM (%s)" % proc.returncode)
        check("stopped after" in out, "and printed its summary")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
