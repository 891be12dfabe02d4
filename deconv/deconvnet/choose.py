"""Which deconvnet engine to use for a layer: the one decision, made here for every caller.

The explicit :class:`~deconv.deconvnet.Deconvnet` (the paper's switches and transposed filters)
is used where the path from the input to the layer is a chain of supported operations; any
other graph (residual adds, branches, functional ReLUs) uses the autograd-based
:class:`~deconv.deconvnet.GenericDeconvnet` with the same ReLU rule. The CLI's ``--engine``,
the Fig. 2 grids, the Fig. 7 projection panel and :func:`project_strongest` all call
:func:`deconvnet_for`.
"""

from __future__ import annotations

from deconv.deconvnet.explicit import Deconvnet
from deconv.deconvnet.generic import GenericDeconvnet
from deconv.deconvnet.path import UnsupportedModuleError
from deconv.errors import InvalidArgumentError

__all__ = ["ENGINE_CHOICES", "deconvnet_for"]

#: Accepted values of ``engine``: ``"auto"`` picks the explicit engine where it applies.
ENGINE_CHOICES = ("auto", "explicit", "generic")


def deconvnet_for(model, layer: str | int, engine: str = "auto", rule: str = "deconvnet"
                  ) -> Deconvnet | GenericDeconvnet:
    """The deconvnet engine that projects ``layer`` of ``model``.

    Args:
        model (nn.Module | LoadedModel): the network.
        layer (str | int): module name or paper layer number.
        engine (str): ``"auto"`` (explicit where the path to ``layer`` is a supported chain,
            else generic), ``"explicit"`` (raise when it is not) or ``"generic"``.
        rule (str): the ReLU backward rule of the generic engine (``"deconvnet"``, the paper's;
            ``"guided"``; ``"gradient"``). The explicit engine computes the paper's rule only,
            so ``"auto"`` with another rule gives the generic engine.

    Returns:
        Deconvnet | GenericDeconvnet: an engine with ``project``, ``project_feature_map``,
        ``top_units`` and ``resolve``.

    Raises:
        ValueError: unknown ``engine``, or ``engine="explicit"`` with another rule.
        UnsupportedModuleError: ``engine="explicit"`` on a path the explicit engine cannot
            invert (the message names the module).
    """
    if engine not in ENGINE_CHOICES:
        raise InvalidArgumentError(f"engine must be one of {ENGINE_CHOICES}, got {engine!r}")
    if engine == "explicit" and rule != "deconvnet":
        raise InvalidArgumentError(
            f"the explicit engine computes the deconvnet rule only, not {rule!r}; "
            "use engine='generic' or 'auto'")
    if engine == "generic" or rule != "deconvnet":
        return GenericDeconvnet(model, rule=rule)
    explicit = Deconvnet(model)
    try:
        explicit.path(layer)
    except UnsupportedModuleError:
        if engine == "explicit":
            raise
        return GenericDeconvnet(model, rule=rule)
    return explicit
