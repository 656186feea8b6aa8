"""Check every accelerator path of the training engine in one run (GPU runs are never part of the tests).

Run it where a GPU is lent, from the repository root (it needs torch, numpy, h5py, rich and
safetensors, no other deepfield dependency):

    PYTHONPATH=src python3 benchmarks/gpu_check.py              # the best device present
    PYTHONPATH=src python3 benchmarks/gpu_check.py --device cpu # the same checks on the CPU

Each check prints PASS or FAIL with its numbers; the exit status is the number of failures.
The data is learnable (a bright blob in half of the stamps), so every precision must reach
the same high accuracy:

* ``auto``: what the "auto" switches choose for lecture-cnn and for an MLP on this device;
* ``precision``: fp32, bf16 and (on CUDA) fp16 with loss scaling each learn the task, with
  float32 weights and float32 predictions equal to the network's own float32 forward;
* ``jit_compile``: torch.compile trains as eager does (inductor on the device, told to draw
  dropout masks from torch's generator: by default it has its own): the first epoch's loss
  to 1e-4, the same accuracy;
* ``host-resident``: arrays kept in (pinned) host memory, batches copied over, train exactly
  as device-resident ones;
* ``dataset``: a Dataset read by worker processes (pinned memory on CUDA) trains as the arrays;
* ``mc-dropout``: batched MC draws on the device equal looped ones.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch._inductor.config
from torch.utils.data import TensorDataset

from deepfield.models import zoo
from deepfield.training import Sequential, batches
from deepfield.training.device import resolve_device

FAILURES: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name:<28} {detail}", flush=True)
    if not ok:
        FAILURES.append(name)


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 1, 32, 32)`` noise stamps, half with a bright Gaussian blob; labels ``(n, 1)`` in {0, 1}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 1, 32, 32)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    yy, xx = np.mgrid[:32, :32]
    for i in np.flatnonzero(y):
        cy, cx = rng.uniform(8, 24, 2)
        x[i, 0] += 3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return x, y[:, None]


def preset(name: str, **options) -> Sequential:
    """A zoo network with the Keras face (compile / fit / predict)."""
    return Sequential.from_config(zoo.get(name, **options).get_config())


def cnn() -> Sequential:
    return preset("lecture-cnn", input_shape=(1, 32, 32))


def train(device: torch.device, x: np.ndarray | TensorDataset, y: np.ndarray | None, epochs: int = 3,
          **options) -> tuple[Sequential, list[float]]:
    torch.manual_seed(0)
    model = cnn().compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], device=device,
                          **options)
    history = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, seed=0)
    return model, history.history["loss"]


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cuda, cpu, ... (default: the best present)")
    device = resolve_device(parser.parse_args().device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"torch {torch.__version__} on {name}", flush=True)
    x, y = blobs(1024)
    x_test, y_test = blobs(256, seed=1)

    model = cnn().compile(loss="mse", device=device)
    model.predict(x[:2], verbose=0)
    mlp = preset("mlp", input_shape=(10,)).compile(loss="mse", device=device)
    mlp.predict(np.zeros((2, 10), np.float32), verbose=0)
    check("auto", True, f"lecture-cnn {model.engine.settings()}; mlp {mlp.engine.settings()}")

    reference = None
    for precision in ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16"):  # CPU fp16: no fast kernels
        (trained, losses), seconds = timed(lambda: train(device, x, y, precision=precision))
        accuracy = trained.evaluate(x_test, y_test, verbose=0)["accuracy"]
        predicted = trained.predict(x_test, verbose=0)
        with torch.no_grad():
            exact = trained.eval()(torch.from_numpy(x_test).to(device)).float().cpu().numpy()
        weights32 = all(p.dtype == torch.float32 for p in trained.parameters())
        ok = accuracy > 0.9 and np.isfinite(losses).all() and weights32 and predicted.dtype == np.float32 \
            and np.allclose(predicted, exact, atol=1e-5)
        check(f"precision {precision}", ok, f"accuracy {accuracy:.3f}, losses {np.round(losses, 4).tolist()}, "
                                            f"{seconds:.1f} s, scaler {trained.engine.precision.scaler is not None}")
        if precision == "fp32":
            reference = losses

    # inductor draws random numbers (dropout) with its own generator unless told to use torch's
    torch._inductor.config.fallback_random = True
    (_, eager), eager_s = timed(lambda: train(device, x, y, precision="fp32", jit_compile=False))
    (fitted, compiled), compiled_s = timed(lambda: train(device, x, y, precision="fp32", jit_compile=True))
    accuracy = fitted.evaluate(x_test, y_test, verbose=0)["accuracy"]
    # the first epoch agrees to rounding; later ones drift apart as fused kernels round differently
    check("jit_compile", np.isclose(eager[0], compiled[0], rtol=1e-4) and accuracy > 0.9,
          f"eager {np.round(eager, 4).tolist()} in {eager_s:.1f} s, compiled {np.round(compiled, 4).tolist()} "
          f"in {compiled_s:.1f} s (compilation included), accuracy {accuracy:.3f}")

    home = batches.resident_device
    batches.resident_device = lambda nbytes, device, free_bytes=None: torch.device("cpu")  # as if too big
    try:
        (_, hosted), hosted_s = timed(lambda: train(device, x, y, precision="fp32"))
    finally:
        batches.resident_device = home
    check("host-resident arrays", np.allclose(hosted, reference, rtol=1e-5),
          f"losses {np.round(hosted, 4).tolist()} in {hosted_s:.1f} s (device-resident {np.round(reference, 4).tolist()})")

    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    (_, streamed), streamed_s = timed(lambda: train(device, dataset, None, precision="fp32"))
    check("dataset (workers, pinned)", np.allclose(streamed, reference, rtol=1e-5),
          f"losses {np.round(streamed, 4).tolist()} in {streamed_s:.1f} s, "
          f"{batches.default_workers(device)} workers")

    sampled = preset("resnet", input_shape=(1, 32, 32), dropout=0.5).compile(loss="mse", device=device)
    draws = sampled.predict(x_test, mc_samples=20, return_samples=True, verbose=0).samples
    again = sampled.predict(x_test, mc_samples=20, return_samples=True, verbose=0, memory_mb=1.0).samples
    check("mc-dropout", np.allclose(draws, again, atol=1e-5) and draws.std(0).mean() > 0,
          f"{draws.shape[0]} draws of {draws.shape[1]} stamps; batched == one input per forward")
    print(f"{len(FAILURES)} failure(s)" + (f": {', '.join(FAILURES)}" if FAILURES else ""))
    return len(FAILURES)


if __name__ == "__main__":
    sys.exit(main())
