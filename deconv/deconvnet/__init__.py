"""Deconvnet projections (Zeiler & Fergus 2014): units and feature maps to pixel space.

Two engines with one API (``project``, ``project_feature_map``, ``top_units``,
``activations``):

* :class:`Deconvnet`: the paper's explicit deconvnet (recorded switches, unpooling, ReLU,
  transposed filters) for chains of conv / ReLU / max-pool (+ LRN, BatchNorm, Dropout, Flatten,
  Linear, average pools); fast: many units go down together, each only through its
  receptive field.
* :class:`GenericDeconvnet`: the same projection by autograd with a ReLU backward rule
  (``"deconvnet"``, ``"guided"``, ``"gradient"``) for any architecture (residual adds,
  functional, inplace, reused ReLUs, ReLU6); one forward pass per image and one backward pass
  per unit, on receptive-field crops where they are small and exact.

:func:`deconvnet_for` is the one place that chooses between them; :func:`project_strongest`
finds and projects the strongest units of a layer. Pictures of projections are drawn by
:mod:`deconv.plots`.
"""

from deconv._deprecation import deprecated_names
from deconv.deconvnet.base import SEED_MODES, TopUnits
from deconv.deconvnet.choose import ENGINE_CHOICES, deconvnet_for
from deconv.deconvnet.explicit import Deconvnet
from deconv.deconvnet.generic import GenericDeconvnet
from deconv.deconvnet.path import SUPPORTED_MODULES, UnsupportedModuleError
from deconv.deconvnet.relu_rules import RULES, RectifierRules
from deconv.deconvnet.strongest import project_strongest

__all__ = ["Deconvnet", "ENGINE_CHOICES", "GenericDeconvnet", "RectifierRules", "RULES",
           "SEED_MODES", "SUPPORTED_MODULES", "TopUnits", "UnsupportedModuleError",
           "deconvnet_for", "project_strongest"]

__getattr__ = deprecated_names(__name__, {
    "crop_to_receptive_field": ("import it from deconv.plots",
                                "deconv.plots.projections:crop_to_receptive_field"),
    "normalize_for_display": ("import it from deconv.plots",
                              "deconv.plots.scaling:normalize_for_display"),
    "to_display_image": ("import it from deconv.plots", "deconv.plots.scaling:to_display_image"),
})
