"""Image transforms for training on the fly and for batches on the GPU.

Every transform takes one image ``(C, H, W)`` or a batch ``(N, C, H, W)``, a
floating-point tensor on any device, and keeps its device and dtype. Random ones
draw from the ``torch.Generator`` given to them (else the global RNG),
independently for each sample of a batch, without a Python loop over samples.

================  ==================  ===============================================
name              class               what it does
================  ==================  ===============================================
robust_normalize  RobustNormalize     per band ``(x - median) / (1.4826 MAD)``; per
                                      image, or ``fit`` on a training set and frozen
asinh             AsinhStretch        ``asinh(x / softening)`` (Lupton)
log               LogStretch          ``log(1 + max(x, 0) / scale)``
clip              Clip                values limited to ``[low, high]``
center_crop       CenterCrop          the central ``size`` pixels
resize            Resize              bilinear or area resampling to ``size``
dihedral          RandomDihedral      one of the 8 rotations/flips of the square
gaussian_noise    GaussianNoise       additive noise, one sigma or one per band
shift             RandomShift         integer shifts up to ``max_shift``, roll or pad
compose           Compose             a list of transforms, applied in order
================  ==================  ===============================================

>>> import torch
>>> from deepfield.data import transforms as T
>>> augment = T.Compose([T.RobustNormalize(), T.get("asinh", softening=1.0), T.RandomDihedral()])
>>> augment(torch.randn(8, 3, 64, 64)).shape
torch.Size([8, 3, 64, 64])
>>> T.from_config(augment.get_config()).get_config() == augment.get_config()
True

``dihedral(x, k)``, ``inverse_dihedral(k)`` and ``all_dihedral(x)`` give the
eight symmetries deterministically, e.g. for test-time augmentation.
"""
from deepfield.data.transforms.base import (Compose, RandomTransform, Transform, from_config, get, names,
                                            random_names)
from deepfield.data.transforms.geometry import (
    CenterCrop,
    RandomDihedral,
    RandomShift,
    Resize,
    all_dihedral,
    dihedral,
    inverse_dihedral,
)
from deepfield.data.transforms.intensity import AsinhStretch, Clip, LogStretch, RobustNormalize, robust_stats
from deepfield.data.transforms.noise import GaussianNoise

__all__ = [
    "AsinhStretch", "CenterCrop", "Clip", "Compose", "GaussianNoise", "LogStretch", "RandomDihedral",
    "RandomShift", "RandomTransform", "Resize", "RobustNormalize", "Transform", "all_dihedral", "dihedral",
    "from_config", "get", "inverse_dihedral", "names", "random_names", "robust_stats",
]
