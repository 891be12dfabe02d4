"""Temporary model state for attribution: eval mode and no in-place activations, then restored.

Why: batch-norm in train mode would update its running statistics (changing the model) and
make the scores depend on the batch; torchvision's ``ReLU(inplace=True)`` overwrites the
tensor a backward hook has seen, which breaks captum's Deconvolution/GuidedBackprop hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["inference_state"]


@contextmanager
def inference_state(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with every ``inplace`` flag off; restore both on exit.

    Args:
        model (nn.Module): the network; its modules' ``training`` and ``inplace`` attributes
            are changed inside the block and put back exactly as they were afterwards, even if
            the block raises.

    Yields:
        nn.Module: the same model.
    """
    modules = list(model.modules())
    training = [m.training for m in modules]
    inplace = [(m, m.inplace) for m in modules if isinstance(getattr(m, "inplace", None), bool)]
    try:
        model.eval()
        for m, _ in inplace:
            m.inplace = False
        yield model
    finally:
        for m, flag in zip(modules, training):
            m.training = flag
        for m, flag in inplace:
            m.inplace = flag
