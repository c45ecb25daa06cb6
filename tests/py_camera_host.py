"""Where haribo_camera listens: by default on 127.0.0.1 only (the URL it prints, and the
kernel's table of listening sockets, /proc/net/tcp, agree), with no warning; another address
only when --host names it, and then with a warning that the camera is visible to the network.

Exit code 77 (ctest: skipped) when the haribo_camera binary is absent."""
import os
import re
import subprocess
import sys
import tempfile
import time

from minicnn_testlib import BIN, check, summary, write_colour_model


def listening_addresses(port):
    """The IPv4 addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.append(addr)
    return found


def run_camera(camera, model, frames, extra):
    """Starts haribo_camera, waits for its URL, returns (url, port, listening, output)."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([camera, model, "--source", frames, "--fps", "5", "--port", "0",
                                 "--duration", "30"] + extra,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        url, port, listening = None, None, []
        try:
            for _ in range(200):
                log.seek(0)
                m = re.search(r"open (http://[^ ]+:(\d+)/)", log.read())
                if m:
                    url, port = m.group(1), int(m.group(2))
                    listening = listening_addresses(port)
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        log.seek(0)
        return url, port, listening, log.read()


def main():
    camera = os.path.join(BIN, "haribo_camera")
    if not os.path.exists(camera):
        print("SKIPPED: %s not built (needs libturbojpeg0-dev and libcpp-httplib-dev)" % camera)
        return 77
    from PIL import Image
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "colours.mcnn")
        write_colour_model(model, ["red", "green"])
        frames = os.path.join(tmp, "frames")
        os.makedirs(frames)
        Image.new("RGB", (64, 48), (220, 30, 30)).save(os.path.join(frames, "a.png"))

        url, port, listening, out = run_camera(camera, model, frames, [])
        check(url is not None and url.startswith("http://127.0.0.1:"),
              "by default it serves http://127.0.0.1:PORT/ (%s)" % url)
        check(listening == ["0100007F"],
              "and the only socket listening on that port is 127.0.0.1 (%s)" % listening)
        check("warning" not in out, "with no warning")

        url, port, listening, out = run_camera(camera, model, frames, ["--host", "0.0.0.0"])
        check(url is not None and listening == ["00000000"],
              "--host 0.0.0.0 listens on every address (%s)" % listening)
        check("warning: serving on 0.0.0.0" in out and "sees the camera" in out,
              "and warns that the network sees the camera")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
