"""Symbolic tensors: what ``Input`` returns and what a layer called on one returns (Keras's KerasTensor).

A :class:`SymbolicTensor` has a shape (batch axis first, ``None``), a dtype and the :class:`Node`
that made it: the module called and the symbolic tensors it was called on. A functional model
(:mod:`deepfield.models.functional`) walks these nodes back from its outputs to its inputs.

When a module is called on symbolic tensors (:func:`symbolic_call`), a deepfield layer is built
for the input shapes (its parameters are real, on the CPU, as Keras builds them), then the output
shapes come from one forward pass on PyTorch's ``meta`` device: the module's parameters and
buffers are swapped for meta copies (``torch.func.functional_call``, no data copied) and a
``(1, *shape)`` meta input goes through. A shape pass rather than a shape rule per layer, because
it is exact for every module that runs (deepfield's layers, the ones other issues add, plain
torch code inside blocks, nested models) with no second description of each layer to keep in
step; an operation without a meta kernel falls back to one real pass on a zero sample (eval mode,
no gradients). A layer that cannot take the shapes gets one line naming it and the shapes.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError


class Node:
    """One call of ``module`` on symbolic ``inputs`` (a tensor or a list of them), making ``outputs``;
    ``several``: the module returns a list (or dict) of tensors, not one tensor."""

    def __init__(self, module: nn.Module, inputs: Any, outputs: list[SymbolicTensor], several: bool = False):
        self.module, self.inputs, self.outputs, self.several = module, inputs, outputs, several

    @property
    def input_tensors(self) -> list[SymbolicTensor]:
        """The symbolic tensors called on, flat, in order."""
        return flatten(self.inputs)


class SymbolicTensor:
    """A placeholder for a batch: ``shape`` is ``(None, *sample_shape)``, channels first.

    ``node`` made it (``None`` for an :func:`Input`), ``index`` is its place among the node's outputs.
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32, name: str | None = None,
                 node: Node | None = None, index: int = 0):
        self.sample_shape = tuple(shape)
        self.dtype, self.name, self.node, self.index = dtype, name, node, index

    @property
    def shape(self) -> tuple[int | None, ...]:
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.sample_shape) + 1

    def __repr__(self) -> str:
        made = "Input" if self.node is None else type(self.node.module).__name__
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} from {made}{f' {self.name!r}' if self.name else ''}>"


def Input(shape: tuple[int, ...] | list[int], name: str | None = None,  # noqa: N802  (Keras's name)
          dtype: torch.dtype | str = "float32") -> SymbolicTensor:
    """An input of a functional model: samples of ``shape`` (no batch axis, channels first:
    ``(C, H, W)`` for images, ``(features,)`` for tables). ``name`` is the key of this input
    when ``fit``/``predict`` get a dict (default ``input_layer``, ``input_layer_1``, ...)."""
    sizes = arguments.shape(f"Input{f' {name!r}' if name else ''} shape", shape)
    if name is not None and (not isinstance(name, str) or not name):
        raise DeepfieldError(f"Input name must be a non-empty string, got {name!r}")
    dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(dtype, torch.dtype):
        raise DeepfieldError(f"Input dtype must be a torch dtype or its name ('float32', 'int64'), got {dtype!r}")
    return SymbolicTensor(sizes, dtype, name)


def flatten(structure: Any) -> list[SymbolicTensor]:
    """The symbolic tensors of a tensor, list, tuple or dict (values in order)."""
    if isinstance(structure, SymbolicTensor):
        return [structure]
    if isinstance(structure, dict):
        structure = list(structure.values())
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in flatten(item)]
    return []


def is_symbolic(x: Any) -> bool:
    """Whether ``x`` is a symbolic tensor or a list/tuple of them (what starts a symbolic call)."""
    return isinstance(x, SymbolicTensor) or (isinstance(x, (list, tuple)) and bool(x)
                                             and all(isinstance(t, SymbolicTensor) for t in x))


def sample_shapes(inputs: Any) -> Any:
    """Sample shapes (no batch axis) of a tensor (real or symbolic) or of a list of them, for ``build``."""
    if isinstance(inputs, (list, tuple)):
        return [sample_shapes(t) for t in inputs]
    if isinstance(inputs, SymbolicTensor):
        return inputs.sample_shape
    return tuple(int(s) for s in inputs.shape[1:])


def label(module: nn.Module) -> str:
    """``Conv2D 'conv2d'``: the module's class and name (a layer's default name when unnamed), for messages."""
    known = getattr(module, "label", None)
    if isinstance(known, str):
        return known
    name = getattr(module, "name", None)
    return f"{type(module).__name__}{f' {name!r}' if name else ''}"


def _shapes_text(inputs: Any) -> str:
    if isinstance(inputs, (list, tuple)):
        return "[" + ", ".join(_shapes_text(t) for t in inputs) + "]"
    return str(inputs.shape)


def symbolic_call(module: nn.Module, inputs: Any, args: tuple, kwargs: dict) -> Any:
    """Call ``module`` on symbolic ``inputs``: build it if it is a lazy layer, infer the output
    shapes, record a :class:`Node`; returns a symbolic tensor (or a list for several outputs)."""
    if args or kwargs:
        raise DeepfieldError(f"{label(module)}: in a functional model a layer is called on its input tensor(s) "
                             f"alone, got extra arguments {[*map(type, args), *kwargs]}")
    if isinstance(inputs, tuple):
        inputs = list(inputs)
    if not getattr(module, "built", True):
        try:
            if hasattr(module, "build_for"):  # a deepfield layer
                _check_size(module, inputs)
                device = next((p.device for p in module.parameters()), torch.device("cpu"))
                module.build_for(sample_shapes(inputs), device)
            else:  # a Sequential: its build checks sizes itself
                module.build(sample_shapes(inputs))  # type: ignore[operator]
        except DeepfieldError as exc:
            message, name = str(exc), label(module)
            if message.startswith(f"{name} "):  # a sentence about the layer and what it was given: as it is
                raise
            raise DeepfieldError(f"{name} cannot take inputs of shape {_shapes_text(inputs)}: "
                                 f"{message.removeprefix(f'{name}: ')}") from None
    outputs, several = _output_specs(module, inputs)
    node = Node(module, inputs, [], several)
    node.outputs = [SymbolicTensor(shape, dtype, node=node, index=i) for i, (shape, dtype) in enumerate(outputs)]
    return list(node.outputs) if several else node.outputs[0]


def _meta(inputs: Any) -> Any:
    if isinstance(inputs, list):
        return [_meta(t) for t in inputs]
    return torch.zeros((1, *inputs.sample_shape), dtype=inputs.dtype, device="meta")


def _real(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, list):
        return [_real(t, device) for t in inputs]
    return torch.zeros((1, *inputs.sample_shape), dtype=inputs.dtype, device=device)


def _run_shape_pass(module: nn.Module, inputs: Any) -> Any:
    """The module's output for one sample, on the meta device if it can, else for real."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            try:
                state = {name: t.to("meta") for name, t in [*module.named_parameters(), *module.named_buffers()]}
                return torch.func.functional_call(module, state, (_meta(inputs),))
            except Exception:  # no meta kernel, a tensor made on the CPU inside forward, or a real mistake:
                pass           # the real pass below either works or says which
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            try:
                return module(_real(inputs, device))
            except (RuntimeError, ValueError, IndexError, TypeError, DeepfieldError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DeepfieldError(f"{label(module)} cannot take inputs of shape {_shapes_text(inputs)}: "
                                     f"{reason}") from None
    finally:
        module.train(was_training)


def _output_specs(module: nn.Module, inputs: Any) -> tuple[list[tuple[tuple[int, ...], torch.dtype]], bool]:
    """(shape, dtype) of each output of ``module`` for ``inputs``, and whether it returns a list."""
    out = _run_shape_pass(module, inputs)
    if isinstance(out, dict):  # a nested model with named outputs: its values, in order
        out = list(out.values())
    several = isinstance(out, (list, tuple))
    tensors = list(out) if several else [out]
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise DeepfieldError(f"{label(module)} returned {type(out).__name__}; a layer in a functional model must "
                             "return a tensor or a list of tensors")
    for t in tensors:
        if t[0].numel() > arguments.MAX_ELEMENTS:
            raise DeepfieldError(f"{label(module)} would compute {t[0].numel():,} numbers for one sample; deepfield "
                                 f"allows at most {arguments.MAX_ELEMENTS:,} (8 GiB in float32): is a size wrong?")
    return [(tuple(t.shape[1:]), t.dtype) for t in tensors], several


def _check_size(module: nn.Module, inputs: Any) -> None:
    """Refuse a lazy layer that would hold more than MAX_ELEMENTS parameters, by building a copy on meta first."""
    try:
        with torch.device("meta"):
            ghost = copy.deepcopy(module)
            ghost.build_for(sample_shapes(inputs))  # type: ignore[operator]
    except Exception:  # a build that cannot run on meta is left to the real build, which reports its own errors
        return
    total = sum(p.numel() for p in ghost.parameters())
    if total > arguments.MAX_ELEMENTS:
        raise DeepfieldError(f"{label(module)} would hold {total:,} parameters; deepfield builds at most "
                             f"{arguments.MAX_ELEMENTS:,} (8 GiB in float32): is its size wrong?")
