"""Where and how fast training runs: device, mixed precision, memory format, compilation.

``resolve_device(None)`` picks the best accelerator present (cuda, then mps, then cpu).
``Precision("bf16")`` runs the training step's forward and loss under ``torch.autocast`` in
bfloat16 (CPU included); ``"fp16"`` uses float16 and, on CUDA, a ``GradScaler`` so small
gradients do not underflow. Parameters and optimiser state stay float32 in every mode, and
evaluation and prediction run in float32 (the engine's choice: see :class:`~.engine.Engine`).

Every speed switch takes ``"auto"`` (the default), which picks what is fastest on the
device found (:func:`fastest_precision`, :func:`wants_channels_last`, :func:`wants_compile`):

==================  ====================================  =====================================
switch              CUDA GPU                              CPU (and MPS)
==================  ====================================  =====================================
precision           bf16 (fp16 + loss scaling before       bf16 for 2-d convolutional networks
                    Ampere, which has no fast bf16)        on CPUs with AMX tiles; else fp32
channels_last       on for 2-d convolutional networks     on for 2-d convolutional networks
                    (cuDNN's NHWC kernels, tensor cores)   (oneDNN's blocked kernels: +25 % on the
                                                           course CNN, 2 cores)
jit_compile         off                                   off
==================  ====================================  =====================================

``jit_compile`` (Keras's name) stays off unless asked for: ``torch.compile`` spends tens of
seconds compiling, again for every new batch shape (the last batch of an epoch, evaluation),
which the runs of a course-sized network do not win back. Compiled, random ops (dropout)
draw from inductor's own generator, so results are not bitwise those of eager mode
(``torch._inductor.config.fallback_random = True`` makes them draw from torch's).

The engine holds one :class:`Placement`: the device, the settled switches and the compiled
model; :class:`Precision` runs the forward pass and the backward and optimiser step of a
training step in its precision.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ContextManager

import torch
from torch import nn

from deepfield.errors import DeepfieldError, unknown_name

AUTO = "auto"

_PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``device`` if given (checked to exist), else cuda → mps → cpu."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeepfieldError(f"device {device!r} is not a torch device ({exc})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeepfieldError(f"device {device!r} was asked for but CUDA is not available here")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DeepfieldError(f"device {device!r} was asked for but MPS is not available here")
    return chosen


def fastest_precision(device: torch.device, model: nn.Module | None = None,
                      bf16_supported: bool | None = None) -> str:
    """What ``precision="auto"`` means for ``model`` on ``device`` (module doc).

    CUDA: ``"bf16"`` on GPUs with fast bfloat16 (Ampere and later), else ``"fp16"``. CPU:
    ``"bf16"`` for networks with 2-d convolutions on processors with AMX tiles (Sapphire
    Rapids and later: the course CNN trains 2x faster, 2 cores), else ``"fp32"`` (without
    AMX, and for dense networks, whose small matrix products bf16 slows down: 0.6x for the
    course MLP). ``bf16_supported`` overrides the question asked of the hardware (for tests).
    """
    if device.type == "cuda":
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
        return "bf16" if bf16_supported else "fp16"
    if device.type == "cpu" and model is not None and has_conv2d(model):
        if bf16_supported is None:
            bf16_supported = cpu_has_amx()
        return "bf16" if bf16_supported else "fp32"
    return "fp32"


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (the bf16 matrix units oneDNN's bf16 convolutions use)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch has no public name for it
    return bool(probe()) if probe is not None else False


def has_conv2d(model: nn.Module) -> bool:
    """Whether ``model`` (built) has 2-d convolution kernels (4-d weights), which NHWC speeds up."""
    return any(p.dim() == 4 for p in model.parameters())


def strided_pointwise_torch_conv(model: nn.Module) -> bool:
    """Whether ``model`` has a ``torch.nn.Conv2d`` with a 1x1 kernel and a stride > 1.

    On the CPU, torch 2.13's oneDNN corrupts the heap computing such a layer's weight gradient
    on channels-last input (odd batches; oneDNN issue #6035). deepfield's own Conv2D sidesteps
    it (:class:`deepfield.models.conv.Conv2D`); a torch layer cannot, so "auto" keeps NCHW.
    """
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
               for m in model.modules())


def wants_channels_last(choice: bool | str, model: nn.Module, device: torch.device) -> bool:
    """``channels_last="auto"``: on for networks with 2-d convolutions on CUDA and CPU (module doc),
    except on the CPU for networks with :func:`strided_pointwise_torch_conv` layers."""
    if switch("channels_last", choice) != AUTO:
        return bool(choice)
    if device.type == "cpu" and strided_pointwise_torch_conv(model):
        return False
    return device.type in ("cuda", "cpu") and has_conv2d(model)


def wants_compile(choice: bool | str) -> bool:
    """``jit_compile="auto"`` is off (module doc); ``True`` compiles with ``torch.compile``."""
    return False if switch("jit_compile", choice) == AUTO else bool(choice)


def switch(name: str, value: bool | str) -> bool | str:
    """``value`` if it is ``True``, ``False`` or ``"auto"``; else the error naming ``name``."""
    if isinstance(value, bool) or value == AUTO:
        return value
    raise DeepfieldError(f"{name} must be true, false or 'auto', got {value!r}")


class Precision:
    """Mixed-precision policy for one device.

    ``name`` is ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (:func:`fastest_precision` for
    ``model``; ``None`` means fp32). ``autocast`` is ``None`` in full precision (the training step then
    skips the context manager entirely); ``scaler`` is a ``torch.amp.GradScaler`` for fp16
    on CUDA and ``None`` otherwise.
    """

    def __init__(self, name: str | None, device: torch.device, model: nn.Module | None = None):
        key = "fp32" if name is None else str(name).lower()
        if key == AUTO:
            key = fastest_precision(device, model)
        if key not in _PRECISIONS:
            raise unknown_name("precision", name, [*_PRECISIONS, AUTO])
        self.name = key
        self.dtype = _PRECISIONS[key]
        self.autocast: Callable[[], ContextManager] | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if self.dtype is not None:
            device_type, dtype = device.type, self.dtype
            self.autocast = lambda: torch.autocast(device_type, dtype=dtype)
            if dtype is torch.float16 and device_type == "cuda":
                self.scaler = torch.amp.GradScaler("cuda")

    def forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``net(x)`` in a training step: under autocast in mixed precision, the output then cast to float32."""
        autocast = self.autocast
        if autocast is None:
            return net(x)
        with autocast():
            out = net(x)
        return out.float()

    def step(self, loss: torch.Tensor, optimizer: Any, after_backward: Callable[[], None] | None = None) -> None:
        """``loss.backward()``, ``after_backward()`` (gradients unscaled) and ``optimizer.step()``.

        With a ``scaler`` (fp16 on CUDA) the loss is scaled before ``backward``, the gradients
        are unscaled before ``after_backward`` looks at them, and the step is skipped where they
        overflowed. The gradients are left for the caller to zero.
        """
        scaler = self.scaler
        if scaler is None:
            loss.backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        if after_backward is not None:
            scaler.unscale_(optimizer)
            after_backward()
        scaler.step(optimizer)
        scaler.update()


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-d parameters as NHWC (``torch.channels_last``): faster convolutions on most hardware."""
    return model.to(memory_format=torch.channels_last)


class Placement:
    """Where and how fast one model trains: its device, precision, memory format and compilation.

    Args:
        device: the device (resolved: :func:`resolve_device`, and for a data-parallel rank its own).
        precision, channels_last, jit_compile: as :class:`~deepfield.training.engine.Engine` takes
            them, checked now. ``"auto"`` is settled by the model's built layers at the first
            :meth:`place` (``channels_last`` is ``None`` until then).
    """

    def __init__(self, device: torch.device, precision: str | None = AUTO, channels_last: bool | str = AUTO,
                 jit_compile: bool | str = AUTO):
        self.device = device
        self.precision = Precision(precision, device)  # checked now; "auto" is settled with the model
        self._precision_choice = precision
        self._channels_last_choice = switch("channels_last", channels_last)
        self.channels_last: bool | None = None
        self.jit_compile = wants_compile(jit_compile)
        self.compiled: nn.Module | None = None  # torch.compile(model), made at the first placement

    @property
    def placed(self) -> bool:
        """Whether a model was placed (and the "auto" choices settled)."""
        return self.channels_last is not None

    def place(self, model: nn.Module) -> None:
        """Put ``model`` (on the device, its lazy layers built) in the chosen memory format and compile it.

        The first call settles the "auto" choices for ``model``; on CUDA cuDNN is told to time
        its kernels once (the batches have fixed sizes).
        """
        if not self.placed:
            if isinstance(self._precision_choice, str) and self._precision_choice.lower() == AUTO:
                self.precision = Precision(AUTO, self.device, model)
            self.channels_last = wants_channels_last(self._channels_last_choice, model, self.device)
        if self.channels_last:
            to_channels_last(model)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.jit_compile and self.compiled is None:
            self.compiled = torch.compile(model)

    def net(self, model: nn.Module) -> nn.Module:
        """What runs ``model`` (placed): its ``torch.compile`` when ``jit_compile``, else ``model`` itself."""
        return self.compiled if self.compiled is not None else model

    def compile(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)`` when ``jit_compile``, else ``module`` (e.g. a model's DDP wrapper)."""
        return torch.compile(module) if self.jit_compile else module

    def settings(self) -> dict[str, Any]:
        """The device and speed choices in force (``"auto"`` resolved once a model was placed)."""
        return {"device": str(self.device), "precision": self.precision.name if self.placed else None,
                "channels_last": self.channels_last, "jit_compile": self.jit_compile}


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU, and CUDA/MPS when in use): what dropout draws from."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (the devices this machine has)."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
