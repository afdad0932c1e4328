"""What a bundle's graph may do: the operator allow-list, argument rules and size limits.

Loading a bundle must be as safe as loading safetensors: its graph may compute with the
request and the stored tensors, and nothing else. So :class:`~hybridnb.serve.graph.SafeGraph`
runs only the operators named here, with the argument values named here, within the
limits of :class:`GraphLimits`; everything else is refused at load with a message that
names the node, the operator and the argument.

The base is PyTorch's *core ATen operator set* (operators tagged ``torch.Tag.core``, the
opset that ``torch.export`` decomposes to and that ExecuTorch and AOTInductor implement),
less the classes listed in :data:`EXCLUDED_CORE`, each with the reason, plus the few
non-core operators that ``torch.export`` leaves whole in the graphs hybridnb writes
(:data:`EXTRA_OPS`). An operator PyTorch adds to the core set later is refused until it
is classified here (``tests/serve/test_graph_safety.py`` says so on an upgrade).

>>> refusal("aten.linear.default") is None
True
>>> print(refusal("aten.from_file.default"))
it is not on hybridnb's operator allow-list
>>> print(refusal("aten.empty.memory_format"))  # doctest: +ELLIPSIS
it reads memory it never wrote: ...
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphLimits:
    """Caps on what one graph may ask for; the defaults are what :func:`load_bundle` uses.

    Sizes are checked at load, before anything runs, for every batch size a call can
    have (see :mod:`hybridnb.serve.graph_shapes`): a value computed from the request may
    take at most ``max_row_bytes`` per input row, all of them together
    ``max_total_row_bytes`` per row; a value computed only from stored tensors (folded
    once at load) at most ``max_tensor_bytes``, all stored and folded tensors together
    ``max_constant_bytes``.

    Parameters
    ----------
    max_nodes:
        Operator calls in one graph.
    max_depth:
        Nesting of lists inside one argument (``[1, 2]`` is 1; ATen needs no more).
    max_list:
        Items in one list argument.
    max_int:
        Magnitude of any integer, literal or computed (sizes, dims, arithmetic).
    max_batch:
        Rows per call the sizes are proven for; a longer batch runs in chunks of this
        many rows (rows are independent, as the server's dynamic batching assumes).
        ``bundle()`` exports with the same default bound.
    max_row_bytes, max_total_row_bytes, max_tensor_bytes, max_constant_bytes:
        The size caps above.

    >>> GraphLimits().max_row_bytes // 2**20
    16
    """

    max_nodes: int = 5000
    max_depth: int = 2
    max_list: int = 4096
    max_int: int = 2**62
    max_batch: int = 1 << 16
    max_row_bytes: int = 16 << 20
    max_total_row_bytes: int = 64 << 20
    max_tensor_bytes: int = 1 << 30
    max_constant_bytes: int = 4 << 30


#: Core ATen operators a graph may call. Views (``view``, ``expand``, ``select``...) are
#: here because no operator on this list writes into a tensor: a view can only be read,
#: within its base's bounds.
CORE_OPS = frozenset({
    "aten._adaptive_avg_pool2d.default", "aten._adaptive_avg_pool3d.default",
    "aten._cdist_forward.default", "aten._embedding_bag.default", "aten._fft_c2r.default",
    "aten._fft_r2c.default", "aten._log_softmax.default",
    "aten._native_batch_norm_legit_no_training.default", "aten._pdist_forward.default",
    "aten._softmax.default", "aten._to_copy.default", "aten.abs.default",
    "aten.acos.default", "aten.acosh.default", "aten.adaptive_avg_pool1d.default",
    "aten.add.Scalar", "aten.add.Tensor", "aten.addmm.default", "aten.amax.default",
    "aten.amin.default", "aten.any.default", "aten.any.dim", "aten.any.dims",
    "aten.arange.start_step", "aten.argmax.default", "aten.argmin.default",
    "aten.asin.default", "aten.asinh.default", "aten.atan.default", "aten.atan2.default",
    "aten.atanh.default", "aten.avg_pool1d.default", "aten.avg_pool2d.default",
    "aten.avg_pool3d.default", "aten.bitwise_and.Scalar", "aten.bitwise_and.Tensor",
    "aten.bitwise_not.default", "aten.bitwise_or.Scalar", "aten.bitwise_or.Tensor",
    "aten.bitwise_xor.Scalar", "aten.bitwise_xor.Tensor", "aten.bmm.default",
    "aten.cat.default", "aten.ceil.default", "aten.clamp.Tensor", "aten.clamp.default",
    "aten.clone.default", "aten.col2im.default", "aten.constant_pad_nd.default",
    "aten.convolution.default", "aten.copy.default", "aten.cos.default",
    "aten.cosh.default", "aten.cumsum.default", "aten.diagonal.default", "aten.div.Scalar",
    "aten.div.Scalar_mode", "aten.div.Tensor", "aten.div.Tensor_mode", "aten.elu.default",
    "aten.embedding.default", "aten.eq.Scalar", "aten.eq.Tensor", "aten.erf.default",
    "aten.exp.default", "aten.expand.default", "aten.expm1.default", "aten.fill.Scalar",
    "aten.flip.default", "aten.floor.default", "aten.fmod.Scalar", "aten.fmod.Tensor",
    "aten.full.default", "aten.full_like.default", "aten.gather.default", "aten.ge.Scalar",
    "aten.ge.Tensor", "aten.gelu.default", "aten.grid_sampler_2d.default",
    "aten.gt.Scalar", "aten.gt.Tensor", "aten.hardtanh.default", "aten.index.Tensor",
    "aten.index_put.default", "aten.index_select.default", "aten.isinf.default",
    "aten.isnan.default", "aten.le.Scalar", "aten.le.Tensor", "aten.leaky_relu.default",
    "aten.log.default", "aten.log10.default", "aten.log1p.default", "aten.log2.default",
    "aten.logical_and.default", "aten.logical_not.default", "aten.logical_or.default",
    "aten.logical_xor.default", "aten.lt.Scalar", "aten.lt.Tensor",
    "aten.masked_scatter.default", "aten.max.dim", "aten.max_pool2d_with_indices.default",
    "aten.max_pool3d_with_indices.default", "aten.maximum.default", "aten.mean.default",
    "aten.mean.dim", "aten.min.dim", "aten.minimum.default", "aten.mm.default",
    "aten.mul.Scalar", "aten.mul.Tensor", "aten.native_group_norm.default",
    "aten.native_layer_norm.default", "aten.ne.Scalar", "aten.ne.Tensor",
    "aten.neg.default", "aten.permute.default", "aten.pow.Scalar",
    "aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.prod.default",
    "aten.prod.dim_int", "aten.reciprocal.default", "aten.reflection_pad1d.default",
    "aten.reflection_pad2d.default", "aten.reflection_pad3d.default", "aten.relu.default",
    "aten.remainder.Scalar", "aten.remainder.Tensor", "aten.repeat.default",
    "aten.replication_pad2d.default", "aten.replication_pad3d.default",
    "aten.round.default", "aten.rsqrt.default", "aten.scalar_tensor.default",
    "aten.scatter.src", "aten.scatter.value", "aten.scatter_add.default",
    "aten.scatter_reduce.two", "aten.select.int", "aten.select_scatter.default",
    "aten.sigmoid.default", "aten.sign.default", "aten.sin.default", "aten.sinh.default",
    "aten.slice.Tensor", "aten.slice_scatter.default", "aten.sort.default",
    "aten.split_with_sizes.default", "aten.sqrt.default", "aten.squeeze.dim",
    "aten.squeeze.dims", "aten.sub.Scalar", "aten.sub.Tensor", "aten.sum.dim_IntList",
    "aten.sym_numel.default", "aten.sym_size.int", "aten.tan.default", "aten.tanh.default",
    "aten.topk.default", "aten.trunc.default", "aten.unsqueeze.default",
    "aten.upsample_bilinear2d.vec", "aten.upsample_nearest2d.vec", "aten.var.correction",
    "aten.var.dim", "aten.view.default", "aten.where.self",
})

#: Core ATen operators left out, by why. Together with :data:`CORE_OPS` they are the
#: whole core set of the PyTorch hybridnb pins (a test checks).
EXCLUDED_CORE: dict[str, frozenset[str]] = {
    # An uninitialized tensor holds whatever the allocator last kept there: bytes of an
    # earlier request, a key the process read. Returning it would leak server memory.
    "it reads memory it never wrote: an uninitialized tensor holds what the process "
    "freed there (other requests, keys)": frozenset({
        "aten.empty.memory_format", "aten.empty_strided.default"}),
    # as_strided addresses a tensor's storage directly (overlapping, past its shape);
    # strides, offsets and aliases are layout details no exported layer needs.
    "it addresses raw storage (strides, offsets, aliases) rather than shapes": frozenset({
        "aten.as_strided.default", "aten.alias.default", "aten.sym_stride.int",
        "aten.sym_storage_offset.default", "aten.sym_is_contiguous.default"}),
    # Random draws read and advance the process-wide generator: the answer would not be
    # a function of the request, and the graph would observe state other code seeds.
    "it draws from the process's random generator, state beyond the graph's inputs":
        frozenset({"aten.rand.default", "aten.randn.default", "aten.randperm.default",
                   "aten.native_dropout.default"}),
    # A size read from tensor values cannot be bounded at load from shapes alone.
    "its output size depends on tensor values, which cannot be bounded at load": frozenset({
        "aten._local_scalar_dense.default", "aten.nonzero.default"}),
    # A bundle serves inference; gradient kernels take masks and buffers no forward pass
    # makes, and training-mode batch norm updates its statistics in place.
    "it is a training (backward or batch-statistics) kernel; a bundle serves inference":
        frozenset({"aten._adaptive_avg_pool2d_backward.default",
                   "aten.avg_pool2d_backward.default", "aten.convolution_backward.default",
                   "aten.embedding_dense_backward.default",
                   "aten.max_pool2d_with_indices_backward.default",
                   "aten.native_group_norm_backward.default",
                   "aten.native_layer_norm_backward.default",
                   "aten._native_batch_norm_legit.default",
                   "aten._native_batch_norm_legit.no_stats"}),
    # out= and in-place variants write into an argument: a stored weight, the request.
    "it writes into one of its arguments": frozenset({"aten.atan2.out", "aten.resize_.default"}),
}

#: Non-core operators a graph may call, by why. ``torch.export`` keeps these layers
#: whole (they are composites of core operators, decomposed when they run); the argument
#: rules below remove their training-mode and random variants.
EXTRA_OPS: dict[str, frozenset[str]] = {
    "layers in the graphs torch.export writes for nn modules": frozenset({
        "aten.linear.default", "aten.matmul.default", "aten.t.default",
        "aten.transpose.int", "aten.reshape.default", "aten.flatten.using_ints",
        "aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default",
        "aten.conv1d.padding", "aten.conv2d.padding", "aten.conv3d.padding",
        "aten.conv_transpose1d.default", "aten.conv_transpose2d.input",
        "aten.conv_transpose3d.input", "aten.max_pool1d.default", "aten.max_pool2d.default",
        "aten.max_pool3d.default", "aten.adaptive_avg_pool2d.default",
        "aten.batch_norm.default", "aten.layer_norm.default", "aten.group_norm.default",
        "aten.dropout.default", "aten.softmax.int", "aten.log_softmax.int",
        "aten.silu.default", "aten.hardswish.default", "aten.sum.default",
        "aten.arange.default", "aten.arange.start"}),
    "dtype conversions (.float(), .to()) and the metadata checks export puts before them":
        frozenset({"aten.to.dtype", "aten.to.device", "aten._assert_tensor_metadata.default"}),
    "what hybridnb.serve.compress_graph writes (int8-dynamic Linear layers)": frozenset({
        "aten._int_mm.default", "aten.clamp_min.default"}),
}

#: Python functions ``torch.export`` leaves in graphs: tuple access and symbolic-size
#: arithmetic. They run on numbers only (checked), never on lists or tensors.
PY_OPS = ("operator.getitem", "operator.add", "operator.sub", "operator.mul",
          "operator.floordiv", "operator.truediv", "operator.mod", "operator.neg")

ALLOWED = CORE_OPS.union(*EXTRA_OPS.values())

#: The only values string arguments may take, per ``(operator, argument)``; any other
#: string anywhere in a graph is refused.
STRING_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("aten.div.Tensor_mode", "rounding_mode"): ("trunc", "floor"),
    ("aten.div.Scalar_mode", "rounding_mode"): ("trunc", "floor"),
    ("aten.gelu.default", "approximate"): ("none", "tanh"),
    ("aten.scatter_reduce.two", "reduce"): ("sum", "prod", "mean", "amax", "amin"),
    ("aten.conv1d.padding", "padding"): ("valid", "same"),
    ("aten.conv2d.padding", "padding"): ("valid", "same"),
    ("aten.conv3d.padding", "padding"): ("valid", "same"),
}

#: Arguments with fixed values, per ``(operator, argument)``: training-mode batch norm
#: updates its stored statistics in place, training-mode dropout draws random numbers.
ARG_VALUES: dict[tuple[str, str], tuple[object, ...]] = {
    ("aten.batch_norm.default", "training"): (False,),
    ("aten.dropout.default", "train"): (False,),
}

#: Tensor dtypes a graph may name or store (no quantized or float8 types: their kernels
#: trust scales and zero points they are given).
DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
          "uint8", "bool", "complex64", "complex128")
#: Devices: the graph runs where it was loaded; naming another device would move data
#: to an accelerator or to a backend (meta, lazy) with other rules.
DEVICES = ("cpu",)
#: Layouts: sparse constructors trust indices they are given.
LAYOUTS = ("strided",)
MEMORY_FORMATS = ("contiguous_format", "preserve_format", "channels_last",
                  "channels_last_3d")


def refusal(name: str) -> str | None:
    """Why the operator ``name`` (``"aten.linear.default"``) may not run, or ``None``.

    >>> print(refusal("aten.rand.default"))  # doctest: +ELLIPSIS
    it draws from the process's random generator...
    """
    if name in ALLOWED or name in PY_OPS:
        return None
    for why, names in EXCLUDED_CORE.items():
        if name in names:
            return why
    return "it is not on hybridnb's operator allow-list"
