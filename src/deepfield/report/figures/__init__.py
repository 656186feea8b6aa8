"""Figures from numbers: each ``plot_*`` takes arrays, writes one PNG atomically and returns its path.

One look for all (:mod:`.style`): Agg-rendered ``Figure`` objects, Okabe–Ito colours,
labelled axes, ``figsize × DPI`` pixels.

- learning curves and the over-fitting epoch: :mod:`.learning`;
- confusion matrix, ROC, precision–recall at a fixed recall: :mod:`.classification`;
- photo-z scatter, PIT histogram, metrics in bins: :mod:`.photoz`;
- a gallery of predictions on stamps: :mod:`.gallery`.
"""
from deepfield.report.figures.classification import plot_confusion_matrix, plot_precision_recall, plot_roc
from deepfield.report.figures.gallery import asinh_composite, plot_gallery, select_examples
from deepfield.report.figures.learning import load_history, overfitting_epoch, plot_gradient_norms, plot_learning_curves
from deepfield.report.figures.photoz import plot_metrics_vs, plot_photoz_scatter, plot_pit
from deepfield.report.figures.style import DPI
from deepfield.report.figures.uncertainty import (
    plot_coverage,
    plot_error_vs_uncertainty,
    plot_reliability_diagram,
    plot_uncertainty_flags,
)
from deepfield.report.figures.explain_filters import (
    plot_feature_maps,
    plot_filter_mosaic,
    plot_strongest_patches,
)
from deepfield.report.figures.explain_maps import plot_attributions, plot_class_models
from deepfield.report.figures.paths import animate_optimizer_paths, plot_loss_curves, plot_optimizer_paths
from deepfield.report.figures.learning_dynamics import (
    animate_decision_boundary,
    plot_decision_boundary,
    plot_gradient_norms_by_depth,
    plot_sweep,
)

__all__ = [
    "DPI",
    "asinh_composite",
    "load_history",
    "overfitting_epoch",
    "plot_confusion_matrix",
    "plot_gallery",
    "plot_gradient_norms",
    "plot_learning_curves",
    "plot_metrics_vs",
    "plot_photoz_scatter",
    "plot_pit",
    "plot_precision_recall",
    "plot_roc",
    "select_examples",
    "plot_coverage",
    "plot_error_vs_uncertainty",
    "plot_reliability_diagram",
    "plot_uncertainty_flags",
    "plot_feature_maps",
    "plot_filter_mosaic",
    "plot_strongest_patches",
    "plot_attributions",
    "plot_class_models",
    "animate_optimizer_paths",
    "plot_loss_curves",
    "plot_optimizer_paths",
    "animate_decision_boundary",
    "plot_decision_boundary",
    "plot_gradient_norms_by_depth",
    "plot_sweep",
]
