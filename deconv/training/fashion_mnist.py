"""One call to train a ZFNet-family config on Fashion-MNIST (used by the experiments)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from deconv.datasets import fashion_batch_transform, load_fashion_mnist
from deconv.training.loop import TrainSettings, evaluate, train
from deconv.zoo import LoadedModel, load_model

__all__ = ["fashion_data", "fashion_transforms", "train_fashion_mnist", "evaluate_fashion"]


def fashion_data(train_limit: int | None = None, test_limit: int | None = None,
                 root: str | Path | None = None) -> tuple[TensorDataset, TensorDataset]:
    """Fashion-MNIST train and test sets (uint8, in memory), optionally truncated."""
    return (load_fashion_mnist("train", root, limit=train_limit),
            load_fashion_mnist("test", root, limit=test_limit))


def fashion_transforms(loaded: LoadedModel, flip: bool = True):
    """(training, evaluation) batch transforms matching a loaded model's size and statistics."""
    mean, std = loaded.mean[0], loaded.std[0]
    return (fashion_batch_transform(loaded.input_size, mean, std, flip=flip),
            fashion_batch_transform(loaded.input_size, mean, std))


def train_fashion_mnist(config: str, settings: TrainSettings, run_dir: str | Path,
                        train_limit: int | None = None, test_limit: int | None = None,
                        device: str | torch.device = "cpu", resume: bool = True,
                        progress: bool = True, flip: bool = True) -> tuple[LoadedModel, list[dict]]:
    """Build ``zfnet`` with ``config`` (init seeded by ``settings.seed``) and train it.

    Args:
        config (str): a ZFNet config of 10 classes (``"fashion"``, ``"fashion-alexnet-conv1"``).
        settings (TrainSettings): the run's hyper-parameters.
        run_dir (str | Path): checkpoints and log (resumed from when ``resume``).
        train_limit (int | None): use only the first images of the training set.
        test_limit (int | None): use only the first images of the test set.
        device (str | torch.device): where to train.
        resume (bool): continue an interrupted run in ``run_dir``.
        progress (bool): tqdm bars.
        flip (bool): random horizontal flips while training.

    Returns:
        tuple[LoadedModel, list[dict]]: the trained model (eval mode) and the per-epoch log.
    """
    loaded = load_model("zfnet", config=config, weights=None, seed=settings.seed)
    train_set, test_set = fashion_data(train_limit, test_limit)
    train_tf, eval_tf = fashion_transforms(loaded, flip)
    history = train(loaded.model, train_set, settings, run_dir, test_data=test_set,
                    batch_transform=train_tf, eval_transform=eval_tf, device=device,
                    resume=resume, progress=progress)
    return loaded, history


def evaluate_fashion(loaded: LoadedModel, test_limit: int | None = None,
                     device: str | torch.device = "cpu") -> dict[str, float]:
    """Test loss and accuracy of a loaded Fashion-MNIST model."""
    _, eval_tf = fashion_transforms(loaded)
    return evaluate(loaded.model, load_fashion_mnist("test", limit=test_limit), eval_tf,
                    device=device)
