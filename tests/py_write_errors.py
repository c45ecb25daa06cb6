#!/usr/bin/env python3
"""Disk full and write errors while haribo_train saves (issue 13, item 6).

Two ways to make writes fail, on the same tiny generated dataset as py_kill_training.py:
  - a file size limit (RLIMIT_FSIZE, any user): a write past it fails with EFBIG, so a limit
    between the sizes of best_model.mcnn and last_checkpoint.mcnn (~9.1 and ~9.4 MB) lets the
    model file through and stops every checkpoint: a writer that fails after N bytes;
  - a full disk (ENOSPC): a 24 MB tmpfs as the output folder, where the second epoch's files
    no longer fit. Needs root and a kernel that lets it mount; skipped otherwise.
Required: the error names the file; the file that was there before is intact (it loads and
is the earlier epoch's); --on-write-error stop (the default) ends training at once with exit
code 4 and `--resume` continues from the intact checkpoint once there is room;
--on-write-error continue trains every epoch and warns.
Exit code 77 (ctest: skipped) when ../shared (the ImageNet weights' source) is absent."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

from minicnn_testlib import BIN, ROOT, WS, check, converted_weights, make_ppm_dataset, summary

sys.path.insert(0, os.path.join(ROOT, "tools"))
import mcnn_format  # noqa: E402


def epoch_of(path):
    return mcnn_format.read_mcnn(path).metadata["training"]["epoch"]


def limit_file_size(n):
    def apply():
        # A write past the limit fails with EFBIG instead of killing the process with SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return apply


def main():
    if not os.path.isdir(WS):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % WS)
        return 77
    weights = converted_weights()
    mcnn = os.path.join(BIN, "mcnn")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        make_ppm_dataset(data)
        base = [os.path.join(BIN, "haribo_train"), "--data", data, "--weights", weights, "--size", "32",
                "--batch-size", "8", "--no-augment", "--cache-features", "--threads", "1", "--workers", "0",
                "--verbose", "2", "--patience", "1000", "--no-report", "--dense", "16", "--lr", "3e-3",
                "--validation-split", "0.25", "--seed", "3"]

        def train(out, *extra, preexec=None):
            return subprocess.run(base + ["--out", out] + list(extra), capture_output=True, text=True,
                                  preexec_fn=preexec)

        # Sizes of the two files, from a run with room.
        probe = os.path.join(tmp, "probe")
        r = train(probe, "--epochs", "1")
        check(r.returncode == 0, "a run with room succeeds")
        best_size = os.path.getsize(os.path.join(probe, "best_model.mcnn"))
        ck_size = os.path.getsize(os.path.join(probe, "last_checkpoint.mcnn"))
        check(best_size < ck_size, "the checkpoint (%d B) is larger than the model file (%d B)" % (ck_size, best_size))
        limit = (best_size + ck_size) // 2

        for policy in ("stop", "continue"):
            out = os.path.join(tmp, policy)
            r = train(out, "--epochs", "2")
            check(r.returncode == 0 and epoch_of(os.path.join(out, "last_checkpoint.mcnn")) == 1,
                  "%s: two epochs saved with room" % policy)
            before = open(os.path.join(out, "last_checkpoint.mcnn"), "rb").read()
            extra = ["--resume", "--epochs", "5"] + (["--on-write-error", "continue"] if policy == "continue" else [])
            r = train(out, *extra, preexec=limit_file_size(limit))
            err = r.stderr
            ck = os.path.join(out, "last_checkpoint.mcnn")
            check("cannot write '%s'" % ck in err and "File too large" in err and "unchanged" in err,
                  "%s: the error names last_checkpoint.mcnn, says why and that the old file is unchanged" % policy)
            check(open(ck, "rb").read() == before, "%s: the previous checkpoint is intact, byte for byte" % policy)
            check(subprocess.run([mcnn, "inspect", ck], capture_output=True).returncode == 0,
                  "%s: the previous checkpoint loads" % policy)
            check(not [f for f in os.listdir(out) if ".tmp." in f], "%s: no temporary file left" % policy)
            s = json.load(open(os.path.join(out, "summary.json")))
            if policy == "stop":
                check(r.returncode == 4, "stop: exit code 4 (got %d)" % r.returncode)
                # The write fails on the writer's thread; training stops at the first epoch end
                # after that (epochs take a millisecond here, a write tens of milliseconds).
                check(s["stop_reason"] == "write error" and s["write_errors"] >= 1,
                      "stop: training stopped by the write error (%d epochs, %s)" % (s["epochs_run"], s["stop_reason"]))
                check("--resume" in err, "stop: the message says how to continue")
                # Room again: --resume continues from the intact checkpoint (epoch 2 of 5).
                r = train(out, "--resume", "--epochs", "5")
                check(r.returncode == 0 and "Epoch 3/5" in r.stdout and "Epoch 2/5" not in r.stdout,
                      "stop: with room again --resume continues with epoch 3")
                rows = open(os.path.join(out, "history.csv")).read().splitlines()
                check([x.split(",")[0] for x in rows] == ["epoch", "0", "1", "2", "3", "4"],
                      "stop: history.csv has each epoch once after resuming (%s)" % [x.split(",")[0] for x in rows])
                check(epoch_of(ck) == 4, "stop: the checkpoint reaches the last epoch")
            else:
                check(r.returncode == 0, "continue: exit code 0 (got %d)" % r.returncode)
                check(s["epochs_run"] == 5 and s["write_errors"] >= 1 and s["stop_reason"] == "",
                      "continue: every epoch trained, the failed checkpoints counted (%d epochs, %d errors)"
                      % (s["epochs_run"], s["write_errors"]))
                check("went on" in err, "continue: a warning at the end")
                check(mcnn_format.read_mcnn(os.path.join(out, "best_model.mcnn")) is not None,
                      "continue: best_model.mcnn (under the limit) was still written and loads")

        # A real full disk, where the machine allows mounting a tmpfs.
        mnt = os.path.join(tmp, "small_disk")
        os.makedirs(mnt)
        size_mb = (best_size + ck_size) // (1 << 20) + 6
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mb, "tmpfs", mnt],
                                               capture_output=True).returncode != 0:
            print("note: no tmpfs (needs root and permission to mount); the ENOSPC part is skipped")
        else:
            try:
                out = os.path.join(mnt, "out")
                r = train(out, "--epochs", "4")
                err = r.stderr
                check(r.returncode == 4 and "No space left on device" in err and
                      ("cannot write '%s/best_model.mcnn'" % out in err or "cannot write '%s/last_checkpoint.mcnn'" % out in err),
                      "full disk: exit code 4, the error names the file and says the disk is full (rc %d)" % r.returncode)
                e = epoch_of(os.path.join(out, "last_checkpoint.mcnn"))
                check(e == 0, "full disk: the first epoch's checkpoint is intact (epoch %d)" % e)
                check(mcnn_format.read_mcnn(os.path.join(out, "best_model.mcnn")) is not None,
                      "full disk: best_model.mcnn loads")
                check(not [f for f in os.listdir(out) if ".tmp." in f], "full disk: no temporary file left")
                # Make room: move the output folder to a disk with space and resume there.
                moved = os.path.join(tmp, "moved")
                shutil.copytree(out, moved)
                r = train(moved, "--resume")
                check(r.returncode == 0 and epoch_of(os.path.join(moved, "last_checkpoint.mcnn")) == 3,
                      "full disk: resumed elsewhere, training finishes")
            finally:
                subprocess.run(["umount", mnt])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
