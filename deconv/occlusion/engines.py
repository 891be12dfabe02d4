"""Occlusion engines: the registry, and the interface an engine implements.

An engine computes the model's outputs (and one captured layer) on occluded copies of ONE image.
The sweep builds one engine per model and sweep, enters it, asks it for batches of occluder
windows, and leaves it; the engine keeps its caches only while it is entered (zennit's
``Attributor`` is the model), so nothing survives the sweep.

Registered engines (``occlusion_engines()``, the ``engine=`` of
:func:`deconv.occlusion.occlusion_sweep` and ``deconv occlude --engine``):

* ``"naive"`` (:class:`~deconv.occlusion.naive.NaiveOcclusion`): builds every occluded image and
  runs the whole network on the batch; the reference, and the last resort of ``"auto"``;
* ``"incremental"`` (:class:`~deconv.occlusion.incremental.IncrementalOcclusion`): recomputes
  only each layer's changed region on conv / pool chains (Krypton); same numbers;
* ``"graph"`` (:class:`~deconv.occlusion.graph_engine.GraphOcclusion`): the same on any graph
  ``torch.fx`` traces (residual, branching, depthwise CNNs); same numbers.

``engine="auto"`` takes the first engine registered with ``auto=True`` whose ``supports(model)``
is true (``"incremental"``, then ``"graph"``), else ``"naive"`` with a warning saying why.

How to add an engine
--------------------
Derive a class from :class:`~deconv.occlusion.engine_base.OcclusionEngine` (it gives the
argument checks, the ``with`` lifetime, ``outputs`` and the naive fall-back) and add one line at
the bottom of this file, ``register_occlusion_engine("name", YourEngine, auto=...)`` (an
explicit entry, no import side effects)::

    class YourEngine(OcclusionEngine):
        def __init__(self, model, image, fill, *, layer=None, reduce="sum", batch_size=32,
                     need_output=True):
            self._setup(model, image, fill, layer=layer_name(model, layer), reduce=reduce,
                        batch_size=batch_size, need_output=need_output)
            # then build the caches; set self.incremental = False to fall back to naive
        @staticmethod
        def supports(model) -> tuple[bool, str]: ...    # (True, "") or (False, why)
        def _outputs(self, boxes) -> OcclusionOutputs: ...
            # boxes: checked long [P, 4] (y0, y1, x0, x1), end exclusive; one row per box,
            # in order; output None when not self.need_output

Callers use ``with YourEngine(...) as engine: engine.outputs(boxes)``; leaving the block
releases every cache (``close``).

It must return the naive engine's numbers (to rounding); ``tests/test_incremental_occlusion.py``
shows the float64 comparison to copy.
"""

from __future__ import annotations

import warnings

from deconv._deprecation import deprecated_names, warn_deprecated
from deconv.errors import InvalidArgumentError
from deconv.occlusion.graph_engine import GraphOcclusion
from deconv.occlusion.incremental import IncrementalOcclusion
from deconv.occlusion.naive import NaiveOcclusion, capture_layer_output
from deconv.occlusion.outputs import OcclusionOutputs

__all__ = ["OcclusionOutputs", "build_engine", "capture_layer_output", "evaluate_occluded",
           "make_incremental_engine", "occlusion_engines", "register_occlusion_engine",
           "resolve_engine"]

_ENGINES: dict[str, type] = {}
_AUTO: list[str] = []  # tried in order by engine="auto"; "naive" is the fall-back


def register_occlusion_engine(name: str, engine: type | None = None, *, auto: bool = False):
    """Add an engine class under ``name``; ``auto=True`` lets ``engine="auto"`` pick it.

    Args:
        name (str): the ``engine=`` value.
        engine (type | None): the class (see the module docstring for its interface); None:
            return a class decorator instead.
        auto (bool): try it (in registration order) for ``engine="auto"`` where its
            ``supports(model)`` is true.

    Returns:
        type | Callable[[type], type]: the class (or the decorator).

    Raises:
        ValueError: ``name`` already registered.
    """

    def add(cls: type) -> type:
        if name in _ENGINES:
            raise InvalidArgumentError(f"occlusion engine {name!r} is already registered")
        _ENGINES[name] = cls
        if auto:
            _AUTO.append(name)
        return cls

    return add if engine is None else add(engine)


def occlusion_engines() -> list[str]:
    """Names of the registered occlusion engines (``"auto"`` is accepted besides these)."""
    return list(_ENGINES)


def resolve_engine(engine: str, model, *, argument: str = "engine") -> str:
    """The registered engine name for ``engine`` (``"auto"``: the best one that supports it).

    Args:
        engine (str): a registered name or ``"auto"``.
        model (nn.Module | LoadedModel): the network (for ``"auto"``).
        argument (str): the argument's name, for the error message.

    Raises:
        ValueError: unknown engine.
    """
    if engine == "auto":
        reason = ""
        for name in _AUTO:
            ok, reason = _ENGINES[name].supports(model)
            if ok:
                return name
        warnings.warn(f"occlusion_sweep: no incremental engine can run this model ({reason}); "
                      f"using the naive sweep (same numbers, slower)", stacklevel=3)
        return "naive"
    if engine not in _ENGINES:
        word = "method" if argument == "method" else "occlusion engine"
        raise InvalidArgumentError(
            f"unknown {word} {engine!r}; choose one of {occlusion_engines()} "
            "or 'auto'")
    return engine


def build_engine(engine: str, model, image, fill, *, layer: str | int | None = None,
                 reduce: str | None = "sum", batch_size: int = 32, need_output: bool = True):
    """A new engine object for one image (enter it with ``with``).

    Args:
        engine (str): a registered name or ``"auto"``.
        model (nn.Module | LoadedModel): the network.
        image (torch.Tensor): model input ``[C, H, W]``.
        fill (float | torch.Tensor): the occluder's content in input space (``[C, H, W]``).
        layer (str | int | None): layer whose output to return too (``captured``).
        reduce (str | None): ``"sum"`` or None.
        batch_size (int): windows processed together.
        need_output (bool): False lets the engine skip the network after ``layer``.
    """
    cls = _ENGINES[resolve_engine(engine, model)]
    return cls(model, image, fill, layer=layer, reduce=reduce, batch_size=batch_size,
               need_output=need_output)


def make_incremental_engine(model, image, fill=0.0, **settings):
    """The exact incremental engine for ``model``: the first ``auto`` engine that supports it.

    ``"incremental"`` (conv/pool chains such as VGG and AlexNet: row bands of the large layers,
    a low-memory mode) where it applies, else ``"graph"`` (any traceable graph; it falls back to
    the naive forward itself, with a warning). Both give the naive sweep's numbers.

    Args:
        model (nn.Module | LoadedModel): the network, in eval mode.
        image (torch.Tensor): model input ``[C, H, W]``.
        fill (float | torch.Tensor): the occluder's value(s).
        **settings: keyword arguments of the engine (``layer``, ``batch_size``,
            ``max_fraction``, ``compute_dtype``, ...); those the chosen engine does not take
            (``bands``, ``low_memory`` for the graph engine) are dropped.

    Returns:
        IncrementalOcclusion | GraphOcclusion: the engine (enter it with ``with``).
    """
    import inspect

    name = next((n for n in _AUTO if _ENGINES[n].supports(model)[0]), _AUTO[-1])
    cls = _ENGINES[name]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(model, image, fill, **{k: v for k, v in settings.items() if k in accepted})


def evaluate_occluded(model, image, fill, boxes, *, layer: str | None = None,
                      need_output: bool = True, engine: str = "naive",
                      method: str | None = None) -> OcclusionOutputs:
    """One batch of windows in one call: build the engine, run ``boxes``, release it.

    Args:
        model (nn.Module | LoadedModel): the network (not modified).
        image (torch.Tensor): model input ``[C, H, W]`` on the module's device and dtype.
        fill (torch.Tensor): replacement image ``[C, H, W]`` (see :mod:`deconv.occlusion.fills`).
        boxes (torch.Tensor): long ``[B, 4]`` windows ``(y0, y1, x0, x1)``, end exclusive.
        layer (str | None): ``named_modules()`` name whose feature maps to total.
        need_output (bool): also return the network output (False lets an engine stop early).
        engine (str): a registered engine or ``"auto"``.
        method (str | None): deprecated name of ``engine``.

    Returns:
        OcclusionOutputs: outputs and/or layer totals (``captured``), one row per box.
    """
    if method is not None:
        warn_deprecated("evaluate_occluded(method=...)", "use engine=")
        engine = resolve_engine(method, model, argument="method")
    with build_engine(engine, model, image, fill, layer=layer, reduce="sum",
                      batch_size=max(len(boxes), 1), need_output=need_output) as runner:
        return runner.outputs(boxes)


# The registry: explicit entries, one per engine ("auto" tries the auto=True ones in order).
register_occlusion_engine("naive", NaiveOcclusion)
register_occlusion_engine("incremental", IncrementalOcclusion, auto=True)
register_occlusion_engine("graph", GraphOcclusion, auto=True)

__getattr__ = deprecated_names(__name__, {
    "OccludedBatch": ("use deconv.occlusion.OcclusionOutputs (.captured is the old "
                      ".layer_totals)", "deconv.occlusion.outputs:OcclusionOutputs"),
    "occlusion_methods": ("use occlusion_engines()", lambda: occlusion_engines),
    "occlude_batch": ("use deconv.occlusion.fills.occlude_images",
                      "deconv.occlusion.fills:occlude_images"),
})
