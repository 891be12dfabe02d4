"""``deconv atlas``: a static, offline website of every feature map of chosen layers.

Per channel: the top-k dataset patches cropped to the receptive field, their deconvnet and
guided-backprop projections, positive and negative optima, layer-1 filter weights, the
activation histogram and dead fraction, the labels of the top-k and the strongest-weight
channels of the neighbouring layers; per layer a sortable table; an index with the model
card; ``atlas.json`` with every number and every file's size and SHA-256.

Usage::

    from deconv import build_atlas, load_model

    build = build_atlas(load_model("zfnet-fashion"), "fashion-mnist:test", [1, 2, 3, 4, 5],
                        "atlas/")
    print(build.index)   # open it in a browser (file://, no network)
"""

from deconv.atlas.build import FORMAT, AtlasBuild, build_atlas
from deconv.atlas.sources import QUICK_IMAGES, AtlasData, atlas_data
from deconv.atlas.stats import label_entropy
from deconv.atlas.workdir import AtlasMismatchError

__all__ = ["FORMAT", "QUICK_IMAGES", "AtlasBuild", "AtlasData", "AtlasMismatchError",
           "atlas_data", "build_atlas", "label_entropy"]
