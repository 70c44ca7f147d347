#!/usr/bin/python3
"""Writes the TorchScript files fedsim ships (run with Debian's python3-torch):

  scenarios/models/example_cnn.pt      the example for `model: {name: torchscript}`
  tests/core/models/data/*.pt          modules the tests load (same architecture
                                       as a built-in model, and bad inputs)

Usage: /usr/bin/python3 tools/make_example_torchscript.py   (from anywhere)

Every file is written with torch.jit.script(module).save(path); parameters
come from a fixed seed, so re-running gives the same values (the zip archive
may still differ in its metadata). fedsim reads the parameters in the order
of module.named_parameters() and names its layers after them, so the modules
that mirror a built-in model use the built-in's names: conv1, conv2, fc1, ...
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


class ExampleCnn(nn.Module):
    """A small CNN for 28x28 grey images: two 3x3 conv + ReLU + 2x2 max-pool
    blocks (16 and 32 channels), then one dense layer to the classes.
    Input (N, 1, 28, 28), output logits (N, classes)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class BuiltinCnn(nn.Module):
    """fedsim's built-in `cnn` (core/models/torch/cnn.h), same parameter names
    and order: conv5x5 (padding 2) - ReLU - max-pool 2 - conv5x5 (padding
    `pad2`) - ReLU - max-pool 2 - dense layers with ReLU between them.
    arch fedavg: pad2 = 2; arch lenet5: pad2 = 0."""

    def __init__(self, channels, hidden, pad2: int, side: int = 28, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], 5, padding=2)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5, padding=pad2)
        s = (side // 2 + 2 * pad2 - 4) // 2
        widths = [channels[1] * s * s] + list(hidden) + [classes]
        for i in range(len(widths) - 1):
            setattr(self, "fc%d" % (i + 1), nn.Linear(widths[i], widths[i + 1]))
        self.dense = len(widths) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BuiltinFedAvgSmall(BuiltinCnn):
    def __init__(self):
        super().__init__([4, 8], [32], pad2=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class Mlp(nn.Module):
    """fedsim's built-in `mlp` with hidden [32] (core/models/mlp.h): its
    layout (W row-major out x in, then b, per layer) is PyTorch's Linear
    layout. Takes flat input (N, 784): use input_shape: [784]."""

    def __init__(self, dim: int = 784, hidden: int = 32, classes: int = 10):
        super().__init__()
        self.dense0 = nn.Linear(dim, hidden)
        self.dense1 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense1(F.relu(self.dense0(x)))


class WithBatchNorm(nn.Module):
    """Has buffers (BatchNorm running statistics): fedsim refuses it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2), 1))


class Looped(nn.Module):
    """Applies one dense layer a data-dependent number of times: its
    multiply-adds cannot be counted from one forward pass."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(784, 16)
        self.hidden = nn.Linear(16, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(torch.flatten(x, 1)))
        for _ in range(3):
            h = F.relu(self.hidden(h))
        return self.out(h)


class WithUnusedParameter(nn.Module):
    """A dense layer its forward never uses: its gradient is zero."""

    def __init__(self):
        super().__init__()
        self.used = nn.Linear(784, 10)
        self.unused = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(torch.flatten(x, 1))


def save(module: nn.Module, relative: str, traced: bool = False) -> None:
    path = os.path.join(ROOT, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if traced:
        torch.jit.trace(module, torch.zeros(2, 1, 28, 28)).save(path)
    else:
        torch.jit.script(module).save(path)
    print("wrote %s (%d bytes, %d parameters)" % (relative, os.path.getsize(path),
                                                  sum(p.numel() for p in module.parameters())))


def main() -> None:
    torch.manual_seed(20240610)
    save(ExampleCnn(), "scenarios/models/example_cnn.pt")
    data = "tests/core/models/data/"
    save(BuiltinCnn([4, 8], [24, 16], pad2=0), data + "lenet5_small.pt")
    save(BuiltinFedAvgSmall(), data + "fedavg_small.pt")
    save(Mlp(), data + "mlp_784_32.pt")
    save(ExampleCnn(classes=7), data + "seven_classes.pt")
    save(Mlp(hidden=4).double(), data + "float64.pt")
    save(WithBatchNorm(), data + "batchnorm.pt")
    save(Looped(), data + "looped.pt")
    save(WithUnusedParameter(), data + "unused_parameter.pt")
    save(BuiltinCnn([4, 8], [24, 16], pad2=0), data + "lenet5_small_traced.pt", traced=True)


if __name__ == "__main__":
    main()
