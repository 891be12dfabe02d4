"""Top-k mining over a dataset (Zeiler & Fergus 2014, Fig. 2): which images excite a channel most.

``mine_top_k`` streams a dataset once and keeps, per channel of each layer, the k strongest
activations as (value, image id, y, x) in a :class:`TopKResult` that saves, loads and merges
exactly.
"""

from deconv.mining.result import TopKEntry, TopKResult, merge_top_k, select_top_k
from deconv.mining.sources import Batch, ImageList, SampleCrops, as_dataset, iter_batches
from deconv.mining.taps import LayerTaps, ReusedModuleError
from deconv.mining.top_k import batch_candidates, mine_top_k

__all__ = ["Batch", "ImageList", "LayerTaps", "ReusedModuleError", "SampleCrops", "TopKEntry",
           "TopKResult", "as_dataset", "batch_candidates", "iter_batches", "merge_top_k",
           "mine_top_k", "select_top_k"]
