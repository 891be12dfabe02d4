"""Top-k mining over a dataset (Zeiler & Fergus 2014, Fig. 2): which images excite a channel most.

``mine_top_k`` streams a dataset once and keeps, per channel of each layer, the k strongest
activations as (value, image id, y, x) in a :class:`TopKResult` that saves, loads and merges
exactly.
"""

from deconv._deprecation import deprecated_names
from deconv.mining.distinct import distinct_top_k
from deconv.mining.result import TopKEntry, TopKResult, merge_top_k
from deconv.mining.sources import Batch, ImageList, SampleCrops, as_dataset, iter_batches
from deconv.mining.taps import LayerTaps, ReusedModuleError
from deconv.mining.top_k import mine_top_k

__all__ = [
    "Batch",
    "ImageList",
    "LayerTaps",
    "ReusedModuleError",
    "SampleCrops",
    "TopKEntry",
    "TopKResult",
    "as_dataset",
    "distinct_top_k",
    "iter_batches",
    "merge_top_k",
    "mine_top_k",
]

# Implementation helpers exported here before; they stay in their modules.
__getattr__ = deprecated_names(__name__, {
    "select_top_k": ("import it from deconv.mining.result", "deconv.mining.result:select_top_k"),
    "batch_candidates": ("import it from deconv.mining.top_k",
                         "deconv.mining.top_k:batch_candidates"),
})
