"""The tutorials' hand-written modules that the benchmarks measure specnet against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NeuralNetwork(nn.Module):
    """The tutorials' FashionMNIST classifier (seeds 000 and 003)."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear_relu_stack(self.flatten(x))
        return logits


class LeNet(nn.Module):
    """The tutorials' LeNet: functional relu and max-pooling in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 6 * 6)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        out: torch.Tensor = self.fc3(x)
        return out


def resnet18() -> nn.Module:
    """torchvision's ResNet-18 (1000 classes), the reference for examples/resnet18.yaml."""
    import torchvision

    model: nn.Module = torchvision.models.resnet18()
    return model
