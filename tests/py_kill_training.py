#!/usr/bin/env python3
"""kill -9 during training loses nothing (issue 13, item 5).

haribo_train runs on a tiny generated dataset (3 classes of 16 noisy 40x40 PPM pictures, 32x32
input, frozen base with cached features: an epoch takes about a millisecond, so the run is
dominated by its file writes) and is killed with SIGKILL at random moments, then resumed with
--resume, over and over (at least 100 kills; the count and how many landed while a write was
in progress are printed).

Oracle: training is deterministic (one thread, fixed seed) and a resumed run continues exactly
as the uninterrupted one (checked first). A reference run advances one epoch per process
(--epochs 1, then --resume --epochs 2, ...) and records every state it saved: the checkpoint
after each epoch and each version of best_model.mcnn. After every kill:
  - last_checkpoint.mcnn loads (the Python reader checks every CRC; `mcnn inspect` loads it
    with the C++ reader) and equals, tensor for tensor and in its history and callback
    state, the reference checkpoint of the epoch its metadata names; that epoch never goes
    back (what was saved stays saved);
  - best_model.mcnn loads and equals a version the reference saved, never an older one than
    the checkpoint says was saved (the checkpoint's ModelCheckpoint.last_saved_epoch), and
    never goes back;
  - history.csv holds the reference's first rows, no row twice;
  - no temporary file of a dead process is left once the next run has started.
Each interrupted chain is resumed until it finishes; its history.csv, summary.json and files
must then equal the uninterrupted run's.
Exit code 77 (ctest: skipped) when ../shared (the ImageNet weights' source) is absent."""
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from minicnn_testlib import BIN, ROOT, WS, check, converted_weights, make_ppm_dataset, summary

sys.path.insert(0, os.path.join(ROOT, "tools"))
import mcnn_format  # noqa: E402

KILLS = int(os.environ.get("MINICNN_KILLS", "120"))
EPOCHS = 12
TIME_LIMIT_S = float(os.environ.get("MINICNN_KILL_TIME_LIMIT", "150"))


def tensors_digest(f, kinds=(0, 1)):
    h = hashlib.sha256()
    for name in sorted(f.tensors):
        if f.kinds.get(name, 0) in kinds:
            a = f.tensors[name]
            h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def checkpoint_state(path):
    """(epoch, digest of everything a resume uses, ModelCheckpoint.last_saved_epoch)."""
    f = mcnn_format.read_mcnn(path)  # raises on any bad length, offset or CRC
    tr = f.metadata["training"]
    hist = dict(tr["history"])
    hist.pop("seconds")  # wall-clock time, the only thing that may differ
    hist.pop("params")   # holds --epochs, which the reference chain raises one by one
    cbs = tr["callbacks"]
    mc = cbs["ModelCheckpoint"]
    mc["last_saved"] = os.path.basename(mc["last_saved"])  # the runs write to different folders
    key = json.dumps({"tensors": tensors_digest(f), "iterations": tr["iterations"],
                      "dropout": tr["dropout_masks_drawn"], "history": hist, "callbacks": cbs,
                      "optimizer": tr["optimizer"], "classes": f.metadata["class_names"]},
                     sort_keys=True)
    return tr["epoch"], hashlib.sha256(key.encode()).hexdigest(), mc["last_saved_epoch"]


def model_digest(path):
    f = mcnn_format.read_mcnn(path)
    return tensors_digest(f, kinds=(0,)) + json.dumps(f.metadata["class_names"])


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def cpp_loads(path):
    r = subprocess.run([os.path.join(BIN, "mcnn"), "inspect", path], capture_output=True, text=True)
    return r.returncode == 0


def main():
    if not os.path.isdir(WS):
        print("SKIPPED: %s not found (the ../shared data is absent in this checkout)" % WS)
        return 77
    weights = converted_weights()
    train = os.path.join(BIN, "haribo_train")
    seed = int(os.environ.get("MINICNN_KILL_SEED", str(int(time.time()) % 100000)))
    print("random seed of the kill times: %d (MINICNN_KILL_SEED to repeat)" % seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        make_ppm_dataset(data)
        base = [train, "--data", data, "--weights", weights, "--size", "32", "--batch-size", "8",
                "--no-augment", "--cache-features", "--threads", "1", "--workers", "0",
                "--verbose", "2", "--patience", "1000", "--no-report", "--dense", "16",
                "--lr", "1e-2", "--validation-split", "0.25", "--seed", "3"]

        def run(out, *extra):
            r = subprocess.run(base + ["--out", out] + list(extra), capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit("haribo_train %s failed (%d):\n%s\n%s" % (extra, r.returncode, r.stdout[-2000:], r.stderr))
            return r

        # The uninterrupted run.
        full = os.path.join(tmp, "full")
        t0 = time.time()
        run(full, "--epochs", str(EPOCHS))
        full_s = time.time() - t0
        full_rows = rows(os.path.join(full, "history.csv"))
        full_summary = json.load(open(os.path.join(full, "summary.json")))
        check(len(full_rows) == EPOCHS + 1, "uninterrupted run: %d epochs in %.2f s" % (EPOCHS, full_s))

        # The reference: one epoch per process, every saved state recorded.
        ref = os.path.join(tmp, "ref")
        ref_ckpt = {}   # epoch -> digest
        ref_best = {}   # model digest -> epoch it was saved in
        for k in range(1, EPOCHS + 1):
            run(ref, "--epochs", str(k), *(["--resume"] if k > 1 else []))
            e, d, saved = checkpoint_state(os.path.join(ref, "last_checkpoint.mcnn"))
            assert e == k - 1, (e, k)
            ref_ckpt[e] = d
            b = model_digest(os.path.join(ref, "best_model.mcnn"))
            if b not in ref_best:
                ref_best[b] = saved
        check(rows(os.path.join(ref, "history.csv")) == full_rows,
              "resumed one epoch at a time, the history equals the uninterrupted run's")
        check(checkpoint_state(os.path.join(ref, "last_checkpoint.mcnn"))[1] ==
              checkpoint_state(os.path.join(full, "last_checkpoint.mcnn"))[1],
              "resumed one epoch at a time, the last checkpoint equals the uninterrupted run's")
        check(model_digest(os.path.join(ref, "best_model.mcnn")) == model_digest(os.path.join(full, "best_model.mcnn")),
              "resumed one epoch at a time, the best model equals the uninterrupted run's")
        print("reference: %d checkpoints, %d versions of best_model.mcnn (saved in epochs %s)"
              % (len(ref_ckpt), len(ref_best), sorted(ref_best.values())))

        # Kill, check, resume, until KILLS kills.
        out = os.path.join(tmp, "killed")
        kills = during_write = chains = runs = 0
        bad = []
        last_ck = last_best = -1
        # Kill times are uniform in [0, max_delay]; max_delay adapts to the machine's speed
        # now (a loaded machine runs slower than when full_s was measured, or faster): shorter
        # after a run that finished before its kill, longer after a kill.
        max_delay = 0.6 * full_s
        t_start = time.time()
        log = os.path.join(tmp, "stderr.txt")
        while kills < KILLS and time.time() - t_start < TIME_LIMIT_S:
            ck_path = os.path.join(out, "last_checkpoint.mcnn")
            resume = os.path.exists(ck_path)
            with open(log, "w") as err:
                p = subprocess.Popen(base + ["--out", out, "--epochs", str(EPOCHS)] + (["--resume"] if resume else []),
                                     stdout=subprocess.DEVNULL, stderr=err)
            runs += 1
            try:
                rc = p.wait(timeout=rng.uniform(0, max_delay))
                max_delay *= 0.8
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                rc = None
                max_delay = min(max_delay * 1.05, 2 * full_s)
            if rc is not None:
                # The chain finished: it must equal the uninterrupted run.
                if rc != 0:
                    bad.append("run %d exited with %d: %s" % (runs, rc, open(log).read()[-1500:]))
                    break
                s = json.load(open(os.path.join(out, "summary.json")))
                same = (rows(os.path.join(out, "history.csv")) == full_rows
                        and checkpoint_state(ck_path)[1] == checkpoint_state(os.path.join(full, "last_checkpoint.mcnn"))[1]
                        and model_digest(os.path.join(out, "best_model.mcnn")) == model_digest(os.path.join(full, "best_model.mcnn"))
                        and s["best_epoch"] == full_summary["best_epoch"] and s["epochs_run"] == full_summary["epochs_run"]
                        and s["final_val_accuracy"] == full_summary["final_val_accuracy"])
                if not same:
                    bad.append("chain %d (finished by run %d) differs from the uninterrupted run" % (chains, runs))
                leftovers = [f for f in os.listdir(out) if ".tmp." in f]
                if leftovers:
                    bad.append("finished chain %d left temporary files: %s" % (chains, leftovers))
                chains += 1
                shutil.rmtree(out)
                last_ck = last_best = -1
                continue
            names = os.listdir(out) if os.path.isdir(out) else []
            if any(".tmp." in f for f in names):
                during_write += 1
            # What the killed process left must be a state the reference saved.
            where = "kill %d (run %d)" % (kills, runs)
            saved = -1
            if os.path.exists(ck_path):
                try:
                    e, d, saved = checkpoint_state(ck_path)
                except Exception as ex:  # noqa: BLE001 - any failure to read is a finding
                    bad.append("%s: last_checkpoint.mcnn does not load: %s" % (where, ex))
                    break
                if ref_ckpt.get(e) != d:
                    bad.append("%s: last_checkpoint.mcnn (epoch %d) differs from what epoch %d saved" % (where, e, e))
                if e < last_ck:
                    bad.append("%s: last_checkpoint.mcnn went back from epoch %d to %d" % (where, last_ck, e))
                last_ck = e
                if not cpp_loads(ck_path):
                    bad.append("%s: mcnn inspect cannot load last_checkpoint.mcnn" % where)
            elif last_ck >= 0:
                bad.append("%s: last_checkpoint.mcnn disappeared" % where)
            best_path = os.path.join(out, "best_model.mcnn")
            if os.path.exists(best_path):
                try:
                    b = ref_best.get(model_digest(best_path))
                except Exception as ex:  # noqa: BLE001
                    bad.append("%s: best_model.mcnn does not load: %s" % (where, ex))
                    break
                if b is None:
                    bad.append("%s: best_model.mcnn is no version the reference saved" % where)
                else:
                    if b < saved:
                        bad.append("%s: best_model.mcnn is epoch %d's but the checkpoint says epoch %d's was saved"
                                   % (where, b, saved))
                    if b < last_best:
                        bad.append("%s: best_model.mcnn went back from epoch %d to %d" % (where, last_best, b))
                    last_best = b
                if not cpp_loads(best_path):
                    bad.append("%s: mcnn inspect cannot load best_model.mcnn" % where)
            elif last_best >= 0:
                bad.append("%s: best_model.mcnn disappeared" % where)
            hist = os.path.join(out, "history.csv")
            if os.path.exists(hist):
                r = rows(hist)
                if r and r != full_rows[:len(r)]:
                    bad.append("%s: history.csv is not the run's first rows: %s" % (where, [x[0] for x in r]))
            if len(bad) > 10:
                break
        elapsed = time.time() - t_start
        print("%d kills (%d while a temporary file was present, i.e. a write was pending or cut off), "
              "%d runs, %d chains resumed to the end, %.1f s" % (kills, during_write, runs, chains, elapsed))
        for b in bad:
            print("  " + b)
        check(kills >= min(KILLS, 100), "at least %d kills (got %d)" % (min(KILLS, 100), kills))
        check(during_write > 0, "some kills landed while a file was being written (%d)" % during_write)
        check(chains > 0, "at least one killed chain resumed to the end (%d)" % chains)
        check(not bad, "after every kill the files are states the run saved, and --resume continues")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
