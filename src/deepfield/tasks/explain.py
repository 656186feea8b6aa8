"""Look inside a trained run's network: filters, feature maps, strongest patches, attributions, class models.

``deepfield explain RUN INPUT --method NAME --out DIR`` and :func:`explain_run` pick a few
stamps per class from INPUT (or the run's own test part), run each method of
:mod:`deepfield.analysis.explain` and write into DIR:

* ``explain_<method>.png``: the figures (attribution maps drawn over the stretched stamps);
* ``explain.npz``: the arrays behind them (numpy, read with ``allow_pickle=False``);
* ``explain.json``: which stamps, their targets and scores, the integrated-gradients
  completeness check, the class models' start and final scores, the settings.

With ``explain.run: true`` in a config, ``deepfield train`` does this on its test part into
the run's figures, and the report shows them in its Explain section. A network whose output is
an image (denoise) is explained by the flux of a region of its output: :mod:`.explain_region`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepfield.analysis.explain import (class_model, conv_filters, conv_layer_names, deconvnet,
                                        default_map_layer, feature_maps, guided_backprop, integrated_gradients,
                                        occlusion, saliency, strongest_patches)
from deepfield.analysis.layer_features import layer_names, unknown_layer
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.plots import (plot_attributions, plot_class_models, plot_feature_maps, plot_filter_mosaic,
                             plot_strongest_patches)
from deepfield.plots.explain_maps import MAX_ROWS
from deepfield.tasks.base import Task
from deepfield.tasks.config import EXPLAIN_METHODS as METHODS
from deepfield.tasks.config import ExplainConfig
from deepfield.tasks.explain_files import write_explanation
from deepfield.tasks.explain_methods import chosen_methods
from deepfield.tasks.explain_region import explain_image, image_output
from deepfield.tasks.prepared_info import PreparedInfo
from deepfield.training import Engine

ATTRIBUTIONS = ("saliency", "integrated-gradients", "guided-backprop", "deconvnet", "occlusion")
"""The methods drawn together, one column each, over the chosen stamps."""


def methods_from(names: Sequence[str]) -> list[str]:
    """The methods named (``all`` for every one), checked, in :data:`METHODS` order."""
    return chosen_methods(names, METHODS, lambda name: unknown_name("explain method", name, (*METHODS, "all")))


def choose_stamps(scores: np.ndarray, labels: np.ndarray | None, per_class: int) -> np.ndarray:
    """Indices of up to ``per_class`` stamps of each class (its label, else the network's choice), first ones first."""
    classes = predicted_classes(scores) if labels is None else np.asarray(labels).reshape(-1).astype(np.int64)
    picked = [np.flatnonzero(classes == k)[:per_class] for k in np.unique(classes)]
    return np.concatenate(picked)[:MAX_ROWS] if picked else np.zeros(0, dtype=np.int64)


def predicted_classes(scores: np.ndarray) -> np.ndarray:
    """``(N,)`` the class each output row picks: argmax, or probability ≥ 0.5 for one sigmoid output."""
    scores = scores.reshape(len(scores), -1)
    return scores.argmax(axis=1) if scores.shape[1] > 1 else (scores[:, 0] >= 0.5).astype(np.int64)


def explain(model: nn.Module, images: np.ndarray, out: Path, options: ExplainConfig, *,
            labels: np.ndarray | None = None, class_names: Sequence[str] | None = None,
            band_names: Sequence[str] | None = None, methods: Sequence[str] | None = None,
            figures: Path | None = None, seed: int = 0, task: Task | None = None, info: PreparedInfo | None = None,
            apertures: np.ndarray | None = None) -> dict[str, Any]:
    """Run the explain methods on ``model`` for ``images`` ``(N, C, H, W)``: arrays and summary to
    ``out``, figures to ``figures`` (default ``out``).

    ``labels`` (N,) choose the stamps per class when given (else the network's predictions);
    the attribution target of each stamp is the class the network predicts. Returns the
    summary written to ``explain.json``.

    ``options.layer`` (any name of :func:`~deepfield.analysis.layer_features.layer_names`: a
    convolution, a block, a layer inside one by dotted name) is the layer of the feature
    maps and patches; by default
    :func:`~deepfield.analysis.explain.patches.default_map_layer` (the deepest convolution
    or block whose receptive field is a sizeable part of the stamp). The filters are that
    layer's when it is a convolution, else the first convolution's (they act on the
    bands); ``filters_layer`` and ``receptive_field`` in the summary say which and how large.

    A network whose output is an image (``task``'s :meth:`~deepfield.tasks.base.Task.explained_image` of it,
    with ``info``) is explained by its output regions instead: :func:`~deepfield.tasks.explain_region.explain_image`
    (``apertures``: each stamp's source, :func:`~deepfield.tasks.explain_region.source_apertures`).
    """
    image = image_output(task, model, info, images) if task is not None and info is not None else None
    if image is not None:
        return explain_image(image, images, out, options, apertures=apertures, methods=methods, figures=figures,
                             unit=getattr(info, "unit", None))
    if options.region is not None or options.window is not None:
        raise DeepfieldError("explain: a region or window is explained on a network whose output is an image; "
                             "this one's is not")
    if images.ndim != 4:
        raise DeepfieldError(f"explain needs image stamps (N, C, H, W); this run's inputs have shape "
                             f"{images.shape[1:]}")
    methods = methods_from(methods or options.methods)
    if options.layer is not None and options.layer not in layer_names(model):
        raise unknown_layer(model, options.layer, layer_names(model))
    figures = figures or out
    for folder in (out, figures):
        folder.mkdir(parents=True, exist_ok=True)
    scores = Engine(model).predict(images, batch_size=256, verbose=0)
    single = scores.reshape(len(scores), -1).shape[1] == 1
    chosen = choose_stamps(scores, labels, options.per_class)
    predicted = predicted_classes(scores[chosen])
    targets = None if single else predicted
    names = list(class_names) if class_names else [str(k) for k in range(max(2, scores.shape[-1]))]
    stamps = images[chosen]
    layer = options.layer
    if layer is None and {"feature-maps", "patches"} & set(methods):
        layer = default_map_layer(model, images.shape[1:])
    arrays: dict[str, np.ndarray] = {"stamps": stamps, "indices": chosen}
    summary: dict[str, Any] = {"methods": methods, "layer": layer, "stamps": chosen.tolist(),
                               "predicted": [names[k] for k in predicted],
                               "labels": None if labels is None else [names[int(k)] for k in labels[chosen]]}
    # the papers explain the class score before the softmax (a saturated probability has no gradient)
    summary["gradients_of"] = "logits" if _ends_with_softmax(model) else "outputs"
    maps: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "filters":
            convs = conv_layer_names(model)
            arrays["filters"] = conv_filters(model, options.layer if options.layer in convs else None)
            summary["filters_layer"] = options.layer if options.layer in convs else convs[0]
            _plot_filters(arrays["filters"], summary["filters_layer"], summary["filters_layer"] == convs[0],
                          band_names, figures / "explain_filters.png")
        elif method == "feature-maps":
            arrays["feature_maps"] = feature_maps(model, stamps[:1], layer)
            plot_feature_maps(arrays["feature_maps"][0], figures / "explain_feature_maps.png", image=stamps[0],
                              title=f"feature maps of {layer!r}")
        elif method == "patches":
            found = strongest_patches(model, images, layer, k=9)
            arrays |= {"patches": found.patches, "patch_values": found.values, "patch_images": found.images}
            summary["receptive_field"] = {"size": found.field.size, "jump": found.field.jump,
                                          "start": found.field.start}
            plot_strongest_patches(found, figures / "explain_patches.png")
        elif method == "class-model":
            summary["class_models"] = _class_models(model, images.shape[1:], names, single, options.class_model_steps,
                                                    seed, figures, arrays)
        else:
            maps[method] = _attribution(method, model, stamps, targets, options, summary)
            arrays[method.replace("-", "_")] = maps[method]
    if maps:
        plot_attributions(stamps, maps, figures / "explain_attributions.png",
                          titles=row_titles(scores[chosen], predicted, names, summary["labels"]))
    write_explanation(out, arrays, summary)
    return summary


def _ends_with_softmax(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Softmax) for m in model.modules())


SHOWN_INPUT_MAPS = 4
"""A deeper convolution's filters are drawn on its first this many input maps (explain.npz has them all)."""


def _plot_filters(kernels: np.ndarray, layer: str, first: bool, band_names: Sequence[str] | None,
                  path: Path) -> None:
    """The filters of ``layer``: on the bands for the ``first`` convolution, else on its first input maps
    (a named convolution's; a block named for the maps and patches has no filters of its own)."""
    inputs = kernels.shape[1]
    if first:
        plot_filter_mosaic(kernels, path, band_names=band_names, title=f"filters of {layer!r}")
        return
    shown = min(inputs, SHOWN_INPUT_MAPS)
    plot_filter_mosaic(kernels[:, :shown], path, band_names=[f"input map {i}" for i in range(shown)],
                       title=f"filters of {layer!r} on its first {shown} of {inputs} input maps")


def row_titles(scores: np.ndarray, predicted: np.ndarray, names: Sequence[str],
               truth: Sequence[str] | None) -> list[str]:
    """The attribution rows' labels: ``true <class>`` (when known), then ``pred <class> (probability)``.

    ``scores``: the rows' outputs ``(n, K)`` or ``(n,)``/``(n, 1)`` for one sigmoid; ``predicted`` ``(n,)``."""
    single = scores.reshape(len(scores), -1).shape[1] == 1
    return [("" if truth is None else f"true {truth[i]}\n") + f"pred {names[k]} ({_score(row, k, single):.2f})"
            for i, (row, k) in enumerate(zip(scores, predicted))]


def _score(row: np.ndarray, k: int, single: bool) -> float:
    """The output for class ``k``: its probability (one sigmoid output: ``p`` for class 1, ``1 - p`` for 0)."""
    row = row.reshape(-1)
    return float((row[0] if k == 1 else 1.0 - row[0]) if single else row[k])


def _attribution(method: str, model: nn.Module, stamps: np.ndarray, targets: np.ndarray | None,
                 options: ExplainConfig, summary: dict[str, Any]) -> np.ndarray:
    """One attribution method's maps of ``stamps``: ``(n, C, H, W)``, or ``(n, H, W)`` for occlusion."""
    logits = summary["gradients_of"] == "logits"
    if method == "saliency":
        return saliency(model, stamps, targets, logits=logits)
    if method == "guided-backprop":
        return guided_backprop(model, stamps, targets, logits=logits)
    if method == "deconvnet":
        return deconvnet(model, stamps, targets, logits=logits)
    if method == "integrated-gradients":
        result = integrated_gradients(model, stamps, targets, baseline=options.baseline, steps=options.steps,
                                      logits=logits)
        summary["integrated_gradients"] = {"baseline": options.baseline, "steps": options.steps,
                                           "completeness_delta": result.delta.tolist(),
                                           "relative_error": result.relative_error.tolist()}
        return result.attributions
    settings = options.occlusion
    summary["occlusion"] = settings.model_dump()
    return np.stack([occlusion(model, stamp, None if targets is None else int(t), size=settings.size,
                               stride=settings.stride, fill=settings.fill).pixel_map()
                     for stamp, t in zip(stamps, targets if targets is not None else [None] * len(stamps))])


def _class_models(model: nn.Module, shape: tuple[int, ...], names: list[str], single: bool, steps: int, seed: int,
                  figures: Path, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """The class-model image of every class (one for a single-output model), drawn together."""
    results = {}
    logits = _ends_with_softmax(model)  # a softmax saturates: climb its input
    for k, name in enumerate(names[:1] if single else names):
        results[name] = class_model(model, None if single else k, tuple(shape), steps=steps, seed=seed,
                                    logits=logits)
        arrays[f"class_model_{k}"] = results[name].image
    plot_class_models(results, figures / "explain_class_models.png")
    return {name: {"start_score": r.start_score, "final_score": r.final_score} for name, r in results.items()}
