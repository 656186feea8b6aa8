"""Keras model files in and out, without Keras: ``.keras`` archives and legacy HDF5 read, ``.keras`` written.

=========================  ===============================================================
module                     its job
=========================  ===============================================================
``archive``                the files: zip, JSON and HDF5 read and written, safely
``layout``                 channels last (Keras) <-> channels first (deepfield): kernels,
                           Flatten's order, axes
``translate``              one layer's translation: what every family shares, the refusal
                           of code (Lambda layers, custom objects)
``layers_core``,           the translators of each family of layers
``layers_conv``,
``layers_normalization``,
``layers_merge``,
``layers_shapes``,
``layers_sequences``,
``layers_preprocessing``
``graph``                  functional models' graphs, both ways
``loading``                ``load_keras``: a file -> a deepfield model
``saving``                 ``save_keras``: a deepfield model -> a ``.keras`` file Keras 3 loads;
                           ``load_keras_weights``: a weights file onto a deepfield model
=========================  ===============================================================

Nothing here imports Keras or TensorFlow, and nothing runs code from a file.
"""
from deepfield.models.keras_files import (layers_conv, layers_core, layers_merge, layers_normalization,
                                         layers_preprocessing, layers_sequences, layers_shapes)
from deepfield.models.keras_files.loading import MODEL_CLASSES, load_keras
from deepfield.models.keras_files.saving import load_keras_weights, save_keras

FAMILIES = (layers_core, layers_conv, layers_normalization, layers_merge, layers_shapes, layers_sequences,
            layers_preprocessing)
"""The modules of translators, imported for what they register (a new family is one module and one entry)."""

__all__ = ["MODEL_CLASSES", "load_keras", "load_keras_weights", "save_keras"]
