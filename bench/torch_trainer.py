#!/usr/bin/env python3
"""The PyTorch reference trainer for minicnn's notebook recipe (transfer learning on a frozen
MobileNetV2), written to the Keras semantics of /work/shared/docs/keras-semantics.md, so that
minicnn's fit() can be compared with it for accuracy and speed on the same machine.

    /usr/bin/python3 bench/torch_trainer.py --data /work/shared/datasets/jellybeans12 \
        [--weights weights/mobilenet_v2_1.0_224_no_top.mcnn] [--seed 1] [--threads 2] \
        [--workers 0] [--epochs 50] [--patience 5] [--rotation-range 90] [--no-augment] \
        [--base frozen-ofi-cl|frozen-cl|frozen-ofi|frozen|eager-cl|eager|auto] [--json out.json]
    /usr/bin/python3 bench/torch_trainer.py --self-test

The recipe (the notebook's, with its two mistakes fixed):
  * data: Keras flow_from_directory: classes = sorted sub-folders, files found recursively
    (os.walk, roots sorted, names sorted), Keras' extension list; validation_split 0.2 = the
    first floor(0.2*n) sorted files of each class. Images loaded as keras load_img does: PIL
    open, convert('RGB') if not RGB, resize to 96x96 with NEAREST when the size differs, EXIF
    orientation not applied. Decoded once at the start (the decode is deterministic, so this
    only saves repeated work; --decode-every-epoch reads the files for every batch as Keras
    does). Both count in the wall time.
  * training images: shuffled every epoch, augmented one image at a time like Keras'
    ImageDataGenerator (rotation 90 deg, shifts 0.1, shear 0.1 deg, zoom 0.1, horizontal
    flip, fill 'nearest'; current-Keras "B" matrix and centring, scipy.ndimage.affine_transform
    order 1 per channel), then x/127.5 - 1. Validation images: x/127.5 - 1 only.
  * model: the MobileNetV2 twin (bench/torch_twin.py, alpha 1.0 ImageNet weights, 96x96),
    frozen, BatchNorm in inference mode, run under no_grad; head GlobalAveragePooling2D (in
    the twin) -> Dense 128 relu -> Dropout 0.5 -> Dense n_classes (softmax folded into the
    loss). Head kernels glorot_uniform, biases zero (Keras' Dense defaults).
  * loss: categorical cross-entropy from the logits (what TF does for a softmax output),
    mean over the batch; metric: categorical accuracy (argmax).
  * optimiser: Adam lr 1e-4, Keras' update (epsilon 1e-7 on the uncorrected sqrt(v), bias
    correction folded into the step size), implemented below.
  * batch 32, up to 50 epochs, EarlyStopping(val_loss, patience 5, restore_best_weights) with
    current Keras semantics (improvement iff strictly lower; stop at the end of epoch
    best + patience; the best weights are restored at the end of training in every case).

The base: eager or torch.jit.freeze'd (BN folded), NCHW or channels-last, optionally with
torch.jit.optimize_for_inference; --base auto times them at start-up and takes the fastest.

--workers 0 augments in the main process (like Keras' default loop); --workers N uses a torch
DataLoader with N worker processes (each with its own numpy RandomState).

Output: one Keras-like line per epoch (verbose=2 format) and a summary; --json writes per-epoch
loss/accuracy/val_loss/val_accuracy/seconds, the best epoch, the restored model's validation
scores, wall time (including decoding), training images/s (training images processed /
training-phase seconds), end-to-end images/s (epochs run * training images / wall time) and
peak RSS (ru_maxrss of this process; with --workers > 0 plus ru_maxrss of the largest worker,
which RUSAGE_CHILDREN reports once the workers have exited).

The script re-executes itself with GLIBC_TUNABLES raising malloc's mmap/trim thresholds (as the
other bench scripts do) and OMP_NUM_THREADS set to --threads.
"""
import os
import sys

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def reexec_with_environment(threads):
    """Re-run this script with the malloc tunables and OMP_NUM_THREADS, before torch starts."""
    want = {"GLIBC_TUNABLES": TUNABLES, "OMP_NUM_THREADS": str(threads)}
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    os.environ.update(want)
    os.execv(sys.executable, [sys.executable] + sys.argv)


def threads_from_argv(argv, default=2):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return default


if __name__ == "__main__":
    reexec_with_environment(threads_from_argv(sys.argv[1:]))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.ndimage  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir))
sys.path.insert(0, HERE)
from torch_twin import load_twin  # noqa: E402

DEFAULT_WEIGHTS = os.path.join(ROOT, "weights", "mobilenet_v2_1.0_224_no_top.mcnn")
KERAS_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")
BASE_VARIANTS = ("eager", "eager-cl", "frozen", "frozen-cl", "frozen-ofi", "frozen-ofi-cl")
# Fastest here at 96x96, batch 32, 2 threads (see bench/README.md); --base auto re-measures.
DEFAULT_BASE = "frozen-cl"
QUIET_CORES = 0.1  # an epoch during which other processes took less CPU than this counts as quiet


# ----------------------------------------------------------------------------------------------
# Data: Keras' flow_from_directory scan and load_img.

def scan_directory(directory, validation_split=0.2):
    """(classes, train [(path, label)], val [(path, label)]) the way flow_from_directory splits.

    Classes: sorted sub-folders. Files: os.walk of each class folder, roots sorted, names sorted,
    kept when the lower-cased name ends with a Keras extension (no dot). Validation = the first
    int(validation_split * n) files of each class, training = the rest; classes concatenated in
    class order.
    """
    classes = [d for d in sorted(os.listdir(directory)) if os.path.isdir(os.path.join(directory, d))]
    if not classes:
        raise ValueError(f"{directory}: expected one sub-folder per class, found none")
    train, val = [], []
    for label, name in enumerate(classes):
        files = []
        for root, _, names in sorted(os.walk(os.path.join(directory, name)), key=lambda t: t[0]):
            files += [os.path.join(root, f) for f in sorted(names) if f.lower().endswith(KERAS_EXTENSIONS)]
        n_val = int(validation_split * len(files))
        val += [(p, label) for p in files[:n_val]]
        train += [(p, label) for p in files[n_val:]]
    return classes, train, val


def load_img(path, size=(96, 96)):
    """keras load_img(color_mode='rgb', target_size=size, interpolation='nearest') as uint8 HWC."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
    if img.mode != "RGB":
        img = img.convert("RGB")
    wh = (size[1], size[0])
    if img.size != wh:
        img = img.resize(wh, Image.NEAREST)
    return np.asarray(img, dtype=np.uint8)


def decode_all(items, size=(96, 96)):
    out = np.empty((len(items),) + tuple(size) + (3,), np.uint8)
    for i, (p, _) in enumerate(items):
        out[i] = load_img(p, size)
    return out


def preprocess_inplace(x):
    """mobilenet_v2.preprocess_input on a float32 array: x /= 127.5; x -= 1 (in place, as Keras)."""
    np.divide(x, np.float32(127.5), out=x)
    np.subtract(x, np.float32(1.0), out=x)
    return x


# ----------------------------------------------------------------------------------------------
# Augmentation: ImageDataGenerator, current Keras ("B": Keras 2.9+, tf_keras, Keras 3 legacy).

class KerasAugment:
    """get_random_transform + apply_transform for one (H, W, C) float32 image, channels last.

    Random draws, in Keras' order, from the given numpy RandomState: theta (if rotation),
    tx (height range, times H), ty (width range, times W), shear (degrees), zx and zy (one
    uniform(lo, hi, 2) call), the horizontal and the vertical flip coins (always drawn).
    """

    def __init__(self, rotation_range=90.0, width_shift_range=0.1, height_shift_range=0.1,
                 shear_range=0.1, zoom_range=0.1, horizontal_flip=True, vertical_flip=False,
                 fill_mode="nearest", cval=0.0, order=1):
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.zoom_range = (1 - zoom_range, 1 + zoom_range)
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.fill_mode, self.cval, self.order = fill_mode, cval, order

    def random_params(self, rng, shape):
        h, w = shape[0], shape[1]
        theta = rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0.0
        tx = ty = 0.0
        if self.height_shift_range:  # float ranges only (what the recipe uses)
            tx = rng.uniform(-self.height_shift_range, self.height_shift_range)
            if self.height_shift_range < 1:
                tx *= h
        if self.width_shift_range:
            ty = rng.uniform(-self.width_shift_range, self.width_shift_range)
            if self.width_shift_range < 1:
                ty *= w
        shear = rng.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0.0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1.0, 1.0
        else:
            zx, zy = rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_h = bool(rng.random_sample() < 0.5) and self.horizontal_flip
        flip_v = bool(rng.random_sample() < 0.5) and self.vertical_flip
        return dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy, flip_horizontal=flip_h,
                    flip_vertical=flip_v)

    def apply(self, x, p):
        """The warped (and flipped) image; x is (H, W, C) float32 and is not modified."""
        m = keras_matrix(p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"], x.shape[0], x.shape[1])
        if m is not None:
            # B swaps rows/columns 0 and 1: the matrix was built on (x, y) = (col, row); scipy pulls
            # out[o] = in[A o + b] with o in (row, col).
            m = m[[1, 0, 2]][:, [1, 0, 2]]
            chans = np.rollaxis(x, 2, 0)
            x = np.stack([scipy.ndimage.affine_transform(c, m[:2, :2], m[:2, 2], order=self.order,
                                                         mode=self.fill_mode, cval=self.cval)
                          for c in chans], axis=0)
            x = np.rollaxis(x, 0, 3)
        if p["flip_horizontal"]:
            x = x[:, ::-1]
        if p["flip_vertical"]:
            x = x[::-1]
        return x


def keras_matrix(theta, tx, ty, shear, zx, zy, h, w):
    """Keras' centred 3x3 transform R.T.S.Z (neutral factors skipped), before B's axis swap.

    None when every factor is neutral (Keras then leaves the image untouched). Centre (B):
    o = (h/2 - 0.5, w/2 - 0.5), M_c = Off(o) M Off(-o).
    """
    m = None

    def mul(a, b):
        return b if a is None else a @ b

    if theta != 0:
        t = np.deg2rad(theta)
        m = mul(m, np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        m = mul(m, np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64))
    if shear != 0:
        s = np.deg2rad(shear)
        m = mul(m, np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        m = mul(m, np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]], dtype=np.float64))
    if m is None:
        return None
    o_x, o_y = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    off = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return off @ m @ reset


def keras_batch(u8_images, idx, aug, rng, paths=None):
    """One training/validation batch the Keras way: per image float32, [augment], preprocess.

    u8_images: decoded (N, H, W, 3) uint8, or None with paths (decoded here, as Keras does).
    Returns (B, H, W, 3) float32.
    """
    first = u8_images[idx[0]] if u8_images is not None else load_img(paths[idx[0]])
    out = np.zeros((len(idx),) + first.shape, np.float32)
    for j, i in enumerate(idx):
        img = first if j == 0 else (u8_images[i] if u8_images is not None else load_img(paths[i]))
        x = img.astype(np.float32)
        if aug is not None:
            x = aug.apply(x, aug.random_params(rng, x.shape))
        out[j] = preprocess_inplace(np.array(x, dtype=np.float32))
    return out


# Batched augmentation with PyTorch ops (the fastest way PyTorch offers; used by
# torch_train_step.py and --augment torch): same distribution and matrices, one
# F.affine_grid + F.grid_sample (bilinear, padding 'border' = scipy's 'nearest' fill for
# order 1), flips by indexing.

def torch_random_params(n, aug, gen):
    """Keras-distributed parameters for n images, drawn batched from a torch.Generator."""
    def u(lo, hi):
        return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo

    z = torch.zeros(n, dtype=torch.float64)
    theta = u(-aug.rotation_range, aug.rotation_range) if aug.rotation_range else z
    tx = u(-aug.height_shift_range, aug.height_shift_range) if aug.height_shift_range else z
    ty = u(-aug.width_shift_range, aug.width_shift_range) if aug.width_shift_range else z
    shear = u(-aug.shear_range, aug.shear_range) if aug.shear_range else z
    zx = u(*aug.zoom_range) if aug.zoom_range != (1, 1) else z + 1
    zy = u(*aug.zoom_range) if aug.zoom_range != (1, 1) else z + 1
    flip_h = (torch.rand(n, generator=gen) < 0.5) & aug.horizontal_flip
    flip_v = (torch.rand(n, generator=gen) < 0.5) & aug.vertical_flip
    return dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy, flip_horizontal=flip_h,
                flip_vertical=flip_v)


def torch_affine_theta(p, h, w, shift_fractions=True):
    """(n, 2, 3) float32 affine_grid theta (align_corners=True) of Keras' B transform.

    With B's swap, Keras' centred matrix M_c acts on (x, y) = (col, row), which is affine_grid's
    coordinate order; only the normalisation u = 2 p / (size - 1) - 1 is added.
    """
    n = p["theta"].shape[0]
    t = torch.deg2rad(p["theta"])
    s = torch.deg2rad(p["shear"])
    tx = p["tx"] * h if shift_fractions else p["tx"]
    ty = p["ty"] * w if shift_fractions else p["ty"]
    c, si = torch.cos(t), torch.sin(t)
    m = torch.zeros(n, 3, 3, dtype=torch.float64)
    # R.T.S.Z in closed form: R [[zx, -sin(s) zy, 0], [0, cos(s) zy, 0]] plus R (tx, ty).
    a00, a01 = p["zx"], -torch.sin(s) * p["zy"]
    a10, a11 = torch.zeros_like(a00), torch.cos(s) * p["zy"]
    m[:, 0, 0] = c * a00 - si * a10
    m[:, 0, 1] = c * a01 - si * a11
    m[:, 1, 0] = si * a00 + c * a10
    m[:, 1, 1] = si * a01 + c * a11
    m[:, 0, 2] = c * tx - si * ty
    m[:, 1, 2] = si * tx + c * ty
    m[:, 2, 2] = 1
    o = torch.tensor([h / 2 - 0.5, w / 2 - 0.5], dtype=torch.float64)
    a = m[:, :2, :2]
    b = m[:, :2, 2] + o - a @ o  # Off(o) M Off(-o)
    d = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)  # (x, y) half-extent
    an = a * d.view(1, 1, 2) / d.view(1, 2, 1)  # D^-1 A D
    bn = (a @ d + b) / d - 1  # D^-1 (A D 1 + b) - 1
    return torch.cat([an, bn.unsqueeze(2)], dim=2).to(torch.float32)


def torch_augment(x, p):
    """x: (n, C, H, W) float; Keras' B warp (bilinear, 'nearest' fill) then the flips."""
    n, _, h, w = x.shape
    theta = torch_affine_theta(p, h, w)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=True)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    fh, fv = p["flip_horizontal"], p["flip_vertical"]
    if bool(fh.any()):
        y[fh] = y[fh].flip(3)
    if bool(fv.any()):
        y[fv] = y[fv].flip(2)
    return y


# ----------------------------------------------------------------------------------------------
# Model: the frozen twin as a feature extractor, the Keras head, Keras' Adam.

def make_base(twin, variant, example):
    """A callable (N, 3, H, W) float32 -> (N, features) running the frozen base in inference mode.

    variant: eager[-cl] (the module itself), frozen[-ofi][-cl] (torch.jit.freeze of the script;
    -ofi adds torch.jit.optimize_for_inference). -cl: channels-last weights and input.
    """
    if variant not in BASE_VARIANTS:
        raise ValueError(f"base variant {variant!r}: expected one of {BASE_VARIANTS}")
    cl = variant.endswith("-cl")
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = twin.eval().to(memory_format=fmt)
    for q in model.parameters():
        q.requires_grad_(False)
    if variant.startswith("frozen"):
        with torch.no_grad():
            model = torch.jit.freeze(torch.jit.script(model))
            if "-ofi" in variant:
                model = torch.jit.optimize_for_inference(model)
            for _ in range(3):  # the profiling executor specialises on the first runs
                model(example.contiguous(memory_format=fmt))

    def run(x):
        with torch.no_grad():
            return model(x.contiguous(memory_format=fmt))

    return run


def time_base_variants(weights, variants, batch=32, size=96, reps=5, seed=0, quiet=False):
    """{variant: median seconds of one batch forward}, variants interleaved over reps.

    The input is NHWC memory viewed as NCHW, as the trainer's batches are."""
    g = torch.Generator().manual_seed(seed)
    # NHWC memory viewed as NCHW: what the trainer hands the base.
    x = (torch.rand(batch, size, size, 3, generator=g) * 2 - 1).permute(0, 3, 1, 2)
    runs = {v: make_base(load_twin(weights, size), v, x) for v in variants}
    times = {v: [] for v in variants}
    for _ in range(reps):
        for v in variants:
            t0 = time.perf_counter()
            runs[v](x)
            times[v].append(time.perf_counter() - t0)
    med = {v: float(np.median(t)) for v, t in times.items()}
    if not quiet:
        print("base variants (batch %d, median of %d): " % (batch, reps)
              + ", ".join(f"{v} {1e3 * t:.1f} ms" for v, t in sorted(med.items(), key=lambda kv: kv[1])))
    return med


class Head(nn.Module):
    """Dense(128, relu) -> Dropout(0.5) -> Dense(n) (logits; the softmax lives in the loss)."""

    def __init__(self, features, n_classes, hidden=128, dropout=0.5, gen=None):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_classes)
        with torch.no_grad():
            for fc in (self.fc1, self.fc2):
                fan_in, fan_out = fc.in_features, fc.out_features
                limit = math.sqrt(6.0 / (fan_in + fan_out))  # glorot_uniform
                fc.weight.uniform_(-limit, limit, generator=gen)
                fc.bias.zero_()

    def forward(self, f):
        return self.fc2(self.drop(F.relu(self.fc1(f))))


class KerasAdam:
    """Keras' Adam: m += (1-b1)(g-m); v += (1-b2)(g^2-v); p -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(v)+eps)."""

    def __init__(self, params, lr=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.params = [q for q in params]
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.m = [torch.zeros_like(q) for q in self.params]
        self.v = [torch.zeros_like(q) for q in self.params]
        self.iterations = 0

    @torch.no_grad()
    def step(self):
        self.iterations += 1
        t = self.iterations
        a_t = self.lr * math.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
        for q, m, v in zip(self.params, self.m, self.v):
            g = q.grad
            m.add_(g - m, alpha=1 - self.b1)
            v.add_(g * g - v, alpha=1 - self.b2)
            q.sub_(a_t * m / (v.sqrt() + self.eps))

    def zero_grad(self):
        for q in self.params:
            q.grad = None


class EarlyStopping:
    """Keras 3 / tf_keras 2.16+ EarlyStopping(monitor='val_loss', mode min, min_delta 0,
    restore_best_weights=True): strict improvement; stop when wait >= patience (epoch > 0);
    the best weights are restored at the end of training in every case."""

    def __init__(self, patience=5):
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, current, model):
        if self.best_weights is None:
            self.best_weights = snapshot(model)
        self.wait += 1
        if current < self.best:
            self.best, self.best_epoch = current, epoch
            self.best_weights = snapshot(model)
            self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
            return True
        return False


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# DataLoader path (--workers N): one augmented image per __getitem__, per-worker RandomState.

class AugmentedImages(torch.utils.data.Dataset):
    def __init__(self, u8_images, labels, aug, paths=None):
        self.u8, self.labels, self.aug, self.paths = u8_images, labels, aug, paths
        self.rng = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.u8[i] if self.u8 is not None else load_img(self.paths[i])
        x = img.astype(np.float32)
        if self.aug is not None:
            x = self.aug.apply(x, self.aug.random_params(self.rng, x.shape))
        return preprocess_inplace(np.array(x, dtype=np.float32)), self.labels[i]


class EpochBatches:
    """batch_sampler: a fresh permutation from the main process' RandomState every epoch."""

    def __init__(self, n, batch, rng):
        self.n, self.batch, self.rng = n, batch, rng

    def __len__(self):
        return (self.n + self.batch - 1) // self.batch

    def __iter__(self):
        perm = self.rng.permutation(self.n)
        return iter([perm[i:i + self.batch].tolist() for i in range(0, self.n, self.batch)])


def _worker_init(seed):
    def init(worker_id):
        info = torch.utils.data.get_worker_info()
        info.dataset.rng = np.random.RandomState([seed, 1000 + worker_id])
    return init


# ----------------------------------------------------------------------------------------------
# Training.

def keras_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def keras_time(seconds, unit):
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def evaluate(base, head, u8, labels, batch, paths=None):
    """(mean loss, accuracy) of the head in inference mode on un-augmented images."""
    head.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            idx = np.arange(s, min(s + batch, len(labels)))
            x = keras_batch(u8, idx, None, None, paths)
            logits = head(base(torch.from_numpy(x).permute(0, 3, 1, 2)))
            y = torch.from_numpy(labels[idx])
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(labels), correct / len(labels)


class CpuMeter:
    """CPU taken by other processes (and the hypervisor's steal) while this one ran, in cores:
    (busy time of /proc/stat - this process', its children's and its live workers' CPU time)
    / wall. The machine is shared; this says how disturbed a measurement was (0: quiet)."""

    def __init__(self, pids=lambda: ()):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.pids = pids  # callable: own live child processes (DataLoader workers)

    def _pid_cpu(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / self.hz  # utime, stime
        except (OSError, ValueError, IndexError):
            return 0.0

    def _sample(self):
        try:
            with open("/proc/stat") as f:
                v = [int(a) for a in f.readline().split()[1:]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / self.hz
        except (OSError, ValueError, IndexError):
            busy = float("nan")
        own = sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
                  for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        return time.perf_counter(), busy, own, {p: self._pid_cpu(p) for p in self.pids()}

    def start(self):
        self.t0 = self._sample()
        return self

    def stop(self):
        t1 = self._sample()
        wall = t1[0] - self.t0[0]
        # a worker started during the measurement spent all its CPU time inside it
        workers = sum(c - self.t0[3].get(p, 0.0) for p, c in t1[3].items())
        own = t1[2] - self.t0[2] + workers
        return max(0.0, ((t1[1] - self.t0[1]) - own) / wall) if wall > 0 else 0.0


def worker_pids(loader):
    """pids of a DataLoader's live persistent workers (private attributes; [] if unavailable)."""
    it = getattr(loader, "_iterator", None) if loader is not None else None
    return [w.pid for w in getattr(it, "_workers", [])]


def peak_rss_mb(workers):
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0 if workers > 0 else 0.0
    return self_mb + child_mb, self_mb, child_mb


def train(args):
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)

    classes, train_items, val_items = scan_directory(args.data, args.validation_split)
    y_train = np.array([l for _, l in train_items], np.int64)
    y_val = np.array([l for _, l in val_items], np.int64)
    size = (args.size, args.size)
    t0 = time.perf_counter()
    if args.decode_every_epoch:
        u8_train = u8_val = None
    else:
        u8_train, u8_val = decode_all(train_items, size), decode_all(val_items, size)
    decode_s = time.perf_counter() - t0
    p_train = [p for p, _ in train_items]
    p_val = [p for p, _ in val_items]
    print(f"Found {len(train_items)} images belonging to {len(classes)} classes (training).")
    print(f"Found {len(val_items)} images belonging to {len(classes)} classes (validation).")

    base_variant = args.base
    base_times = None
    if base_variant == "auto":
        base_times = time_base_variants(args.weights, BASE_VARIANTS, args.batch, args.size)
        base_variant = min(base_times, key=base_times.get)
    twin = load_twin(args.weights, args.size)
    example = torch.zeros(args.batch, 3, args.size, args.size)
    base = make_base(twin, base_variant, example)
    gen = torch.Generator().manual_seed(args.seed)
    head = Head(twin.features, len(classes), gen=gen)
    opt = KerasAdam(head.parameters(), lr=args.lr)
    stopper = EarlyStopping(args.patience)

    aug = None
    if not args.no_augment:
        aug = KerasAugment(rotation_range=args.rotation_range)
    loader = None
    if args.workers > 0:
        ds = AugmentedImages(u8_train, y_train, aug, p_train if u8_train is None else None)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=EpochBatches(len(y_train), args.batch, rng), num_workers=args.workers,
            persistent_workers=True, worker_init_fn=_worker_init(args.seed))
    steps = (len(y_train) + args.batch - 1) // args.batch
    print(f"base {base_variant}, {args.threads} thread(s), workers {args.workers}, augmentation "
          f"{'off' if aug is None else 'rotation %g' % args.rotation_range}, seed {args.seed}")

    history = []
    train_phase_s = 0.0
    images_trained = 0
    for epoch in range(args.epochs):
        if args.epochs > 1:
            print(f"Epoch {epoch + 1}/{args.epochs}")
        meter = CpuMeter(lambda: worker_pids(loader)).start()
        e0 = time.perf_counter()
        head.train()
        loss_sum, correct, seen = 0.0, 0, 0
        if loader is not None:
            batches = ((x, y) for x, y in loader)
        else:
            perm = rng.permutation(len(y_train))
            batches = ((torch.from_numpy(keras_batch(u8_train, idx, aug, rng, p_train)),
                        torch.from_numpy(y_train[idx]))
                       for idx in (perm[i:i + args.batch] for i in range(0, len(perm), args.batch)))
        t_step1 = None
        for x, y in batches:
            feats = base(x.permute(0, 3, 1, 2))
            logits = head(feats)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if t_step1 is None:
                t_step1 = time.perf_counter()
        train_s = time.perf_counter() - e0
        train_phase_s += train_s
        images_trained += seen
        v0 = time.perf_counter()
        val_loss, val_acc = evaluate(base, head, u8_val, y_val, args.batch, p_val)
        e1 = time.perf_counter()
        rec = dict(epoch=epoch + 1, loss=loss_sum / seen, accuracy=correct / seen, val_loss=val_loss,
                   val_accuracy=val_acc, seconds=e1 - e0, train_seconds=train_s, val_seconds=e1 - v0,
                   other_cpu_cores=meter.stop())
        history.append(rec)
        stop = stopper.on_epoch_end(epoch, val_loss, head)
        per_step = (e1 - t_step1) / (steps - 1) if steps > 1 else e1 - e0
        d = len(str(steps))
        print(f"{steps:>{d}}/{steps} - {e1 - e0:.0f}s - loss: {keras_value(rec['loss'])} - accuracy: "
              f"{keras_value(rec['accuracy'])} - val_loss: {keras_value(val_loss)} - val_accuracy: "
              f"{keras_value(val_acc)} - {keras_time(e1 - e0, 'epoch')} - {keras_time(per_step, 'step')}",
              flush=True)
        if stop:
            break
    restored = stopper.on_train_end(head)
    if restored:
        print(f"Restoring model weights from the end of the best epoch: {stopper.best_epoch + 1}.")
    if stopper.stopped_epoch is not None:
        print(f"Epoch {stopper.stopped_epoch + 1}: early stopping")
    r_loss, r_acc = evaluate(base, head, u8_val, y_val, args.batch, p_val)
    loader = None  # ends (joins) the persistent workers, so RUSAGE_CHILDREN covers them
    wall = time.perf_counter() - t_start
    rss, rss_self, rss_child = peak_rss_mb(args.workers)
    best = history[stopper.best_epoch]
    quiet = [h for h in history if h["other_cpu_cores"] < QUIET_CORES]
    result = dict(
        dataset=args.data, classes=classes, train_count=len(y_train), val_count=len(y_val),
        seed=args.seed, threads=args.threads, workers=args.workers, base=base_variant,
        base_variant_times_s=base_times, augmentation=None if aug is None else dict(
            rotation_range=args.rotation_range, width_shift_range=0.1, height_shift_range=0.1,
            shear_range=0.1, zoom_range=0.1, horizontal_flip=True, fill_mode="nearest"),
        decode_every_epoch=args.decode_every_epoch, epochs_max=args.epochs, patience=args.patience,
        history=history, epochs_run=len(history), stopped_early=stopper.stopped_epoch is not None,
        best_epoch=stopper.best_epoch + 1, best_val_loss=best["val_loss"],
        val_accuracy_at_best=best["val_accuracy"], restored_val_loss=r_loss, restored_val_accuracy=r_acc,
        decode_seconds=decode_s, train_phase_seconds=train_phase_s, wall_seconds=wall,
        train_images_per_s=images_trained / train_phase_s,
        end_to_end_images_per_s=len(history) * len(y_train) / wall,
        peak_rss_mb=rss, peak_rss_self_mb=rss_self, peak_rss_workers_mb=rss_child,
        quiet_epochs=len(quiet), train_images_per_s_quiet_epochs=(
            sum(len(y_train) for _ in quiet) / sum(h["train_seconds"] for h in quiet) if quiet else None),
        other_cpu_cores_median=float(np.median([h["other_cpu_cores"] for h in history])),
        other_cpu_cores_max=float(max(h["other_cpu_cores"] for h in history)),
        peak_rss_note=("ru_maxrss of this process" if args.workers == 0 else
                       "ru_maxrss of this process + RUSAGE_CHILDREN ru_maxrss (the largest worker)"),
        torch=torch.__version__, numpy=np.__version__, scipy=scipy.__version__,
        python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count(),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES"), weights=args.weights)
    print(f"best epoch {result['best_epoch']}: val_loss {best['val_loss']:.4f}, val_accuracy "
          f"{best['val_accuracy']:.4f} (restored model: {r_loss:.4f}, {r_acc:.4f}); {len(history)} epochs, "
          f"wall {wall:.1f} s (decode {decode_s:.1f} s), train {result['train_images_per_s']:.1f} images/s, "
          f"end-to-end {result['end_to_end_images_per_s']:.1f} images/s, peak RSS {rss:.0f} MB; other "
          f"processes took {result['other_cpu_cores_median']:.2f} cores (median over epochs, max "
          f"{result['other_cpu_cores_max']:.2f})")
    if quiet:
        print(f"quiet epochs (other processes < {QUIET_CORES} cores): {len(quiet)}, train "
              f"{result['train_images_per_s_quiet_epochs']:.1f} images/s in them")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


# ----------------------------------------------------------------------------------------------
# Self-test: each piece against an independent oracle.

def self_test():
    ok = True

    def report(name, passed, detail):
        nonlocal ok
        ok &= bool(passed)
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")

    rs = np.random.RandomState(0)
    img = rs.uniform(0, 255, (96, 96, 3)).astype(np.float32)
    neutral = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, flip_horizontal=False,
                   flip_vertical=False)
    aug = KerasAugment()
    # B rotates counter-clockwise on screen about the exact centre: 90 deg == np.rot90.
    out = aug.apply(img, dict(neutral, theta=90.0))
    err = np.abs(out - np.rot90(img, 1, axes=(0, 1))).max()
    report("rotation 90 == np.rot90 (counter-clockwise)", err < 1e-3, f"max |diff| {err:.2e}")
    # B: tx (from height_shift_range) moves content left: out[r, c] = in[r, c + tx].
    out = aug.apply(img, dict(neutral, tx=5.0))
    err = np.abs(out[:, :-5] - img[:, 5:]).max()
    edge = np.abs(out[:, -5:] - img[:, -1:]).max()  # 'nearest' fill repeats the last column
    report("tx=5 shifts left by 5, nearest fill", err < 1e-4 and edge < 1e-4, f"{err:.1e}, edge {edge:.1e}")
    out = aug.apply(img, dict(neutral, ty=-3.0))
    err = np.abs(out[3:] - img[:-3]).max()
    report("ty=-3 shifts down by 3", err < 1e-4, f"max |diff| {err:.1e}")
    out = aug.apply(img, dict(neutral, flip_horizontal=True))
    report("horizontal flip", np.array_equal(out, img[:, ::-1]), "exact")
    # zoom zx = zy = 2 (zoom out by 2) about centre c: out[o] = in[c + 2 (o - c)], bilinear at integers.
    out = aug.apply(img, dict(neutral, zx=2.0, zy=2.0))
    c = 47.5
    o = np.arange(24, 71)  # sources 2o - 47.5 stay inside the image
    lo = np.floor(c + 2 * (o - c)).astype(int)  # half-pixel: the mean of 2x2 neighbours
    expect = 0.25 * (img[lo][:, lo] + img[lo + 1][:, lo] + img[lo][:, lo + 1] + img[lo + 1][:, lo + 1])
    err = np.abs(out[24:71, 24:71] - expect).max()
    report("zoom 2 about (47.5, 47.5), bilinear", err < 1e-3, f"max |diff| {err:.1e}")
    # Draw order and units: replay the numpy stream by hand.
    a = np.random.RandomState(7)
    p = aug.random_params(a, (96, 96, 3))
    b = np.random.RandomState(7)
    th, txu, tyu, sh = b.uniform(-90, 90), b.uniform(-.1, .1), b.uniform(-.1, .1), b.uniform(-.1, .1)
    zx, zy = b.uniform(0.9, 1.1, 2)
    fh = b.random_sample() < 0.5
    b.random_sample()
    same = (p["theta"] == th and p["tx"] == txu * 96 and p["ty"] == tyu * 96 and p["shear"] == sh
            and p["zx"] == zx and p["zy"] == zy and p["flip_horizontal"] == fh)
    report("random_params draw order (theta, tx*H, ty*W, shear, zx, zy, flips)", same, str(p))
    # The batched PyTorch warp against scipy, same parameters (random full transforms).
    gen = torch.Generator().manual_seed(3)
    n = 16
    tp = torch_random_params(n, aug, gen)
    imgs = rs.uniform(0, 255, (n, 96, 96, 3)).astype(np.float32)
    got = torch_augment(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), tp)
    got = got.permute(0, 2, 3, 1).numpy()
    ref = []
    for i in range(n):
        q = {k: v[i].item() for k, v in tp.items()}
        q["tx"], q["ty"] = q["tx"] * 96, q["ty"] * 96  # torch_random_params keeps fractions
        ref.append(aug.apply(imgs[i], q))
    ref = np.stack(ref)
    err = np.abs(got - ref).max()
    report("torch affine_grid/grid_sample == scipy (16 random transforms)", err < 0.01,
           f"max |diff| {err:.3g} on 0..255 (float32 grid)")
    # Keras Adam against torch.optim.Adam with Keras' epsilon mapped to eps_K / sqrt(1 - b2^t).
    torch.manual_seed(0)
    w1 = torch.randn(5, 3, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    ka = KerasAdam([w1], lr=1e-2)
    ta = torch.optim.Adam([w2], lr=1e-2, betas=(0.9, 0.999))
    for t in range(1, 51):
        g = torch.randn(5, 3) * (10 ** (t % 4 - 3))
        w1.grad, w2.grad = g.clone(), g.clone()
        ka.step()
        ta.param_groups[0]["eps"] = 1e-7 / math.sqrt(1 - 0.999 ** t)
        ta.step()
    err = float((w1 - w2).abs().max())
    report("Keras Adam == torch.optim.Adam with eps_K/sqrt(1-b2^t) (50 steps)", err < 1e-6, f"{err:.1e}")
    # Glorot uniform limits and zero biases.
    h = Head(1280, 12, gen=torch.Generator().manual_seed(0))
    l1, l2 = math.sqrt(6 / 1408), math.sqrt(6 / 140)
    good = (float(h.fc1.weight.abs().max()) <= l1 and float(h.fc1.weight.abs().max()) > 0.99 * l1
            and float(h.fc2.weight.abs().max()) <= l2 and not h.fc1.bias.any() and not h.fc2.bias.any())
    report("glorot_uniform kernels, zero biases", good, f"limits {l1:.4f}, {l2:.4f}")
    # Cross-entropy from logits == -log softmax at the label.
    logits = torch.randn(4, 12, dtype=torch.float64)
    y = torch.tensor([0, 5, 11, 3])
    manual = -np.mean([np.log(np.exp(r) / np.exp(r).sum())[k] for r, k in zip(logits.numpy(), y.numpy())])
    err = abs(float(F.cross_entropy(logits, y)) - manual)
    report("cross-entropy from logits", err < 1e-12, f"{err:.1e}")
    # EarlyStopping: best at epoch 2 (0-based), patience 5 -> stops at the end of epoch 7.
    es = EarlyStopping(5)
    m = nn.Linear(1, 1)
    losses = [1.0, 0.9, 0.8, 0.8, 0.85, 0.9, 0.81, 0.95, 0.1]
    stop_at = next(e for e, v in enumerate(losses) if es.on_epoch_end(e, v, m))
    report("EarlyStopping patience 5 (ties do not improve)", stop_at == 7 and es.best_epoch == 2,
           f"stopped at epoch index {stop_at}, best {es.best_epoch}")
    # flow_from_directory split of jellybeans12 (675 images; 132 = sum of floor(0.2 n)).
    jb = "/work/shared/datasets/jellybeans12"
    if os.path.isdir(jb):
        cls, tr, va = scan_directory(jb)
        report("jellybeans12 split", (len(cls), len(tr), len(va)) == (12, 543, 132),
               f"{len(cls)} classes, {len(tr)} training, {len(va)} validation")
        x = load_img(tr[0][0])
        raw = np.asarray(Image.open(tr[0][0]).convert("RGB"))
        rows = (np.arange(96) * raw.shape[0] / 96 + 0.5 * raw.shape[0] / 96).astype(int)
        cols = (np.arange(96) * raw.shape[1] / 96 + 0.5 * raw.shape[1] / 96).astype(int)
        report("load_img NEAREST resize == centre-sampled pixels", np.array_equal(x, raw[rows][:, cols]),
               f"{raw.shape[1]}x{raw.shape[0]} -> 96x96")
    print("self-test", "PASSED" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/datasets/jellybeans12")
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--validation-split", type=float, default=0.2)
    ap.add_argument("--rotation-range", type=float, default=90.0)
    ap.add_argument("--no-augment", action="store_true", help="no augmentation of the training images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and OMP_NUM_THREADS)")
    ap.add_argument("--workers", type=int, default=0,
                    help="0: augment in the main process (Keras' way); N: torch DataLoader with N workers")
    ap.add_argument("--base", default=DEFAULT_BASE, choices=BASE_VARIANTS + ("auto",),
                    help=f"how the frozen base runs (default {DEFAULT_BASE}; auto: time all, take the fastest)")
    ap.add_argument("--decode-every-epoch", action="store_true",
                    help="read and decode the image files for every batch, as Keras does")
    ap.add_argument("--json", help="write the run's record here")
    ap.add_argument("--self-test", action="store_true", help="check the pieces against oracles and exit")
    ap.add_argument("--time-bases", action="store_true", help="time the base variants and exit")
    ap.add_argument("--reps", type=int, default=10, help="forward passes per variant for --time-bases")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.self_test:
        sys.exit(0 if self_test() else 1)
    if args.time_bases:
        time_base_variants(args.weights, BASE_VARIANTS, args.batch, args.size, reps=args.reps)
        return
    train(args)


if __name__ == "__main__":
    main()
