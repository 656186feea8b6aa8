"""The figures' former address: ``deepfield.report.figures`` names what :mod:`deepfield.plots` draws.

Kept so that code written against it (``from deepfield.report.figures import plot_roc``) still
runs; new code imports :mod:`deepfield.plots`.
"""
from deepfield import plots

__all__ = list(plots.__all__)
globals().update({name: getattr(plots, name) for name in __all__})
