"""The ``models`` layer: layers, initialisers, the Sequential container, summary, presets."""
from deepfield.models.base import Layer
from deepfield.models.core import Activation, Dense, Dropout, Flatten, SpatialDropout

__all__ = ["Layer", "Dense", "Flatten", "Activation", "Dropout", "SpatialDropout"]
