"""deepfield's LSTM and GRU against torch.nn.LSTM / nn.GRU: one forward and backward pass, for RESULTS.md.

    python benchmarks/bench_recurrent.py           # print
    python benchmarks/bench_recurrent.py --write   # and put the table in RESULTS.md

Each row times a training step's forward and backward pass of a 64-unit layer on 128 sequences of 100
steps and 8 features, as a ratio to the plain PyTorch module in the same run: without a mask (the fused
kernel), with a right-padding mask and with a gap in every sequence (the data steps compacted, the same
kernel), and the step loop that other activations and recurrent dropout take.
"""
from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable

import torch

from deepfield import layers
from results import add_section, device_name, machine, synchronize

N, T, F, UNITS = 128, 100, 8, 64


def seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """The median time of ``step`` over ``repeats`` runs, after one warm-up run."""
    step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="put the table in benchmarks/RESULTS.md")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    x = torch.randn(N, T, F, device=device)
    right = torch.arange(T, device=device)[None] < torch.randint(T // 2, T + 1, (N, 1), device=device)
    gap = right.clone()
    gap[:, 10:20] = False
    rows = []
    for name in ("LSTM", "GRU"):
        plain = getattr(torch.nn, name)(F, UNITS, batch_first=True).to(device)
        fused, looped = (getattr(layers, name)(UNITS, return_sequences=True) for _ in range(2))
        for layer in (fused, looped):
            layer(x[:1])
            layer.to(device)
        looped._fused_kernel = lambda: None  # the step loop, as for a non-default activation

        def ours(layer: torch.nn.Module, mask: torch.Tensor | None = None) -> Callable[[], None]:
            return lambda: layer(x, mask=mask).sum().backward()

        base = seconds(lambda: plain(x)[0].sum().backward(), device, args.repeats)
        cases = {"fused": ours(fused), "fused, right-padding mask": ours(fused, right),
                 "fused, mask with a gap": ours(fused, gap), "step loop": ours(looped)}
        rows.append(f"| nn.{name} | {base * 1e3:.1f} ms | 1.00 |")
        rows += [f"| {name} {case} | {(t := seconds(step, device, args.repeats)) * 1e3:.1f} ms | {t / base:.2f} |"
                 for case, step in cases.items()]
    table = "\n".join(["| pass | time | ratio to torch |", "|---|---|---|", *rows])
    print(table)
    if args.write:
        add_section(f"""## Recurrent layers vs torch.nn (bench_recurrent.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)}. Forward and backward of a
{UNITS}-unit layer on {N} sequences of {T} steps, {F} features; median of {args.repeats}.

{table}
""")


if __name__ == "__main__":
    main()
