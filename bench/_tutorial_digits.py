"""examples/digits_cnn.yaml's job written by hand, the way the PyTorch tutorials write it.

    python bench/_tutorial_digits.py

The same data (scikit-learn's digits, the same test and validation splits, standardised with
the training part's mean and std), model, loss, optimizer, schedule, batch size and epochs as
the spec; torch's default threads. bench/main_job.py times it against ``specnet train`` and
reads the last line, ``test accuracy 0.9833``, and the one before it, the seconds its epochs
took (training and validation).
"""

from __future__ import annotations

import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

EPOCHS, BATCH, LR = 15, 32, 0.002


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(512, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(x)
        return logits


def accuracy(model: nn.Module, loader: DataLoader[tuple[torch.Tensor, ...]]) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(loader.dataset)  # type: ignore[arg-type]


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    n = len(digits.target)
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        range(n), test_size=0.2, random_state=0, stratify=digits.target
    )
    train_idx, val_idx = train_test_split(
        train_idx, test_size=round(0.1 * n), random_state=0, stratify=digits.target[train_idx]
    )
    mean, std = images[train_idx].mean(), images[train_idx].std()

    def split(idx: list[int], shuffle: bool = False) -> DataLoader[tuple[torch.Tensor, ...]]:
        dataset = TensorDataset((images[idx] - mean) / std, labels[idx])
        return DataLoader(dataset, batch_size=BATCH, shuffle=shuffle)

    train_loader, val_loader = split(train_idx, shuffle=True), split(val_idx)
    test_loader = split(test_idx)

    model = DigitsCNN()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
            optimizer.step()
        scheduler.step()
        val = accuracy(model, val_loader)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.4f}, val accuracy {val:.4f}")
    print(f"training loop {time.perf_counter() - start:.2f} s")  # the epochs with validation
    print(f"test accuracy {accuracy(model, test_loader):.4f}")


if __name__ == "__main__":
    main()
