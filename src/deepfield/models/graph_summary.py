"""``summary()`` of a functional model: one row per input and per layer, in graph order, with the
"Connected to" column as Keras shows it (``layer[node][index]`` of each tensor a layer reads).

Output shapes come from the symbolic tensors; parameters are counted as for a Sequential (a shared
layer once); multiply-adds from one dry pass of zero samples under torch's FlopCounterMode (a
shared layer's calls added up); activation memory per sample sums every call's outputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.flop_counter import FlopCounterMode

from deepfield.models.summary import LayerRow, ModelSummary, _counts

if TYPE_CHECKING:
    from deepfield.models.functional import Functional
    from deepfield.models.symbolic import Node, SymbolicTensor


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return int(torch.Size(shape).numel()) * torch.empty(0, dtype=dtype).element_size()


def summarize_graph(model: Functional) -> ModelSummary:
    """The :class:`ModelSummary` of ``model``, its rows in Keras's order (an input where it is first read)."""
    names = model._names
    node_index: dict[int, int] = {}
    calls: dict[int, int] = {}
    for node in model._nodes:
        node_index[id(node)] = calls.get(id(node.module), 0)
        calls[id(node.module)] = node_index[id(node)] + 1

    def source(t: SymbolicTensor) -> str:
        node = t.node
        if node is None:
            return f"{names[id(t)]}[0][0]"
        return f"{names[id(node.module)]}[{node_index[id(node)]}][{t.index}]"

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    examples = [torch.zeros((1, *t.sample_shape), dtype=t.dtype, device=device) for t in model._inputs]
    root = type(model).__name__
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*examples)
    finally:
        model.train(was_training)
    flops = counter.get_flop_counts()

    rows: list[LayerRow] = []
    shown: set[int] = set()
    by_name: dict[str, list[Node]] = {}
    for node in model._nodes:
        by_name.setdefault(names[id(node.module)], []).append(node)
    for node in model._nodes:
        for t in node.input_tensors:
            if t.node is None and id(t) not in shown:
                shown.add(id(t))
                rows.append(LayerRow(names[id(t)], "InputLayer", t.sample_shape, 0, 0, 0, 0, ()))
        if id(node.module) in shown:
            continue
        shown.add(id(node.module))
        name = names[id(node.module)]
        nodes, module = by_name[name], model._modules[name]  # the module there now (bayesianize swaps in place)
        trainable, non_trainable, _ = _counts(module)
        rows.append(LayerRow(
            name=name, type=type(module).__name__, output_shape=node.outputs[0].sample_shape,
            trainable=trainable, non_trainable=non_trainable,
            mult_adds=sum(flops.get(f"{root}.{name}", {}).values()) // 2,
            activation_bytes=sum(_nbytes(t.sample_shape, t.dtype) for n in nodes for t in n.outputs),
            connected=tuple(source(t) for n in nodes for t in n.input_tensors),
        ))
    trainable, non_trainable, nbytes = _counts(model)
    shape = model.input_shape
    return ModelSummary(name=model.name, input_shape=shape if isinstance(shape, tuple) else tuple(shape),
                        rows=rows, trainable=trainable, non_trainable=non_trainable, param_bytes=nbytes)
