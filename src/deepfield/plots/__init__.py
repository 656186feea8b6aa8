"""The ``plots`` layer: every figure. Each ``plot_*`` takes arrays, writes one PNG atomically and returns its path.

It sits under the tasks and above ``analysis``: it draws what the lower layers measured
(``analysis`` results, training histories), and knows no run folder.
One look for all (:mod:`.style`): Agg-rendered ``Figure`` objects, Okabe–Ito colours,
labelled axes, ``figsize × DPI`` pixels; animations (GIF, or MP4 where ffmpeg is): :mod:`.animation`.

- learning curves, the over-fitting epoch, gradient norms: :mod:`.learning`;
- confusion matrix, ROC, precision–recall at a fixed recall: :mod:`.classification`;
- photo-z scatter, PIT histogram, metrics in bins: :mod:`.photoz`;
- predicted against true values and residuals of a regression: :mod:`.regression`;
- an election forecast's seat distribution: :mod:`.seats`;
- a generative model's samples (the sample grid, a latent interpolation): :mod:`.generative`; generated stamps
  against held-out ones (statistic histograms, power spectra, memorisation): :mod:`.generative_judging`;
- a gallery of predictions on stamps: :mod:`.gallery`; restored images (input, output, truth, residual):
  :mod:`.restoration`; segmentation maps (image, predicted, true classes): :mod:`.segmentation`;
- reliability diagram, coverage, error against uncertainty, flags: :mod:`.uncertainty`;
- filters, feature maps, strongest patches: :mod:`.explain_filters`; attribution maps and
  class models: :mod:`.explain_maps`;
- optimiser paths on a loss surface: :mod:`.paths`; decision boundaries, sweeps and gradients
  by depth: :mod:`.learning_dynamics`.
"""
from deepfield.plots.classification import plot_confusion_matrix, plot_precision_recall, plot_roc
from deepfield.plots.gallery import asinh_composite, plot_gallery, select_examples
from deepfield.plots.generative import plot_interpolation, plot_sample_grid
from deepfield.plots.generative_judging import plot_memorisation, plot_power_spectra, plot_statistic_distributions
from deepfield.plots.learning import load_history, overfitting_epoch, plot_gradient_norms, plot_learning_curves
from deepfield.plots.photoz import plot_metrics_vs, plot_photoz_scatter, plot_pit
from deepfield.plots.regression import plot_regression
from deepfield.plots.restoration import best_median_worst, plot_restoration_gallery
from deepfield.plots.seats import plot_seat_distribution
from deepfield.plots.segmentation import plot_segmentation_gallery
from deepfield.plots.style import DPI
from deepfield.plots.uncertainty import (
    plot_coverage,
    plot_error_vs_uncertainty,
    plot_reliability_diagram,
    plot_uncertainty_flags,
)
from deepfield.plots.explain_filters import (
    plot_feature_maps,
    plot_filter_mosaic,
    plot_strongest_patches,
)
from deepfield.plots.explain_maps import plot_attributions, plot_class_models
from deepfield.plots.paths import animate_optimizer_paths, plot_loss_curves, plot_optimizer_paths
from deepfield.plots.learning_dynamics import (
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
    "plot_interpolation",
    "plot_memorisation",
    "plot_power_spectra",
    "plot_sample_grid",
    "plot_statistic_distributions",
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
    "plot_regression",
    "best_median_worst",
    "plot_restoration_gallery",
    "plot_segmentation_gallery",
    "plot_seat_distribution",
]
