"""Simulated sky for training and testing: galaxy morphology, data quality, photometric redshifts, and image-to-image
pairs (denoising, deconvolution, blends with their isolated sources and segmentation), and scenes of generated
galaxies (a generative model's samples, drawn with GalSim) with the masks of detector defects for in-painting.

Every simulator writes one HDF5 file atomically, is deterministic for a seed (whatever the
number of worker processes), uses every core by default and shows a rich progress bar.
The artefact functions are pure numpy and usable on their own.
"""
from deepfield.data.simulate.artefacts import (add_bad_column, add_cosmic_rays, add_ghost, add_hot_pixels,
                                               add_satellite_trail, add_saturated_star)
from deepfield.data.simulate.blends import BlendsData, read_blends, simulate_blends
from deepfield.data.simulate.denoise import DenoiseData, read_denoise, simulate_denoise
from deepfield.data.simulate.generated import Samples, draw_sample, read_samples
from deepfield.data.simulate.masks import MASK_KINDS, artefact_masks
from deepfield.data.simulate.morpheus import MORPHOLOGY_CLASSES
from deepfield.data.simulate.morphology import CLASSES, simulate_morphology
from deepfield.data.simulate.photoz import simulate_photoz
from deepfield.data.simulate.quality import ARTEFACTS, simulate_quality
from deepfield.data.simulate.scene import simulate_scene

__all__ = ["ARTEFACTS", "CLASSES", "MASK_KINDS", "MORPHOLOGY_CLASSES", "BlendsData", "DenoiseData", "Samples",
           "add_bad_column", "add_cosmic_rays", "add_ghost", "add_hot_pixels", "add_satellite_trail",
           "add_saturated_star", "artefact_masks", "draw_sample", "read_blends", "read_denoise", "read_samples",
           "simulate_blends", "simulate_denoise", "simulate_morphology", "simulate_photoz", "simulate_quality",
           "simulate_scene"]
