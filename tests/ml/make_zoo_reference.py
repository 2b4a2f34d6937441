#!/usr/bin/python3
"""Writes tests/ml/data/<model>.ref: PyTorch's eval-mode logits for ml_model_zoo_test's fixed case.

Run once after changing a model (needs Debian's python3-torch and python3-torchvision, 1.13/0.14):
  P2P_ZOO_DUMP_DIR=/tmp/zoo build/tests/ml/ml_model_zoo_test --gtest_filter='*PyTorch*'
  /usr/bin/python3 tests/ml/make_zoo_reference.py /tmp/zoo tests/ml/data [model...]
The test dumps its weights, BatchNorm buffers and input; this loads them into the PyTorch model
(parameters and running stats in registration order: p2ptrain's flat layout is the same order)
and writes as text: the 4x10 evaluation logits, the 4x10 training-mode logits (batch statistics)
and the first and last 32 BatchNorm buffer values after that training pass (models with BatchNorm). The test itself needs no Python.
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import models


class Block(nn.Module):
    """The replications' depthwise-separable block (REFERENCE.md Part A §0)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MobileNetCifar(nn.Module):
    cfg = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, cin = [], 32
        for x in self.cfg:
            cout, stride = (x, 1) if isinstance(x, int) else x
            layers.append(Block(cin, cout, stride))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.avg_pool2d(out, 2).flatten(1))


def build(name):
    if name == "mobilenet":
        return MobileNetCifar()
    m = getattr(models, name)(num_classes=10)
    if name == "resnet18":  # the CIFAR stem
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    return m


def load(m, params, buffers):
    pos = 0
    for p in m.parameters():
        p.data.copy_(torch.from_numpy(params[pos:pos + p.numel()]).view_as(p))
        pos += p.numel()
    assert pos == params.size, (pos, params.size)
    pos = 0
    for name, b in m.named_buffers():
        if "running" in name:
            b.copy_(torch.from_numpy(buffers[pos:pos + b.numel()]).view_as(b))
            pos += b.numel()
    assert pos == buffers.size, (pos, buffers.size)


def main(dump, out):
    torch.set_num_threads(1)
    names = ["mobilenet_v3_small", "resnet18", "mobilenet", "mobilenet_v2", "squeezenet1_1",
             "vgg11", "vgg11_bn"]
    for name in sys.argv[3:] or names:
        read = lambda ext: np.fromfile(Path(dump) / f"{name}.{ext}", dtype=np.float32)
        m = build(name)
        load(m, read("params"), read("buffers"))
        x = torch.from_numpy(read("input")).view(-1, 3, 32, 32)
        with torch.no_grad():
            m.eval()
            y_eval = m(x)
            m.train()  # batch statistics, running stats updated; Dropout stays off (the test's p=1e-9)
            for d in m.modules():
                if isinstance(d, nn.Dropout):
                    d.eval()
            y_train = m(x)
        parts = [y_eval.reshape(-1), y_train.reshape(-1)]
        running = [b.reshape(-1) for n, b in m.named_buffers() if "running" in n]
        if running:  # squeezenet1_1 and vgg11 have no BatchNorm
            buffers = torch.cat(running)
            parts += [buffers[:32], buffers[-32:]]
        ref = torch.cat(parts)
        np.savetxt(Path(out) / f"{name}.ref", ref.numpy(), fmt="%.9g")
        print(name, "eval", y_eval.numpy().round(3).tolist(), "train", y_train.numpy().round(3).tolist())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
