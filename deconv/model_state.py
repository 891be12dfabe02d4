"""Temporary model state: eval mode (and optionally no inplace ops / no parameter gradients),
put back exactly as it was on leaving; and the exception hooks raise to end a forward early.

Every part of the toolkit that runs a user's model goes through :func:`eval_mode`, so "calls
never change the model" has one implementation:

* eval mode, because batch-norm in train mode would update its running statistics (changing
  the model) and make results depend on the batch, and dropout would make them random;
* ``inplace=False`` (attribution), because torchvision's ``ReLU(inplace=True)`` overwrites the
  tensor a backward hook has seen, which breaks captum's Deconvolution / GuidedBackprop hooks;
* ``requires_grad=False`` (feature visualization), so a backward computes the image gradient
  only (about half the work).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["StopForward", "eval_mode", "registered_hooks"]


class StopForward(BaseException):
    """Raised by a forward hook to end the forward pass once everything needed has been read.

    It derives from ``BaseException``, not ``Exception``, on purpose: model code (or a user's
    ``forward``) that catches ``Exception`` to fall back to another path cannot swallow it, so
    the network really stops at the hook instead of silently running on. Every site that raises
    it catches it right around its own ``module(x)`` call, so it never escapes a toolkit call;
    code that must also handle real errors of the part after the layer writes
    ``except StopForward`` before ``except Exception``.
    """


@contextmanager
def eval_mode(model: nn.Module, *, inplace: bool | None = None,
              requires_grad: bool | None = None) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore every module's own flag on exit.

    Args:
        model (nn.Module): the network. Each submodule's ``training`` flag is saved and put back
            individually (a model with some modules in train mode stays so), even if the block
            raises.
        inplace (bool | None): None leaves ``inplace`` flags alone; a bool sets every module's
            ``inplace`` attribute (``nn.ReLU``, ``nn.ReLU6``, ``nn.Dropout``, ...) for the block.
        requires_grad (bool | None): None leaves parameters alone; a bool sets every parameter's
            ``requires_grad`` for the block.

    Yields:
        nn.Module: the same model.
    """
    modules = list(model.modules())
    training = [(m, m.training) for m in modules]
    inplace_flags = [] if inplace is None else [
        (m, m.inplace) for m in modules if isinstance(getattr(m, "inplace", None), bool)]
    grad_flags = [] if requires_grad is None else [
        (p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for m, _ in inplace_flags:
            m.inplace = inplace
        for p, _ in grad_flags:
            p.requires_grad_(requires_grad)
        yield model
    finally:
        for m, flag in training:
            m.training = flag
        for m, flag in inplace_flags:
            m.inplace = flag
        for p, flag in grad_flags:
            p.requires_grad_(flag)


@contextmanager
def registered_hooks(handles: Iterable[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Keep the hooks that ``handles`` registers for the block; remove every one on leaving.

    Args:
        handles (Iterable[RemovableHandle]): e.g. a generator of ``register_forward_hook``
            calls; it is consumed on entering, so a registration that fails halfway still gets
            the hooks registered before it removed.

    Yields:
        list[RemovableHandle]: the handles (emptied on leaving).
    """
    kept: list[RemovableHandle] = []
    try:
        for handle in handles:
            kept.append(handle)
        yield kept
    finally:
        for handle in kept:
            handle.remove()
        kept.clear()
