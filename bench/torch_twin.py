#!/usr/bin/env python3
"""A PyTorch twin of minicnn's MobileNetV2 feature extractor (no top, global average pooling),
loaded from a .mcnn file, so that bench/compare_model.py times PyTorch and ONNX Runtime on
exactly the network minicnn runs.

    /usr/bin/python3 bench/torch_twin.py --check [--weights build/test-weights/mobilenet_v2_1.0.mcnn]

The twin follows include/minicnn/models/mobilenet_v2.hpp and inverted_residual.hpp (Keras'
keras_applications MobileNetV2): Conv1_pad (Keras correct_pad) + Conv1 3x3 stride 2 'valid',
BN, ReLU6; 17 inverted residual blocks (expand 1x1 / BN / ReLU6 (not block 0), correct_pad +
stride-2 'valid' or stride-1 'same' 3x3 depthwise / BN / ReLU6, project 1x1 / BN, add when
stride 1 and in == out); Conv_1 1x1 / BN / ReLU6; GlobalAveragePooling2D. BatchNorm stays a
separate module (eval mode, eps 1e-3): TorchScript freezing and the ONNX exporter fold it into
the convolutions themselves, as minicnn does.

TF padding is explicit: a stride-2 3x3 layer gets F.pad((left, 1, top, 1)) with top = H % 2 and
left = W % 2 (correct_pad: ((0,1),(0,1)) for even sizes, ((1,1),(1,1)) for odd) and then a
padding-0 convolution; a stride-1 3x3 'same' layer pads 1 on every side, which PyTorch's
symmetric padding=1 gives exactly. The pads depend on the input size, so the twin is built for
one size (any size >= 32), as minicnn's model is.

Weights: Keras layouts -> PyTorch: Conv2D kernel HWIO -> OIHW (transpose 3,2,0,1), depthwise
kernel (kh, kw, C, 1) -> (C, 1, kh, kw) (transpose 2,3,0,1); BN gamma/beta/moving_mean/
moving_variance -> weight/bias/running_mean/running_var.

--check runs the twin on /work/shared/imagenet-samples/reference/inputs_<S>_uint8.npy
(x/127.5 - 1) and compares the pooled features with feat_gap_alpha<A>_<S>.npy (an independent
float64 numpy implementation of tf.keras MobileNetV2); exit status 1 above the tolerance.
"""
import argparse
import os
import sys
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tools"))
from mcnn_format import read_mcnn  # noqa: E402

REFERENCE_DIR = "/work/shared/imagenet-samples/reference"
BN_EPS = 1e-3

# (expansion, filters, stride) of blocks 0..16 (Keras' (t, c, n, s) table unrolled).
BLOCKS = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
          (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1),
          (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1)]


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def correct_pad(h, w):
    """F.pad argument (left, right, top, bottom) of Keras' correct_pad for a 3x3 kernel."""
    return [w % 2, 1, h % 2, 1]


def conv_out(n, stride):
    """Output size of a 3x3 layer: stride 1 'same' keeps n; stride 2 after correct_pad."""
    return n if stride == 1 else (n + n % 2 + 1 - 3) // 2 + 1


class ConvBN(nn.Module):
    """[F.pad] -> Conv2d (no bias) -> BatchNorm2d(eps 1e-3) -> [ReLU6]."""

    pad: List[int]

    def __init__(self, cin, cout, k, stride, padding, groups, relu6, pad):
        super().__init__()
        self.pad = pad  # [] or F.pad argument
        self.has_pad = len(pad) > 0
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6() if relu6 else nn.Identity()

    def forward(self, x):
        if self.has_pad:
            x = F.pad(x, self.pad)
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    def __init__(self, cin, expansion, cout, stride, h, w):
        super().__init__()
        mid = cin * expansion
        self.has_expand = expansion != 1
        self.expand = ConvBN(cin, mid, 1, 1, 0, 1, True, []) if self.has_expand else nn.Identity()
        if stride == 2:
            self.depthwise = ConvBN(mid, mid, 3, 2, 0, mid, True, correct_pad(h, w))
        else:
            self.depthwise = ConvBN(mid, mid, 3, 1, 1, mid, True, [])
        self.project = ConvBN(mid, cout, 1, 1, 0, 1, False, [])
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        if self.skip:
            y = y + x
        return y


class MobileNetV2Twin(nn.Module):
    """minicnn's MobileNetV2 (alpha, input size), no top, global average pooling: (N,3,H,W) -> (N,C)."""

    def __init__(self, alpha=1.0, input_size=224):
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        if h < 32 or w < 32:
            raise ValueError(f"input size {h}x{w} is too small, expected at least 32x32")
        self.alpha = alpha
        self.input_size = (h, w)
        first = make_divisible(32 * alpha, 8)
        # Keras names, in model order, for weight loading.
        self.keras_names = [("Conv1", "bn_Conv1")]
        self.stem = ConvBN(3, first, 3, 2, 0, 1, True, correct_pad(h, w))
        h, w = conv_out(h, 2), conv_out(w, 2)
        blocks, cin = [], first
        for i, (t, c, s) in enumerate(BLOCKS):
            cout = make_divisible(int(c * alpha), 8)
            blocks.append(InvertedResidual(cin, t, cout, s, h, w))
            p = "expanded_conv_" if i == 0 else f"block_{i}_"
            if t != 1:
                self.keras_names.append((p + "expand", p + "expand_BN"))
            self.keras_names += [(p + "depthwise", p + "depthwise_BN"), (p + "project", p + "project_BN")]
            h, w = conv_out(h, s), conv_out(w, s)
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
        self.head = ConvBN(cin, last, 1, 1, 0, 1, True, [])
        self.keras_names.append(("Conv_1", "Conv_1_bn"))
        self.features = last

    def conv_bn_modules(self):
        """The ConvBN modules in model order (matching keras_names)."""
        out = [self.stem]
        for b in self.blocks:
            if b.has_expand:
                out.append(b.expand)
            out += [b.depthwise, b.project]
        out.append(self.head)
        return out

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return x.mean(dim=(2, 3))


def load_twin(path, input_size=96, dtype=torch.float32):
    """The twin with the .mcnn file's weights, in eval mode. Checks every tensor is used."""
    f = read_mcnn(path)
    arch = f.metadata.get("architecture", {})
    if arch.get("name") != "mobilenet_v2":
        raise ValueError(f"{path}: architecture {arch.get('name')!r} is not mobilenet_v2")
    model = MobileNetV2Twin(float(arch["alpha"]), input_size)
    used = set()
    with torch.no_grad():
        for (conv_name, bn_name), m in zip(model.keras_names, model.conv_bn_modules()):
            if conv_name + "/kernel" in f.tensors:
                k = f.tensors[conv_name + "/kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
                used.add(conv_name + "/kernel")
            else:
                k = f.tensors[conv_name + "/depthwise_kernel"].transpose(2, 3, 0, 1)  # (kh,kw,C,1) -> (C,1,kh,kw)
                used.add(conv_name + "/depthwise_kernel")
            if tuple(k.shape) != tuple(m.conv.weight.shape):
                raise ValueError(f"{conv_name}: file shape {k.shape} vs twin {tuple(m.conv.weight.shape)}")
            m.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k)))
            for keras, attr in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                ("moving_variance", "running_var")):
                name = f"{bn_name}/{keras}"
                getattr(m.bn, attr).copy_(torch.from_numpy(f.tensors[name]))
                used.add(name)
    unused = [n for n in f.tensors if n not in used and not n.startswith("Logits/")]
    if unused:
        raise ValueError(f"{path}: tensors the twin does not use: {unused[:5]}...")
    return model.eval().to(dtype)


def preprocess(u8_nhwc, dtype=torch.float32):
    """uint8 (N,H,W,3) -> NCHW x/127.5 - 1 (Keras mobilenet_v2.preprocess_input), computed in dtype."""
    x = torch.from_numpy(u8_nhwc).to(dtype) / 127.5 - 1.0
    return x.permute(0, 3, 1, 2).contiguous()


def check(weights, size, tol):
    model = load_twin(weights, size)
    alpha = model.alpha
    a = f"{alpha:g}" if alpha != 1.0 else "1.0"
    inputs = os.path.join(REFERENCE_DIR, f"inputs_{size}_uint8.npy")
    ref_path = os.path.join(REFERENCE_DIR, f"feat_gap_alpha{a}_{size}.npy")
    u8 = np.load(inputs)
    ref = np.load(ref_path).astype(np.float64)
    ok = True
    for dtype in (torch.float32, torch.float64):
        m = model.to(dtype)
        with torch.inference_mode():
            got = m(preprocess(u8, dtype)).double().numpy()
        if got.shape != ref.shape:
            print(f"twin check: shape {got.shape} vs reference {ref.shape}")
            return False
        abs_err = np.abs(got - ref)
        rel_err = abs_err / np.maximum(np.abs(ref), 1.0)  # relative for |ref| > 1, absolute below
        passed = rel_err.max() <= tol
        if dtype == torch.float32:
            ok &= bool(passed)
        print(f"twin check ({str(dtype).replace('torch.', '')}): {os.path.basename(ref_path)} on "
              f"{os.path.basename(inputs)} {tuple(u8.shape)}: max |diff| {abs_err.max():.3g}, "
              f"max |diff|/max(1,|ref|) {rel_err.max():.3g}, |ref| max {np.abs(ref).max():.3g} "
              f"-> {'PASS' if passed else 'FAIL'} (tolerance {tol:g})")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=os.path.join(HERE, os.pardir, "build", "test-weights",
                                                      "mobilenet_v2_1.0.mcnn"))
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--check", action="store_true", help="compare with the numpy reference features")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check(args.weights, args.size, args.tol) else 1)
    m = load_twin(args.weights, args.size)
    print(m)
    print(f"alpha {m.alpha}, input {m.input_size}, {sum(p.numel() for p in m.parameters()):,} parameters, "
          f"{m.features} features")


if __name__ == "__main__":
    main()
