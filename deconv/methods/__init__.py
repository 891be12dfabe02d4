"""Every attribution method behind one call: ``attribute(method, model, images, target)``.

``list_methods()`` names them: ours (``"deconvnet"``, ``"guided-backprop"``, ``"occlusion"``)
and captum's (``"captum-saliency"``, ``"captum-input-x-gradient"``, ``"captum-deconvolution"``,
``"captum-guided-backprop"``, ``"captum-integrated-gradients"``, ``"captum-occlusion"``,
``"captum-layer-gradcam"``, ``"captum-guided-gradcam"``). Each returns one map per image of the
image's size, with a documented reduction over colour channels (``method_info(name).reduction``,
see :data:`REDUCTIONS`); :func:`deconv.plots.scale_for_display` puts any of them on one display
scale.
"""

from deconv._deprecation import deprecated_names

# The built-in methods register themselves with @register_method on import (the zoo's and
# timm's convention): importing the package lists them, nothing is loaded lazily.
from deconv.methods import captum_methods, ours  # noqa: F401  (registration)
from deconv.methods.gradcam_layer import last_conv_layer
from deconv.methods.model_state import _inference_state
from deconv.methods.registry import (
    REDUCTIONS,
    MethodInfo,
    attribute,
    list_methods,
    method_info,
    reduce_channels,
    register_method,
)

__all__ = ["REDUCTIONS", "MethodInfo", "attribute", "last_conv_layer",
           "list_methods", "method_info", "reduce_channels", "register_method"]

__getattr__ = deprecated_names(__name__, {
    "inference_state": ("use deconv.model_state.eval_mode(model, inplace=False)",
                        _inference_state),
    "scale_for_display": ("import it from deconv.plots",
                          "deconv.plots.scaling:scale_for_display"),
})
