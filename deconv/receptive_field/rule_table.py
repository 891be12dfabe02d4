"""Which rule maps the field of each operation's inputs to the field of its output.

Modules are matched by type (:data:`_MODULE_RULES`), functions by identity
(:data:`_FUNCTION_RULES`) or by name (:data:`_NAMED_RULES`, which also covers tensor methods
and the ATen operations that ``make_fx`` records, e.g. ``convolution.default``).
:func:`_apply` computes the field of one call's output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deconv.receptive_field.field import _cannot, _Context, _Field, _restrict
from deconv.receptive_field.layout_rules import (
    _flatten,
    _getitem,
    _permute,
    _reshape,
    _select,
    _slice,
    _split,
)
from deconv.receptive_field.mixing_rules import (
    _concat,
    _elementwise,
    _layer_norm,
    _linear,
    _reduction,
    _softmax,
    _spatial_norm,
)
from deconv.receptive_field.op_call import _first_output, _Op, _unsupported
from deconv.receptive_field.window_rules import (
    _TRANSPOSED_CONV,
    _adaptive,
    _conv_function,
    _conv_module,
    _lp_pool_function,
    _pad_function,
    _pad_module,
    _pool_function,
    _pool_module,
)

_NOT_A_GRID = _unsupported("its output positions are not a strided grid over its input")
_MAX_POOL = {n: _pool_function(n, dilated=True) for n in (1, 2, 3)}
_AVG_POOL = {n: _pool_function(n, dilated=False) for n in (1, 2, 3)}

_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink,
    nn.Softshrink, nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d,
    nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
    nn.ChannelShuffle, nn.Softmax2d,
)

_MODULE_RULES: list[tuple[type | tuple[type, ...], Callable[[_Op], _Field]]] = [
    (_POINTWISE_MODULES, _elementwise),
    (nn.modules.conv._ConvTransposeNd, _unsupported(_TRANSPOSED_CONV)),
    (nn.modules.conv._ConvNd, _conv_module),
    ((nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
      nn.modules.pooling._LPPoolNd), _pool_module),
    ((nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd), _adaptive),
    ((nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
      nn.modules.padding._ReplicationPadNd, nn.modules.padding.CircularPad2d), _pad_module),
    (nn.Flatten, _flatten),
    (nn.Unflatten, _reshape),
    ((nn.Linear, nn.Bilinear, nn.LazyLinear), _linear),
    (nn.LayerNorm, _layer_norm),
    ((nn.GroupNorm, nn.modules.instancenorm._InstanceNorm), _spatial_norm),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin), _softmax),
    ((nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.Fold, nn.Unfold), _NOT_A_GRID),
]

_FUNCTION_RULES: dict[Any, Callable[[_Op], _Field]] = {
    F.max_pool1d: _MAX_POOL[1], F.max_pool2d: _MAX_POOL[2], F.max_pool3d: _MAX_POOL[3],
    F.avg_pool1d: _AVG_POOL[1], F.avg_pool2d: _AVG_POOL[2], F.avg_pool3d: _AVG_POOL[3],
    F.lp_pool1d: _lp_pool_function(1), F.lp_pool2d: _lp_pool_function(2),
    F.adaptive_max_pool1d: _adaptive, F.adaptive_max_pool2d: _adaptive,
    F.adaptive_max_pool3d: _adaptive,
}

_NAMED_RULES: dict[str, Callable[[_Op], _Field]] = {
    **dict.fromkeys(("conv1d", "conv2d", "conv3d", "convolution"), _conv_function),
    **{f"max_pool{n}d{suffix}": _MAX_POOL[n]
       for n in (1, 2, 3) for suffix in ("", "_with_indices")},
    **{f"avg_pool{n}d": _AVG_POOL[n] for n in (1, 2, 3)},
    **dict.fromkeys(("addmm", "mm"), _linear),
    "slice": _slice,
    "select": _select,
    **dict.fromkeys(("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
                     "adaptive_max_pool2d_with_indices"), _adaptive),
    **dict.fromkeys(("pad", "constant_pad_nd"), _pad_function),
    "linear": _linear,
    "layer_norm": _layer_norm,
    **dict.fromkeys(("group_norm", "instance_norm"), _spatial_norm),
    **dict.fromkeys(("softmax", "log_softmax", "softmin"), _softmax),
    **dict.fromkeys(("mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp",
                     "norm", "prod", "nansum", "nanmean", "argmax", "argmin", "all", "any"),
                    _reduction),
    "flatten": _flatten,
    **dict.fromkeys(("view", "reshape", "squeeze", "unsqueeze", "unflatten", "expand_as"),
                    _reshape),
    **dict.fromkeys(("permute", "transpose", "swapaxes", "swapdims"), _permute),
    "getitem": _getitem,
    **dict.fromkeys(("cat", "concat", "concatenate", "stack"), _concat),
    **dict.fromkeys(("split", "chunk", "tensor_split", "unbind"), _split),
    **dict.fromkeys(("interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
                     "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                     "pixel_shuffle", "pixel_unshuffle", "unfold", "fold", "roll",
                     "grid_sample"), _NOT_A_GRID),
    **dict.fromkeys((
        "add", "sub", "mul", "truediv", "div", "floordiv", "neg", "pow", "abs", "exp", "log",
        "sqrt", "rsqrt", "maximum", "minimum", "where", "clamp", "clip", "sign", "matmul_scalar",
        "iadd", "isub", "imul", "itruediv", "add_", "sub_", "mul_", "div_", "clamp_",
        "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
        "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "hardtanh_", "sigmoid",
        "sigmoid_", "tanh", "tanh_", "softplus", "softsign", "prelu", "rrelu", "threshold",
        "logsigmoid", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
        "feature_alpha_dropout", "batch_norm", "local_response_norm", "stochastic_depth",
        "contiguous", "clone", "float", "double", "half", "to", "type", "type_as", "detach",
        "requires_grad_", "channel_shuffle", "native_channel_shuffle", "scale",
        "native_batch_norm", "native_batch_norm_legit_no_training", "to_copy", "alias",
        "expand", "unsafe_view", "copy",
    ), _elementwise),
}



def _target_name(target: Any) -> str:
    """Name of a called function, method or ATen operation (``"convolution.default"``)."""
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _module_rule(module: nn.Module) -> Callable[[_Op], _Field] | None:
    for types, rule in _MODULE_RULES:
        if isinstance(module, types):
            return rule
    return None


def _is_rule_leaf(module: nn.Module) -> bool:
    """A module with a rule of its own (walked as one call, not traced into)."""
    return _module_rule(module) is not None


def _rule_for(kind: str, target: Any, module: nn.Module | None) -> Callable[[_Op], _Field]:
    if kind == "call_module":
        rule = _module_rule(module)
        if rule is None:
            raise _cannot(f"module {type(module).__name__}", "no rule for it (known: "
                          "convolutions, pooling, padding, pointwise layers, norms, flatten, "
                          "linear)")
        return rule
    if target in _FUNCTION_RULES:
        return _FUNCTION_RULES[target]
    name = _target_name(target).split(".")[0]  # ATen overloads: "convolution.default"
    rule = _NAMED_RULES.get(name) or _NAMED_RULES.get(name.lstrip("_"))
    if rule is None:
        raise _cannot(repr(name), "no rule for this function or method")
    return rule


def _apply(kind: str, target: Any, module: nn.Module | None, args: tuple, kwargs: dict,
           fargs: tuple, fkwargs: dict, out: Any, ctx: _Context) -> _Field | None:
    """Field of one call's output, or None when no argument depends on the image."""
    if not _has_field((fargs, tuple(fkwargs.values()))):
        return None
    if kind == "call_method" and target in ("size", "dim", "numel", "element_size",
                                            "get_device", "stride"):
        return None
    name = type(module).__name__ if module is not None else _target_name(target)
    op = _Op(name=name, module=module, args=args, kwargs=kwargs, fargs=fargs, fkwargs=fkwargs,
             out=out, ctx=ctx)
    if not isinstance(out, (torch.Tensor, tuple, list)):
        return None  # shapes and other Python values
    field = _rule_for(kind, target, module)(op)
    first = _first_output(out)
    return _restrict(field, first) if isinstance(first, torch.Tensor) else field


def _has_field(value: Any) -> bool:
    if isinstance(value, _Field):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_field(v) for v in value)
    if isinstance(value, dict):
        return any(_has_field(v) for v in value.values())
    return False
