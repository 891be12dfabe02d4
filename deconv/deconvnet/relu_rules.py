"""Backward rules for rectifiers, applied to every ReLU a forward pass calls.

:class:`RectifierRules` is a ``TorchFunctionMode``: while it is active it intercepts each call to
a rectifier, whatever form it takes: an ``nn.ReLU`` / ``nn.ReLU6`` / ``nn.Hardtanh(0, t)``
module (inplace or not, used once or reused), ``F.relu``, ``F.relu_``, ``torch.relu``,
``torch.relu_``, ``Tensor.relu(_)``, ``F.relu6``, ``F.hardtanh(x, 0, t)``, ``F.threshold(x, 0, 0)``,
``clamp(min=0)`` / ``clamp_min(0)`` / ``clamp(0, t)``, and computes it with the same forward
value but the chosen backward rule:

=============  ====================================================================
rule           backward of ``y = ReLU(x)`` given the signal ``g`` from above
=============  ====================================================================
``gradient``   ``g * [x > 0]`` (plain autograd; Simonyan et al. 2013 saliency)
``deconvnet``  ``max(g, 0)`` (Zeiler & Fergus 2014: ReLU of the reconstruction)
``guided``     ``max(g, 0) * [x > 0]`` (Springenberg et al. 2014, guided backprop)
=============  ====================================================================

ReLU6 (and ``hardtanh(0, t)``) is treated as a rectifier whose forward mask is its true
derivative region ``0 < x < t``: ``gradient`` and ``guided`` use that mask; ``deconvnet``
ignores the forward pass at rectifiers by definition, so it only rectifies the signal.

In-place calls stay in place (the custom autograd function marks its input dirty), so code that
relies on the side effect keeps working. With ``skip_normalization=True`` the backward of
``F.local_response_norm`` and ``F.batch_norm`` is the identity, as the paper's deconvnet skips
contrast normalization on the way down. Also ``torch.maximum(x, 0)`` / ``torch.max(x, zeros)`` /
``fmax``. Other nonlinearities (SiLU, GELU, leaky ReLU, sigmoid and hard-sigmoid gates as in
squeeze-excitation, tanh, ...) keep their plain gradient and trigger one warning per call, and
so do calls that may be a rectifier written another way (``torch.where(x > 0, x, 0)``,
``x * (x > 0)``), so nothing is ignored silently. Code that
bypasses ``__torch_function__`` (TorchScript modules) cannot be intercepted: :func:`check_model`
refuses it.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from deconv.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["RULES", "RectifierRules", "check_model"]

RULES = ("deconvnet", "guided", "gradient")

_RELU_OUT = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_HARDTANH = {F.hardtanh: False, F.hardtanh_: True}
_CLAMP = {torch.clamp: False, torch.clip: False, torch.Tensor.clamp: False,
          torch.Tensor.clip: False, torch.Tensor.clamp_: True, torch.Tensor.clip_: True,
          torch.clamp_: True}
_CLAMP_MIN = {torch.clamp_min: False, torch.Tensor.clamp_min: False,
              torch.Tensor.clamp_min_: True, torch.clamp_min_: True}
_NORMALIZATIONS = {F.local_response_norm, F.batch_norm}
_UNRULED = {F.silu, F.gelu, F.elu, F.selu, F.celu, F.leaky_relu, F.hardswish, F.mish,
            F.softplus, F.prelu, F.rrelu,
            # gates (squeeze-excitation, LSTM-style) and other squashing nonlinearities
            torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_,
            F.sigmoid, F.hardsigmoid, torch.special.expit, F.logsigmoid, torch.tanh,
            torch.Tensor.tanh, torch.tanh_, torch.Tensor.tanh_, F.tanh, F.softsign,
            F.tanhshrink, F.hardshrink, F.softshrink, F.glu}
# Calls that may spell a rectifier in a way the mode cannot prove (torch.where(x > 0, x, 0),
# x * (x > 0)): left with their plain gradient, named in the warning.
_MAYBE_RECTIFIER = {torch.where, torch.Tensor.where}
_MULTIPLY = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__,
             torch.Tensor.mul_, torch.Tensor.__imul__}
_MAXIMUM = {torch.maximum, torch.Tensor.maximum, torch.fmax, torch.Tensor.fmax, torch.max,
            torch.Tensor.max}


class _Rectify(torch.autograd.Function):
    """``clamp(x, 0, upper)`` forward; backward by ``rule`` (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, upper, rule, inplace):
        mask = x > 0 if upper is None else (x > 0) & (x < upper)
        if inplace:
            out = x.clamp_(min=0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0, max=upper)
        ctx.rule = rule
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        if ctx.rule == "gradient":
            grad = grad * mask
        elif ctx.rule == "deconvnet":
            grad = grad.clamp(min=0)
        else:
            grad = grad.clamp(min=0) * mask
        return grad, None, None, None


class _IdentityBackward(torch.autograd.Function):
    """Forward: ``y`` (computed outside); backward: the signal passes unchanged to ``x``."""

    @staticmethod
    def forward(ctx, x, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _arg(args, kwargs, index, name, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class RectifierRules(TorchFunctionMode):
    """Context manager that applies a backward rule to every rectifier called inside it.

    Args:
        rule (str): ``"deconvnet"``, ``"guided"`` or ``"gradient"``.
        skip_normalization (bool): identity backward for LRN and batch norm.

    Attributes:
        count (int): rectifier calls intercepted since entering (useful to check coverage).
        unruled (set[str]): names of other nonlinearities seen (left with their gradient).
    """

    def __init__(self, rule: str = "deconvnet", skip_normalization: bool = False):
        super().__init__()
        if rule not in RULES:
            raise InvalidArgumentError(f"rule must be one of {RULES}, got {rule!r}")
        self.rule = rule
        self.skip_normalization = skip_normalization
        self.count = 0
        self.unruled: set[str] = set()
        self.maybe_rectifiers: set[str] = set()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        if self.unruled:
            warnings.warn(
                f"nonlinearities without a {self.rule!r} rule were back-propagated by their "
                f"plain gradient: {sorted(self.unruled)}", stacklevel=2)
        if self.maybe_rectifiers:
            warnings.warn(
                f"calls that may be rectifiers written another way were back-propagated by "
                f"their plain gradient, not the {self.rule!r} rule: "
                f"{sorted(self.maybe_rectifiers)}; write them as F.relu / clamp(min=0)",
                stacklevel=2)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rectifier = self._as_rectifier(func, args, kwargs)
        if rectifier is not None:
            x, upper, inplace = rectifier
            self.count += 1
            return _Rectify.apply(x, upper, self.rule, inplace)
        if self.skip_normalization and func in _NORMALIZATIONS:
            x = args[0]
            with torch.no_grad():
                y = func(*args, **kwargs)
            return _IdentityBackward.apply(x, y)
        if func in _UNRULED:
            self.unruled.add(getattr(func, "__name__", str(func)))
        elif func in _MAYBE_RECTIFIER:
            self.maybe_rectifiers.add("where(mask, x, 0)")
        elif func in _MULTIPLY and any(isinstance(a, torch.Tensor) and a.dtype == torch.bool
                                       for a in args[:2]):
            self.maybe_rectifiers.add("x * (boolean mask)")
        return func(*args, **kwargs)

    @staticmethod
    def _as_rectifier(func, args, kwargs):
        """``(x, upper, inplace)`` if this call is a rectifier ``clamp(x, 0, upper)``, else None."""
        if func in _RELU_OUT:
            return args[0], None, bool(kwargs.get("inplace", False))
        if func in _RELU_INPLACE:
            return args[0], None, True
        if func is F.relu6:
            return args[0], 6.0, bool(_arg(args, kwargs, 1, "inplace", False))
        if func in _HARDTANH:
            low = _arg(args, kwargs, 1, "min_val", -1.0)
            high = _arg(args, kwargs, 2, "max_val", 1.0)
            inplace = _HARDTANH[func] or bool(_arg(args, kwargs, 3, "inplace", False))
            if low == 0 and high > 0:
                return args[0], float(high), inplace
            return None
        if func is F.threshold:
            threshold, value = _arg(args, kwargs, 1, "threshold"), _arg(args, kwargs, 2, "value")
            if threshold == 0 and value == 0:
                return args[0], None, bool(_arg(args, kwargs, 3, "inplace", False))
            return None
        if func in _CLAMP:
            low, high = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
            if _is_zero(low) and (high is None or (_is_number(high) and high > 0)):
                return args[0], None if high is None else float(high), _CLAMP[func]
            return None
        if func in _CLAMP_MIN:
            if _is_zero(_arg(args, kwargs, 1, "min")):
                return args[0], None, _CLAMP_MIN[func]
            return None
        if func in _MAXIMUM and len(args) >= 2 and isinstance(args[0], torch.Tensor):
            x, other = args[0], args[1]  # torch.max(x, 1) reduces over dim 1: not a rectifier
            if isinstance(other, torch.Tensor) and _is_zero_tensor(other) and \
                    torch.broadcast_shapes(x.shape, other.shape) == x.shape:
                return x, None, False
        return None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_zero(v) -> bool:
    return _is_number(v) and v == 0 or (isinstance(v, torch.Tensor) and v.numel() == 1
                                        and _is_zero_tensor(v))


def _is_zero_tensor(t: torch.Tensor) -> bool:
    """Whether ``t`` holds only zeros (a constant, not something autograd must flow into)."""
    with torch._C.DisableTorchFunction():
        return not t.requires_grad and t.numel() > 0 and not bool(t.any())


def check_model(model: nn.Module) -> None:
    """Refuse models whose code the mode cannot see (TorchScript).

    Raises:
        TypeError: a submodule is a ``torch.jit.ScriptModule``.
    """
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            raise InvalidTypeError(
                f"module {name or '<root>'!r} is TorchScript; its ReLUs cannot be intercepted. "
                f"Pass the original (non-scripted) nn.Module.")
