"""Deconvnet projections (Zeiler & Fergus 2014): units and feature maps to pixel space.

Two engines with one API (``project``, ``project_feature_map``, ``top_units``,
``activations``):

* :class:`Deconvnet`: the paper's explicit deconvnet (recorded switches, unpooling, ReLU,
  transposed filters) for chains of conv / ReLU / max-pool (+ LRN, BatchNorm, Dropout, Flatten,
  Linear, average pools); fast: many units go down together, each only through its
  receptive field.
* :class:`GenericDeconvnet`: the same projection by autograd with a ReLU backward rule
  (``"deconvnet"``, ``"guided"``, ``"gradient"``) for any architecture (residual adds,
  functional, inplace, reused ReLUs, ReLU6).

Display helpers live in :mod:`deconv.deconvnet.display`.
"""

from deconv.deconvnet.base import SEED_MODES, TopUnits
from deconv.deconvnet.display import (
    crop_to_receptive_field,
    normalize_for_display,
    to_display_image,
)
from deconv.deconvnet.explicit import Deconvnet
from deconv.deconvnet.generic import GenericDeconvnet
from deconv.deconvnet.path import SUPPORTED_MODULES, UnsupportedModuleError
from deconv.deconvnet.relu_rules import RULES, RectifierRules

__all__ = ["Deconvnet", "GenericDeconvnet", "RectifierRules", "RULES", "SEED_MODES",
           "SUPPORTED_MODULES", "TopUnits", "UnsupportedModuleError", "crop_to_receptive_field",
           "normalize_for_display", "to_display_image"]
