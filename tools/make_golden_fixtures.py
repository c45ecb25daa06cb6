#!/usr/bin/env python3
"""Writes minicnn's golden fixtures from PyTorch, adapted to Keras' conventions.

Run from anywhere:  /usr/bin/python3 tools/make_golden_fixtures.py
Output: tests/fixtures/golden/<case>/<array>.npy (float32, C order) and
tests/fixtures/golden/index.json, which lists every case with its Keras layer type,
its configuration and the shapes of its arrays. tests/test_golden.cpp reads them.
The directory is deleted and rewritten; the output is byte-for-byte reproducible
(seeded numpy generators, float64 reference math, one torch thread).

Oracle: PyTorch (Debian's python3-torch) computes every forward value and, by
autograd, every gradient in float64 from the float32 inputs that are stored, so the
fixtures are exact to float32 rounding and C++'s float32 results can be compared at
a 1e-4 relative tolerance. For a layer case, L = sum(y * r) with a stored random r,
so dL/dy = r is what test_golden feeds to backward(); the case stores
  x.npy (x0.npy, x1.npy for Add), one .npy per weight named as Keras names it
  (kernel, bias, depthwise_kernel, gamma, ...), y.npy, r.npy, dx.npy (dx0, dx1),
  grad_<weight>.npy, and for BatchNormalization in training mode
  moving_mean_after.npy / moving_variance_after.npy.
For a loss case: y_pred, y_true, loss (shape (1,), the batch mean) and grad = dloss/dy_pred.
The trajectory case stores trajectory/init/<layer>/<weight>.npy, then for each optimizer
run <run>/<layer>/<weight>.npy after the last step and <run>/losses.npy (loss before
each step).

Where PyTorch's conventions differ from Keras', this script adapts PyTorch to Keras:
  * Layout: Keras is NHWC, torch convolutions are NCHW. Inputs are stored NHWC and
    permuted inside the graph, so autograd returns dL/dx directly in NHWC.
  * Weight layouts are Keras': Conv2D kernel (kh, kw, in, out) = HWIO, permuted to
    torch's OIHW; DepthwiseConv2D kernel (kh, kw, C, 1), permuted to torch's (C, 1, kh, kw)
    with groups=C; Dense kernel (in, out) used as x @ W (torch's Linear stores (out, in)).
    Because the permutes are part of the graph, weight gradients come out in Keras layout.
  * Padding "same" is TensorFlow's, which torch's padding='same' is not for stride 2:
    out = ceil(in / s), total = max((out - 1) * s + k - in, 0), top/left = total // 2,
    the rest bottom/right (so stride 2 on an even input pads 0 before and 1 after).
    It is applied as an explicit, possibly asymmetric F.pad before a padding-free conv.
  * BatchNormalization momentum: Keras' moving = m * moving + (1 - m) * batch is torch's
    momentum 1 - m. In training mode torch normalises with the biased batch variance and
    updates running_var with the unbiased (n / (n - 1)) one, which is minicnn's rule.
    Keras' default epsilon 1e-3 is passed explicitly (torch's default is 1e-5).
  * Categorical crossentropy on probabilities follows Keras' backend: rows divided by
    their sum, clipped to [1e-7, 1 - 1e-7] (torch.clamp, whose gradient, like TF's
    clip_by_value, is zero strictly outside the range), -sum(y * log p), batch mean.
    From logits: -sum(y * log_softmax(z)). Label smoothing: y * (1 - s) + s / K.
  * Adam: Keras' rule is implemented explicitly with torch ops:
        lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t);  m = b1 m + (1 - b1) g;
        v = b2 v + (1 - b2) g^2;  p -= lr_t * m / (sqrt(v) + eps)
    It equals torch.optim.Adam when torch's eps at step t is eps / sqrt(1 - b2^t)
    (multiply torch's m_hat / (sqrt(v_hat) + eps_t) through by sqrt(1 - b2^t)). The
    script asserts that equivalence by running torch.optim.Adam with that per-step eps.
  * SGD: Keras' v = mu v - lr g; p += v (nesterov: p += mu v - lr g) equals
    torch.optim.SGD (dampening 0) with buffer b = -v / lr at constant lr; also asserted.
"""
import json
import os
import shutil
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "golden")
SEED = 20240611
EPS = 1e-7  # Keras' backend epsilon (crossentropy clip)

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def case_rng(name):
    """An independent generator per case, so adding a case leaves the others unchanged."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def f32(a):
    """The float32 value that is stored, as float64 for the reference computation."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def leaf(a):
    return torch.tensor(f32(a), requires_grad=True)


def away_from(a, points, margin):
    """Moves values within `margin` of any kink in `points` out of that band, so the
    float32 and float64 computations agree on which side of the kink they are."""
    a = np.array(a)
    for p in points:
        near = np.abs(a - p) < margin
        a[near] = p + np.where(a[near] >= p, margin, -margin)
    return a


class Writer:
    def __init__(self, out):
        self.out = out
        self.cases = {}

    def case(self, name, **meta):
        self.cases[name] = dict(meta, arrays={})
        return name

    def save(self, case, key, value):
        if isinstance(value, torch.Tensor):
            value = value.detach().numpy()
        a = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        path = os.path.join(self.out, case, key + ".npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, a)
        self.cases[case]["arrays"][key] = list(a.shape)

    def finish(self):
        index = {
            "generator": "tools/make_golden_fixtures.py",
            "reference": "PyTorch %s, float64, adapted to Keras conventions" % torch.__version__.split("a")[0],
            "cases": self.cases,
        }
        with open(os.path.join(self.out, "index.json"), "w") as f:
            json.dump(index, f, indent=1, sort_keys=True)
            f.write("\n")


# ---------------------------------------------------------------- Keras ops in torch

def tf_same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_nhwc(x, kernel, bias, stride, padding, depthwise=False):
    """Keras Conv2D / DepthwiseConv2D on NHWC x with a Keras-layout kernel."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    xc = x.permute(0, 3, 1, 2)
    if padding == "same":
        top, bottom = tf_same_pad(x.shape[1], kh, stride)
        left, right = tf_same_pad(x.shape[2], kw, stride)
        xc = F.pad(xc, (left, right, top, bottom))
    if depthwise:
        y = F.conv2d(xc, kernel.permute(2, 3, 0, 1), None, stride, groups=x.shape[3])
    else:
        y = F.conv2d(xc, kernel.permute(3, 2, 0, 1), None, stride)
    y = y.permute(0, 2, 3, 1)
    return y + bias if bias is not None else y


def batch_norm_nhwc(x, gamma, beta, moving_mean, moving_var, training, momentum, epsilon):
    """Keras BatchNormalization over the last axis; updates the moving statistics in place
    in training mode (torch momentum = 1 - Keras momentum)."""
    y = F.batch_norm(x.permute(0, 3, 1, 2), moving_mean, moving_var, gamma, beta,
                     training=training, momentum=1.0 - momentum, eps=epsilon)
    return y.permute(0, 2, 3, 1)


def cce(y_pred, y_true, from_logits, label_smoothing):
    k = y_pred.shape[-1]
    y = y_true * (1.0 - label_smoothing) + label_smoothing / k
    if from_logits:
        per_row = -(y * F.log_softmax(y_pred, dim=-1)).sum(-1)
    else:
        p = y_pred / y_pred.sum(-1, keepdim=True)
        p = torch.clamp(p, EPS, 1.0 - EPS)
        per_row = -(y * torch.log(p)).sum(-1)
    return per_row.mean()


# ---------------------------------------------------------------- layer cases

def layer_case(w, name, layer, config, inputs, params, fn, training=False, state=()):
    """inputs/params: dicts of numpy arrays (Keras names). fn(inputs, params) -> y, with
    tensors; parameters listed in `state` are non-trainable (BN moving statistics)."""
    rng = case_rng(name + "/r")
    w.case(name, layer=layer, config=config, training=training)
    tin = {k: leaf(v) for k, v in inputs.items()}
    tpar = {k: (torch.tensor(f32(v)) if k in state else leaf(v)) for k, v in params.items()}
    for k, v in inputs.items():
        w.save(name, k, v)
    for k, v in params.items():
        w.save(name, k, v)
    y = fn(tin, tpar)
    r = f32(rng.uniform(-1.0, 1.0, size=tuple(y.shape)))
    (y * torch.tensor(r)).sum().backward()
    w.save(name, "y", y)
    w.save(name, "r", r)
    for k, t in tin.items():
        w.save(name, "d" + k, t.grad)
    for k, t in tpar.items():
        if k in state:
            w.save(name, k + "_after", t)  # moving statistics after the forward
        else:
            w.save(name, "grad_" + k, t.grad)


def conv_cases(w):
    specs = [
        # name, x shape, filters, (kh, kw), stride, padding, use_bias
        ("conv2d_3x3_s1_same_bias", (2, 5, 6, 3), 4, (3, 3), 1, "same", True),
        ("conv2d_3x3_s2_same_even", (2, 8, 6, 3), 5, (3, 3), 2, "same", True),
        ("conv2d_3x3_s2_same_odd_nobias", (2, 7, 5, 2), 3, (3, 3), 2, "same", False),
        ("conv2d_1x1", (2, 4, 5, 6), 7, (1, 1), 1, "valid", True),
        ("conv2d_valid_5x3", (2, 7, 6, 3), 4, (5, 3), 1, "valid", True),
    ]
    for name, xs, filters, (kh, kw), s, pad, use_bias in specs:
        rng = case_rng(name)
        cin = xs[3]
        params = {"kernel": rng.uniform(-0.5, 0.5, (kh, kw, cin, filters))}
        if use_bias:
            params["bias"] = rng.uniform(-0.5, 0.5, (filters,))
        cfg = dict(filters=filters, kernel_size=[kh, kw], strides=s, padding=pad, use_bias=use_bias)
        layer_case(w, name, "Conv2D", cfg, {"x": rng.uniform(-1, 1, xs)}, params,
                   lambda i, p, s=s, pad=pad: conv_nhwc(i["x"], p["kernel"], p.get("bias"), s, pad))


def depthwise_cases(w):
    specs = [
        ("depthwise_3x3_s1_same", (2, 5, 5, 4), 1, "same"),
        ("depthwise_3x3_s2_same_even", (2, 8, 8, 4), 2, "same"),
        ("depthwise_3x3_s2_valid_odd", (2, 7, 6, 3), 2, "valid"),
    ]
    for name, xs, s, pad in specs:
        rng = case_rng(name)
        c = xs[3]
        params = {"depthwise_kernel": rng.uniform(-0.5, 0.5, (3, 3, c, 1)),
                  "bias": rng.uniform(-0.5, 0.5, (c,))}
        cfg = dict(kernel_size=[3, 3], strides=s, padding=pad, use_bias=True)
        layer_case(w, name, "DepthwiseConv2D", cfg, {"x": rng.uniform(-1, 1, xs)}, params,
                   lambda i, p, s=s, pad=pad: conv_nhwc(i["x"], p["depthwise_kernel"], p["bias"], s, pad,
                                                        depthwise=True))


def batchnorm_cases(w):
    for name, training in (("batchnorm_training", True), ("batchnorm_inference", False)):
        rng = case_rng(name)
        c = 5
        # Per-channel offsets and scales, so the normalisation does visible work.
        x = rng.normal(size=(4, 3, 3, c)) * rng.uniform(0.5, 2.0, c) + rng.uniform(-1, 1, c)
        params = {"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.uniform(-0.5, 0.5, c),
                  "moving_mean": rng.uniform(-0.3, 0.3, c), "moving_variance": rng.uniform(0.5, 1.5, c)}
        cfg = dict(momentum=0.9, epsilon=1e-3)
        layer_case(w, name, "BatchNormalization", cfg, {"x": x}, params,
                   lambda i, p, t=training: batch_norm_nhwc(i["x"], p["gamma"], p["beta"], p["moving_mean"],
                                                            p["moving_variance"], t, 0.9, 1e-3),
                   training=training, state=("moving_mean", "moving_variance"))


def elementwise_cases(w):
    rng = case_rng("relu")
    x = away_from(rng.uniform(-3, 3, (2, 3, 4, 5)), [0.0], 0.05)
    layer_case(w, "relu", "ReLU", {}, {"x": x}, {}, lambda i, p: torch.relu(i["x"]))

    rng = case_rng("relu6")
    x = away_from(rng.uniform(-2, 8, (2, 3, 4, 5)), [0.0, 6.0], 0.05)
    layer_case(w, "relu6", "ReLU6", {}, {"x": x}, {}, lambda i, p: torch.clamp(i["x"], 0.0, 6.0))

    rng = case_rng("softmax")
    layer_case(w, "softmax", "Softmax", {"axis": -1}, {"x": rng.uniform(-3, 3, (3, 7))}, {},
               lambda i, p: torch.softmax(i["x"], dim=-1))

    rng = case_rng("add")
    layer_case(w, "add", "Add", {}, {"x0": rng.uniform(-1, 1, (2, 3, 3, 4)),
                                     "x1": rng.uniform(-1, 1, (2, 3, 3, 4))}, {},
               lambda i, p: i["x0"] + i["x1"])

    rng = case_rng("global_average_pooling2d")
    layer_case(w, "global_average_pooling2d", "GlobalAveragePooling2D", {},
               {"x": rng.uniform(-1, 1, (2, 3, 5, 4))}, {}, lambda i, p: i["x"].mean(dim=(1, 2)))

    # Continuous values: no ties, so the gradient goes to the one maximum (TF's argmax and
    # torch.amax agree there; with ties amax would split it).
    rng = case_rng("global_max_pooling2d")
    layer_case(w, "global_max_pooling2d", "GlobalMaxPooling2D", {},
               {"x": rng.uniform(-1, 1, (2, 3, 5, 4))}, {}, lambda i, p: i["x"].amax(dim=(1, 2)))

    rng = case_rng("zero_padding2d")
    top, bottom, left, right = 1, 2, 0, 3
    layer_case(w, "zero_padding2d", "ZeroPadding2D", {"padding": [[top, bottom], [left, right]]},
               {"x": rng.uniform(-1, 1, (2, 3, 4, 2))}, {},
               # F.pad pads from the last dim backwards: (C), (W), (H) on NHWC.
               lambda i, p: F.pad(i["x"], (0, 0, left, right, top, bottom)))

    rng = case_rng("dense")
    params = {"kernel": rng.uniform(-0.5, 0.5, (6, 4)), "bias": rng.uniform(-0.5, 0.5, (4,))}
    layer_case(w, "dense", "Dense", {"units": 4, "use_bias": True}, {"x": rng.uniform(-1, 1, (3, 6))}, params,
               lambda i, p: i["x"] @ p["kernel"] + p["bias"])


# ---------------------------------------------------------------- loss cases

def loss_cases(w):
    def one_hot(rng, n, k):
        y = np.zeros((n, k))
        y[np.arange(n), rng.integers(0, k, n)] = 1.0
        return y

    def emit(name, y_pred, y_true, from_logits, smoothing):
        w.case(name, layer="CategoricalCrossentropy",
               config=dict(from_logits=from_logits, label_smoothing=smoothing), training=False)
        tp = leaf(y_pred)
        loss = cce(tp, torch.tensor(f32(y_true)), from_logits, smoothing)
        loss.backward()
        w.save(name, "y_pred", y_pred)
        w.save(name, "y_true", y_true)
        w.save(name, "loss", loss.reshape(1))
        w.save(name, "grad", tp.grad)

    for smoothing, suffix in ((0.0, ""), (0.1, "_smooth")):
        rng = case_rng("cce_probs" + suffix)
        # Softmax rows rescaled so they do not sum to 1: Keras normalises them.
        z = rng.uniform(-2, 2, (4, 5))
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True) * rng.uniform(0.5, 2.0, (4, 1))
        emit("cce_probs" + suffix, p, one_hot(rng, 4, 5), False, smoothing)

        rng = case_rng("cce_logits" + suffix)
        emit("cce_logits" + suffix, rng.uniform(-3, 3, (4, 5)), one_hot(rng, 4, 5), True, smoothing)

    # Clipping at both ends: a true class with probability 0, a row that is exactly one-hot.
    rng = case_rng("cce_probs_clipped")
    p = np.abs(rng.uniform(0.05, 1.0, (3, 4)))
    p[0] = [0.0, 0.5, 0.3, 0.2]
    p[1] = [0.0, 0.0, 1.0, 0.0]
    y = np.zeros((3, 4))
    y[0, 0] = y[1, 2] = y[2, 1] = 1.0
    emit("cce_probs_clipped", p, y, False, 0.0)

    # Huge logits: the fused log-softmax must stay finite and exact.
    z = np.array([[1000.0, -1000.0, 0.0, 3.0], [-1000.0, 999.0, 1000.0, -5.0], [0.0, 0.0, -1000.0, 1000.0]])
    y = np.zeros((3, 4))
    y[0, 1] = y[1, 1] = y[2, 3] = 1.0
    emit("cce_logits_large", z, y, True, 0.1)


# ---------------------------------------------------------------- optimiser trajectory

STEPS = 5
TRAJ_LAYERS = [
    {"name": "conv", "layer": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
     "use_bias": False},
    {"name": "bn", "layer": "BatchNormalization", "momentum": 0.99, "epsilon": 1e-3},
    {"name": "relu6", "layer": "ReLU6"},
    {"name": "dw", "layer": "DepthwiseConv2D", "kernel_size": 3, "strides": 1, "padding": "same",
     "use_bias": True},
    {"name": "gap", "layer": "GlobalAveragePooling2D"},
    {"name": "dense", "layer": "Dense", "units": 3, "use_bias": True},
]
TRAINABLE = ["conv/kernel", "bn/gamma", "bn/beta", "dw/depthwise_kernel", "dw/bias", "dense/kernel", "dense/bias"]
STATE = ["bn/moving_mean", "bn/moving_variance"]


def trajectory_init():
    rng = case_rng("trajectory")
    x = rng.uniform(-1, 1, (4, 8, 8, 3))
    labels = np.zeros((4, 3))
    labels[np.arange(4), [0, 1, 2, 1]] = 1.0
    init = {
        "conv/kernel": rng.uniform(-0.4, 0.4, (3, 3, 3, 4)),
        # gamma up to 3 so that some ReLU6 outputs saturate at 6.
        "bn/gamma": rng.uniform(1.0, 3.0, 4),
        "bn/beta": rng.uniform(-0.5, 0.5, 4),
        "bn/moving_mean": np.zeros(4),
        "bn/moving_variance": np.ones(4),
        "dw/depthwise_kernel": rng.uniform(-0.5, 0.5, (3, 3, 4, 1)),
        "dw/bias": rng.uniform(-0.1, 0.1, 4),
        "dense/kernel": rng.uniform(-0.7, 0.7, (4, 3)),
        "dense/bias": np.zeros(3),
    }
    return x, labels, {k: f32(v) for k, v in init.items()}


def trajectory_loss(p, x, labels):
    h = conv_nhwc(x, p["conv/kernel"], None, 2, "same")
    h = batch_norm_nhwc(h, p["bn/gamma"], p["bn/beta"], p["bn/moving_mean"], p["bn/moving_variance"],
                        True, 0.99, 1e-3)
    # A pre-activation within float32 noise of a ReLU6 kink could fall on the other side
    # in C++; the fixed data keeps clear of them, and this checks it stays so.
    kink_gap = min((h - 0.0).abs().min().item(), (h - 6.0).abs().min().item())
    assert kink_gap > 1e-4, kink_gap
    h = torch.clamp(h, 0.0, 6.0)
    h = conv_nhwc(h, p["dw/depthwise_kernel"], p["dw/bias"], 1, "same", depthwise=True)
    h = h.mean(dim=(1, 2))
    logits = h @ p["dense/kernel"] + p["dense/bias"]
    return cce(logits, labels, True, 0.0)


def make_params(init):
    return {k: torch.tensor(v, requires_grad=k in TRAINABLE) for k, v in init.items()}


def run_keras_rule(init, x, labels, update):
    """STEPS full-batch steps with update(t, name, param, grad, slots) in torch ops."""
    p = make_params(init)
    slots = {k: {} for k in TRAINABLE}
    losses = []
    for t in range(1, STEPS + 1):
        loss = trajectory_loss(p, x, labels)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, [p[k] for k in TRAINABLE])
        with torch.no_grad():
            for k, g in zip(TRAINABLE, grads):
                update(t, p[k], g, slots[k])
    return p, np.array(losses)


def keras_adam(lr, b1=0.9, b2=0.999, eps=1e-7):
    def update(t, param, g, s):
        m = s.setdefault("m", torch.zeros_like(param))
        v = s.setdefault("v", torch.zeros_like(param))
        lr_t = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        m.mul_(b1).add_((1 - b1) * g)
        v.mul_(b2).add_((1 - b2) * g * g)
        param.sub_(lr_t * m / (v.sqrt() + eps))
    return update


def keras_sgd(lr, momentum, nesterov):
    def update(t, param, g, s):
        v = s.setdefault("momentum", torch.zeros_like(param))
        v.mul_(momentum).sub_(lr * g)
        param.add_(momentum * v - lr * g if nesterov else v)
    return update


def run_torch_optim(init, x, labels, make_opt, per_step=None):
    """The same trajectory with torch.optim, for the equivalence assertions."""
    p = make_params(init)
    opt = make_opt([p[k] for k in TRAINABLE])
    for t in range(1, STEPS + 1):
        if per_step:
            per_step(opt, t)
        opt.zero_grad()
        trajectory_loss(p, x, labels).backward()
        opt.step()
    return p


def trajectory_case(w):
    name = "trajectory"
    x_np, labels_np, init = trajectory_init()
    w.case(name, layer="Sequential", config={"layers": TRAJ_LAYERS, "loss": "CategoricalCrossentropy",
                                             "from_logits": True, "steps": STEPS,
                                             "runs": {"adam": {"name": "Adam", "learning_rate": 1e-2},
                                                      "sgd": {"name": "SGD", "learning_rate": 0.1,
                                                              "momentum": 0.9, "nesterov": False},
                                                      "nesterov": {"name": "SGD", "learning_rate": 0.1,
                                                                   "momentum": 0.9, "nesterov": True}}},
           training=True)
    x, labels = torch.tensor(f32(x_np)), torch.tensor(labels_np)
    w.save(name, "x", x_np)
    w.save(name, "labels", labels_np)
    for k, v in init.items():
        w.save(name, "init/" + k, v)

    runs = {
        "adam": (keras_adam(1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.999)),
                 lambda opt, t: opt.param_groups[0].update(eps=1e-7 / (1 - 0.999 ** t) ** 0.5)),
        "sgd": (keras_sgd(0.1, 0.9, False), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), None),
        "nesterov": (keras_sgd(0.1, 0.9, True),
                     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), None),
    }
    for run, (update, make_opt, per_step) in runs.items():
        p, losses = run_keras_rule(init, x, labels, update)
        # The documented equivalences with torch.optim, checked rather than assumed.
        q = run_torch_optim(init, x, labels, make_opt, per_step)
        for k in p:
            assert torch.allclose(p[k], q[k], rtol=1e-10, atol=1e-12), (run, k)
        assert losses[-1] < losses[0], (run, losses)
        for k, v in p.items():
            w.save(name, run + "/" + k, v)
        w.save(name, run + "/losses", losses)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    w = Writer(OUT)
    conv_cases(w)
    depthwise_cases(w)
    batchnorm_cases(w)
    elementwise_cases(w)
    loss_cases(w)
    trajectory_case(w)
    w.finish()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print("wrote %d cases to %s (%.1f KB)" % (len(w.cases), os.path.relpath(OUT, ROOT), total / 1024))


if __name__ == "__main__":
    main()
