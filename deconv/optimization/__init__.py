"""Feature visualization by optimization (Olah, Mordvintsev & Schubert, Distill 2017).

Four words that are easy to confuse, in plain terms:

* A **feature map** is one channel of a layer's output: for each position of the input, one
  number saying how strongly "its" pattern is present there. It belongs to an image: a new
  image gives a new feature map.
* A **filter** is the set of weights that computes a feature map from the layer below (a
  small 3-D kernel slid over the input). It belongs to the network and is the same for every
  image. Only for the first layer is it directly a picture (Fig. 6 of Zeiler & Fergus).
* A **projection** (the deconvnet of Zeiler & Fergus 2014) takes one strong activation of a
  feature map *in a real image* and maps it back to pixel space: it shows which parts of *that
  image* made the unit fire. Several projections (one per top-9 image) show what the feature
  map responds to in the data.
* An **optimum** (this package) ignores the data: it starts from noise and changes the pixels
  until the feature map is as large (**positive optimum**) or as small, i.e. most negative
  before the ReLU (**negative optimum**), as possible. It shows what the feature map *wants*
  when nothing holds it back, including patterns that never occur in real photos; the
  negative optimum shows what switches it off. Without regularization the optimum is
  high-frequency noise the network reads but people do not; transformation robustness, a
  decorrelated colour space and a 1/f Fourier parametrization make it readable.

Side by side (``experiments/fig_optimization.py``): the optima say what a feature map is
tuned to; the top-9 patches and their projections say where it fires in real images.

Usage::

    from deconv import load_model
    from deconv.optimization import channel, visualize_feature

    vgg = load_model("hed-vgg16")
    result = visualize_feature(vgg, [channel(3, 41, pre_activation=True),
                                     -channel(3, 41, pre_activation=True)])
    positive, negative = result.images      # pixels in [0, 1]
"""

from deconv._deprecation import deprecated_names
from deconv.optimization.batched import SIGNS, ChannelOptima, optimize_channels
from deconv.optimization.objectives import (
    ActivationCapture,
    Objective,
    ReusedModuleError,
    Tap,
    channel,
    class_logit,
    diversity,
    evaluate,
    is_activation_layer,
    layer_activation,
    neuron,
    optima_objectives,
    per_image,
    redirected_relu,
)
from deconv.optimization.parametrizations import (
    COLOR_CORRELATION_SVD_SQRT,
    FourierImage,
    ImageParam,
    PixelImage,
    colour_correlation_sqrt,
    from_rgb,
    make_image,
    to_rgb,
)
from deconv.optimization.transforms import (
    Compose,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    standard_transforms,
)
from deconv.optimization.visualize import (
    FeatureVisualization,
    _preserved_model_state,
    visualize_feature,
)

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT", "SIGNS", "ActivationCapture", "ChannelOptima", "Compose",
    "FeatureVisualization", "FourierImage", "ImageParam", "Jitter", "Objective", "Pad",
    "PixelImage", "RandomRotate", "RandomScale", "ReusedModuleError", "Tap", "channel",
    "class_logit", "colour_correlation_sqrt", "diversity", "evaluate", "from_rgb",
    "is_activation_layer", "layer_activation", "make_image", "neuron", "optima_objectives",
    "optimize_channels", "per_image", "redirected_relu", "standard_transforms", "to_rgb",
    "visualize_feature",
]

__getattr__ = deprecated_names(__name__, {
    "preserved_model_state": ("use deconv.model_state.eval_mode(model, requires_grad=False)",
                              _preserved_model_state),
})
