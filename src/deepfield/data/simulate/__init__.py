"""Simulated sky for training and testing: galaxy morphology, data quality and photometric redshifts.

Every simulator writes one HDF5 file atomically, is deterministic for a seed (whatever the
number of worker processes), uses every core by default and shows a rich progress bar.
The artefact functions are pure numpy and usable on their own.
"""
from deepfield.data.simulate.artefacts import (add_bad_column, add_cosmic_rays, add_ghost, add_hot_pixels,
                                               add_satellite_trail, add_saturated_star)
from deepfield.data.simulate.morphology import CLASSES, simulate_morphology
from deepfield.data.simulate.photoz import simulate_photoz
from deepfield.data.simulate.quality import ARTEFACTS, simulate_quality

__all__ = ["ARTEFACTS", "CLASSES", "add_bad_column", "add_cosmic_rays", "add_ghost", "add_hot_pixels",
           "add_satellite_trail", "add_saturated_star", "simulate_morphology", "simulate_photoz", "simulate_quality"]
