"""Explain a run whose network outputs an image (denoise, ...): which input pixels make one output region's flux.

:func:`~deepfield.tasks.explain.explain` hands a network over here when :func:`image_output` finds
that it maps a stamp to an image of the same size. :func:`explain_image` then explains the
*region flux* of a few stamps (the first ``per_class`` of them): the sum of the task's output image
(:meth:`~deepfield.tasks.base.Task.explained_image`; for denoise the denoised bands in the file's flux
unit) inside a region, weighted as aperture photometry weighs pixels
(:mod:`deepfield.analysis.explain.region`). The region of every stamp is

* ``region: "x,y,r"`` (``--region``): a circular aperture, centre column and row and radius in pixels;
* ``window: "x0:x1,y0:y1"`` (``--window``): columns ``x0 .. x1 − 1`` and rows ``y0 .. y1 − 1``;
* else the stamp's source: the aperture the task measures it in (for denoise the file's
  ``truth/x``, ``truth/y``, ``truth/aperture_radius``, else the stamp's centre), else the centre with
  a radius of :data:`CENTRE_RADIUS` of the stamp's side.

Methods: ``integrated-gradients`` (from ``baseline``, ``steps`` points) and ``occlusion`` (the
``occlusion`` square). Written into ``out``:

* ``explain_region.png`` (into ``figures``): each stamp, then each method's map over it, the region outlined;
* ``explain.npz``: ``stamps``, ``indices``, ``region_weights`` ``(n, H, W)``, ``integrated_gradients``
  ``(n, C, H, W)`` and ``occlusion`` ``(n, H, W)``, in the output's unit;
* ``explain.json``: the stamps, their regions, each region's flux, and integrated gradients' completeness:
  ``attribution_sum`` against ``flux − baseline_flux``, their ``completeness_delta`` and ``relative_error``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.analysis.explain.region import (Aperture, Region, parse_aperture, parse_window,
                                               region_integrated_gradients, region_occlusion)
from deepfield.errors import DeepfieldError
from deepfield.models.base import ensure_built
from deepfield.plots import plot_attributions
from deepfield.tasks.base import NewData, Prepared, Task
from deepfield.tasks.config import ExplainConfig
from deepfield.tasks.explain_files import write_explanation
from deepfield.tasks.explain_methods import chosen_methods
from deepfield.tasks.prepared_info import PreparedInfo
from deepfield.training.engine import eval_mode

REGION_METHODS = ("integrated-gradients", "occlusion")
"""The methods that explain an image output's region, in the order they run (``all``: both)."""

CENTRE_RADIUS = 0.125
"""The default aperture's radius, as a fraction of the stamp's shorter side, when the task gives no source
aperture (denoise's own default for files without truth)."""

FIGURE = "explain_region.png"


def image_output(task: Task, model: nn.Module, info: PreparedInfo, images: np.ndarray) -> nn.Module | None:
    """The task's :meth:`~deepfield.tasks.base.Task.explained_image` of ``model`` when it maps a stamp of
    ``images`` ``(N, C, H, W)`` to an image of the same ``H, W`` (one probe pass), else ``None``."""
    if images.ndim != 4 or len(images) == 0:
        return None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    module = task.explained_image(model, info).to(device)  # the task's buffers (flux scales) beside the network
    probe = torch.from_numpy(np.ascontiguousarray(images[:1], dtype=np.float32)).to(device)
    try:
        ensure_built(module, probe)
        with torch.no_grad(), eval_mode(module):
            out = module(probe)
    except RuntimeError:  # stamps that do not fit: the attribution methods say so in their own words
        return None
    return module if out.ndim == 4 and tuple(out.shape[-2:]) == tuple(images.shape[-2:]) else None


def source_apertures(data: Prepared | NewData) -> np.ndarray | None:
    """``(N, 3)`` column, row and radius (pixels) of each test stamp's source where the task knows them: a
    :class:`Prepared` with ``apertures["test"]`` (denoise), or a new file's ``x``, ``y``, ``aperture_radius``."""
    if isinstance(data, NewData):
        keys = ("x", "y", "aperture_radius")
        return np.column_stack([data.columns[k] for k in keys]) if set(keys) <= set(data.columns) else None
    return getattr(data, "apertures", {}).get("test")


def region_methods(names: Sequence[str]) -> list[str]:
    """The region methods named (``all``: both), checked, in :data:`REGION_METHODS` order."""
    return chosen_methods(names, REGION_METHODS, lambda name: DeepfieldError(
        f"explain method {name!r}: this network outputs an image; its regions are explained by "
        f"{', '.join(REGION_METHODS)} (or all)"))


def stamp_regions(options: ExplainConfig, shape: tuple[int, int], apertures: np.ndarray | None,
                  n: int) -> tuple[list[Region], str]:
    """Each of ``n`` stamps' region (module doc) on stamps of ``shape`` ``(H, W)``, checked, and where it came from:
    ``region``, ``window``, ``source`` (``apertures`` ``(n, 3)``) or ``centre``."""
    if options.region is not None and options.window is not None:
        raise DeepfieldError("explain: give a region (x,y,r) or a window (x0:x1,y0:y1), not both")
    if options.region is not None:
        regions: list[Region] = [parse_aperture(options.region, "explain region")] * n
        origin = "region"
    elif options.window is not None:
        regions, origin = [parse_window(options.window, "explain window")] * n, "window"
    elif apertures is not None:
        regions, origin = [Aperture(*map(float, row)) for row in np.asarray(apertures)[:n]], "source"
    else:
        height, width = shape
        regions = [Aperture((width - 1) / 2, (height - 1) / 2, CENTRE_RADIUS * min(shape))] * n
        origin = "centre"
    for region in regions[:1] if origin in ("region", "window") else regions:
        region.check(shape, f"explain {origin}")
    return regions, origin


def explain_image(module: nn.Module, images: np.ndarray, out: Path, options: ExplainConfig, *,
                  apertures: np.ndarray | None = None, methods: Sequence[str] | None = None,
                  figures: Path | None = None, unit: str | None = None) -> dict[str, Any]:
    """Explain the region flux of ``module``'s image output (:func:`image_output`) on the first ``options.per_class``
    of ``images`` ``(N, C, H, W)`` into ``out`` (figure into ``figures``, default ``out``); ``apertures``: each
    stamp's source aperture (:func:`source_apertures`); ``unit``: the output's, for the figure and the summary.
    Returns the summary written to ``explain.json``."""
    methods = region_methods(methods or options.methods)
    shape = tuple(images.shape[-2:])
    chosen = np.arange(min(options.per_class, len(images)))
    regions, origin = stamp_regions(options, shape, apertures, len(chosen))  # type: ignore[arg-type]
    figures = figures or out
    for folder in (out, figures):
        folder.mkdir(parents=True, exist_ok=True)
    stamps = np.ascontiguousarray(images[chosen], dtype=np.float32)
    arrays: dict[str, np.ndarray] = {"stamps": stamps, "indices": chosen,
                                     "region_weights": np.stack([r.weights(shape) for r in regions])}  # type: ignore
    summary: dict[str, Any] = {"methods": methods, "stamps": chosen.tolist(), "unit": unit or "",
                               "explained": "the output image's flux (sum over its channels) in each stamp's region",
                               "region_from": origin, "regions": [dataclasses.asdict(r) for r in regions]}
    maps: dict[str, np.ndarray] = {}
    flux = None
    if "integrated-gradients" in methods:
        shared = origin in ("region", "window")  # one region for all: one batch
        result = region_integrated_gradients(module, stamps, regions[0] if shared else regions,
                                             baseline=options.baseline, steps=options.steps)
        flux = result.score
        summary["integrated_gradients"] = {
            "baseline": options.baseline, "steps": options.steps, "flux": result.score.tolist(),
            "baseline_flux": result.baseline_score.tolist(),
            "attribution_sum": result.attributions.reshape(len(chosen), -1).sum(axis=1, dtype=np.float64).tolist(),
            "completeness_delta": result.delta.tolist(), "relative_error": result.relative_error.tolist()}
        maps["integrated gradients"] = arrays["integrated_gradients"] = result.attributions
    if "occlusion" in methods:
        settings = options.occlusion
        found = [region_occlusion(module, stamp, region, size=settings.size, stride=settings.stride,
                                  fill=settings.fill) for stamp, region in zip(stamps, regions)]
        flux = np.array([o.clean for o in found])
        summary["occlusion"] = {**settings.model_dump(), "flux": flux.tolist()}
        maps["occlusion"] = arrays["occlusion"] = np.stack([o.pixel_map() for o in found]).astype(np.float32)
    titles = [f"stamp {i}\n{r.kind} flux {f:.4g} {unit or ''}".rstrip() for i, r, f in zip(chosen, regions, flux)]
    plot_attributions(stamps, maps, figures / FIGURE, titles=titles, outlines=[r.outline() for r in regions])
    write_explanation(out, arrays, summary)
    return summary
