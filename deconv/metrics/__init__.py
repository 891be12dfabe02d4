"""Quantitative metrics for attribution maps, reusable on your own models and data.

* :mod:`~deconv.metrics.deletion_insertion`: deletion / insertion curves and areas (Petsiuk
  et al. 2018).
* :mod:`~deconv.metrics.pointing_game`: pointing game with a 15 px tolerance (Zhang et al.
  2016), boxes mapped through the model's preprocessing.
* :mod:`~deconv.metrics.sanity_check`: cascading model randomization with Spearman and SSIM
  (Adebayo et al. 2018).
"""

from deconv.metrics.deletion_insertion import (
    CausalCurve,
    blur_substrate,
    causal_curve,
    deletion,
    insertion,
    zeros_substrate,
)
from deconv.metrics.pointing_game import (
    TOLERANCE,
    PointingResult,
    box_to_input,
    load_object_boxes,
    pointing_game,
    pointing_hit,
)
from deconv.metrics.sanity_check import (
    SanityCheck,
    cascading_randomization,
    input_dependence,
    randomize_parameters,
    spearman,
    ssim,
)
from deconv.metrics.switches import record_switches, switch_agreement, transplanted_switches

__all__ = ["CausalCurve", "causal_curve", "deletion", "insertion", "zeros_substrate",
           "blur_substrate", "TOLERANCE", "PointingResult", "pointing_game", "pointing_hit",
           "box_to_input", "load_object_boxes", "SanityCheck", "cascading_randomization",
           "input_dependence", "randomize_parameters", "spearman", "ssim", "record_switches",
           "switch_agreement", "transplanted_switches"]
