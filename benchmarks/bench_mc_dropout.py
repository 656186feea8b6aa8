"""What do batching the draws and sharing the deterministic prefix give MC dropout?

On 256 stamps, T = 50 draws, three ways, in the same process:

* ``deterministic``: one ``predict`` (dropout off), the unit the others are measured in;
* ``looped``: T separate predict passes with dropout switched on the usual way (dropout
  modules in train mode, batch norm in eval mode), what one writes by hand in PyTorch;
* ``batched``: ``predict(x, mc_samples=T)`` (:mod:`deepfield.training.mc_dropout`): the layers
  before the first dropout run once per input, the rest on T repeated rows.

Three networks:

* ``resnet`` with ``dropout=0.5`` (3x64x64; ResNet-20, dropout between its global pooling and
  its dense layer): the convolutions are shared, the target is batched < 2x one deterministic pass;
* ``dieleman`` (3x64x64; dropout only in its dense head, but a heavy one: two maxout layers of
  42M mult-adds per view set, 10 % of the network, which every draw repeats);
* the course's ``lecture-cnn`` (1x64x64; dropout right after its first convolution, so almost
  all the work follows it and only the first convolution is shared).

    python benchmarks/bench_mc_dropout.py            # ~5 minutes on 2 CPU cores
    python benchmarks/bench_mc_dropout.py --quick    # a smoke run
    python benchmarks/bench_mc_dropout.py --write    # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import time

import torch
from torch import nn

from results import add_section, device_name, machine, synchronize
from deepfield.models import zoo
from deepfield.training import Engine
from deepfield.training.device import resolve_device
from deepfield.training.mc_dropout import dropout_rate

NETWORKS = {"resnet": (3, 64, 64), "dieleman": (3, 64, 64), "lecture-cnn": (1, 64, 64)}
OPTIONS = {"resnet": {"dropout": 0.5}}  # ResNet-20 with dropout before its dense head


def looped(model: nn.Module, x: torch.Tensor, samples: int, batch_size: int) -> torch.Tensor:
    """T plain passes with the dropout modules in train mode and everything else in eval mode."""
    model.eval()
    for module in model.modules():
        if dropout_rate(module) > 0:
            module.train()
    with torch.no_grad():
        draws = [torch.cat([model(chunk) for chunk in x.split(batch_size)]) for _ in range(samples)]
    model.eval()
    return torch.stack(draws)


def timed(run, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def measure(name: str, n: int, samples: int, batch_size: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = zoo.get(name, input_shape=NETWORKS[name], **OPTIONS.get(name, {}))
    x = torch.randn(n, *NETWORKS[name], generator=torch.Generator().manual_seed(1)).to(device)
    engine = Engine(model, device=device)
    engine.predict(x[:batch_size], batch_size=batch_size, verbose=0)  # warm-up
    result = {"deterministic": timed(lambda: engine.predict(x, batch_size=batch_size, verbose=0), device)}
    result["batched"] = timed(lambda: engine.predict(x, batch_size=batch_size, verbose=0, mc_samples=samples),
                              device)
    result["looped"] = timed(lambda: looped(model, x, samples, batch_size), device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 stamps, T = 5")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    n, samples, batch_size = (32, 5, 32) if args.quick else (256, 50, 256)
    rows = []
    for name in NETWORKS:
        t = measure(name, n, samples, batch_size, device)
        rows.append((name, t))
        print(f"{name:12s} deterministic {t['deterministic']:.2f} s  batched {t['batched']:.2f} s "
              f"({t['batched'] / t['deterministic']:.2f}x)  looped {t['looped']:.2f} s "
              f"(looped/batched {t['looped'] / t['batched']:.1f}x)", flush=True)
    if args.write and not args.quick:
        table = "\n".join(
            f"| {name} | {t['deterministic']:.2f} | {t['batched']:.2f} | {t['batched'] / t['deterministic']:.2f}x "
            f"| {t['looped']:.1f} | {t['looped'] / t['batched']:.1f}x |" for name, t in rows)
        add_section(f"""## MC dropout: batched draws with a shared prefix vs T separate passes (bench_mc_dropout.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)}. {n} random stamps, T = {samples}
draws, batch {batch_size}; one run each (seconds).

| network | deterministic pass | batched, T={samples} | batched / deterministic | looped, T passes | looped / batched |
|---|---|---|---|---|---|
{table}

`resnet` (dropout=0.5) and `dieleman` have dropout only in their heads: their convolutions run
once per stamp and only the head sees T x 256 rows (target: batched < 2x one deterministic pass).
ResNet's head is one small dense layer; Dieleman's is two maxout layers holding 10 % of its
mult-adds, which each of the T draws repeats. `lecture-cnn` has dropout right after its first
convolution: only that convolution is shared and the rest runs T times either way, so batching
gives little on a CPU (a forward's cost barely depends on how rows are grouped).
""")


if __name__ == "__main__":
    main()
