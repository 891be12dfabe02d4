"""Forward hooks that hand each requested layer's output to a reducer the moment it exists.

Reducing inside the hook (instead of storing the output) is what keeps streaming statistics
cheap and correct with torchvision's ``ReLU(inplace=True)``: the tensor is read before any
later inplace op can change it, and nothing of its size outlives the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch
from torch import nn

from deconv.errors import InvalidArgumentError, LayerNotRunError
from deconv.layers import ReusedModuleError, check_tapped, module_of, resolve_layer
from deconv.model_state import StopForward, eval_mode, registered_hooks

__all__ = ["LayerTaps", "ReusedModuleError", "channel_counts"]


class LayerTaps:
    """Context manager that calls ``reducer(layer_name, output)`` for each tapped layer.

    On entering, the model is put in eval mode and one forward hook per layer is registered; on
    leaving (also after an exception) the hooks are removed and every module's ``training`` flag
    is restored, so the model is left exactly as it was.

    Args:
        model (nn.Module | LoadedModel): the network.
        layers (Sequence[str | int]): layer names or paper layer numbers (see
            :func:`deconv.resolve_layer`); each means that module's output tensor.
        reducer (Callable[[str, torch.Tensor], None]): called inside the hook with the module
            name and its output; must not keep a reference to the output.
        stop_early (bool): stop the forward pass once every tapped layer has run (the layers
            after the deepest one are not computed). The first :meth:`run` runs the full forward
            so that a module called twice per forward is detected; an error raised after every
            tap has fired is ignored there (that part of the network is not needed).

    Raises:
        ReusedModuleError: (in :meth:`run`) a tapped module runs more than once per forward.
    """

    def __init__(self, model, layers: Sequence[str | int],
                 reducer: Callable[[str, torch.Tensor], None], stop_early: bool = True):
        self.module = module_of(model)
        names = [resolve_layer(model, layer) for layer in layers]
        self.names = list(dict.fromkeys(names))  # unique, in the order given
        if not self.names:
            raise InvalidArgumentError("give at least one layer to tap")
        self.reducer = reducer
        self.stop_early = stop_early
        self._handles: list = []
        self._state = ExitStack()
        self._fired: set[str] = set()
        self._reduced = 0
        self._checked = False

    def __enter__(self) -> LayerTaps:
        with ExitStack() as stack:
            stack.enter_context(eval_mode(self.module))
            self._handles = stack.enter_context(registered_hooks(
                self.module.get_submodule(name).register_forward_hook(self._hook(name))
                for name in self.names))
            self._state = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._state.close()

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            check_tapped(name, module, output, name in self._fired)
            self._fired.add(name)
            self.reducer(name, output)
            self._reduced += 1
            if self.stop_early and self._checked and self._reduced == len(self.names):
                raise StopForward

        return hook

    @torch.no_grad()
    def run(self, images: torch.Tensor) -> None:
        """Forward ``images`` through the model, feeding the taps.

        Raises:
            RuntimeError: a tapped layer did not run (it is not on the path of ``forward``).
        """
        if not self._handles:
            raise RuntimeError("LayerTaps.run() must be called inside a `with LayerTaps(...)`")
        self._fired, self._reduced = set(), 0
        try:
            self.module(images)
        except StopForward:
            pass
        except ReusedModuleError:
            raise
        except Exception:
            # The first pass runs past the taps only to find reused modules; if the part after
            # the last tap cannot run (e.g. fixed-size fully-connected layers on a smaller
            # input), it is not needed.
            if not self.stop_early or self._checked or self._reduced < len(self.names):
                raise
        self._checked = True
        missing = [n for n in self.names if n not in self._fired]
        if missing:
            raise LayerNotRunError(f"layers {missing} did not run during forward(); they are not "
                                       f"used by the model's forward pass")


def channel_counts(model, images: torch.Tensor, layers) -> dict[str, int]:
    """Channels of each of ``layers`` (module names), from one forward of ``images``."""
    counts: dict[str, int] = {}

    def count(name: str, output: torch.Tensor) -> None:
        counts[name] = int(output.shape[1])

    with LayerTaps(model, list(layers), count) as taps:
        taps.run(images)
    return counts
