"""Exact receptive fields of any unit of any layer, computed from the layers themselves.

A unit ``(y, x)`` of a layer's output reads a rectangle of input pixels, its *receptive field*
(the image patch shown beside each projection in Zeiler & Fergus 2014, Fig. 2). Along each
spatial axis the fields of a layer form a regular grid: unit ``i`` covers the input pixels
``start + i * jump`` .. ``start + i * jump + size - 1``. Each layer maps the grid of its input
to the grid of its output:

* a window (convolution, max/avg/LP pooling) of kernel ``k``, stride ``s``, left padding ``p``
  and dilation ``d``: ``jump *= s``, ``start -= p * jump_in``, ``end += ((k-1)*d - p) * jump_in``
  (``ceil_mode`` only changes how many units there are, not where they look);
* padding (``F.pad``, ``nn.ZeroPad2d``, TF-"same" modules) and slicing shift ``start``;
* elementwise layers (ReLU, BatchNorm in eval, LRN, Dropout, Identity, ...) change nothing;
* merges (``+``, ``*``, ``torch.cat`` along channels) take the union of their operands'
  fields (smallest start, largest end), which requires equal jumps;
* layers that mix every position (global or adaptive-to-1 pooling, ``flatten``, ``Linear``,
  ``GroupNorm``, a mean over space) give every unit the same field: the union of all input
  positions. Such fields have ``jump == 0`` (:attr:`ReceptiveField.is_global`); for the units of
  a fully-connected layer ``output_size`` is ``(1, 1)`` and ``box(0, 0)`` is the whole image
  (less any border pixels that floor-mode strides drop: they reach no output).

Exactness at the borders: a unit whose window reaches into the padding of an intermediate
layer does not read the pixels that padding stands in for. ``box(y, x)`` (clipped) therefore
clips to ``valid_box`` (pixels some unit can read; smaller than the image when a floor-mode
stride drops the last rows or columns) and is empty for units outside ``live_units`` (units that
read only padding, e.g. the border added by ``nn.ZeroPad2d``). Both are None in the usual case.
With these, the clipped box equals the set of pixels with a nonzero gradient for the unit
(tests/test_receptive_field.py checks this on random networks).

The network's graph comes from ``torch.fx.symbolic_trace``. Submodules fx cannot trace (Python
code on shapes, such as TF-"same" padding computed from ``x.shape``) stay opaque calls whose
geometry is read from ``make_fx`` (ATen operations) at the actual input shape. Models whose own
``forward`` cannot be traced fall back to forward hooks on the leaf modules, linked by which
module produced each module's input tensor; a module input that no module produced (e.g. the
result of a functional ``x + y``) is **assumed** to be the output of the module that ran just
before it (reshaped by its shape), so merges done with functions are invisible in that mode (a
warning says so). Shapes come from one forward pass on fake tensors (no computation; the model
is left as it was, train/eval flags included).

Limits: the box is the bounding box of the field: a dilated kernel wider than its input's
field, or a union of two disjoint branches, reads pixels with gaps inside the box (and at a
merge ``valid_box`` is the hull of the branches'). Reflection and replication padding are
treated like zero padding (the mirrored pixels lie inside the image). Upsampling, transposed
convolutions and non-uniform adaptive pooling are rejected with :class:`ReceptiveFieldError`.

Modules: ``compute`` (the entry point, fake tensors, eval mode), ``field`` (the result and the
per-axis grid record), ``graph_walk`` (fx / make_fx tracing and propagation),
``hooks_fallback`` (forward-hook fallback), ``rule_table`` (which rule applies to which
operation), and the rules themselves: ``window_rules`` (convolution, pooling, padding),
``mixing_rules`` (merges, reductions, norms, linear), ``layout_rules`` (reshape, permute,
indexing), on the call record of ``op_call``.
"""

from deconv.receptive_field.compute import receptive_field
from deconv.receptive_field.field import ReceptiveField, ReceptiveFieldError

__all__ = ["ReceptiveField", "ReceptiveFieldError", "receptive_field"]
