"""Tiny models shared by the mining tests (single-process and distributed)."""

import torch
from torch import nn

#: every module of IntNet, in forward order
LAYERS = ["conv1", "relu1", "pool", "conv2", "relu2", "fc"]


class IntNet(nn.Module):
    """Integer weights on integer images: every activation is an exact small integer.

    So float32 arithmetic is exact whatever the batch size or summation order, and there are
    many exact ties (values and positions) for the tie-breaking rule to settle.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(5, 6, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, 4)
        for p in self.parameters():
            p.data = torch.randint(-1, 2, p.shape, generator=g).float()

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(x.amax(dim=(2, 3)))


LAYERS = ["conv1", "relu1", "pool", "conv2", "relu2", "fc"]
