"""How much does ``fit`` cost over a plain PyTorch loop? Throughput of both, in the same process.

Two workloads, each trained by ``model.fit(verbose=0)`` and by the loop a PyTorch user
writes by hand (``torch.optim.Adam``, an ``nn.Sequential`` of torch layers with the
same shapes, batches sliced with a permutation), INTERLEAVED round by round after a
warm-up, medians reported:

* ``cnn``: the course's ``lecture-cnn`` (1x64x64 images, batch 64, adam, binary_crossentropy);
* ``mlp``: 10-64-64-1 relu MLP (100k rows, batch 256, adam, mse).

A ``keras`` column trains the same network in Keras 3 on its torch backend (channels-last
inputs, as Keras users write them) when ``keras`` can be imported with ``KERAS_BACKEND=torch``;
``make bench`` installs it beside the venv (``.bench-keras/``), never into deepfield's dependencies.

A third column, ``loop``, runs the hand-written loop on the very same deepfield model,
loss and optimiser objects that ``fit`` trains (they take turns): ``fit / loop`` isolates
what the training loop itself adds, ``fit / plain`` is what a user switching from plain PyTorch sees (it also
includes the differences between the layers, losses and optimiser implementations).

``fit`` runs with deepfield's defaults for the device (``"auto"``: channels_last for the
CNN; bf16 on a GPU), as a user gets them; the plain loop is written as a PyTorch user
writes it (NCHW, float32). For the CNN a ``plain NHWC`` column also runs the plain loop
with its weights in channels_last, so the ratio to the best hand-written loop is there too.
``--device cuda`` (default: the best device present) moves everything to a GPU.

    python benchmarks/bench_fit.py            # ~2-3 minutes on 2 CPU cores
    python benchmarks/bench_fit.py --quick    # a smoke run
    python benchmarks/bench_fit.py --write    # also update benchmarks/RESULTS.md
    python benchmarks/bench_fit.py --profile  # cProfile of fit on the mlp workload
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from results import RESULTS, add_section, device_arguments, device_name, machine, placed, synchronize
from deepfield.models import zoo
from deepfield.training import Sequential



def keras_available() -> bool:
    """Keras 3 on the torch backend, if importable (``make bench`` puts it on PYTHONPATH)."""
    if os.environ.get("KERAS_BACKEND") != "torch":
        return False
    try:
        import keras
    except ImportError:
        return False
    return keras.backend.backend() == "torch"


@dataclass
class Workload:
    name: str
    unit: str
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    epochs_per_round: int
    deepfield_model: Callable[[], nn.Module]
    torch_model: Callable[[], nn.Module]
    keras_model: Callable[[], Any]
    loss: str
    torch_loss: nn.Module


def cnn_workload(n_images: int) -> Workload:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_images, 1, 64, 64, generator=gen)
    y = (torch.rand(n_images, 1, generator=gen) > 0.5).float()

    def torch_cnn() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 32, 6, padding="same"), nn.ReLU(), nn.Dropout(0.5),
            nn.Conv2d(32, 64, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(64, 128, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(128, 128, 3, padding="same"), nn.ReLU(), nn.Dropout(0.25),
            nn.Flatten(), nn.Linear(128 * 16 * 16, 64), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(64, 1), nn.Sigmoid(),
        )

    def deepfield_cnn() -> nn.Module:
        return Sequential.from_config(zoo.get("lecture-cnn").get_config())

    def keras_cnn() -> Any:
        from keras import Sequential as KerasSequential
        from keras import layers

        return KerasSequential([
            layers.Input((64, 64, 1)),
            layers.Conv2D(32, 6, padding="same", activation="relu"), layers.Dropout(0.5),
            layers.Conv2D(64, 5, padding="same", activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.25),
            layers.Conv2D(128, 2, padding="same", activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.25),
            layers.Conv2D(128, 3, padding="same", activation="relu"), layers.Dropout(0.25),
            layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5),
            layers.Dense(1, activation="sigmoid")])

    return Workload("cnn", "images/s", x, y, 64, 1, deepfield_cnn, torch_cnn, keras_cnn,
                    "binary_crossentropy", nn.BCELoss())


def mlp_workload(n_rows: int) -> Workload:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_rows, 10, generator=gen)
    y = x[:, :1] * 0.5 - x[:, 1:2] + 0.1 * torch.randn(n_rows, 1, generator=gen)

    def torch_mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def deepfield_mlp() -> nn.Module:
        return Sequential.from_config(zoo.get("mlp", input_shape=(10,), hidden=(64, 64)).get_config())

    def keras_mlp() -> Any:
        from keras import Sequential as KerasSequential
        from keras import layers

        return KerasSequential([layers.Input((10,)), layers.Dense(64, activation="relu"),
                                layers.Dense(64, activation="relu"), layers.Dense(1)])

    return Workload("mlp", "rows/s", x, y, 256, 2, deepfield_mlp, torch_mlp, keras_mlp, "mse", nn.MSELoss())


def plain_loop(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, x: torch.Tensor,
               y: torch.Tensor, batch_size: int, epochs: int) -> None:
    """What a PyTorch user writes: shuffle, slice, forward, loss, backward, step."""
    model.train()
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()


def measure(w: Workload, rounds: int, device: torch.device) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Median samples/s of each runner, and the settings of each ``fit`` variant.

    ``fit`` runs with the defaults; when they are not float32 (bf16 where it is faster),
    ``fit_fp32`` runs too, so that every comparison is also made at the precision the plain
    loops and Keras train in. The loop on fit's objects takes the float32 variant's.
    """
    x, y = w.x.to(device), w.y.to(device)

    def ready(**options: Any) -> nn.Module:
        torch.manual_seed(0)
        model = w.deepfield_model()
        model.compile(optimizer="adam", loss=w.loss, device=device, **options)
        model.fit(x[:w.batch_size], y[:w.batch_size], batch_size=w.batch_size, verbose=0)  # builds, binds adam
        return model

    fits = {"fit": ready()}
    if fits["fit"].engine.settings()["precision"] != "fp32":
        fits["fit_fp32"] = ready(precision="fp32")
    reference = fits.get("fit_fp32", fits["fit"])

    def plain_runner(memory_format: torch.memory_format) -> Callable[[], None]:
        plain = w.torch_model().to(device, memory_format=memory_format)
        optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)
        return lambda: plain_loop(plain, optimizer, w.torch_loss, x, y, w.batch_size, w.epochs_per_round)

    runners: dict[str, Callable[[], Any]] = {
        name: (lambda m=model: m.fit(x, y, batch_size=w.batch_size, epochs=w.epochs_per_round, verbose=0))
        for name, model in fits.items()}
    runners["plain"] = plain_runner(torch.contiguous_format)
    # the same model, optimiser and loss objects as a float32 fit: only the loop differs
    runners["loop"] = lambda: plain_loop(reference, reference.optimizer, reference.engine.loss_fn, x, y,
                                         w.batch_size, w.epochs_per_round)
    if w.x.dim() == 4:
        runners["plain_nhwc"] = plain_runner(torch.channels_last)
    if keras_available():
        runners["keras"] = keras_runner(w)
    for run in runners.values():  # warm-up: allocator, lazy builds, optimiser state
        run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for r in range(rounds):
        for key in order if r % 2 == 0 else reversed(order):  # alternate who goes first
            synchronize(device)
            start = time.perf_counter()
            runners[key]()
            synchronize(device)
            times[key].append(time.perf_counter() - start)
    samples = len(w.x) * w.epochs_per_round
    rates = {k: samples / statistics.median(v) for k, v in times.items()}
    return rates, {name: model.engine.settings() for name, model in fits.items()}


def keras_runner(w: Workload) -> Callable[[], None]:
    """Keras 3 (torch backend) fitting the same network: channels-last numpy inputs, Keras's own loop."""
    import keras

    model = w.keras_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=w.loss)
    x = w.x.permute(0, 2, 3, 1).numpy() if w.x.dim() == 4 else w.x.numpy()
    y = w.y.numpy()
    return lambda: model.fit(x, y, batch_size=w.batch_size, epochs=w.epochs_per_round, verbose=0, shuffle=True)


def report(name: str, unit: str, rates: dict[str, float], variant: str, settings: dict[str, Any]) -> str:
    """One table row: the ``variant`` of fit (``fit`` or ``fit_fp32``) against every other runner."""
    fit = rates[variant]

    def cells(key: str, ratio: str = ".3f") -> str:
        rate = rates.get(key)
        return f"{rate:,.0f} | {fit / rate:{ratio}}" if rate else "- | -"

    loop = cells("loop") if variant == "fit_fp32" or "fit_fp32" not in rates else "- | -"
    used = ", ".join(f"{k} {v}" for k, v in settings.items() if k != "device")
    return (f"| {name} | {used} | {fit:,.0f} | {cells('plain')} | {cells('plain_nhwc')} | {loop} | "
            f"{cells('keras', '.2f')} | {unit} |")


def write_results(rows: list[str], args: argparse.Namespace) -> None:
    header = ("| workload | fit's settings | fit | plain torch | fit/plain | plain NHWC | fit/plain NHWC | "
              "loop on fit's objects | fit/loop | keras 3 (torch) | fit/keras | unit |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
    add_section(
        "## fit() against a plain PyTorch loop and Keras 3 (bench_fit.py)\n\n"
        f"{datetime.date.today().isoformat()}, {machine()}, {device_name(args.device)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads{' (--quick)' if args.quick else ''}. "
        f"`python benchmarks/bench_fit.py --write`: cnn {args.images} images, mlp {args.rows:,} rows, "
        f"{args.rounds} rounds (medians, the runners interleaved); load average at the end "
        f"{os.getloadavg()[0]:.2f}. Targets: fit/plain >= 0.97; fit/keras >= 1.3 (cnn), >= 3 (mlp). "
        "The plain loops and Keras train in float32; where fit's defaults are not float32 (bf16 where "
        "that is faster) a float32 fit is measured too, and the loop on fit's objects is its.\n\n"
        + header + "\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--write", action="store_true", help=f"update {RESULTS.name}")
    parser.add_argument("--profile", action="store_true", help="cProfile fit on the mlp workload and exit")
    parser.add_argument("--only", choices=["cnn", "mlp"], help="run one workload")
    device_arguments(parser)
    args = parser.parse_args()
    args.device = placed(args)
    # torch's own 'same' padding with even kernels (the plain CNN) warns once; nothing to act on here.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    args.images = 128 if args.quick else 256
    args.rows = 20_000 if args.quick else 100_000
    args.rounds = 3 if args.quick else 7

    if args.profile:
        w = mlp_workload(args.rows)
        model = w.deepfield_model().compile(optimizer="adam", loss=w.loss, device=args.device)
        model.fit(w.x, w.y, batch_size=w.batch_size, verbose=0)
        profiler = cProfile.Profile()
        profiler.runcall(model.fit, w.x, w.y, batch_size=w.batch_size, epochs=3, verbose=0)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.platform()}, "
          f"{device_name(args.device)}")
    rows = []
    workloads = [("cnn", lambda: cnn_workload(args.images)), ("mlp", lambda: mlp_workload(args.rows))]
    for name, make in workloads:
        if args.only and name != args.only:
            continue
        w = make()
        rates, settings = measure(w, args.rounds, args.device)
        for variant, used in settings.items():
            rows.append(report(name, w.unit, rates, variant, used))
            print(f"{name} ({w.unit}), {variant} with {used}: "
                  + ", ".join(f"{k} {v:,.0f} ({variant}/{k} = {rates[variant] / v:.3f})" for k, v in rates.items()),
                  flush=True)
    if args.write:
        write_results(rows, args)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
